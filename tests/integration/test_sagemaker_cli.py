"""`pt gate --shadow`, `pt approve --shadow`, `pt promote --shadow`, `pt rollback --target sagemaker`
end to end through the CLI: the ledger, STS and everything else on moto server; the SageMaker and
CloudWatch clients stubbed (moto cannot run a shadow: no UpdateEndpoint, no SageMaker metrics)."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.release.ledger import Ledger, ensure_table
from pipeline_tools.targets import sagemaker as sm

EP = "cv-staging-vision"
SHADOW_CFG = f"{EP}-cshadow"
PROMOTE_ID = "20991231T000000000Z-cccccc"  # newest record: ids sort by time
D = "sha256:" + "c" * 64
T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

CONFIG = """\
project: cv
region: us-east-1
images:
  model: {context: .}
stages:
  staging:
    account: "111111111111"
    branch: integration
    gate: {alarms: [], allow_no_alarms: true, poll: 0.1s}
    approvals: {required: 1, two_person_rule: true}
targets:
  sagemaker:
    endpoint: vision
    image: model
    model_artifacts: "models/{stage}/vision"
    shadow_bake: 0s
    wait: 1m
    thresholds: {min_invocations: 10}
"""


def described(status: str, config: str) -> dict:
    return {"EndpointName": EP, "EndpointArn": f"arn:aws:sagemaker:us-east-1:111111111111:endpoint/{EP}",
            "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0}


def metrics(shadow_p99: float) -> dict:
    vals = {"sinv": 40, "serr": 0, "sp50": 9000, "sp99": shadow_p99, "pinv": 400, "perr": 0, "pp50": 10000,
            "pp99": 30000}
    return {"MetricDataResults": [{"Id": k, "Label": k, "StatusCode": "Complete", "Timestamps": [T0],
                                   "Values": [v]} for k, v in vals.items()]}


@pytest.fixture
def cli(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "dave")
    monkeypatch.setenv("PT_SAGEMAKER_POLL", "0.01")
    ids, real_id = iter([PROMOTE_ID] * 2), sm.new_id  # dry run + promotion: known ids; later ones are real
    monkeypatch.setattr(sm, "new_id", lambda now: next(ids, None) or real_id(now))
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "cv-ledger", project="cv", stage="staging", local=True)
    led = Ledger(ddb, "cv-ledger")
    rec = led.put_record(sm.KIND, "staging", {"operation": "shadow", "endpoint": EP, "digest": D,
                                              "previous_endpoint_config": f"{EP}-cprod",
                                              "endpoint_config": SHADOW_CFG, "model": f"{EP}-mshadow"},
                         actor={"name": "bob", "author": "bob@example.com"}, state="locked")
    led.transition("staging", rec.id, "succeeded", data={"shadow_active": True})
    smc = boto3.client("sagemaker", region_name="us-east-1")
    cw = boto3.client("cloudwatch", region_name="us-east-1")
    real = AwsFactory.client

    def client(self, service, region=None):
        return {"sagemaker": smc, "cloudwatch": cw}.get(service) or real(self, service, region)

    monkeypatch.setattr(AwsFactory, "client", client)
    with Stubber(smc) as s, Stubber(cw) as c:
        yield {"config": str(cfg), "sm": s, "cw": c, "ledger": led, "shadow": rec.id}


def gate_reads(cli, p99=30000):
    cli["sm"].add_response("describe_endpoint", described("InService", SHADOW_CFG), {"EndpointName": EP})
    cli["cw"].add_response("get_metric_data", metrics(p99), None)


def current_reads(cli):
    cli["sm"].add_response("describe_endpoint", described("InService", SHADOW_CFG), {"EndpointName": EP})
    cli["sm"].add_response("describe_endpoint_config", {
        "EndpointConfigName": SHADOW_CFG, "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/x",
        "CreationTime": T0,
        "ProductionVariants": [{"VariantName": "production", "ModelName": f"{EP}-mprod", "InstanceType":
                                "ml.m5.large", "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}],
        "ShadowProductionVariants": [{"VariantName": "shadow", "ModelName": f"{EP}-mshadow", "InstanceType":
                                      "ml.m5.large", "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}]},
        {"EndpointConfigName": SHADOW_CFG})
    cli["sm"].add_response("describe_model", {"ModelName": f"{EP}-mprod", "ModelArn": "arn:aws:sagemaker:us-east-1:"
                                              "1:model/x", "CreationTime": T0,
                                              "PrimaryContainer": {"Image": "r@" + "sha256:" + "a" * 64}}, None)


def pt(run_pt, cli, *args):
    return run_pt("--config", cli["config"], *args)


def test_gate_approve_promote_rollback_through_the_cli(run_pt, cli):
    gate_reads(cli, p99=90000)
    res = pt(run_pt, cli, "gate", "--stage", "staging", "--shadow", "--output", "json")
    assert res.exit_code == 1, res
    assert res.json()["status"] == "FAIL" and "latency_p99" in {c["check"] for c in res.json()["checks"]
                                                              if c["status"] == "FAIL"}
    gate_reads(cli)
    res = pt(run_pt, cli, "gate", "--stage", "staging", "--shadow", "--bake", "2h", "--output", "json")
    assert res.exit_code == 3 and res.json()["status"] == "WAIT" and res.json()["bake"] == "2h", res
    gate_reads(cli)
    res = pt(run_pt, cli, "gate", "--stage", "staging", "--shadow")
    assert res.exit_code == 0 and "PASS" in res.stdout, res

    gate_reads(cli)
    res = pt(run_pt, cli, "promote", "--to", "staging", "--shadow")
    assert res.exit_code == 1 and "approvals" in res.stderr, res  # refused: nobody approved yet

    res = pt(run_pt, cli, "approve", "--stage", "staging", "--shadow", "-m", "ok", "--output", "json")
    assert res.exit_code == 0 and res.json()["status"]["satisfied"] is True, res

    gate_reads(cli)
    current_reads(cli)
    dry = pt(run_pt, cli, "promote", "--to", "staging", "--shadow", "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry
    assert dry.json()["request"]["ProductionVariants"][0]["ModelName"] == f"{EP}-mshadow"
    assert [c["check"] for c in dry.json()["checks"]] == ["shadow", "gate", "approvals", "window", "lock"]

    new_cfg = sm.resource_name(EP, PROMOTE_ID, "c")
    gate_reads(cli)
    current_reads(cli)
    cli["sm"].add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/y"},
                           None)
    cli["sm"].add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                           {"EndpointName": EP, "EndpointConfigName": new_cfg})
    cli["sm"].add_response("describe_endpoint", described("InService", new_cfg), {"EndpointName": EP})
    res = pt(run_pt, cli, "promote", "--to", "staging", "--shadow", "--output", "json")
    assert res.exit_code == 0, res
    assert res.json()["record"]["state"] == "succeeded" and res.json()["endpoint_config"] == new_cfg

    cli["sm"].add_response("describe_endpoint", described("InService", new_cfg), {"EndpointName": EP})
    cli["sm"].add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                           {"EndpointName": EP, "EndpointConfigName": SHADOW_CFG})
    cli["sm"].add_response("describe_endpoint", described("InService", SHADOW_CFG), {"EndpointName": EP})
    res = pt(run_pt, cli, "rollback", "--stage", "staging", "--target", "sagemaker")
    assert res.exit_code == 0 and f"{new_cfg} → {SHADOW_CFG}" in res.stdout, res
    cli["sm"].assert_no_pending_responses()
    cli["cw"].assert_no_pending_responses()
    kinds = [(r.kind, r.state) for r in cli["ledger"].query("staging")]
    assert ("gate", "fail") in kinds and ("gate", "pass") in kinds and ("approval", "approved") in kinds
    assert ("promotion", "refused") in kinds and ("promotion", "succeeded") in kinds
