"""The alarm gate: a pure verdict function plus a CloudWatch reader. Fails closed.

Public API (used by `pt deploy` while shifting/baking and by `pt gate` / `pt promote`):

- `GatePolicy(patterns, insufficient_data, preexisting_alarm, poll, allow_no_alarms)`;
  `GatePolicy.from_config(cfg, stage)`.
- `AlarmState(name, state, since, threshold, comparison, reason, kind)`: one alarm as read.
- `Snapshot(at, alarms, source)`: the alarm states at the start of a window (what the deploy
  recorded, or what `GateWatch.start()` read). `to_dict()` / `from_dict()` for the ledger.
- `Transition(alarm, old, new, at, reason, source)`: a state change (from history or polls).
- `ReadError(api, message, retryable)`: a CloudWatch read that failed; `retryable` when waiting
  can help (throttling, 5xx, connection errors), not for AccessDenied.
- `verdict(alarms, history, policy, now, window_start, *, preexisting=(), error=None,
  history_note=None, snapshot=None, history_error=None) -> Verdict` — pure. Rules:
  * `error` (describe_alarms failed) → WAIT if retryable else FAIL; transitions into ALARM seen
    earlier still FAIL (a failed read never hides what was seen);
  * no configured patterns → FAIL, unless `allow_no_alarms` (then PASS, and a note says so);
  * a pattern that matches no alarm, or an alarm of the snapshot that is gone → FAIL;
  * an alarm in ALARM → FAIL, unless it was in ALARM before the window (`preexisting`), has not
    changed since, and `preexisting_alarm: ignore`; with `block` a preexisting ALARM is a FAIL;
  * a transition into ALARM at or after `window_start` (history, polls, or an ALARM state whose
    timestamp is inside the window) fails even if the alarm is OK now;
  * an alarm that changed state during the window (vs the snapshot, else its state timestamp is
    at/after `window_start`) needs alarm history to show it never went into ALARM: with
    `history_error` → WAIT (retryable) or FAIL; history that does not show the change yet → WAIT;
  * INSUFFICIENT_DATA → FAIL | PASS | WAIT as `insufficient_data` says;
  * overall: any FAIL → FAIL, else any WAIT → WAIT, else PASS.
- `Verdict(status, reasons, checked_at, window_start, history_source, notes, …)`, frozen;
  `.passed`, `.failed`, `.summary()`, `.to_dict()` (also what was read: snapshot, transitions,
  errors, preexisting alarms). `AlarmVerdict` is one reason line.
- `read_alarms(cloudwatch, patterns) -> list[AlarmState]` (describe_alarms, paginated).
- `read_history(cloudwatch, names, start, end, *, sleep) -> list[Transition]` (describe_alarm_history,
  metric and composite alarms, one query per alarm, bounded retries on throttling/5xx);
  raises `HistoryUnavailable(ReadError)`.
- `evaluate(cloudwatch, policy, now, window_start, preexisting=(), *, snapshot=None, sleep=…) -> Verdict`:
  one-shot read + verdict, as `pt gate` needs it; API errors become a FAIL/WAIT verdict, never an exception.
- `GateWatch(cloudwatch, policy, window_start, *, snapshot=None, preexisting=(), sleep=…)`: the
  stateful watcher a deploy polls. `start()` takes the snapshot and returns the alarms already
  firing; `poll(now)` reads, remembers every transition into ALARM it saw, reads alarm history
  only for alarms that changed, and returns a Verdict. `snapshot_now()` is the last state read.

Without alarm history (AccessDenied, or moto, which answers HTTP 500), the evidence is the
snapshot plus the polls: an alarm whose state or state timestamp is unchanged since the snapshot
cannot have gone into ALARM in between; any other change ending in a non-ALARM state cannot be
proven harmless and is not a PASS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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

HISTORY_ATTEMPTS = 3          # describe_alarm_history tries per alarm (throttling, 5xx, connection)
HISTORY_BACKOFF = 0.2         # seconds, doubled per retry
HISTORY_MAX_PAGES = 100       # more than this many pages for one alarm in one window: unreadable
HISTORY_LAG = 2.0             # seconds a history item may differ from the alarm's state timestamp

_RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "ServiceUnavailable",
    "InternalFailure", "InternalError", "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatePolicy:
    patterns: tuple[str, ...]
    insufficient_data: Literal["fail", "pass", "wait"] = "fail"
    preexisting_alarm: Literal["block", "ignore"] = "block"
    poll: float = 5.0
    allow_no_alarms: bool = False
    signals: tuple = ()  # signals.Signal: metric(-math) and report signals judged with the alarms

    @classmethod
    def from_config(cls, cfg: Any, stage: str) -> GatePolicy:
        from pipeline_tools.release import signals

        g = cfg.stages[stage].gate
        return cls(tuple(cfg.gate_patterns(stage)), g.insufficient_data, g.preexisting_alarm, g.poll,
                   bool(getattr(g, "allow_no_alarms", False)),
                   signals.from_config(cfg, stage) if getattr(g, "signals", None) else ())


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
class Snapshot:
    """Alarm states at the start of a window. `since` values are CloudWatch's own timestamps,
    so comparing them with a later read does not depend on this machine's clock."""

    at: float
    alarms: tuple[AlarmState, ...]
    source: str = "read at window start"

    def get(self, name: str) -> AlarmState | None:
        return next((a for a in self.alarms if a.name == name), None)

    def firing(self) -> frozenset[str]:
        return frozenset(a.name for a in self.alarms if a.state == ALARM)

    def to_dict(self) -> dict:
        return {"at": self.at, "at_iso": _iso(self.at), "source": self.source,
                "alarms": [{"name": a.name, "state": a.state, "since": a.since, "kind": a.kind}
                           for a in self.alarms]}

    @classmethod
    def from_dict(cls, d: Mapping | None, source: str | None = None) -> Snapshot | None:
        """None when `d` is missing or malformed (then the caller has no snapshot, never a wrong one)."""
        if not isinstance(d, Mapping):
            return None
        try:
            alarms = tuple(AlarmState(str(a["name"]), str(a["state"]),
                                      None if a.get("since") is None else float(a["since"]),
                                      kind=str(a.get("kind") or "MetricAlarm")) for a in d["alarms"])
            return cls(float(d["at"]), alarms, source or str(d.get("source") or "ledger"))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Transition:
    alarm: str
    old: str | None
    new: str
    at: float
    reason: str = ""
    source: str = "history"             # history | poll | state (an ALARM state timestamped in the window)

    def to_dict(self) -> dict:
        return {"alarm": self.alarm, "old": self.old, "new": self.new, "at": _iso(self.at),
                "reason": self.reason, "source": self.source}


@dataclass(frozen=True)
class ReadError:
    api: str
    message: str
    retryable: bool                     # waiting can help (throttling, 5xx, connection), not AccessDenied

    def __str__(self) -> str:
        return f"{self.api}: {self.message}"

    def to_dict(self) -> dict:
        return {"api": self.api, "message": self.message, "retryable": self.retryable}


class HistoryUnavailable(Exception):
    """describe_alarm_history could not be read (after bounded retries where retrying helps)."""

    def __init__(self, error: ReadError):
        super().__init__(str(error))
        self.error = error


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
    # what the verdict was decided from (kept in the ledger and in --output json)
    snapshot: Snapshot | None = None
    transitions: tuple[Transition, ...] = ()
    errors: tuple[ReadError, ...] = ()
    preexisting: tuple[str, ...] = ()

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
            if not self.reasons and self.notes:
                return f"{self.status}: " + "; ".join(self.notes)
            return f"{self.status}: {len(self.reasons)} alarm check(s) fine"
        return f"{self.status}: " + "; ".join(r.line().split(" ", 1)[1] for r in bad)

    def to_dict(self) -> dict:
        return {"status": self.status, "checked_at": _iso(self.checked_at), "window_start": _iso(self.window_start),
                "history_source": self.history_source, "notes": list(self.notes),
                "alarms": [r.to_dict() for r in self.reasons],
                "snapshot": self.snapshot.to_dict() if self.snapshot else None,
                "transitions": [t.to_dict() for t in self.transitions],
                "errors": [e.to_dict() for e in self.errors],
                "preexisting_alarms": list(self.preexisting)}


# --- the pure verdict ----------------------------------------------------------------------


def matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def changed_in_window(a: AlarmState, snapshot: Snapshot | None, window_start: float) -> str | None:
    """Why `a` may have changed state inside the window (None: provably unchanged)."""
    s = snapshot.get(a.name) if snapshot else None
    if s is not None:
        if s.state != a.state:
            return f"{s.state} at window start, {a.state} now"
        if a.since is None or s.since is None:
            return "its state timestamp is unknown"
        if abs(a.since - s.since) > 1e-3:
            return f"{a.state} again since {_iso(a.since)} (was {s.state} since {_iso(s.since)} at window start)"
        return None
    if snapshot is not None:
        return "it was not in the snapshot at window start"
    if a.since is None:
        return "its state timestamp is unknown"
    if a.since >= window_start:
        return f"its last state change at {_iso(a.since)} is inside the window"
    return None


def window_floor(name: str, snapshot: Snapshot | None, window_start: float) -> float:
    """From when a transition of `name` counts: just after its last change before the snapshot
    (CloudWatch's clock, so skew between it and ours cannot hide one), else the window start."""
    s = snapshot.get(name) if snapshot else None
    if s is not None and s.since is not None:
        return s.since + 1e-3
    return window_start


def _explained(a: AlarmState, history: Sequence[Transition]) -> bool:
    """History shows the change that put `a` in its current state (not lagging behind it)."""
    if a.since is None:
        return any(t.alarm == a.name and t.new == a.state for t in history)
    return any(t.alarm == a.name and t.new == a.state and t.at >= a.since - HISTORY_LAG for t in history)


def _worst(reasons: Iterable[AlarmVerdict]) -> Status:
    statuses = {r.status for r in reasons}
    return FAIL if FAIL in statuses else WAIT if WAIT in statuses else PASS


def verdict(alarms: Sequence[AlarmState] | None, history: Iterable[Transition], policy: GatePolicy,
            now: float, window_start: float, *, preexisting: Iterable[str] = (),
            error: str | ReadError | None = None, history_note: str | None = None,
            snapshot: Snapshot | None = None, history_error: ReadError | None = None,
            signals: Sequence[tuple[Any, Any]] = ()) -> Verdict:
    """Decide PASS/FAIL/WAIT from what was read. Pure: no I/O, no clock.
    `signals`: (signals.Signal, signals.Reading) pairs, judged with the alarms (one line each)."""
    history_source = history_note or "polling"
    notes: list[str] = []
    reasons: list[AlarmVerdict] = []
    hist = sorted(history, key=lambda t: t.at)
    pre = set(preexisting)
    errors: list[ReadError] = [e for e in (error, history_error) if isinstance(e, ReadError)]

    into_alarm: dict[str, Transition] = {}
    for t in hist:
        if t.new == ALARM and t.alarm not in into_alarm and t.at >= window_floor(t.alarm, snapshot, window_start):
            into_alarm[t.alarm] = t

    from pipeline_tools.release.signals import judge

    judged = tuple(judge(sig, reading) for sig, reading in signals)
    errors += [r.error for _s, r in signals if r.error is not None]

    def done(status: Status) -> Verdict:
        worst = _worst([*judged, AlarmVerdict("", status, None, None, None, None, "", "")])
        return Verdict(worst, tuple(reasons) + judged, now, window_start, history_source, tuple(notes), snapshot,
                       tuple(hist), tuple(errors), tuple(sorted(pre)))

    if error is not None or alarms is None:
        err = error if isinstance(error, ReadError) else ReadError("describe_alarms", error or "no data", False)
        if not isinstance(error, ReadError):
            errors.insert(0, err)
        # what earlier reads saw still counts: a failed read never hides a transition into ALARM
        for name, t in sorted(into_alarm.items()):
            if any(matches(p, name) for p in policy.patterns):
                reasons.append(AlarmVerdict(name, FAIL, None, None, None, None, t.reason,
                                            f"went into ALARM at {_iso(t.at)} during the watch window "
                                            f"({_via(t)}); its current state could not be read"))
        st: Status = WAIT if err.retryable else FAIL
        reasons.append(AlarmVerdict("(cloudwatch)", st, None, None, None, None, "",
                                    f"cannot read alarms: {err.message} (the gate fails closed"
                                    + ("; a later check may succeed)" if err.retryable else ")")))
        return done(_worst(reasons))
    if not policy.patterns:
        if policy.allow_no_alarms:
            notes.append("no alarms are watched: gate.allow_no_alarms is true for this stage, so nothing was "
                         "checked")
            return done(PASS)
        reasons.append(AlarmVerdict("(gate.alarms)", FAIL, None, None, None, None, "",
                                    "gate.alarms is empty: nothing to watch (the gate fails closed); list the "
                                    "stage's alarms, or set `gate: {alarms: [], allow_no_alarms: true}`"))
        return done(FAIL)

    watched = {a.name: a for a in alarms if any(matches(p, a.name) for p in policy.patterns)}
    for p in policy.patterns:
        if not any(matches(p, n) for n in watched):
            reasons.append(AlarmVerdict(p, FAIL, None, None, None, None, "",
                                        f"no alarm matches '{p}' (the gate fails closed; create the "
                                        "alarm or fix gate.alarms)"))
    if snapshot is not None:
        for s in snapshot.alarms:
            if s.name not in watched and any(matches(p, s.name) for p in policy.patterns):
                reasons.append(AlarmVerdict(s.name, FAIL, None, s.since, None, None, "",
                                            f"was {s.state} at window start but is gone now: what it saw during "
                                            "the window is lost (the gate fails closed)"))

    for name in sorted(watched):
        a = watched[name]
        args = (a.state, a.since, a.threshold, a.comparison, a.reason)

        def add(status: Status, why: str, name: str = name, args: tuple = args) -> None:
            reasons.append(AlarmVerdict(name, status, *args, why))

        change = changed_in_window(a, snapshot, window_start)
        t = into_alarm.get(name)
        if a.state == ALARM:
            if t is None and change is not None:
                t = Transition(name, None, ALARM, a.since if a.since is not None else now, a.reason, "state")
            if name in pre and t is None:
                if policy.preexisting_alarm == "block":
                    add(FAIL, "was already in ALARM before the deploy (preexisting_alarm: block)")
                else:
                    add(PASS, "already in ALARM before the deploy; ignored (preexisting_alarm: ignore), "
                              "watching for new transitions")
            elif t is not None:
                add(FAIL, f"in ALARM: went into ALARM at {_iso(t.at)} during the watch window ({_via(t)})")
            else:
                add(FAIL, "in ALARM")
        elif t is not None:
            add(FAIL, f"went into ALARM at {_iso(t.at)} during the watch window ({_via(t)}); now {a.state}")
        elif change is not None and history_error is not None:
            st = WAIT if history_error.retryable else FAIL
            add(st, f"changed during the window ({change}) and alarm history is unreadable ({history_error}): "
                    "cannot prove it did not go into ALARM (the gate fails closed"
                    + ("; a later check may succeed)" if history_error.retryable else
                       "; grant cloudwatch:DescribeAlarmHistory)"))
        elif change is not None and not _explained(a, hist):
            add(WAIT, f"changed during the window ({change}) and alarm history does not show that change "
                      "yet: cannot prove it did not go into ALARM")
        elif a.state == INSUFFICIENT:
            st = {"fail": FAIL, "pass": PASS, "wait": WAIT}[policy.insufficient_data]
            add(st, f"INSUFFICIENT_DATA (insufficient_data: {policy.insufficient_data})")
        elif a.state == OK:
            add(PASS, "OK" if change is None else "OK; alarm history shows no ALARM during the window")
        else:
            add(FAIL, f"unknown state {a.state!r}")
    return done(_worst(reasons))


def _via(t: Transition) -> str:
    return {"poll": "seen by polling", "state": "its state timestamp"}.get(t.source, "from alarm history")


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
        else:
            raise RuntimeError("describe_alarms returned more than 1000 pages")
    return [found[n] for n in sorted(found)]


class _ServerError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def _no_botocore_retry_on_5xx(response: Any = None, **_kw: Any) -> None:
    """needs-retry hook: a 5xx from describe_alarm_history goes straight to `read_history`,
    whose own bounded retry (with the injected sleep) decides; botocore's would sleep for real."""
    if response is not None:
        status = getattr(response[0], "status_code", 0)
        if status >= 500:
            raise _ServerError(status)


def _install_hook(cloudwatch: Any) -> None:
    events = getattr(getattr(cloudwatch, "meta", None), "events", None)
    if events is not None:
        events.register_first("needs-retry.cloudwatch.DescribeAlarmHistory", _no_botocore_retry_on_5xx,
                              unique_id="pt-gate-history-no-retry")


def classify(api: str, e: BaseException) -> ReadError:
    """A failed CloudWatch call as a ReadError: retryable when waiting can help."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(e, _ServerError):
        return ReadError(api, f"HTTP {e.status} from CloudWatch", True)
    if isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", "") or "")
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        msg = str(e.response.get("Error", {}).get("Message", "") or "")
        if msg.lstrip().startswith("<") or not msg:  # an HTML error page (moto), not a message
            msg = f"HTTP {status}" if status else "no message"
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            msg += f" (grant cloudwatch:{_action(api)} to the role pt runs as)"
        retryable = status >= 500 or status == 429 or code in _RETRYABLE_CODES
        return ReadError(api, f"{code or status}: {msg}", retryable)
    if isinstance(e, BotoConnectionError | HTTPClientError):
        return ReadError(api, f"{type(e).__name__}: {e}", True)
    if isinstance(e, NotImplementedError):  # in-process moto
        return ReadError(api, f"not implemented by this endpoint ({e})", False)
    return ReadError(api, f"{type(e).__name__}: {e}", False)


def _action(api: str) -> str:
    return "".join(p.capitalize() for p in api.split("_"))


def read_history(cloudwatch: Any, names: Iterable[str], start: float, end: float, *,
                 sleep: Callable[[float], None] = time.sleep, attempts: int = HISTORY_ATTEMPTS,
                 backoff: float = HISTORY_BACKOFF) -> list[Transition]:
    """State changes of the named alarms (metric or composite) between start and end.

    Retries throttling, 5xx and connection errors `attempts` times (backoff via `sleep`); any
    failure, an unparseable item or an unbounded page count raises HistoryUnavailable.
    """
    _install_hook(cloudwatch)
    out: list[Transition] = []
    for name in sorted(set(names)):
        token = None
        for _page in range(HISTORY_MAX_PAGES):
            kw: dict[str, Any] = {"AlarmName": name, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"],
                                  "HistoryItemType": "StateUpdate", "ScanBy": "TimestampAscending",
                                  "StartDate": datetime.fromtimestamp(start, UTC),
                                  "EndDate": datetime.fromtimestamp(end + 1, UTC), "MaxRecords": 100}
            if token:
                kw["NextToken"] = token
            resp = _call_with_retries(lambda kw=kw: cloudwatch.describe_alarm_history(**kw), sleep, attempts, backoff)
            for item in resp.get("AlarmHistoryItems", []):
                t = _parse_history_item(item)
                if t is None:
                    raise HistoryUnavailable(ReadError("describe_alarm_history",
                                                       f"unreadable history item for {name}: "
                                                       f"{item.get('HistorySummary') or item!r}"[:300], False))
                if t.alarm == name:
                    out.append(t)
            token = resp.get("NextToken")
            if not token:
                break
        else:
            raise HistoryUnavailable(ReadError("describe_alarm_history",
                                               f"more than {HISTORY_MAX_PAGES} pages of history for {name}", False))
    return out


def _call_with_retries(call: Callable[[], dict], sleep: Callable[[float], None], attempts: int,
                       backoff: float) -> dict:
    for attempt in range(max(1, attempts)):
        try:
            return call()
        except Exception as e:  # classified below; only retryable errors are tried again
            err = classify("describe_alarm_history", e)
            if not err.retryable or attempt == max(1, attempts) - 1:
                raise HistoryUnavailable(err) from None
            sleep(backoff * (2 ** attempt))
    raise AssertionError("unreachable")


def _parse_history_item(item: dict) -> Transition | None:
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    new = (data.get("newState") or {}).get("stateValue")
    old = (data.get("oldState") or {}).get("stateValue")
    if not new:  # fall back to the summary text: "Alarm updated from OK to ALARM"
        summary = item.get("HistorySummary", "")
        if " to " in summary:
            new = summary.rsplit(" to ", 1)[1].strip()
    at = _epoch(item.get("Timestamp"))
    if not new or at is None:
        return None
    return Transition(item.get("AlarmName", ""), old, new, at,
                      (data.get("newState") or {}).get("stateReason", ""), "history")


def evaluate(cloudwatch: Any, policy: GatePolicy, now: float, window_start: float,
             preexisting: Iterable[str] = (), *, snapshot: Snapshot | None = None,
             sleep: Callable[[float], None] = time.sleep, s3: Any = None) -> Verdict:
    """Read alarms (+ history for alarms that changed) once and decide. Errors → FAIL/WAIT verdict.

    `snapshot` is the state at window start (from the deploy record); without it, an alarm whose
    state timestamp is at/after `window_start` counts as changed during the window.
    """
    w = GateWatch(cloudwatch, policy, window_start, snapshot=snapshot, preexisting=preexisting, sleep=sleep, s3=s3)
    return w.poll(now)


class GateWatch:
    """Polls the gate during a deploy, remembering transitions into ALARM between polls."""

    def __init__(self, cloudwatch: Any, policy: GatePolicy, window_start: float, *,
                 snapshot: Snapshot | None = None, preexisting: Iterable[str] = (),
                 sleep: Callable[[float], None] = time.sleep, s3: Any = None):
        self.cloudwatch = cloudwatch
        self.s3 = s3  # reads report signals; without it they fail closed, saying so
        self.policy = policy
        self.window_start = window_start
        self.sleep = sleep
        self.preexisting: frozenset[str] = frozenset(preexisting)
        self.snapshot: Snapshot | None = snapshot
        self.seen: list[Transition] = []          # transitions read from history or seen by polls
        self.history_note = "not needed (no alarm changed during the window)"
        self._history_dead: ReadError | None = None  # a non-retryable history error: not asked again
        self._last: dict[str, AlarmState] = {a.name: a for a in snapshot.alarms} if snapshot else {}
        self._last_at: float = snapshot.at if snapshot else window_start

    def _watched(self, alarms: Iterable[AlarmState]) -> list[AlarmState]:
        return [a for a in alarms if any(matches(p, a.name) for p in self.policy.patterns)]

    def start(self) -> list[AlarmState]:
        """Snapshot alarms at window start; returns those already in ALARM. Raises on API errors."""
        alarms = self._watched(read_alarms(self.cloudwatch, self.policy.patterns))
        self.snapshot = Snapshot(self.window_start, tuple(alarms), "read at deploy start")
        self._last = {a.name: a for a in alarms}
        self._last_at = self.window_start
        firing = [a for a in alarms if a.state == ALARM]
        self.preexisting = frozenset(a.name for a in firing)
        return firing

    def snapshot_now(self) -> Snapshot:
        """The alarm states of the last successful read (the start of the window that follows)."""
        return Snapshot(self._last_at, tuple(self._last[n] for n in sorted(self._last)), "deploy's last gate poll")

    def poll(self, now: float) -> Verdict:
        sig: list = []
        if self.policy.signals:
            from pipeline_tools.release import signals

            sig = signals.read_all(self.policy.signals, cloudwatch=self.cloudwatch, s3=self.s3, now=now)
        try:
            alarms = read_alarms(self.cloudwatch, self.policy.patterns)
        except Exception as e:  # any read failure: FAIL, or WAIT where a later read may succeed
            return verdict(None, self.seen, self.policy, now, self.window_start, preexisting=self.preexisting,
                           error=classify("describe_alarms", e), history_note=self.history_note,
                           snapshot=self.snapshot, signals=sig)
        watched = self._watched(alarms)
        self._observe(watched, now)
        need = [a for a in watched if a.state != ALARM and a.name not in self._alarm_seen()
                and changed_in_window(a, self.snapshot, self.window_start) is not None]
        history_error = None
        if need:
            if self._history_dead is not None:
                history_error = self._history_dead
            else:
                end = max([now] + [a.since for a in need if a.since is not None])
                start = min(window_floor(a.name, self.snapshot, self.window_start) for a in need)
                try:
                    hist = read_history(self.cloudwatch, [a.name for a in need], start, end, sleep=self.sleep)
                    self.seen.extend(t for t in hist if t not in self.seen)
                    self.history_note = "describe_alarm_history (for the alarms that changed) + polling"
                except HistoryUnavailable as e:
                    history_error = e.error
                    if not e.error.retryable:
                        self._history_dead = e.error
            if history_error is not None:
                self.history_note = f"polling only: alarm history unreadable ({history_error})"
        return verdict(alarms, self.seen, self.policy, now, self.window_start, preexisting=self.preexisting,
                       history_note=self.history_note, snapshot=self.snapshot, history_error=history_error,
                       signals=sig)

    def _alarm_seen(self) -> set[str]:
        return {t.alarm for t in self.seen
                if t.new == ALARM and t.at >= window_floor(t.alarm, self.snapshot, self.window_start)}

    def _observe(self, alarms: Sequence[AlarmState], now: float) -> None:
        """Remember an ALARM seen by this poll, so that it still fails the gate after it recovers."""
        for a in alarms:
            prev = self._last.get(a.name)
            if a.state == ALARM:
                if prev is not None:
                    new = prev.state != ALARM or prev.since is None or a.since is None or \
                        abs(a.since - prev.since) > 1e-3
                else:
                    new = changed_in_window(a, self.snapshot, self.window_start) is not None
                if new:
                    t = Transition(a.name, prev.state if prev else None, ALARM,
                                   a.since if a.since is not None else now, a.reason, "poll")
                    if t not in self.seen:
                        self.seen.append(t)
            self._last[a.name] = a
        self._last_at = now


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
