"""`pt gate / approve / reject / approvals / promote` through the real CLI entry point, against
moto server: exit codes (0/1/2/3/4), JSON output, GitHub step summary, notifications with the
webhook redacted, and the bad-input list of issue 6."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.actor import identify
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_deploy import REPO, digest, make_stage
from .conftest_promote import webhook_server  # noqa: F401

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def config_text(window_days: list[str]) -> str:
    return f"""\
project: rel
region: us-east-1
images:
  model: {{context: ., dockerfile: Dockerfile}}
functions:
  predict: {{image: model}}
  batch-score: {{image: model}}
stages:
  staging:
    account: "111111111111"
    branch: integration
    deploy: {{strategy: all-at-once, bake: 0s}}
    gate: {{alarms: ["rel-staging-*"], insufficient_data: fail, poll: 0.1s}}
  prod:
    account: "111111111111"
    branch: master
    promote_from: staging
    deploy: {{strategy: canary, percent: 50, interval: 0.1s, bake: 0.1s}}
    gate: {{alarms: ["rel-prod-*"], poll: 0.1s}}
    approvals: {{required: 2, two_person_rule: true}}
    window: {{days: [{", ".join(window_days)}], hours: "00:00-24:00", timezone: UTC}}
notifications:
  slack_webhook: env:PT_TEST_SLACK
"""


@pytest.fixture
def world(aws, tmp_path, monkeypatch, webhook_server):  # noqa: F811
    st = make_stage(aws, tmp_path, stages=("staging", "prod"))
    today = DAYS[datetime.now(UTC).weekday()]
    closed = tmp_path / "closed.yml"  # every day but today: the window is closed now
    closed.write_text(config_text([d for d in DAYS if d != today]))
    open_ = tmp_path / "open.yml"
    open_.write_text(config_text(list(DAYS)))
    monkeypatch.setenv("PT_TEST_SLACK", webhook_server.url + "/services/T0/B0/s3cr3tp4th")
    monkeypatch.setenv("PT_COMMIT_AUTHOR", "alice@example.com")
    monkeypatch.setenv("PT_ACTOR", "ci-bot")
    return st, closed, open_


def deploy_staging(st, cfg_path, n):
    cfg = config_mod.load(cfg_path)
    ensure_table(st.ddb, cfg.ledger_table(), project="rel", stage="staging", local=True)
    ledger = Ledger(st.ddb, cfg.ledger_table())
    actor = identify("arn:aws:sts::123456789012:assumed-role/Deployer/ci",
                     env={"PT_ACTOR": "ci-bot", "PT_COMMIT_AUTHOR": "alice@example.com"})
    plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(f"{REPO}@{digest(n)}"), st.lam)
    return dp.deploy(cfg, plan, dp.Deps(lambda_client=st.lam, cloudwatch=st.cw, ledger=ledger, actor=actor,
                                        sleep=lambda s: time.sleep(min(s, 0.05))))


def test_gate_exit_codes_json_summary_and_notification(world, run_pt, tmp_path, monkeypatch, webhook_server):  # noqa: F811
    st, closed, _ = world
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--output", "json")
    assert r.exit_code == 1 and r.json()["status"] == "FAIL"  # nothing deployed: fails closed
    assert "nothing has been deployed" in r.json()["explanation"]
    deploy_staging(st, closed, 2)
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--bake", "1h")
    assert r.exit_code == 3 and "WAIT" in r.stdout and "decides at" in r.stdout
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--bake", "1h", "--wait", "--timeout", "0.6s")
    assert r.exit_code == 3 and "deadline" in r.stdout and "gate staging: baking" in r.stderr
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out.txt"))
    r = run_pt("gate", "--config", closed, "--stage", "staging")
    assert r.exit_code == 0, r
    assert "rel-staging-predict-errors" in r.stdout and "threshold" in r.stdout
    assert "### Gate staging: PASS" in summary.read_text() and "| alarm |" in summary.read_text()
    assert "gate=PASS" in (tmp_path / "out.txt").read_text()
    st.set_alarm("ALARM", "predict")
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--output", "json")
    assert r.exit_code == 1
    data = r.json()
    assert data["status"] == "FAIL"
    bad = [a for a in data["alarms"] if a["status"] == "FAIL"]
    assert bad[0]["name"] == "rel-staging-predict-errors" and bad[0]["state"] == "ALARM"
    assert bad[0]["threshold"] == 1.0 and bad[0]["since"]
    posts = webhook_server.bodies("/services/T0/B0/s3cr3tp4th")
    # nothing deployed (FAIL); first PASS → prod needs approvals; the alarm (FAIL)
    assert [p["text"].split(":")[1].strip() for p in posts] == ["Gate FAIL", "Approval needed", "Gate FAIL"]
    assert "pt approve --stage prod" in posts[1]["text"]
    assert "rel-staging-predict-errors" in posts[-1]["text"]
    assert "s3cr3tp4th" not in r.stdout + r.stderr


def test_unreachable_webhook_never_fails_the_gate(world, run_pt, monkeypatch):
    st, closed, _ = world
    monkeypatch.setenv("PT_TEST_SLACK", "http://127.0.0.1:9/services/T0/B0/unreachablesecret")
    deploy_staging(st, closed, 2)
    st.set_alarm("ALARM", "predict")
    r = run_pt("gate", "--config", closed, "--stage", "staging")
    assert r.exit_code == 1  # FAIL because of the alarm, not because of the webhook
    assert "notification to slack failed" in r.stderr and "unreachablesecret" not in r.stderr + r.stdout


def test_approvals_and_promotion_via_cli(world, run_pt, monkeypatch, webhook_server):  # noqa: F811
    st, closed, open_ = world
    c = ["--config", closed]
    r = run_pt("promote", "--to", "prod", *c)
    assert r.exit_code == 1 and "nothing has been deployed to staging" in r.stderr
    r = run_pt("approve", "--stage", "prod", *c)
    assert r.exit_code == 1 and "nothing has been deployed to staging" in r.stderr
    deploy_staging(st, closed, 2)

    monkeypatch.setenv("PT_ACTOR", "alice")
    r = run_pt("approve", "--stage", "prod", *c)
    assert r.exit_code == 1 and "commit author" in r.stderr and "two_person_rule" in r.stderr
    monkeypatch.setenv("PT_ACTOR", "bob")
    assert run_pt("approve", "--stage", "prod", *c, "-m", "ok").exit_code == 0
    r = run_pt("approve", "--stage", "prod", *c, "--output", "json")
    assert r.exit_code == 0 and "counts once" in r.json()["note"] and r.json()["recorded"] is None
    r = run_pt("approvals", "--stage", "prod", *c, "--output", "json")
    assert r.exit_code == 0
    assert r.json()["missing"] == 1 and r.json()["satisfied"] is False and r.json()["digest"] == digest(2)
    r = run_pt("promote", "--to", "prod", *c)
    assert r.exit_code == 1 and "1 of 2 approval(s); 1 more needed" in r.stderr and "pt approve" in r.stderr
    monkeypatch.setenv("PT_ACTOR", "carol")
    assert run_pt("approve", "--stage", "prod", *c).exit_code == 0
    r = run_pt("approvals", "list", "--stage", "prod", *c)
    assert r.exit_code == 0 and "satisfied: 2 of 2 approval(s) (bob, carol)" in r.stdout, r

    # window closed → refused; override needs a reason; dry run deploys nothing
    r = run_pt("promote", "--to", "prod", *c, "--output", "json")
    assert r.exit_code == 1 and "outside deploy window" in r.json()["message"]
    assert r.json()["condition"] == "window"
    r = run_pt("promote", "--to", "prod", *c, "--override-window")
    assert r.exit_code == 2 and "needs --reason" in r.stderr
    r = run_pt("promote", "--to", "prod", *c, "--from", "prod")
    assert r.exit_code == 2 and "promotes from staging" in r.stderr
    r = run_pt("promote", "--to", "prod", *c, "--override-window", "--reason", "incident 7", "--dry-run",
               "--output", "json")
    assert r.exit_code == 0 and r.json()["ok"] and r.json()["dry_run"]
    assert st.live_digests("prod") == {digest(1)}

    # lock held → exit 4
    cfg = config_mod.load(open_)
    ledger = Ledger(st.ddb, cfg.ledger_table())
    lock = ledger.acquire("prod", "d-other", {"name": "zoe"}, lease=60)
    r = run_pt("promote", "--to", "prod", "--config", open_)
    assert r.exit_code == 4 and "locked by zoe" in r.stderr
    ledger.release(lock)

    # window open: promoted by the deploy engine with prod's strategy
    monkeypatch.setenv("PT_ACTOR", "release-mgr")
    r = run_pt("promote", "--to", "prod", "--config", open_, "--output", "json")
    assert r.exit_code == 0, r
    data = r.json()
    assert data["deploy"]["state"] == "succeeded" and data["deploy"]["strategy"] == "canary"
    assert st.live_digests("prod") == {digest(2)}
    assert any("Promoted" in b["text"] for b in webhook_server.bodies())
    promos = [json.dumps(x) for x in run_pt("approvals", "--stage", "prod", "--config", open_, "--output",
                                            "json").json()["approvals"]]
    assert len(promos) == 2

    # a rejection blocks the next promotion of the same digest (reject needs a comment)
    assert run_pt("reject", "--stage", "prod", "--config", open_).exit_code == 2
    monkeypatch.setenv("PT_ACTOR", "bob")
    assert run_pt("reject", "--stage", "prod", "--config", open_, "-m", "p99 latency doubled").exit_code == 0
    r = run_pt("promote", "--to", "prod", "--config", open_, "--dry-run")
    assert r.exit_code == 1 and "rejected by bob: p99 latency doubled" in r.stderr


def test_pt_deploy_notifies_start_and_success_and_records_delivery(world, run_pt, webhook_server):  # noqa: F811
    st, _, open_ = world
    r = run_pt("deploy", "--config", open_, "--stage", "staging", "--image-uri", f"{REPO}@{digest(3)}",
               "--output", "json")
    assert r.exit_code == 0, r
    texts = [json.dumps(b) for b in webhook_server.bodies("/services/T0/B0/s3cr3tp4th")]
    assert len(texts) == 2
    assert "deploying" in texts[0] and "staging" in texts[0]
    assert "gate PASS after bake" in texts[1]
    assert "s3cr3tp4th" not in r.stdout + r.stderr
    cfg = config_mod.load(open_)
    rec = Ledger(st.ddb, cfg.ledger_table()).get("staging", r.json()["deploy_id"])
    assert rec.state == "succeeded"
    assert [t["event"] for t in rec.transitions if t.get("event")] == ["notification"]
    assert rec.data["notification"]["ok"] is True


def test_gate_target_judges_the_newest_deploy_of_those_targets(world, run_pt):
    st, closed, _ = world
    deploy_staging(st, closed, 2)    # changes lambda:predict (and every function of the image)
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--target", "lambda:predict", "--output", "json")
    assert r.exit_code == 0 and r.json()["status"] == "PASS", r
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--target", "lambda", "--output", "json")
    assert r.exit_code == 0 and r.json()["status"] == "PASS", r
    bad = run_pt("gate", "--config", closed, "--stage", "staging", "--target", "lambda:nope")
    assert bad.exit_code == 2 and "lambda:nope" in bad.stderr and "Traceback" not in bad.stderr
    r = run_pt("gate", "--config", closed, "--stage", "staging", "--target", "batch")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
