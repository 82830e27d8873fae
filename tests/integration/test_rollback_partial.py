"""`pt rollback` is a deploy: same lock (fenced), record and states; a rollback that stops
part-way (one of two functions moved, then an error) is finished by `pt recover`, and
`pt status` shows the split digests in between. Against moto server; the failure is injected
on the second function's UpdateAlias with a botocore hook (AccessDenied, as a role lacking
lambda:UpdateAlias on that function would answer)."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.core.config import load
from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_deploy import (
    digest,
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
)


def _two_deploys(stage, run_pt):
    c = ("--config", stage.config, "--stage", "staging")
    stage.write_config(strategy="all-at-once", bake="0s")
    assert run_pt("deploy", *c, "--image-uri", uri(2)).exit_code == 0
    assert run_pt("deploy", *c, "--image-uri", uri(3)).exit_code == 0
    return c


def _failing_lambda(function_name: str):
    lam = AwsFactory(region="us-east-1").client("lambda")

    def deny(params, **_kw):
        if params.get("FunctionName") == function_name:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "injected: not allowed"}},
                              "UpdateAlias")

    lam.meta.events.register("before-parameter-build.lambda.UpdateAlias", deny)
    return lam


def test_rollback_goes_through_the_deploy_states(stage, run_pt):
    c = _two_deploys(stage, run_pt)
    r = run_pt("rollback", *c, "--output", "json")
    assert r.exit_code == 0, r
    led = stage.ledger()
    rb = led.get("staging", r.json()["rollback_id"])
    assert rb.data["operation"] == "rollback" and rb.state == "succeeded"
    assert [t.get("state") for t in rb.transitions if t.get("state")] == ["locked", "shifting", "finishing",
                                                                         "succeeded"]
    assert rb.data["placements"]["lambda:predict"]["digest"] == digest(3)  # what ran when it started
    assert led.current_lock("staging") is None and stage.live_digests() == {digest(2)}


def test_partial_rollback_is_recoverable_and_status_shows_the_split(stage, run_pt):
    c = _two_deploys(stage, run_pt)
    cfg = load(stage.config)
    led = Ledger(stage.ddb, "rel-ledger")
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    deps = dp.Deps(_failing_lambda(stage.fname("predict")), stage.cw, led, clock=time.time, sleep=lambda s: None,
                   actor={"name": "alice"}, lease=30)
    with pytest.raises(DeployFailed) as e:
        dp.rollback(cfg, "staging", deps)
    assert "stopped part-way" in e.value.message and "AccessDenied" in e.value.message
    assert "pt recover --stage staging" in e.value.hint
    # split: batch-score moved back to image 2, predict still on image 3
    assert stage.live_digests() == {digest(2), digest(3)}
    rb = led.query("staging", "deploy", limit=1)[0]
    assert rb.data["operation"] == "rollback" and not rb.final and rb.state in ("shifting",)
    assert any(t.get("event") == "rollback-error" for t in rb.transitions)
    assert led.current_lock("staging") is None  # released: the record, not the lock, asks for recovery

    s = run_pt("status", *c, "--output", "json")
    assert s.exit_code == 0, s
    st = s.json()["stages"][0]
    assert st["split"] == {"model": {stage.fname("batch-score"): digest(2), stage.fname("predict"): digest(3)}}
    assert st["unfinished"]["id"] == rb.id and st["unfinished"]["operation"] == "rollback"
    human = run_pt("status", *c)
    assert "split across digests" in human.stdout and "pt recover --stage staging" in human.stdout

    d = run_pt("deploy", *c, "--image-uri", uri(1))
    assert d.exit_code == 4 and "pt recover --stage staging" in d.stderr, d

    r = run_pt("recover", *c, "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["action"] == "finish-rollback" and r.json()["state"] == "succeeded"
    assert stage.live_digests() == {digest(2)} and all(not w for _, w in stage.live().values())
    done = led.get("staging", rb.id)
    assert done.state == "succeeded" and any(t.get("event") == "recover" for t in done.transitions)
    undone = led.get("staging", rb.data["current"])
    assert undone.digest == digest(3) and undone.data["rolled_back_by"] == rb.id
    assert led.last_succeeded("staging").digest == digest(2)
    assert "split" not in run_pt("status", *c, "--output", "json").json()["stages"][0]
    assert run_pt("recover", *c).stdout.startswith("nothing to recover")


def test_rollback_refused_on_every_function_is_left_for_recover(stage, run_pt):
    """Every function refused: the rollback is not undone nor marked final; `pt recover` finishes it."""
    c = _two_deploys(stage, run_pt)
    lam = AwsFactory(region="us-east-1").client("lambda")

    def deny(params, **_kw):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "injected"}}, "UpdateAlias")

    lam.meta.events.register("before-parameter-build.lambda.UpdateAlias", deny)
    deps = dp.Deps(lam, stage.cw, Ledger(stage.ddb, "rel-ledger"), sleep=lambda s: None, actor={"name": "a"},
                   lease=30)
    with pytest.raises(DeployFailed) as e:
        dp.rollback(load(stage.config), "staging", deps)
    assert "stopped part-way" in e.value.message and "v3" in e.value.message  # where each function stands
    assert stage.live_digests() == {digest(3)}
    assert not stage.ledger().query("staging", "deploy", limit=1)[0].final
    assert run_pt("recover", *c, "--output", "json").exit_code == 0
    assert stage.live_digests() == {digest(2)}  # recover finishes what the rollback started
