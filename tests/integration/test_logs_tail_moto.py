"""`pt logs tail` on moto server: backlog, follow by polling (moto refuses live tail), redaction, Ctrl-C."""

from __future__ import annotations

import json
import time

import pytest

from pipeline_tools.core.errors import PtError
from pipeline_tools.ops import logtail

from .conftest_ops import seed_log_group, write_config

GROUP = "/aws/lambda/iris-val-predict"
OTHER = "/aws/lambda/iris-val-batch-score"
RAW = ["jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE", "4111 1111 1111 1111"]


class Interrupt:
    """An injected sleep: runs `each` between polls, raises KeyboardInterrupt (Ctrl-C) after `n` sleeps."""

    def __init__(self, n: int, each=None):
        self.n, self.each, self.calls = n, each, 0

    def __call__(self, _seconds: float) -> None:
        self.calls += 1
        if self.each:
            self.each(self.calls)
        if self.calls > self.n:
            raise KeyboardInterrupt


def test_backlog_then_follow_by_polling_redacts_and_stops_on_ctrl_c(aws):
    seed_log_group(aws, GROUP, ["START ok", f"user {RAW[0]} signed in"])
    seed_log_group(aws, OTHER, ["batch started"], stream="s2")
    client = aws.client("logs")
    got: list[logtail.TailEvent] = []
    warnings: list[str] = []

    def write_more(i: int) -> None:
        if i == 1:
            seed_log_group(aws, GROUP, [f"key {RAW[1]} card {RAW[2]}"], stream="s3",
                           now_ms=int(time.time() * 1000) + 5000)

    summary = logtail.tail(client, [GROUP, OTHER], since=600, follow=True, mode="auto", clock=time.time,
                           sleep=Interrupt(3, write_more), emit=got.append, warn=warnings.append, interval=0.01)
    assert summary.stopped == "interrupted"
    assert summary.mode == "poll" and "live tail not available" in summary.fallback
    msgs = [e.message for e in got]
    assert sorted(msgs[:3]) == sorted(["START ok", "user [REDACTED:email] signed in", "batch started"])
    assert msgs[3:] == ["key [REDACTED:aws_access_key_id] card [REDACTED:credit_card]"]  # once, not per poll
    assert got[3].group == GROUP and got[3].stream == "s3" and got[3].redacted == ("aws_access_key_id", "credit_card")
    assert summary.events == 4 and summary.redacted == 2
    assert all(r not in json.dumps([e.to_dict() for e in got]) for r in RAW)


def test_filter_pattern_and_missing_group_no_follow(aws):
    seed_log_group(aws, GROUP, ["INFO fine", "ERROR boom from 203.0.113.42"])
    got: list[logtail.TailEvent] = []
    summary = logtail.tail(aws.client("logs"), [GROUP, OTHER], since=600, pattern="ERROR", follow=False,
                           clock=time.time, sleep=Interrupt(0), emit=got.append)
    assert [e.message for e in got] == ["ERROR boom from [REDACTED:ipv4]"]
    assert summary.missing == [OTHER] and summary.stopped == "end"


def test_mode_live_refused_by_endpoint_is_an_error_not_a_silent_poll(aws):
    seed_log_group(aws, GROUP, ["x"])
    with pytest.raises(PtError, match="live tail not available"):  # moto server: no stream- host prefix
        logtail.tail(aws.client("logs"), [GROUP], since=60, follow=True, mode="live", clock=time.time,
                     sleep=Interrupt(0), emit=lambda e: None)


def test_cli_json_lines_no_follow(aws, tmp_path, run_pt):
    cfg = write_config(tmp_path)
    seed_log_group(aws, GROUP, [f"hello {RAW[0]}", "second"])
    r = run_pt("logs", "tail", "--stage", "val", "--config", cfg, "--target", "lambda:predict", "--since", "10m",
               "--no-follow", "--output", "json")
    assert r.exit_code == 0, r
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [(x["group"], x["message"], x["redacted"]) for x in lines] == [
        (GROUP, "hello [REDACTED:email]", ["email"]), (GROUP, "second", [])]
    assert RAW[0] not in r.stdout + r.stderr


def test_cli_no_follow_missing_group_exits_1_and_bad_target_exits_2(aws, tmp_path, run_pt):
    cfg = write_config(tmp_path)
    r = run_pt("logs", "tail", "--stage", "val", "--config", cfg, "--no-follow")
    assert r.exit_code == 1 and "not read: /aws/lambda/iris-val-predict" in r.stderr
    r = run_pt("logs", "tail", "--stage", "val", "--config", cfg, "--target", "lambda:nope", "--no-follow")
    assert r.exit_code == 2 and "no function 'nope'" in r.stderr
    r = run_pt("logs", "tail", "--stage", "val", "--config", cfg, "--target", "ecs:x", "--no-follow")
    assert r.exit_code == 2 and "expected lambda:NAME" in r.stderr
