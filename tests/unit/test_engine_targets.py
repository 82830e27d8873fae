"""The target-agnostic release engine (release/engine.py) driven through FakeTargets, with the
ledger and CloudWatch alarms in moto (in-process)."""

from __future__ import annotations

import ast
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed, LockedError, UsageError
from pipeline_tools.release import engine
from pipeline_tools.release.ledger import Ledger, ensure_table
from pipeline_tools.release.target import Release
from tests.fakes import Clock, FakeTarget

OLD = "sha256:" + "0" * 64
NEW = "sha256:" + "1" * 64
REL = Release(f"r.example/m@{NEW}", NEW, "d1", "model")
ALARM = "eng-staging-errors"

CONFIG = """\
project: eng
region: us-east-1
images:
  model: {{context: ., dockerfile: Dockerfile}}
functions:
  predict: {{image: model}}
stages:
  staging:
    account: "111111111111"
    branch: main
    deploy: {{strategy: {strategy}, {percent} interval: 30s, bake: {bake}}}
    gate: {{alarms: ["eng-staging-*"], insufficient_data: pass, poll: 5s}}
"""


def cfg_for(strategy: str = "all-at-once", percent: int | None = None, bake: str = "0s"):
    return config_mod.parse(CONFIG.format(strategy=strategy, percent=f"percent: {percent}," if percent else "",
                                          bake=bake))


class SleepClock(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.hooks: list = []

    def sleep(self, s: float) -> None:
        self.advance(s)
        for h in list(self.hooks):
            h(self.t)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_table(ddb, "eng-ledger", project="eng", stage="staging", local=True)
        cw = boto3.client("cloudwatch", region_name="us-east-1")
        cw.put_metric_alarm(AlarmName=ALARM, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                            Period=60, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="seed")
        clock = SleepClock()
        deps = engine.EngineDeps(cloudwatch=cw, ledger=Ledger(ddb, "eng-ledger", clock=clock), clock=clock,
                                 sleep=clock.sleep, actor={"name": "alice"}, lease=60)
        yield deps, cw, clock


def two(calls=None, **kw):
    calls = calls if calls is not None else []
    return FakeTarget("fake:a", OLD, calls=calls, **kw), FakeTarget("fake:b", OLD, calls=calls), calls


def last(deps) -> object:
    return deps.ledger.query("staging", "deploy", limit=1)[0]


def run(cfg, targets, deps, **kw):
    p = engine.plan(cfg, "staging", targets, REL, **kw)
    return engine.run(p, deps)


def test_engine_imports_no_concrete_target():
    src = Path(engine.__file__).read_text()
    mods = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
        elif isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
    assert not [m for m in mods if m.startswith("pipeline_tools.targets")], mods
    assert "pipeline_tools.release.target" in mods
    assert "pipeline_tools.release.deploy" not in mods


def test_all_at_once_two_targets_succeeds_in_order_and_records(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    res = run(cfg_for(), [a, b], deps)
    assert res.state == "succeeded"
    assert a.live["digest"] == NEW and b.live["digest"] == NEW
    shifts = [c for c in calls if c[1] == "shift"]
    assert shifts == [("fake:a", "shift", 100), ("fake:b", "shift", 100)]
    assert calls.index(("fake:a", "prepare")) < calls.index(("fake:b", "prepare")) < calls.index(shifts[0])
    rec = last(deps)
    assert rec.state == "succeeded" and rec.data["order"] == ["fake:a", "fake:b"]
    assert rec.data["candidates"]["fake:a"]["version"] == "2"
    assert rec.data["placements"]["fake:b"]["digest"] == OLD
    assert rec.data["cleaned"] == {"fake:a": ["1"], "fake:b": ["1"]}
    assert [t["state"] for t in rec.transitions] == ["locked", "updating", "shifting", "baking", "finishing",
                                                     "succeeded"]
    assert deps.ledger.current_lock("staging") is None


def test_noop_when_every_target_serves_the_digest(env):
    _deps, _cw, _clock = env
    a = FakeTarget("fake:a", NEW)
    p = engine.plan(cfg_for(), "staging", [a], REL)
    assert p.noop and p.to_dict()["targets"][0]["changes"] is False


def test_optional_unchanged_overrides_serves(env):
    deps, _cw, _clock = env
    a = FakeTarget("fake:a", NEW)
    a.extra_unchanged = lambda placement, release: False  # e.g. a configuration change
    p = engine.plan(cfg_for(), "staging", [a], REL)
    assert not p.noop
    assert engine.run(p, deps).state == "succeeded" and a.live["version"] == "2"


def test_canary_steps_and_waits(env):
    deps, _cw, clock = env
    a, b, calls = two()
    t0 = clock()
    res = run(cfg_for("canary", 10), [a, b], deps)
    assert res.state == "succeeded"
    assert [c for c in calls if c[1] == "shift"] == [("fake:a", "shift", 10), ("fake:b", "shift", 10),
                                                    ("fake:a", "shift", 100), ("fake:b", "shift", 100)]
    assert clock() - t0 >= 30  # the canary step was watched for its interval
    percents = [t.get("percent") for t in last(deps).transitions if t.get("state") == "shifting"]
    assert percents == [10, 100]


def test_linear_steps(env):
    deps, _cw, _clock = env
    a = FakeTarget("fake:a", OLD)
    run(cfg_for("linear", 25), [a], deps)
    assert [c[2] for c in a.calls if c[1] == "shift"] == [25, 50, 75, 100]


def test_unweighted_target_goes_0_to_100_at_the_last_step(env):
    deps, _cw, _clock = env
    calls: list = []
    a = FakeTarget("fake:a", OLD, calls=calls)
    job = FakeTarget("fake:job", OLD, weighted=False, calls=calls)
    run(cfg_for("linear", 25), [a, job], deps)
    assert [c[2] for c in calls if c[0] == "fake:job" and c[1] == "shift"] == [100]
    assert [c[2] for c in calls if c[0] == "fake:a" and c[1] == "shift"] == [25, 50, 75, 100]


def test_alarm_during_canary_restores_every_changed_target_in_reverse(env):
    deps, cw, _clock = env
    a, b, calls = two()
    b.on_shift = lambda pct: cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="boom")
    with pytest.raises(DeployFailed, match="rolled back: gate FAIL while shifting 10%"):
        run(cfg_for("canary", 10), [a, b], deps)
    assert a.live == {"version": "1", "digest": OLD, "weights": {}, "exists": True}
    assert b.live["digest"] == OLD and not b.live["weights"]
    restores = [c[0] for c in calls if c[1] == "restore"]
    assert restores == ["fake:b", "fake:a"]
    rec = last(deps)
    assert rec.state == "rolled_back"
    assert rec.data["restored"] == {"fake:b": "restored", "fake:a": "restored"}
    assert rec.data["touched"] == ["fake:a", "fake:b"]
    assert deps.ledger.current_lock("staging") is None


def test_second_target_shift_fails_both_end_on_old_version(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    b.fail["shift"] = RuntimeError("b cannot move")
    with pytest.raises(DeployFailed, match="rolled back: error while shifting"):
        run(cfg_for(), [a, b], deps)
    assert a.live["digest"] == OLD and b.live["digest"] == OLD
    assert [c[0] for c in calls if c[1] == "restore"] == ["fake:b", "fake:a"]
    assert last(deps).state == "rolled_back"


def test_prepare_failure_fails_with_traffic_untouched(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    b.fail["prepare"] = RuntimeError("no such image")
    with pytest.raises(DeployFailed, match="failed: error while preparing"):
        run(cfg_for(), [a, b], deps)
    assert not [c for c in calls if c[1] in ("shift", "restore")]
    rec = last(deps)
    assert rec.state == "failed" and "traffic untouched" in rec.reason
    assert rec.data["candidates"]["fake:a"]["version"] == "2"  # recorded for cleanup
    assert deps.ledger.current_lock("staging") is None


def test_smoke_failure_fails_with_traffic_untouched(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    a.fail["smoke"] = RuntimeError("smoke invoke returned 500")
    with pytest.raises(DeployFailed, match="smoke invoke returned 500"):
        run(cfg_for(), [a, b], deps)
    assert not [c for c in calls if c[1] == "shift"]
    assert a.live["digest"] == OLD and last(deps).state == "failed"


def test_check_runs_before_any_change(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    b.fail["check"] = UsageError("bad target")
    with pytest.raises(UsageError):
        engine.plan(cfg_for(), "staging", [a, b], REL)
    assert [c[1] for c in calls] == ["check", "check"]
    assert deps.ledger.query("staging", "deploy") == []


def test_restore_error_keeps_lock_for_recover_and_says_so(env):
    deps, _cw, _clock = env
    a, b, _calls = two()
    b.fail["shift"] = RuntimeError("b broke")
    a.fail["restore"] = RuntimeError("a cannot restore")
    with pytest.raises(DeployFailed, match="stopped while restoring") as e:
        run(cfg_for(), [a, b], deps)
    assert "pt recover --stage staging" in e.value.hint
    rec = last(deps)
    assert rec.state == "rolling_back"
    assert rec.transitions[-1]["event"] == "rollback-error"
    assert rec.data["restored"]["fake:b"] == "restored" and rec.data["restored"]["fake:a"].startswith("error")
    assert deps.ledger.current_lock("staging") is not None
    # another process recovers from the record: a is put back
    del a.fail["restore"]
    deps.clock.advance(120)
    out = engine.recover("staging", deps, {"fake:a": a, "fake:b": b})
    assert out["action"] == "roll-back" and out["state"] == "rolled_back"
    assert a.live["digest"] == OLD and last(deps).state == "rolled_back"
    assert deps.ledger.current_lock("staging") is None


def test_sigterm_mid_shift_restores(env):
    deps, _cw, _clock = env
    a, b, _calls = two()
    a.on_shift = lambda pct: os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(DeployFailed, match="received SIGTERM"):
        run(cfg_for("canary", 10), [a, b], deps)
    assert a.live["digest"] == OLD and not a.live["weights"] and b.live["digest"] == OLD
    assert last(deps).state == "rolled_back"


def test_sigint_during_canary_watch_restores(env):
    deps, _cw, clock = env
    a = FakeTarget("fake:a", OLD)
    fired = []

    def hook(t):
        if not fired and a.live["weights"]:
            fired.append(t)
            os.kill(os.getpid(), signal.SIGINT)

    clock.hooks.append(hook)
    with pytest.raises(DeployFailed, match="interrupted"):
        run(cfg_for("canary", 10), [a], deps)
    assert fired and a.live["digest"] == OLD and not a.live["weights"]


def test_stage_locked_by_another_deploy(env):
    deps, _cw, _clock = env
    deps.ledger.acquire("staging", "other", {"name": "bob"}, 60)
    a = FakeTarget("fake:a", OLD)
    with pytest.raises(LockedError):
        run(cfg_for(), [a], deps)
    assert a.live["digest"] == OLD and not [c for c in a.calls if c[1] == "prepare"]


def test_preexisting_alarm_blocks_before_locking(env):
    deps, cw, _clock = env
    cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="already")
    a = FakeTarget("fake:a", OLD)
    with pytest.raises(DeployFailed, match="already in ALARM"):
        run(cfg_for(), [a], deps)
    assert deps.ledger.query("staging", "deploy") == []


def test_recover_in_another_process_rolls_back_from_the_record(env):
    deps, _cw, clock = env
    a, b, _calls = two()
    # simulate a process that died after moving a to 10 % (record says shifting)
    p = engine.plan(cfg_for("canary", 10), "staging", [a, b], REL)
    r = engine._Run(p, deps, engine.Signals(), None)
    r.id = "20261205T000000000Z-aaaaaa"
    r.lock = deps.ledger.acquire("staging", r.id, deps.actor, 30)
    deps.ledger.put_record("deploy", "staging", {"operation": "deploy", "engine": 1, "digest": NEW,
                                                 "order": p.order, **r.target_data()},
                           actor=deps.actor, state="locked", record_id=r.id, lock=r.lock)
    r.rec = None
    r.prepare()
    r.mark("shifting", percent=10, **r.target_data())
    a.shift(p.placements["fake:a"], r.candidates["fake:a"], 10)
    clock.advance(60)  # the lease lapsed
    # a new process: fresh targets, rebuilt from the record only
    a2, b2 = FakeTarget("fake:a", OLD), FakeTarget("fake:b", OLD)
    a2.live = dict(a.live)
    dry = engine.recover("staging", deps, {"fake:a": a2, "fake:b": b2}, dry_run=True)
    assert dry["action"] == "roll-back" and dry["targets"]["fake:a"]["to_version"] == "1"
    out = engine.recover("staging", deps, {"fake:a": a2, "fake:b": b2})
    assert out["state"] == "rolled_back" and list(out["outcome"]) == ["fake:b", "fake:a"]
    assert a2.live == {"version": "1", "digest": OLD, "weights": {}, "exists": True}
    assert last(deps).state == "rolled_back"


def test_recover_forward_after_finishing(env):
    deps, _cw, clock = env
    a = FakeTarget("fake:a", OLD)
    p = engine.plan(cfg_for(), "staging", [a], REL)
    r = engine._Run(p, deps, engine.Signals(), None)
    r.id = "20261205T000000000Z-bbbbbb"
    r.lock = deps.ledger.acquire("staging", r.id, deps.actor, 30)
    deps.ledger.put_record("deploy", "staging", {"operation": "deploy", "engine": 1, "digest": NEW,
                                                 "order": p.order, **r.target_data()},
                           actor=deps.actor, state="locked", record_id=r.id, lock=r.lock)
    r.prepare()
    r.mark("finishing", **r.target_data())
    clock.advance(60)
    a2 = FakeTarget("fake:a", OLD)
    out = engine.recover("staging", deps, {"fake:a": a2})
    assert out["action"] == "roll-forward" and a2.live["version"] == "2" and last(deps).state == "succeeded"


def test_recover_refuses_targets_missing_from_config(env):
    deps, _cw, _clock = env
    deps.ledger.put_record("deploy", "staging", {"operation": "deploy", "engine": 1, "order": ["fake:gone"],
                                                 "placements": {"fake:gone": {"target": "fake:gone",
                                                                              "resource": "r", "exists": True}}},
                           state="shifting", record_id="20261205T000000000Z-cccccc")
    with pytest.raises(UsageError, match="fake:gone"):
        engine.recover("staging", deps, {})


def test_rollback_operation_has_no_gate_and_marks_the_undone_deploy(env):
    deps, cw, _clock = env
    cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="the bad release")
    a = FakeTarget("fake:a", NEW, version="2")
    bad = deps.ledger.put_record("deploy", "staging", {"operation": "deploy"}, state="succeeded",
                                 record_id="20261205T000000000Z-dddddd")
    back = Release(f"r.example/m@{OLD}", OLD, "rb", "model")
    p = engine.plan(cfg_for(), "staging", [a], back, operation="rollback")
    res = engine.run(p, deps, extra={"current": bad.id, "target": "x"})
    assert res.state == "succeeded" and a.live["digest"] == OLD
    assert deps.ledger.get("staging", bad.id).data["rolled_back_by"] == res.deploy_id


class Metric:
    error_metrics = (("Fake", "Errors"),)


def test_candidate_metric_errors_fail_the_gate(env):
    deps, cw, _clock = env
    a = FakeTarget("fake:a", OLD)
    a.error_metrics = Metric.error_metrics

    def errors(pct):
        cw.put_metric_data(Namespace="Fake", MetricData=[{"MetricName": "Errors", "Value": 3,
                                                          "Timestamp": datetime.fromtimestamp(deps.clock(), UTC),
                                                          "Dimensions": [{"Name": "Version", "Value": "2"}]}])

    a.on_shift = errors
    with pytest.raises(DeployFailed, match="Errors=3 on the candidate"):
        run(cfg_for("canary", 10), [a], deps)
    assert a.live["digest"] == OLD


def test_candidate_metric_unreadable_fails_closed(env):
    deps, cw, _clock = env
    a = FakeTarget("fake:a", OLD)
    a.error_metrics = Metric.error_metrics

    class Broken:
        def __getattr__(self, name):
            return getattr(cw, name)

        def get_metric_data(self, **_kw):
            raise RuntimeError("AccessDenied")

    deps.cloudwatch = Broken()
    with pytest.raises(DeployFailed, match="could not read its evidence"):
        run(cfg_for("canary", 10), [a], deps)
    assert a.live["digest"] == OLD and last(deps).state == "rolled_back"


def test_first_deploy_restore_removes(env):
    deps, cw, _clock = env
    a = FakeTarget("fake:a", None, exists=False)
    a.on_shift = lambda pct: cw.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="x")
    with pytest.raises(DeployFailed):
        run(cfg_for("canary", 10), [a], deps)
    assert a.live["exists"] is False


def test_describe_keeps_going_on_error():
    a, b = FakeTarget("fake:a"), FakeTarget("fake:b")
    b.describe = lambda: (_ for _ in ()).throw(RuntimeError("no access"))
    rows = engine.describe([a, b])
    assert rows[0]["target"] == "fake:a" and rows[1]["error"] == "no access"


def _succeeded(deps, rid: str, targets, digest: str) -> None:
    """A succeeded engine record that left `targets` on their current versions."""
    placements = {t.id: t.current().to_dict() for t in targets}
    deps.ledger.put_record("deploy", "staging", {"operation": "deploy", "engine": 1, "digest": digest,
                                                 "image_uri": f"r.example/m@{digest}", "image": "model",
                                                 "order": [t.id for t in targets],
                                                 "changing": [t.id for t in targets], "placements": placements,
                                                 "candidates": {}}, state="succeeded", record_id=rid)


def test_rollback_returns_to_recorded_versions_without_prepare(env):
    deps, _cw, _clock = env
    a, b, calls = two()
    _succeeded(deps, "20261205T000000000Z-000001", [a, b], OLD)
    run(cfg_for(), [a, b], deps)  # a and b → version 2 (NEW)
    deps.clock.advance(1)
    calls.clear()
    out = engine.rollback(cfg_for(), "staging", deps, lambda ids: [t for t in (a, b) if t.id in ids])
    assert out["state"] == "succeeded" and a.live["version"] == "1" and b.live["version"] == "1"
    assert not [c for c in calls if c[1] in ("prepare", "smoke")]
    rec = deps.ledger.get("staging", out["rollback_id"])
    assert [t["state"] for t in rec.transitions if t.get("state")] == ["locked", "shifting", "finishing", "succeeded"]
    undone = deps.ledger.get("staging", out["current"])
    assert undone.data["rolled_back_by"] == rec.id


def test_rollback_stopping_part_way_is_left_for_recover_forward(env):
    deps, _cw, _clock = env
    a, b, _calls = two()
    _succeeded(deps, "20261205T000000000Z-000001", [a, b], OLD)
    run(cfg_for(), [a, b], deps)
    deps.clock.advance(1)  # ids are time-ordered: the rollback's is the newest
    a.fail["shift"] = RuntimeError("AccessDenied on a")
    with pytest.raises(DeployFailed, match="stopped part-way") as e:
        engine.rollback(cfg_for(), "staging", deps, lambda ids: [t for t in (a, b) if t.id in ids])
    assert "pt recover --stage staging" in e.value.hint
    assert a.live["version"] == "2" and b.live["version"] == "1"  # b still moved back: never undone
    rec = deps.ledger.get("staging", e.value.deploy_id)
    assert rec.state == "shifting" and rec.transitions[-1]["event"] == "rollback-error"
    assert deps.ledger.current_lock("staging") is None
    del a.fail["shift"]
    out = engine.recover("staging", deps, {"fake:a": a, "fake:b": b})
    assert out["action"] == "finish-rollback" and out["state"] == "succeeded"
    assert a.live["version"] == "1" and b.live["version"] == "1"
    assert deps.ledger.get("staging", rec.data["current"]).data["rolled_back_by"] == rec.id


class FencedTarget(FakeTarget):
    """A FakeTarget whose first traffic write is conditional on what `current()` returned (like the
    Lambda alias's RevisionId): `moved_by_someone` models a change between the plan and the lock."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.armed = None
        self.moved_by_someone = False

    def arm_fence(self, placement) -> None:
        self.calls.append((self.id, "arm_fence"))
        self.armed = placement

    def shift(self, placement, candidate, percent: int) -> None:
        if self.armed is not None:
            self.armed = None
            if self.moved_by_someone:
                self.calls.append((self.id, "shift-refused", percent))
                raise DeployFailed(f"{self.id} changed since this deploy read it; no traffic was moved")
        super().shift(placement, candidate, percent)


def test_a_fenced_target_is_read_once_and_its_first_write_is_conditional(env):
    deps, _cw, _clock = env
    calls: list = []
    a, b = FencedTarget("fake:a", OLD, calls=calls), FakeTarget("fake:b", OLD, calls=calls)
    res = run(cfg_for(), [a, b], deps)
    assert res.state == "succeeded"
    # the fenced target: read for the plan only, armed under the lock; the other read again under it
    assert calls.count(("fake:a", "current")) == 1 and ("fake:a", "arm_fence") in calls
    assert calls.count(("fake:b", "current")) == 2
    assert calls.index(("fake:a", "arm_fence")) < calls.index(("fake:a", "shift", 100))


def test_a_stale_fenced_write_ends_every_target_on_the_old_version(env):
    deps, _cw, _clock = env
    calls: list = []
    a, b = FakeTarget("fake:a", OLD, calls=calls), FencedTarget("fake:b", OLD, calls=calls)
    b.moved_by_someone = True
    with pytest.raises(DeployFailed, match="rolled back"):
        run(cfg_for(), [a, b], deps)
    assert a.live["digest"] == OLD and b.live["digest"] == OLD
    assert ("fake:b", "shift-refused", 100) in calls
    rec = last(deps)
    assert rec.state == "rolled_back" and "changed since this deploy read it" in (rec.reason or "")
    assert deps.ledger.current_lock("staging") is None


def test_folded_states_keep_their_order_and_the_lock_goes_with_the_last_write(env):
    deps, _cw, _clock = env
    a = FakeTarget("fake:a", OLD)
    a.finish_needed = lambda placement, candidate: False  # nothing to clean up: no `finishing` write
    res = run(cfg_for(), [a], deps)
    rec = last(deps)
    states = [t for t in rec.transitions if "state" in t]
    assert [t["state"] for t in states] == ["locked", "updating", "shifting", "baking", "finishing", "succeeded"]
    assert [t["ts"] for t in states] == sorted(t["ts"] for t in states)
    assert rec.data["verdict"]["status"] == "PASS" and res.state == "succeeded"
    assert deps.ledger.current_lock("staging") is None


def test_no_candidate_metric_read_without_an_observation_window(env):
    deps, cw, _clock = env
    a = FakeTarget("fake:a", OLD)
    a.error_metrics = Metric.error_metrics
    reads: list = []

    class Counting:
        def __getattr__(self, name):
            return getattr(cw, name)

        def get_metric_data(self, **kw):
            reads.append(kw)
            return cw.get_metric_data(**kw)

    deps.cloudwatch = Counting()
    run(cfg_for(bake="0s"), [a], deps)  # all-at-once, 0 s bake: alarms read, metrics cannot exist yet
    assert reads == []
    assert last(deps).data["verdict"]["candidate_metrics"]["skipped"].startswith("no observation window")
    run(cfg_for(bake="30s"), [FakeTarget("fake:b", OLD)], deps)  # a bake: read (the fake has no metrics)
    a2 = FakeTarget("fake:c", OLD)
    a2.error_metrics = Metric.error_metrics
    run(cfg_for(bake="30s"), [a2], deps)
    assert reads and "skipped" not in last(deps).data["verdict"]["candidate_metrics"]


def test_target_names_without_importing_target_modules():
    """kinds_in answers from the config: the same names as each module's names(), and a
    Lambda-only deploy imports no SageMaker/Step Functions/Batch code."""
    import subprocess
    import sys

    from pipeline_tools import targets as tg

    cfg = cfg_for()
    for kind in tg.KINDS:
        assert tg.NAMES[kind](cfg, "staging") == tg.load_kind(kind).names(cfg, "staging")
    probe = ("import sys\nfrom pipeline_tools.core import config\nfrom pipeline_tools import targets\n"
             f"cfg = config.parse({CONFIG.format(strategy='all-at-once', percent='', bake='0s')!r})\n"
             "print(targets.stage_ids(cfg, 'staging'))\n"
             "print(sorted(m for m in sys.modules if m.startswith('pipeline_tools.targets.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "['lambda:predict']"
    kind_modules = {tg.KINDS[k].partition(":")[0] for k in tg.KINDS} | {"pipeline_tools.targets.sagemaker"}
    assert not kind_modules & set(eval(out.splitlines()[1]))
