"""LambdaTarget (targets/lambda_.py) on moto (in-process) and botocore's Stubber where moto lacks
the call (invoking image functions); target selection (targets/__init__.py)."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed, UsageError
from pipeline_tools.release.target import Release
from pipeline_tools.targets import TargetEnv, build_targets, select_ids
from pipeline_tools.targets import lambda_ as lt
from tests.fakes import Clock

OLD = "sha256:" + "0" * 64
NEW = "sha256:" + "1" * 64
REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/lt-model"

CONFIG = """\
project: lt
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict:
    image: model
    memory: 1024
    timeout: 60
    environment: {MODE: fast}
    reserved_concurrency: 5
    smoke: {payload: {x: 1}, expect_status: 200, expect_keys: [prediction]}
  explain: {image: model}
stages:
  staging: {account: "111111111111", branch: main, gate: {alarms: ["lt-*"]}}
"""


@pytest.fixture
def cfg():
    return config_mod.parse(CONFIG)


class SleepClock(Clock):
    def sleep(self, s: float) -> None:
        self.advance(s)


@pytest.fixture
def lam(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lc = boto3.client("lambda", region_name="us-east-1")
        for fn in ("predict", "explain"):
            name = f"lt-staging-{fn}"
            lc.create_function(FunctionName=name, PackageType="Image", Code={"ImageUri": f"{REPO}@{OLD}"},
                               Role=role, Timeout=30, MemorySize=512,
                               Environment={"Variables": {"PT_STAGE": "staging"}})
            v = lc.publish_version(FunctionName=name, Description=f"pt seed {OLD}")["Version"]
            lc.create_alias(FunctionName=name, Name="live", FunctionVersion=v)
        yield lc


def env_for(lc) -> TargetEnv:
    clock = SleepClock()
    return TargetEnv(client=lambda _svc: lc, clock=clock, sleep=clock.sleep)


def test_config_change_alone_is_a_deploy_and_is_applied_to_the_version(cfg, lam):
    t = lt.LambdaTarget(cfg, "staging", "predict", env_for(lam))
    p = t.current()
    assert p.exists and p.version == "1" and p.digest == OLD
    assert set(t.changes(p)) == {"memory", "timeout", "environment", "reserved_concurrency"}
    assert not t.unchanged(p, Release(f"{REPO}@{OLD}", OLD, "d", "model"))
    c = t.prepare(Release(f"{REPO}@{OLD}", OLD, "d1", "model"), p)
    got = lam.get_function_configuration(FunctionName=t.name, Qualifier=c.version)
    assert (got["MemorySize"], got["Timeout"]) == (1024, 60)
    assert got["Environment"]["Variables"] == {"PT_STAGE": "staging", "MODE": "fast"}  # the stack's kept
    assert lam.get_alias(FunctionName=t.name, Name="live")["FunctionVersion"] == "1"  # no traffic yet
    t.shift(p, c, 100)
    assert lam.get_function_concurrency(FunctionName=t.name)["ReservedConcurrentExecutions"] == 5
    after = t.current()
    assert t.unchanged(after, Release(f"{REPO}@{OLD}", OLD, "d", "model"))
    t.restore(p)
    assert lam.get_alias(FunctionName=t.name, Name="live")["FunctionVersion"] == "1"
    assert lam.get_function_concurrency(FunctionName=t.name).get("ReservedConcurrentExecutions") is None


def test_image_change_canary_weights_and_dimensions(cfg, lam):
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lam))
    p = t.current()
    assert t.unchanged(p, Release(f"{REPO}@{OLD}", OLD, "d", "model"))
    rel = Release(f"{REPO}@{NEW}", NEW, "d2", "model")
    assert not t.unchanged(p, rel)
    c = t.prepare(rel, p)
    assert c.digest == NEW and c.version == "2"
    t.shift(p, c, 10)
    alias = lam.get_alias(FunctionName=t.name, Name="live")
    assert alias["FunctionVersion"] == "1" and alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}
    assert t.current().weights == {"2": 0.1}
    dims = {d["Name"]: d["Value"] for d in t.alarm_dimensions(c)}
    assert dims == {"FunctionName": t.name, "Resource": f"{t.name}:live", "ExecutedVersion": "2"}
    t.restore(p)
    assert "RoutingConfig" not in lam.get_alias(FunctionName=t.name, Name="live") or \
        not lam.get_alias(FunctionName=t.name, Name="live")["RoutingConfig"].get("AdditionalVersionWeights")


def test_first_deploy_restore_deletes_the_alias(cfg, lam):
    lam.delete_alias(FunctionName="lt-staging-explain", Name="live")
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lam))
    p = t.current()
    assert not p.exists
    c = t.prepare(Release(f"{REPO}@{NEW}", NEW, "d", "model"), p)
    t.shift(p, c, 10)  # no old version: all traffic to the new one
    assert lam.get_alias(FunctionName=t.name, Name="live")["FunctionVersion"] == c.version
    t.restore(p)
    assert t.current().exists is False


def test_missing_function_is_a_clear_error(cfg, lam):
    lam.delete_function(FunctionName="lt-staging-explain")
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lam))
    with pytest.raises(Exception, match="does not exist") as e:
        t.current()
    assert "cdk deploy" in e.value.hint


def test_config_update_waits_for_last_update_status_with_deadline(cfg):
    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    clock = SleepClock()
    t = lt.LambdaTarget(cfg, "staging", "predict", TargetEnv(client=lambda _s: lc, clock=clock, sleep=clock.sleep,
                                                               update_timeout=10))
    from pipeline_tools.release.target import Placement

    p = Placement("lambda:predict", t.name, True, "1", OLD, {}, {"config": {}, "reserved_concurrency": None})
    base = {"FunctionName": t.name, "CodeSha256": "abc", "MemorySize": 512, "Timeout": 30}
    with Stubber(lc) as stub:
        # the configuration differs from the live version's: applied (and waited for) before the code
        stub.add_response("update_function_configuration", {**base, "LastUpdateStatus": "InProgress"})
        for _ in range(30):
            stub.add_response("get_function_configuration", {**base, "LastUpdateStatus": "InProgress",
                                                             "State": "Active"})
        with pytest.raises(DeployFailed, match="still InProgress after 10s"):
            t.prepare(Release(f"{REPO}@{NEW}", NEW, "d", "model"), p)
    assert clock() - 1_800_000_000.0 >= 10


def _invoke(payload: dict | str, status: int = 200, error: str | None = None) -> dict:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    out = {"StatusCode": status, "Payload": io.BytesIO(body.encode())}
    if error:
        out["FunctionError"] = error
    return out


@pytest.mark.parametrize("resp,ok,why", [
    (_invoke({"statusCode": 200, "prediction": 1}), True, ""),
    (_invoke({"statusCode": 200, "body": json.dumps({"prediction": [1]})}), True, ""),
    (_invoke({"statusCode": 500, "prediction": 1}), False, "statusCode 500"),
    (_invoke({"prediction": 1}), False, "statusCode None"),
    (_invoke({"statusCode": 200}), False, "lacks prediction"),
    (_invoke({"errorMessage": "boom"}, error="Unhandled"), False, "raised Unhandled"),
    (_invoke("not json"), False, "statusCode None"),
    (_invoke({}, status=500), False, "HTTP 500"),
])
def test_check_smoke(resp, ok, why):
    if ok:
        lt.check_smoke("predict", "2", resp, 200, ["prediction"])
    else:
        with pytest.raises(DeployFailed, match=why):
            lt.check_smoke("predict", "2", resp, 200, ["prediction"])


def test_smoke_invokes_the_candidate_version(cfg):
    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    t = lt.LambdaTarget(cfg, "staging", "predict", env_for(lc))
    from pipeline_tools.release.target import Candidate

    with Stubber(lc) as stub:
        stub.add_response("invoke", {"StatusCode": 200, "Payload": io.BytesIO(b'{"statusCode": 200}')},
                          {"FunctionName": t.name, "Qualifier": "7", "InvocationType": "RequestResponse",
                           "Payload": b'{"x": 1}'})
        with pytest.raises(DeployFailed, match="lacks prediction"):
            t.smoke(Candidate("lambda:predict", "7", NEW))
    # a function without smoke config returns at once (no call)
    t2 = lt.LambdaTarget(cfg, "staging", "explain", env_for(lc))
    with Stubber(lc):
        t2.smoke(Candidate("lambda:explain", "7", NEW))


def test_select_ids(cfg):
    assert select_ids(cfg, "staging", None) == ["lambda:predict", "lambda:explain"]
    assert select_ids(cfg, "staging", ["lambda"]) == ["lambda:predict", "lambda:explain"]
    assert select_ids(cfg, "staging", ["lambda:explain"]) == ["lambda:explain"]
    assert select_ids(cfg, "staging", ["lambda:explain", "lambda:predict"]) == ["lambda:predict", "lambda:explain"]
    with pytest.raises(UsageError, match="unknown kind 'lamda'") as e:
        select_ids(cfg, "staging", ["lamda"])
    assert "lambda" in e.value.hint
    with pytest.raises(UsageError, match="has no such target") as e:
        select_ids(cfg, "staging", ["lambda:nope"])
    assert "lambda:predict" in e.value.hint
    with pytest.raises(UsageError, match="has no batch target"):
        select_ids(cfg, "staging", ["batch"])


def test_stage_order_and_build(cfg):
    data = CONFIG.replace('branch: main,', 'branch: main, targets: ["lambda:explain", "lambda:predict"],')
    c2 = config_mod.parse(data)
    assert select_ids(c2, "staging", None) == ["lambda:explain", "lambda:predict"]
    ts = build_targets(c2, "staging", TargetEnv(client=lambda s: None, clock=lambda: 0.0, sleep=lambda s: None))
    assert [t.id for t in ts] == ["lambda:explain", "lambda:predict"]
    with pytest.raises(UsageError, match="unknown function 'nope'"):
        build_targets(cfg, "staging", TargetEnv(client=lambda s: None, clock=lambda: 0.0, sleep=lambda s: None),
                      ["lambda:nope"])


def _stub_current(stub, name: str, revision: str | None = "rev-1", version: str = "1") -> None:
    alias = {"Name": "live", "FunctionVersion": version, "AliasArn": f"arn:aws:lambda:us-east-1:1:function:{name}:live"}
    if revision:
        alias["RevisionId"] = revision
    stub.add_response("get_alias", alias, {"FunctionName": name, "Name": "live"})
    stub.add_response("get_function", {"Configuration": {"FunctionName": name, "Version": version, "MemorySize": 128,
                                                         "Timeout": 3},
                                       "Code": {"ImageUri": f"{REPO}@{OLD}"}},
                      {"FunctionName": name, "Qualifier": version})


def test_the_first_alias_write_of_an_armed_release_is_conditional_on_the_revision(cfg):
    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lc))
    from pipeline_tools.release.target import Candidate

    c = Candidate(t.id, "2", NEW, {})
    with Stubber(lc) as stub:
        _stub_current(stub, t.name)
        p = t.current()
        assert p.data["revision"] == "rev-1" and "reserved_concurrency" not in p.data  # not managed: not read
        t.arm_fence(p)
        routing = {"AdditionalVersionWeights": {"2": 0.1}}
        stub.add_response("update_alias", {"Name": "live", "FunctionVersion": "1", "RevisionId": "rev-2"},
                          {"FunctionName": t.name, "Name": "live", "FunctionVersion": "1", "RoutingConfig": routing,
                           "RevisionId": "rev-1"})
        t.shift(p, c, 10)
        # later steps are this release's own writes: unconditional
        stub.add_response("update_alias", {"Name": "live", "FunctionVersion": "2", "RevisionId": "rev-3"},
                          {"FunctionName": t.name, "Name": "live", "FunctionVersion": "2",
                           "RoutingConfig": {"AdditionalVersionWeights": {}}})
        t.shift(p, c, 100)
        stub.assert_no_pending_responses()


def test_an_alias_changed_since_the_read_fails_the_shift_with_nothing_moved(cfg):
    from pipeline_tools.release.target import Candidate
    from pipeline_tools.targets.lambda_ops import AliasChanged

    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lc))
    with Stubber(lc) as stub:
        _stub_current(stub, t.name)
        p = t.current()
        t.arm_fence(p)
        stub.add_client_error("update_alias", "PreconditionFailedException", "The RevisionId provided does not match",
                              http_status_code=412)
        with pytest.raises(AliasChanged, match=r"changed since this deploy read it .*no traffic was moved") as e:
            t.shift(p, Candidate(t.id, "2", NEW, {}), 100)
        assert "pt status" in e.value.hint


def test_a_first_deploy_whose_alias_appeared_meanwhile_fails_the_shift(cfg):
    from pipeline_tools.release.target import Candidate, Placement
    from pipeline_tools.targets.lambda_ops import AliasChanged

    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lc))
    p = Placement(t.id, t.name, False, data={"latest_config": {}})
    t.arm_fence(p)
    with Stubber(lc) as stub:
        stub.add_client_error("create_alias", "ResourceConflictException", "Alias already exists", http_status_code=409)
        with pytest.raises(AliasChanged, match="was created since this deploy read the function"):
            t.shift(p, Candidate(t.id, "1", NEW, {}), 100)
        stub.assert_no_pending_responses()


def test_reserved_concurrency_absent_is_left_alone(cfg, lam):
    lam.put_function_concurrency(FunctionName="lt-staging-explain", ReservedConcurrentExecutions=7)
    t = lt.LambdaTarget(cfg, "staging", "explain", env_for(lam))
    assert not t.manages_concurrency
    p = t.current()
    c = t.prepare(Release(f"{REPO}@{NEW}", NEW, "d", "model"), p)
    t.shift(p, c, 100)
    assert lam.get_function_concurrency(FunctionName=t.name)["ReservedConcurrentExecutions"] == 7
    explicit = config_mod.parse(CONFIG.replace("explain: {image: model}",
                                               "explain: {image: model, reserved_concurrency: null}"))
    t2 = lt.LambdaTarget(explicit, "staging", "explain", env_for(lam))
    assert t2.manages_concurrency and "reserved_concurrency" in t2.changes(t2.current())
