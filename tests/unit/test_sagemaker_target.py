"""SageMakerTarget: the pure helpers, and what moto lacks (UpdateEndpoint, ShadowProductionVariants,
endpoints that stay Updating or go Failed, CloudWatch percentiles) with botocore Stubber — request
and response shapes as in the SageMaker / CloudWatch API reference, validated against the service
model. The artifacts manifest is real (S3 in in-process moto)."""

from __future__ import annotations

import datetime as dt
import math

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipeline_tools.core import config as config_mod
from pipeline_tools.core import names
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.ops import artifacts as art
from pipeline_tools.release.target import Candidate, Placement, Release
from pipeline_tools.targets import TargetEnv
from pipeline_tools.targets import sagemaker as sm
from pipeline_tools.targets import sagemaker_target as smt
from tests.fakes import Clock

ACCOUNT = "111111111111"
EP = "cv-staging-vision"
REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/cv-model"
D_OLD = "sha256:" + "a" * 64
D_NEW = "sha256:" + "b" * 64
RID = "20261205T090000000Z-aaaaaa"
T0 = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)

CONFIG = f"""\
project: cv
region: us-east-1
images:
  model: {{context: .}}
stages:
  staging:
    account: "{ACCOUNT}"
    branch: integration
    gate: {{alarms: [], allow_no_alarms: true, poll: 150s}}
targets:
  sagemaker:
    endpoint: vision
    image: model
    model_artifacts: "models/{{stage}}/vision"
    instance_type: ml.g5.xlarge
    shadow_sampling: 25
    data_capture: 10
    wait: 10m
    shadow_bake: 5m
    shadow_wait: 10m
    production_variant: AllTraffic
    mode: MODE
    thresholds:
      min_invocations: 10
"""


# --- pure ----------------------------------------------------------------------------------------


def test_image_digest():
    assert smt.image_digest(f"{REPO}@{D_NEW}") == D_NEW
    assert smt.image_digest(f"{REPO}:latest") is None and smt.image_digest(None) is None


def test_live_variants_take_runtime_weights():
    ec = {"ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m0", "InitialVariantWeight": 1.0},
                                 {"VariantName": "candidate", "ModelName": "m1", "InitialVariantWeight": 0.0}]}
    desc = {"ProductionVariants": [{"VariantName": "AllTraffic", "CurrentWeight": 70.0},
                                   {"VariantName": "candidate", "DesiredWeight": 30.0}]}
    got = sm.live_variants(desc, ec)
    assert [(v["VariantName"], v["CurrentWeight"]) for v in got] == [("AllTraffic", 70.0), ("candidate", 30.0)]
    # DescribeEndpoint without variants (an old answer): the config's initial weights
    assert [v["CurrentWeight"] for v in sm.live_variants({}, ec)] == [1.0, 0.0]


def test_routing():
    one = [{"VariantName": "AllTraffic", "CurrentWeight": 1.0}]
    assert smt.routing(one, []) == {}
    two = [{"VariantName": "AllTraffic", "CurrentWeight": 3.0}, {"VariantName": "candidate", "CurrentWeight": 1.0}]
    assert smt.routing(two, []) == {"AllTraffic": 75.0, "candidate": 25.0}
    assert smt.routing(one, [{"VariantName": "shadow", "InitialVariantWeight": 0.25}]) == \
        {"AllTraffic": 100.0, "shadow": 25.0}


@pytest.mark.parametrize("percent", [0, 1, 10, 50, 99, 100])
def test_weights_request(percent):
    req = smt.weights_request("AllTraffic", "candidate", percent)
    assert req == [{"VariantName": "AllTraffic", "DesiredWeight": 100.0 - percent},
                   {"VariantName": "candidate", "DesiredWeight": float(percent)}]


@pytest.mark.parametrize("percent", [-1, 101])
def test_weights_request_out_of_range(percent):
    with pytest.raises(ValueError):
        smt.weights_request("a", "b", percent)


def test_superseded_keeps_what_runs_and_what_pt_did_not_make():
    placement = Placement("sagemaker:vision", EP, True, "StackConfig-X1",
                          data={"variants": [{"name": "AllTraffic", "model": "StackModel-Y", "weight": 1.0}]})
    cand = Candidate("sagemaker:vision", "candidate", D_NEW, {"endpoint_config": f"{EP}-c1", "model": f"{EP}-m1"})
    live = {"EndpointConfigName": f"{EP}-f1", "variants": [{"name": "AllTraffic", "model": f"{EP}-m1"}]}
    # the stack's config and model (CloudFormation names) are never deleted
    assert smt.superseded(EP, live, placement, cand) == ([f"{EP}-c1"], [])
    mine = Placement("sagemaker:vision", EP, True, f"{EP}-c0",
                     data={"variants": [{"name": "AllTraffic", "model": f"{EP}-m0", "weight": 1.0}]})
    assert smt.superseded(EP, live, mine, cand) == ([f"{EP}-c0", f"{EP}-c1"], [f"{EP}-m0"])
    # a retried finish: the live config is never deleted
    assert smt.superseded(EP, {**live, "EndpointConfigName": f"{EP}-c1"}, mine, cand)[0] == [f"{EP}-c0"]


def test_variant_names_come_from_one_place():
    assert names.sagemaker_production_variant() == "production"
    assert names.sagemaker_production_variant("AllTraffic") == "AllTraffic"
    assert names.sagemaker_candidate_variant({"AllTraffic"}) == "candidate"
    assert names.sagemaker_candidate_variant({"candidate", "candidate-2"}) == "candidate-3"


def test_names_of_the_stage():
    cfg = config_mod.parse(CONFIG.replace("MODE", "weighted"))
    assert smt.names(cfg, "staging") == ["vision"]
    no = config_mod.parse(CONFIG.replace("MODE", "weighted").replace("    mode:", "    stages: [prod]\n    mode:"))
    assert smt.names(no, "staging") == []


# --- Stubber: shadow mode and failure paths --------------------------------------------------------


def described(config: str, status: str = "InService", variants=(("AllTraffic", 1.0),), shadow: str | None = None,
              reason: str | None = None) -> dict:
    d = {"EndpointName": EP, "EndpointArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{EP}",
         "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": T0, "LastModifiedTime": T0,
         "ProductionVariants": [{"VariantName": n, "CurrentWeight": w, "DesiredWeight": w, "CurrentInstanceCount": 1,
                                 "DesiredInstanceCount": 1} for n, w in variants]}
    if shadow:
        d["ShadowProductionVariants"] = [{"VariantName": shadow, "CurrentWeight": 0.25, "DesiredWeight": 0.25}]
    if reason:
        d["FailureReason"] = reason
    return d


def endpoint_config(name: str, variants: list[tuple[str, str, float]]) -> dict:
    return {"EndpointConfigName": name, "EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:"
                                                             f"endpoint-config/{name}", "CreationTime": T0,
            "ProductionVariants": [{"VariantName": n, "ModelName": m, "InstanceType": "ml.g5.xlarge",
                                    "InitialInstanceCount": 1, "InitialVariantWeight": w} for n, m, w in variants]}


def model(name: str, digest: str) -> dict:
    return {"ModelName": name, "ModelArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{name}",
            "CreationTime": T0, "PrimaryContainer": {"Image": f"{REPO}@{digest}", "ModelDataSource": {
                "S3DataSource": {"S3Uri": "s3://cv-staging-artifacts/models/staging/vision/",
                                 "S3DataType": "S3Prefix", "CompressionType": "None"}}}}


ARN = {"create_model": {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/x"},
       "create_endpoint_config": {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/x"},
       "update_endpoint": {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
       "update_endpoint_weights_and_capacities": {"EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/x"},
       "delete_endpoint_config": {}, "delete_model": {}}


@pytest.fixture
def world(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("PT_SAGEMAKER_POLL", "200s")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="cv-staging-artifacts")
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "w.bin").write_bytes(b"w" * 100)
        art.push(s3, tmp_path / "m", art.Location.of("cv-staging-artifacts", "models/staging/vision"))
        client = boto3.client("sagemaker", region_name="us-east-1")
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        clock = Clock()
        logs: list[str] = []
        env = TargetEnv(client={"sagemaker": client, "cloudwatch": cw, "s3": s3}.__getitem__, clock=clock,
                        sleep=clock.advance, log=logs.append)
        with Stubber(client) as stub, Stubber(cw) as cw_stub:
            yield {"env": env, "stub": stub, "cw": cw_stub, "clock": clock, "logs": logs}


def make(world, mode: str) -> smt.SageMakerTarget:
    return smt.SageMakerTarget(config_mod.parse(CONFIG.replace("MODE", mode)), "staging", "vision", world["env"])


def expect_current(stub, config=f"{EP}-c0", prod_model=f"{EP}-m0", digest=D_OLD):
    stub.add_response("describe_endpoint", described(config), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(config, [("AllTraffic", prod_model, 1.0)]),
                      {"EndpointConfigName": config})
    stub.add_response("describe_model", model(prod_model, digest), {"ModelName": prod_model})


def call(stub, op: str, params: dict | None = None) -> None:
    stub.add_response(op, ARN[op], params)


def queries(start: float, now: float, production: str = "AllTraffic") -> list[dict]:
    t0 = math.floor(start / 60) * 60
    period = max(60, math.ceil((now - t0) / 60) * 60)
    return sm.metric_queries(EP, "shadow", "s", None, period) + sm.metric_queries(EP, production, "p", None, period)


def metrics(stub, start, now, shadow: dict, prod: dict) -> None:
    out = []
    for prefix, vals in (("s", shadow), ("p", prod)):
        for qid in ("inv", "err", "p50", "p99"):
            v = vals.get(qid)
            out.append({"Id": prefix + qid, "Label": qid, "StatusCode": "Complete",
                        "Timestamps": [T0] if v is not None else [], "Values": [v] if v is not None else []})
    stub.add_response("get_metric_data", {"MetricDataResults": out, "Messages": []},
                      {"MetricDataQueries": queries(start, now), "StartTime": ANY, "EndTime": ANY,
                       "ScanBy": "TimestampDescending"})


GOOD_S = {"inv": 50, "err": 0, "p50": 9000, "p99": 30000}
GOOD_P = {"inv": 200, "err": 0, "p50": 10000, "p99": 30000}
SLOW_S = {"inv": 50, "err": 0, "p50": 90000, "p99": 300000}


def prepare_shadow(world, t):
    stub = world["stub"]
    expect_current(stub)
    placement = t.current()
    shadow_cfg, shadow_model = sm.resource_name(EP, RID, "c"), sm.resource_name(EP, RID, "m")
    call(stub, "create_model", {"ModelName": shadow_model, "ExecutionRoleArn": ANY, "PrimaryContainer": ANY,
                                "Tags": ANY})
    call(stub, "create_endpoint_config", {
        "EndpointConfigName": shadow_cfg, "Tags": ANY,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": f"{EP}-m0", "InstanceType": "ml.g5.xlarge",
                                "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}],
        "ShadowProductionVariants": [{"VariantName": "shadow", "ModelName": shadow_model,
                                      "InstanceType": "ml.g5.xlarge", "InitialInstanceCount": 1,
                                      "InitialVariantWeight": 0.25}],
        "DataCaptureConfig": {"EnableCapture": True, "InitialSamplingPercentage": 10,
                              "DestinationS3Uri": f"s3://cv-staging-artifacts/datacapture/{EP}/",
                              "CaptureOptions": [{"CaptureMode": "Output"}], "CaptureContentTypeHeader": ANY}})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": shadow_cfg})
    stub.add_response("describe_endpoint", described(shadow_cfg, "Updating"), {"EndpointName": EP})
    stub.add_response("describe_endpoint", described(shadow_cfg, shadow="shadow"), {"EndpointName": EP})
    cand = t.prepare(Release(f"{REPO}@{D_NEW}", D_NEW, RID, "model"), placement)
    return placement, cand, shadow_cfg, shadow_model


def test_shadow_mode_deploy_compare_promote_finish(world):
    """The shadow flow through the protocol: prepare = shadow deployed (waited on: Updating →
    InService), smoke = the comparison (WAIT during the bake, then PASS, read on the real
    production variant AllTraffic), shift(100) = promote under AllTraffic, finish = cleanup."""
    t = make(world, "shadow")
    stub, clock = world["stub"], world["clock"]
    assert t.weighted is False
    start = clock()
    placement, cand, shadow_cfg, shadow_model = prepare_shadow(world, t)
    assert clock() == start + 200  # one poll while Updating
    assert cand.version == "shadow" and cand.data["mode"] == "shadow" and cand.data["live_at"] == clock()
    assert t.alarm_dimensions(cand) == [{"Name": "EndpointName", "Value": EP},
                                        {"Name": "VariantName", "Value": "shadow"}]

    live = clock()
    for at in (live, live + 150, live + 300):  # gate poll 150 s, bake 5 m
        metrics(world["cw"], live, at, GOOD_S, GOOD_P)
    t.smoke(cand)
    world["cw"].assert_no_pending_responses()
    assert clock() == live + 300

    promoted = sm.resource_name(EP, RID, "p")
    call(stub, "create_endpoint_config", {
        "EndpointConfigName": promoted, "Tags": ANY, "DataCaptureConfig": ANY,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": shadow_model, "InstanceType": "ml.g5.xlarge",
                                "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}]})
    stub.add_response("describe_endpoint", described(shadow_cfg, shadow="shadow"), {"EndpointName": EP})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": promoted})
    stub.add_response("describe_endpoint", described(promoted), {"EndpointName": EP})
    t.shift(placement, cand, 100)

    stub.add_response("describe_endpoint", described(promoted), {"EndpointName": EP})
    stub.add_response("describe_endpoint_config", endpoint_config(promoted, [("AllTraffic", shadow_model, 1.0)]),
                      {"EndpointConfigName": promoted})
    stub.add_response("describe_model", model(shadow_model, D_NEW), {"ModelName": shadow_model})
    call(stub, "delete_endpoint_config", {"EndpointConfigName": f"{EP}-c0"})
    call(stub, "delete_endpoint_config", {"EndpointConfigName": shadow_cfg})
    call(stub, "delete_model", {"ModelName": f"{EP}-m0"})
    assert t.finish(placement, cand) == [f"{EP}-c0", shadow_cfg, f"{EP}-m0"]
    stub.assert_no_pending_responses()


def test_shadow_comparison_fail_drops_the_shadow(world):
    t = make(world, "shadow")
    stub, clock = world["stub"], world["clock"]
    _, cand, shadow_cfg, shadow_model = prepare_shadow(world, t)
    live = clock()
    metrics(world["cw"], live, live, SLOW_S, GOOD_P)  # a regression FAILs at once, bake or not
    # the rollback: endpoint back on its config (waited on), the shadow's config and model deleted
    stub.add_response("describe_endpoint", described(shadow_cfg, shadow="shadow"), {"EndpointName": EP})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": f"{EP}-c0"})
    stub.add_response("describe_endpoint", described(f"{EP}-c0"), {"EndpointName": EP})
    call(stub, "delete_endpoint_config", {"EndpointConfigName": shadow_cfg})
    call(stub, "delete_model", {"ModelName": shadow_model})
    with pytest.raises(DeployFailed, match=r"shadow comparison FAIL: shadow 90\.0 ms > 1\.2 × production") as e:
        t.smoke(cand)
    assert f"shadow dropped: restored {EP}-c0" in e.value.message
    stub.assert_no_pending_responses()
    world["cw"].assert_no_pending_responses()


def test_shadow_metrics_unreadable_fails_closed(world):
    t = make(world, "shadow")
    stub = world["stub"]
    _, cand, shadow_cfg, _model = prepare_shadow(world, t)
    world["cw"].add_client_error("get_metric_data", "AccessDenied", "not allowed")
    stub.add_response("describe_endpoint", described(shadow_cfg, shadow="shadow"), {"EndpointName": EP})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": f"{EP}-c0"})
    stub.add_response("describe_endpoint", described(f"{EP}-c0"), {"EndpointName": EP})
    call(stub, "delete_endpoint_config", None)
    call(stub, "delete_model", None)
    with pytest.raises(DeployFailed, match=r"cannot read the shadow metrics .*fails closed"):
        t.smoke(cand)
    stub.assert_no_pending_responses()


def test_weighted_prepare_that_goes_failed_is_undone(world):
    t = make(world, "weighted")
    stub = world["stub"]
    expect_current(stub)
    placement = t.current()
    cfg_name, model_name = sm.resource_name(EP, RID, "c"), sm.resource_name(EP, RID, "m")
    call(stub, "create_model")
    call(stub, "create_endpoint_config", {
        "EndpointConfigName": cfg_name, "Tags": ANY, "DataCaptureConfig": ANY,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": f"{EP}-m0", "InstanceType": "ml.g5.xlarge",
             "InitialInstanceCount": 1, "InitialVariantWeight": 1.0},
            {"VariantName": "candidate", "ModelName": model_name, "InstanceType": "ml.g5.xlarge",
             "InitialInstanceCount": 1, "InitialVariantWeight": 0.0}]})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": cfg_name})
    stub.add_response("describe_endpoint", described(cfg_name, "Failed", reason="capacity"), {"EndpointName": EP})
    # undo: back on c0, then the release's own config and model are deleted
    stub.add_response("describe_endpoint", described(cfg_name, "Failed", reason="capacity"), {"EndpointName": EP})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": f"{EP}-c0"})
    stub.add_response("describe_endpoint", described(f"{EP}-c0"), {"EndpointName": EP})
    call(stub, "delete_endpoint_config", {"EndpointConfigName": cfg_name})
    call(stub, "delete_model", {"ModelName": model_name})
    with pytest.raises(sm.EndpointFailed, match=rf"endpoint is Failed: capacity; restored {EP}-c0"):
        t.prepare(Release(f"{REPO}@{D_NEW}", D_NEW, RID, "model"), placement)
    stub.assert_no_pending_responses()


def test_shift_waits_with_a_deadline(world):
    """UpdateEndpointWeightsAndCapacities, then an endpoint that stays Updating: the injected clock
    reaches `wait` (10 m) and the shift fails; no real time passes."""
    t = make(world, "weighted")
    stub, clock = world["stub"], world["clock"]
    placement = Placement("sagemaker:vision", EP, True, f"{EP}-c0", D_OLD, {},
                          {"production_variant": "AllTraffic"})
    cand = Candidate("sagemaker:vision", "candidate", D_NEW,
                     {"mode": "weighted", "production_variant": "AllTraffic", "endpoint_config": f"{EP}-c1",
                      "deploy_id": RID, "model": f"{EP}-m1"})
    stub.add_response("describe_endpoint", described(f"{EP}-c1", variants=(("AllTraffic", 1.0), ("candidate", 0.0))),
                      {"EndpointName": EP})
    call(stub, "update_endpoint_weights_and_capacities", {
        "EndpointName": EP, "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredWeight": 75.0},
                                                            {"VariantName": "candidate", "DesiredWeight": 25.0}]})
    start = clock()
    for _ in range(4):  # 0, 200, 400, 600 s
        stub.add_response("describe_endpoint", described(f"{EP}-c1", "Updating"), {"EndpointName": EP})
    with pytest.raises(sm.EndpointFailed, match="still Updating after 10m"):
        t.shift(placement, cand, 25)
    assert clock() - start == 600
    stub.assert_no_pending_responses()


def test_describe_never_raises(world):
    t = make(world, "weighted")
    world["stub"].add_client_error("describe_endpoint", "ThrottlingException", "slow down")
    out = t.describe()
    assert out["target"] == "sagemaker:vision" and "ThrottlingException" in out["error"]


def test_shadow_comparison_still_waiting_at_the_deadline_fails(world):
    """No shadow requests: WAIT through the bake (5 m) and shadow_wait (10 m), then the release
    fails and the shadow is dropped; WAIT is never a PASS."""
    t = make(world, "shadow")
    stub, clock = world["stub"], world["clock"]
    _, cand, shadow_cfg, shadow_model = prepare_shadow(world, t)
    live = clock()
    idle = {"inv": None, "err": None, "p50": None, "p99": None}
    for k in range(7):  # polls at 0, 150, …, 900 s
        metrics(world["cw"], live, live + 150 * k, idle, GOOD_P)
    stub.add_response("describe_endpoint", described(shadow_cfg, shadow="shadow"), {"EndpointName": EP})
    call(stub, "update_endpoint", {"EndpointName": EP, "EndpointConfigName": f"{EP}-c0"})
    stub.add_response("describe_endpoint", described(f"{EP}-c0"), {"EndpointName": EP})
    call(stub, "delete_endpoint_config", {"EndpointConfigName": shadow_cfg})
    call(stub, "delete_model", {"ModelName": shadow_model})
    with pytest.raises(DeployFailed, match="still WAIT after 15m") as e:
        t.smoke(cand)
    assert "shadow_wait" in e.value.hint
    assert clock() - live == 900
    stub.assert_no_pending_responses()
    world["cw"].assert_no_pending_responses()


def test_weighted_smoke_has_nothing_to_run(world):
    t = make(world, "weighted")
    t.smoke(Candidate("sagemaker:vision", "candidate", D_NEW, {"mode": "weighted"}))
    world["stub"].assert_no_pending_responses()


def test_config_fields_and_their_errors():
    cfg = config_mod.parse(CONFIG.replace("MODE", "shadow"))
    t = cfg.targets.sagemaker
    assert t.mode == "shadow" and t.production_variant == "AllTraffic" and t.shadow_wait == 600
    plain = config_mod.parse(CONFIG.replace("MODE", "weighted").replace("    production_variant: AllTraffic\n", ""))
    assert plain.targets.sagemaker.production_variant is None and sm.production_variant_name(plain, "staging") == \
        "production"
    for bad, where in (("    mode: blue-green\n", "targets.sagemaker.mode"),
                       ("    production_variant: All_Traffic\n", "targets.sagemaker.production_variant")):
        text = CONFIG.replace("    mode: MODE\n", "").replace("    production_variant: AllTraffic\n", bad)
        with pytest.raises(config_mod.ConfigError) as e:
            config_mod.parse(text)
        assert where in str(e.value)
