"""Deploy windows: when a stage may be deployed (days + hours in a timezone, DST-aware).

Public API:
- `describe(window) -> "Mon–Thu 02:00–05:00 UTC"`
- `is_open(window, now) -> bool`
- `next_open(window, now) -> datetime` (aware, UTC)
- `check(window, now, *, override=False, reason=None) -> WindowDecision`; raises `WindowClosed`
  when closed and not overridden, `UsageError` when an override has no reason.

A window whose hours wrap midnight (22:00-02:00) belongs to the day it starts on. Local times
are interpreted in the window's timezone, so "02:00-05:00 Europe/Berlin" follows DST; on the
spring-forward day a window starting inside the skipped hour opens at the first valid instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pipeline_tools.core.errors import PtError, UsageError

if TYPE_CHECKING:
    from pipeline_tools.core.config import WindowConfig

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WindowClosed(PtError):
    """Outside the stage's deploy window, and no override."""


@dataclass(frozen=True)
class WindowDecision:
    open: bool
    overridden: bool
    reason: str | None
    window: str | None
    next_open: datetime | None = None

    def to_dict(self) -> dict:
        return {"open": self.open, "overridden": self.overridden, "reason": self.reason,
                "window": self.window, "next_open": self.next_open.isoformat() if self.next_open else None}


def _hours(window: WindowConfig) -> tuple[time, int]:
    start_s, end_s = window.hours.split("-")
    sh, sm = (int(x) for x in start_s.split(":"))
    eh, em = (int(x) for x in end_s.split(":"))
    start_min = sh * 60 + sm
    end_min = eh * 60 + em
    length = (end_min - start_min) % (24 * 60) or 24 * 60
    return time(sh, sm), length


def describe(window: WindowConfig) -> str:
    days = [d for d in _DAYS if d in window.days]
    idx = [_DAYS.index(d) for d in days]
    if len(idx) > 2 and idx == list(range(idx[0], idx[-1] + 1)):
        day_text = f"{days[0].title()}–{days[-1].title()}"
    else:
        day_text = ",".join(d.title() for d in days)
    start, end = window.hours.split("-")
    return f"{day_text} {start}–{end} {window.timezone}"


def _intervals(window: WindowConfig, around: datetime) -> list[tuple[datetime, datetime]]:
    """Open intervals (UTC) starting on local days from 8 days before to 8 days after `around`."""
    tz = ZoneInfo(window.timezone)
    start_t, length = _hours(window)
    local_day = around.astimezone(tz).date()
    out = []
    for delta in range(-8, 9):
        day = local_day + timedelta(days=delta)
        if _DAYS[day.weekday()] not in window.days:
            continue
        naive = datetime.combine(day, start_t)
        # fold=0 picks the first occurrence of an ambiguous time; a nonexistent local time
        # (spring forward) normalises forward through UTC.
        start = naive.replace(tzinfo=tz).astimezone(UTC)
        start = start.astimezone(tz).astimezone(UTC)
        end_local = naive + timedelta(minutes=length)
        end = end_local.replace(tzinfo=tz).astimezone(UTC)
        if end > start:
            out.append((start, end))
    return out


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def is_open(window: WindowConfig, now: datetime) -> bool:
    now = _utc(now)
    return any(s <= now < e for s, e in _intervals(window, now))


def next_open(window: WindowConfig, now: datetime) -> datetime:
    now = _utc(now)
    starts = sorted(s for s, _ in _intervals(window, now) if s > now)
    if not starts:  # unreachable with at least one day configured; keeps the type honest
        raise ValueError("window never opens")
    return starts[0]


def _human_delta(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() // 60))
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m:02d}m" if (h or d) else f"{m}m"]
    return "".join(parts)


def check(window: WindowConfig | None, now: datetime, *, override: bool = False,
          reason: str | None = None) -> WindowDecision:
    """Decide whether a deploy may start now. No window configured → always open."""
    if override and not (reason and reason.strip()):
        raise UsageError("--override-window needs --reason \"why\" (it is recorded in the ledger)",
                         "e.g. --override-window --reason \"hotfix for incident 1234\"")
    if window is None:
        return WindowDecision(open=True, overridden=False, reason=None, window=None)
    text = describe(window)
    if is_open(window, now):
        return WindowDecision(open=True, overridden=False, reason=None, window=text)
    nxt = next_open(window, now)
    if override:
        return WindowDecision(open=False, overridden=True, reason=reason.strip() if reason else None,
                              window=text, next_open=nxt)
    raise WindowClosed(
        f"outside deploy window ({text}); next opens in {_human_delta(nxt - _utc(now))}",
        "wait for the window, or pass --override-window --reason \"why\" (recorded in the ledger)",
    )
