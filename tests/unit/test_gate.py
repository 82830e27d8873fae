"""gate.verdict (pure, property-tested) and the CloudWatch reader (Stubber for alarm history)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools import gate
from pipeline_tools.gate import (
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


def test_no_patterns_passes_with_note():
    v = verdict([], [], GatePolicy(()), T0, T0)
    assert v.passed and "no gate alarms configured" in v.notes[0]


states = st.sampled_from([OK, ALARM, INSUFFICIENT])
alarm_st = st.builds(lambda i, s, d: a(f"iris-staging-f{i}", s, T0 + d), st.integers(0, 5), states,
                     st.floats(-100, 100))
trans_st = st.builds(lambda i, s, d: Transition(f"iris-staging-f{i}", None, s, T0 + d),
                     st.integers(0, 5), states, st.floats(-100, 100))


@given(st.lists(alarm_st, max_size=6, unique_by=lambda x: x.name), st.lists(trans_st, max_size=6),
       st.sampled_from(["fail", "pass", "wait"]), st.sampled_from(["block", "ignore"]))
def test_verdict_properties(alarms, hist, insufficient, pre):
    pol = GatePolicy(POL.patterns, insufficient, pre)
    v = verdict(alarms, hist, pol, T0 + 200, T0)
    # never PASS while an alarm fires (none are preexisting here), nor with a pattern unmatched
    if any(x.state == ALARM for x in alarms) or not alarms:
        assert v.status == FAIL
    if any(t.new == ALARM and t.at >= T0 and t.alarm in {x.name for x in alarms} for t in hist):
        assert v.status == FAIL
    if v.status == PASS:
        assert all(x.state == OK or (x.state == INSUFFICIENT and insufficient == "pass") for x in alarms)
    # status is the worst of the reasons; every alarm gets a reason
    assert {r.name for r in v.reasons} >= {x.name for x in alarms}
    rank = {PASS: 0, WAIT: 1, FAIL: 2}
    assert rank[v.status] == max(rank[r.status] for r in v.reasons)


# --- reader: Stubber for describe_alarm_history (moto lacks it) ----------------------------


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


def test_history_unsupported_falls_back_to_polling_and_records_it():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 - 100))
        stub.add_client_error("describe_alarm_history", "InternalFailure", http_status_code=500)
        stub.add_response("describe_alarms", _alarm_resp(OK, T0 + 7))  # changed between polls
        w = GateWatch(cw, POL, T0)
        w.start()
        v1 = w.poll(T0 + 5)
        v2 = w.poll(T0 + 10)  # history is not asked again
        stub.assert_no_pending_responses()
    assert v1.passed and "polling only" in v1.history_source
    assert v2.failed and "between polls" in v2.failing()[0].why


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


def test_describe_alarms_error_is_fail_not_exception():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_client_error("describe_alarms", "Throttling", http_status_code=400)
        v = gate.evaluate(cw, POL, T0, T0)
    assert v.failed and "Throttling" in v.summary()


def test_exact_names_and_composites_are_read():
    cw = _cw()
    with Stubber(cw) as stub:
        stub.add_response("describe_alarms", {"MetricAlarms": [], "CompositeAlarms": [
            {"AlarmName": "iris-prod-health", "StateValue": "OK", "StateReason": "fine"}]},
            {"AlarmNames": ["iris-prod-health"], "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]})
        got = gate.read_alarms(cw, ["iris-prod-health"])
    assert got[0].kind == "CompositeAlarm" and got[0].state == OK
