"""`pt test` failure notifications: Slack/Teams to a local HTTP server, SNS on moto server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.ops import testnotify

from .conftest_promote import webhook_server  # noqa: F401

CONTRACT = Path(__file__).resolve().parents[1] / "data" / "pipeline.example.yml"
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4" failures="1" errors="1" skipped="0" time="0.5">
<testcase classname="tests.test_api" name="test_predict_shape"><failure message="boom"/></testcase>
<testcase classname="tests.test_api" name="test_health"/>
<testcase classname="tests.test_model" name="test_load"><error message="x"/></testcase>
<testcase classname="tests.test_model" name="test_ok"/>
</testsuite></testsuites>
"""


@pytest.fixture
def cfg():
    return config_mod.load(CONTRACT)


def setup_channels(aws, webhook_server, monkeypatch, stage="staging"):  # noqa: F811
    aws.client("ssm").put_parameter(Name="/iris/slack-webhook", Value=webhook_server.url + "/slack/T/B/x",
                                    Type="SecureString")
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", webhook_server.url + "/teams/x")
    sns, sqs = aws.client("sns"), aws.client("sqs")
    arn = sns.create_topic(Name=f"iris-{stage}-events")["TopicArn"]
    q = sqs.create_queue(QueueName="tests")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    return q


def test_failed_tests_notify_every_channel_with_failing_names(aws, cfg, webhook_server, monkeypatch,  # noqa: F811
                                                               tmp_path):
    q = setup_channels(aws, webhook_server, monkeypatch)
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "abc123", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7",
           "PT_GIT_SHA": "abc123"}
    res = testnotify.notify_failure(cfg, "staging", "model", 1, "2 passed, 1 failed, 1 error", str(junit),
                                    mode="auto", factory=aws, env=env, now=1_700_000_000.0)
    assert res is not None and res.ok, res
    assert [c.channel for c in res.channels] == ["slack", "teams", "sns"]
    [slack] = webhook_server.bodies("/slack/T/B/x")
    text = json.dumps(slack)
    assert "Tests failed" in text and "tests.test_api::test_predict_shape" in text
    assert "tests.test_model::test_load" in text and "test_health" not in text
    [teams] = webhook_server.bodies("/teams/x")
    facts = {f["title"]: f["value"] for f in teams["attachments"][0]["content"]["body"][2]["facts"]}
    assert facts["Image"] == "model" and facts["Failing tests"].startswith("tests.test_api::test_predict_shape")
    body = json.loads(aws.client("sqs").receive_message(QueueUrl=q, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert body["event"] == "tests_failed" and body["stage"] == "staging"
    assert body["run_url"] == "https://github.com/o/r/actions/runs/7"
    assert body["details"]["Failing tests"] == "tests.test_api::test_predict_shape, tests.test_model::test_load"


def test_unreadable_junit_still_notifies_and_says_so(aws, cfg, webhook_server, monkeypatch, tmp_path):  # noqa: F811
    setup_channels(aws, webhook_server, monkeypatch)
    bad = tmp_path / "junit.xml"
    bad.write_text("not xml")
    warnings: list[str] = []
    res = testnotify.notify_failure(cfg, None, "model", 2, "tests did not run", str(bad), mode="always",
                                    factory=aws, env={}, now=0.0, warn=warnings.append)
    assert res is not None and [c.channel for c in res.channels] == ["slack", "teams"]  # SNS needs a stage
    assert any("pass --stage" in w for w in warnings)
    [slack] = webhook_server.bodies("/slack/T/B/x")
    assert "unknown: --junit" in json.dumps(slack)


def test_no_notification_when_passed_never_or_auto_outside_ci(aws, cfg, webhook_server, monkeypatch):  # noqa: F811
    setup_channels(aws, webhook_server, monkeypatch)
    for mode, code, env in (("always", 0, {}), ("never", 1, {"GITHUB_ACTIONS": "true"}), ("auto", 1, {})):
        assert testnotify.notify_failure(cfg, "staging", "model", code, "x", None, mode=mode, factory=aws,
                                         env=env, now=0.0) is None
    assert webhook_server.requests == []


def test_pt_test_command_notifies_on_failure(aws, webhook_server, monkeypatch, tmp_path, run_pt):  # noqa: F811
    from pipeline_tools.images import images

    setup_channels(aws, webhook_server, monkeypatch)
    cfg_file = tmp_path / "pipeline.yml"
    cfg_file.write_text(CONTRACT.read_text())
    junit = tmp_path / "junit.xml"

    def fake_run_tests(cfg, image, **kw):
        Path(kw["junit_path"]).write_text(JUNIT)
        return images.ImageTestReport(image=image, image_ref="x", exit_code=1, passed=2, failed=1, errors=1,
                                      skipped=0, junit=kw["junit_path"], seconds=0.1)

    monkeypatch.setattr(images, "run_tests", fake_run_tests)
    monkeypatch.setattr(images, "connect_docker", lambda: None)
    r = run_pt("test", "model", "--stage", "staging", "--config", str(cfg_file), "--junit", str(junit),
               "--notify", "always")
    assert r.exit_code == 1, r
    assert "tests_failed notified: slack, teams, sns" in r.stderr
    assert len(webhook_server.bodies("/slack/T/B/x")) == 1
    r = run_pt("test", "model", "--stage", "staging", "--config", str(cfg_file), "--junit", str(junit),
               "--notify", "never")
    assert r.exit_code == 1 and len(webhook_server.bodies("/slack/T/B/x")) == 1
