"""`pt change-record` against a moto-server ledger and CloudWatch, a real git repository and a
fixed clock: golden files for md and json (tests/data/golden/change_record/; regenerate with
PT_UPDATE_GOLDEN=1 and review the diff), fail-closed alarms, bad input, GitHub step summary."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from botocore.stub import Stubber

from pipeline_tools.core import config as config_mod
from pipeline_tools.ops import change_record as cr
from pipeline_tools.release import promote
from pipeline_tools.release.ledger import Ledger, ensure_table

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "change_record"
NOW = 1_795_000_000.0  # Wed 2026-11-18 11:06:40 UTC: outside prod's Monday window
CONFIG = """\
project: cr
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict: {image: model}
  batch-score: {image: model}
stages:
  staging:
    account: "111111111111"
    branch: integration
    gate: {alarms: ["cr-staging-*"]}
  prod:
    account: "111111111111"
    branch: master
    promote_from: staging
    deploy: {strategy: canary, percent: 10, interval: 5m, bake: 30m}
    gate: {alarms: ["cr-prod-*"]}
    approvals: {required: 2, two_person_rule: true}
    window: {days: [mon], hours: "02:00-04:00", timezone: UTC}
"""
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
JUNIT = """<?xml version="1.0"?>
<testsuites><testsuite name="pytest" tests="4" failures="0" errors="0" skipped="1" time="1.25">
<testcase classname="tests.test_model" name="test_predict" time="0.5"/>
<testcase classname="tests.test_model" name="test_batch" time="0.5"/>
<testcase classname="tests.test_model" name="test_shape" time="0.25"/>
<testcase classname="tests.test_model" name="test_gpu"><skipped message="no gpu"/></testcase>
</testsuite></testsuites>
"""


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Bob Builder", "GIT_AUTHOR_EMAIL": "bob@example.com",
           "GIT_COMMITTER_NAME": "Bob Builder", "GIT_COMMITTER_EMAIL": "bob@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repo(path: Path) -> list[str]:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _git(path, "remote", "add", "origin", "git@github.com:acme/cr-model.git")
    shas = []
    for i, msg in enumerate(["Model v1", "Tune threshold to 0.7", "Add batch scoring\n\nFor the nightly job."]):
        (path / "model.txt").write_text(f"v{i}\n")
        _git(path, "add", "model.txt")
        _git(path, "commit", "-q", "-m", msg, date=f"2026-11-1{i} 10:00:00 +0000")
        shas.append(_git(path, "rev-parse", "HEAD"))
    return shas


def actor(name: str, sha: str, author: str = "bob@example.com") -> dict:
    return {"name": name, "arn": f"arn:aws:iam::111111111111:user/{name}", "author": author, "authors": [author],
            "git_sha": sha, "ci": None, "run_url": None, "declared": "local"}


@pytest.fixture
def world(aws, tmp_path, monkeypatch):
    cfg_path = tmp_path / "pipeline.yml"
    cfg_path.write_text(CONFIG)
    cfg = config_mod.load(cfg_path)
    shas = make_repo(tmp_path / "repo")
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "cr-ledger", project="cr", stage="prod", local=True)
    t = {"now": NOW - 7200}
    led = Ledger(ddb, "cr-ledger", clock=lambda: t["now"])
    fns = {fn: {"name": f"cr-prod-{fn}", "version": "3"} for fn in ("batch-score", "predict")}
    led.put_record("deploy", "prod", {"operation": "deploy", "image": "model", "digest": D1,
                                      "image_uri": f"111111111111.dkr.ecr.us-east-1.amazonaws.com/cr-model@{D1}",
                                      "functions": fns}, actor=actor("alice", shas[0]), state="succeeded",
                   record_id="20261118T090640000Z-aaaaaa")
    t["now"] = NOW - 3600
    led.put_record("deploy", "staging", {"operation": "deploy", "image": "model", "digest": D2,
                                         "image_uri": f"111111111111.dkr.ecr.us-east-1.amazonaws.com/cr-model@{D2}"},
                   actor=actor("ci", shas[2]), state="succeeded", record_id="20261118T100640000Z-bbbbbb")
    t["now"] = NOW - 600
    led.put_record("gate", "staging", {"deploy_id": "20261118T100640000Z-bbbbbb", "status": "PASS",
                                       "explanation": "PASS: bake 30m elapsed; 2 alarm(s) OK"},
                   state="pass", record_id="20261118T105640000Z-cccccc")
    promote.decide(cfg, led, "prod", decision="approve", actor=actor("carol", shas[2]), clock=lambda: NOW - 300,
                   comment="looks good")
    cw = aws.client("cloudwatch")
    for fn in ("batch-score", "predict"):
        name = f"cr-prod-{fn}-errors"
        cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum", Period=60,
                            EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="seed")
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"title": "Batch scoring for the nightly job",
                                                  "body": "Adds batch scoring; threshold 0.7.",
                                                  "html_url": "https://github.com/acme/cr-model/pull/7"}}))
    t["now"] = NOW
    return {"cfg": cfg, "cfg_path": cfg_path, "led": led, "cw": cw, "shas": shas, "repo": tmp_path / "repo",
            "junit": junit, "event": event, "t": t, "tmp": tmp_path}


def _build(world, **kw):
    return cr.build(world["cfg"], "prod", ledger=world["led"], cloudwatch=world["cw"], clock=lambda: NOW,
                    git=cr.git_in(str(world["repo"])), **kw)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PT_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (PT_UPDATE_GOLDEN=1 to regenerate)"


def test_next_promotion_golden_md_and_json(world):
    doc = _build(world, junit=str(world["junit"]), env={"GITHUB_EVENT_PATH": str(world["event"])})
    check_golden("next.md", cr.render_md(doc))
    check_golden("next.json", json.dumps(doc, indent=2) + "\n")
    # the facts the golden files pin, spelled out
    assert [c["subject"] for c in doc["diff"]["commits"]] == ["Add batch scoring", "Tune threshold to 0.7"]
    assert doc["diff"]["commits"][0]["url"] == f"https://github.com/acme/cr-model/commit/{world['shas'][2]}"
    assert doc["approvals"]["satisfied"] is False and doc["approvals"]["approvers"] == ["carol"]
    assert doc["window"] == {"window": "Mon 02:00–04:00 UTC", "open_now": False, "next_open": "2026-11-23T02:00:00Z"}
    assert [a["rollback_when"] for a in doc["alarms"]["alarms"]] == [">= 1", ">= 1"]


def test_deploy_golden_md(world):
    t = world["t"]
    t["now"] = NOW - 60
    plan = {"strategy": "canary", "bake": 1800.0,
            "steps": [{"percent": 10, "wait": 300.0}, {"percent": 100, "wait": 0}],
            "functions": [{"function": fn, "name": f"cr-prod-{fn}", "previous_version": "3", "previous_digest": D1,
                           "changes": True} for fn in ("batch-score", "predict")]}
    world["led"].put_record("deploy", "prod", {"operation": "deploy", "image": "model", "digest": D2, "plan": plan},
                            actor=actor("alice", world["shas"][2]), state="succeeded",
                            record_id="20261118T110540000Z-dddddd")
    doc = _build(world, deploy_id="20261118T110540000Z-dddddd", purpose_text="Nightly batch scoring (CHG-42)")
    check_golden("deploy.md", cr.render_md(doc))
    assert doc["rollback"]["command"] == "pt rollback --stage prod --to 20261118T090640000Z-aaaaaa"
    assert doc["evidence"]["gate"]["deploy_id"] == "20261118T100640000Z-bbbbbb"  # the source stage's verdict


def test_rollback_line_is_a_valid_pt_rollback_command(world):
    from pipeline_tools.commands.deploy_cmd import rollback

    argv = shlex.split(_build(world)["rollback"]["command"])
    assert argv[:2] == ["pt", "rollback"]
    ctx = rollback.make_context("rollback", argv[2:])  # raises on an unknown option
    assert ctx.params["to"] == "20261118T090640000Z-aaaaaa"


def test_alarms_that_cannot_be_read_are_said_so(world):
    with Stubber(world["cw"]) as stub:
        stub.add_client_error("describe_alarms", service_error_code="AccessDenied",
                              service_message="not allowed", http_status_code=403)
        doc = _build(world)
    assert doc["alarms"]["read"] is False and doc["alarms"]["alarms"] == []
    assert doc["alarms"]["error"].startswith("could not read the alarms (AWS DescribeAlarms failed: AccessDenied")
    assert "**could not read the alarms" in cr.render_md(doc)


def test_missing_git_history_is_said_so(world, tmp_path):
    doc = cr.build(world["cfg"], "prod", ledger=world["led"], cloudwatch=world["cw"], clock=lambda: NOW,
                   git=cr.git_in(str(tmp_path)))  # not a checkout
    assert doc["diff"]["error"].startswith("could not read git history")
    assert doc["purpose"]["text"] is None and "--purpose" in doc["purpose"]["note"]


def test_cli_unknown_deploy_is_one_line_exit_2(world, run_pt):
    r = run_pt("change-record", "--stage", "prod", "--deploy", "20260101T000000000Z-nope",
               "--config", world["cfg_path"])
    assert r.exit_code == 2, r
    assert r.stderr.splitlines()[0] == "error: no deploy 20260101T000000000Z-nope in stage prod"
    assert "pt history --stage prod" in r.stderr and "Traceback" not in r.stderr


def test_cli_bad_junit_is_exit_2(world, run_pt, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<html>")
    r = run_pt("change-record", "--stage", "prod", "--junit", bad, "--repo", world["repo"],
               "--config", world["cfg_path"])
    assert r.exit_code == 2 and "cannot read a JUnit XML report" in r.stderr, r


def test_cli_writes_file_and_github_step_summary(world, run_pt, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(world["event"]))
    out = tmp_path / "cr.json"
    r = run_pt("change-record", "--stage", "prod", "--next", "--format", "json", "-o", out,
               "--repo", world["repo"], "--config", world["cfg_path"])
    assert r.exit_code == 0, r
    doc = json.loads(out.read_text())
    assert doc["purpose"]["source"] == "github-pull-request" and len(doc["diff"]["commits"]) == 2
    text = summary.read_text()
    assert text.startswith("# Change record: cr prod")
    assert "pt rollback --stage prod --to 20261118T090640000Z-aaaaaa" in text


def test_cli_next_on_a_stage_without_promote_from(world, run_pt):
    r = run_pt("change-record", "--stage", "staging", "--config", world["cfg_path"])
    assert r.exit_code == 2 and "has no promote_from" in r.stderr and "--deploy ID" in r.stderr, r
