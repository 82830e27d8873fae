"""`pt status` and `pt history` against moto server: which modules the process imports and which
AWS requests it sends (deterministic; their speed is measured by bench/startup.py and
bench/scale.py, not here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest_deploy import (
    stage_fixture,  # noqa: F401 (pytest fixture)
    uri,
)

# Neither command needs these: the pydantic models (the lean pipeline.yml view answers), boto3 and
# s3transfer (botocore clients), docker, the CDK, rich (output is not a terminal here).
NOT_IMPORTED = {"pydantic", "pydantic_core", "boto3", "s3transfer", "docker", "aws_cdk", "jsii", "rich"}

PROBE = """
import json, sys
from collections import Counter
import botocore.session
ops = Counter()
orig = botocore.session.Session.__init__
def init(sess, *a, **kw):
    orig(sess, *a, **kw)
    sess.register("before-send", lambda event_name="", **_: ops.update([event_name.split(".", 1)[1]]))
botocore.session.Session.__init__ = init
sys.modules.pop("boto3", None)
from pipeline_tools import cli
code = cli.main({args!r})
sys.stderr.write("PROBE=" + json.dumps({{"code": code, "modules": sorted({{m.split(".")[0] for m in sys.modules}}),
                                         "requests": ops}}) + "\\n")
"""


def _probe(*args: str) -> tuple[dict, str]:
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line = next((ln for ln in r.stderr.splitlines() if ln.startswith("PROBE=")), None)
    assert line is not None, r.stderr
    return json.loads(line[len("PROBE="):]), r.stdout


@pytest.fixture
def deployed(stage, run_pt):
    r = run_pt("deploy", "--config", stage.config, "--stage", "staging", "--image-uri", uri(2),
               "--strategy", "all-at-once")
    assert r.exit_code == 0, r
    return stage


@pytest.mark.parametrize("output", ["json", "human"])
def test_status_imports_no_pydantic_boto3_or_docker_and_sends_seven_requests(deployed, output):
    got, stdout = _probe("status", "--config", str(deployed.config), "--stage", "staging", "--output", output)
    assert got["code"] == 0, stdout
    assert not set(got["modules"]) & NOT_IMPORTED
    # ledger: table check, last deploy, lock; per function: alias and the live version's image
    assert got["requests"] == {"dynamodb.DescribeTable": 1, "dynamodb.Query": 1, "dynamodb.GetItem": 1,
                               "lambda.GetAlias": 2, "lambda.GetFunction": 2}
    assert "sts.GetCallerIdentity" not in got["requests"]
    if output == "json":
        doc = json.loads(stdout)
        assert [f["version"] for f in doc["stages"][0]["functions"]] == ["2", "2"]
    else:
        assert "succeeded" in stdout


def test_history_imports_no_pydantic_boto3_or_docker_and_sends_two_requests(deployed):
    got, stdout = _probe("history", "--config", str(deployed.config), "--stage", "staging", "--output", "json")
    assert got["code"] == 0, stdout
    assert not set(got["modules"]) & NOT_IMPORTED
    assert got["requests"] == {"dynamodb.DescribeTable": 1, "dynamodb.Query": 1}
    assert [d["state"] for d in json.loads(stdout)["deploys"]] == ["succeeded"]


def test_status_of_a_stage_with_other_targets_reads_the_full_config(deployed):
    """A `targets:` section (state machines, Batch jobs) is the full model's to answer: the lean
    view defers to it, and status still lists the Lambdas."""
    text = deployed.config.read_text()
    deployed.config.write_text(text + "targets:\n  stepfunctions: {}\n  batch: {}\n")
    got, stdout = _probe("status", "--config", str(deployed.config), "--stage", "staging", "--output", "json")
    assert got["code"] == 0, stdout
    assert "pydantic" in got["modules"]
    assert [f["function"] for f in json.loads(stdout)["stages"][0]["functions"]] == ["batch-score", "predict"]
