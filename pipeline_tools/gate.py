"""The alarm gate: a pure verdict function plus a CloudWatch reader. Fails closed.

Public API (used by `pt deploy` while shifting/baking and by `pt gate` / `pt promote`):

- `GatePolicy(patterns, insufficient_data, preexisting_alarm, poll)`; `GatePolicy.from_config(cfg, stage)`.
- `AlarmState(name, state, since, threshold, comparison, reason, kind)`: one alarm as read.
- `Transition(alarm, old, new, at, reason, source)`: a state change (from history or polls).
- `verdict(alarms, history, policy, now, window_start, *, preexisting=(), error=None,
  history_note=None) -> Verdict` — pure. Rules:
  * a pattern that matches no alarm → FAIL (fail closed); `error` (API failure) → FAIL;
  * an alarm in ALARM → FAIL, unless it was in ALARM before the window (`preexisting`) and
    `preexisting_alarm: ignore` (then only *new* transitions into ALARM count);
    with `preexisting_alarm: block` a preexisting ALARM is a FAIL;
  * INSUFFICIENT_DATA → FAIL | PASS | WAIT as `insufficient_data` says;
  * a transition into ALARM at or after `window_start` fails even if the alarm is OK now;
  * overall: any FAIL → FAIL, else any WAIT → WAIT, else PASS. No configured patterns → PASS
    (nothing to watch is the user's explicit choice; the reason says so).
- `Verdict(status, reasons, checked_at, window_start, history_source, notes)`, frozen;
  `.passed`, `.failed`, `.summary()`, `.to_dict()`. `AlarmVerdict` is one reason line.
- `read_alarms(cloudwatch, patterns) -> list[AlarmState]` (describe_alarms, paginated).
- `read_history(cloudwatch, names, start, end) -> list[Transition]` (describe_alarm_history);
  raises `HistoryUnavailable` when the API does not support it (e.g. moto: HTTP 500).
- `evaluate(cloudwatch, policy, now, window_start, preexisting=()) -> Verdict`: one-shot read +
  verdict, as `pt gate` needs it; API errors become a FAIL verdict, never an exception.
- `GateWatch(cloudwatch, policy, window_start)`: the stateful watcher a deploy polls. `start()`
  snapshots alarms already firing; `poll(now)` reads, remembers every transition it saw between
  polls (also the ones only visible as a changed state timestamp), merges alarm history where the
  API has it (else falls back to polling and records that in the verdict), and returns a Verdict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

PASS = "PASS"
FAIL = "FAIL"
WAIT = "WAIT"
Status = Literal["PASS", "FAIL", "WAIT"]

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT = "INSUFFICIENT_DATA"

_COMPARISONS = {
    "GreaterThanOrEqualToThreshold": ">=",
    "GreaterThanThreshold": ">",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


class HistoryUnavailable(Exception):
    """describe_alarm_history is not supported by this endpoint (moto answers HTTP 500)."""


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatePolicy:
    patterns: tuple[str, ...]
    insufficient_data: Literal["fail", "pass", "wait"] = "fail"
    preexisting_alarm: Literal["block", "ignore"] = "block"
    poll: float = 5.0

    @classmethod
    def from_config(cls, cfg: Any, stage: str) -> GatePolicy:
        g = cfg.stages[stage].gate
        return cls(tuple(cfg.gate_patterns(stage)), g.insufficient_data, g.preexisting_alarm, g.poll)


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str
    since: float | None = None          # epoch seconds of the last state change
    threshold: float | None = None
    comparison: str | None = None
    reason: str = ""
    kind: str = "MetricAlarm"

    @classmethod
    def from_api(cls, item: dict, kind: str = "MetricAlarm") -> AlarmState:
        ts = item.get("StateTransitionedTimestamp") or item.get("StateUpdatedTimestamp")
        return cls(name=item["AlarmName"], state=item.get("StateValue", INSUFFICIENT),
                   since=_epoch(ts), threshold=item.get("Threshold"),
                   comparison=item.get("ComparisonOperator"), reason=item.get("StateReason", "") or "",
                   kind=kind)


@dataclass(frozen=True)
class Transition:
    alarm: str
    old: str | None
    new: str
    at: float
    reason: str = ""
    source: str = "history"             # history | poll


@dataclass(frozen=True)
class AlarmVerdict:
    name: str
    status: Status
    state: str | None
    since: float | None
    threshold: float | None
    comparison: str | None
    reason: str                         # the alarm's own StateReason (or ours when synthetic)
    why: str                            # why this alarm gives this status

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "state": self.state, "since": _iso(self.since),
                "threshold": self.threshold, "comparison": _COMPARISONS.get(self.comparison or "", self.comparison),
                "reason": self.reason, "why": self.why}

    def line(self) -> str:
        since = f" since {_iso(self.since)}" if self.since else ""
        thr = ""
        if self.threshold is not None:
            thr = f", threshold {_COMPARISONS.get(self.comparison or '', '')}{self.threshold:g}"
        return f"{self.status} {self.name}: {self.state or '-'}{since}{thr}: {self.why}"


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: tuple[AlarmVerdict, ...]
    checked_at: float
    window_start: float
    history_source: str = "polling"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def failing(self) -> tuple[AlarmVerdict, ...]:
        return tuple(r for r in self.reasons if r.status == self.status and self.status != PASS)

    def summary(self) -> str:
        bad = self.failing()
        if not bad:
            return f"{self.status}: {len(self.reasons)} alarm check(s) fine"
        return f"{self.status}: " + "; ".join(r.line().split(" ", 1)[1] for r in bad)

    def to_dict(self) -> dict:
        return {"status": self.status, "checked_at": _iso(self.checked_at), "window_start": _iso(self.window_start),
                "history_source": self.history_source, "notes": list(self.notes),
                "alarms": [r.to_dict() for r in self.reasons]}


# --- the pure verdict ----------------------------------------------------------------------


def matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def verdict(alarms: Sequence[AlarmState] | None, history: Iterable[Transition], policy: GatePolicy,
            now: float, window_start: float, *, preexisting: Iterable[str] = (),
            error: str | None = None, history_note: str | None = None) -> Verdict:
    """Decide PASS/FAIL/WAIT from what was read. Pure: no I/O, no clock."""
    history_source = history_note or "polling"
    notes: list[str] = []
    reasons: list[AlarmVerdict] = []
    if error is not None or alarms is None:
        why = f"cannot read alarms: {error or 'no data'} (the gate fails closed)"
        reasons.append(AlarmVerdict("(cloudwatch)", FAIL, None, None, None, None, "", why))
        return Verdict(FAIL, tuple(reasons), now, window_start, history_source, tuple(notes))
    if not policy.patterns:
        notes.append("no gate alarms configured for this stage (gate.alarms is empty)")
        return Verdict(PASS, (), now, window_start, history_source, tuple(notes))

    pre = set(preexisting)
    watched = {a.name: a for a in alarms if any(matches(p, a.name) for p in policy.patterns)}
    for p in policy.patterns:
        if not any(matches(p, n) for n in watched):
            reasons.append(AlarmVerdict(p, FAIL, None, None, None, None, "",
                                        f"no alarm matches '{p}' (the gate fails closed; create the "
                                        "alarm or fix gate.alarms)"))

    into_alarm: dict[str, Transition] = {}
    for t in sorted(history, key=lambda t: t.at):
        if t.new == ALARM and t.at >= window_start and t.alarm in watched and t.alarm not in into_alarm:
            into_alarm[t.alarm] = t

    for name in sorted(watched):
        a = watched[name]
        args = (a.name, a.state, a.since, a.threshold, a.comparison, a.reason)
        t = into_alarm.get(name)
        if a.state == ALARM:
            if name in pre and t is None:
                if policy.preexisting_alarm == "block":
                    reasons.append(AlarmVerdict(*args[:1], FAIL, *args[1:],
                                                "was already in ALARM before the deploy (preexisting_alarm: block)"))
                else:
                    reasons.append(AlarmVerdict(*args[:1], PASS, *args[1:],
                                                "already in ALARM before the deploy; ignored "
                                                "(preexisting_alarm: ignore), watching for new transitions"))
            else:
                reasons.append(AlarmVerdict(*args[:1], FAIL, *args[1:], "in ALARM"))
        elif t is not None:
            via = {"poll": "seen by polling", "poll-gap": "possibly, between polls"}.get(t.source, "from alarm history")
            reasons.append(AlarmVerdict(*args[:1], FAIL, *args[1:],
                                        f"went into ALARM at {_iso(t.at)} during the watch window "
                                        f"({via}); now {a.state}"))
        elif a.state == INSUFFICIENT:
            st: Status = {"fail": FAIL, "pass": PASS, "wait": WAIT}[policy.insufficient_data]
            reasons.append(AlarmVerdict(*args[:1], st, *args[1:],
                                        f"INSUFFICIENT_DATA (insufficient_data: {policy.insufficient_data})"))
        elif a.state == OK:
            reasons.append(AlarmVerdict(*args[:1], PASS, *args[1:], "OK"))
        else:
            reasons.append(AlarmVerdict(*args[:1], FAIL, *args[1:], f"unknown state {a.state!r}"))

    statuses = {r.status for r in reasons}
    status: Status = FAIL if FAIL in statuses else WAIT if WAIT in statuses else PASS
    return Verdict(status, tuple(reasons), now, window_start, history_source, tuple(notes))


# --- CloudWatch reading ---------------------------------------------------------------------


def read_alarms(cloudwatch: Any, patterns: Sequence[str]) -> list[AlarmState]:
    """Every metric and composite alarm matching the patterns (exact names or `prefix*`)."""
    found: dict[str, AlarmState] = {}
    exact = [p for p in patterns if not p.endswith("*")]
    prefixes = sorted({p[:-1] for p in patterns if p.endswith("*")})
    queries: list[dict] = [{"AlarmNamePrefix": p} for p in prefixes]
    queries += [{"AlarmNames": exact[i:i + 100]} for i in range(0, len(exact), 100)]
    for q in queries:
        token = None
        for _ in range(1000):  # bounded pagination
            kw = dict(q, AlarmTypes=["MetricAlarm", "CompositeAlarm"])
            if token:
                kw["NextToken"] = token
            resp = cloudwatch.describe_alarms(**kw)
            for item in resp.get("MetricAlarms", []):
                found[item["AlarmName"]] = AlarmState.from_api(item, "MetricAlarm")
            for item in resp.get("CompositeAlarms", []):
                found[item["AlarmName"]] = AlarmState.from_api(item, "CompositeAlarm")
            token = resp.get("NextToken")
            if not token:
                break
    return [found[n] for n in sorted(found)]


def _no_retry_on_5xx(response: Any = None, **_kw: Any) -> None:
    """needs-retry hook: a 5xx from describe_alarm_history ends the call at once.

    Endpoints without the API (moto answers HTTP 500) would otherwise cost the full retry
    backoff (seconds) on every poll; the polling fallback makes the retry pointless.
    """
    if response is not None:
        status = getattr(response[0], "status_code", 0)
        if status >= 500:
            raise HistoryUnavailable(f"describe_alarm_history unavailable (HTTP {status})")


def _install_hook(cloudwatch: Any) -> None:
    events = getattr(getattr(cloudwatch, "meta", None), "events", None)
    if events is not None:
        events.register_first("needs-retry.cloudwatch.DescribeAlarmHistory", _no_retry_on_5xx,
                              unique_id="pt-gate-history-no-retry")


def read_history(cloudwatch: Any, names: Iterable[str], start: float, end: float) -> list[Transition]:
    """State changes of the named alarms between start and end (describe_alarm_history)."""
    from botocore.exceptions import ClientError

    _install_hook(cloudwatch)
    wanted = set(names)
    out: list[Transition] = []
    token = None
    try:
        for _ in range(100):
            kw: dict[str, Any] = {"HistoryItemType": "StateUpdate", "ScanBy": "TimestampAscending",
                                  "StartDate": datetime.fromtimestamp(start, UTC),
                                  "EndDate": datetime.fromtimestamp(end + 1, UTC), "MaxRecords": 100}
            if token:
                kw["NextToken"] = token
            resp = cloudwatch.describe_alarm_history(**kw)
            for item in resp.get("AlarmHistoryItems", []):
                t = _parse_history_item(item)
                if t is not None and t.alarm in wanted:
                    out.append(t)
            token = resp.get("NextToken")
            if not token:
                break
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 or code in ("InternalFailure", "InternalServerError", "NotImplemented",
                                     "UnknownOperationException", "InvalidAction"):
            raise HistoryUnavailable(f"describe_alarm_history unavailable ({code or status})") from None
        raise
    except NotImplementedError as e:  # in-process moto
        raise HistoryUnavailable(f"describe_alarm_history unavailable ({e})") from None
    return out


def _parse_history_item(item: dict) -> Transition | None:
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except ValueError:
        data = {}
    new = (data.get("newState") or {}).get("stateValue")
    old = (data.get("oldState") or {}).get("stateValue")
    if not new:  # fall back to the summary text: "Alarm updated from OK to ALARM"
        summary = item.get("HistorySummary", "")
        if " to " in summary:
            new = summary.rsplit(" to ", 1)[1].strip()
    if not new:
        return None
    at = _epoch(item.get("Timestamp"))
    return Transition(item.get("AlarmName", ""), old, new, at or 0.0,
                      (data.get("newState") or {}).get("stateReason", ""), "history")


def evaluate(cloudwatch: Any, policy: GatePolicy, now: float, window_start: float,
             preexisting: Iterable[str] = ()) -> Verdict:
    """Read alarms (+ history where available) once and decide. Errors → FAIL verdict."""
    w = GateWatch(cloudwatch, policy, window_start)
    w.preexisting = frozenset(preexisting)
    return w.poll(now)


class GateWatch:
    """Polls the gate during a deploy, remembering transitions between polls."""

    def __init__(self, cloudwatch: Any, policy: GatePolicy, window_start: float):
        self.cloudwatch = cloudwatch
        self.policy = policy
        self.window_start = window_start
        self.preexisting: frozenset[str] = frozenset()
        self.seen: list[Transition] = []
        self.history_ok: bool | None = None   # None = not tried yet
        self.history_note = "polling"
        self._last: dict[str, AlarmState] = {}

    def start(self) -> list[AlarmState]:
        """Snapshot alarms before the deploy; returns those already in ALARM. Raises on API errors."""
        alarms = [a for a in read_alarms(self.cloudwatch, self.policy.patterns)
                  if any(matches(p, a.name) for p in self.policy.patterns)]
        self._last = {a.name: a for a in alarms}
        firing = [a for a in alarms if a.state == ALARM]
        self.preexisting = frozenset(a.name for a in firing)
        return firing

    def poll(self, now: float) -> Verdict:
        try:
            alarms = read_alarms(self.cloudwatch, self.policy.patterns)
        except Exception as e:  # any read failure fails the gate closed
            return verdict(None, self.seen, self.policy, now, self.window_start,
                           preexisting=self.preexisting, error=_describe(e), history_note=self.history_note)
        self._observe(alarms, now)
        if self.history_ok is not False and alarms:
            try:
                hist = read_history(self.cloudwatch, [a.name for a in alarms], self.window_start, now)
                self.history_ok = True
                self.history_note = "describe_alarm_history + polling"
                self.seen.extend(t for t in hist if t not in self.seen)
            except HistoryUnavailable as e:
                if self.history_ok:  # worked before: a transient server error, try again next poll
                    self.history_note = f"describe_alarm_history failed this poll ({e}) + polling"
                else:
                    self.history_ok = False
                    self.history_note = (f"polling only ({e}); transitions between polls seen via "
                                         "state timestamps")
            except Exception as e:  # history is a supplement: note it and poll
                self.history_note = f"polling only (alarm history failed: {_describe(e)})"
        # Gaps between polls only count when history could not fill them.
        seen = [t for t in self.seen if not (t.source == "poll-gap" and self.history_ok)]
        return verdict(alarms, seen, self.policy, now, self.window_start,
                       preexisting=self.preexisting, history_note=self.history_note)

    def _observe(self, alarms: Sequence[AlarmState], now: float) -> None:
        for a in alarms:
            prev = self._last.get(a.name)
            changed = prev is not None and (prev.state != a.state or (a.since and prev.since and a.since > prev.since))
            if changed or (prev is None and a.state == ALARM and a.since and a.since >= self.window_start):
                at = a.since or now
                if a.state == ALARM:
                    self.seen.append(Transition(a.name, prev.state if prev else None, ALARM, at, a.reason, "poll"))
                elif prev is not None and prev.state == a.state and at >= self.window_start:
                    # Same state, newer timestamp: it left and came back between two polls.
                    # Without history we cannot know it was not ALARM: fail closed.
                    self.seen.append(Transition(a.name, None, ALARM, at,
                                                f"state changed between polls ({prev.state} → ? → {a.state}) "
                                                "and alarm history is unavailable", "poll-gap"))
            self._last[a.name] = a


def _describe(e: BaseException) -> str:
    code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
    return f"{type(e).__name__}{': ' + code if code else ''}: {e}"


def _epoch(ts: Any) -> float | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    if isinstance(ts, int | float):
        return float(ts)
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
