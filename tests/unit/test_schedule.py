"""schedule.py: the traffic steps of each strategy (property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools.release.schedule import Step, steps, total_time, weights


def test_all_at_once():
    assert steps("all-at-once", None, 60) == (Step(100, 0.0),)


def test_canary():
    assert steps("canary", 10, 60) == (Step(10, 60), Step(100, 0.0))


def test_linear():
    assert [s.percent for s in steps("linear", 25, 5)] == [25, 50, 75, 100]
    assert [s.percent for s in steps("linear", 30, 5)] == [30, 60, 90, 100]
    assert total_time(steps("linear", 25, 5), 10) == 25


@pytest.mark.parametrize("strategy,percent", [("canary", None), ("linear", 0), ("linear", 100), ("blue", 5)])
def test_bad_input(strategy, percent):
    with pytest.raises(ValueError):
        steps(strategy, percent, 1)


@given(st.sampled_from(["canary", "linear"]), st.integers(1, 99), st.floats(0, 1000))
def test_schedule_properties(strategy, percent, interval):
    s = steps(strategy, percent, interval)
    pcts = [x.percent for x in s]
    assert pcts[-1] == 100 and s[-1].wait == 0
    assert pcts == sorted(set(pcts))                       # strictly increasing
    assert all(0 < p <= 100 for p in pcts)
    assert all(x.wait == interval for x in s[:-1])
    if strategy == "linear":
        assert all(b - a <= percent for a, b in zip([0, *pcts], pcts))
    else:
        assert len(s) == 2


@given(st.integers(1, 100))
def test_weights(p):
    primary, extra = weights(p, "3", "4")
    if p == 100:
        assert (primary, extra) == ("4", {})
    else:
        assert primary == "3" and 0 < extra["4"] < 1 and abs(extra["4"] * 100 - p) < 0.01
    assert weights(p, None, "4") == ("4", {})
