"""The 'Done when' walk of issue 6 against moto server, time driven by an injected clock:

deploy staging → gate WAIT → (clock advanced) PASS → promote refused (no approvals) → approval
by the author refused → two approvals → promote outside the window refused → override with a
reason → prod deployed by the deploy engine; the ledger shows every step with actors and reasons.
Variant: an alarm fires during the staging bake → promotion blocked with an explanation.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release import deploy as dp
from pipeline_tools.release import promote as p
from pipeline_tools.release.actor import identify
from pipeline_tools.release.approvals import ApprovalRefused

from .conftest_deploy import REPO, digest, make_stage

FRIDAY_22H = datetime(2026, 11, 27, 22, 0, tzinfo=UTC).timestamp()  # outside Mon–Thu 02:00–05:00 UTC

CONFIG = """\
project: rel
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
    deploy: {strategy: canary, percent: 10, interval: 10s, bake: 60s}
    gate: {alarms: ["rel-staging-*"], insufficient_data: fail, preexisting_alarm: block, poll: 10s}
  prod:
    account: "222222222222"
    branch: master
    promote_from: staging
    deploy: {strategy: linear, percent: 50, interval: 10s, bake: 10s}
    gate: {alarms: ["rel-prod-*"], insufficient_data: fail, poll: 5s}
    approvals: {required: 2, two_person_rule: true}
    window: {days: [mon, tue, wed, thu], hours: "02:00-05:00", timezone: UTC}
"""


class Clock:
    def __init__(self, t: float):
        self.t = t
        self.at: list[tuple[float, object]] = []  # (time, action) fired when the clock passes it

    def __call__(self) -> float:
        self.t += 0.001
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        for when, action in list(self.at):
            if self.t >= when:
                self.at.remove((when, action))
                action()


def person(name: str, author: str = "alice@example.com") -> dict:
    env = {"PT_ACTOR": name, "PT_COMMIT_AUTHOR": author, "PT_GIT_SHA": "a" * 40, "PT_GIT_BRANCH": "integration"}
    return identify(f"arn:aws:sts::123456789012:assumed-role/Deployer/{name}", env=env)


@pytest.fixture
def world(aws, tmp_path):
    st = make_stage(aws, tmp_path, stages=("staging", "prod"))
    path = tmp_path / "pipeline.yml"
    path.write_text(CONFIG)
    cfg = config_mod.load(path)
    clock = Clock(FRIDAY_22H)
    from pipeline_tools.release.ledger import Ledger, ensure_table

    ensure_table(st.ddb, cfg.ledger_table(), project="rel", stage="staging", local=True)
    ledger = Ledger(st.ddb, cfg.ledger_table(), clock=clock)
    return cfg, st, ledger, clock


def deploy_staging(cfg, st, ledger, clock, n: int, actor: dict):
    ref = dp.parse_image_uri(f"{REPO}@{digest(n)}")
    plan = dp.plan_deploy(cfg, "staging", "model", ref, st.lam)
    deps = dp.Deps(lambda_client=st.lam, cloudwatch=st.cw, ledger=ledger, clock=clock, sleep=clock.sleep,
                   actor=actor)
    return dp.deploy(cfg, plan, deps)


def promote(cfg, st, ledger, clock, actor, sent=None, **kw):
    eng = p.engine(cfg, lambda_client=st.lam, cloudwatch=st.cw, ledger=ledger, actor=actor, clock=clock,
                   sleep=clock.sleep, ecr=st.aws.client("ecr"),
                   notify=(lambda kind, stage, info: sent.append((kind, stage, info))) if sent is not None else None)
    return p.promote(cfg, "prod", ledger=ledger, cloudwatch=st.cw, deploy=eng, actor=actor, clock=clock, **kw)


def test_done_when_walk(world):
    cfg, st, ledger, clock = world
    ci = person("ci-bot")
    res = deploy_staging(cfg, st, ledger, clock, 2, ci)
    assert res.state == "succeeded" and st.live_digests("staging") == {digest(2)}

    # gate: WAIT right after the deploy, PASS once the bake time has passed (clock, not sleep)
    g = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=st.cw, clock=clock)
    assert g.status == "WAIT" and "decides at" in g.explanation
    clock.t += 61
    g = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=st.cw, clock=clock)
    assert g.status == "PASS", g.explanation
    p.record_gate(ledger, g, ci)

    # promote refused: no approvals
    with pytest.raises(p.PromotionRefused) as e:
        promote(cfg, st, ledger, clock, person("release-mgr"))
    assert e.value.condition == "approvals" and "0 of 2" in e.value.message

    # the commit author cannot approve; two other people can
    with pytest.raises(ApprovalRefused, match="commit author"):
        p.decide(cfg, ledger, "prod", decision="approve", actor=person("alice"), clock=clock)
    for who, why in (("bob", "metrics fine"), ("carol", "reviewed the diff")):
        out = p.decide(cfg, ledger, "prod", decision="approve", actor=person(who), clock=clock, comment=why)
    assert out.status.satisfied

    # outside the window: refused with when it opens; then an override with a reason
    with pytest.raises(p.PromotionRefused) as e:
        promote(cfg, st, ledger, clock, person("release-mgr"))
    assert e.value.condition == "window"
    assert re.fullmatch(r"outside deploy window \(Mon–Thu 02:00–05:00 UTC\); next opens in 2d3h5\dm", e.value.message)
    sent: list = []
    _plan, rec = promote(cfg, st, ledger, clock, person("release-mgr"), sent=sent, override_window=True,
                         reason="hotfix for incident 42")
    assert rec.state == "succeeded" and rec.digest == digest(2)
    assert st.live_digests("prod") == {digest(2)}
    assert [k for k, _s, _i in sent] == ["deploy_started", "deploy_succeeded"]
    assert rec.data["strategy"] == "linear"  # prod's strategy, same digest, nothing rebuilt
    assert rec.data["image_uri"].startswith("222222222222.dkr.ecr.us-east-1.amazonaws.com/rel-model@")

    # the ledger tells the whole story, with actors and reasons
    staging = ledger.query("staging")
    assert [(r.kind, r.state, r.actor["name"]) for r in reversed(staging)] == \
        [("deploy", "succeeded", "ci-bot"), ("gate", "pass", "ci-bot")]
    prod = list(reversed(ledger.query("prod")))
    kinds = [(r.kind, r.state, r.actor.get("name")) for r in prod]
    assert kinds == [("promotion", "refused", "release-mgr"), ("approval", "approved", "bob"),
                     ("approval", "approved", "carol"), ("promotion", "refused", "release-mgr"),
                     ("window-override", "overridden", "release-mgr"), ("promotion", "succeeded", "release-mgr"),
                     ("deploy", "succeeded", "release-mgr")]
    assert prod[0].reason.startswith("approvals for prod not satisfied")
    assert [r.reason for r in prod[1:3]] == ["metrics fine", "reviewed the diff"]
    assert prod[3].reason.startswith("outside deploy window")
    assert prod[4].reason == "hotfix for incident 42"
    assert prod[5].data["approvers"] == ["bob", "carol"] and prod[5].data["deploy_id"] == rec.id
    assert rec.data["window"]["overridden"] and rec.data["window"]["reason"] == "hotfix for incident 42"
    [ev] = [t for t in rec.transitions if t.get("event")]
    assert (ev["event"], ev["reason"], ev["actor"]) == ("window-override", "hotfix for incident 42", "release-mgr")


def test_alarm_during_staging_bake_blocks_promotion(world):
    cfg, st, ledger, clock = world
    ci = person("ci-bot")
    # 1. an alarm fires while the deploy engine bakes staging: it rolls back, promotion is refused
    clock.at.append((clock.t + 30, lambda: st.set_alarm("ALARM", "predict")))
    with pytest.raises(DeployFailed, match="rolled back"):
        deploy_staging(cfg, st, ledger, clock, 2, ci)
    assert st.live_digests("staging") == {digest(1)}
    with pytest.raises(p.PromotionRefused) as e:
        promote(cfg, st, ledger, clock, person("release-mgr"))
    assert e.value.condition == "deployed"
    assert "rolled back" in e.value.message and "rel-staging-predict-errors" in e.value.message

    # 2. a good deploy, then an alarm during the gate's bake window after it
    st.set_alarm("OK", "predict")
    clock.t += 10
    deploy_staging(cfg, st, ledger, clock, 3, ci)
    for who in ("bob", "carol"):
        p.decide(cfg, ledger, "prod", decision="approve", actor=person(who), clock=clock)
    clock.t += 20
    st.set_alarm("ALARM", "batch-score")
    clock.t += 50
    with pytest.raises(p.PromotionRefused) as e:
        promote(cfg, st, ledger, clock, person("release-mgr"), override_window=True, reason="x")
    assert e.value.condition == "gate"
    assert "staging gate FAIL" in e.value.message and "rel-staging-batch-score-errors" in e.value.message
    assert "in ALARM" in e.value.message and "deploy a new image" in e.value.hint
    assert st.live_digests("prod") == {digest(1)}
    refused = ledger.query("prod", "promotion")
    assert [(r.state, r.data["condition"]) for r in refused] == [("refused", "gate"), ("refused", "deployed")]
    assert "rel-staging-batch-score-errors" in refused[0].reason


def test_prod_alarm_during_promotion_rolls_prod_back(world):
    """The deploy engine watches prod's own gate: an alarm during prod's bake rolls prod back to
    what it ran before; the promotion is recorded as failed and a rollback notification is sent."""
    cfg, st, ledger, clock = world
    deploy_staging(cfg, st, ledger, clock, 2, person("ci-bot"))
    clock.t += 61
    for who in ("bob", "carol"):
        p.decide(cfg, ledger, "prod", decision="approve", actor=person(who), clock=clock)
    clock.at.append((clock.t + 12, lambda: st.set_alarm("ALARM", "predict", stage="prod")))  # in the bake
    sent: list = []
    with pytest.raises(DeployFailed, match="rolled back"):
        promote(cfg, st, ledger, clock, person("release-mgr"), sent=sent, override_window=True, reason="drill")
    assert st.live_digests("prod") == {digest(1)}
    assert all(not w for _, w in st.live("prod").values())  # no weighted routing left behind
    assert [k for k, _s, _i in sent] == ["deploy_started", "deploy_rolled_back"]
    assert "rel-prod-predict-errors" in sent[1][2]["summary"]
    prom = ledger.query("prod", "promotion", limit=1)[0]
    assert prom.state == "failed" and "rolled back" in prom.reason
    dep = ledger.query("prod", "deploy", limit=1)[0]
    assert dep.state == "rolled_back" and sent[1][2]["deploy_id"] == dep.id
