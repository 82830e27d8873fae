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
        # what runs: alias + the live version's digest, then again under the lock
        "lambda.GetAlias": 4, "lambda.GetFunction": 2,
        # the functions' configuration and reserved concurrency (a config change is a release of its own):
        # existence, the live configuration, LastUpdateStatus after the code update, under the lock
        "lambda.GetFunctionConfiguration": 10, "lambda.GetFunctionConcurrency": 4,
        "lambda.UpdateFunctionCode": 2, "lambda.PublishVersion": 2, "lambda.UpdateAlias": 2,
        # gate: alarms at the start and after the shift; the candidates' own errors (ExecutedVersion)
        "cloudwatch.DescribeAlarms": 2, "cloudwatch.GetMetricData": 1,
        # ledger: table check, startable check and the check under the lock; lock, record, transitions
        "dynamodb.DescribeTable": 1, "dynamodb.Query": 2, "dynamodb.PutItem": 1, "dynamodb.TransactWriteItems": 6,
        "dynamodb.DeleteItem": 1,
    }
    rec = stage.ledger().get("staging", data["deploy_id"])
    assert [t["state"] for t in rec.transitions if "state" in t] == [
        "locked", "updating", "shifting", "baking", "finishing", "succeeded"]
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
