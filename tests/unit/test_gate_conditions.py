"""infra/gate_conditions: when CodePipeline's CloudWatchAlarm rule can stand in for `pt gate --wait`."""

from __future__ import annotations

import pytest

from pipeline_tools.core.config import parse
from pipeline_tools.infra.gate_conditions import alarm_rules

BASE = """\
project: iris
region: us-east-1
images: {model: {}}
stages:
  staging:
    account: "111111111111"
    branch: integration
    deploy: {bake: BAKE}
    gate: {alarms: ALARMS, insufficient_data: POLICY}
"""


def cfg(alarms='["iris-staging-errors", "iris-staging-latency"]', policy="fail", bake="300s", extra=""):
    return parse(BASE.replace("ALARMS", alarms).replace("POLICY", policy).replace("BAKE", bake) + extra)


def test_exact_names_become_one_rule_each_with_bake_as_wait_time():
    r = alarm_rules(cfg(), "staging")
    assert r.usable
    assert r.rules == [
        {"name": "Alarm1", "configuration": {"AlarmName": "iris-staging-errors",
                                             "AlarmStates": "ALARM,INSUFFICIENT_DATA", "WaitTime": "5"}},
        {"name": "Alarm2", "configuration": {"AlarmName": "iris-staging-latency",
                                             "AlarmStates": "ALARM,INSUFFICIENT_DATA", "WaitTime": "5"}}]


@pytest.mark.parametrize(("bake", "minutes"), [("0s", "1"), ("61s", "2"), ("10m", "10"), ("3h", "60")])
def test_wait_time_is_whole_minutes_within_the_rule_range(bake, minutes):
    assert alarm_rules(cfg(bake=bake), "staging").rules[0]["configuration"]["WaitTime"] == minutes


def test_insufficient_data_pass_watches_alarm_only():
    assert alarm_rules(cfg(policy="pass"), "staging").rules[0]["configuration"]["AlarmStates"] == "ALARM"


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"alarms": '["iris-staging-*"]'}, "prefixes"),
    ({"alarms": '["iris-staging-errors", "iris-x-*"]'}, "prefixes"),
    ({"policy": "wait"}, "insufficient_data: wait"),
    ({"extra": 'accounts: {tooling: "333333333333"}\n'}, "tooling account"),
])
def test_gates_a_rule_cannot_express_keep_pt_gate_wait(kwargs, reason):
    r = alarm_rules(cfg(**kwargs), "staging")
    assert not r.usable and r.rules == [] and reason in r.reason
