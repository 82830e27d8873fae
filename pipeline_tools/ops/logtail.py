"""`pt logs tail`: follow a stage's log groups, every line redacted like `pt logs scan`.

Two ways to follow, same output:
- live: CloudWatch Logs `start_live_tail` (an event stream; up to 10 groups a session, a session
  ends after 3 hours and is restarted);
- poll: `filter_log_events` from the newest timestamp seen, de-duplicated by event id.
`mode="auto"` starts live and falls back to polling when the endpoint refuses live tail (an API
error, an endpoint that does not serve the `stream-` host prefix, as moto server does).

Every message passes through `detectors.find`/`redact` before `emit` sees it: a raw email, key or
card number never reaches the terminal. Clock and sleep are injected; Ctrl-C (KeyboardInterrupt
raised in `sleep` or while reading the stream) ends the tail cleanly with a summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_tools.core.errors import PtError
from pipeline_tools.ops import detectors

LIVE_TAIL_MAX_GROUPS = 10
FULL_LINE = 1 << 30  # redact() cuts excerpts to a width; a tail prints the whole line


@dataclass(frozen=True)
class TailEvent:
    group: str
    stream: str
    timestamp: int          # epoch millis
    message: str            # redacted
    redacted: tuple[str, ...] = ()  # kinds replaced in this line

    def to_dict(self) -> dict:
        return {"group": self.group, "stream": self.stream, "timestamp": self.timestamp,
                "message": self.message, "redacted": list(self.redacted)}


@dataclass
class TailSummary:
    mode: str = "poll"                   # "live" or "poll" (what actually followed)
    events: int = 0
    redacted: int = 0                    # lines with at least one redaction
    fallback: str | None = None          # why live tail was not used
    missing: list[str] = field(default_factory=list)    # groups that do not exist (yet)
    unreadable: dict[str, str] = field(default_factory=dict)  # group -> reason
    stopped: str = "end"                 # "end" (no-follow done), "interrupted", "limit"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "events": self.events, "redacted_lines": self.redacted,
                "fallback": self.fallback, "missing": self.missing, "unreadable": self.unreadable,
                "stopped": self.stopped}


def redact_message(message: str, extra: Sequence[detectors.Detector] = ()) -> tuple[str, tuple[str, ...]]:
    """The message with every sensitive span replaced by [REDACTED:kind], and the kinds."""
    text = message.rstrip("\n")
    hits = detectors.find(text, extra)
    if not hits:
        return text, ()
    return detectors.redact(text, hits, width=FULL_LINE), tuple(sorted({h.kind for h in hits}))


def _event(group: str, raw: dict, extra: Sequence[detectors.Detector]) -> TailEvent:
    msg, kinds = redact_message(str(raw.get("message", "")), extra)
    return TailEvent(group, str(raw.get("logStreamName", "")), int(raw.get("timestamp") or 0), msg, kinds)


def _code(e: BaseException) -> str:
    return getattr(e, "response", {}).get("Error", {}).get("Code", "") or type(e).__name__


class _Poller:
    """filter_log_events per group from the newest timestamp seen; events at that same
    millisecond are remembered by id so a boundary event is printed once."""

    def __init__(self, client: Any, groups: Sequence[str], start_ms: int, pattern: str | None,
                 summary: TailSummary, warn: Callable[[str], None]):
        self.client, self.pattern, self.summary, self.warn = client, pattern, summary, warn
        self.cursor = {g: start_ms for g in groups}
        self.seen: dict[str, set[str]] = {g: set() for g in groups}

    def poll(self) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        for group, start in self.cursor.items():
            kw: dict[str, Any] = {"logGroupName": group, "startTime": start}
            if self.pattern:
                kw["filterPattern"] = self.pattern
            try:
                while True:
                    resp = self.client.filter_log_events(**kw)
                    for ev in resp.get("events", []):
                        eid = ev.get("eventId") or repr((ev.get("logStreamName"), ev.get("timestamp"),
                                                         ev.get("message")))
                        if eid in self.seen[group]:
                            continue
                        ts = int(ev.get("timestamp") or 0)
                        if ts > self.cursor[group]:
                            self.cursor[group], self.seen[group] = ts, set()
                        self.seen[group].add(eid)
                        out.append((group, ev))
                    token = resp.get("nextToken")
                    if not token or token == kw.get("nextToken"):
                        break
                    kw["nextToken"] = token
            except Exception as e:  # reported per group, the others go on
                code = _code(e)
                if code == "ResourceNotFoundException":
                    if group not in self.summary.missing:
                        self.summary.missing.append(group)
                        self.warn(f"log group {group} does not exist (yet); still watching it")
                elif self.summary.unreadable.get(group) != code:
                    self.summary.unreadable[group] = f"{code}: {e}"
                    self.warn(f"cannot read log group {group}: {code}")
                continue
            if group in self.summary.missing:  # it appeared
                self.summary.missing.remove(group)
        out.sort(key=lambda ge: (int(ge[1].get("timestamp") or 0), ge[0]))
        return out


def _group_arns(client: Any, groups: Sequence[str]) -> dict[str, str]:
    """Log group name -> ARN (live tail takes ARNs); groups not found are left out."""
    arns: dict[str, str] = {}
    for g in groups:
        resp = client.describe_log_groups(logGroupNamePrefix=g)
        for lg in resp.get("logGroups", []):
            if lg.get("logGroupName") == g:
                arn = lg.get("logGroupArn") or str(lg.get("arn", "")).removesuffix(":*")
                arns[g] = arn
    return arns


def _live(client: Any, arns: dict[str, str], pattern: str | None, extra, emit, summary: TailSummary,
          clock: Callable[[], float], until: float | None) -> None:
    """One live tail session per call (raises on errors starting it; returns when it ends)."""
    by_arn = {a: g for g, a in arns.items()}
    kw: dict[str, Any] = {"logGroupIdentifiers": list(arns.values())}
    if pattern:
        kw["logEventFilterPattern"] = pattern
    resp = client.start_live_tail(**kw)
    stream = resp["responseStream"]
    try:
        for item in stream:
            if "sessionUpdate" in item:
                for raw in item["sessionUpdate"].get("sessionResults", []):
                    group = by_arn.get(str(raw.get("logGroupIdentifier", "")).removesuffix(":*"),
                                       str(raw.get("logGroupIdentifier", "")))
                    _emit(emit, summary, _event(group, raw, extra))
            if until is not None and clock() >= until:
                summary.stopped = "limit"
                return
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()


def _emit(emit: Callable[[TailEvent], None], summary: TailSummary, ev: TailEvent) -> None:
    summary.events += 1
    if ev.redacted:
        summary.redacted += 1
    emit(ev)


def tail(client: Any, groups: Sequence[str], *, since: float | None, pattern: str | None = None,
         follow: bool = True, mode: str = "auto", clock: Callable[[], float], sleep: Callable[[float], None],
         emit: Callable[[TailEvent], None], warn: Callable[[str], None] = lambda _m: None,
         interval: float = 2.0, duration: float | None = None,
         extra: Iterable[detectors.Detector] = ()) -> TailSummary:
    """Print (through `emit`) the events of `groups` from `since` seconds ago, then, with
    `follow`, new ones until Ctrl-C (or `duration` seconds). `mode`: auto | live | poll."""
    extra = tuple(extra)
    summary = TailSummary()
    start = clock()
    until = start + duration if duration is not None else None
    poller = _Poller(client, groups, int((start - (since or 0)) * 1000), pattern, summary, warn)
    try:
        for group, ev in poller.poll():  # the backlog (--since), both modes
            _emit(emit, summary, _event(group, ev, extra))
        if not follow:
            return summary
        if mode in ("auto", "live"):
            try:
                arns = _group_arns(client, groups)
                if not arns:
                    raise LookupError("none of the log groups exists yet")
                if len(arns) > LIVE_TAIL_MAX_GROUPS:
                    raise LookupError(f"live tail follows at most {LIVE_TAIL_MAX_GROUPS} log groups "
                                      f"({len(arns)} given)")
                if len(arns) < len(groups):
                    raise LookupError("some log groups do not exist yet (live tail needs them all)")
                summary.mode = "live"
                while True:  # a session ends after 3 hours: start another
                    _live(client, arns, pattern, extra, emit, summary, clock, until)
                    if summary.stopped == "limit":
                        return summary
                    sleep(interval)  # never a tight loop of sessions that end at once
            except KeyboardInterrupt:
                raise
            except Exception as e:  # any refusal of live tail means: poll instead
                if mode == "live":
                    raise PtError(f"live tail not available: {_code(e)}: {str(e)[:200]}",
                                  "use --mode poll (or auto, which falls back to polling)", exit_code=1) from None
                summary.mode = "poll"
                summary.fallback = f"live tail not available ({_code(e)}: {str(e)[:200]}); polling every {interval:g}s"
                warn(summary.fallback)
        while until is None or clock() < until:
            sleep(interval)
            for group, ev in poller.poll():
                _emit(emit, summary, _event(group, ev, extra))
        summary.stopped = "limit"
    except KeyboardInterrupt:
        summary.stopped = "interrupted"
    return summary
