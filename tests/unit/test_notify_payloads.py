"""Notification payloads (Slack blocks, Teams adaptive card, SNS) and secret references."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.core.output import redact
from pipeline_tools.ops import notify as n

D = "sha256:" + "ab" * 32


def ev(kind="deploy_succeeded", **kw):
    return n.Event(kind=kind, project="iris", stage="prod", summary="prod now runs <model> & friends",
                   digest=D, actor="bob", deploy_id="d-1", at=1_790_000_000.0,
                   run_url="https://github.com/o/r/actions/runs/1", details={"strategy": "linear"}, **kw)


def test_slack_blocks_shape():
    p = n.slack_payload(ev())
    assert p["text"].startswith("✅ iris/prod: Deploy succeeded")
    types = [b["type"] for b in p["blocks"]]
    assert types == ["header", "section", "section", "context"]
    assert p["blocks"][0]["text"]["type"] == "plain_text"
    assert "&lt;model&gt; &amp; friends" in p["blocks"][1]["text"]["text"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in p["blocks"][2]["fields"]}
    assert fields["*Digest*"] == D[:19] + "…" and fields["*By*"] == "bob" and fields["*strategy*"] == "linear"
    assert "<https://github.com/o/r/actions/runs/1|pipeline run>" in json.dumps(p)


def test_teams_adaptive_card_shape():
    p = n.teams_payload(ev("deploy_failed"))
    assert p["type"] == "message"
    att = p["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["color"] == "attention"
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Stage"] == "prod" and facts["At"].endswith("UTC")
    assert card["actions"][0]["type"] == "Action.OpenUrl"


def test_sns_message():
    subject, body, attrs = n.sns_message(ev("gate_failed"))
    assert subject == "iris/prod: Gate FAIL" and len(subject) <= 100
    assert json.loads(body)["digest"] == D
    assert attrs["event"]["StringValue"] == "gate_failed"


def test_unknown_event_kind():
    with pytest.raises(ValueError, match="unknown notification event"):
        n.Event(kind="exploded", project="p", stage="s", summary="x")


def test_env_reference_is_registered_as_secret():
    url = "http://127.0.0.1:9/secret-path-xyz-123"
    assert n.resolve_ref("env:HOOK", env={"HOOK": url}) == url
    assert "secret-path-xyz-123" not in redact(f"posting to {url}")


@pytest.mark.parametrize("ref,msg", [("env:MISSING", "not set"), ("vault:x", "unsupported"),
                                     ("ssm:/x", "no SSM client")])
def test_bad_references(ref, msg):
    with pytest.raises(n.SecretRefError, match=msg):
        n.resolve_ref(ref, env={})
