"""The fenced stage lock and the validation of ledger items, against moto server.

Fencing: every acquisition draws a fresh token; renew/release and the holder's record writes
are conditional on it, so after `pt recover` takes the lock over (new token, same deploy id),
a late renew/release/write of the old holder fails instead of clobbering the recovery.
Validation: a damaged or foreign item is reported with its key and what is wrong.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline_tools.core.errors import UsageError
from pipeline_tools.release import ledger as L

from ..fakes import Clock


@pytest.fixture
def led(aws):
    client = aws.client("dynamodb")
    L.ensure_table(client, "iris-ledger", project="iris", stage="staging", local=True, sleep=lambda s: None)
    lg = L.Ledger(client, "iris-ledger", Clock())
    return lg


ALICE = {"name": "alice"}
RECOVERER = {"name": "ops"}


def _died(led: L.Ledger) -> tuple[L.Record, L.Lock]:
    """A deploy that holds the lock with its record unfinished, then its lease lapses."""
    rec = led.put_record("deploy", "prod", {"digest": "sha256:" + "a" * 64}, actor=ALICE, state="shifting")
    lock = led.acquire("prod", rec.id, ALICE, lease=10)
    led.clock.advance(11)
    return rec, lock


def test_each_acquisition_gets_a_fresh_token(led):
    first = led.acquire("staging", "d1", ALICE, lease=60)
    led.release(first)
    second = led.acquire("staging", "d1", ALICE, lease=60)
    assert first.token and second.token and first.token != second.token
    assert led.current_lock("staging").token == second.token


def test_recovery_takes_a_new_token_and_the_old_holder_cannot_renew_or_release(led):
    rec, old = _died(led)
    took = led.take_over("prod", rec.id, RECOVERER, lease=60)
    assert took.deploy_id == old.deploy_id and took.token != old.token  # same record, new fence
    with pytest.raises(L.FenceLost):
        led.renew(old, lease=60)
    led.release(old)  # a late release of the dead holder is a no-op ...
    held = led.current_lock("prod")
    assert held is not None and held.token == took.token and held.actor == RECOVERER  # ... not a clobber
    led.release(took)
    assert led.current_lock("prod") is None


def test_record_writes_are_fenced_by_the_lock(led):
    rec, old = _died(led)
    took = led.take_over("prod", rec.id, RECOVERER, lease=60)
    with pytest.raises(L.FenceLost):
        led.transition("prod", rec.id, "rolled_back", actor=ALICE, lock=old)
    with pytest.raises(L.FenceLost):
        led.append_event("prod", rec.id, "late", actor=ALICE, lock=old)
    with pytest.raises(L.FenceLost):
        led.put_record("deploy", "prod", {}, actor=ALICE, state="locked", lock=old)
    assert led.get("prod", rec.id).state == "shifting"  # the old holder changed nothing
    done = led.transition("prod", rec.id, "rolled_back", actor=RECOVERER, lock=took)
    assert done.state == "rolled_back"


def test_a_transition_survives_events_appended_by_another_process(led):
    """The holder's copy is stale once someone else appends an event (e.g. a notification):
    the state did not change, so the transition is re-applied to the fresh record."""
    lock = led.acquire("staging", "d1", ALICE, lease=60)
    mine = led.put_record("deploy", "staging", {}, actor=ALICE, state="locked", record_id="d1", lock=lock)
    led.clock.advance(1)
    led.append_event("staging", "d1", "notification", data={"notification": {"kind": "x"}})
    led.clock.advance(1)
    after = led.transition("staging", "d1", "updating", actor=ALICE, current=mine, lock=lock)
    assert after.state == "updating" and [t.get("event") or t.get("state") for t in after.transitions] == \
        ["locked", "notification", "updating"]


def test_a_state_changed_by_another_process_is_still_a_conflict(led):
    mine = led.put_record("deploy", "staging", {}, actor=ALICE, state="locked", record_id="d1")
    led.clock.advance(1)
    led.transition("staging", "d1", "failed", actor=RECOVERER)
    with pytest.raises(L.LedgerConflict):
        led.transition("staging", "d1", "updating", actor=ALICE, current=mine)


def test_acquire_refuses_when_a_dead_deploy_is_unfinished_even_without_a_lock(led):
    """Read under the lock: a record left unfinished (a rollback stopped part-way releases its
    lock) sends the next deployer to `pt recover`, and the lock is not kept."""
    led.put_record("deploy", "staging", {"operation": "rollback"}, actor=ALICE, state="shifting", record_id="rb1")
    with pytest.raises(L.RecoveryNeeded) as e:
        led.acquire("staging", "d2", ALICE, lease=60)
    assert "rb1" in e.value.message and "pt recover --stage staging" in e.value.hint
    assert led.current_lock("staging") is None


# --- corrupt or foreign items ------------------------------------------------------------------

GOOD = {"created": {"N": "1800000000.0"}, "updated": {"N": "1800000000.0"}, "kind": {"S": "deploy"},
        "state": {"S": "succeeded"}, "body": {"S": '{"actor":{},"data":{"digest":"sha256:x"},"transitions":[]}'}}

RECORD_CASES = [
    ("body-not-json", {"body": {"S": "{not json"}}, "body is not JSON"),
    ("body-a-list", {"body": {"S": "[1, 2]"}}, "body is a JSON list, not an object"),
    ("no-created", {"created": None}, "missing or mistyped created"),
    ("created-not-number", {"created": {"S": "yesterday"}}, "missing or mistyped created"),
    ("no-body", {"body": None}, "missing or mistyped body"),
    ("actor-a-string", {"body": {"S": '{"actor":"alice"}'}}, "body.actor is a str, not a dict"),
    ("transitions-a-dict", {"body": {"S": '{"transitions":{}}'}}, "body.transitions is a dict, not a list"),
    ("state-a-number", {"state": {"N": "3"}}, "state is not a string"),
]


def _put_raw(led, stage: str, sk: str, fields: dict) -> None:
    item = {"pk": {"S": stage}, "sk": {"S": sk}}
    if sk.startswith("R#"):
        item["id"] = {"S": sk[2:]}
    for k, v in fields.items():
        if v is not None:
            item[k] = v
    led.client.put_item(TableName=led.table, Item=item)


@pytest.mark.parametrize(("case", "change", "problem"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES])
def test_damaged_record_is_reported_with_its_key(led, case, change, problem):
    _put_raw(led, "staging", f"R#20260101T000000000Z-{case}", {**GOOD, **change})
    with pytest.raises(L.CorruptItem) as e:
        led.get("staging", f"20260101T000000000Z-{case}")
    assert f"pk=staging sk=R#20260101T000000000Z-{case} in table iris-ledger" in e.value.message
    assert problem in e.value.message and e.value.exit_code == 1 and "\n" not in e.value.message
    with pytest.raises(L.CorruptItem):  # strict readers (decisions) fail closed
        led.query("staging", "deploy")
    good = led.put_record("deploy", "staging", {"digest": "sha256:y"}, state="succeeded")
    skipped: list[L.CorruptItem] = []
    assert [r.id for r in led.query("staging", "deploy", on_corrupt=skipped.append)] == [good.id]
    assert [s.key for s in skipped] == [("staging", f"R#20260101T000000000Z-{case}")]


LOCK_CASES = [
    ("no-lease", {"deploy_id": {"S": "d1"}, "actor": {"S": "{}"}, "since": {"N": "1"}}, "lease_until"),
    ("actor-not-json", {"deploy_id": {"S": "d1"}, "actor": {"S": "{"}, "since": {"N": "1"},
                        "lease_until": {"N": "2"}}, "actor is not JSON"),
    ("no-deploy-id", {"actor": {"S": "{}"}, "since": {"N": "1"}, "lease_until": {"N": "2"}}, "deploy_id"),
    ("token-a-number", {"deploy_id": {"S": "d1"}, "actor": {"S": "{}"}, "since": {"N": "1"},
                        "lease_until": {"N": "2"}, "token": {"N": "7"}}, "token is not a string"),
]


@pytest.mark.parametrize(("case", "fields", "problem"), LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_damaged_lock_fails_closed_and_names_the_fix(led, case, fields, problem):
    _put_raw(led, "prod", "LOCK", fields)
    for read in (lambda: led.current_lock("prod"), lambda: led.acquire("prod", "d9", ALICE, lease=60)):
        with pytest.raises(L.CorruptItem) as e:
            read()
        assert "pk=prod sk=LOCK" in e.value.message and problem in e.value.message
        assert "pt recover --stage prod --force" in e.value.hint
    assert led.remove_damaged_lock("prod") is True
    assert led.current_lock("prod") is None and led.acquire("prod", "d9", ALICE, lease=60).deploy_id == "d9"
    assert led.remove_damaged_lock("prod") is False  # a sound lock is never removed by it


# --- PT_LOCK_LEASE -----------------------------------------------------------------------------------

LEASE_CASES = [("abc", None), ("", 120.0), ("30", 30.0), ("0", None), ("-5", None), ("nan", None), ("inf", None),
               ("1e9", None), ("0.5", None), ("86400", 86400.0), ("x" * 5000, None)]


@pytest.mark.parametrize(("raw", "want"), LEASE_CASES, ids=[c[0][:8] or "empty" for c in LEASE_CASES])
def test_lock_lease_from_env(raw, want):
    if want is not None:
        assert L.lease_from_env({"PT_LOCK_LEASE": raw}) == want
        return
    with pytest.raises(UsageError) as e:
        L.lease_from_env({"PT_LOCK_LEASE": raw})
    msg = e.value.message
    assert msg.startswith("PT_LOCK_LEASE=") and "between 1 and 86400" in msg and len(msg) < 200
    assert e.value.exit_code == 2


def test_bad_lock_lease_is_not_read_at_import():
    code = ("import pipeline_tools.release.ledger, pipeline_tools.release.deploy, "
            "pipeline_tools.targets.zoo, pipeline_tools.targets.sagemaker")
    r = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "PT_LOCK_LEASE": "abc"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-800:]
