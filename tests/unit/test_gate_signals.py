"""Gate signals: the pure judgement of every reading × policy × comparison, and how `gate.verdict`
combines them with the alarms (same lines, worst status wins, fail closed)."""

from __future__ import annotations

import itertools

import pytest

from pipeline_tools.core.errors import ConfigError
from pipeline_tools.release import gate
from pipeline_tools.release.signals import Metric, Reading, Signal, breaches, field_value, judge

NOW, START = 1_800_000_000.0, 1_799_999_000.0
OK_ALARM = gate.AlarmState("a-errors", gate.OK, START - 100)
POLICY = gate.GatePolicy(("a-*",))


def sig(missing="fail", comparison=">=", threshold=5.0, kind="metric") -> Signal:
    if kind == "report":
        return Signal("drift", "report", threshold, comparison, missing, report="s3://b/k.json", field="violations")
    return Signal("err-rate", "metric", threshold, comparison, missing, expression="100*e/i",
                  metrics=(("e", Metric("AWS/Lambda", "Errors")), ("i", Metric("AWS/Lambda", "Invocations"))))


@pytest.mark.parametrize("comparison,value,threshold,fails", [
    (">", 5, 5, False), (">", 5.1, 5, True), (">=", 5, 5, True), (">=", 4.9, 5, False),
    ("<", 5, 5, False), ("<", 4.9, 5, True), ("<=", 5, 5, True), ("<=", 5.1, 5, False)])
def test_breaches_every_comparison_at_and_around_the_threshold(comparison, value, threshold, fails):
    assert breaches(value, comparison, threshold) is fails
    v = judge(sig(comparison=comparison, threshold=threshold), Reading(value=value))
    assert v.status == (gate.FAIL if fails else gate.PASS) and v.name == "signal:err-rate"
    assert v.state == f"value {value:g}" and f"fails when {comparison} {threshold:g}" in v.why


@pytest.mark.parametrize("missing,kind", list(itertools.product(["fail", "pass", "wait"], ["metric", "report"])))
def test_missing_data_follows_the_policy_and_says_what_was_missing(missing, kind):
    v = judge(sig(missing, kind=kind), Reading(absent="report s3://b/k.json does not exist (yet)"))
    assert v.status == {"fail": gate.FAIL, "pass": gate.PASS, "wait": gate.WAIT}[missing]
    assert v.why == f"report s3://b/k.json does not exist (yet) (missing: {missing})" and v.state == "no data"


@pytest.mark.parametrize("missing", ["fail", "pass", "wait"])
def test_broken_input_fails_closed_whatever_the_missing_policy(missing):
    v = judge(sig(missing), Reading(broken="metric AWS/Lambda/Errors does not exist"))
    assert v.status == gate.FAIL and "does not exist (the gate fails closed)" in v.why


@pytest.mark.parametrize("missing,retryable,expected", [
    (m, r, gate.WAIT if r else gate.FAIL) for m in ("fail", "pass", "wait") for r in (True, False)])
def test_read_errors_fail_closed_or_wait_never_pass(missing, retryable, expected):
    err = gate.ReadError("get_metric_data", "AccessDenied: no", retryable)
    assert judge(sig(missing), Reading(error=err)).status == expected


def test_nan_is_missing_data():
    assert judge(sig("fail"), Reading(value=float("nan"))).status == gate.FAIL


STATUSES = {gate.PASS: Reading(value=1.0), gate.FAIL: Reading(value=9.0), gate.WAIT: Reading(absent="none yet")}


@pytest.mark.parametrize("alarm_state,signal_status", list(itertools.product(
    [gate.OK, gate.ALARM, gate.INSUFFICIENT], [gate.PASS, gate.FAIL, gate.WAIT])))
def test_verdict_combines_alarms_and_signals_worst_wins(alarm_state, signal_status):
    alarm = gate.AlarmState("a-errors", alarm_state, START - 100)
    v = gate.verdict([alarm], [], POLICY, NOW, START, signals=[(sig("wait"), STATUSES[signal_status])])
    alarm_status = {gate.OK: gate.PASS, gate.ALARM: gate.FAIL, gate.INSUFFICIENT: gate.FAIL}[alarm_state]
    order = [gate.FAIL, gate.WAIT, gate.PASS]
    assert v.status == min(alarm_status, signal_status, key=order.index)
    assert [r.name for r in v.reasons] == ["a-errors", "signal:err-rate"]
    if v.status == signal_status != gate.PASS:
        assert "signal:err-rate" in v.summary()


def test_failing_signal_is_explained_like_an_alarm_line():
    v = gate.verdict([OK_ALARM], [], POLICY, NOW, START, signals=[(sig(), Reading(value=7.5))])
    assert v.status == gate.FAIL
    assert v.summary() == "FAIL: signal:err-rate: value 7.5, threshold >=5: 7.5 >= 5: fails when >= 5"
    assert v.to_dict()["alarms"][1]["comparison"] == ">="


def test_signals_are_judged_when_alarms_cannot_be_read_and_with_no_alarms():
    err = gate.ReadError("describe_alarms", "Throttling", True)
    v = gate.verdict(None, [], POLICY, NOW, START, error=err, signals=[(sig(), Reading(value=9.0))])
    assert v.status == gate.FAIL and {r.name for r in v.reasons} == {"(cloudwatch)", "signal:err-rate"}
    none = gate.GatePolicy((), allow_no_alarms=True)
    assert gate.verdict([], [], none, NOW, START, signals=[(sig(), Reading(value=9.0))]).status == gate.FAIL
    assert gate.verdict([], [], none, NOW, START, signals=[(sig(), Reading(value=1.0))]).status == gate.PASS


def test_signal_read_errors_are_kept_in_the_verdict():
    err = gate.ReadError("get_metric_data", "boom", False)
    v = gate.verdict([OK_ALARM], [], POLICY, NOW, START, signals=[(sig(), Reading(error=err))])
    assert v.status == gate.FAIL and v.to_dict()["errors"] == [err.to_dict()]


@pytest.mark.parametrize("doc,path,value,why", [
    ({"violations": [{}, {}]}, "violations", 2.0, None),
    ({"violations": []}, "violations", 0.0, None),
    ({"a": {"b": [{"c": 0.25}]}}, "a.b.0.c", 0.25, None),
    ({"a": 3}, "a", 3.0, None),
    ({"a": 3}, "b", None, "field b is not in the report"),
    ({"a": {"b": 1}}, "a.c", None, "field a.c is not in the report"),
    ({"a": "high"}, "a", None, "field a is str 'high', not a number (or a list to count)"),
    ({"a": True}, "a", None, "field a is bool 'True', not a number (or a list to count)"),
    ({"a": [1]}, "a.3", None, "field a.3 is not in the report"),
])
def test_field_value(doc, path, value, why):
    assert field_value(doc, path) == (value, why)


def _load(tmp_path, signal: str):
    from pipeline_tools.core import config

    p = tmp_path / "pipeline.yml"
    p.write_text(f"""project: s
region: us-east-1
images: {{m: {{context: .}}}}
stages:
  dev:
    account: "111111111111"
    branch: dev
    gate:
      alarms: ["s-dev-*"]
      signals:
        - {signal}
""")
    return config.load(p)


@pytest.mark.parametrize("signal,message", [
    ("{name: x, threshold: 1}", "give exactly one of metric, metric_math or report"),
    ("{name: x, threshold: 1, report: 's3://b/k', metric: {namespace: N, name: M}}", "(got metric, report)"),
    ("{name: x, threshold: 1, metric_math: 'a+b'}", "metric_math needs `metrics"),
    ("{name: x, threshold: 1, metric_math: 'A', metrics: {A: {namespace: N, name: M}}}", "lower-case"),
    ("{name: x, threshold: 1, report: 's3://b/k'}", "needs `field`"),
    ("{name: x, threshold: 1, metric: {namespace: N, name: M}, period: 90s}", "multiple of 60"),
    ("{name: x, threshold: 1, metric: {namespace: N, name: M}, missing: maybe}", "missing"),
])
def test_config_mistakes_are_one_line_each(tmp_path, signal, message):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, signal)
    assert message in str(e.value.message) and "pipeline.yml:" in str(e.value.message)


def test_config_to_signals_substitutes_project_and_stage(tmp_path):
    from pipeline_tools.release import signals

    cfg = _load(tmp_path, "{name: drift, threshold: 1, report: 's3://{project}-{stage}-mon/latest/"
                          "constraint_violations.json', field: violations, missing: wait}")
    [s] = signals.from_config(cfg, "dev")
    assert s.report == "s3://s-dev-mon/latest/constraint_violations.json" and s.missing == "wait"
    assert gate.GatePolicy.from_config(cfg, "dev").signals == (s,)
