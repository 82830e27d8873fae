"""StateMachineTarget against a moto server: versions behind alias `live`, shift, restore, smoke.

moto 5.2 has versions (UpdateStateMachine publish=True) and aliases with 1–2 weighted versions,
but no ListStateMachineVersions / DeleteStateMachineVersion and cannot start an execution of a
version: pruning and the smoke execution are tested with botocore's Stubber, shaped like the API
reference.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_tools.core.config import load
from pipeline_tools.core.errors import DeployFailed, NotFoundError, UsageError
from pipeline_tools.release.target import Candidate, Placement, Target
from pipeline_tools.targets import TargetEnv, target_class
from pipeline_tools.targets import stepfunctions as sfn_target
from pipeline_tools.targets.stepfunctions import StateMachineTarget

from .conftest_targets import ACCOUNT, Env, create_state_machine, load_config, release, write_config

ARN = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:iris-staging-flow"


@pytest.fixture
def env(aws):
    return Env(aws)


def target(tmp_path, env, **kw) -> StateMachineTarget:
    return StateMachineTarget(load_config(tmp_path, **kw), "staging", "flow", env.env)


def test_registry_builds_it_and_it_is_a_target(aws, tmp_path, env):
    cls = target_class("stepfunctions")
    t = cls(load_config(tmp_path), "staging", "flow", env.env)
    assert isinstance(t, Target) and t.id == "stepfunctions:flow" and t.weighted is True
    assert sfn_target.names(load_config(tmp_path), "staging") == ["flow"]


def test_missing_state_machine_is_exit_2(aws, tmp_path, env):
    with pytest.raises(NotFoundError) as e:
        target(tmp_path, env).current()
    assert e.value.exit_code == 2 and "state machine iris-staging-flow does not exist" in e.value.message
    assert "npx cdk deploy" in e.value.hint


def test_unknown_name_is_usage_error(aws, tmp_path, env):
    with pytest.raises(UsageError, match="unknown state machine 'flw'"):
        StateMachineTarget(load_config(tmp_path), "staging", "flw", env.env)


def test_first_deploy_then_change_shift_and_restore(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    first = t.current()
    assert first.exists is False and first.resource == ARN

    cand1 = t.prepare(release(1), first)
    assert cand1.version == "1" and cand1.digest == t.rendered().digest
    # the published version is the rendered definition, with the function's live alias ARN in it
    published = json.loads(aws.client("stepfunctions").describe_state_machine(
        stateMachineArn=cand1.data["version_arn"])["definition"])
    assert published["States"]["Score"]["Resource"] == \
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:iris-staging-predict:live"
    assert t.current().exists is False  # no traffic before shift
    t.shift(first, cand1, 100)
    live1 = t.current()
    assert (live1.exists, live1.version, live1.digest, live1.weights) == (True, "1", cand1.digest, {})
    assert t.unchanged(live1, release(2)) is True  # the definition, not the image, decides

    t2 = target(tmp_path, env, label="v2")
    assert t2.unchanged(live1, release(1)) is False
    cand2 = t2.prepare(release(2), live1)
    assert cand2.version == "2" and cand2.digest != cand1.digest
    t2.shift(live1, cand2, 10)
    split = t2.current()
    assert (split.version, split.weights) == ("1", {"2": 0.1})
    assert split.serves(cand1.digest) is False
    t2.shift(live1, cand2, 100)
    assert (t2.current().version, t2.current().weights) == ("2", {})

    # the ledger records placements as JSON; a restore in another process rebuilds them
    t2.restore(Placement.from_dict(json.loads(json.dumps(live1.to_dict()))))
    back = t2.current()
    assert (back.version, back.weights, back.digest) == ("1", {}, cand1.digest)
    t2.restore(live1)  # idempotent
    assert t2.current().version == "1"


def test_restore_puts_a_recorded_split_back(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    c1 = t.prepare(release(1), t.current())
    t.shift(t.current(), c1, 100)
    p1 = t.current()
    c2 = target(tmp_path, env, label="v2").prepare(release(2), p1)
    t.shift(p1, c2, 30)
    split = t.current()
    t.shift(p1, c2, 100)
    t.restore(split)
    assert (t.current().version, t.current().weights) == ("1", {"2": 0.3})


def test_first_deploy_restore_removes_the_alias(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    first = t.current()
    cand = t.prepare(release(1), first)
    t.shift(first, cand, 100)
    assert t.current().exists
    t.restore(first)
    assert t.current().exists is False
    t.restore(first)  # nothing left to remove: still fine


def test_shift_creates_the_alias_when_a_crash_left_none(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    first = t.current()
    cand = t.prepare(release(1), first)
    t.shift(first, cand, 0)  # first deploy: the only version there is gets the traffic
    assert t.current().version == "1"


def test_describe_and_alarm_dimensions(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    cand = t.prepare(release(1), t.current())
    t.shift(t.current(), cand, 100)
    d = t.describe()
    assert d["exists"] and d["version"] == "1" and d["definition_digest"] == cand.digest
    json.dumps(d)
    assert t.alarm_dimensions(cand) == [{"StateMachineArn": f"{ARN}:1"}]


def test_finish_never_raises_when_versions_cannot_be_listed(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    p = t.current()
    cand = t.prepare(release(1), p)
    assert t.finish(p, cand) == []  # moto lacks ListStateMachineVersions
    assert any("old versions not pruned" in line for line in env.logs)


def test_bad_definition_at_deploy_time_is_usage_error(aws, tmp_path, env):
    create_state_machine(aws)
    t = target(tmp_path, env)
    (tmp_path / "flow.json").write_text("{ not json")
    with pytest.raises(UsageError) as e:
        t.prepare(release(1), t.current())
    assert e.value.exit_code == 2 and e.value.message.startswith("flow.json:1:3: invalid JSON")
    with pytest.raises(UsageError):
        t.check()


# --- what moto lacks: Stubber, shaped like the API reference --------------------------------------


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def stubbed(tmp_path, smoke: str = "", **kw):
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="x")
    clock = FakeClock()
    logs: list[str] = []
    env = TargetEnv(client=lambda _s: client, clock=clock, sleep=clock.sleep, log=logs.append)
    cfg = load(_with_smoke(tmp_path, smoke)) if smoke else load_config(tmp_path, **kw)
    return StateMachineTarget(cfg, "staging", "flow", env), Stubber(client), clock, logs


def _with_smoke(tmp_path, smoke: str):
    p = write_config(tmp_path)
    p.write_text(p.read_text().replace('      definition: flow.json\n', f'      definition: flow.json\n{smoke}'))
    return p


def cand(n: int = 3) -> Candidate:
    return Candidate("stepfunctions:flow", str(n), "sha256:" + "a" * 64, {"version_arn": f"{ARN}:{n}"})


SMOKE = "      smoke_input: {id: 7}\n      smoke_timeout: 60s\n"
EXEC = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:iris-staging-flow:pt-smoke"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_smoke_without_input_calls_nothing(tmp_path):
    t, stub, _clock, _logs = stubbed(tmp_path)
    with stub:
        t.smoke(cand())
    stub.assert_no_pending_responses()


def test_smoke_execution_succeeds(tmp_path):
    t, stub, _clock, logs = stubbed(tmp_path, SMOKE)
    stub.add_response("start_execution", {"executionArn": EXEC, "startDate": NOW},
                      {"stateMachineArn": f"{ARN}:3", "name": "pt-smoke-3-0", "input": '{"id": 7}'})
    stub.add_response("describe_execution", {"executionArn": EXEC, "stateMachineArn": ARN, "status": "RUNNING",
                                             "startDate": NOW}, {"executionArn": EXEC})
    stub.add_response("describe_execution", {"executionArn": EXEC, "stateMachineArn": ARN, "status": "SUCCEEDED",
                                             "startDate": NOW}, {"executionArn": EXEC})
    with stub:
        t.smoke(cand())
    stub.assert_no_pending_responses()
    assert any("SUCCEEDED" in line for line in logs)


def test_smoke_execution_failure_fails_the_deploy(tmp_path):
    t, stub, _clock, _logs = stubbed(tmp_path, SMOKE)
    stub.add_response("start_execution", {"executionArn": EXEC, "startDate": NOW})
    stub.add_response("describe_execution", {"executionArn": EXEC, "stateMachineArn": ARN, "status": "FAILED",
                                             "startDate": NOW, "error": "States.TaskFailed",
                                             "cause": "model returned 500"})
    with stub, pytest.raises(DeployFailed) as e:
        t.smoke(cand())
    assert "ended FAILED: States.TaskFailed: model returned 500" in e.value.message
    assert "traffic did not move" in e.value.hint


def test_smoke_deadline_stops_the_execution(tmp_path):
    t, stub, clock, _logs = stubbed(tmp_path, SMOKE)
    stub.add_response("start_execution", {"executionArn": EXEC, "startDate": NOW})
    running = {"executionArn": EXEC, "stateMachineArn": ARN, "status": "RUNNING", "startDate": NOW}
    for _ in range(6):  # 0.5 + 1 + 2 + 4 + 5 + 5 … passes 60 s on the fake clock
        stub.add_response("describe_execution", running)
    for _ in range(12):
        stub.add_response("describe_execution", running)
    with stub, pytest.raises(DeployFailed, match="still RUNNING after 60s"):
        # stop_execution is not queued: the Stubber raises, and the timeout is still what is reported
        t.smoke(cand())
    assert clock.t >= 60


def test_express_smoke_runs_synchronously(tmp_path):
    t, stub, _clock, _logs = stubbed(tmp_path, SMOKE + "      type: EXPRESS\n")
    stub.add_response("start_sync_execution", {"executionArn": EXEC, "startDate": NOW, "stopDate": NOW,
                                               "status": "FAILED", "error": "Boom"})
    with stub, pytest.raises(DeployFailed, match="ended FAILED: Boom"):
        t.smoke(cand())


def _versions(*ns: int) -> dict:
    return {"stateMachineVersions": [{"stateMachineVersionArn": f"{ARN}:{n}", "creationDate": NOW} for n in ns]}


def test_finish_prunes_old_unreferenced_versions(tmp_path):
    t, stub, _clock, _logs = stubbed(tmp_path)  # keep_versions: 2
    stub.add_response("list_state_machine_versions", {**_versions(5, 4, 3), "nextToken": "n"},
                      {"stateMachineArn": ARN})
    stub.add_response("list_state_machine_versions", _versions(2, 1), {"stateMachineArn": ARN, "nextToken": "n"})
    stub.add_response("list_state_machine_aliases", {"stateMachineAliases": [
        {"stateMachineAliasArn": f"{ARN}:live", "creationDate": NOW}]}, {"stateMachineArn": ARN})
    stub.add_response("describe_state_machine_alias", {
        "stateMachineAliasArn": f"{ARN}:live", "name": "live", "creationDate": NOW, "updateDate": NOW,
        "routingConfiguration": [{"stateMachineVersionArn": f"{ARN}:5", "weight": 90},
                                 {"stateMachineVersionArn": f"{ARN}:2", "weight": 10}]})
    for n in (1, 3):
        stub.add_response("delete_state_machine_version", {}, {"stateMachineVersionArn": f"{ARN}:{n}"})
    placement = Placement("stepfunctions:flow", ARN, True, "4", None, {}, {"version_arn": f"{ARN}:4"})
    with stub:
        assert t.finish(placement, cand(5)) == ["1", "3"]  # 2 is on the alias, 4 is the placement
    stub.assert_no_pending_responses()


def test_routing_is_pure_and_bounded():
    a, b = f"{ARN}:1", f"{ARN}:2"
    assert sfn_target.routing(a, b, 25) == [{"stateMachineVersionArn": a, "weight": 75},
                                            {"stateMachineVersionArn": b, "weight": 25}]
    assert sfn_target.routing(a, b, 100) == [{"stateMachineVersionArn": b, "weight": 100}]
    assert sfn_target.routing(a, b, 150) == [{"stateMachineVersionArn": b, "weight": 100}]
    assert sfn_target.routing(a, b, 0) == [{"stateMachineVersionArn": a, "weight": 100}]
    assert sfn_target.routing(None, b, 10) == [{"stateMachineVersionArn": b, "weight": 100}]
    assert sfn_target.routing(b, b, 10) == [{"stateMachineVersionArn": b, "weight": 100}]
    assert sfn_target.read_routing([{"stateMachineVersionArn": a, "weight": 50},
                                    {"stateMachineVersionArn": b, "weight": 50}]) == (a, {"2": 0.5})
    assert sfn_target.read_routing([{"stateMachineVersionArn": a, "weight": 20},
                                    {"stateMachineVersionArn": b, "weight": 80}]) == (b, {"1": 0.2})
    with pytest.raises(ValueError):
        sfn_target.read_routing([])
