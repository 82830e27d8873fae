"""gate.verdict (pure, property-tested) and the CloudWatch reader (Stubber for alarm history)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools.release import gate
from pipeline_tools.release.gate import (
    ALARM,
    FAIL,
    INSUFFICIENT,
    OK,
    PASS,
    WAIT,
    AlarmState,
    GatePolicy,
    GateWatch,
    Transition,
    verdict,
)

T0 = 1_800_000_000.0
POL = GatePolicy(("iris-staging-*",))


def a(name="iris-staging-predict-errors", state=OK, since=T0 - 100, threshold=1.0):
    return AlarmState(name, state, since, threshold, "GreaterThanOrEqualToThreshold", f"reason {state}")


def test_all_ok_passes_and_explains():
    v = verdict([a(), a("iris-staging-batch-errors")], [], POL, T0 + 10, T0)
    assert v.status == PASS and v.passed
    assert [r.status for r in v.reasons] == [PASS, PASS]
    assert v.to_dict()["alarms"][0]["comparison"] == ">="


def test_alarm_fails_with_name_state_since_threshold_reason():
    v = verdict([a(state=ALARM, since=T0 + 5)], [], POL, T0 + 10, T0)
    assert v.failed
    r = v.failing()[0]
    assert (r.name, r.state, r.since, r.threshold, r.reason) == ("iris-staging-predict-errors", ALARM, T0 + 5, 1.0,
                                                                "reason ALARM")
    assert "iris-staging-predict-errors" in v.summary() and "ALARM" in v.summary()


def test_unmatched_pattern_fails_closed():
    v = verdict([a()], [], GatePolicy(("iris-staging-*", "iris-staging-latency")), T0, T0)
    assert v.failed
    assert "no alarm matches 'iris-staging-latency'" in v.failing()[0].why


def test_prefix_matching_nothing_fails_closed():
    v = verdict([a("other-alarm")], [], POL, T0, T0)
    assert v.failed and "no alarm matches" in v.summary()


def test_api_error_fails():
    v = verdict(None, [], POL, T0, T0, error="ThrottlingException")
    assert v.failed and "ThrottlingException" in v.summary()


@pytest.mark.parametrize("policy,expected", [("fail", FAIL), ("pass", PASS), ("wait", WAIT)])
def test_insufficient_data_per_policy(policy, expected):
    v = verdict([a(state=INSUFFICIENT)], [], GatePolicy(POL.patterns, insufficient_data=policy), T0, T0)
    assert v.status == expected


def test_transition_into_alarm_in_window_fails_even_if_recovered():
    hist = [Transition("iris-staging-predict-errors", OK, ALARM, T0 + 3, "spike"),
            Transition("iris-staging-predict-errors", ALARM, OK, T0 + 4, "fine")]
    v = verdict([a(state=OK, since=T0 + 4)], hist, POL, T0 + 10, T0)
    assert v.failed and "went into ALARM" in v.failing()[0].why and "now OK" in v.failing()[0].why


def test_transition_before_window_does_not_count():
    hist = [Transition("iris-staging-predict-errors", OK, ALARM, T0 - 50)]
    assert verdict([a()], hist, POL, T0 + 10, T0).passed


def test_preexisting_block_and_ignore():
    alarms = [a(state=ALARM, since=T0 - 500)]
    block = verdict(alarms, [], POL, T0, T0, preexisting={"iris-staging-predict-errors"})
    assert block.failed and "preexisting_alarm: block" in block.summary()
    ign = GatePolicy(POL.patterns, preexisting_alarm="ignore")
    assert verdict(alarms, [], ign, T0, T0, preexisting={"iris-staging-predict-errors"}).passed
    # ...but a new transition into ALARM during the window still fails with ignore
    new = [Transition("iris-staging-predict-errors", OK, ALARM, T0 + 2)]
    assert verdict(alarms, new, ign, T0 + 5, T0, preexisting={"iris-staging-predict-errors"}).failed


def test_no_patterns_is_a_fail_unless_the_stage_opts_out():
    v = verdict([], [], GatePolicy(()), T0, T0)
    assert v.failed and "gate.alarms is empty" in v.summary() and "allow_no_alarms" in v.summary()
    v = verdict([], [], GatePolicy((), allow_no_alarms=True), T0, T0)
    assert v.passed and "allow_no_alarms is true" in v.notes[0] and "nothing was checked" in v.summary()


states = st.sampled_from([OK, ALARM, INSUFFICIENT])
alarm_st = st.builds(lambda i, s, d: a(f"iris-staging-f{i}", s, T0 + d), st.integers(0, 5), states,
                     st.floats(-100, 100))
trans_st = st.builds(lambda i, s, d: Transition(f"iris-staging-f{i}", None, s, T0 + d),
                     st.integers(0, 5), states, st.floats(-100, 100))


@given(st.lists(alarm_st, max_size=6, unique_by=lambda x: x.name), st.lists(trans_st, max_size=6),
       st.sampled_from(["fail", "pass", "wait"]), st.sampled_from(["block", "ignore"]),
       st.sets(st.sampled_from([f"iris-staging-f{i}" for i in range(6)])))
def test_verdict_properties(alarms, hist, insufficient, pre, preexisting):
    pol = GatePolicy(POL.patterns, insufficient, pre)
    v = verdict(alarms, hist, pol, T0 + 200, T0, preexisting=preexisting)
    names = {x.name for x in alarms}
    # never PASS while an alarm fires (unless preexisting, unchanged, ignored), nor with a pattern unmatched
    if any(x.state == ALARM and not (x.name in preexisting and pre == "ignore" and x.since < T0) for x in alarms) \
            or not alarms:
        assert v.status == FAIL
    if any(t.new == ALARM and t.at >= T0 and t.alarm in names for t in hist):
        assert v.status == FAIL
    if v.status == PASS:
        for x in alarms:
            assert x.state == OK or (x.state == INSUFFICIENT and insufficient == "pass") or \
                (x.state == ALARM and x.name in preexisting and pre == "ignore")
            if x.since >= T0:  # changed inside the window: history must show where it went
                assert any(t.alarm == x.name and t.new == x.state for t in hist)
    # status is the worst of the reasons; every alarm gets a reason
    assert {r.name for r in v.reasons} >= names
    rank = {PASS: 0, WAIT: 1, FAIL: 2}
    assert rank[v.status] == max(rank[r.status] for r in v.reasons)


# --- the verdict, exhaustively for one alarm ------------------------------------------------
# Every combination of: state now × how it relates to the window start × what history says ×
# preexisting or not × both policies, against a spec written as a priority list.

NAME = "iris-staging-predict-errors"
OTHER = {OK: INSUFFICIENT, ALARM: OK, INSUFFICIENT: OK}
RELATIONS = {  # name: (since now, snapshot entry or None, snapshot given, changed in window?)
    "before-window": (T0 - 100, None, False, False),
    "in-window": (T0 + 30, None, False, True),
    "unknown-since": (None, None, False, True),
    "snap-same": (T0 + 30, "same", True, False),   # timestamp inside the window, but = snapshot (clock skew)
    "snap-newer": (T0 + 30, "older", True, True),
    "snap-state": (T0 + 30, "other-state", True, True),
    "snap-absent": (T0 - 100, None, True, True),
}
HISTORY = ("none", "explains", "alarm", "err-retryable", "err-fatal")


def spec(state, changed, hist, into_alarm_at, floor, pre, policy):
    # `floor`: a transition counts after the alarm's change recorded in the snapshot, else from T0
    if into_alarm_at is not None and into_alarm_at > floor:
        return FAIL
    if state == ALARM:
        if changed or not pre:
            return FAIL
        return PASS if policy.preexisting_alarm == "ignore" else FAIL
    if changed:
        if hist in ("none", "err-retryable"):
            return WAIT
        if hist == "err-fatal":
            return FAIL
    if state == INSUFFICIENT:
        return {"fail": FAIL, "pass": PASS, "wait": WAIT}[policy.insufficient_data]
    return PASS


def _case(state, rel, hist):
    since, snap_kind, with_snap, changed = RELATIONS[rel]
    snap_alarms = []
    if snap_kind == "same":
        snap_alarms = [a(state=state, since=since)]
    elif snap_kind == "older":
        snap_alarms = [a(state=state, since=T0 - 100)]
    elif snap_kind == "other-state":
        snap_alarms = [a(state=OTHER[state], since=T0 - 100)]
    snapshot = gate.Snapshot(T0, tuple(snap_alarms)) if with_snap else None
    explain_at = since if since is not None else T0 + 50
    history, err = [], None
    if hist == "explains":
        history = [Transition(NAME, OTHER[state], state, explain_at)]
    elif hist == "alarm":
        history = [Transition(NAME, OK, ALARM, T0 + 10), Transition(NAME, ALARM, state, T0 + 20)]
        if rel == "snap-same":  # unchanged since the snapshot: nothing can have happened after it
            history = [Transition(NAME, OK, ALARM, since - 20), Transition(NAME, ALARM, state, since)]
    elif hist.startswith("err"):
        err = gate.ReadError("describe_alarm_history", "boom", hist == "err-retryable")
    floor = snap_alarms[0].since if snap_alarms else T0 - 1e-9
    into = [t.at for t in history if t.new == ALARM]
    return a(state=state, since=since), snapshot, history, err, changed, into[0] if into else None, floor


def test_verdict_exhaustive_for_one_alarm():
    n = 0
    for state in (OK, ALARM, INSUFFICIENT):
        for rel in RELATIONS:
            for hist in HISTORY:
                for pre in (False, True):
                    for pe in ("block", "ignore"):
                        for ins in ("fail", "pass", "wait"):
                            pol = GatePolicy(POL.patterns, ins, pe)
                            alarm, snapshot, history, err, changed, at, floor = _case(state, rel, hist)
                            v = verdict([alarm], history, pol, T0 + 60, T0, preexisting={NAME} if pre else (),
                                        snapshot=snapshot, history_error=err)
                            want = spec(state, changed, hist, at, floor, pre, pol)
                            assert v.status == want, (state, rel, hist, pre, pe, ins, v.summary())
                            if snapshot is not None:
                                assert [x["name"] for x in v.to_dict()["snapshot"]["alarms"]] == \
                                    [x.name for x in snapshot.alarms]
                            n += 1
    assert n == 3 * len(RELATIONS) * len(HISTORY) * 2 * 2 * 3


@pytest.mark.parametrize("case,alarms,kw,status,why", [
    # an alarm that fired and recovered inside the window, history unreadable: not PASS
    ("recovered, history denied", [a(since=T0 + 4)],
     {"history_error": gate.ReadError("describe_alarm_history", "AccessDenied: no", False)}, FAIL,
     "alarm history is unreadable"),
    ("recovered, history throttled", [a(since=T0 + 4)],
     {"history_error": gate.ReadError("describe_alarm_history", "Throttling: slow down", True)}, WAIT,
     "a later check may succeed"),
    ("recovered, history not read", [a(since=T0 + 4)], {}, WAIT, "does not show that change"),
    # a preexisting alarm that recovered and fired again inside the window is a new ALARM
    ("preexisting re-fired (ignore)", [a(state=ALARM, since=T0 + 5)],
     {"preexisting": {NAME}, "snapshot": gate.Snapshot(T0, (a(state=ALARM, since=T0 - 500),))}, FAIL,
     "went into ALARM"),
    ("preexisting unchanged (ignore)", [a(state=ALARM, since=T0 - 500)],
     {"preexisting": {NAME}, "snapshot": gate.Snapshot(T0, (a(state=ALARM, since=T0 - 500),))}, PASS,
     "ignored"),
    # an alarm watched at window start that is gone: its evidence is lost
    ("alarm deleted in window", [a("iris-staging-batch-errors")],
     {"snapshot": gate.Snapshot(T0, (a(), a("iris-staging-batch-errors")))}, FAIL, "is gone now"),
    # describe_alarms failed after a transition was seen: the transition is still reported
    ("read error keeps what was seen", None,
     {"error": gate.ReadError("describe_alarms", "Throttling: x", True)}, FAIL, "went into ALARM"),
])
def test_fail_open_cases_of_the_verdict(case, alarms, kw, status, why):
    pol = GatePolicy(POL.patterns, preexisting_alarm="ignore")
    seen = [Transition(NAME, OK, ALARM, T0 + 2, "spike", "poll")] if alarms is None else []
    v = verdict(alarms, seen, pol, T0 + 10, T0, **kw)
    assert v.status == status, (case, v.summary())
    assert why in v.summary() or why in " ".join(r.why for r in v.reasons), (case, v.summary())


def test_snapshot_round_trips_and_malformed_is_none():
    s = gate.Snapshot(T0, (AlarmState(NAME, OK, T0 - 1.25),
                           AlarmState("iris-staging-x", ALARM, None, kind="CompositeAlarm")), "deploy")
    assert gate.Snapshot.from_dict(s.to_dict()) == s
    assert gate.Snapshot.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    for bad in (None, {}, {"at": "x", "alarms": []}, {"at": T0, "alarms": [{"state": OK}]}, "snap"):
        assert gate.Snapshot.from_dict(bad) is None


# --- reader: Stubber for describe_alarm_history (moto lacks it) ----------------------------


def _no_sleep(_s: float) -> None:
    pass


class Sleeps(list):
    def __call__(self, s: float) -> None:
        self.append(s)


def _cw():
    return boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def _alarm_resp(state, ts):
    return {"MetricAlarms": [{"AlarmName": "iris-staging-predict-errors", "StateValue": state,
                              "StateReason": "r", "Threshold": 1.0,
                              "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                              "StateUpdatedTimestamp": datetime.fromtimestamp(ts, UTC)}],
            "CompositeAlarms": []}


def test_history_covers_gap_between_polls():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 4))
        hist = {"AlarmHistoryItems": [
            {"AlarmName": "iris-staging-predict-errors", "HistoryItemType": "StateUpdate",
             "Timestamp": datetime.fromtimestamp(T0 + 2, UTC), "HistorySummary": "Alarm updated from OK to ALARM",
             "HistoryData": json.dumps({"oldState": {"stateValue": "OK"},
                                        "newState": {"stateValue": "ALARM", "stateReason": "spike"}})},
            {"AlarmName": "iris-staging-predict-errors", "HistoryItemType": "StateUpdate",
             "Timestamp": datetime.fromtimestamp(T0 + 4, UTC), "HistorySummary": "Alarm updated from ALARM to OK",
             "HistoryData": json.dumps({"oldState": {"stateValue": "ALARM"}, "newState": {"stateValue": "OK"}})}]}
        stub.add_response("describe_alarm_history", hist)
        w = GateWatch(cw, POL, T0)
        assert w.start() == []
        v = w.poll(T0 + 5)
        stub.assert_no_pending_responses()
    assert v.failed
    assert v.history_source.startswith("describe_alarm_history")
    assert "from alarm history" in v.failing()[0].why


def test_poll_sees_flip_and_remembers_it():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(ALARM, T0 + 3))
        stub.add_client_error("describe_alarm_history", "InternalFailure", http_status_code=500)
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 6))
        w = GateWatch(cw, POL, T0)
        w.start()
        assert w.poll(T0 + 4).failed
        v = w.poll(T0 + 8)
    assert v.failed and "seen by polling" in v.failing()[0].why


@pytest.mark.parametrize("code,status,expected", [
    ("Throttling", 400, WAIT),            # waiting can help
    ("InternalFailure", 500, WAIT),
    ("AccessDenied", 403, FAIL),          # it cannot
    ("ValidationError", 400, FAIL),
])
def test_describe_alarms_error_is_fail_or_wait_not_exception(code, status, expected):
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_client_error("describe_alarms", code, http_status_code=status)
        v = gate.evaluate(cw, POL, T0, T0, sleep=_no_sleep)
    assert v.status == expected and code in v.summary()
    assert v.to_dict()["errors"][0]["api"] == "describe_alarms"


def test_exact_names_and_composites_are_read():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", {"MetricAlarms": [], "CompositeAlarms": [
            {"AlarmName": "iris-prod-health", "StateValue": "OK", "StateReason": "fine"}]},
            {"AlarmNames": ["iris-prod-health"], "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]})
        got = gate.read_alarms(cw, ["iris-prod-health"])
    assert got[0].kind == "CompositeAlarm" and got[0].state == OK


def _hist_item(old, new, ts, name=NAME):
    return {"AlarmName": name, "HistoryItemType": "StateUpdate", "Timestamp": datetime.fromtimestamp(ts, UTC),
            "HistorySummary": f"Alarm updated from {old} to {new}",
            "HistoryData": json.dumps({"oldState": {"stateValue": old}, "newState": {"stateValue": new}})}


def _history_params(start, end, name=NAME):
    return {"AlarmName": name, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "HistoryItemType": "StateUpdate",
            "ScanBy": "TimestampAscending", "StartDate": datetime.fromtimestamp(start, UTC),
            "EndDate": datetime.fromtimestamp(end + 1, UTC), "MaxRecords": 100}


RECOVERED = _alarm_resp(OK, T0 + 4)   # fired and recovered inside the window [T0, T0+10]


@pytest.mark.parametrize("case,errors,then,status,calls,sleeps", [
    ("AccessDenied is not retried", [("AccessDenied", 403)], None, FAIL, 1, []),
    ("throttled every time", [("Throttling", 400)] * 3, None, WAIT, 3, [0.2, 0.4]),
    ("HTTP 500 every time (moto)", [("500", 500)] * 3, None, WAIT, 3, [0.2, 0.4]),
    ("throttled, then history shows the ALARM", [("Throttling", 400)], "alarm", FAIL, 2, [0.2]),
    ("5xx, then history shows only OK", [("InternalFailure", 500)] * 2, "ok", PASS, 3, [0.2, 0.4]),
])
def test_evaluate_recovered_alarm_with_history_errors(case, errors, then, status, calls, sleeps):
    """gate.evaluate (`pt gate`): an alarm OK now but changed inside the window needs its history."""
    cw, slept = _cw(), Sleeps()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", RECOVERED)
        for code, http in errors:
            stub.add_client_error("describe_alarm_history", code, http_status_code=http,
                                  expected_params=_history_params(T0, T0 + 10))
        if then == "alarm":
            stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
                _hist_item(OK, ALARM, T0 + 2), _hist_item(ALARM, OK, T0 + 4)]})
        elif then == "ok":
            stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
                _hist_item(INSUFFICIENT, OK, T0 + 4)]})
        v = gate.evaluate(cw, POL, T0 + 10, T0, sleep=slept)
        stub.assert_no_pending_responses()
    assert v.status == status, (case, v.summary())
    assert slept == sleeps
    d = v.to_dict()
    if then is None:
        assert d["errors"] and d["errors"][0]["api"] == "describe_alarm_history"
        assert "unreadable" in v.summary()
        assert d["errors"][0]["retryable"] is (status == WAIT)
    if then == "alarm":
        assert "from alarm history" in v.summary()
        assert [t["new"] for t in d["transitions"]] == [ALARM, OK]


def test_unchanged_alarms_need_no_history_and_pass():
    """Nothing changed since the snapshot: no describe_alarm_history call (moto lacks it), PASS."""
    cw = _cw()
    with Stubber(cw) as stub:  # a history call would find no stubbed response and fail the gate
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 30))
        snap = gate.Snapshot(T0 - 1, (AlarmState(NAME, OK, T0 + 30),))  # CloudWatch's clock is ahead of ours
        v = gate.evaluate(cw, POL, T0 + 60, T0, snapshot=snap, sleep=_no_sleep)
    assert v.passed, v.summary()
    assert v.to_dict()["snapshot"]["at"] == T0 - 1


def test_history_item_that_cannot_be_parsed_is_unreadable_history():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", RECOVERED)
        stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
            {"AlarmName": NAME, "HistoryItemType": "StateUpdate", "Timestamp": datetime.fromtimestamp(T0 + 2, UTC),
             "HistorySummary": "Alarm updated", "HistoryData": "{not json"}]})
        v = gate.evaluate(cw, POL, T0 + 10, T0, sleep=_no_sleep)
    assert v.failed and "unreadable history item" in v.summary()


def test_history_is_read_for_composite_alarms_too():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
            _hist_item(OK, ALARM, T0 + 2, "iris-prod-health")]},
            _history_params(T0, T0 + 10, "iris-prod-health"))
        got = gate.read_history(cw, ["iris-prod-health"], T0, T0 + 10, sleep=_no_sleep)
    assert [(t.alarm, t.new) for t in got] == [("iris-prod-health", ALARM)]


def test_history_with_endless_pages_is_unreadable(monkeypatch):
    monkeypatch.setattr(gate, "HISTORY_MAX_PAGES", 2)
    cw = _cw()
    with Stubber(cw) as stub:
        for _ in range(2):
            stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [], "NextToken": "more"})
        with pytest.raises(gate.HistoryUnavailable, match="more than 2 pages"):
            gate.read_history(cw, [NAME], T0, T0 + 10, sleep=_no_sleep)


# --- GateWatch: what earlier polls saw is never discarded -----------------------------------


@pytest.mark.parametrize("code,http,status", [("Throttling", 400, WAIT), ("AccessDenied", 403, FAIL)])
def test_watch_final_read_error_is_not_pass(code, http, status):
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_client_error("describe_alarms", code, http_status_code=http)
        w = GateWatch(cw, POL, T0, sleep=_no_sleep)
        w.start()
        assert w.poll(T0 + 5).passed
        v = w.poll(T0 + 10)
    assert v.status == status and code in v.summary()


def test_watch_final_read_error_keeps_the_alarm_seen_earlier():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(ALARM, T0 + 3))
        stub.add_client_error("describe_alarms", "Throttling", http_status_code=400)
        w = GateWatch(cw, POL, T0, sleep=_no_sleep)
        w.start()
        assert w.poll(T0 + 4).failed
        v = w.poll(T0 + 8)
    assert v.failed
    assert [(r.name, r.status) for r in v.reasons] == [(NAME, FAIL), ("(cloudwatch)", WAIT)]
    assert "went into ALARM" in v.failing()[0].why and "seen by polling" in v.failing()[0].why


def test_watch_history_that_worked_before_but_fails_now_is_not_pass():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 3))
        stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
            _hist_item(OK, INSUFFICIENT, T0 + 2), _hist_item(INSUFFICIENT, OK, T0 + 3)]})
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 8))  # changed again between polls
        for _ in range(3):
            stub.add_client_error("describe_alarm_history", "ServiceUnavailable", http_status_code=503)
        w = GateWatch(cw, POL, T0, sleep=_no_sleep)
        w.start()
        assert w.poll(T0 + 5).passed
        v = w.poll(T0 + 10)
        stub.assert_no_pending_responses()
    assert v.status == WAIT and "alarm history is unreadable" in v.summary()


def test_watch_state_change_between_polls_without_history_is_not_pass():
    """INSUFFICIENT_DATA at start, OK now: it may have been ALARM in between."""
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(INSUFFICIENT, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 3))
        stub.add_client_error("describe_alarm_history", "AccessDenied", http_status_code=403)
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 3))  # history is not asked again
        w = GateWatch(cw, GatePolicy(POL.patterns, insufficient_data="pass"), T0, sleep=_no_sleep)
        w.start()
        v1 = w.poll(T0 + 5)
        v2 = w.poll(T0 + 10)
        stub.assert_no_pending_responses()
    assert v1.failed and v2.failed
    assert "INSUFFICIENT_DATA at window start, OK now" in v2.summary()
    assert "cloudwatch:DescribeAlarmHistory" in v2.summary()


def test_watch_snapshot_now_is_the_last_read():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        w = GateWatch(cw, POL, T0, sleep=_no_sleep)
        assert w.start() == [] and w.snapshot.at == T0
        w.poll(T0 + 7)
    snap = w.snapshot_now()
    assert snap.at == T0 + 7 and [(x.name, x.state, x.since) for x in snap.alarms] == [(NAME, OK, T0 - 100)]


def test_clock_skew_cannot_hide_a_transition_after_the_snapshot():
    """CloudWatch's clock is 100 s behind ours: the spike at its T0-90 happened after the
    snapshot (its alarm was OK since T0-500), so it counts although it is "before" our window."""
    cw = _cw()
    snap = gate.Snapshot(T0 - 1, (AlarmState(NAME, OK, T0 - 500),))
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 80))
        stub.add_response("describe_alarm_history", {"AlarmHistoryItems": [
            _hist_item(OK, ALARM, T0 - 90), _hist_item(ALARM, OK, T0 - 80)]},
            _history_params(T0 - 500 + 1e-3, T0 + 10))
        v = gate.evaluate(cw, POL, T0 + 10, T0, snapshot=snap, sleep=_no_sleep)
        stub.assert_no_pending_responses()
    assert v.failed and "went into ALARM" in v.summary() and "from alarm history" in v.summary()
