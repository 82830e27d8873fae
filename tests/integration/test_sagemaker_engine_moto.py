"""SageMakerTarget driven by the release engine (release/engine.py) on moto server: a canary release
of an `AllTraffic` endpoint that succeeds, and one the candidate's own 5XX errors roll back
(the engine reads them on the target's alarm_dimensions). UpdateEndpoint is answered as in
test_sagemaker_target_moto.py (moto lacks it). Skipped while the engine is not in the tree."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release.ledger import Ledger, ensure_table
from pipeline_tools.release.target import Release
from pipeline_tools.targets import TargetEnv, target_class

from . import test_sagemaker_target_moto as tm
from .test_sagemaker_target_moto import CONFIG, EP, REPO, digest, sdk_endpoint

engine = pytest.importorskip("pipeline_tools.release.engine")

CANARY = CONFIG.replace("gate: {alarms: [], allow_no_alarms: true, poll: 0.1s}",
                        "gate: {alarms: [], allow_no_alarms: true, poll: 1s}\n"
                        "    deploy: {strategy: canary, percent: 10, interval: 5s, bake: 5s}")


world = tm.env  # the SageMakerTarget fixture: artifacts pushed, UpdateEndpoint answered


@pytest.fixture
def release_env(world, aws):
    env = world
    ensure_table(aws.client("dynamodb"), "cv-ledger", project="cv", stage="staging", local=True)
    cfg = config_mod.parse(CANARY)
    tenv: TargetEnv = env["env"]
    target = target_class("sagemaker")(cfg, "staging", "vision", tenv)
    deps = engine.EngineDeps(cloudwatch=aws.client("cloudwatch"),
                             ledger=Ledger(aws.client("dynamodb"), "cv-ledger", clock=tenv.clock),
                             clock=tenv.clock, sleep=tenv.sleep, log=tenv.log)
    return {**env, "cfg": cfg, "target": target, "deps": deps, "aws": aws}


def release_of(n: int) -> Release:
    return Release(f"{REPO}@{digest(n)}", digest(n), "unused", "model")


def test_canary_release_succeeds_and_keeps_the_variant_name(release_env):
    e = release_env
    sdk_endpoint(e["sm"])
    plan = engine.plan(e["cfg"], "staging", [e["target"]], release_of(2))
    assert [s.percent for s in plan.steps] == [10, 100]
    result = engine.run(plan, e["deps"])
    assert result.state == "succeeded"
    live = e["sm"].describe_endpoint(EndpointName=EP)
    assert [v["VariantName"] for v in live["ProductionVariants"]] == ["AllTraffic"]
    model = e["sm"].describe_endpoint_config(EndpointConfigName=live["EndpointConfigName"])["ProductionVariants"][0]
    assert e["sm"].describe_model(ModelName=model["ModelName"])["PrimaryContainer"]["Image"] == f"{REPO}@{digest(2)}"
    assert {m["ModelName"] for m in e["sm"].list_models()["Models"]} == {model["ModelName"]}


def test_candidate_errors_roll_the_canary_back(release_env):
    e = release_env
    sdk_endpoint(e["sm"])
    plan = engine.plan(e["cfg"], "staging", [e["target"]], release_of(2))
    at = dt.datetime.fromtimestamp(e["env"].clock() + 2, dt.UTC)
    e["aws"].client("cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[{
        "MetricName": "Invocation5XXErrors", "Value": 3, "Timestamp": at,
        "Dimensions": [{"Name": "EndpointName", "Value": EP}, {"Name": "VariantName", "Value": "candidate"}]}])
    with pytest.raises(DeployFailed, match=r"rolled back: .*Invocation5XXErrors=3 on the candidate"):
        engine.run(plan, e["deps"])
    live = e["sm"].describe_endpoint(EndpointName=EP)
    assert live["EndpointConfigName"] == f"{EP}-c0"
    assert [(v["VariantName"], v.get("CurrentWeight")) for v in live["ProductionVariants"]] == [("AllTraffic", 1.0)]
    assert {c["EndpointConfigName"] for c in e["sm"].list_endpoint_configs()["EndpointConfigs"]} == {f"{EP}-c0"}
