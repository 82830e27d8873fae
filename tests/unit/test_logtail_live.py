"""The live-tail path of `pt logs tail` with a client shaped like StartLiveTail's event stream
(moto server cannot serve it: the API uses the `stream-` host prefix)."""

from __future__ import annotations

from pipeline_tools.ops import logtail

ARN = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/iris-val-predict"


class LiveClient:
    def __init__(self, sessions):
        self.sessions, self.calls, self.closed = list(sessions), [], 0

    def filter_log_events(self, **kw):
        return {"events": []}

    def describe_log_groups(self, logGroupNamePrefix):
        return {"logGroups": [{"logGroupName": logGroupNamePrefix, "logGroupArn": ARN,
                               "arn": ARN + ":*"}]}

    def start_live_tail(self, **kw):
        self.calls.append(kw)
        events = self.sessions.pop(0)
        client = self

        class Stream:
            def __iter__(self):
                for e in events:
                    if isinstance(e, BaseException):
                        raise e
                    yield e

            def close(self):
                client.closed += 1

        return {"responseStream": Stream()}


def update(*msgs):
    return {"sessionUpdate": {"sessionMetadata": {"sampled": False}, "sessionResults": [
        {"logGroupIdentifier": ARN, "logStreamName": "s", "timestamp": 1_700_000_000_000 + i, "message": m}
        for i, m in enumerate(msgs)]}}


def test_live_tail_redacts_restarts_after_session_end_and_stops_on_ctrl_c():
    client = LiveClient([[{"sessionStart": {}}, update("a@example.com logged in")],
                         [update("ok"), KeyboardInterrupt()]])
    got = []
    s = logtail.tail(client, ["/aws/lambda/iris-val-predict"], since=60, pattern="ERROR", follow=True,
                     clock=lambda: 1_700_000_000.0, sleep=lambda _s: None, emit=got.append)
    assert [e.message for e in got] == ["[REDACTED:email] logged in", "ok"]
    assert got[0].group == "/aws/lambda/iris-val-predict"
    assert s.mode == "live" and s.stopped == "interrupted" and s.fallback is None
    assert client.calls == [{"logGroupIdentifiers": [ARN], "logEventFilterPattern": "ERROR"}] * 2
    assert client.closed == 2


def test_more_than_ten_groups_falls_back_to_polling():
    client = LiveClient([])
    polls = []

    def sleep(_s):
        polls.append(1)
        if len(polls) == 2:
            raise KeyboardInterrupt

    s = logtail.tail(client, [f"/g{i}" for i in range(11)], since=60, follow=True, clock=lambda: 0.0,
                     sleep=sleep, emit=lambda e: None)
    assert s.mode == "poll" and "at most 10" in s.fallback and client.calls == []


def test_redact_message_keeps_long_lines_whole():
    line = "x" * 500 + " 4111 1111 1111 1111 " + "y" * 500
    text, kinds = logtail.redact_message(line)
    assert text == "x" * 500 + " [REDACTED:credit_card] " + "y" * 500 and kinds == ("credit_card",)
