"""Stages in different AWS accounts, on one moto server (moto keeps one backend per account and
picks it from the credentials: the default keys act in 123456789012, keys from `sts assume_role`
act in the role's account).

Accounts: staging in A (111111111111), prod in B (222222222222), the tooling account C
(123456789012, moto's default) holds the shared ledger. `pt` runs through its real CLI entry point.
"""

from __future__ import annotations

import json

import boto3
import pytest

from pipeline_tools.targets.lambda_ops import version_digest

from .conftest_deploy import FUNCTIONS, digest

A, B, C = "111111111111", "222222222222", "123456789012"
PROJECT = "acc"
REGION = "us-east-1"


def config(tooling: str | None) -> str:
    accounts = f'accounts: {{tooling: "{tooling}"}}\n' if tooling else ""
    return f"""\
project: {PROJECT}
region: {REGION}
{accounts}images:
  model: {{context: ., dockerfile: Dockerfile}}
functions:
  predict: {{image: model}}
  batch-score: {{image: model}}
stages:
  staging:
    account: "{A}"
    branch: integration
    deploy: {{strategy: all-at-once, bake: 0s}}
    gate: {{alarms: ["{PROJECT}-staging-*"], insufficient_data: fail, poll: 0.1s}}
  prod:
    account: "{B}"
    branch: master
    promote_from: staging
    deploy: {{strategy: all-at-once, bake: 0s}}
    gate: {{alarms: ["{PROJECT}-prod-*"], insufficient_data: fail, poll: 0.1s}}
"""


class Account:
    """boto3 clients acting in one moto account (through an assumed role, as a person would)."""

    def __init__(self, endpoint: str, account: str, role: str = "test-admin"):
        self.endpoint, self.account = endpoint, account
        if account == C:
            self.creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        else:
            sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
            c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="setup")["Credentials"]
            self.creds = {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
                          "aws_session_token": c["SessionToken"]}
        self._clients: dict = {}

    def __call__(self, service: str):
        if service not in self._clients:
            self._clients[service] = boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                                                  **self.creds)
        return self._clients[service]

    def env(self, monkeypatch) -> None:
        """Make this account's credentials the ones `pt` runs with."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", self.creds["aws_access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", self.creds["aws_secret_access_key"])
        if "aws_session_token" in self.creds:
            monkeypatch.setenv("AWS_SESSION_TOKEN", self.creds["aws_session_token"])

    def seed_stage(self, stage: str) -> None:
        """ECR images 1-3 (replicated to every stage account), functions on image 1, OK alarms."""
        repo = f"{PROJECT}-model"
        self("ecr").create_repository(repositoryName=repo)
        for n in (1, 2, 3):
            manifest = json.dumps({"schemaVersion": 2,
                                   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                              "size": 1, "digest": digest(100 + n)}, "layers": []})
            self("ecr").put_image(repositoryName=repo, imageManifest=manifest, imageTag=f"t{n}",
                                  imageDigest=digest(n))
        role = self("iam").create_role(RoleName=f"{PROJECT}-{stage}-fn", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        for fn in FUNCTIONS:
            name = f"{PROJECT}-{stage}-{fn}"
            self("lambda").create_function(FunctionName=name, PackageType="Image", Role=role["Role"]["Arn"],
                                           Code={"ImageUri": f"{self.registry}/{repo}@{digest(1)}"})
            v = self("lambda").publish_version(FunctionName=name, Description=f"pt seed {digest(1)}")["Version"]
            self("lambda").create_alias(FunctionName=name, Name="live", FunctionVersion=v)
            self.alarm(f"{PROJECT}-{stage}-{fn}-errors", "OK")

    @property
    def registry(self) -> str:
        return f"{self.account}.dkr.ecr.{REGION}.amazonaws.com"

    def alarm(self, name: str, state: str) -> None:
        self("cloudwatch").put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda",
                                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                            ComparisonOperator="GreaterThanOrEqualToThreshold")
        self("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")

    def live_digests(self, stage: str) -> set[str | None]:
        lam = self("lambda")
        out = set()
        for fn in FUNCTIONS:
            name = f"{PROJECT}-{stage}-{fn}"
            out.add(version_digest(lam, name, lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"]))
        return out

    def function_names(self) -> set[str]:
        return {f["FunctionName"] for f in self("lambda").list_functions()["Functions"]}

    def tables(self) -> list[str]:
        return self("dynamodb").list_tables()["TableNames"]

    def ledger(self, stage: str) -> list[dict]:
        items = self("dynamodb").query(TableName=f"{PROJECT}-ledger", KeyConditionExpression="pk = :s",
                                       ExpressionAttributeValues={":s": {"S": stage}})["Items"]
        return [{"kind": i["kind"]["S"], "state": i["state"]["S"]} for i in items if i["sk"]["S"].startswith("R#")]


@pytest.fixture
def world(aws, moto_server, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "ci-bot")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    accounts = {k: Account(moto_server, k) for k in (A, B, C)}
    accounts[A].seed_stage("staging")
    accounts[B].seed_stage("prod")
    path = tmp_path / "pipeline.yml"
    path.write_text(config(tooling=C))
    return accounts, path


def test_promotion_across_three_accounts(world, run_pt):
    acc, cfg = world
    a, b, c = acc[A], acc[B], acc[C]
    r = run_pt("deploy", "--config", cfg, "--stage", "staging", "--image-uri",
               f"{a.registry}/{PROJECT}-model@{digest(2)}", "--output", "json")
    assert r.exit_code == 0, r
    assert a.live_digests("staging") == {digest(2)}  # deployed in A through staging's role
    r = run_pt("gate", "--config", cfg, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0 and r.json()["status"] == "PASS", r  # A's alarms, C's ledger
    r = run_pt("promote", "--config", cfg, "--to", "prod", "--dry-run", "--output", "json")
    assert r.exit_code == 0 and r.json()["dry_run"] is True, r
    assert b.live_digests("prod") == {digest(1)}
    r = run_pt("promote", "--config", cfg, "--to", "prod", "--output", "json")
    assert r.exit_code == 0, r
    checks = {ch["check"]: ch for ch in r.json()["checks"]}
    assert checks["deployed"]["ok"] and digest(2)[:19] in checks["deployed"]["detail"]  # staging's record, seen
    assert checks["gate"]["ok"] and f"{PROJECT}-staging-predict-errors" in json.dumps(r.json())  # A's alarms
    assert b.live_digests("prod") == {digest(2)}  # the Lambda update happened in B
    assert a.live_digests("staging") == {digest(2)}
    # the ledger is in C only, and holds both stages' records; nothing went to the wrong account
    assert c.tables() == [f"{PROJECT}-ledger"] and a.tables() == [] and b.tables() == []
    assert {"kind": "deploy", "state": "succeeded"} in c.ledger("staging")
    prod = c.ledger("prod")
    assert {"kind": "deploy", "state": "succeeded"} in prod and {"kind": "promotion", "state": "succeeded"} in prod
    assert a.function_names() == {f"{PROJECT}-staging-{f}" for f in FUNCTIONS}
    assert b.function_names() == {f"{PROJECT}-prod-{f}" for f in FUNCTIONS}
    assert c.function_names() == set()
    # every stage's view of the same ledger: history of staging and status of prod agree
    r = run_pt("history", "--config", cfg, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0 and r.json()["deploys"][0]["digest"] == digest(2)
    r = run_pt("status", "--config", cfg, "--output", "json")  # every stage, each through its own role
    assert r.exit_code == 0, r
    for s in r.json()["stages"]:
        assert {f["digest"] for f in s["functions"]} == {digest(2)}, s
        assert s["last_deploy"]["state"] == "succeeded"


def test_source_alarms_are_read_in_the_source_account(world, run_pt):
    acc, cfg = world
    a, b, c = acc[A], acc[B], acc[C]
    assert run_pt("deploy", "--config", cfg, "--stage", "staging", "--image-uri",
                  f"{a.registry}/{PROJECT}-model@{digest(2)}").exit_code == 0
    a.alarm(f"{PROJECT}-staging-predict-errors", "ALARM")
    # decoys: the same alarm names, OK, in the tooling and prod accounts; reading there would PASS
    for other in (b, c):
        for fn in FUNCTIONS:
            other.alarm(f"{PROJECT}-staging-{fn}-errors", "OK")
    r = run_pt("promote", "--config", cfg, "--to", "prod", "--output", "json")
    assert r.exit_code == 1, r
    assert "staging gate FAIL" in r.stderr and f"{PROJECT}-staging-predict-errors" in r.stderr
    assert b.live_digests("prod") == {digest(1)}  # prod untouched
    refused = [x for x in c.ledger("prod") if x["kind"] == "promotion"]
    assert refused == [{"kind": "promotion", "state": "refused"}]


def test_caller_in_a_stage_account_reaches_the_ledger_through_the_ledger_role(world, run_pt, monkeypatch):
    acc, cfg = world
    a, b, c = acc[A], acc[B], acc[C]
    # staging's CI runs as staging's deploy role in A: stage clients direct, the ledger via C's role
    Account(a.endpoint, A, role=f"{PROJECT}-staging-deploy").env(monkeypatch)
    r = run_pt("deploy", "--config", cfg, "--stage", "staging", "--image-uri",
               f"{a.registry}/{PROJECT}-model@{digest(3)}")
    assert r.exit_code == 0, r
    assert a.live_digests("staging") == {digest(3)}
    assert a.tables() == [] and {"kind": "deploy", "state": "succeeded"} in c.ledger("staging")
    # prod's promotion from a caller in B: staging's alarms through staging's role, ledger through C's
    Account(a.endpoint, B, role=f"{PROJECT}-prod-deploy").env(monkeypatch)
    r = run_pt("promote", "--config", cfg, "--to", "prod")
    assert r.exit_code == 0, r
    assert b.live_digests("prod") == {digest(3)} and b.tables() == []


def test_two_accounts_ledger_in_the_staging_account(world, run_pt, monkeypatch):
    acc, cfg = world
    a, b = acc[A], acc[B]
    cfg.write_text(config(tooling=A))  # the contract's two accounts, staging's account holds the ledger
    Account(a.endpoint, A, role=f"{PROJECT}-staging-deploy").env(monkeypatch)
    r = run_pt("deploy", "--config", cfg, "--stage", "staging", "--image-uri",
               f"{a.registry}/{PROJECT}-model@{digest(2)}")
    assert r.exit_code == 0, r
    Account(a.endpoint, B, role=f"{PROJECT}-prod-deploy").env(monkeypatch)
    r = run_pt("promote", "--config", cfg, "--to", "prod")
    assert r.exit_code == 0, r
    assert b.live_digests("prod") == {digest(2)} and a.live_digests("staging") == {digest(2)}
    assert a.tables() == [f"{PROJECT}-ledger"] and b.tables() == [] and acc[C].tables() == []
    assert {"kind": "promotion", "state": "succeeded"} in a.ledger("prod")


def test_two_accounts_without_a_shared_ledger_is_refused_in_one_line(world, run_pt, monkeypatch):
    acc, cfg = world
    cfg.write_text(config(tooling=None))
    Account(acc[B].endpoint, B, role=f"{PROJECT}-prod-deploy").env(monkeypatch)
    for args in (("promote", "--to", "prod"), ("approvals", "--stage", "prod")):
        r = run_pt(*args, "--config", cfg)
        assert r.exit_code == 2, r
        assert "different accounts" in r.stderr and "accounts: {tooling:" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert acc[B].live_digests("prod") == {digest(1)}


def test_config_accounts_checks_every_role_and_the_ledger(world, run_pt):
    acc, cfg = world
    r = run_pt("config", "accounts", "--config", cfg, "--output", "json")
    assert r.exit_code == 1, r  # no ledger table yet in the tooling account
    rows = {x["what"]: x for x in r.json()["checks"]}
    assert rows["stage staging"]["ok"] and rows["stage staging"]["via"] == f"arn:aws:iam::{A}:role/acc-staging-deploy"
    assert f":sts::{A}:assumed-role/acc-staging-deploy/pt-staging-" in rows["stage staging"]["acting_as"]
    assert rows["stage prod"]["ok"] and f":sts::{B}:" in rows["stage prod"]["acting_as"]
    ledger = rows[f"ledger {PROJECT}-ledger"]
    assert not ledger["ok"] and ledger["account"] == C and "npx cdk deploy acc-ledger" in ledger["error"]
    acc[C]("dynamodb").create_table(
        TableName=f"{PROJECT}-ledger", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in ("pk", "sk")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    r = run_pt("config", "accounts", "--config", cfg)
    assert r.exit_code == 0, r
    assert "acc-staging-deploy" in r.stdout and "FAIL" not in r.stdout
    # without accounts: pt would act in the caller's account (C) for stages that name A and B: said so
    cfg.write_text(config(tooling=None))
    r = run_pt("config", "accounts", "--config", cfg, "--output", "json")
    assert r.exit_code == 1
    rows = {x["what"]: x for x in r.json()["checks"]}
    assert not rows["stage staging"]["ok"] and f"act in account {C}, not {A}" in rows["stage staging"]["error"]
    assert "set accounts.tooling" in rows["stage staging"]["error"]
