"""core/batchspec.py: Fargate sizes and EventBridge Scheduler expressions (pure, exhaustive)."""

from __future__ import annotations

import pytest

from pipeline_tools.core.batchspec import FARGATE_MEMORY, fargate_problem, schedule_problem


def test_every_listed_fargate_size_is_accepted():
    for vcpu, sizes in FARGATE_MEMORY.items():
        for memory in sizes:
            assert fargate_problem(vcpu, memory) is None, (vcpu, memory)
    assert fargate_problem(1, 2048) is None  # an int vCPU too


@pytest.mark.parametrize(("vcpu", "memory", "needle"), [
    (0.25, 4096, "0.25 vCPU takes memory 512, 1024, 2048 MiB (got 4096)"),
    (1, 1024, "1 vCPU takes memory 2048–8192 in steps of 1024 MiB (got 1024)"),
    (1, 2500, "(got 2500)"),
    (8, 20000, "16384–61440 in steps of 4096"),
    (16, 40000, "32768–122880 in steps of 8192"),
    (3, 8192, "Fargate has no 3 vCPU size; use one of 0.25, 0.5, 1, 2, 4, 8, 16"),
    (0.75, 2048, "no 0.75 vCPU size"),
])
def test_bad_fargate_sizes(vcpu, memory, needle):
    problem = fargate_problem(vcpu, memory)
    assert problem is not None and needle in problem


@pytest.mark.parametrize("expr", [
    "rate(1 minute)", "rate(5 minutes)", "rate(1 hour)", "rate(12 hours)", "rate(1 day)", "rate(7 days)",
    "cron(0 3 * * ? *)", "cron(15 10 ? * MON-FRI *)", "cron(0/15 * * * ? *)", "cron(0 8 1 * ? 2030)",
    "cron(0 12 L * ? *)", "cron(0 12 15W * ? *)", "cron(0 9 ? * 2#1 *)", "cron(0 9 ? * 6L *)",
    "cron(0 0,12 1-5 JAN,JUL ? *)", "cron(*/5 * ? * * *)", "at(2030-01-31T03:00:00)",
])
def test_accepted_expressions(expr):
    assert schedule_problem(expr) is None


@pytest.mark.parametrize(("expr", "needle"), [
    ("rate(1 minutes)", "write rate(1 minute)"),
    ("rate(5 minute)", "write rate(5 minutes)"),
    ("rate(0 minutes)", "at least 1"),
    ("rate(5 weeks)", "is not a schedule expression"),
    ("cron(0 3 * * *)", "cron needs 6 fields"),
    ("cron(0 3 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
    ("cron(0 3 ? * ? *)", "exactly one of"),
    ("cron(60 3 * * ? *)", "minutes field '60'"),
    ("cron(0 24 * * ? *)", "hours field '24'"),
    ("cron(0 3 32 * ? *)", "day-of-month field '32'"),
    ("cron(0 3 * 13 ? *)", "month field '13'"),
    ("cron(0 3 ? * 8 *)", "day-of-week field '8'"),
    ("cron(0 3 ? * MON#6 *)", "DAY#N with N 1–5"),
    ("cron(0 3 * * ? 1969)", "year field '1969'"),
    ("cron(? 3 * * ? *)", "'?' is allowed only in day-of-month and day-of-week"),
    ("cron(0/0 3 * * ? *)", "increment after '/'"),
    ("at(2030-02-30T03:00:00)", "not a valid date"),
    ("at(2030-02-01 03:00:00)", "is not a schedule expression"),
    ("0 3 * * *", "is not a schedule expression; write rate(5 minutes), cron(0 3 * * ? *)"),
    (" rate(1 day)", "leading or trailing spaces"),
])
def test_rejected_expressions(expr, needle):
    problem = schedule_problem(expr)
    assert problem is not None and needle in problem, problem
