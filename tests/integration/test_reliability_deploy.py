"""Reliability of `pt deploy` against moto server over real HTTP.

R1: SIGTERM at seeded random points (every phase) → every function at 100 % on one version,
    a final ledger record, no lock left.
R2: 20 % injected throttling / 5xx on every AWS call (botocore before-send hook) → still correct.
R3: two concurrent deploys of one stage → exactly one proceeds, the other exits 4.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.core.config import load
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.ledger import FINAL_STATES, Ledger, ensure_table

from .conftest_deploy import (
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
    wait_for,
)

SEED = int(os.environ.get("PT_R1_SEED", "20261127"))
# Ten kill points: every phase twice, once in each half of the jitter window (stratified, seeded). Twenty
# uniform points (the old default) spent 4 runs per phase with no promise of spread; two strata per phase
# hit both "just entered" and "well into it" every time, at half the cost (~5 s of process start, deploy
# and rollback per run). PT_R1_RUNS=40 gives each phase 8 strata for a soak.
RUNS = int(os.environ.get("PT_R1_RUNS", "10"))
PHASES = ("locked", "updating", "shifting", "baking", "finishing")
JITTER = 0.25  # seconds after the phase is entered


def kill_offset(rng: random.Random, run: int) -> float:
    """The run's seeded offset into its phase: visit k of a phase draws from stratum k of [0, JITTER)."""
    per_phase = max(1, -(-RUNS // len(PHASES)))
    width = JITTER / per_phase
    return rng.uniform(0.0, width) + width * ((run // len(PHASES)) % per_phase)


def assert_consistent(stage, allowed: set[str]) -> str:
    """Every function at 100 % on one version, all on the same digest (one of `allowed`)."""
    live = stage.live()
    assert all(not w for _, w in live.values()), f"weighted alias left behind: {live}"
    digests = stage.live_digests()
    assert len(digests) == 1 and digests <= allowed, f"functions disagree or unexpected digest: {digests}"
    return next(iter(digests))


def _spawn(stage, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline_tools", "deploy", "--config", str(stage.config),
                             "--stage", "staging", "--image-uri", uri(n), "--output", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def test_r1_sigterm_at_random_points(stage):
    stage.write_config(strategy="canary", percent=50, interval="0.2s", bake="0.3s", poll="0.1s")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led = Ledger(stage.ddb, "rel-ledger")
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    current = 1
    for i in range(RUNS):
        phase = PHASES[i % len(PHASES)]
        jitter = kill_offset(rng, i)
        target = 2 if current == 1 else 1
        known = {r.id for r in led.query("staging", "deploy")}
        proc = _spawn(stage, target)

        def entered(proc=proc, known=known, phase=phase):
            if proc.poll() is not None:
                return "exited"
            recs = [r for r in led.query("staging", "deploy", limit=1) if r.id not in known]
            return recs and any(t.get("state") == phase for t in recs[0].transitions) and recs[0]

        hit = wait_for(entered, timeout=60, interval=0.01)
        if hit != "exited":
            time.sleep(jitter)  # the kill point: phase entered + seeded jitter
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        rec = led.query("staging", "deploy", limit=1)[0]
        assert rec.id not in known, f"run {i}: no ledger record ({err[-500:]})"
        assert rec.state in FINAL_STATES, f"run {i} ({phase}+{jitter:.2f}s): record left in {rec.state}: {err[-800:]}"
        assert led.current_lock("staging") is None, f"run {i}: lock left behind"
        live = assert_consistent(stage, {digest(1), digest(2)})
        expected = digest(target) if rec.state == "succeeded" else digest(current)
        assert live == expected, (f"run {i} ({phase}+{jitter:.2f}s): ledger says {rec.state} but live is "
                                  f"{live[:19]}: {rec.transitions} {stage.live()} {err[-1500:]}")
        # succeeded: 0, or killed by the signal after the deploy had finished (handlers restored)
        assert proc.returncode in ((0, -signal.SIGTERM) if rec.state == "succeeded" else (1,)), \
            (proc.returncode, err[-800:])
        if rec.state != "succeeded":
            assert "SIGTERM" in rec.reason or "interrupted" in (rec.reason or ""), rec.reason
        outcomes[rec.state] = outcomes.get(rec.state, 0) + 1
        current = target if rec.state == "succeeded" else current
    print(f"R1 outcomes over {RUNS} runs (seed {SEED}): {outcomes}")
    assert outcomes.get("rolled_back", 0) + outcomes.get("failed", 0) >= RUNS // 2
    assert outcomes.get("succeeded", 0) >= 1


# --- R2: injected throttling and 5xx ----------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes):
        self._body = body

    def stream(self, **_kw):
        yield self._body

    def read(self, *_a, **_kw):
        return self._body


def inject_faults(client, rng: random.Random, rate: float, counter: dict) -> None:
    from botocore.awsrequest import AWSResponse

    protocol = client.meta.service_model.protocol

    def hook(request, **_kw):
        if rng.random() >= rate:
            return None
        counter["n"] = counter.get("n", 0) + 1
        if protocol in ("json", "rest-json") and rng.random() < 0.5:
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded (injected)"}).encode()
            return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException",
                                                  "Content-Type": "application/x-amz-json-1.0"}, _Raw(body))
        return AWSResponse(request.url, 503, {}, _Raw(b""))

    client.meta.events.register_first("before-send", hook)


def test_r2_throttling_and_5xx(stage):
    stage.write_config(strategy="canary", percent=50, interval="0.1s", bake="0.2s", poll="0.1s")
    factory = AwsFactory(region="us-east-1", max_attempts=8)
    rng = random.Random(SEED)
    counter: dict = {}
    lam, cw, ddb = factory.client("lambda"), factory.client("cloudwatch"), factory.client("dynamodb")
    ensure_table(ddb, "rel-ledger", project="rel", stage="staging", local=True)
    for c in (lam, cw, ddb):
        inject_faults(c, rng, 0.2, counter)
    cfg = load(stage.config)
    deps = dp.Deps(lam, cw, Ledger(ddb, "rel-ledger"), actor={"name": "alice"}, lease=30)
    states = []
    for n in (2,):
        plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(n)), lam)
        try:
            states.append(dp.deploy(cfg, plan, deps).state)
        except dp.DeployFailed:
            states.append(deps.ledger.query("staging", "deploy", limit=1)[0].state)
        assert_consistent(stage, {digest(1), digest(2), digest(3)})
        assert deps.ledger.query("staging", "deploy", limit=1)[0].final
        assert deps.ledger.current_lock("staging") is None
    # and a gate FAIL under the same storm still rolls every function back
    before = assert_consistent(stage, {digest(1), digest(2), digest(3)})
    flip = threading.Thread(target=lambda: (wait_for(lambda: any(
        t.get("state") == "baking" for r in deps.ledger.query("staging", "deploy", limit=1) for t in r.transitions),
        timeout=30), stage.set_alarm("ALARM")))
    stage.write_config(strategy="all-at-once", bake="3s", poll="0.1s")
    cfg = load(stage.config)
    plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(1)), lam)
    flip.start()
    with pytest.raises(dp.DeployFailed):
        dp.deploy(cfg, plan, deps)
    flip.join()
    assert assert_consistent(stage, {before}) == before
    print(f"R2: {counter.get('n', 0)} injected faults; outcomes {states}")
    assert counter.get("n", 0) >= 8
    assert states == ["succeeded"]  # 8 attempts per call: 0.2**8 odds of a call failing for good


# --- R3: concurrent deploys -------------------------------------------------------------------


def test_r3_two_concurrent_deploys_exactly_one_proceeds(stage):
    stage.write_config(strategy="canary", percent=50, interval="1s", bake="1.5s", poll="0.2s")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    a, b = _spawn(stage, 2), _spawn(stage, 3)
    (_, err_a), (_, err_b) = a.communicate(timeout=90), b.communicate(timeout=90)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 4], (a.returncode, err_a[-600:], b.returncode, err_b[-600:])
    winner, loser_err = (2, err_b) if a.returncode == 0 else (3, err_a)
    assert "stage staging is locked by alice (deploy " in loser_err
    assert assert_consistent(stage, {digest(winner)}) == digest(winner)
    recs = Ledger(stage.ddb, "rel-ledger").query("staging", "deploy")
    assert [r.state for r in recs] == ["succeeded"]


def test_lock_race_in_threads(stage):
    """Eight racing acquirers on one stage: exactly one lock."""
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led = Ledger(AwsFactory(region="us-east-1").client("dynamodb"), "rel-ledger")
    wins, errors = [], []
    barrier = threading.Barrier(8)

    def go(i):
        barrier.wait()
        try:
            wins.append(led.acquire("staging", f"d{i}", {"name": f"u{i}"}, lease=30).deploy_id)
        except Exception as e:
            errors.append(type(e).__name__)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and errors == ["LockedError"] * 7
    assert led.current_lock("staging").deploy_id == wins[0]


def test_ctrl_c_while_shifting_rolls_back(stage):
    stage.write_config(strategy="canary", percent=50, interval="2s", bake="0s", poll="0.1s")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led = Ledger(stage.ddb, "rel-ledger")
    proc = _spawn(stage, 2)
    wait_for(lambda: any(t.get("percent") == 50 for r in led.query("staging", "deploy", limit=1)
                         for t in r.transitions) and {w.get("2") for _, w in stage.live().values()} == {0.5},
             timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-800:]
    assert "rolled back" in err and "SIGINT" in err
    assert assert_consistent(stage, {digest(1)}) == digest(1)
    assert led.query("staging", "deploy", limit=1)[0].state == "rolled_back"
