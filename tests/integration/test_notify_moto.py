"""Notifications end to end: webhooks from SSM (moto server) and env to a local HTTP server,
SNS publish to the stage topic (delivered to an SQS queue), failures become warnings."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.output import redact
from pipeline_tools.ops import notify as n

from .conftest_promote import webhook_server  # noqa: F401

CONTRACT = Path(__file__).resolve().parents[1] / "data" / "pipeline.example.yml"


@pytest.fixture
def cfg():
    return config_mod.load(CONTRACT)


def event():
    return n.Event(kind="promoted", project="iris", stage="prod", summary="prod runs the staging digest",
                   digest="sha256:" + "c" * 64, actor="bob")


def setup_aws(aws, slack_url: str, with_topic: bool = True):
    aws.client("ssm").put_parameter(Name="/iris/slack-webhook", Value=slack_url, Type="SecureString")
    if not with_topic:
        return None
    sns, sqs = aws.client("sns"), aws.client("sqs")
    arn = sns.create_topic(Name="iris-prod-events")["TopicArn"]
    q = sqs.create_queue(QueueName="events")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    return q


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/T000/B000/secretpart"


def test_all_channels_delivered(aws, cfg, webhook_server, monkeypatch):  # noqa: F811
    q = setup_aws(aws, webhook_server.url + "/slack/T1/B1/tok")
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", webhook_server.url + "/teams/abc")
    warnings: list[str] = []
    res = n.notify_from_factory(cfg, event(), aws, warn=warnings.append)
    assert res.ok, res.to_dict()
    assert [c.channel for c in res.channels] == ["slack", "teams", "sns"]
    [slack] = webhook_server.bodies("/slack/T1/B1/tok")
    assert slack["blocks"][0]["type"] == "header"
    [teams] = webhook_server.bodies("/teams/abc")
    assert teams["attachments"][0]["content"]["type"] == "AdaptiveCard"
    msgs = aws.client("sqs").receive_message(QueueUrl=q, WaitTimeSeconds=1)["Messages"]
    assert json.loads(msgs[0]["Body"])["event"] == "promoted"
    assert not warnings
    # the resolved webhook is a registered secret now: never printed
    assert "/slack/T1/B1/tok" not in redact(f"url {webhook_server.url}/slack/T1/B1/tok")


def test_unreachable_webhook_warns_and_does_not_raise(aws, cfg, monkeypatch):
    url = closed_port_url()
    setup_aws(aws, url)
    monkeypatch.delenv("TEAMS_WEBHOOK_URL", raising=False)
    warnings: list[str] = []
    res = n.notify_from_factory(cfg, event(), aws, warn=warnings.append)
    by = {c.channel: c for c in res.channels}
    assert not res.ok and by["sns"].ok
    assert not by["slack"].ok and "unreachable" in by["slack"].detail
    assert "not set" in by["teams"].detail
    assert len(warnings) == 2 and all("not affected" in w for w in warnings)
    assert all("secretpart" not in w for w in warnings)
    assert "secretpart" not in json.dumps(res.to_dict())


def test_http_error_and_missing_parameter_and_missing_topic(aws, cfg, webhook_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", webhook_server.url + "/teams/x")
    webhook_server.status = 500
    res = n.notify_from_factory(cfg, event(), aws)  # no SSM parameter, no topic
    by = {c.channel: c for c in res.channels}
    assert "ParameterNotFound" in by["slack"].detail
    assert by["teams"].detail == "HTTP 500"
    assert "iris-prod-events not found" in by["sns"].detail
    assert len(webhook_server.requests) == 1
