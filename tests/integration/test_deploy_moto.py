"""pt deploy / rollback / recover / status / history against moto server (real HTTP)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipeline_tools.release import deploy as dp
from pipeline_tools.release.ledger import Ledger

from .conftest_deploy import (
    FUNCTIONS,
    REPO,
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
    wait_for,
)


def test_canary_deploy_end_to_end(stage, run_pt):
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--output", "json")
    assert r.exit_code == 0, r
    data = r.json()
    assert data["state"] == "succeeded" and data["digest"] == digest(2)
    assert stage.live_digests() == {digest(2)}
    assert all(not w for _, w in stage.live().values())
    rec = stage.ledger().get("staging", data["deploy_id"])
    states = [t["state"] for t in rec.transitions if "state" in t]
    assert states == ["locked", "updating", "shifting", "shifting", "baking", "finishing", "succeeded"]
    assert [t.get("percent") for t in rec.transitions] and rec.data["percent"] == 100
    assert rec.actor["name"] == "alice" and rec.actor["author"] == "bob@example.com"
    assert stage.ledger().current_lock("staging") is None
    # no-op: same digest again
    r2 = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r2.exit_code == 0 and "nothing to deploy" in r2.stdout
    # status + history
    s = run_pt("status", "--config", stage.config, "--stage", "staging", "--output", "json").json()
    fns = s["stages"][0]["functions"]
    assert {f["digest"] for f in fns} == {digest(2)} and s["stages"][0]["last_deploy"]["actor"] == "alice"
    assert "dashboard_url" not in s["stages"][0]
    opened = run_pt("status", "--config", stage.config, "--stage", "staging", "--open")
    assert opened.exit_code == 0
    assert ("staging: dashboard https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
            "#dashboards/dashboard/") in opened.stdout
    h = run_pt("history", "--config", stage.config, "--stage", "staging")
    assert h.exit_code == 0 and data["deploy_id"] in h.stdout and "succeeded" in h.stdout


def test_linear_weights_move_together(stage, run_pt):
    """While shifting, both functions carry the same weight on the new version."""
    stage.write_config(strategy="linear", percent=25, interval="0.4s", bake="0s")
    seen: list[dict] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                seen.append({fn: w for fn, (_, w) in stage.live().items()})
            except Exception:
                pass
            stop.wait(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    finally:
        stop.set()
        t.join()
    assert r.exit_code == 0, r
    weights = {round(next(iter(s["predict"].values()), 1.0), 2) for s in seen if s["predict"]}
    assert {0.25, 0.5, 0.75} <= weights
    rec = stage.ledger().query("staging", "deploy")[0]
    assert [t.get("percent") for t in rec.transitions if t.get("state") == "shifting"] == [25, 50, 75, 100]


def test_dry_run_changes_nothing(stage, run_pt):
    before = stage.live()
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--dry-run",
               "--output", "json")
    assert r.exit_code == 0, r
    plan = r.json()["plan"]
    assert plan["strategy"] == "canary" and [s["percent"] for s in plan["steps"]] == [50, 100]
    assert {f["previous_digest"] for f in plan["functions"]} == {digest(1)}
    assert stage.live() == before
    assert stage.lam.list_versions_by_function(FunctionName=stage.fname("predict"))["Versions"][-1]["Version"] == "1"


@pytest.mark.parametrize("args,expect", [
    (("--image-uri", f"{REPO}:latest"), "names a tag, not a digest"),
    (("--image-uri", f"{REPO}@sha256:abc"), "is not REPO@sha256"),
    (("--image-uri", uri(9)), "not found in ECR repository rel-model"),
])
def test_bad_image_refused(stage, run_pt, args, expect):
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", *args)
    assert r.exit_code in (1, 2) and expect in r.stderr, r
    assert stage.live_digests() == {digest(1)}


def test_unknown_stage_and_missing_function(stage, run_pt):
    r = run_pt("deploy", "--config", stage.config, "--stage", "stagin", "--image-uri", uri(2))
    assert r.exit_code == 2 and "unknown stage 'stagin'" in r.stderr
    stage.lam.delete_function(FunctionName=stage.fname("predict"))
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 1 and "Lambda function rel-staging-predict does not exist" in r.stderr


def test_alias_missing_is_created_on_first_deploy(stage, run_pt):
    for fn in FUNCTIONS:
        stage.lam.delete_alias(FunctionName=stage.fname(fn), Name="live")
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 0, r
    assert stage.live_digests() == {digest(2)}


def test_from_build_file(stage, run_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "gh_out"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "gh_summary"))
    f = tmp_path / "build.json"
    f.write_text(json.dumps({"images": [{"name": "model", "repository": REPO, "tag": "t2", "digest": digest(2),
                                         "image_uri": uri(2), "status": "pushed"}]}))
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--from-build", f, "--strategy",
               "all-at-once", "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["strategy"] == "all-at-once" and stage.live_digests() == {digest(2)}
    gh = (tmp_path / "gh_out").read_text()
    assert f"deploy_id={r.json()['deploy_id']}" in gh and "deploy_state=succeeded" in gh
    assert "| rel-staging-predict | 1 | 2 |" in (tmp_path / "gh_summary").read_text()
    f.write_text(json.dumps([{"name": "model", "repository": REPO, "digest": digest(3)}]))  # bare list
    assert run_pt("deploy", "--config", stage.config, "--stage", "staging", "--from-build", f).exit_code == 0
    assert stage.live_digests() == {digest(3)}


def test_window_refused_then_overridden_and_recorded(stage, run_pt):
    stage.add_stage("prod")
    args = ("deploy", "--config", stage.config, "--stage", "prod", "--image-uri", uri(2))
    r = run_pt(*args)
    assert r.exit_code == 1 and "outside deploy window" in r.stderr, r
    r = run_pt(*args, "--override-window")
    assert r.exit_code == 2 and "--reason" in r.stderr
    r = run_pt(*args, "--override-window", "--reason", "hotfix INC-1", "--output", "json")
    assert r.exit_code == 0, r
    rec = stage.ledger().get("prod", r.json()["deploy_id"])
    assert rec.data["window"]["overridden"] is True and rec.data["window"]["reason"] == "hotfix INC-1"
    assert any(t.get("event") == "window-override" and t["actor"] == "alice" for t in rec.transitions)


def test_lock_held_exit_4(stage, run_pt):
    led = stage.ledger()
    from pipeline_tools.release.ledger import ensure_table

    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led.acquire("staging", "20260101T000000000Z-abcdef", {"name": "carol"}, lease=60)
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 4
    assert "stage staging is locked by carol (deploy 20260101T000000000Z-abcdef, since " in r.stderr


def test_ledger_table_missing_outside_local_mode(stage, monkeypatch):
    from pipeline_tools.core.errors import NotFoundError
    from pipeline_tools.release.ledger import ensure_table

    with pytest.raises(NotFoundError) as e:
        ensure_table(stage.ddb, "rel-ledger", project="rel", stage="prod", local=False)
    assert "rel-prod-stage" in e.value.hint


def test_preexisting_alarm_blocks(stage, run_pt):
    stage.set_alarm("ALARM")
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 1 and "already in ALARM before the deploy" in r.stderr
    assert stage.live_digests() == {digest(1)}
    stage.write_config(preexisting="ignore")
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 0, r


def test_rollback_command_and_recover(stage, run_pt):
    c = ("--config", stage.config, "--stage", "staging")
    stage.write_config(strategy="all-at-once", bake="0s")
    assert run_pt("deploy", *c, "--image-uri", uri(2)).exit_code == 0
    assert run_pt("deploy", *c, "--image-uri", uri(3)).exit_code == 0
    dry = run_pt("rollback", *c, "--dry-run", "--output", "json")
    assert dry.exit_code == 0 and dry.json()["digest"] == digest(2) and stage.live_digests() == {digest(3)}
    r = run_pt("rollback", *c, "--output", "json")
    assert r.exit_code == 0, r
    assert stage.live_digests() == {digest(2)}
    led = stage.ledger()
    assert led.last_succeeded("staging").digest == digest(2)
    # rollback --to the first deploy made by pt
    first = [h for h in led.query("staging", "deploy") if h.digest == digest(2) and h.data["operation"] == "deploy"]
    assert run_pt("rollback", *c, "--to", first[0].id).exit_code == 0
    assert stage.live_digests() == {digest(2)}
    assert run_pt("recover", *c).stdout.startswith("nothing to recover")


def _deps(stage, clock=time.time, sleep=time.sleep, log=None):
    from pipeline_tools.release import ledger

    ledger.ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    return dp.Deps(stage.lam, stage.cw, Ledger(stage.ddb, "rel-ledger"), clock=clock, sleep=sleep,
                   log=log or (lambda m: None), actor={"name": "alice"}, lease=30)


def _plan(stage, n=2, name="staging"):
    from pipeline_tools.core.config import load

    cfg = load(stage.config)
    return cfg, dp.plan_deploy(cfg, name, "model", dp.parse_image_uri(uri(n)), stage.lam)


def test_died_mid_way_next_deploy_refuses_recover_rolls_back(stage, run_pt):
    """Simulate a SIGKILL after traffic moved: record not final, lease expired."""
    cfg, plan = _plan(stage)
    deps = _deps(stage)

    class Boom(BaseException):
        pass

    def log(m):
        if m.startswith("traffic 50%"):
            raise Boom()  # the process vanishes here: no rollback, no ledger write, lock kept

    deps.log = log
    deps.lease = 0.5
    with pytest.raises(Boom):
        _run_phases_without_handlers(cfg, plan, deps)
    assert {w.get("2") for _, w in stage.live().values()} == {0.5}
    wait_for(lambda: stage.ledger().current_lock("staging").lease_until < time.time(), timeout=5)
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(3))
    assert r.exit_code == 4 and "pt recover --stage staging" in r.stderr, r
    r = run_pt("recover", "--config", stage.config, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0 and r.json()["action"] == "roll-back", r
    assert stage.live_digests() == {digest(1)} and all(not w for _, w in stage.live().values())
    rec = stage.ledger().query("staging", "deploy")[0]
    assert rec.state == "rolled_back" and any(t.get("event") == "recover" for t in rec.transitions)


def _run_phases_without_handlers(cfg, plan, deps):
    """deploy()'s phases without its rollback handler: a hard kill (SIGKILL) leaves exactly this."""
    run = dp._Run(cfg, plan, deps, dp.GateWatch(deps.cloudwatch, plan.policy, deps.clock()), dp._Signals())
    run.id = dp.new_id(deps.clock())
    run.lock = deps.ledger.acquire(plan.stage, run.id, deps.actor, deps.lease)
    deps.ledger.put_record("deploy", plan.stage, {"operation": "deploy", "digest": plan.digest,
                                                  "functions": dp._function_data(plan, {})},
                           actor=deps.actor, state="locked", record_id=run.id)
    run.mark("updating")
    run.update()
    run.shift()
    return run


def test_alarm_flip_each_phase_rolls_back(stage):
    """set_alarm_state → ALARM while updating / shifting / baking: every function back on v1."""
    stage.write_config(strategy="canary", percent=50, interval="0.3s", bake="0.5s", poll="0.1s")
    for phase in ("updating", "shifting", "baking"):
        stage.set_alarm("OK")
        cfg, plan = _plan(stage)
        deps = _deps(stage)
        flipped: dict = {}

        def watcher(phase=phase, flipped=flipped, deps=deps):
            def cond():
                recs = deps.ledger.query("staging", "deploy", limit=1)
                return recs and recs[0].state == phase and not recs[0].final
            wait_for(cond, timeout=10, interval=0.01)
            stage.set_alarm("ALARM")
            flipped["at"] = time.time()

        t = threading.Thread(target=watcher)
        t.start()
        with pytest.raises(dp.DeployFailed) as e:
            dp.deploy(cfg, plan, deps)
        t.join()
        assert "rolled back" in e.value.message or "failed" in e.value.message
        assert "rel-staging-predict-errors" in e.value.message
        assert stage.live_digests() == {digest(1)}, phase
        assert all(not w for _, w in stage.live().values())
        rec = deps.ledger.query("staging", "deploy", limit=1)[0]
        assert rec.state in ("rolled_back", "failed") and rec.data["verdict"]["status"] == "FAIL"
        assert deps.ledger.current_lock("staging") is None


def test_alarm_to_rollback_latency(stage, record_property):
    """Alarm → rollback completed within poll + 2 s (poll 0.1 s here)."""
    stage.write_config(strategy="all-at-once", bake="5s", poll="0.1s")
    cfg, plan = _plan(stage)
    deps = _deps(stage)
    flipped: dict = {}

    def watcher():
        wait_for(lambda: (deps.ledger.query("staging", "deploy", limit=1) or [None])[0] is not None
                 and deps.ledger.query("staging", "deploy", limit=1)[0].state == "baking", timeout=10)
        stage.set_alarm("ALARM")
        flipped["at"] = time.time()

    t = threading.Thread(target=watcher)
    t.start()
    with pytest.raises(dp.DeployFailed):
        dp.deploy(cfg, plan, deps)
    t.join()
    rec = deps.ledger.query("staging", "deploy", limit=1)[0]
    done = next(tr["ts"] for tr in rec.transitions if tr.get("state") == "rolled_back")
    latency = done - flipped["at"]
    record_property("alarm_to_rollback_s", round(latency, 3))
    print(f"alarm→rollback latency: {latency:.3f}s (poll 0.1s)")
    assert latency <= 0.1 + 2.0


def test_old_versions_pruned_beyond_keep_versions(stage, run_pt):
    """keep_versions 2: versions beyond the newest two go, unless an alias references them."""
    stage.write_config(strategy="all-at-once", bake="0s")
    c = ("--config", stage.config, "--stage", "staging")
    for n in (2, 3):
        assert run_pt("deploy", *c, "--image-uri", uri(n)).exit_code == 0
    stage.lam.create_alias(FunctionName=stage.fname("predict"), Name="pinned", FunctionVersion="1")
    stage.write_config(strategy="all-at-once", bake="0s", keep=2)
    r = run_pt("deploy", *c, "--image-uri", uri(1), "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["pruned"] == {"rel-staging-batch-score": ["1", "2"], "rel-staging-predict": ["2"]}
    versions = [v["Version"] for v in stage.lam.list_versions_by_function(FunctionName=stage.fname("predict"))
                ["Versions"]]
    assert versions == ["$LATEST", "1", "3", "4"]


def test_credentials_expire_mid_deploy_then_recover(stage):
    """Credentials expire between two traffic steps: rollback cannot finish, the stage stays
    locked with an unfinished record; after a refresh, `recover` rolls every function back."""
    from botocore.awsrequest import AWSResponse

    from pipeline_tools.core.errors import LockedError

    stage.write_config(strategy="linear", percent=50, interval="0.1s", bake="0s")
    cfg, plan = _plan(stage)
    deps = _deps(stage)
    state = {"alias_calls": 0, "expired": False}

    class Raw:
        def __init__(self, b):
            self.b = b

        def stream(self, **_):
            yield self.b

    def hook(request, event_name="", **_):
        if event_name.endswith("UpdateAlias") and not state["expired"]:
            state["alias_calls"] += 1
            state["expired"] = state["alias_calls"] > 2  # after the 50 % step of both functions
        if state["expired"]:
            body = json.dumps({"__type": "ExpiredTokenException",
                               "message": "The security token included in the request is expired"}).encode()
            return AWSResponse(request.url, 403, {"x-amzn-ErrorType": "ExpiredTokenException",
                                                  "Content-Type": "application/x-amz-json-1.0"}, Raw(body))
        return None

    stage.lam.meta.events.register_first("before-send", hook)
    stage.ddb.meta.events.register_first("before-send", hook)
    with pytest.raises(dp.DeployFailed) as e:
        dp.deploy(cfg, plan, deps)
    assert "ExpiredToken" in e.value.message and "pt recover --stage staging" in e.value.hint
    state["expired"], state["alias_calls"] = False, -10**6  # credentials refreshed
    rec = deps.ledger.query("staging", "deploy", limit=1)[0]
    assert not rec.final and deps.ledger.current_lock("staging") is not None
    with pytest.raises(LockedError):
        deps.ledger.acquire("staging", "other", {"name": "x"}, lease=5)  # still locked
    out = dp.recover(cfg, "staging", deps, force=True)
    assert out["action"] == "roll-back" and out["state"] == "rolled_back"
    assert stage.live_digests() == {digest(1)} and all(not w for _, w in stage.live().values())
    assert deps.ledger.current_lock("staging") is None


def test_gate_still_wait_at_end_of_bake_rolls_back(stage):
    """insufficient_data: wait → an undecided gate after the bake is not a pass."""
    stage.write_config(strategy="all-at-once", bake="0.3s", poll="0.1s")
    text = stage.config.read_text().replace("insufficient_data: pass", "insufficient_data: wait")
    stage.config.write_text(text)
    stage.set_alarm("INSUFFICIENT_DATA")
    cfg, plan = _plan(stage)
    deps = _deps(stage)
    with pytest.raises(dp.DeployFailed) as e:
        dp.deploy(cfg, plan, deps)
    assert "gate undecided" in e.value.message and "INSUFFICIENT_DATA" in e.value.message
    assert stage.live_digests() == {digest(1)}


def test_lease_renewed_during_a_long_deploy(stage):
    """Lease 1.2 s, bake 3.5 s with no ledger transition inside it: only the heartbeat (every
    lease/3) keeps the lock, and a second deployer never gets in until the deploy is final."""
    from pipeline_tools.core.errors import LockedError
    from pipeline_tools.release.ledger import RecoveryNeeded

    stage.write_config(strategy="canary", percent=50, interval="0.3s", bake="3.5s", poll="0.1s")
    cfg, plan = _plan(stage)
    deps = _deps(stage)
    deps.lease = 1.2
    attempts: list[str] = []

    def intruder():
        wait_for(lambda: deps.ledger.current_lock("staging") is not None, timeout=10, interval=0.01)
        while deps.ledger.current_lock("staging") is not None:
            try:
                lock = deps.ledger.acquire("staging", "intruder", {"name": "mallory"}, lease=5)
                # legitimate only once the deploy has released: its record is final by then
                (rec,) = deps.ledger.query("staging", "deploy", limit=1)
                attempts.append("acquired-after" if rec.final else "acquired-during")
                deps.ledger.release(lock)
                return
            except RecoveryNeeded:  # (a LockedError too) the lease lapsed mid-deploy
                attempts.append("lapsed")
            except LockedError:
                attempts.append("locked")
            except Exception as e:  # anything else ends the intruder and fails the test
                attempts.append(f"error:{type(e).__name__}")
                return
            threading.Event().wait(0.1)

    t = threading.Thread(target=intruder)
    t.start()
    result = dp.deploy(cfg, plan, deps)
    t.join()
    assert result.state == "succeeded" and attempts.count("locked") >= 5
    assert set(attempts) <= {"locked", "acquired-after"}, attempts  # never "lapsed"


def test_recover_rolls_forward_after_bake(stage, run_pt):
    """Died in `finishing` (100 % reached and baked): recover completes it forward."""
    stage.write_config(strategy="all-at-once", bake="0s")
    cfg, plan = _plan(stage)
    deps = _deps(stage)
    deps.lease = 0.3
    run = _run_phases_without_handlers(cfg, plan, deps)
    run.bake()
    run.mark("finishing")  # ... and the process vanishes
    wait_for(lambda: stage.ledger().current_lock("staging").lease_until < time.time(), timeout=5)
    r = run_pt("recover", "--config", stage.config, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0 and r.json()["action"] == "roll-forward", r
    assert stage.live_digests() == {digest(2)}
    rec = stage.ledger().get("staging", run.id)
    assert rec.state == "succeeded" and "recovered forward" in rec.reason


def test_history_is_read_only_when_needed_and_moto_500_is_not_pass(stage):
    """moto answers describe_alarm_history with HTTP 500. Unchanged alarms need no history (no
    call, PASS); an alarm that fired and recovered between polls needs it: bounded retries with
    the injected sleep (botocore's own retries are off for it), then WAIT, never PASS."""
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.release.gate import HISTORY_ATTEMPTS, WAIT, GatePolicy, GateWatch

    cw = AwsFactory(region="us-east-1", max_attempts=5).client("cloudwatch")
    sent: list[str] = []
    slept: list[float] = []
    cw.meta.events.register("before-send.cloudwatch.DescribeAlarmHistory", lambda **kw: sent.append("x"))
    w = GateWatch(cw, GatePolicy(("rel-staging-*",), insufficient_data="pass"), time.time(), sleep=slept.append)
    w.start()
    v1, v2 = w.poll(time.time()), w.poll(time.time())
    assert v1.passed and v2.passed and sent == [] and slept == []
    stage.set_alarm("ALARM")
    stage.set_alarm("OK")  # between two polls: only the state timestamp shows it
    v3 = w.poll(time.time())
    assert v3.status == WAIT and len(sent) == HISTORY_ATTEMPTS and len(slept) == HISTORY_ATTEMPTS - 1
    assert "alarm history is unreadable" in v3.summary() and "rel-staging-predict-errors" in v3.summary()
    assert v3.to_dict()["errors"][0] == {"api": "describe_alarm_history", "message": "HTTP 500 from CloudWatch",
                                         "retryable": True}
