"""`pt test --notify`: a failed test run becomes a `tests_failed` notification (ops/notify.py)
naming the failing tests from the JUnit report.

`auto` (default) notifies when the tests failed and the run is in CI (GitHub Actions or
CodeBuild): a red run on a laptop pages nobody. `always` notifies a failure wherever it runs;
`never` does not. Passing runs are never notified. A notification never changes the exit code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline_tools.ops import notify as nt

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

MODES = ("auto", "always", "never")
MAX_NAMES = 10


def in_ci(env: Mapping[str, str]) -> bool:
    return env.get("GITHUB_ACTIONS") == "true" or bool(env.get("CODEBUILD_BUILD_ID"))


def should_notify(mode: str, exit_code: int, env: Mapping[str, str]) -> bool:
    """Pure: is a notification due for a run that exited `exit_code`?"""
    if mode not in MODES:
        raise ValueError(f"unknown --notify mode {mode!r}")
    if exit_code == 0 or mode == "never":
        return False
    return mode == "always" or in_ci(env)


def failing_tests(junit_path: str | None) -> tuple[list[str] | None, dict | None, str | None]:
    """(failing test names, totals, problem): names None when the report could not be read."""
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.ops.change_record import junit_summary

    if not junit_path or not os.path.isfile(junit_path):
        return None, None, "no JUnit report was written"
    try:
        s = junit_summary(junit_path)
    except UsageError as e:
        return None, None, e.message
    return s["failing"], {k: s[k] for k in ("tests", "passed", "failures", "errors", "skipped")}, None


def tests_failed_event(cfg: Config, stage: str | None, image: str, exit_code: int, summary: str,
                       junit_path: str | None, env: Mapping[str, str], now: float) -> nt.Event:
    names, _totals, problem = failing_tests(junit_path)
    details: dict[str, Any] = {"Image": image, "Result": f"{summary} (exit {exit_code})"}
    if names is None:
        details["Failing tests"] = f"unknown: {problem}"
    elif names:
        shown = names[:MAX_NAMES]
        details["Failing tests"] = ", ".join(shown) + (f" and {len(names) - len(shown)} more"
                                                       if len(names) > len(shown) else "")
    else:
        details["Failing tests"] = "none in the JUnit report (the test command itself failed)"
    from pipeline_tools.release.actor import ci_context

    ctx = ci_context(env)
    head = f"{image}: tests failed" + (f" ({len(names)} failing)" if names else "")
    return nt.Event(kind="tests_failed", project=cfg.project, stage=stage or "-", summary=head,
                    actor=ctx.get("author"), run_url=ctx.get("run_url"), at=now,
                    details={**details, "Commit": ctx.get("git_sha")})


def notify_failure(cfg: Config, stage: str | None, image: str, exit_code: int, summary: str,
                   junit_path: str | None, *, mode: str, factory: Any, env: Mapping[str, str],
                   now: float, warn: Callable[[str], None] | None = None,
                   post: Callable[[str, dict], int] = nt.post_json) -> nt.NotifyResult | None:
    """Send `tests_failed` when due (None when not). SNS needs a stage (its topic is per stage):
    without `--stage` the SNS channel is skipped with a warning."""
    if not should_notify(mode, exit_code, env):
        return None
    event = tests_failed_event(cfg, stage, image, exit_code, summary, junit_path, env, now)
    if stage is None and cfg.notifications.sns:
        if warn:
            warn("tests_failed not published to SNS: the topic is per stage, pass --stage")
        cfg = cfg.model_copy(update={"notifications": cfg.notifications.model_copy(update={"sns": False})})
    return nt.notify_from_factory(cfg, event, factory, warn=warn, post=post)
