"""Deploy windows: days, hours, wrap past midnight, timezones with DST, override rules."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools.core.config import WindowConfig
from pipeline_tools.core.errors import UsageError
from pipeline_tools.release.windows import WindowClosed, check, describe, is_open, next_open

MON_THU = WindowConfig(days=["mon", "tue", "wed", "thu"], hours="02:00-05:00", timezone="UTC")


def utc(*a):
    return datetime(*a, tzinfo=UTC)


def test_describe_uses_ranges_and_timezone():
    assert describe(MON_THU) == "Mon–Thu 02:00–05:00 UTC"
    assert describe(WindowConfig(days=["sat", "mon"], hours="22:00-02:00")) == "Mon,Sat 22:00–02:00 UTC"


@pytest.mark.parametrize("when,expected", [
    (utc(2026, 11, 23, 2, 0), True),      # Monday, opening minute
    (utc(2026, 11, 23, 4, 59), True),
    (utc(2026, 11, 23, 5, 0), False),     # end is exclusive
    (utc(2026, 11, 23, 1, 59), False),
    (utc(2026, 11, 27, 3, 0), False),     # Friday
    (utc(2026, 11, 26, 3, 0), True),      # Thursday
])
def test_is_open_mon_thu(when, expected):
    assert is_open(MON_THU, when) is expected


def test_closed_message_names_window_and_time_to_next_opening():
    # Friday 2026-11-27 19:48 UTC → next Monday 02:00 = 2d 6h 12m
    with pytest.raises(WindowClosed) as e:
        check(MON_THU, utc(2026, 11, 27, 19, 48))
    assert str(e.value) == "outside deploy window (Mon–Thu 02:00–05:00 UTC); next opens in 2d6h12m"
    assert "--override-window --reason" in e.value.hint
    assert e.value.exit_code == 1


def test_next_opens_in_hours_and_minutes():
    with pytest.raises(WindowClosed, match=r"next opens in 6h12m$"):
        check(MON_THU, utc(2026, 11, 23, 19, 48))


def test_override_needs_reason_and_is_reported():
    with pytest.raises(UsageError, match="needs --reason"):
        check(MON_THU, utc(2026, 11, 27, 12, 0), override=True)
    d = check(MON_THU, utc(2026, 11, 27, 12, 0), override=True, reason=" hotfix INC-1 ")
    assert (d.open, d.overridden, d.reason) == (False, True, "hotfix INC-1")
    assert d.next_open == utc(2026, 11, 30, 2, 0)


def test_open_window_is_not_an_override_and_no_window_is_always_open():
    d = check(MON_THU, utc(2026, 11, 23, 3, 0), override=True, reason="not needed")
    assert d.open and not d.overridden
    assert check(None, utc(2026, 11, 27, 12, 0)).open


def test_naive_now_is_rejected():
    with pytest.raises(ValueError):
        is_open(MON_THU, datetime(2026, 11, 23, 3, 0))


def test_window_wrapping_midnight_belongs_to_its_start_day():
    w = WindowConfig(days=["fri"], hours="22:00-02:00", timezone="UTC")
    assert is_open(w, utc(2026, 11, 27, 23, 0))          # Friday night
    assert is_open(w, utc(2026, 11, 28, 1, 59))          # Saturday early = Friday's window
    assert not is_open(w, utc(2026, 11, 28, 23, 0))      # Saturday night
    assert not is_open(w, utc(2026, 11, 27, 1, 0))       # Friday early = Thursday's window


BERLIN = WindowConfig(days=["sun", "mon"], hours="02:00-05:00", timezone="Europe/Berlin")


def test_dst_summer_and_winter_offsets():
    # 2026-07-06 Monday: CEST (+2) → 02:00 local = 00:00 UTC
    assert is_open(BERLIN, utc(2026, 7, 6, 0, 0))
    assert not is_open(BERLIN, utc(2026, 7, 6, 3, 0))
    # 2026-11-23 Monday: CET (+1) → 02:00 local = 01:00 UTC
    assert not is_open(BERLIN, utc(2026, 11, 23, 0, 30))
    assert is_open(BERLIN, utc(2026, 11, 23, 1, 0))


def test_dst_spring_forward_day_window_starts_at_first_valid_instant():
    # 2026-03-29 (Sunday): clocks jump 02:00 CET → 03:00 CEST (01:00 UTC)
    assert not is_open(BERLIN, utc(2026, 3, 29, 0, 59))
    assert is_open(BERLIN, utc(2026, 3, 29, 1, 0))        # 03:00 CEST
    assert is_open(BERLIN, utc(2026, 3, 29, 2, 59))       # 04:59 CEST
    assert not is_open(BERLIN, utc(2026, 3, 29, 3, 0))    # 05:00 CEST


def test_dst_fall_back_day_uses_first_occurrence():
    # 2026-10-25 (Sunday): 03:00 CEST → 02:00 CET; 02:00 local first occurs at 00:00 UTC
    assert is_open(BERLIN, utc(2026, 10, 25, 0, 0))
    assert is_open(BERLIN, utc(2026, 10, 25, 3, 59))      # 04:59 CET
    assert not is_open(BERLIN, utc(2026, 10, 25, 4, 0))   # 05:00 CET


def test_new_york_next_open_across_dst_change():
    ny = WindowConfig(days=["mon"], hours="09:00-10:00", timezone="America/New_York")
    # Friday before the 2026-11-01 fall-back: next Monday 09:00 EST = 14:00 UTC
    assert next_open(ny, utc(2026, 10, 30, 12, 0)) == utc(2026, 11, 2, 14, 0)
    # after spring-forward 2026-03-08: Monday 09:00 EDT = 13:00 UTC
    assert next_open(ny, utc(2026, 3, 6, 12, 0)) == utc(2026, 3, 9, 13, 0)


days_st = st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1, unique=True)
hours_st = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59)).filter(
    lambda t: (t[0], t[1]) != (t[2], t[3])).map(lambda t: f"{t[0]:02d}:{t[1]:02d}-{t[2]:02d}:{t[3]:02d}")
tz_st = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"])
instant_st = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))


@given(days_st, hours_st, tz_st, instant_st)
def test_next_open_is_in_the_future_and_open(days, hours, tz, now):
    w = WindowConfig(days=days, hours=hours, timezone=tz)
    nxt = next_open(w, now)
    assert nxt > now
    assert nxt - now <= timedelta(days=8)
    assert is_open(w, nxt)
    # the local time at opening is the configured start, or one hour later when the start
    # falls into a spring-forward gap (every zone sampled here shifts by one hour)
    local = nxt.astimezone(ZoneInfo(tz))
    start = hours.split("-")[0]
    assert start in (local.strftime("%H:%M"), (local - timedelta(hours=1)).strftime("%H:%M"))
