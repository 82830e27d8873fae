"""SageMakerTarget (weighted mode) on moto server: models, endpoint configs, CreateEndpoint,
DescribeEndpoint and UpdateEndpointWeightsAndCapacities are moto's, over HTTP.

moto 5.2.x has no UpdateEndpoint (HTTP 500). `update_endpoint_on_moto` answers that one call as the
API reference does (`{"EndpointArn": …}`) from a `before-call` hook and applies its effect on the
moto server through the API moto has (DeleteEndpoint + CreateEndpoint on the new config); every
other request goes to moto unchanged.

The endpoint's production variant is `AllTraffic` (an endpoint made with the SageMaker SDK): the
release keeps that name, so the stage alarms (which watch it) stay valid after `finish`."""

from __future__ import annotations

import hashlib

import pytest
from botocore.awsrequest import AWSResponse

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import PtError, UsageError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.release.target import Placement, Release, Target
from pipeline_tools.targets import TargetEnv, target_class
from pipeline_tools.targets import sagemaker_target as smt
from tests.fakes import Clock

ACCOUNT = "111111111111"
REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/cv-model"
EP = "cv-staging-vision"
BUCKET = "cv-staging-artifacts"
PREFIX = "models/staging/vision"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/cv-staging-sagemaker"

CONFIG = f"""\
project: cv
region: us-east-1
images:
  model: {{context: .}}
stages:
  staging:
    account: "{ACCOUNT}"
    branch: integration
    gate: {{alarms: [], allow_no_alarms: true, poll: 0.1s}}
targets:
  sagemaker:
    endpoint: vision
    image: model
    model_artifacts: "models/{{stage}}/vision"
    data_capture: 5
    wait: 30s
    production_variant: AllTraffic
"""


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"cv-{n}".encode()).hexdigest()


def update_endpoint_on_moto(client, raw):
    """UpdateEndpoint for moto (see the module docstring); returns the list of calls it answered."""
    calls: list[dict] = []

    def keep(params, context, **_kw):  # the API parameters, before serialization
        context["update_endpoint"] = dict(params)

    def handler(context, **_kw):
        params = context["update_endpoint"]
        name, config = params["EndpointName"], params["EndpointConfigName"]
        calls.append(params)
        raw.delete_endpoint(EndpointName=name)
        raw.create_endpoint(EndpointName=name, EndpointConfigName=config)
        arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}"
        return AWSResponse("https://moto", 200, {}, None), {"EndpointArn": arn, "ResponseMetadata": {}}

    client.meta.events.register("before-parameter-build.sagemaker.UpdateEndpoint", keep)
    client.meta.events.register("before-call.sagemaker.UpdateEndpoint", handler)
    return calls


@pytest.fixture
def env(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("PT_SAGEMAKER_POLL", "0.01")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"\x01" * 4096)
    art.push(s3, tmp_path / "model", art.Location.of(BUCKET, PREFIX))
    cfg = config_mod.parse(CONFIG)
    clock = Clock()
    logs: list[str] = []
    tenv = TargetEnv(client=aws.client, clock=clock, sleep=clock.advance, log=logs.append)
    from pipeline_tools.core.aws import AwsFactory

    raw = AwsFactory(region="us-east-1", endpoint=aws.endpoint).client("sagemaker")  # not hooked
    calls = update_endpoint_on_moto(aws.client("sagemaker"), raw)
    return {"cfg": cfg, "env": tenv, "sm": raw, "calls": calls, "logs": logs}


def sdk_endpoint(smc, n: int = 1) -> None:
    """What the SageMaker SDK leaves: one production variant `AllTraffic` (pt-named model/config)."""
    smc.create_model(ModelName=f"{EP}-m0", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": f"{REPO}@{digest(n)}"})
    smc.create_endpoint_config(EndpointConfigName=f"{EP}-c0", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": f"{EP}-m0", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}])
    smc.create_endpoint(EndpointName=EP, EndpointConfigName=f"{EP}-c0")


def target(e) -> smt.SageMakerTarget:
    return target_class("sagemaker")(e["cfg"], "staging", "vision", e["env"])


def release(n: int, rid: str) -> Release:
    return Release(f"{REPO}@{digest(n)}", digest(n), rid, "model")


def weights(smc) -> dict[str, float]:
    return {v["VariantName"]: v.get("CurrentWeight", 0.0)
            for v in smc.describe_endpoint(EndpointName=EP)["ProductionVariants"]}


def test_registry_and_protocol(env):
    t = target(env)
    assert isinstance(t, Target) and t.id == "sagemaker:vision" and t.weighted is True
    assert smt.names(env["cfg"], "staging") == ["vision"]
    with pytest.raises(UsageError, match="no SageMaker endpoint 'other'"):
        target_class("sagemaker")(env["cfg"], "staging", "other", env["env"])


def test_weighted_release_on_an_alltraffic_endpoint(env):
    smc = env["sm"]
    sdk_endpoint(smc)
    t = target(env)
    t.check()  # artifacts match their manifest; the endpoint's variant is the one the alarms watch
    placement = t.current()
    assert placement.exists and placement.version == f"{EP}-c0" and placement.digest == digest(1)
    assert placement.data["production_variant"] == "AllTraffic" and placement.weights == {}
    assert t.unchanged(placement, release(1, "r0")) is False  # the model's artifacts are not the configured ones

    cand = t.prepare(release(2, "20261205T080000000Z-aaaaaa"), placement)
    assert cand.version == "candidate" and cand.data["production_variant"] == "AllTraffic"
    ec = smc.describe_endpoint_config(EndpointConfigName=cand.data["endpoint_config"])
    assert [(v["VariantName"], v["ModelName"], v["InitialVariantWeight"]) for v in ec["ProductionVariants"]] == \
        [("AllTraffic", f"{EP}-m0", 1.0), ("candidate", cand.data["model"], 0.0)]
    assert ec["DataCaptureConfig"]["CaptureOptions"] == [{"CaptureMode": "Output"}]
    assert ec["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/datacapture/{EP}/"
    image = smc.describe_model(ModelName=cand.data["model"])["PrimaryContainer"]["Image"]
    assert image == f"{REPO}@{digest(2)}"
    assert env["calls"] == [{"EndpointName": EP, "EndpointConfigName": cand.data["endpoint_config"]}]

    t.shift(placement, cand, 10)
    assert weights(smc) == {"AllTraffic": 90.0, "candidate": 10.0}
    mid = t.current()
    assert mid.weights == {"AllTraffic": 90.0, "candidate": 10.0} and not mid.serves(digest(1))
    assert t.alarm_dimensions(cand) == [{"Name": "EndpointName", "Value": EP},
                                        {"Name": "VariantName", "Value": "candidate"}]
    t.shift(placement, cand, 100)
    assert weights(smc) == {"AllTraffic": 0.0, "candidate": 100.0}

    removed = t.finish(placement, cand)
    live = smc.describe_endpoint(EndpointName=EP)
    ec = smc.describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])
    # the candidate's model is the only variant, under the real production name the alarms watch
    assert [(v["VariantName"], v["ModelName"]) for v in ec["ProductionVariants"]] == \
        [("AllTraffic", cand.data["model"])]
    assert sorted(removed) == sorted([f"{EP}-c0", cand.data["endpoint_config"], f"{EP}-m0"])
    assert {c["EndpointConfigName"] for c in smc.list_endpoint_configs()["EndpointConfigs"]} == \
        {live["EndpointConfigName"]}
    assert {m["ModelName"] for m in smc.list_models()["Models"]} == {cand.data["model"]}
    after = t.current()
    assert after.serves(digest(2)) and after.data["production_variant"] == "AllTraffic"
    assert t.unchanged(after, release(2, "r9"))


def test_restore_mid_shift_puts_the_recorded_config_back(env):
    smc = env["sm"]
    sdk_endpoint(smc)
    t = target(env)
    placement = t.current()
    cand = t.prepare(release(2, "20261205T081000000Z-bbbbbb"), placement)
    t.shift(placement, cand, 50)
    # the engine recorded the placement; recover in another process rebuilds it from the record
    again = Placement.from_dict(placement.to_dict())
    t.restore(again)
    live = smc.describe_endpoint(EndpointName=EP)
    assert live["EndpointConfigName"] == f"{EP}-c0" and weights(smc) == {"AllTraffic": 1.0}
    # what the release made is gone; what ran before is untouched
    assert {c["EndpointConfigName"] for c in smc.list_endpoint_configs()["EndpointConfigs"]} == {f"{EP}-c0"}
    assert {m["ModelName"] for m in smc.list_models()["Models"]} == {f"{EP}-m0"}
    t.restore(again)  # idempotent: nothing left to do, no call made
    assert len(env["calls"]) == 2


def test_first_release_creates_the_endpoint_and_restore_removes_it(env):
    smc = env["sm"]
    t = target(env)
    placement = t.current()
    assert placement == Placement("sagemaker:vision", EP, False)
    cand = t.prepare(release(1, "20261205T082000000Z-cccccc"), placement)
    assert cand.data["mode"] == "create" and cand.version == "AllTraffic"
    live = smc.describe_endpoint(EndpointName=EP)
    assert live["EndpointStatus"] == "InService" and live["EndpointConfigName"] == cand.data["endpoint_config"]
    t.shift(placement, cand, 100)  # nothing to move: the endpoint is the candidate
    assert t.describe()["production_variant"] == "AllTraffic" and t.describe()["digest"] == digest(1)
    t.restore(placement)
    assert smc.list_endpoints()["Endpoints"] == []
    assert smc.list_endpoint_configs()["EndpointConfigs"] == [] and smc.list_models()["Models"] == []


def test_check_refuses_when_alarms_watch_another_variant(env):
    smc = env["sm"]
    sdk_endpoint(smc)
    cfg = config_mod.parse(CONFIG.replace("    production_variant: AllTraffic\n", ""))
    t = target_class("sagemaker")(cfg, "staging", "vision", env["env"])
    with pytest.raises(UsageError, match="production variant is AllTraffic but the stage alarms watch production") \
            as e:
        t.check()
    assert e.value.exit_code == 2 and "targets.sagemaker.production_variant: AllTraffic" in e.value.hint
    assert "warning" in t.describe()


def test_check_refuses_artifacts_without_manifest(env):
    cfg = config_mod.parse(CONFIG.replace('"models/{stage}/vision"', '"models/{stage}/other"'))
    t = target_class("sagemaker")(cfg, "staging", "vision", env["env"])
    with pytest.raises(PtError, match=f"no manifest at s3://{BUCKET}/models/staging/other") as e:
        t.check()
    assert "pt artifacts push" in e.value.hint
    assert env["sm"].list_models()["Models"] == []
