"""`pt gate` / `pt promote` against a stage deployed by the engine on moto server: the window
starts from what the deploy recorded (`gate_snapshot`, `preexisting_alarms`), moto's HTTP 500
for describe_alarm_history keeps the gate closed, and the verdict keeps what it read.
"""

from __future__ import annotations

from .conftest_deploy import (
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
    wait_for,
)

PREDICT = "rel-staging-predict-errors"
BATCH = "rel-staging-batch-score-errors"


def _deploy(stage, run_pt) -> dict:
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--output", "json")
    assert r.exit_code == 0, r
    return r.json()


def _gate(stage, run_pt, *extra):
    return run_pt("gate", "--config", stage.config, "--stage", "staging", "--bake", "0s", "--output", "json", *extra)


def test_deploy_records_what_gate_and_promote_need_and_preexisting_policy_applies(stage, run_pt):
    stage.write_config(preexisting="ignore")
    stage.set_alarm("ALARM")  # already firing before the deploy
    data = _deploy(stage, run_pt)
    rec = stage.ledger().get("staging", data["deploy_id"])
    assert rec.data["preexisting_alarms"] == [PREDICT]
    assert {a["name"]: a["state"] for a in rec.data["gate_start"]["alarms"]} == {PREDICT: "ALARM", BATCH: "OK"}
    snap = rec.data["gate_snapshot"]  # the deploy's last gate poll: where `pt gate`'s window starts
    assert {a["name"]: a["state"] for a in snap["alarms"]} == {PREDICT: "ALARM", BATCH: "OK"}

    # ignore: the alarm that fired before the deploy, unchanged since, does not fail the gate
    r = _gate(stage, run_pt)
    assert r.exit_code == 0, r
    out = r.json()
    assert out["status"] == "PASS" and out["preexisting_alarms"] == [PREDICT]
    assert out["snapshot"]["alarms"] == snap["alarms"] and out["errors"] == [] and out["transitions"] == []
    assert out["history_source"].startswith("not needed")
    why = {a["name"]: a["why"] for a in out["alarms"]}
    assert "preexisting_alarm: ignore" in why[PREDICT]
    gate_rec = stage.ledger().query("staging", "gate", limit=1)[0]
    assert gate_rec.data["preexisting_alarms"] == [PREDICT] and gate_rec.data["snapshot"] == out["snapshot"]

    # block: the same alarm fails the gate of `pt gate` (as it would have refused the deploy)
    stage.write_config(preexisting="block")
    r = _gate(stage, run_pt)
    assert r.exit_code == 1 and "preexisting_alarm: block" in r.json()["explanation"]

    # ignore again, but the alarm recovered and fired again inside the window: a new ALARM
    stage.write_config(preexisting="ignore")
    stage.set_alarm("OK")
    stage.set_alarm("ALARM")
    r = _gate(stage, run_pt)
    assert r.exit_code == 1, r
    assert f"{PREDICT}: ALARM" in r.json()["explanation"] and "went into ALARM" in r.json()["explanation"]


def test_alarm_that_fired_and_recovered_after_the_deploy_is_not_pass(stage, run_pt):
    """moto has no alarm history (HTTP 500): the change since the snapshot cannot be proven harmless."""
    _deploy(stage, run_pt)
    assert _gate(stage, run_pt).exit_code == 0  # nothing changed: no history needed
    stage.set_alarm("ALARM")
    stage.set_alarm("OK")
    r = _gate(stage, run_pt)
    assert r.exit_code == 3, r  # WAIT: a 5xx is retryable; never PASS
    out = r.json()
    assert out["status"] == "WAIT" and PREDICT in out["explanation"]
    assert "alarm history is unreadable" in out["explanation"]
    assert out["errors"] == [{"api": "describe_alarm_history", "message": "HTTP 500 from CloudWatch",
                              "retryable": True}]
    assert out["history_source"].startswith("polling only")
    human = run_pt("gate", "--config", stage.config, "--stage", "staging", "--bake", "0s")
    assert human.exit_code == 3
    assert "evidence: snapshot of 2 alarm(s)" in human.stdout and \
        "errors: describe_alarm_history: HTTP 500 from CloudWatch" in human.stdout, human
    r = run_pt("gate", "--config", stage.config, "--stage", "staging", "--bake", "0s", "--wait", "--timeout", "0.3s")
    assert r.exit_code == 3 and "deadline" in r.stdout + r.stderr


def test_promote_applies_the_preexisting_policy_of_the_source_stage(stage, run_pt):
    stage.write_config(preexisting="ignore")
    text = stage.config.read_text().replace(
        '    branch: master\n', '    branch: master\n    promote_from: staging\n').replace(
        '    window: {days: [mon], hours: "02:00-02:01", timezone: UTC}\n', "")
    stage.config.write_text(text)
    stage.set_alarm("ALARM")
    _deploy(stage, run_pt)

    def dry_run():
        return run_pt("promote", "--config", stage.config, "--to", "prod", "--dry-run", "--output", "json")

    r = wait_for(lambda: (res := dry_run()).exit_code != 3 and res, timeout=20)  # bake 0.3 s
    assert r.exit_code == 0, r
    gate_check = next(c for c in r.json()["checks"] if c["check"] == "gate")
    assert gate_check["ok"] and digest(2)[:19] in r.stdout
    stage.set_alarm("OK")
    stage.set_alarm("ALARM")  # fired again after the deploy
    r = dry_run()
    assert r.exit_code == 1 and "staging gate FAIL" in r.stderr + r.stdout and PREDICT in r.stderr + r.stdout


def test_deploy_does_not_move_traffic_on_when_a_step_has_no_evidence(stage):
    """An alarm re-set during a canary step (its state timestamp changes, the state does not)
    needs alarm history, which moto cannot give: the step ends WAIT without evidence, so the
    deploy rolls back instead of shifting to the next step."""
    import threading

    from pipeline_tools.core.config import load
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release.ledger import Ledger, ensure_table

    stage.write_config(strategy="canary", percent=50, interval="1s", bake="0s", poll="0.1s")
    cfg = load(stage.config)
    plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(2)), stage.lam)
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    ledger = Ledger(stage.ddb, "rel-ledger")
    deps = dp.Deps(stage.lam, stage.cw, ledger, actor={"name": "alice"}, lease=30)
    percents: list[int] = []

    def during_first_step():
        wait_for(lambda: (r := ledger.query("staging", "deploy", limit=1)) and r[0].state == "shifting",
                 timeout=20, interval=0.01)
        stage.set_alarm("OK")  # OK → OK: moto moves the state timestamp; it may have been ALARM in between

    t = threading.Thread(target=during_first_step)
    t.start()
    try:
        dp.deploy(cfg, plan, deps)
        raise AssertionError("the deploy should have rolled back")
    except dp.DeployFailed as e:
        assert "could not read its evidence" in e.message and "rolled back" in e.message, e.message
    finally:
        t.join()
    rec = ledger.query("staging", "deploy", limit=1)[0]
    percents = [x["percent"] for x in rec.transitions if x.get("state") == "shifting"]
    assert percents == [50]  # never shifted to 100 %
    assert rec.state == "rolled_back" and rec.data["verdict"]["errors"][0]["api"] == "describe_alarm_history"
    assert stage.live_digests() == {digest(1)}
