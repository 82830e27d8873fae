"""Request counts of `pt deploy` (botocore `before-send` events: one per HTTP request, retries
included) against moto server. Counts, not times: the budget each safety check spends is
listed in docs/performance.md; a new request in the deploy path has to be added here on purpose."""

from __future__ import annotations

from collections import Counter

import botocore.session
import pytest

from .conftest_deploy import (
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
)


@pytest.fixture
def counted(monkeypatch):
    ops: Counter[str] = Counter()
    orig = botocore.session.Session.__init__

    def init(sess, *a, **kw):
        orig(sess, *a, **kw)
        sess.register("before-send", lambda event_name="", **_: ops.update([event_name.split(".", 1)[1]]))

    monkeypatch.setattr(botocore.session.Session, "__init__", init)
    return ops


def _deploy(run_pt, stage, n: int):
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--strategy", "all-at-once",
               "--image-uri", uri(n), "--output", "json")
    assert r.exit_code == 0, r
    return r.json()


def test_all_at_once_two_functions_request_budget(stage, run_pt, counted):
    stage.write_config(strategy="all-at-once", bake="0s", keep=50)
    _deploy(run_pt, stage, 2)  # the ledger table exists from here on (local mode creates it)
    counted.clear()
    data = _deploy(run_pt, stage, 3)
    assert data["state"] == "succeeded"
    assert dict(counted) == {
        "ecr.DescribeImages": 1, "sts.GetCallerIdentity": 1,
        # what runs: alias + the live version's digest and configuration, read once (the first alias
        # write is conditional on the RevisionId read here, so the lock does not need a second read)
        "lambda.GetAlias": 2, "lambda.GetFunction": 2,
        # the code updated and a version published in one call each; traffic moved
        "lambda.UpdateFunctionCode": 2, "lambda.UpdateAlias": 2,
        # gate: alarms at the start and after the shift (a 0 s bake: the candidates' own metrics
        # cannot exist yet, so GetMetricData waits for a bake or a canary step that has a window)
        "cloudwatch.DescribeAlarms": 2,
        # ledger: the lock, the check for a dead deploy under it, the record (locked+updating), the
        # placements and candidates before traffic moves, the last state together with the release
        "dynamodb.PutItem": 1, "dynamodb.Query": 1, "dynamodb.TransactWriteItems": 3,
    }
    rec = stage.ledger().get("staging", data["deploy_id"])
    states = [t for t in rec.transitions if "state" in t]
    assert [t["state"] for t in states] == ["locked", "updating", "shifting", "baking", "finishing", "succeeded"]
    assert [t["ts"] for t in states] == sorted(t["ts"] for t in states)  # folded states keep their own time
    assert rec.data["verdict"]["status"] == "PASS"
    assert stage.ledger().current_lock("staging") is None


def test_pruning_writes_finishing_before_its_requests(stage, run_pt, counted):
    stage.write_config(strategy="all-at-once", bake="0s", keep=2)
    _deploy(run_pt, stage, 2)
    counted.clear()
    data = _deploy(run_pt, stage, 3)
    assert counted["lambda.DeleteFunction"] == 2  # v1 of each function is beyond keep 2
    rec = stage.ledger().get("staging", data["deploy_id"])
    states = [t["state"] for t in rec.transitions if "state" in t]
    assert states[-2:] == ["finishing", "succeeded"]
    assert rec.transitions[-2]["ts"] < rec.transitions[-1]["ts"]  # two writes: pruning went between them
