"""`pt release` and `pt local` command surface: usage errors before anything runs, dry runs,
and the step plan derived from pipeline.yml (no services needed)."""

from __future__ import annotations

from pathlib import Path

from pipeline_tools.core import config
from pipeline_tools.local import release

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris" / "pipeline.yml"

THREE_STAGES = """\
project: svc
region: eu-west-1
images:
  api: {context: ., dockerfile: Dockerfile}
functions:
  handle: {image: api, handler: app.handler}
stages:
  dev: {account: "111111111111", branch: dev, deploy: {strategy: all-at-once}, gate: {alarms: ["svc-dev-*"]}}
  qa: {account: "111111111111", branch: qa, promote_from: dev, deploy: {strategy: linear, percent: 50},
       gate: {alarms: ["svc-qa-*"]}}
  prod:
    account: "222222222222"
    branch: main
    gate: {alarms: ["svc-prod-*"]}
    promote_from: qa
    approvals: {required: 3, two_person_rule: true}
"""


def test_release_without_local_is_a_usage_error(run_pt):
    r = run_pt("release", "-c", EXAMPLE)
    assert r.exit_code == 2
    assert "without --local is what your CI pipeline runs" in r.stderr


def test_missing_approvers_fail_before_anything_starts(run_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_LOCAL_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PT_APPROVERS", raising=False)
    r = run_pt("release", "--local", "-c", EXAMPLE, "--approver", "alice@example.com")
    assert r.exit_code == 2
    assert "needs 2 distinct approvers for the promotion, got 1" in r.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_dry_run_prints_the_plan_from_the_config(run_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_LOCAL_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PT_APPROVERS", "alice@example.com,bob@example.com")
    r = run_pt("release", "--local", "--dry-run", "--inject-failure", "-c", EXAMPLE, "--output", "json")
    assert r.exit_code == 0, r
    steps = [s["step"] for s in r.json()["steps"]]
    assert steps == ["local", "build", "test", "deploy:staging", "gate:staging", "approvals:prod", "promote:prod",
                     "status"]
    assert "alarm injected during the canary" in r.json()["steps"][3]["title"]
    assert not (tmp_path / "state").exists()

    r = run_pt("local", "up", "--dry-run", "-c", EXAMPLE, "--port", "4999")
    assert r.exit_code == 0 and "127.0.0.1:4999" in r.stdout and "staging, prod" in r.stdout
    assert not (tmp_path / "state").exists()
    r = run_pt("local", "down", "--dry-run")
    assert r.exit_code == 0 and "would stop: nothing" in r.stdout


def test_plan_follows_the_promotion_chain(tmp_path):
    cfg = config.parse(THREE_STAGES, "pipeline.yml")
    assert release.chain(cfg) == ["dev", "qa", "prod"]
    steps = [(s.key, s.title) for s in release.plan(cfg)]
    assert steps == [
        ("local", "local stack: moto server, registry, docker; provision stages"),
        ("build", "build-push api"),
        ("test", "test in image"),
        ("deploy:dev", "deploy dev (all-at-once)"),
        ("gate:dev", "gate dev"),
        ("promote:qa", "promote dev → qa (linear)"),
        ("gate:qa", "gate qa"),
        ("approvals:prod", "approvals for prod (3 required)"),
        ("promote:prod", "promote qa → prod (all-at-once)"),
        ("status", "status"),
    ]
    import pytest

    from pipeline_tools.core.errors import UsageError

    with pytest.raises(UsageError, match="needs 3 distinct approvers"):
        release.check_approvers(cfg, ["a", "b", "a"])
    release.check_approvers(cfg, ["a", "b", "c"])
