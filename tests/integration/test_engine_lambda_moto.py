"""The target engine with LambdaTargets against moto server (real HTTP): two functions in the
stage's order, a failing second target, a configuration-only change, a smoke failure, --target."""

from __future__ import annotations

import time

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release import engine
from pipeline_tools.release.ledger import ensure_table
from pipeline_tools.release.target import Release
from pipeline_tools.targets import TargetEnv, build_targets

from .conftest_deploy import (
    REPO,
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
)

ORDER = 'targets: ["lambda:predict", "lambda:batch-score"]\n    deploy:'


def edit(stage, old: str, new: str) -> None:
    text = stage.config.read_text()
    assert old in text, old
    stage.config.write_text(text.replace(old, new, 1))


def versions(stage) -> dict[str, str]:
    return {fn: v for fn, (v, _w) in stage.live().items()}


def test_two_targets_second_fails_after_traffic_moved_both_end_on_old(stage):
    edit(stage, "deploy:", ORDER)
    cfg = config_mod.load(stage.config)
    env = TargetEnv(client=stage.aws.client, clock=time.time, sleep=time.sleep)
    targets = build_targets(cfg, "staging", env)
    assert [t.id for t in targets] == ["lambda:predict", "lambda:batch-score"]
    second = targets[1]
    real_shift = second.shift

    def broken_shift(placement, candidate, percent):
        real_shift(placement, candidate, percent)  # traffic moved, then the target fails
        if percent == 100:
            raise RuntimeError("batch-score: reserved concurrency refused")

    second.shift = broken_shift
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    deps = engine.EngineDeps(cloudwatch=stage.cw, ledger=stage.ledger(), actor={"name": "alice"}, lease=30)
    plan = engine.plan(cfg, "staging", targets, Release(uri(2), digest(2), "", "model"))
    with pytest.raises(DeployFailed, match="rolled back: error while shifting"):
        engine.run(plan, deps)
    assert stage.live_digests() == {digest(1)}
    assert all(not w for _v, w in stage.live().values())
    rec = stage.ledger().query("staging", "deploy", limit=1)[0]
    assert rec.state == "rolled_back"
    assert list(rec.data["restored"]) == ["lambda:batch-score", "lambda:predict"]  # reverse order
    assert set(rec.data["restored"].values()) == {"restored"}


def test_cli_deploy_in_stage_order_then_config_only_change(stage, run_pt):
    stage.write_config(strategy="all-at-once", bake="0s")
    edit(stage, "deploy:", ORDER)
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--output", "json")
    assert r.exit_code == 0, r
    data = r.json()
    assert [t["target"] for t in data["targets"]] == ["lambda:predict", "lambda:batch-score"]
    assert stage.live_digests() == {digest(2)}
    before = versions(stage)
    # the same digest with only predict's memory changed: a deploy of predict alone
    edit(stage, "predict: {image: model}", "predict: {image: model, memory: 1024, environment: {MODE: fast}}")
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--output", "json")
    assert r.exit_code == 0, r
    out = r.json()
    assert out["state"] == "succeeded"
    changed = {t["target"]: t["changed"] for t in out["targets"]}
    assert changed == {"lambda:predict": True, "lambda:batch-score": False}
    after = versions(stage)
    assert after["batch-score"] == before["batch-score"] and after["predict"] != before["predict"]
    live = stage.lam.get_function_configuration(FunctionName=stage.fname("predict"), Qualifier=after["predict"])
    assert live["MemorySize"] == 1024 and live["Environment"]["Variables"]["MODE"] == "fast"
    rec = stage.ledger().get("staging", out["deploy_id"])
    assert rec.data["candidates"]["lambda:predict"]["data"]["config"]["memory"] == 1024
    # and now nothing is left to do
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2))
    assert r.exit_code == 0 and "nothing to deploy" in r.stdout


def test_cli_smoke_failure_ends_at_the_old_version(stage, run_pt):
    stage.write_config(strategy="all-at-once", bake="0s")
    edit(stage, "predict: {image: model}",
         "predict: {image: model, smoke: {payload: {x: 1}, expect_status: 200, expect_keys: [prediction]}}")
    # moto cannot invoke image functions (HTTP 500): the smoke invoke fails, as a broken image would
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2), "--output", "json")
    assert r.exit_code == 1, r
    assert "smoke invoke of predict" in r.stderr and "traffic" not in r.stdout
    assert versions(stage) == {"batch-score": "1", "predict": "1"}
    assert stage.live_digests() == {digest(1)}
    rec = stage.ledger().query("staging", "deploy", limit=1)[0]
    assert rec.state == "failed" and "traffic untouched" in rec.reason
    assert stage.ledger().current_lock("staging") is None


def test_cli_target_selection(stage, run_pt):
    stage.write_config(strategy="all-at-once", bake="0s")
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2),
               "--target", "lambda:predict", "--output", "json")
    assert r.exit_code == 0, r
    assert [t["target"] for t in r.json()["targets"]] == ["lambda:predict"]
    assert versions(stage)["batch-score"] == "1" and versions(stage)["predict"] != "1"
    bad = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(3),
                 "--target", "lambda:nope")
    assert bad.exit_code == 2 and "has no such target" in bad.stderr and "lambda:predict" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(3), "--target", "lamda")
    assert bad.exit_code == 2 and "unknown kind 'lamda'" in bad.stderr


def test_cli_rollback_and_recover_of_engine_records(stage, run_pt):
    stage.write_config(strategy="all-at-once", bake="0s")
    for n in (2, 3):
        r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(n))
        assert r.exit_code == 0, r
    r = run_pt("rollback", "--config", stage.config, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["state"] == "succeeded" and stage.live_digests() == {digest(2)}
    assert f"{REPO}@" in (stage.ledger().query("staging", "deploy", limit=1)[0].data.get("image_uri") or "")
    r = run_pt("recover", "--config", stage.config, "--stage", "staging", "--output", "json")
    assert r.exit_code == 0 and r.json()["action"] == "nothing-to-recover"
    h = run_pt("history", "--config", stage.config, "--stage", "staging", "--target", "lambda:predict",
               "--output", "json")
    assert h.exit_code == 0, h
    assert len(h.json()["deploys"]) == 3 and all("lambda:predict" in d["targets"] for d in h.json()["deploys"])
    s = run_pt("status", "--config", stage.config, "--stage", "staging", "--target", "lambda:predict",
               "--output", "json")
    assert s.exit_code == 0, s
    assert [f["function"] for f in s.json()["stages"][0]["functions"]] == ["predict"]
