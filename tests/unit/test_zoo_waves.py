"""Pure parts of zoo_plan: wave sizes, coverage, split; versions gc keeps; the ledger view plan reads."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_tools.targets.zoo_plan import (
    UNKNOWN,
    LedgerView,
    check_coverage,
    check_waves,
    parse_wave,
    protected_versions,
    split_waves,
    wave_sizes,
)


@pytest.mark.parametrize(("item", "parsed"), [
    (1, ("count", 1.0)), (25, ("count", 25.0)), ("10%", ("percent", 10.0)), (" 2.5 % ", ("percent", 2.5)),
    ("100%", ("percent", 100.0)), ("rest", ("rest", 0.0)), ("REST", ("rest", 0.0)),
])
def test_parse_wave(item, parsed):
    assert parse_wave(item) == parsed


@pytest.mark.parametrize("item", [0, -1, True, "0%", "101%", "ten", "", "10", 1.5, None, "%"])
def test_parse_wave_rejects(item):
    with pytest.raises(ValueError, match="wave"):
        parse_wave(item)


def test_rest_only_last_and_not_empty():
    with pytest.raises(ValueError, match='"rest" must be the last wave \\(it is wave 1 of 2\\)'):
        check_waves(["rest", 1])
    with pytest.raises(ValueError, match="empty"):
        check_waves([])
    assert check_waves([1, "rest"]) == [("count", 1.0), ("rest", 0.0)]


@pytest.mark.parametrize(("spec", "n", "sizes"), [
    ([1, "10%", "rest"], 100, [1, 10, 89]),
    ([1, "10%", "rest"], 25, [1, 3, 21]),   # ceil(2.5)
    ([1, "10%", "rest"], 1, [1]),           # waves stop once everyone is placed
    ([1, "10%", "rest"], 2, [1, 1]),
    ([1, "10%", "rest"], 0, []),
    (["50%", "50%"], 3, [2, 1]),
    (["33%", "33%", "34%"], 100, [33, 33, 34]),
    (["33%", "33%", "33%"], 3, [1, 1, 1]),
    ([2, 2], 4, [2, 2]),
    ([5], 3, [3]),
    (["rest"], 7, [7]),
    (["100%"], 7, [7]),
    (["1%", "rest"], 10, [1, 9]),           # a percentage of a few is at least one
])
def test_wave_sizes(spec, n, sizes):
    assert wave_sizes(spec, n) == sizes


@pytest.mark.parametrize(("spec", "n"), [([1], 2), ([1, "10%"], 3), (["40%", "40%"], 5), (["99%"], 101)])
def test_a_plan_that_leaves_consumers_out_is_refused(spec, n):
    with pytest.raises(ValueError, match=f"of {n} consumer"):
        wave_sizes(spec, n)


def test_coverage_is_checked_for_every_count_up_to_n():
    wave_sizes(["40%", "40%"], 6)  # 3 + 3: places 6 of 6 …
    with pytest.raises(ValueError, match="4 of 5"):  # … but a rollout of 5 would leave one out
        check_coverage(["40%", "40%"], 6)
    check_coverage([1, "10%", "rest"], 50)
    check_coverage([3], 3)
    with pytest.raises(ValueError, match="3 of 4"):
        check_coverage([3], 4)


WAVE = st.one_of(st.integers(1, 6), st.integers(1, 100).map(lambda p: f"{p}%"))


@given(st.lists(WAVE, min_size=1, max_size=4), st.booleans(), st.integers(0, 60))
def test_sizes_properties(spec, rest, n):
    spec = [*spec, "rest"] if rest else spec
    try:
        sizes = wave_sizes(spec, n)
    except ValueError:
        assert not rest  # with `rest` every plan covers
        return
    assert sum(sizes) == n and all(s >= 1 for s in sizes) and len(sizes) <= len(spec)


@given(st.lists(st.integers(), max_size=40), st.lists(WAVE, min_size=1, max_size=4))
def test_split_keeps_order_and_every_item(items, spec):
    waves = split_waves(items, [*spec, "rest"])
    assert list(itertools.chain.from_iterable(waves)) == items
    assert all(waves) and (waves or not items)


def test_split_without_waves_is_one_wave():
    assert split_waves([1, 2, 3], None) == [[1, 2, 3]]
    assert split_waves([], [1, "rest"]) == []


def _apply(fn, version, previous, state="succeeded", reverted_by=None):
    return {"operation": "apply", "state": state, "reverted_by": reverted_by,
            "models": [{"function": fn, "version": version, "previous_version": previous}]}


def test_protected_versions_per_function_the_newest_record_that_touched_it():
    recs = [_apply("b", "4", "3"), _apply("a", "2", "1")]  # newest first: B after A
    assert protected_versions(recs) == {"b:4", "b:3", "a:2", "a:1"}


def test_protected_versions_every_unreverted_previous_for_the_revert_chain():
    recs = [_apply("a", "3", "2"), _apply("a", "2", "1")]
    assert protected_versions(recs) == {"a:3", "a:2", "a:1"}
    reverted = [_apply("a", "3", "2"), _apply("a", "2", "1", reverted_by="r1")]
    assert "a:1" not in protected_versions(reverted)


def test_protected_versions_revert_keeps_where_it_went_and_failed_applies_count():
    recs = [{"operation": "revert", "state": "succeeded",
             "models": [{"function": "a", "from_version": "3", "to_version": "2"}]},
            _apply("a", "3", "2", reverted_by="r")]
    assert protected_versions(recs) == {"a:2"}
    failed = [_apply("a", "5", "4", state="failed")]  # a rollback that could not finish: keep both ends
    assert protected_versions(failed) == {"a:5", "a:4"}
    assert protected_versions([{"operation": "gc", "models": [{"function": "a", "version": "1"}]}]) == set()
    created = [_apply("a", "1", None)]
    assert protected_versions(created) == {"a:1"}


# --- LedgerView: what runs, from the zoo records -------------------------------------------------

def _step(fn, version, previous=None, created=False, repo="repo", artifacts="sha256:a"):
    return {"function": fn, "version": version, "previous_version": previous, "created": created,
            "image_repo": repo, "image_digest": "sha256:i", "artifacts": artifacts}


def _view(records, wanted=("f",)):
    v = LedgerView(wanted)
    for r in records:
        v.feed(r)
    return v


def test_view_a_succeeded_apply_tells_what_runs():
    v = _view([{"operation": "apply", "state": "succeeded", "models": [_step("f", "3", "2")]}])
    st = v.state("f")
    assert (st.exists, st.version, st.artifacts, st.image_uri) == (True, "3", "sha256:a", "repo@sha256:i")
    assert st.live and not st.weighted
    assert v.done


def test_view_unknown_without_records_running_records_and_old_records_without_image():
    assert _view([]).state("f") is UNKNOWN
    for state in ("locked", "applying", "repointing", "failed"):
        assert _view([{"operation": "apply", "state": state, "models": [_step("f", "3", "2")]}]).state("f") is UNKNOWN
    old = {"operation": "apply", "state": "succeeded", "models": [{**_step("f", "3"), "image_repo": None}]}
    assert _view([old]).state("f") is UNKNOWN
    failed_revert = {"operation": "revert", "state": "failed", "models": [{"function": "f", "to_version": "2"}]}
    ok = {"operation": "apply", "state": "succeeded", "models": [_step("f", "2")]}
    assert _view([failed_revert, ok]).state("f") is UNKNOWN


def test_view_rolled_back_and_reverted_applies_are_looked_through():
    older = {"operation": "apply", "state": "succeeded", "models": [_step("f", "2", "1")]}
    rolled = {"operation": "apply", "state": "rolled_back", "models": [_step("f", "3", "2")]}
    reverted = {"operation": "apply", "state": "succeeded", "reverted_by": "r", "models": [_step("f", "3", "2")]}
    revert = {"operation": "revert", "state": "succeeded", "models": [{"function": "f", "to_version": "2"}]}
    for newest in ([rolled], [revert, reverted]):
        assert _view([*newest, older]).state("f").version == "2"
    # … expecting the version they went back to: anything else is unknown
    mismatch = {"operation": "apply", "state": "succeeded", "models": [_step("f", "7", "6")]}
    assert _view([rolled, mismatch]).state("f") is UNKNOWN


def test_view_a_created_function_rolled_back_or_reverted_is_gone():
    created = {"operation": "apply", "state": "rolled_back", "models": [_step("f", "1", None, created=True)]}
    st = _view([created]).state("f")
    assert st is not UNKNOWN and not st.exists
    first = {"operation": "apply", "state": "succeeded", "reverted_by": "r", "models": [_step("f", "1", None, True)]}
    assert not _view([first]).state("f").exists


def test_view_ignores_other_functions_gc_and_refused_records_and_stops_when_done():
    gc = {"operation": "gc", "state": "succeeded", "delete": [{"function": "f", "version": "1"}]}
    refused = {"operation": "apply", "state": "failed", "refused": True}
    other = {"operation": "apply", "state": "succeeded", "models": [_step("g", "5")]}
    ok = {"operation": "apply", "state": "succeeded", "models": [_step("f", "2")]}
    v = _view([gc, refused, other], wanted=("f", "g"))
    assert not v.done and v.state("f") is UNKNOWN and v.state("g").version == "5"
    v.feed(ok)
    assert v.done and v.state("f").version == "2"
    newer_first = _view([ok, {"operation": "apply", "state": "succeeded", "models": [_step("f", "9")]}])
    assert newer_first.state("f").version == "2"  # the newest record wins
