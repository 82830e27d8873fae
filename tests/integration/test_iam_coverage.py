"""IAM coverage: every AWS call `pt` makes in the deploy / gate / rollback / recover / approve /
promote flows (recorded with a botocore `before-parameter-build` hook on every session the CLI
creates) is allowed by the deploy role that `StageStack` synthesizes for the same pipeline.yml,
and that role has no wildcard actions. The flows include a rollback of a first deploy (the alias
did not exist before: the rollback deletes it, `lambda:DeleteAlias`).

The end-to-end run of the generated pipelines (tests/e2e/test_generated_pipelines.py) checks the
same for build-push, test and the CodeBuild/GitHub role chain."""

from __future__ import annotations

import threading

import pytest

from ..e2e import iam
from .conftest_deploy import digest, stage_fixture, uri, wait_for  # noqa: F401 (stage_fixture: pytest fixture)

CONFIG = """\
project: rel
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict: {image: model}
  batch-score: {image: model}
stages:
  staging:
    account: "111111111111"
    branch: integration
    deploy: {strategy: canary, percent: 50, interval: 0.3s, bake: 0.3s, keep_versions: 50}
    gate: {alarms: ["rel-staging-*"], insufficient_data: pass, preexisting_alarm: block, poll: 0.1s}
  prod:
    account: "111111111111"
    branch: master
    promote_from: staging
    deploy: {strategy: all-at-once, bake: 0s}
    gate: {alarms: ["rel-prod-*"], poll: 0.1s}
    approvals: {required: 2, two_person_rule: true}
notifications: {sns: true}
"""


@pytest.fixture
def recorded(monkeypatch):
    """Calls of every botocore session created from now on: [(tag, call), …]; set `tag[0]`."""
    import botocore.session

    calls: list[dict] = []
    tag = ["setup"]
    original = botocore.session.Session.__init__

    def record(params, model, **_kw):
        calls.append({"service": model.service_model.service_name, "operation": model.name, "tag": tag[0],
                      "resources": {k: params[k] for k in ("FunctionName", "TableName", "TopicArn", "Name",
                                                           "repositoryName", "Bucket", "logGroupName")
                                    if k in params},
                      "items": [{"operation": kind} for item in params.get("TransactItems", [])
                                for kind in item]})

    def init(self, *a, **k):
        original(self, *a, **k)
        self.register("before-parameter-build", record)

    monkeypatch.setattr(botocore.session.Session, "__init__", init)
    return calls, tag


def test_every_call_of_deploy_gate_rollback_promote_is_allowed_by_the_deploy_role(stage, run_pt, recorded,
                                                                                  monkeypatch):
    pytest.importorskip("aws_cdk", reason="needs the [cdk] extra")
    calls, tag = recorded
    stage.config.write_text(CONFIG)
    stage.add_stage("prod")
    stage.sns = stage.aws.client("sns")
    stage.sns.create_topic(Name="rel-staging-events")
    stage.sns.create_topic(Name="rel-prod-events")
    c = ("--config", stage.config, "--stage", "staging")

    # 1. a first deploy (no alias yet) that an alarm rolls back: the rollback deletes the alias
    tag[0] = "staging"
    for fn in ("predict", "batch-score"):
        stage.lam.delete_alias(FunctionName=stage.fname(fn), Name="live")
    led = stage.ledger()

    def shifting() -> bool:
        try:
            recs = led.query("staging", "deploy", limit=1)
        except Exception:  # the CLI creates the (local) ledger table on its first call
            return False
        return bool(recs) and recs[0].state == "shifting"

    def flip():
        wait_for(shifting, timeout=30, interval=0.02)
        stage.set_alarm("ALARM")

    t = threading.Thread(target=flip)
    t.start()
    r = run_pt("deploy", *c, "--image-uri", uri(2))
    t.join()
    assert r.exit_code == 1, r
    assert any(x["operation"] == "DeleteAlias" for x in calls), "the first-deploy rollback deleted no alias"
    stage.set_alarm("OK")

    # 2. deploys, gate, status, history, rollback, recover
    for n in (2, 3):
        assert run_pt("deploy", *c, "--image-uri", uri(n)).exit_code == 0
    assert run_pt("gate", *c, "--wait", "--bake", "0.2s").exit_code == 0
    assert run_pt("status", *c).exit_code == 0
    assert run_pt("history", *c).exit_code == 0
    assert run_pt("rollback", *c).exit_code == 0
    assert stage.live_digests() == {digest(2)}
    assert run_pt("recover", *c).exit_code == 0
    assert run_pt("deploy", *c, "--image-uri", uri(3)).exit_code == 0
    r = run_pt("gate", *c, "--wait", "--bake", "0.2s")
    assert r.exit_code == 0, r

    # 3. prod: two approvals, promote, gate (commands of the prod stage run with prod's role)
    tag[0] = "prod"
    p = ("--config", stage.config)
    for who in ("alice@example.com", "dave@example.com"):
        monkeypatch.setenv("PT_ACTOR", who)
        r = run_pt("approve", *p, "--stage", "prod", "-m", "ok")
        assert r.exit_code == 0, r
    r = run_pt("promote", *p, "--to", "prod")
    assert r.exit_code == 0, r
    assert run_pt("gate", *p, "--stage", "prod").exit_code == 0
    assert stage.live_digests("prod") == {digest(3)}

    from pipeline_tools.core.config import load
    from pipeline_tools.infra.stacks import synth_stage_template

    cfg = load(stage.config)
    problems = []
    for name in ("staging", "prod"):
        template = synth_stage_template(cfg, name, local=False)
        deploy = iam.role_policies(template, f"rel-{name}-deploy", {"account": "111111111111",
                                                                     "region": "us-east-1"})
        problems += iam.check_calls([x for x in calls if x["tag"] == name], deploy=deploy, caller=[],
                                    local_only=iam.LOCAL_ONLY)
    assert problems == [], "\n".join(problems)
    ops = {f"{x['service']}:{x['operation']}" for x in calls}
    # (versions are published by UpdateFunctionCode's Publish; the role keeps PublishVersion for its fallback)
    assert {"lambda:UpdateFunctionCode", "lambda:CreateAlias", "lambda:UpdateAlias",
            "lambda:DeleteAlias", "cloudwatch:DescribeAlarms", "dynamodb:Query"} <= ops, ops


def test_the_check_reports_a_call_the_role_does_not_allow():
    deploy = [{"Effect": "Allow", "Action": ["lambda:UpdateAlias"],
               "Resource": ["arn:aws:lambda:us-east-1:1:function:rel-staging-predict:*"], "Sid": "x"}]
    calls = [{"service": "lambda", "operation": "DeleteAlias", "resources": {"FunctionName": "rel-staging-predict"}},
             {"service": "lambda", "operation": "UpdateAlias", "resources": {"FunctionName": "rel-prod-predict"}},
             {"service": "lambda", "operation": "UpdateAlias", "resources": {"FunctionName": "rel-staging-predict"}},
             {"service": "sts", "operation": "GetCallerIdentity", "resources": {}}]
    problems = iam.check_calls(calls, deploy=deploy, caller=[], local_only={})
    assert len(problems) == 2
    assert "lambda:DeleteAlias" in problems[0] and "rel-prod-predict" in problems[1]
    star = [{"Effect": "Allow", "Action": ["lambda:*"], "Resource": ["*"], "Sid": "y"}]
    assert iam.check_calls([], deploy=star, caller=[], local_only={}) == ["wildcard action lambda:* in the deploy role"]
