"""core/schedule_expr.py: schedule expressions as EventBridge Scheduler accepts them."""

from __future__ import annotations

import pytest

from pipeline_tools.core.schedule_expr import problem


@pytest.mark.parametrize("expr", [
    "cron(0 3 * * ? *)", "cron(0/15 * * * ? *)", "cron(0 8 ? * MON-FRI *)", "cron(30 2 1 JAN-MAR ? 2027)",
    "cron(0 0 L * ? *)", "cron(0 0 15W * ? *)", "cron(0 0 LW * ? *)", "cron(0 9 ? * 2#1 *)", "cron(0 9 ? * 6L *)",
    "cron(5,35 14 * * ? *)", "cron(0 12 * 1,6,12 ? 2026-2030)", "cron(0 0 ? * SUN *)", " cron(0 3 * * ? *) ",
    "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(7 days)",
    "at(2027-01-31T03:00:00)",
])
def test_valid_expressions_pass(expr):
    assert problem(expr) is None


@pytest.mark.parametrize("expr, words", [
    ("", "must not be empty"),
    ("   ", "must not be empty"),
    ("0 3 * * *", "not a schedule expression"),
    ("every(1 day)", "not a schedule expression"),
    ("cron(0 3 * * *)", "needs 6 fields"),
    ("cron(0 3 * * ? * *)", "needs 6 fields"),
    ("cron(0 3 * * * *)", "exactly one of day-of-month"),
    ("cron(0 3 ? * ? *)", "exactly one of day-of-month"),
    ("cron(60 3 * * ? *)", "minutes '60'"),
    ("cron(0 24 * * ? *)", "hours '24'"),
    ("cron(0 3 32 * ? *)", "day-of-month '32'"),
    ("cron(0 3 0 * ? *)", "day-of-month '0'"),
    ("cron(0 3 * 13 ? *)", "month '13'"),
    ("cron(0 3 * FOO ? *)", "month 'FOO'"),
    ("cron(0 3 ? * 8 *)", "day-of-week '8'"),
    ("cron(0 3 ? * MON#6 *)", "day-of-week 'MON#6'"),
    ("cron(0 3 * * ? 1969)", "year '1969'"),
    ("cron(0 3 * * ? 2200)", "year '2200'"),
    ("cron(0/0 3 * * ? *)", "increment"),
    ("cron(0/x 3 * * ? *)", "increment"),
    ("cron(0 3 L * ? *)x", "not a schedule expression"),
    ("cron(0 3 32W * ? *)", "day-of-month '32W'"),
    ("cron(0 3 ? * L# *)", "day-of-week"),
    ("cron(0 3 * * L *)", "exactly one of day-of-month"),
    ("cron(5-70 3 * * ? *)", "minutes '5-70'"),
    ("cron(*,5 3 * * ? *)", "minutes '*,5'"),
    ("rate(0 minutes)", "at least 1"),
    ("rate(1 minutes)", "write rate(1 minute)"),
    ("rate(5 minute)", "write rate(5 minutes)"),
    ("rate(5 weeks)", "unit must be"),
    ("rate(five minutes)", "must be rate(VALUE UNIT)"),
    ("rate(-1 day)", "must be rate(VALUE UNIT)"),
    ("at(2027-01-31 03:00:00)", "yyyy-mm-ddThh:mm:ss"),
    ("at(2027-02-30T03:00:00)", "not a date"),
    ("at(2027-01-31T25:00:00)", "not a date"),
])
def test_invalid_expressions_say_why_in_one_line(expr, words):
    why = problem(expr)
    assert why is not None and words in why, why
    assert "\n" not in why
