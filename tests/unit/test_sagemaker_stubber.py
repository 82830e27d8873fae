"""SageMaker calls moto lacks or answers differently (UpdateEndpoint, ShadowProductionVariants in
describe calls, Failed endpoints, CloudWatch percentiles): botocore Stubber, request and response
shapes as in the SageMaker / CloudWatch API reference (the Stubber validates both against the
service model). The ledger is real (DynamoDB in-process moto)."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import NotFoundError
from pipeline_tools.release.ledger import Ledger, ensure_table
from pipeline_tools.targets import sagemaker as sm

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
    approvals: {required: 2, two_person_rule: true}
targets:
  sagemaker:
    endpoint: vision
    image: model
    model_artifacts: "models/{stage}/vision"
    instance_type: ml.g5.xlarge
    instance_count: 2
    shadow_sampling: 25
    data_capture: 10
    wait: 10m
    shadow_bake: 5m
    thresholds:
      min_invocations: 10
      user_metric: {namespace: Vision, name: Accuracy, better: higher, tolerance: 0.02}
"""
EP = "cv-staging-vision"
REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/cv-model"
D_OLD = "sha256:" + "a" * 64
D_NEW = "sha256:" + "b" * 64
T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
def cfg():
    return config_mod.parse(CONFIG)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(ddb, "cv-ledger", project="cv", stage="staging", local=True)
        clock = Clock()
        client = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        with Stubber(client) as stub, Stubber(cw) as cw_stub:
            deps = sm.Deps(sagemaker=client, ledger=Ledger(ddb, "cv-ledger", clock=clock), cloudwatch=cw,
                           clock=clock, sleep=clock.sleep, actor={"name": "alice", "author": "carol@example.com"},
                           poll=5)
            yield deps, stub, cw_stub, clock


def endpoint(status: str, config: str, reason: str | None = None) -> dict:
    d = {"EndpointName": EP, "EndpointArn": f"arn:aws:sagemaker:us-east-1:111111111111:endpoint/{EP}",
         "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0}
    if reason:
        d["FailureReason"] = reason
    return d


def endpoint_config(name: str, model: str, shadow: str | None = None) -> dict:
    d = {"EndpointConfigName": name, "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:111111111111:"
                                                          f"endpoint-config/{name}",
         "ProductionVariants": [{"VariantName": "production", "ModelName": model, "InitialInstanceCount": 2,
                                 "InstanceType": "ml.g5.xlarge", "InitialVariantWeight": 1.0}],
         "CreationTime": T0}
    if shadow:
        d["ShadowProductionVariants"] = [{"VariantName": "shadow", "ModelName": shadow, "InitialInstanceCount": 2,
                                          "InstanceType": "ml.g5.xlarge", "InitialVariantWeight": 0.25}]
    return d


def model(name: str, digest: str) -> dict:
    return {"ModelName": name, "ModelArn": f"arn:aws:sagemaker:us-east-1:111111111111:model/{name}",
            "ExecutionRoleArn": "arn:aws:iam::111111111111:role/cv-staging-sagemaker", "CreationTime": T0,
            "PrimaryContainer": {"Image": f"{REPO}@{digest}", "ModelDataSource": {"S3DataSource": {
                "S3Uri": "s3://cv-staging-artifacts/models/staging/vision/", "S3DataType": "S3Prefix",
                "CompressionType": "None"}}}}


def expect_current(stub, config="c0", prod_model="m0", digest=D_OLD, status="InService", shadow=None):
    stub.add_response("describe_endpoint", endpoint(status, config), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(config, prod_model, shadow),
                      {"EndpointConfigName": config})
    stub.add_response("describe_model", model(prod_model, digest), {"ModelName": prod_model})


def plan_shadow(cfg, deps, stub, rid="20261127T120000000Z-aaaaaa"):
    """A shadow plan, and the endpoint re-read deploy() makes under the lock (unchanged)."""
    expect_current(stub)
    plan = sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id=rid)
    stub.add_response("describe_endpoint", endpoint("InService", "c0"), {"EndpointName": EP})
    return plan


def test_endpoint_changed_between_plan_and_lock_is_refused(cfg, env):
    deps, stub, _, _ = env
    expect_current(stub)
    plan = sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id="r9")
    stub.add_response("describe_endpoint", endpoint("InService", "someone-else"), {"EndpointName": EP})
    with pytest.raises(sm.LockedError, match="changed since the plan"):
        sm.deploy(cfg, plan, deps)
    stub.assert_no_pending_responses()  # nothing created
    assert deps.ledger.current_lock("staging") is None and deps.ledger.get("staging", "r9") is None


def test_shadow_deploy_request_shapes_and_ledger(cfg, env):
    deps, stub, _, clock = env
    plan = plan_shadow(cfg, deps, stub)
    assert plan.action == "shadow"
    creq = plan.config_request
    # production variant kept as it is, the new model as a shadow at 25 % of its weight
    assert creq["ProductionVariants"] == [{"VariantName": "production", "ModelName": "m0", "InstanceType":
                                           "ml.g5.xlarge", "InitialInstanceCount": 2, "InitialVariantWeight": 1.0}]
    assert creq["ShadowProductionVariants"] == [{"VariantName": "shadow", "ModelName": plan.model,
                                                 "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 2,
                                                 "InitialVariantWeight": 0.25}]
    assert creq["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://cv-staging-artifacts/datacapture/{EP}/"
    assert creq["DataCaptureConfig"]["CaptureOptions"] == [{"CaptureMode": "Output"}]
    assert creq["DataCaptureConfig"]["InitialSamplingPercentage"] == 10
    mreq = plan.model_request
    assert mreq["PrimaryContainer"]["Image"] == f"{REPO}@{D_NEW}"
    assert mreq["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]["S3Uri"] == \
        "s3://cv-staging-artifacts/models/staging/vision/"
    assert mreq["ExecutionRoleArn"] == "arn:aws:iam::111111111111:role/cv-staging-sagemaker"

    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:111111111111:model/x"}, mreq)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/x"}, creq)
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": plan.endpoint_config})
    stub.add_response("describe_endpoint", endpoint("Updating", "c0"), {"EndpointName": EP})
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    rec = sm.deploy(cfg, plan, deps)
    stub.assert_no_pending_responses()
    assert rec.state == "succeeded" and rec.data["shadow_active"] is True
    assert [t["state"] for t in rec.transitions] == ["locked", "creating", "updating", "succeeded"]
    assert rec.data["previous_endpoint_config"] == "c0"
    assert deps.ledger.current_lock("staging") is None
    assert sm.active_shadow(deps.ledger, "staging").id == rec.id
    assert clock.t == 1_800_000_005.0  # one poll


def test_update_rolled_back_by_sagemaker_marks_failed_and_cleans_up(cfg, env):
    deps, stub, _, _ = env
    plan = plan_shadow(cfg, deps, stub)
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/x"}, plan.model_request)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/x"},
                      plan.config_request)
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"}, None)
    stub.add_response("describe_endpoint", endpoint("InService", "c0", "shadow container failed ping"),
                      {"EndpointName": EP})
    # restore: already back on c0 → nothing to update; then the new config and model are deleted
    stub.add_response("describe_endpoint", endpoint("InService", "c0"), {"EndpointName": EP})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": plan.endpoint_config})
    stub.add_response("delete_model", {}, {"ModelName": plan.model})
    with pytest.raises(sm.EndpointFailed, match=r"rolled the update back.*ping.*endpoint already on c0"):
        sm.deploy(cfg, plan, deps)
    stub.assert_no_pending_responses()
    rec = deps.ledger.get("staging", plan.record_id)
    assert rec.state == "failed" and "ping" in rec.reason and rec.data["restore"] == "endpoint already on c0"
    assert deps.ledger.current_lock("staging") is None
    with pytest.raises(NotFoundError):
        sm.active_shadow(deps.ledger, "staging")


def test_endpoint_failed_during_update_restores_previous_config(cfg, env):
    deps, stub, _, _ = env
    plan = plan_shadow(cfg, deps, stub)
    stub.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/x"}, None)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/x"}, None)
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"}, None)
    stub.add_response("describe_endpoint", endpoint("Failed", plan.endpoint_config, "capacity"), {"EndpointName": EP})
    stub.add_response("describe_endpoint", endpoint("Failed", plan.endpoint_config, "capacity"), {"EndpointName": EP})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": "c0"})
    stub.add_response("describe_endpoint", endpoint("InService", "c0"), {"EndpointName": EP})
    stub.add_response("delete_endpoint_config", {}, None)
    stub.add_response("delete_model", {}, None)
    with pytest.raises(sm.EndpointFailed, match=r"endpoint is Failed: capacity.*restored c0"):
        sm.deploy(cfg, plan, deps)
    stub.assert_no_pending_responses()
    assert deps.ledger.get("staging", plan.record_id).state == "failed"


def test_plan_refuses_an_endpoint_in_failed_state(cfg, env):
    deps, stub, _, _ = env
    stub.add_response("describe_endpoint", endpoint("Failed", "c0", "image not found"), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config("c0", "m0"), None)
    stub.add_response("describe_model", model("m0", D_OLD), None)
    with pytest.raises(sm.EndpointFailed, match="is Failed: image not found") as e:
        sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id="r1")
    assert "delete-endpoint" in e.value.hint


def test_plan_noop_and_missing_endpoint(cfg, env):
    deps, stub, _, _ = env
    expect_current(stub, digest=D_NEW)
    assert sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id="r1").noop
    stub.add_client_error("describe_endpoint", "ValidationException",
                          f"Could not find endpoint \"arn:aws:sagemaker:us-east-1:111111111111:endpoint/{EP}\".")
    plan = sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id="r2")
    assert plan.action == "create"
    assert "ShadowProductionVariants" not in plan.config_request
    assert plan.config_request["ProductionVariants"][0]["ModelName"] == plan.model


def _shadow_running(cfg, deps, stub):
    plan = plan_shadow(cfg, deps, stub)
    arn = "arn:aws:sagemaker:us-east-1:1:x/x"
    for op, resp in (("create_model", {"ModelArn": arn}), ("create_endpoint_config", {"EndpointConfigArn": arn}),
                     ("update_endpoint", {"EndpointArn": arn})):
        stub.add_response(op, resp, None)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    return plan, sm.deploy(cfg, plan, deps)


def metric_results(shadow: dict, prod: dict) -> dict:
    out = []
    for prefix, vals in (("s", shadow), ("p", prod)):
        for qid in ("inv", "err", "p50", "p99", "usr"):
            v = vals.get(qid)
            out.append({"Id": prefix + qid, "Label": qid, "StatusCode": "Complete",
                        "Timestamps": [T0] if v is not None else [], "Values": [v] if v is not None else []})
    return {"MetricDataResults": out, "Messages": []}


GOOD_S = {"inv": 50, "err": 0, "p50": 9000, "p99": 30000, "usr": 0.95}
GOOD_P = {"inv": 200, "err": 0, "p50": 10000, "p99": 30000, "usr": 0.95}


def test_gate_shadow_reads_metrics_per_variant(cfg, env):
    deps, stub, cw_stub, clock = env
    plan, _ = _shadow_running(cfg, deps, stub)
    clock.t += 400  # past shadow_bake (5m)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P), None)
    report = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                            clock=clock)
    assert report.status == "PASS", report.to_dict()
    assert report.shadow.latency_p50 == 9000 and report.production.invocations == 200
    cw_stub.assert_no_pending_responses()
    assert [c.name for c in report.checks] == ["bake", "invocations", "latency_p50", "latency_p99", "errors_5xx",
                                               "Accuracy", "variant"]


def _described(config: str, production: str, shadow: str = "shadow") -> dict:
    """DescribeEndpoint as AWS answers it: the variants with their runtime weights."""
    d = endpoint("InService", config)
    d["ProductionVariants"] = [{"VariantName": production, "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                "CurrentInstanceCount": 2, "DesiredInstanceCount": 2}]
    d["ShadowProductionVariants"] = [{"VariantName": shadow, "CurrentWeight": 0.25, "DesiredWeight": 0.25,
                                      "CurrentInstanceCount": 2, "DesiredInstanceCount": 2}]
    return d


def _expected_queries(production: str, period: int = 420) -> list[dict]:
    """The queries of a gate 400 s after the shadow went live (one datapoint: period 7 min)."""
    user = config_mod.UserMetricConfig(namespace="Vision", name="Accuracy", better="higher", tolerance=0.02)
    return sm.metric_queries(EP, "shadow", "s", user, period) + sm.metric_queries(EP, production, "p", user, period)


def test_gate_shadow_passes_on_an_alltraffic_endpoint(env):
    """An endpoint made by the SageMaker SDK: its production variant is `AllTraffic`. The gate reads
    that name from DescribeEndpoint (the Stubber checks the queried dimensions) and PASSes."""
    cfg = config_mod.parse(CONFIG.replace("    wait: 10m\n", "    wait: 10m\n    production_variant: AllTraffic\n"))
    deps, stub, cw_stub, clock = env
    plan, _ = _shadow_running(cfg, deps, stub)
    clock.t += 400
    stub.add_response("describe_endpoint", _described(plan.endpoint_config, "AllTraffic"), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P),
                         {"MetricDataQueries": _expected_queries("AllTraffic"), "StartTime": ANY, "EndTime": ANY,
                          "ScanBy": "TimestampDescending"})
    report = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch,
                            sagemaker=deps.sagemaker, clock=clock)
    assert report.status == "PASS", report.to_dict()
    assert report.production.invocations == 200
    cw_stub.assert_no_pending_responses()


def test_gate_shadow_alltraffic_endpoint_with_alarms_on_another_variant_fails_closed(cfg, env):
    """Config says nothing (alarms watch `production`) but the endpoint's variant is AllTraffic:
    the metrics are read from AllTraffic, and the verdict is FAIL naming the config fix."""
    deps, stub, cw_stub, clock = env
    plan, _ = _shadow_running(cfg, deps, stub)
    clock.t += 400
    stub.add_response("describe_endpoint", _described(plan.endpoint_config, "AllTraffic"), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P),
                         {"MetricDataQueries": _expected_queries("AllTraffic"), "StartTime": ANY, "EndTime": ANY,
                          "ScanBy": "TimestampDescending"})
    report = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch,
                            sagemaker=deps.sagemaker, clock=clock)
    assert report.status == "FAIL"
    assert "targets.sagemaker.production_variant: AllTraffic" in report.explanation


def test_metric_query_shapes():
    qs = sm.metric_queries(EP, "shadow", "s", config_mod.UserMetricConfig(namespace="Vision", name="Accuracy"), 600)
    by_id = {q["Id"]: q["MetricStat"] for q in qs}
    assert by_id["sp99"] == {"Metric": {"Namespace": "AWS/SageMaker", "MetricName": "ModelLatency", "Dimensions": [
        {"Name": "EndpointName", "Value": EP}, {"Name": "VariantName", "Value": "shadow"}]}, "Period": 600,
        "Stat": "p99"}
    assert by_id["serr"]["Metric"]["MetricName"] == "Invocation5XXErrors" and by_id["serr"]["Stat"] == "Sum"
    assert by_id["susr"]["Metric"]["Namespace"] == "Vision" and by_id["susr"]["Stat"] == "Average"
    # validated against the CloudWatch model
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("get_metric_data", {"MetricDataResults": []},
                          {"MetricDataQueries": qs, "StartTime": T0, "EndTime": T0 + dt.timedelta(minutes=10),
                           "ScanBy": "TimestampDescending"})
        client.get_metric_data(MetricDataQueries=qs, StartTime=T0, EndTime=T0 + dt.timedelta(minutes=10),
                               ScanBy="TimestampDescending")


def test_gate_shadow_fails_on_regression_and_waits_during_bake(cfg, env):
    deps, stub, cw_stub, clock = env
    plan, _ = _shadow_running(cfg, deps, stub)
    clock.t += 60
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P), None)
    r = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                       clock=clock)
    assert r.status == "WAIT" and "1m of 5m" in r.explanation
    clock.t += 400
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results({**GOOD_S, "usr": 0.80}, GOOD_P), None)
    r = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                       clock=clock)
    assert r.status == "FAIL" and "Accuracy" in [c.name for c in r.checks if c.status == "FAIL"]
    rec = sm.record_gate(deps.ledger, r, deps.actor)
    assert rec.data["target"] == "sagemaker" and rec.data["status"] == "FAIL"


def test_gate_shadow_fails_closed(cfg, env):
    deps, stub, cw_stub, clock = env
    r = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                       clock=clock)
    assert r.status == "FAIL" and "no shadow variant" in r.explanation
    plan, _ = _shadow_running(cfg, deps, stub)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    cw_stub.add_client_error("get_metric_data", "AccessDenied", "not allowed", http_status_code=403)
    r = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                       clock=clock)
    assert r.status == "FAIL" and "cannot read the shadow metrics" in r.explanation
    stub.add_response("describe_endpoint", endpoint("InService", "someone-elses-config"), {"EndpointName": EP})
    r = sm.gate_shadow(cfg, "staging", ledger=deps.ledger, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                       clock=clock)
    assert r.status == "FAIL" and "someone-elses-config" in r.explanation


PROMOTE_ID = "20261127T130000000Z-bbbbbb"


@pytest.fixture(autouse=True)
def _fixed_ids(monkeypatch):
    monkeypatch.setattr(sm, "new_id", lambda now: PROMOTE_ID)


def _approve(cfg, deps, who, clock):
    return sm.approve_shadow(cfg, deps.ledger, "staging", decision="approve", actor={"name": who}, clock=clock)


def test_promote_shadow_needs_gate_and_two_approvers_then_rollback_restores(cfg, env):
    deps, stub, cw_stub, clock = env
    plan, shadow = _shadow_running(cfg, deps, stub)
    clock.t += 400

    def gate_ok():
        stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
        cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P), None)

    gate_ok()
    with pytest.raises(sm.ShadowRefused, match="approvals") as e:
        sm.promote_shadow(cfg, "staging", deps)
    assert e.value.condition == "approvals"
    from pipeline_tools.release.approvals import ApprovalRefused

    with pytest.raises(ApprovalRefused, match="commit author"):
        _approve(cfg, deps, "carol@example.com", clock)
    _approve(cfg, deps, "dave", clock)
    _approve(cfg, deps, "erin", clock)
    gate_ok()
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(plan.endpoint_config, "m0", plan.model), None)
    stub.add_response("describe_model", model("m0", D_OLD), None)
    dry = sm.promote_shadow(cfg, "staging", deps, dry_run=True)
    assert dry["request"]["ProductionVariants"] == [{"VariantName": "production", "ModelName": plan.model,
                                                     "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 2,
                                                     "InitialVariantWeight": 1.0}]
    assert "ShadowProductionVariants" not in dry["request"]
    gate_ok()
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(plan.endpoint_config, "m0", plan.model), None)
    stub.add_response("describe_model", model("m0", D_OLD), None)
    new_cfg = sm.resource_name(EP, PROMOTE_ID, "c")
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/y"},
                      dry["request"] | {"EndpointConfigName": new_cfg, "Tags": [{"Key": "pt:record",
                                                                                 "Value": PROMOTE_ID}]})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": new_cfg})
    stub.add_response("describe_endpoint", endpoint("InService", new_cfg), {"EndpointName": EP})
    done = sm.promote_shadow(cfg, "staging", deps)
    stub.assert_no_pending_responses()
    assert done["record"]["state"] == "succeeded" and done["record"]["previous_endpoint_config"] == plan.endpoint_config
    with pytest.raises(NotFoundError):
        sm.active_shadow(deps.ledger, "staging")  # promoted: no shadow any more
    assert sorted(r.state for r in deps.ledger.query("staging", "promotion")) == ["refused", "succeeded"]
    # rollback of the promotion: back to the shadow config, and the shadow counts as running again
    stub.add_response("describe_endpoint", endpoint("InService", new_cfg), {"EndpointName": EP})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": plan.endpoint_config})
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    back = sm.rollback(cfg, "staging", deps)
    assert back["operation"] == "promote" and back["to_endpoint_config"] == plan.endpoint_config
    assert sm.active_shadow(deps.ledger, "staging").id == shadow.id


def test_promote_failure_restores_the_shadow_config(cfg, env):
    deps, stub, cw_stub, clock = env
    plan, shadow = _shadow_running(cfg, deps, stub)
    clock.t += 400
    _approve(cfg, deps, "dave", clock)
    _approve(cfg, deps, "erin", clock)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    cw_stub.add_response("get_metric_data", metric_results(GOOD_S, GOOD_P), None)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(plan.endpoint_config, "m0", plan.model), None)
    stub.add_response("describe_model", model("m0", D_OLD), None)
    new_cfg = sm.resource_name(EP, PROMOTE_ID, "c")
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:ec/y"}, None)
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"}, None)
    stub.add_response("describe_endpoint", endpoint("Failed", new_cfg, "shadow model OOM"), {"EndpointName": EP})
    stub.add_response("describe_endpoint", endpoint("Failed", new_cfg, "shadow model OOM"), {"EndpointName": EP})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": plan.endpoint_config})
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    stub.add_response("delete_endpoint_config", {}, {"EndpointConfigName": new_cfg})
    with pytest.raises(sm.EndpointFailed, match=r"OOM.*restored " + plan.endpoint_config):
        sm.promote_shadow(cfg, "staging", deps)
    stub.assert_no_pending_responses()
    promo = deps.ledger.get("staging", PROMOTE_ID)
    assert promo.data["operation"] == "promote" and promo.state == "failed"
    assert sm.active_shadow(deps.ledger, "staging").id == shadow.id  # still shadowing


def test_rollback_drops_the_shadow(cfg, env):
    deps, stub, _, _ = env
    with pytest.raises(NotFoundError, match="nothing to roll back"):
        sm.rollback(cfg, "staging", deps)
    plan, shadow = _shadow_running(cfg, deps, stub)
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    dry = sm.rollback(cfg, "staging", deps, dry_run=True)
    assert dry["to_endpoint_config"] == "c0" and dry["undo"] == shadow.id
    stub.add_response("describe_endpoint", endpoint("InService", plan.endpoint_config), {"EndpointName": EP})
    stub.add_response("update_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
                      {"EndpointName": EP, "EndpointConfigName": "c0"})
    stub.add_response("describe_endpoint", endpoint("InService", "c0"), {"EndpointName": EP})
    out = sm.rollback(cfg, "staging", deps)
    stub.assert_no_pending_responses()
    assert out["record"]["state"] == "succeeded"
    assert deps.ledger.get("staging", shadow.id).data["rolled_back_by"] == out["record"]["id"]
    with pytest.raises(NotFoundError):
        sm.active_shadow(deps.ledger, "staging")
    with pytest.raises(NotFoundError, match="nothing to roll back"):
        sm.rollback(cfg, "staging", deps)


def test_failed_restore_keeps_the_config_the_endpoint_uses(cfg, env):
    deps, stub, _, _ = env
    plan = plan_shadow(cfg, deps, stub)
    arn = "arn:aws:sagemaker:us-east-1:1:x/x"
    stub.add_response("create_model", {"ModelArn": arn}, None)
    stub.add_response("create_endpoint_config", {"EndpointConfigArn": arn}, None)
    stub.add_response("update_endpoint", {"EndpointArn": arn}, None)
    stub.add_response("describe_endpoint", endpoint("Failed", plan.endpoint_config, "bad image"), {"EndpointName": EP})
    stub.add_response("describe_endpoint", endpoint("Failed", plan.endpoint_config, "bad image"), {"EndpointName": EP})
    stub.add_client_error("update_endpoint", "ValidationException", "Cannot update in-progress endpoint")
    # no delete_endpoint_config / delete_model: the endpoint still references them
    with pytest.raises(sm.EndpointFailed, match="could not restore c0"):
        sm.deploy(cfg, plan, deps)
    stub.assert_no_pending_responses()
    rec = deps.ledger.get("staging", plan.record_id)
    assert rec.state == "failed" and rec.data["restore"].startswith("could not restore c0")
    assert deps.ledger.current_lock("staging") is None


def test_production_already_runs_the_digest_with_a_shadow_is_noop(cfg, env):
    deps, stub, _, _ = env
    expect_current(stub, digest=D_NEW, shadow="m-old-shadow")
    plan = sm.plan_deploy(cfg, "staging", f"{REPO}@{D_NEW}", D_NEW, deps.sagemaker, record_id="r1")
    assert plan.noop and "m-old-shadow" in plan.notes[0] and "pt rollback" in plan.notes[0]
