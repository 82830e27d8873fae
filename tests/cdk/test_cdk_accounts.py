"""Accounts (`accounts: {tooling: …}`): the ledger moves to the tooling account's LedgerStack, stage
deploy roles reach it through the ledger role, and a stage's deploy role trusts the deploy role of
the stage that promotes from it. Synthesized for three accounts and for one (cdk-nag + cfn-lint)."""

from __future__ import annotations

import pytest

from .conftest import base_config, cfn_lint, synth_app, write_config

pytestmark = pytest.mark.cdk

A, B, C = "111111111111", "222222222222", "333333333333"


def _synth(tmp_path_factory, tooling: str, stage_accounts: tuple[str, str]):
    data = base_config()
    data["accounts"] = {"tooling": tooling}
    data["stages"]["staging"]["account"], data["stages"]["prod"]["account"] = stage_accounts
    path = write_config(tmp_path_factory.mktemp("acc") / "pipeline.yml", data)
    return synth_app(path, tmp_path_factory.mktemp("cdk.out"), nag=True)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return _synth(tmp_path_factory, C, (A, B))


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    return _synth(tmp_path_factory, A, (A, A))


def by_type(template: dict, kind: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


def deploy_role(template: dict, stage: str) -> dict:
    roles = by_type(template, "AWS::IAM::Role")
    return next(r for r in roles if r["Properties"].get("RoleName") == f"iris-{stage}-deploy")


def deploy_policy(template: dict) -> dict[str, dict]:
    policy = next(iter(by_type(template, "AWS::IAM::ManagedPolicy")))["Properties"]["PolicyDocument"]
    return {s["Sid"]: s for s in policy["Statement"]}


def text(v) -> str:
    return str(v)


def test_three_accounts_ledger_lives_in_the_tooling_account(three):
    assert set(three.templates) >= {"iris-ledger", "iris-staging-stage", "iris-prod-stage"}
    ledger = three.template("iris-ledger")
    tables = by_type(ledger, "AWS::DynamoDB::Table")
    assert [t["Properties"]["TableName"] for t in tables] == ["iris-ledger"]
    assert tables[0]["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    for stage in ("staging", "prod"):
        assert by_type(three.template(f"iris-{stage}-stage"), "AWS::DynamoDB::Table") == []
    role = next(r for r in by_type(ledger, "AWS::IAM::Role") if r["Properties"]["RoleName"] == "iris-ledger")
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    trusted = text(trust)
    for account, stage in ((A, "staging"), (B, "prod")):
        assert f"{account}:root" in trusted and f":iam::{account}:role/iris-{stage}-deploy" in trusted
    assert all(s["Condition"]["ArnEquals"]["aws:PrincipalArn"] for s in trust)  # never a whole account
    policy = next(iter(by_type(ledger, "AWS::IAM::Policy")))["Properties"]["PolicyDocument"]["Statement"]
    assert len(policy) == 1 and "dynamodb:PutItem" in policy[0]["Action"]
    assert not any(a.endswith("*") for a in policy[0]["Action"])


def test_three_accounts_deploy_roles_reach_the_ledger_and_the_source_stage(three):
    staging, prod = three.template("iris-staging-stage"), three.template("iris-prod-stage")
    for t in (staging, prod):
        sids = deploy_policy(t)
        assert "Ledger" not in sids  # no table in the stage account to grant
        assert sids["LedgerRole"]["Action"] == "sts:AssumeRole"
        assert f":iam::{C}:role/iris-ledger" in text(sids["LedgerRole"]["Resource"])
    # prod's promotion reads staging's alarms with staging's role
    src = deploy_policy(prod)["SourceStageRole"]
    assert src["Action"] == "sts:AssumeRole" and f":iam::{A}:role/iris-staging-deploy" in text(src["Resource"])
    assert "SourceStageRole" not in deploy_policy(staging)
    # … and staging's deploy role trusts exactly that role, plus the tooling account's CI roles
    trust = deploy_role(staging, "staging")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    other = next(s for s in trust if s.get("Sid") == "OtherAccounts")
    allowed = text(other["Condition"]["ArnEquals"]["aws:PrincipalArn"])
    assert f":iam::{B}:role/iris-prod-deploy" in allowed
    assert f":iam::{C}:role/iris-prod-github" in allowed and f":iam::{C}:role/iris-prod-codebuild" in allowed
    assert f":iam::{C}:role/iris-github" not in allowed  # one GitHub role per stage, never a shared one
    principals = text(other["Principal"])
    assert f"{B}:root" in principals and f"{C}:root" in principals and f"{A}:root" not in principals


def test_three_accounts_artifacts_promotion_reads_the_source_bucket(three):
    staging, prod = three.template("iris-staging-stage"), three.template("iris-prod-stage")
    src = deploy_policy(prod)["SourceArtifacts"]
    assert "s3:GetObject" in src["Action"] and not any(a.endswith("*") for a in src["Action"])
    assert "s3:::iris-staging-artifacts" in text(src["Resource"]) and "SourceArtifacts" not in deploy_policy(staging)
    policies = [s for p in by_type(staging, "AWS::S3::BucketPolicy")
                for s in p["Properties"]["PolicyDocument"]["Statement"]]
    read = next(s for s in policies if s.get("Sid") == "PromoteRead")
    assert f"{B}:root" in text(read["Principal"])
    assert f":iam::{B}:role/iris-prod-deploy" in text(read["Condition"]["ArnEquals"]["aws:PrincipalArn"])
    assert not any(s.get("Sid") == "PromoteRead" for p in by_type(prod, "AWS::S3::BucketPolicy")
                   for s in p["Properties"]["PolicyDocument"]["Statement"])


def test_one_account_with_tooling_keeps_the_ledger_direct(one):
    ledger = one.template("iris-ledger")
    assert len(by_type(ledger, "AWS::DynamoDB::Table")) == 1
    assert by_type(ledger, "AWS::IAM::Role") == []  # nobody outside the tooling account needs it
    for stage in ("staging", "prod"):
        t = one.template(f"iris-{stage}-stage")
        assert by_type(t, "AWS::DynamoDB::Table") == []
        sids = deploy_policy(t)
        assert not {"LedgerRole", "SourceStageRole", "SourceArtifacts"} & set(sids)
        assert f":{A}:table/iris-ledger" in text(sids["Ledger"]["Resource"])
        trust = deploy_role(t, stage)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert len(trust) == 1  # as in a single-account config


@pytest.mark.parametrize("which", ["three", "one"])
def test_nag_and_cfn_lint_clean(which, request):
    s = request.getfixturevalue(which)
    findings = [(v["ruleName"], [c.get("constructPath") for c in v.get("violatingConstructs", [])])
                for rep in s.report["pluginReports"] for v in rep.get("violations", [])]
    assert findings == []
    files = sorted(str(p) for p in s.outdir.glob("iris-*.template.json"))
    assert cfn_lint(*files) == []
