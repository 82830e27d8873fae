"""The deploy engine under a fenced lock, against moto server (real HTTP).

- a holder that loses its lock (taken over) or cannot renew it stops shifting, ends at the old
  version, and never clobbers the new holder's lock or record;
- the plan is read again under the lock;
- two deploys started together on one stage: the loser exits 4, the winner always finishes;
- damaged ledger items: `pt history` / `pt status` skip them with a warning, the others refuse
  with one line; a bad PT_LOCK_LEASE is one line, exit 2.
"""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError

from pipeline_tools.core.errors import DeployFailed, LockedError
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_deploy import (
    FUNCTIONS,
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
    wait_for,
)


def _deps(stage, **kw):
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    return dp.Deps(stage.lam, stage.cw, Ledger(stage.ddb, "rel-ledger"), clock=time.time, sleep=time.sleep,
                   log=lambda m: None, actor={"name": "alice"}, lease=kw.pop("lease", 30), **kw)


def _plan(stage, n=2):
    from pipeline_tools.core.config import load

    cfg = load(stage.config)
    return cfg, dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(n)), stage.lam)


def _at_canary(stage, led) -> bool:
    recs = led.query("staging", "deploy", limit=1)
    return bool(recs) and recs[0].state == "shifting" and {w.get("2") for _, w in stage.live().values()} == {0.5}


# --- heartbeat failures ------------------------------------------------------------------------------


def test_lock_taken_over_mid_shift_old_holder_stops_and_does_not_clobber(stage):
    """`pt recover --force` takes the lock (new token, same deploy id) while the deploy sits at
    its canary: the old holder stops shifting, ends at the old version, and its late ledger
    writes and its release fail against the fence: the recovery's lock and record stand."""
    stage.write_config(strategy="canary", percent=50, interval="3s", bake="0s", poll="0.1s")
    cfg, plan = _plan(stage)
    deps = _deps(stage, lease=1.5)
    led = deps.ledger
    taken: dict = {}

    def recoverer():
        wait_for(lambda: _at_canary(stage, led), timeout=30, interval=0.02)
        rec = led.query("staging", "deploy", limit=1)[0]
        taken["lock"] = led.take_over("staging", rec.id, {"name": "ops"}, lease=60, force=True)

    t = threading.Thread(target=recoverer)
    t.start()
    with pytest.raises(DeployFailed) as e:
        dp.deploy(cfg, plan, deps)
    t.join()
    assert "lost the lock on stage staging" in e.value.message and "took stage staging over" in e.value.hint
    assert stage.live_digests() == {digest(1)} and all(not w for _, w in stage.live().values())
    held = led.current_lock("staging")
    assert held is not None and held.token == taken["lock"].token and held.actor == {"name": "ops"}
    rec = led.query("staging", "deploy", limit=1)[0]
    assert rec.state == "shifting"  # the fenced-out holder wrote neither rolling_back nor rolled_back
    out = dp.recover(cfg, "staging", dp.Deps(stage.lam, stage.cw, Ledger(stage.ddb, "rel-ledger"),
                                              actor={"name": "ops"}, lease=60), force=True)
    assert out["action"] == "roll-back" and led.get("staging", rec.id).state == "rolled_back"
    assert led.current_lock("staging") is None


def test_lock_renewal_failing_stops_the_deploy_before_the_lease_lapses(stage):
    """DynamoDB refuses every renewal (the record writes still work): after 2/3 of the lease
    the deploy stops, rolls back, records it, and releases the lock."""
    stage.write_config(strategy="canary", percent=50, interval="0.3s", bake="6s", poll="0.1s")
    cfg, plan = _plan(stage)
    deps = _deps(stage, lease=1.5)
    failing = threading.Event()

    def refuse_lock_renewal(params, **_kw):
        if failing.is_set() and params.get("Item", {}).get("sk", {}).get("S") == "LOCK" \
                and "ConditionExpression" in params and "tok" in params["ConditionExpression"]:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, "PutItem")

    stage.ddb.meta.events.register("before-parameter-build.dynamodb.PutItem", refuse_lock_renewal)
    seen: list[str] = []

    def log(m):
        seen.append(m)
        if m.startswith("baking"):
            failing.set()

    deps.log = log
    t0 = time.monotonic()
    try:
        with pytest.raises(DeployFailed) as e:
            dp.deploy(cfg, plan, deps)
    finally:
        stage.ddb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", refuse_lock_renewal)
    assert "lock renewal on stage staging failing" in e.value.message and "rolled back" in e.value.message
    assert time.monotonic() - t0 < 6, "it should stop well before the 6 s bake ends"
    assert any("lock renewal failed" in m for m in seen)
    assert stage.live_digests() == {digest(1)} and all(not w for _, w in stage.live().values())
    led = deps.ledger
    assert led.query("staging", "deploy", limit=1)[0].state == "rolled_back" and led.current_lock("staging") is None


# --- the plan under the lock ------------------------------------------------------------------------


def test_plan_is_read_again_under_the_lock(stage):
    """A plan made while v1 was live, run after another deploy moved every function to v2:
    the record (and so any rollback) starts from v2, not from the stale v1."""
    stage.write_config(strategy="all-at-once", bake="0s")
    cfg, stale = _plan(stage, 3)
    assert {f.previous_digest for f in stale.functions} == {digest(1)}
    cfg, other = _plan(stage, 2)
    dp.deploy(cfg, other, _deps(stage))
    live2 = {fn: v for fn, (v, _) in stage.live().items()}
    res = dp.deploy(cfg, stale, _deps(stage))
    rec = Ledger(stage.ddb, "rel-ledger").get("staging", res.deploy_id)
    assert {fn: i["previous_version"] for fn, i in rec.data["functions"].items()} == live2
    assert {fn: i["previous_digest"] for fn, i in rec.data["functions"].items()} == {fn: digest(2) for fn in FUNCTIONS}
    assert stage.live_digests() == {digest(3)}


# --- overlapping deploys -------------------------------------------------------------------------------


class _Sent:
    ok = True

    def __init__(self, kind: str):
        self.kind = kind

    def to_dict(self) -> dict:
        return {"kind": self.kind, "channels": []}


def test_a_locked_out_deploy_never_writes_to_the_winners_record(stage):
    """Deterministic core of the overlap bug: the loser's failure notice was attached to the
    newest record of the same digest, i.e. the winner's, changing it under the winner."""
    from pipeline_tools.release.promote import notified_deploy

    deps = _deps(stage)
    lock = deps.ledger.acquire("staging", "winner", {"name": "bob"}, lease=60)
    deps.ledger.put_record("deploy", "staging", {"digest": digest(2)}, state="locked", record_id="winner", lock=lock)
    cfg, plan = _plan(stage, 2)
    sent: list[str] = []

    def notify(kind, _stage, _info):
        sent.append(kind)
        return _Sent(kind)

    with pytest.raises(LockedError):
        notified_deploy(lambda: dp.deploy(cfg, plan, deps), ledger=deps.ledger, stage="staging",
                        digest=digest(2), strategy="canary", notify=notify)
    assert sent == ["deploy_started", "deploy_failed"]
    assert [t.get("state") for t in deps.ledger.get("staging", "winner").transitions] == ["locked"]


@pytest.mark.parametrize("round_", range(4))
def test_two_deploys_started_together_winner_always_finishes(stage, round_):
    """Two deploys of one digest, started together (threads, each with its own clients, as two
    CI runs): one exits with LockedError (exit 4), the other succeeds, every time."""
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.release.promote import notified_deploy

    stage.write_config(strategy="canary", percent=50, interval="0.3s", bake="0.3s", poll="0.1s")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    cfg, _ = _plan(stage, 2)
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def run(i: int) -> None:
        f = AwsFactory(region="us-east-1")
        lam, led = f.client("lambda"), Ledger(f.client("dynamodb"), "rel-ledger")
        deps = dp.Deps(lam, f.client("cloudwatch"), led, actor={"name": f"ci-{i}"}, lease=30)
        plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(2)), lam)
        barrier.wait()
        try:
            dp.check_startable(led, "staging", time.time)
            results[i] = notified_deploy(lambda: dp.deploy(cfg, plan, deps), ledger=led, stage="staging",
                                         digest=plan.digest, strategy=plan.strategy,
                                         notify=lambda kind, _s, _i: _Sent(kind))
        except Exception as e:  # the loser's error, or the winner's failure (which fails the test)
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    kinds = sorted(type(r).__name__ for r in results.values())
    assert kinds == ["DeployResult", "LockedError"], results
    winner = next(r for r in results.values() if isinstance(r, dp.DeployResult))
    assert winner.state == "succeeded"
    assert stage.live_digests() == {digest(2)} and all(not w for _, w in stage.live().values())
    recs = Ledger(stage.ddb, "rel-ledger").query("staging", "deploy")
    assert [r.state for r in recs] == ["succeeded"] and recs[0].id == winner.deploy_id
    assert [t["event"] for t in recs[0].transitions if t.get("event")] == ["notification"]  # its own only


# --- damaged items and env at the CLI ------------------------------------------------------------


def _corrupt_record(stage, rid: str) -> None:
    stage.ddb.put_item(TableName="rel-ledger", Item={
        "pk": {"S": "staging"}, "sk": {"S": f"R#{rid}"}, "id": {"S": rid}, "kind": {"S": "deploy"},
        "state": {"S": "succeeded"}, "created": {"N": "1900000000"}, "updated": {"N": "1900000000"},
        "body": {"S": "{oops"}})


def test_history_and_status_skip_a_damaged_record_with_a_warning(stage, run_pt):
    c = ("--config", stage.config, "--stage", "staging")
    stage.write_config(strategy="all-at-once", bake="0s")
    assert run_pt("deploy", *c, "--image-uri", uri(2)).exit_code == 0
    _corrupt_record(stage, "29990101T000000000Z-bad000")
    h = run_pt("history", *c, "--output", "json")
    assert h.exit_code == 0, h
    assert [r["digest"] for r in h.json()["deploys"]] == [digest(2)]
    assert "sk=R#29990101T000000000Z-bad000" in h.stderr and "body is not JSON" in h.stderr
    assert "Traceback" not in h.stderr
    s = run_pt("status", *c, "--output", "json")
    assert s.exit_code == 0, s
    st = s.json()["stages"][0]
    assert st["last_deploy"]["digest"] == digest(2) and "sk=R#29990101T000000000Z-bad000" in st["warnings"][0]
    d = run_pt("deploy", *c, "--image-uri", uri(3))  # a decision on a damaged ledger fails closed
    assert d.exit_code == 1 and "sk=R#29990101T000000000Z-bad000" in d.stderr and "Traceback" not in d.stderr
    assert stage.live_digests() == {digest(2)}


def test_damaged_lock_one_line_then_recover_force_removes_it(stage, run_pt):
    c = ("--config", stage.config, "--stage", "staging")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    stage.ddb.put_item(TableName="rel-ledger", Item={"pk": {"S": "staging"}, "sk": {"S": "LOCK"},
                                                     "deploy_id": {"S": "d1"}, "actor": {"S": "not json"}})
    d = run_pt("deploy", *c, "--image-uri", uri(2))
    assert d.exit_code == 1 and "pk=staging sk=LOCK" in d.stderr and "pt recover --stage staging --force" in d.stderr
    s = run_pt("status", *c)
    assert s.exit_code == 0 and "lock item damaged" in s.stdout + s.stderr
    assert run_pt("recover", *c).exit_code == 1
    r = run_pt("recover", *c, "--force", "--output", "json")
    assert r.exit_code == 0 and r.json()["action"] == "removed-damaged-lock", r
    assert run_pt("deploy", *c, "--image-uri", uri(2)).exit_code == 0


def test_bad_lock_lease_env_is_one_line_exit_2(stage, pt_subprocess):
    r = pt_subprocess("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2),
                      env={"PT_LOCK_LEASE": "two minutes"})
    assert r.returncode == 2, r.stderr
    assert "PT_LOCK_LEASE='two minutes' is not a lease in seconds" in r.stderr and "Traceback" not in r.stderr
    assert stage.live_digests() == {digest(1)}
