"""Gate signals: a CloudWatch metric (or metric-math expression) or a number in a JSON report in S3
(e.g. a SageMaker Model Monitor `constraint_violations.json`), each compared with a threshold.

`gate.verdict` judges them with the alarms (`judge` here, pure) and explains them the same way
(an `AlarmVerdict` line each, named `signal:<name>`). Fail closed:
- a read error → FAIL (WAIT when retrying can help: throttling, 5xx);
- a metric that does not exist (ListMetrics finds none) → FAIL, saying which;
- no datapoint in the period, or a report not written (yet) → the signal's `missing` policy
  (fail by default), saying which;
- a report that is not JSON, a field that is not there or not a number → FAIL, saying which.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_tools.release.gate import FAIL, PASS, WAIT, AlarmVerdict, ReadError, Status, classify

CW_OPS = {">": "GreaterThanThreshold", ">=": "GreaterThanOrEqualToThreshold", "<": "LessThanThreshold",
          "<=": "LessThanOrEqualToThreshold"}
MAX_REPORT_BYTES = 16 << 20


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...] = ()
    stat: str = "Average"

    def label(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace}/{self.name}" + (f"[{dims}]" if dims else "") + f" {self.stat}"


@dataclass(frozen=True)
class Signal:
    name: str
    kind: str                                   # "metric" | "report"
    threshold: float
    comparison: str = ">="
    missing: str = "fail"
    period: float = 300.0
    expression: str | None = None               # metric math over `metrics` (None: the one metric)
    metrics: tuple[tuple[str, Metric], ...] = ()
    report: str | None = None                   # s3://bucket/key
    field: str | None = None

    @property
    def source(self) -> str:
        if self.kind == "report":
            return f"{self.report} {self.field}"
        return self.expression or self.metrics[0][1].label()


@dataclass(frozen=True)
class Reading:
    """What was read for one signal. Exactly one of: value, absent (missing data), broken
    (fails closed whatever `missing` says), error (an API error)."""

    value: float | None = None
    absent: str | None = None
    broken: str | None = None
    error: ReadError | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def from_config(cfg: Any, stage: str) -> tuple[Signal, ...]:
    """The stage's `gate.signals`, with {project} and {stage} substituted."""
    def sub(text: str) -> str:
        return text.replace("{project}", cfg.project).replace("{stage}", stage)

    def metric(m: Any) -> Metric:
        return Metric(m.namespace, m.name, tuple((k, sub(v)) for k, v in sorted(m.dimensions.items())), m.stat)

    out = []
    for s in cfg.stages[stage].gate.signals:
        common = dict(name=s.name, threshold=float(s.threshold), comparison=s.comparison, missing=s.missing,
                      period=float(s.period))
        if s.report is not None:
            out.append(Signal(kind="report", report=sub(s.report), field=s.field, **common))
        elif s.metric_math is not None:
            out.append(Signal(kind="metric", expression=s.metric_math,
                              metrics=tuple((k, metric(m)) for k, m in s.metrics.items()), **common))
        else:
            out.append(Signal(kind="metric", metrics=(("m0", metric(s.metric)),), **common))
    return tuple(out)


# --- the pure judgement ------------------------------------------------------------------------------


def breaches(value: float, comparison: str, threshold: float) -> bool:
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
            "<=": value <= threshold}[comparison]


def judge(sig: Signal, r: Reading) -> AlarmVerdict:
    """PASS/FAIL/WAIT for one signal, explained like an alarm line. Pure."""
    name, op = f"signal:{sig.name}", CW_OPS[sig.comparison]

    def v(status: Status, state: str, why: str) -> AlarmVerdict:
        return AlarmVerdict(name, status, state, None, sig.threshold, op, sig.source, why)

    if r.error is not None:
        return v(WAIT if r.error.retryable else FAIL, "unreadable",
                 f"cannot read {sig.source}: {r.error.message} (the gate fails closed"
                 + ("; a later check may succeed)" if r.error.retryable else ")"))
    if r.broken is not None:
        return v(FAIL, "unusable", f"{r.broken} (the gate fails closed)")
    if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)):
        why = r.absent or "no value"
        st = {"fail": FAIL, "pass": PASS, "wait": WAIT}[sig.missing]
        return v(st, "no data", f"{why} (missing: {sig.missing})")
    state = f"value {r.value:g}"
    if breaches(r.value, sig.comparison, sig.threshold):
        return v(FAIL, state, f"{r.value:g} {sig.comparison} {sig.threshold:g}: fails when {sig.comparison} "
                              f"{sig.threshold:g}")
    return v(PASS, state, f"within threshold (fails when {sig.comparison} {sig.threshold:g})")


# --- reading ------------------------------------------------------------------------------------------


def field_value(doc: Any, path: str) -> tuple[float | None, str | None]:
    """(number, None) at dotted `path` of `doc` (a list counts its items; `a.0.b` indexes), or
    (None, why) when the path is not there or not a number."""
    cur = doc
    walked = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and re.fullmatch(r"\d+", part) and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None, f"field {'.'.join(walked)} is not in the report"
    if isinstance(cur, list):
        return float(len(cur)), None
    if isinstance(cur, bool) or not isinstance(cur, int | float):
        return None, f"field {path} is {type(cur).__name__} {str(cur)[:40]!r}, not a number (or a list to count)"
    return float(cur), None


def read_report(s3: Any, sig: Signal) -> Reading:
    bucket, _, key = (sig.report or "").removeprefix("s3://").partition("/")
    if s3 is None:
        return Reading(broken=f"no S3 client to read {sig.report} (this command does not read report signals)")
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        size = int(obj.get("ContentLength") or 0)
        if size > MAX_REPORT_BYTES:
            return Reading(broken=f"report {sig.report} is {size} bytes (more than {MAX_REPORT_BYTES})")
        body = obj["Body"].read()
    except Exception as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            return Reading(absent=f"report {sig.report} does not exist (yet)")
        if code == "NoSuchBucket":
            return Reading(broken=f"bucket of {sig.report} does not exist")
        return Reading(error=classify("get_object", e))
    try:
        doc = json.loads(body)
    except ValueError as e:
        return Reading(broken=f"report {sig.report} is not JSON ({e})")
    value, why = field_value(doc, sig.field or "")
    if why:
        return Reading(broken=f"{why} ({sig.report})")
    return Reading(value=value, details={"report": sig.report, "field": sig.field})


def _queries(sig: Signal) -> list[dict]:
    period = int(sig.period)
    qs = [{"Id": mid, "ReturnData": sig.expression is None,
           "MetricStat": {"Metric": {"Namespace": m.namespace, "MetricName": m.name,
                                     "Dimensions": [{"Name": k, "Value": v} for k, v in m.dimensions]},
                          "Period": period, "Stat": m.stat}} for mid, m in sig.metrics]
    if sig.expression is not None:
        qs.append({"Id": "signal", "Expression": sig.expression, "Label": sig.name, "ReturnData": True})
    return qs


def _missing_metrics(cloudwatch: Any, sig: Signal) -> list[str]:
    gone = []
    for _mid, m in sig.metrics:
        found = cloudwatch.list_metrics(Namespace=m.namespace, MetricName=m.name,
                                        Dimensions=[{"Name": k, "Value": v} for k, v in m.dimensions])
        if not found.get("Metrics"):
            gone.append(m.label().rsplit(" ", 1)[0])
    return gone


def read_metric(cloudwatch: Any, sig: Signal, now: float) -> Reading:
    """The newest value of the metric/expression over the last `period` (GetMetricData)."""
    end = datetime.fromtimestamp(int(now // 60 * 60), UTC)
    start = datetime.fromtimestamp(end.timestamp() - sig.period, UTC)
    try:
        resp = cloudwatch.get_metric_data(MetricDataQueries=_queries(sig), StartTime=start, EndTime=end,
                                          ScanBy="TimestampDescending")
        results = [r for r in resp.get("MetricDataResults", []) if r.get("Id") in ("signal", "m0")]
        messages = [m.get("Value") for m in resp.get("Messages", []) if m.get("Code") != "Info"]
        values = results[0].get("Values", []) if results else []
        if results and results[0].get("StatusCode") not in (None, "Complete"):
            return Reading(broken=f"GetMetricData status {results[0].get('StatusCode')}"
                                  + (f": {'; '.join(str(x) for x in messages)}" if messages else ""))
        if not values:
            gone = _missing_metrics(cloudwatch, sig)
            if gone:
                return Reading(broken=f"metric {', '.join(gone)} does not exist")
            return Reading(absent=f"no datapoint of {sig.source} in the last {int(sig.period)}s")
    except Exception as e:
        return Reading(error=classify("get_metric_data", e))
    return Reading(value=float(values[0]), details={"period": sig.period})


def read_all(signals: Sequence[Signal], *, cloudwatch: Any, s3: Any, now: float) -> list[tuple[Signal, Reading]]:
    return [(s, read_report(s3, s) if s.kind == "report" else read_metric(cloudwatch, s, now)) for s in signals]
