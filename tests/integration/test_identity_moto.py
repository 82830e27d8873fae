"""Issue 14 items 3+4 through the real `pt` entry point against moto server: prod only through
promotion, the break-glass path, one identity model for counting and the author check, and
unknown commit authors. Each of these passed on the code before (the bypasses of the issue)."""

from __future__ import annotations

import json
import time

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.actor import identify
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_deploy import REPO, digest, make_stage
from .conftest_promote import webhook_server  # noqa: F401

CONFIG = """\
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
    deploy: {{strategy: canary, percent: 50, interval: 0.1s, bake: 0s}}
    gate: {{alarms: ["rel-staging-*"], insufficient_data: fail, poll: 0.1s}}
  prod:
    account: "111111111111"
    branch: master
    promote_from: staging
    deploy: {{strategy: all-at-once, bake: 0s}}
    gate: {{alarms: ["rel-prod-*"], poll: 0.1s}}
    approvals: {{required: 2, two_person_rule: true{extra}}}
notifications:
  slack_webhook: env:PT_TEST_SLACK
"""


@pytest.fixture
def world(aws, tmp_path, monkeypatch, webhook_server):  # noqa: F811
    st = make_stage(aws, tmp_path, stages=("staging", "prod"))
    monkeypatch.setenv("PT_TEST_SLACK", webhook_server.url + "/services/T0/B0/s3cr3tp4th")
    monkeypatch.setenv("PT_COMMIT_AUTHOR", "alice@example.com")
    monkeypatch.setenv("PT_ACTOR", "ci-bot")

    def write(extra: str = "") -> str:
        path = tmp_path / "pipeline.yml"
        path.write_text(CONFIG.format(extra=extra))
        return str(path)

    return st, write


def ledger_of(st, path) -> Ledger:
    cfg = config_mod.load(path)
    ensure_table(st.ddb, cfg.ledger_table(), project="rel", stage="staging", local=True)
    return Ledger(st.ddb, cfg.ledger_table())


def deploy_staging(st, path, n, *, author: str | None = "alice@example.com", sleep=None):
    """A staging deploy by the library with a chosen commit author (None: unknown, as from a
    CodePipeline source zip without .git)."""
    cfg = config_mod.load(path)
    env = {"PT_ACTOR": "ci-bot", **({"PT_COMMIT_AUTHOR": author} if author else {})}
    who = identify("arn:aws:sts::123456789012:assumed-role/Deployer/ci", env=env, git=lambda *a: None)
    plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(f"{REPO}@{digest(n)}"), st.lam)
    return dp.deploy(cfg, plan, dp.Deps(lambda_client=st.lam, cloudwatch=st.cw, ledger=ledger_of(st, path),
                                        actor=who, sleep=sleep or (lambda s: time.sleep(min(s, 0.05)))))


def approve(run_pt, monkeypatch, path, *who: str, extra=()):
    for name in who:
        monkeypatch.setenv("PT_ACTOR", name)
        r = run_pt("approve", "--stage", "prod", "--config", path, *extra)
        assert r.exit_code == 0, r


def test_rolled_back_digest_refused_in_prod_by_pt_deploy(world, run_pt):
    st, write = world
    path = write()

    def alarm_during_canary(s):  # the staging canary sees an alarm and rolls back
        st.set_alarm("ALARM", "predict")
        time.sleep(min(s, 0.05))

    with pytest.raises(DeployFailed, match="rolled back"):
        deploy_staging(st, path, 2, sleep=alarm_during_canary)
    r = run_pt("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{digest(2)}")
    assert r.exit_code == 1, r
    assert "prod only runs digests promoted from staging" in r.stderr and "rolled back" in r.stderr
    assert "`pt promote --to prod`" in r.stderr and "--break-glass" in r.stderr
    assert "Traceback" not in r.stderr
    assert st.live_digests("prod") == {digest(1)}
    [refused] = ledger_of(st, path).query("prod", "promotion")
    assert refused.state == "refused" and refused.data["via"] == "pt deploy" and refused.data["digest"] == digest(2)
    # a dry run says the same and records nothing more
    r = run_pt("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{digest(2)}", "--dry-run")
    assert r.exit_code == 1 and "rolled back" in r.stderr
    assert len(ledger_of(st, path).query("prod", "promotion")) == 1


def test_pt_deploy_to_prod_needs_the_promotion_checks(world, run_pt, monkeypatch):
    st, write = world
    path = write()
    deploy_staging(st, path, 2)
    args = ("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{digest(2)}", "--output", "json")
    r = run_pt(*args)
    assert r.exit_code == 1, r
    assert r.json()["condition"] == "approvals" and "0 of 2 approval(s)" in r.json()["message"]
    assert "pt promote --to prod" in r.json()["hint"]
    assert st.live_digests("prod") == {digest(1)}
    approve(run_pt, monkeypatch, path, "bob", "carol")
    # another digest than the one staging runs (and passed its gate with) is still refused
    r = run_pt("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{digest(3)}")
    assert r.exit_code == 1 and f"{digest(3)[:19]}… is not what staging runs" in r.stderr, r
    # the promoted digest goes through: same checks as `pt promote`
    monkeypatch.setenv("PT_ACTOR", "release-mgr")
    r = run_pt(*args)
    assert r.exit_code == 0, r
    assert st.live_digests("prod") == {digest(2)}


def test_break_glass_needs_a_second_person(world, run_pt, monkeypatch, webhook_server):  # noqa: F811
    st, write = world
    path = write()
    d3 = digest(3)
    args = ("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{d3}", "--break-glass")
    monkeypatch.setenv("PT_ACTOR", "alice")
    r = run_pt(*args)
    assert r.exit_code == 2 and "--break-glass needs --reason" in r.stderr, r
    r = run_pt(*args, "--reason", "INC-9: prod down")
    assert r.exit_code == 1, r
    assert "needs one approval of that digest by someone other than alice" in r.stderr
    assert f"`pt approve --stage prod --digest {d3} -m \"why\"`" in r.stderr
    # the actor's own approval (under another spelling too) does not count
    for me in ("alice", "alice@example.com"):
        monkeypatch.setenv("PT_ACTOR", me)
        assert run_pt("approve", "--stage", "prod", "--config", path, "--digest", d3).exit_code == 0
    monkeypatch.setenv("PT_ACTOR", "alice")
    r = run_pt(*args, "--reason", "INC-9: prod down")
    assert r.exit_code == 1 and "your own approval does not count" in r.stderr, r
    assert st.live_digests("prod") == {digest(1)}
    assert not any("Break-glass" in json.dumps(b) for b in webhook_server.bodies())

    # a second person approves that digest → the deploy runs, is recorded and notified
    monkeypatch.setenv("PT_ACTOR", "bob")
    r = run_pt("approve", "--stage", "prod", "--config", path, "--digest", d3, "-m", "seen the incident")
    assert r.exit_code == 0, r
    monkeypatch.setenv("PT_ACTOR", "alice")
    r = run_pt(*args, "--reason", "INC-9: prod down", "--dry-run", "--output", "json")
    assert r.exit_code == 0 and r.json()["guard"]["mode"] == "break-glass", r
    assert r.json()["guard"]["approvals"]["approvers"] == ["bob"]
    r = run_pt(*args, "--reason", "INC-9: prod down", "--output", "json")
    assert r.exit_code == 0, r
    assert "BREAK-GLASS" in r.stderr
    assert st.live_digests("prod") == {d3}
    led = ledger_of(st, path)
    [bg] = led.query("prod", "break-glass")
    assert bg.state == "succeeded" and bg.reason == "INC-9: prod down" and bg.actor["name"] == "alice"
    assert bg.data["approvers"] == ["bob"] and bg.data["deploy_id"] == r.json()["deploy_id"]
    assert "nothing has been deployed to staging" in bg.data["bypassed"]
    dep = led.get("prod", r.json()["deploy_id"])
    assert dep.actor["break_glass"] == bg.id
    texts = [json.dumps(b) for b in webhook_server.bodies()]
    assert any("Break-glass deploy" in t and "INC-9: prod down" in t for t in texts)
    assert [t.get("event") for t in bg.transitions if t.get("event")] == ["notification"]


def test_rejection_blocks_break_glass(world, run_pt, monkeypatch):
    st, write = world
    path = write()
    d3 = digest(3)
    approve(run_pt, monkeypatch, path, "bob", extra=("--digest", d3))
    monkeypatch.setenv("PT_ACTOR", "carol")
    assert run_pt("reject", "--stage", "prod", "--config", path, "--digest", d3, "-m", "not this one").exit_code == 0
    monkeypatch.setenv("PT_ACTOR", "alice")
    r = run_pt("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{d3}", "--break-glass",
               "--reason", "INC-10")
    assert r.exit_code == 1 and "rejected by carol: not this one" in r.stderr, r
    assert st.live_digests("prod") == {digest(1)}
    r = run_pt("approve", "--stage", "prod", "--config", path, "--digest", "sha256:nope")
    assert r.exit_code == 2 and "not an image digest" in r.stderr


@pytest.mark.parametrize("extra,second", [
    ("", "carol@example.com"),  # one person under two spellings, no config needed
    (', aliases: {carol: ["cj@corp.example", "cjones"]}', "cj@corp.example"),  # approvals.aliases
])
def test_one_person_under_aliases_counts_once(world, run_pt, monkeypatch, extra, second):
    st, write = world
    path = write(extra)
    deploy_staging(st, path, 2)
    approve(run_pt, monkeypatch, path, "carol")
    monkeypatch.setenv("PT_ACTOR", second)
    r = run_pt("approve", "--stage", "prod", "--config", path, "--output", "json")
    assert r.exit_code == 0 and r.json()["recorded"] is None and "same person as carol" in r.json()["note"], r
    r = run_pt("approvals", "--stage", "prod", "--config", path, "--output", "json")
    assert r.json()["approvers"] == ["carol"] and r.json()["missing"] == 1
    r = run_pt("promote", "--to", "prod", "--config", path)
    assert r.exit_code == 1 and "1 of 2 approval(s); 1 more needed" in r.stderr, r
    approve(run_pt, monkeypatch, path, "bob")
    monkeypatch.setenv("PT_ACTOR", "release-mgr")
    assert run_pt("promote", "--to", "prod", "--config", path).exit_code == 0
    assert st.live_digests("prod") == {digest(2)}


def test_same_sts_caller_counts_once_whatever_ci_user_it_claims(world, run_pt, monkeypatch):
    """No declared identity: the approver is the STS caller (moto's one principal here), so the
    GitHub/CodeBuild user names it runs under do not make it two people."""
    st, write = world
    path = write()
    deploy_staging(st, path, 2)
    monkeypatch.delenv("PT_ACTOR")
    for ci_user in ("alice-gh", "bob-gh"):
        monkeypatch.setenv("GITHUB_ACTOR", ci_user)
        r = run_pt("approve", "--stage", "prod", "--config", path, "--output", "json")
        assert r.exit_code == 0, r
    assert "counts once" in r.json()["note"] and r.json()["recorded"] is None
    r = run_pt("approvals", "--stage", "prod", "--config", path, "--output", "json")
    assert r.json()["missing"] == 1 and len(r.json()["approvers"]) == 1
    [rec] = [a for a in r.json()["approvals"]]
    assert rec["arn"] and rec["declared"] is None and rec["approver"] != "alice-gh"


@pytest.mark.parametrize("extra,needed", [("", None), (", unknown_author: extra_approver", 3)])
def test_unknown_author_refused_or_one_more_approver(world, run_pt, monkeypatch, extra, needed):
    st, write = world
    path = write(extra)
    deploy_staging(st, path, 2, author=None)
    rec = ledger_of(st, path).query("staging", "deploy", limit=1)[0]
    assert rec.actor["author"] is None and rec.actor["author_source"] is None
    approve(run_pt, monkeypatch, path, "bob", "carol")
    r = run_pt("promote", "--to", "prod", "--config", path)
    assert r.exit_code == 1, r
    if needed is None:
        assert "the commit author is unknown" in r.stderr and "unknown_author: extra_approver" in r.stderr
        r = run_pt("deploy", "--config", path, "--stage", "prod", "--image-uri", f"{REPO}@{digest(2)}")
        assert r.exit_code == 1 and "the commit author is unknown" in r.stderr
    else:
        assert "2 of 3 approval(s); 1 more needed" in r.stderr and "commit author is unknown" in r.stderr
        approve(run_pt, monkeypatch, path, "dave")
        monkeypatch.setenv("PT_ACTOR", "release-mgr")
        assert run_pt("promote", "--to", "prod", "--config", path).exit_code == 0
        assert st.live_digests("prod") == {digest(2)}
