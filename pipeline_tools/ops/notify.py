"""Notifications: Slack (blocks), Microsoft Teams (adaptive card) and the stage's SNS topic.

A notification never fails the work it reports on: every channel error becomes a warning and a
`ChannelResult(ok=False, error=…)` that the caller records (e.g. in the ledger record). Webhook
URLs are secrets: they are resolved at run time from `ssm:NAME` / `env:NAME` references,
registered with `output.register_secret` and redacted from every error text kept here.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.output import redact, register_secret

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

# Events a notification is sent for (the ledger/deploy/promote code passes one of these).
EVENTS = {
    "deploy_started": ("Deploy started", "🚀", "accent"),
    "deploy_succeeded": ("Deploy succeeded", "✅", "good"),
    "deploy_rolled_back": ("Deploy rolled back", "↩️", "warning"),
    "deploy_failed": ("Deploy failed", "❌", "attention"),
    "gate_failed": ("Gate FAIL", "🛑", "attention"),
    "approval_needed": ("Approval needed", "✋", "accent"),
    "promoted": ("Promoted", "📦", "good"),
    "break_glass": ("Break-glass deploy", "🚨", "attention"),
    "tests_failed": ("Tests failed", "🧪", "attention"),
}

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Event:
    kind: str
    project: str
    stage: str
    summary: str
    digest: str | None = None
    actor: str | None = None
    deploy_id: str | None = None
    run_url: str | None = None
    at: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENTS:
            raise ValueError(f"unknown notification event {self.kind!r} (known: {', '.join(EVENTS)})")

    @property
    def title(self) -> str:
        return f"{EVENTS[self.kind][1]} {self.project}/{self.stage}: {EVENTS[self.kind][0]}"

    def facts(self) -> list[tuple[str, str]]:
        rows = [("Stage", self.stage)]
        if self.digest:
            rows.append(("Digest", _short_digest(self.digest)))
        if self.deploy_id:
            rows.append(("Deploy", self.deploy_id))
        if self.actor:
            rows.append(("By", self.actor))
        if self.at is not None:
            rows.append(("At", datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")))
        rows += [(str(k), str(v)) for k, v in self.details.items() if v is not None]
        return rows


@dataclass(frozen=True)
class ChannelResult:
    channel: str  # slack | teams | sns
    ok: bool
    detail: str | None = None  # HTTP status / SNS message id / error text (redacted)


@dataclass(frozen=True)
class NotifyResult:
    event: str
    channels: tuple[ChannelResult, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.channels)

    @property
    def failures(self) -> list[ChannelResult]:
        return [c for c in self.channels if not c.ok]

    def to_dict(self) -> dict:
        return {"event": self.event, "ok": self.ok, "channels": [asdict(c) for c in self.channels]}


class SecretRefError(Exception):
    """A webhook reference could not be resolved (kept internal: it becomes a warning)."""


def _short_digest(digest: str) -> str:
    return digest if len(digest) <= 19 else digest[:19] + "…"


# --- payloads (pure) ------------------------------------------------------------------------


def slack_payload(event: Event) -> dict:
    """A Slack incoming-webhook message with Block Kit blocks (and a text fallback)."""
    facts = event.facts()
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in facts[:10]]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": event.title[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(event.summary)[:3000]}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if event.run_url:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": f"<{event.run_url}|pipeline run>"}]})
    return {"text": f"{event.title}: {event.summary}", "blocks": blocks}


def teams_payload(event: Event) -> dict:
    """A Teams incoming-webhook / workflow message carrying one Adaptive Card (schema 1.4)."""
    color = EVENTS[event.kind][2]
    card: dict = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": event.title, "weight": "Bolder", "size": "Medium",
             "color": color, "wrap": True},
            {"type": "TextBlock", "text": event.summary, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in event.facts()]},
        ],
    }
    if event.run_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open pipeline run", "url": event.run_url}]
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                             "contentUrl": None, "content": card}]}


def sns_message(event: Event) -> tuple[str, str, dict]:
    """(subject ≤ 100 chars, JSON body, message attributes) for an SNS publish."""
    body = {"event": event.kind, "project": event.project, "stage": event.stage, "summary": event.summary,
            "digest": event.digest, "deploy_id": event.deploy_id, "actor": event.actor,
            "run_url": event.run_url, "at": event.at, "details": dict(event.details)}
    subject = f"{event.project}/{event.stage}: {EVENTS[event.kind][0]}"
    attrs = {"event": {"DataType": "String", "StringValue": event.kind},
             "stage": {"DataType": "String", "StringValue": event.stage}}
    return subject[:100], json.dumps(body, default=str), attrs


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- secret references --------------------------------------------------------------------


def resolve_ref(ref: str, *, ssm=None, env: Mapping[str, str] | None = None) -> str:
    """`ssm:/name` (SecureString decrypted) or `env:NAME` → the value, registered as a secret."""
    env = os.environ if env is None else env
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = env.get(name)
        if not value:
            raise SecretRefError(f"environment variable {name} is not set")
    elif kind == "ssm":
        if ssm is None:
            raise SecretRefError(f"no SSM client to read {name}")
        try:
            value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except Exception as e:  # ParameterNotFound, access denied, network: all become warnings
            code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
            raise SecretRefError(f"SSM parameter {name}: {code or type(e).__name__}") from None
    else:
        raise SecretRefError(f"unsupported reference {ref!r} (use ssm:NAME or env:NAME)")
    register_secret(value)
    return value


# --- transport ---------------------------------------------------------------------------------


def post_json(url: str, payload: dict, timeout: float = DEFAULT_TIMEOUT) -> int:
    """POST JSON; returns the HTTP status. Raises on network errors and non-2xx answers."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "User-Agent": "pipeline-tools-notify"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status


def _error_text(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return f"unreachable: {e.reason}"
    code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
    return code or f"{type(e).__name__}: {e}"


def find_topic_arn(sns, name: str) -> str | None:
    """The ARN of the SNS topic called `name` (the StageStack creates it), or None."""
    for page in sns.get_paginator("list_topics").paginate():
        for t in page.get("Topics", []):
            if t["TopicArn"].rsplit(":", 1)[-1] == name:
                return t["TopicArn"]
    return None


# --- sending ---------------------------------------------------------------------------------


def notify(cfg: Config, event: Event, *, ssm=None, sns=None, env: Mapping[str, str] | None = None,
           post: Callable[[str, dict], int] = post_json,
           warn: Callable[[str], None] | None = None) -> NotifyResult:
    """Send `event` to every configured channel. Never raises for a channel failure.

    `ssm`/`sns` are boto3 clients (None: channels needing them are reported as failed when
    configured). `warn` receives one line per failed channel (e.g. `app.out.warn`).
    """
    n = cfg.notifications
    results: list[ChannelResult] = []

    def fail(channel: str, text: str) -> None:
        text = redact(text)
        results.append(ChannelResult(channel, False, text))
        if warn:
            warn(f"notification to {channel} failed ({event.kind}): {text}; the {event.stage} "
                 f"operation itself is not affected")

    for channel, ref, build in (("slack", n.slack_webhook, slack_payload), ("teams", n.teams_webhook, teams_payload)):
        if not ref:
            continue
        try:
            url = resolve_ref(ref, ssm=ssm, env=env)
        except SecretRefError as e:
            fail(channel, f"cannot resolve {ref}: {e}")
            continue
        try:
            status = post(url, build(event))
            results.append(ChannelResult(channel, True, f"HTTP {status}"))
        except Exception as e:
            fail(channel, _error_text(e))
    if n.sns:
        topic = cfg.sns_topic(event.stage)
        if sns is None:
            fail("sns", f"no SNS client to publish to {topic}")
        else:
            try:
                arn = find_topic_arn(sns, topic)
                if arn is None:
                    fail("sns", f"topic {topic} not found (the {event.stage} StageStack creates it)")
                else:
                    subject, body, attrs = sns_message(event)
                    resp = sns.publish(TopicArn=arn, Subject=subject, Message=body, MessageAttributes=attrs)
                    results.append(ChannelResult("sns", True, resp.get("MessageId")))
            except Exception as e:
                fail("sns", _error_text(e))
    return NotifyResult(event.kind, tuple(results))


def notify_from_factory(cfg: Config, event: Event, factory, *, warn=None,
                        post: Callable[[str, dict], int] = post_json) -> NotifyResult:
    """`notify` with clients from an `AwsFactory`, created only for the channels configured."""
    n = cfg.notifications
    needs_ssm = any(ref and ref.startswith("ssm:") for ref in (n.slack_webhook, n.teams_webhook))
    try:
        ssm = factory.client("ssm") if needs_ssm else None
        sns = factory.client("sns") if n.sns else None
    except Exception as e:  # no region etc.: still never fail the caller
        return NotifyResult(event.kind, (ChannelResult("aws", False, redact(_error_text(e))),))
    return notify(cfg, event, ssm=ssm, sns=sns, post=post, warn=warn)
