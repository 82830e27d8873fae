"""promote.py against a real ledger (DynamoDB on moto server): gate over the bake window,
approvals bound to the digest, every promotion refusal, and the records left behind.

Deploy records are written the way the deploy engine writes them (ledger API); the engine
itself runs in test_promote_flow.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import UsageError
from pipeline_tools.release import promote as p
from pipeline_tools.release.approvals import ApprovalRefused
from pipeline_tools.release.ledger import Ledger, ensure_table

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
FRIDAY_22H = datetime(2026, 11, 27, 22, 0, tzinfo=UTC).timestamp()  # outside Mon–Thu 02–05 UTC
TUESDAY_3H = datetime(2026, 12, 1, 3, 0, tzinfo=UTC).timestamp()  # inside

CONFIG = """
project: iris
region: us-east-1
images: {model: {context: .}}
functions: {predict: {image: model}}
stages:
  dev:
    account: "111111111111"
    branch: dev
    deploy: {bake: 0s}
    gate: {alarms: [], allow_no_alarms: true}
  staging:
    account: "111111111111"
    branch: integration
    promote_from: dev
    deploy: {strategy: canary, percent: 10, interval: 1s, bake: 300s}
    gate: {alarms: ["iris-staging-*"], insufficient_data: fail, poll: 5s}
  prod:
    account: "222222222222"
    branch: master
    promote_from: staging
    deploy: {strategy: linear, percent: 50, interval: 1s, bake: 0s}
    gate: {alarms: ["iris-prod-*"]}
    approvals: {required: 2, two_person_rule: true}
    window: {days: [mon, tue, wed, thu], hours: "02:00-05:00", timezone: UTC}
"""


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        self.t += 0.001  # every ledger write gets a distinct, ordered time
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@pytest.fixture
def env(aws):
    cfg = config_mod.parse(CONFIG, "pipeline.yml")
    clock = Clock(FRIDAY_22H)
    ddb = aws.client("dynamodb")
    ensure_table(ddb, cfg.ledger_table(), project="iris", stage="staging", local=True)
    ledger = Ledger(ddb, cfg.ledger_table(), clock=clock)
    cw = aws.client("cloudwatch")
    for fn in ("predict", "batch-score"):
        cw.put_metric_alarm(AlarmName=f"iris-staging-{fn}-errors", MetricName="Errors", Namespace="AWS/Lambda",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1.0,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName=f"iris-staging-{fn}-errors", StateValue="OK", StateReason="fine")
    return cfg, ledger, cw, clock


def deployed(ledger, stage, digest, *, author="alice@example.com", state="succeeded", reason=None, op="deploy"):
    """A deploy record as the engine leaves it, with the alarm states of its last gate poll
    (`gate_snapshot`, where `pt gate`'s window starts) and the alarms firing before it."""
    import boto3

    from pipeline_tools.release import gate

    watch = gate.GateWatch(boto3.client("cloudwatch", region_name="us-east-1"),
                           gate.GatePolicy((f"iris-{stage}-*",)), ledger.clock())
    firing = watch.start()
    rec = ledger.put_record("deploy", stage, {"digest": digest, "operation": op,
                                              "preexisting_alarms": sorted(a.name for a in firing)},
                            state="locked", actor={"name": "ci", "author": author})
    return ledger.transition(stage, rec.id, state, reason=reason,
                             data={"gate_snapshot": watch.snapshot_now().to_dict()})


def approve(cfg, ledger, clock, who, decision="approve", **kw):
    return p.decide(cfg, ledger, "prod", decision=decision, actor={"name": who, "arn": f"arn:aws:iam::1:user/{who}"},
                    clock=clock, **kw)


def test_gate_waits_for_bake_then_passes_and_fails_on_alarm(env):
    cfg, ledger, cw, clock = env
    deployed(ledger, "staging", D1)
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "WAIT" and "0s of 5m" in r.explanation and r.digest == D1
    clock.t += 301
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "PASS", r.explanation
    assert [row[0] for row in r.rows()] == ["iris-staging-batch-score-errors", "iris-staging-predict-errors"]
    cw.set_alarm_state(AlarmName="iris-staging-predict-errors", StateValue="ALARM", StateReason="5 errors")
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "FAIL" and "iris-staging-predict-errors" in r.explanation
    p.record_gate(ledger, r, {"name": "ci"})
    # the alarm recovers, but the recorded FAIL for this deploy stands
    cw.set_alarm_state(AlarmName="iris-staging-predict-errors", StateValue="OK", StateReason="recovered")
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "FAIL" and r.recorded_fail and "stands" in r.explanation
    # a new deploy starts a new window
    deployed(ledger, "staging", D2)
    clock.t += 301
    assert p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock).status == "PASS"


def test_gate_bake_override_and_wait_polls_with_injected_clock(env):
    cfg, ledger, cw, clock = env
    deployed(ledger, "staging", D1)
    assert p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock, bake=0).status == "PASS"
    polls = []
    r = p.wait_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock, sleep=clock.sleep, bake=30,
                    on_poll=polls.append)
    assert r.status == "PASS" and 6 <= len(polls) <= 7  # 30 s bake / 5 s poll
    deployed(ledger, "staging", D2)
    r = p.wait_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock, sleep=clock.sleep, timeout=30)
    assert r.status == "WAIT" and "deadline" in r.explanation


def test_gate_fails_closed(env):
    cfg, ledger, cw, clock = env
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "FAIL" and "nothing has been deployed" in r.explanation
    deployed(ledger, "staging", D1)
    clock.t += 400
    cw.delete_alarms(AlarmNames=["iris-staging-predict-errors", "iris-staging-batch-score-errors"])
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=cw, clock=clock)
    assert r.status == "FAIL" and "no alarm matches" in r.explanation
    r = p.evaluate_gate(cfg, "staging", ledger=ledger, cloudwatch=_Broken(), clock=clock)
    assert r.status == "FAIL" and "cannot read alarms" in r.explanation


class _Broken:
    def describe_alarms(self, **_):
        raise RuntimeError("endpoint down")


def test_approvals_rules_through_the_ledger(env):
    cfg, ledger, _cw, clock = env
    deployed(ledger, "staging", D1, author="alice@example.com")
    with pytest.raises(ApprovalRefused, match="commit author"):
        approve(cfg, ledger, clock, "alice")
    o = approve(cfg, ledger, clock, "bob", comment="looks good")
    assert o.recorded and o.status.missing == 1
    clock.t += 1
    o = approve(cfg, ledger, clock, "bob")
    assert o.recorded is None and "counts once" in o.note and o.status.missing == 1
    clock.t += 1
    o = approve(cfg, ledger, clock, "carol")
    assert o.status.satisfied and o.status.approvers == ("bob", "carol")
    # a new staging deploy (new digest) invalidates them
    old = ledger.query("staging", "deploy")[-1].id
    deployed(ledger, "staging", D2, author="dave@example.com")
    st = p.approval_status(cfg, ledger, p.candidate(cfg, ledger, "prod"))
    assert not st.satisfied and st.approvers == () and len(st.ignored) == 2
    with pytest.raises(p.PromotionRefused, match="no longer what staging runs"):
        approve(cfg, ledger, clock, "bob", deploy_id=old)
    o = approve(cfg, ledger, clock, "erin", decision="reject", comment="latency")
    assert "rejected by erin" in o.status.explain()


def test_approve_without_promote_from_is_usage_error(env):
    cfg, ledger, _cw, clock = env
    with pytest.raises(UsageError, match="no promote_from"):
        p.decide(cfg, ledger, "dev", decision="approve", actor={"name": "bob"}, clock=clock)


def _ready(env, *, approvers=("bob", "carol")):
    cfg, ledger, cw, clock = env
    deployed(ledger, "dev", D1)
    deployed(ledger, "staging", D1)
    clock.t += 301
    for who in approvers:
        approve(cfg, ledger, clock, who)
    return cfg, ledger, cw, clock


class Engine:
    """Stands in for the deploy engine: records a deploy like it does."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.calls = []

    def __call__(self, stage, digest, **kw):
        self.calls.append((stage, digest, kw))
        return deployed(self.ledger, stage, digest)


def test_refusals_in_order_and_recorded(env):
    cfg, ledger, cw, clock = env
    eng = Engine(ledger)
    kw = dict(ledger=ledger, cloudwatch=cw, deploy=eng, actor={"name": "ci"}, clock=clock)
    with pytest.raises(p.PromotionRefused, match="nothing has been deployed to staging") as e:
        p.promote(cfg, "prod", **kw)
    assert e.value.condition == "deployed"
    deployed(ledger, "staging", D1)
    with pytest.raises(p.PromotionRefused) as e:
        p.promote(cfg, "prod", **kw)
    assert e.value.condition == "chain" and "never succeeded in dev" in e.value.message
    deployed(ledger, "dev", D1)
    with pytest.raises(p.PromotionRefused) as e:
        p.promote(cfg, "prod", **kw)
    assert e.value.condition == "gate" and e.value.exit_code == 3
    clock.t += 301
    with pytest.raises(p.PromotionRefused) as e:
        p.promote(cfg, "prod", **kw)
    assert e.value.condition == "approvals" and "0 of 2" in e.value.message and "pt approve" in e.value.hint
    approve(cfg, ledger, clock, "bob")
    approve(cfg, ledger, clock, "carol")
    with pytest.raises(p.PromotionRefused) as e:
        p.promote(cfg, "prod", **kw)
    assert e.value.condition == "window"
    assert "outside deploy window (Mon–Thu 02:00–05:00 UTC); next opens in" in e.value.message
    assert "--override-window" in e.value.hint
    with pytest.raises(UsageError, match="needs --reason"):
        p.promote(cfg, "prod", **kw, override_window=True)
    refused = ledger.query("prod", "promotion")
    assert [r.data["condition"] for r in refused] == ["window", "approvals", "gate", "chain", "deployed"]
    assert eng.calls == []


def test_rolled_back_staging_refused(env):
    cfg, ledger, cw, clock = env
    deployed(ledger, "dev", D1)
    deployed(ledger, "staging", D1)
    deployed(ledger, "staging", D2, state="rolled_back", reason="iris-staging-predict-errors in ALARM")
    with pytest.raises(p.PromotionRefused, match="rolled back: iris-staging-predict-errors in ALARM") as e:
        p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={}, clock=clock)
    assert "deploy a fixed image" in e.value.hint
    deployed(ledger, "staging", D1, op="rollback", reason="rollback to an earlier deploy")
    with pytest.raises(p.PromotionRefused, match="staging was rolled back by ci") as e:
        p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={}, clock=clock)


def test_lock_held_and_unfinished_deploy(env):
    cfg, ledger, cw, clock = env
    _ready(env)
    clock.t = TUESDAY_3H
    lock = ledger.acquire("prod", "d-other", {"name": "zoe"}, lease=120)
    with pytest.raises(p.PromotionRefused, match="locked by zoe") as e:
        p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={}, clock=clock)
    assert e.value.exit_code == 4 and e.value.condition == "lock"
    ledger.release(lock)
    ledger.put_record("deploy", "prod", {"digest": D2, "operation": "deploy"}, state="shifting")
    with pytest.raises(p.PromotionRefused, match="did not finish") as e:
        p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={}, clock=clock)
    assert "pt recover" in e.value.hint


def test_promote_inside_window_and_dry_run(env):
    cfg, ledger, cw, clock = env
    _ready(env)
    clock.t = TUESDAY_3H  # note: the bake window has long elapsed
    eng = Engine(ledger)
    plan, rec = p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=eng, actor={"name": "ci"},
                          clock=clock, dry_run=True)
    assert rec is None and plan.ok and eng.calls == []
    assert [c.name for c in plan.checks] == ["deployed", "chain", "gate", "approvals", "window", "lock"]
    assert ledger.query("prod", "promotion") == []
    sent = []
    plan, rec = p.promote(cfg, "prod", ledger=ledger, cloudwatch=cw, deploy=eng, actor={"name": "ci"},
                          clock=clock, notify=lambda *a: sent.append(a))
    assert rec.state == "succeeded" and eng.calls[0][:2] == ("prod", D1)
    assert eng.calls[0][2]["window"]["open"] is True and eng.calls[0][2]["source_deploy"].digest == D1
    [prom] = ledger.query("prod", "promotion")
    assert prom.state == "succeeded" and prom.data["deploy_id"] == rec.id
    assert prom.data["approvers"] == ["bob", "carol"]
    assert sent[0][0] == "promoted"


def test_from_must_match_promote_from(env):
    cfg, ledger, cw, clock = env
    with pytest.raises(UsageError, match="prod promotes from staging"):
        p.promote(cfg, "prod", source="dev", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={},
                  clock=clock)
    with pytest.raises(UsageError, match="deployed directly"):
        p.promote(cfg, "dev", ledger=ledger, cloudwatch=cw, deploy=Engine(ledger), actor={}, clock=clock)


def test_sync_codepipeline_records_answered_approvals_once(env):
    import boto3
    from botocore.stub import Stubber

    cfg, ledger, _cw, clock = env
    deployed(ledger, "staging", D1, author="alice@example.com")
    cp = boto3.client("codepipeline", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    when = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)

    def action(name, who, status="Succeeded"):
        return {"actionName": name, "latestExecution": {"actionExecutionId": name, "status": status,
                                                        "summary": f"by {who}", "lastStatusChange": when,
                                                        "lastUpdatedBy": f"arn:aws:sts::1:assumed-role/Ops/{who}"}}

    state = {"pipelineName": "iris-prod", "pipelineVersion": 1, "stageStates": [
        {"stageName": "Approve", "latestExecution": {"pipelineExecutionId": "e-9", "status": "InProgress"},
         "actionStates": [action("ByBob", "bob"), action("ByAlice", "alice"),
                          {"actionName": "ByCarol", "latestExecution": {
                              "status": "InProgress", "token": "3f0b7a2c-9d41-4c1e-8a55-0c6f3e2b9d10"}}]}]}
    with Stubber(cp) as stub:
        stub.add_response("get_pipeline_state", state, {"name": "iris-prod"})
        stub.add_response("get_pipeline_state", state, {"name": "iris-prod"})
        rows = p.sync_codepipeline(cfg, ledger, "prod", codepipeline=cp, pipeline="iris-prod", clock=clock)
        again = p.sync_codepipeline(cfg, ledger, "prod", codepipeline=cp, pipeline="iris-prod", clock=clock)
    by = {r["action"]: r for r in rows}
    assert by["ByBob"]["recorded"] and by["ByBob"]["note"] is None
    assert "does not count" in by["ByAlice"]["note"]  # the commit author, two_person_rule
    assert by["ByCarol"]["recorded"] is None and "not answered" in by["ByCarol"]["note"]
    assert [r["note"] for r in again if r["action"] != "ByCarol"] == ["already recorded"] * 2
    st = p.approval_status(cfg, ledger, p.candidate(cfg, ledger, "prod"))
    assert st.approvers == ("Ops/bob",) and st.missing == 1  # the STS caller, normalised to ROLE/SESSION
    recs = ledger.query("prod", "approval")
    assert {r.data["source"] for r in recs} == {"codepipeline"} and len(recs) == 2
