"""Gate signals read on moto server: a metric via GetMetricData (values, no datapoints, a metric
that does not exist), a report in S3 (Model Monitor constraint_violations.json), judged by the
same verdict as the alarms; metric math (which moto does not evaluate) with a Stubber."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from botocore.stub import ANY, Stubber

from pipeline_tools.ops import notify
from pipeline_tools.release import gate
from pipeline_tools.release.signals import Metric, Signal, read_metric

BUCKET = "mon-bucket"
KEY = "monitoring/latest/constraint_violations.json"


@pytest.fixture
def cw(aws):
    c = aws.client("cloudwatch")
    c.put_metric_alarm(AlarmName="s-dev-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                       Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    c.set_alarm_state(AlarmName="s-dev-errors", StateValue="OK", StateReason="seed")
    return c


def latency(stat="Maximum", name="Latency") -> Signal:
    return Signal("latency", "metric", 500.0, ">=", "fail", 300.0,
                  metrics=(("m0", Metric("Custom/Model", name, (("Model", "iris"),), stat)),))


def drift(missing="fail") -> Signal:
    return Signal("drift", "report", 1.0, ">=", missing, report=f"s3://{BUCKET}/{KEY}", field="violations")


def put(cw, value: float, at: float) -> None:
    cw.put_metric_data(Namespace="Custom/Model", MetricData=[{
        "MetricName": "Latency", "Dimensions": [{"Name": "Model", "Value": "iris"}], "Value": value,
        "Timestamp": datetime.fromtimestamp(at, UTC)}])


def run(cw, s3, *signals, now=None):
    start = datetime.now(UTC).timestamp() + 1  # after the alarm was seeded: it did not change in the window
    policy = gate.GatePolicy(("s-dev-*",), signals=signals)
    return gate.evaluate(cw, policy, now or start, start, s3=s3)


def test_metric_signal_pass_then_fail_with_the_alarm_line(cw):
    now = datetime.now(UTC).timestamp() // 60 * 60
    put(cw, 120, now - 90)
    v = run(cw, None, latency(), now=now)
    assert v.status == gate.PASS, v.summary()
    assert [r.line() for r in v.reasons][1] == (
        "PASS signal:latency: value 120, threshold >=500: within threshold (fails when >= 500)")
    put(cw, 900, now - 30)
    v = run(cw, None, latency(), now=now)
    assert v.status == gate.FAIL and v.summary() == (
        "FAIL: signal:latency: value 900, threshold >=500: 900 >= 500: fails when >= 500")
    # what a gate_failed notification carries: the verdict summary, failing signal included
    event = notify.Event("gate_failed", "s", "dev", v.summary())
    assert "signal:latency: value 900" in json.dumps(notify.slack_payload(event))


def test_metric_that_does_not_exist_fails_closed_and_says_so(cw):
    v = run(cw, None, latency(name="Latencyy"))
    assert v.status == gate.FAIL
    assert "metric Custom/Model/Latencyy[Model=iris] does not exist (the gate fails closed)" in v.summary()


def test_metric_without_datapoints_in_the_period_follows_missing(cw):
    now = datetime.now(UTC).timestamp() // 60 * 60
    put(cw, 120, now - 3600)  # exists, but not in the last 5 minutes
    for missing, status in (("fail", gate.FAIL), ("wait", gate.WAIT), ("pass", gate.PASS)):
        s = Signal("latency", "metric", 500.0, ">=", missing, 300.0, metrics=latency().metrics)
        v = run(cw, None, s, now=now)
        assert v.status == status
        assert f"no datapoint of Custom/Model/Latency[Model=iris] Maximum in the last 300s (missing: {missing})" \
            in v.to_dict()["alarms"][1]["why"]


def test_report_signal_from_s3(cw, aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    v = run(cw, s3, drift("wait"))
    assert v.status == gate.WAIT and f"report s3://{BUCKET}/{KEY} does not exist (yet) (missing: wait)" in v.summary()
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"violations": []}))
    assert run(cw, s3, drift()).status == gate.PASS
    violations = [{"feature_name": "petal_length", "constraint_check_type": "baseline_drift_check",
                   "description": "distance 0.4 > 0.1"}]
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"violations": violations}))
    v = run(cw, s3, drift())
    assert v.status == gate.FAIL and "signal:drift: value 1, threshold >=1" in v.summary()
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"{not json")
    assert "is not JSON" in run(cw, s3, drift("pass")).summary()
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=json.dumps({"other": 1}))
    v = run(cw, s3, drift("pass"))
    assert v.status == gate.FAIL and "field violations is not in the report" in v.summary()
    v = run(cw, None, drift("pass"))  # a caller without an S3 client
    assert v.status == gate.FAIL and "no S3 client" in v.summary()


def test_report_read_denied_fails_closed(cw, aws):
    s3 = aws.client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        v = run(cw, s3, drift("pass"))
    assert v.status == gate.FAIL and "cannot read" in v.summary() and "AccessDenied" in v.summary()


def test_metric_math_request_and_value_with_stubber(aws):
    cw = aws.client("cloudwatch")
    s = Signal("error-rate", "metric", 5.0, ">", "fail", 300.0, expression="100 * e / i",
               metrics=(("e", Metric("AWS/Lambda", "Errors", (("FunctionName", "s-dev-predict"),), "Sum")),
                        ("i", Metric("AWS/Lambda", "Invocations", (("FunctionName", "s-dev-predict"),), "Sum"))))
    expected = {"MetricDataQueries": [
        {"Id": "e", "ReturnData": False, "MetricStat": {"Metric": {
            "Namespace": "AWS/Lambda", "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": "s-dev-predict"}]}, "Period": 300, "Stat": "Sum"}},
        {"Id": "i", "ReturnData": False, "MetricStat": {"Metric": {
            "Namespace": "AWS/Lambda", "MetricName": "Invocations",
            "Dimensions": [{"Name": "FunctionName", "Value": "s-dev-predict"}]}, "Period": 300, "Stat": "Sum"}},
        {"Id": "signal", "Expression": "100 * e / i", "Label": "error-rate", "ReturnData": True}],
        "StartTime": ANY, "EndTime": ANY, "ScanBy": "TimestampDescending"}
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", {"MetricDataResults": [
            {"Id": "signal", "Label": "error-rate", "Timestamps": [datetime.now(UTC)], "Values": [7.5],
             "StatusCode": "Complete"}]}, expected)
        r = read_metric(cw, s, 1_800_000_000.0)
    assert r.value == 7.5 and r.error is None
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", {"MetricDataResults": [
            {"Id": "signal", "Values": [], "Timestamps": [], "StatusCode": "PartialData"}],
            "Messages": [{"Code": "MaxQueryTimeRangeExceed", "Value": "too long"}]}, expected)
        r = read_metric(cw, s, 1_800_000_000.0)
    assert r.broken == "GetMetricData status PartialData: too long"
    with Stubber(cw) as stub:
        stub.add_client_error("get_metric_data", service_error_code="Throttling", http_status_code=400)
        r = read_metric(cw, s, 1_800_000_000.0)
    assert r.error is not None and r.error.retryable
