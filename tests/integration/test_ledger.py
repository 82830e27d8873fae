"""ledger.py against moto server: records, queries, transitions, the stage lock."""

from __future__ import annotations

import pytest

from pipeline_tools.core.errors import LockedError, NotFoundError
from pipeline_tools.release import ledger as L

from ..fakes import Clock


@pytest.fixture
def led(aws):
    client = aws.client("dynamodb")
    L.ensure_table(client, "iris-ledger", project="iris", stage="staging", local=True, sleep=lambda s: None)
    clock = Clock()
    lg = L.Ledger(client, "iris-ledger", clock)
    lg.test_clock = clock
    return lg


ALICE = {"name": "alice", "arn": "arn:aws:iam::111111111111:user/alice", "author": "bob@example.com"}


def test_missing_table_outside_local_mode_names_the_stack(aws):
    with pytest.raises(NotFoundError) as e:
        L.ensure_table(aws.client("dynamodb"), "iris-ledger", project="iris", stage="prod", local=False)
    assert "iris-ledger" in e.value.message and "iris-prod-stage" in e.value.hint


def test_ids_are_time_ordered():
    assert L.new_id(1000.0) < L.new_id(1000.002) < L.new_id(2000.0)


def test_records_newest_first_and_by_kind(led):
    ids = []
    for i, kind in enumerate(["deploy", "approval", "deploy", "promotion"]):
        led.test_clock.advance(1)
        ids.append(led.put_record(kind, "staging", {"n": i}, actor=ALICE).id)
    led.put_record("deploy", "prod", {"n": 99})
    assert [r.data["n"] for r in led.query("staging")] == [3, 2, 1, 0]
    assert [r.id for r in led.query("staging", "deploy")] == [ids[2], ids[0]]
    assert [r.data["n"] for r in led.query("staging", limit=2)] == [3, 2]
    assert led.get("staging", ids[1]).actor["name"] == "alice"
    assert led.get("staging", "nope") is None


def test_transitions_recorded_and_last_succeeded(led):
    rec = led.put_record("deploy", "staging", {"digest": "sha256:aa", "operation": "deploy"},
                         actor=ALICE, state="locked")
    for st in ("shifting", "baking", "succeeded"):
        led.test_clock.advance(1)
        rec = led.transition("staging", rec.id, st, reason=f"to {st}", actor=ALICE)
    assert [t["state"] for t in rec.transitions] == ["locked", "shifting", "baking", "succeeded"]
    led.test_clock.advance(1)
    bad = led.put_record("deploy", "staging", {"digest": "sha256:bb"}, state="locked")
    led.transition("staging", bad.id, "rolled_back", reason="gate FAIL")
    last = led.last_succeeded("staging")
    assert last.digest == "sha256:aa" and last.actor["author"] == "bob@example.com"
    assert led.unfinished("staging") is None
    led.test_clock.advance(1)
    half = led.put_record("deploy", "staging", {"digest": "sha256:cc"}, state="shifting")
    assert led.unfinished("staging").id == half.id


def test_transition_expected_state_and_events(led):
    rec = led.put_record("deploy", "staging", {}, state="locked")
    with pytest.raises(L.LedgerConflict):
        led.transition("staging", rec.id, "baking", expected="shifting")
    rec = led.append_event("staging", rec.id, "window-override", actor=ALICE, reason="hotfix",
                           data={"window_override": True})
    assert rec.state == "locked" and rec.data["window_override"] is True
    assert rec.transitions[-1]["event"] == "window-override" and rec.transitions[-1]["reason"] == "hotfix"


def test_lock_exclusive_then_released(led):
    lock = led.acquire("prod", "d1", ALICE, lease=60)
    with pytest.raises(LockedError) as e:
        led.acquire("prod", "d2", {"name": "carol"}, lease=60)
    assert e.value.exit_code == 4
    assert e.value.message.startswith("stage prod is locked by alice (deploy d1, since ")
    led.acquire("staging", "d3", ALICE)  # other stages are independent
    lock = led.renew(lock, lease=60)
    led.release(lock)
    assert led.current_lock("prod") is None
    assert led.acquire("prod", "d2", {"name": "carol"}).deploy_id == "d2"


def test_stale_lock_with_unfinished_deploy_needs_recovery(led):
    rec = led.put_record("deploy", "prod", {}, state="shifting", record_id="d1")
    led.acquire("prod", rec.id, ALICE, lease=10)
    led.test_clock.advance(11)
    with pytest.raises(L.RecoveryNeeded) as e:
        led.acquire("prod", "d2", ALICE)
    assert "pt recover --stage prod" in e.value.hint
    lock = led.take_over("prod", "r1", ALICE)
    assert led.current_lock("prod").deploy_id == "r1"
    with pytest.raises(L.LedgerConflict):
        led.renew(L.Lock("prod", "d1", ALICE, 0, 0))  # the dead one lost it
    led.release(lock)


def test_dead_zoo_operation_points_to_zoo_recover(led):
    rec = led.put_record("zoo", "prod", {"operation": "apply"}, state="applying", record_id="z1")
    led.acquire("prod", rec.id, ALICE, lease=10)
    led.test_clock.advance(11)
    with pytest.raises(L.RecoveryNeeded) as e:
        led.acquire("prod", "d2", ALICE)
    assert e.value.message.startswith("zoo z1 to stage prod died mid-way (state applying")
    assert "`pt zoo recover --stage prod`" in e.value.hint


def test_stale_lock_with_final_record_is_taken_over(led):
    rec = led.put_record("deploy", "prod", {}, state="succeeded", record_id="d1")
    led.acquire("prod", rec.id, ALICE, lease=10)
    led.test_clock.advance(11)
    assert led.acquire("prod", "d2", ALICE).deploy_id == "d2"


def test_take_over_live_lock_needs_force(led):
    led.acquire("prod", "d1", ALICE, lease=100)
    with pytest.raises(LockedError):
        led.take_over("prod", "r1", ALICE)
    assert led.take_over("prod", "r1", ALICE, force=True).deploy_id == "r1"
