"""When `pt test` notifies: every mode × exit code × CI combination."""

from __future__ import annotations

import itertools

import pytest

from pipeline_tools.ops import testnotify


@pytest.mark.parametrize("mode,code,env", list(itertools.product(
    ["auto", "always", "never"], [0, 1, 2], [{}, {"GITHUB_ACTIONS": "true"}, {"CODEBUILD_BUILD_ID": "b:1"},
                                          {"GITHUB_ACTIONS": "false"}])))
def test_should_notify_matrix(mode, code, env):
    ci = env.get("GITHUB_ACTIONS") == "true" or "CODEBUILD_BUILD_ID" in env
    expected = code != 0 and (mode == "always" or (mode == "auto" and ci))
    assert testnotify.should_notify(mode, code, env) is expected


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        testnotify.should_notify("sometimes", 1, {})


def test_failing_tests_missing_report():
    assert testnotify.failing_tests(None) == (None, None, "no JUnit report was written")
