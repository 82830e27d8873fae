"""End to end: `pt release --local` on the example service, then a bad release with an alarm
injected during the canary. Real processes (pt, moto server), real docker builds, the local
registry; assertions on the ledger, the `live` aliases and the exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.release.ledger import Ledger

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris"
FUNCTIONS = ("predict", "batch-score")
APPROVERS = ("alice@example.com", "bob@example.com")


@pytest.fixture(scope="module")
def release_env(docker_client, registry, tmp_path_factory, lambda_base_image):
    base = lambda_base_image
    state = tmp_path_factory.mktemp("pt-local")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PT_ACTOR", "PT_STAGE"))}
    env.update(PT_LOCAL_DIR=str(state), PT_REGISTRY=registry, PT_LAMBDA_BASE_IMAGE=base,
               PT_APPROVERS=",".join(APPROVERS), PT_COMMIT_AUTHOR="carol@example.com", PT_ACTOR="ci-bot",
               NO_COLOR="1")
    yield state, env
    subprocess.run([sys.executable, "-m", "pipeline_tools", "local", "down"], env=env, capture_output=True,
                   timeout=60)


def _pt(env: dict, *args: str, timeout: float = 900, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline_tools", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout, input=stdin, cwd=ROOT)


def _local_env(state: Path) -> dict[str, str]:
    out = {}
    for line in (state / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line.removeprefix("export ").partition("=")
            out[k] = v
    return out


def _aws(state: Path) -> AwsFactory:
    import boto3

    f = AwsFactory(region="us-east-1", endpoint=_local_env(state)["AWS_ENDPOINT_URL"], max_attempts=2)
    f._session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                       region_name="us-east-1")
    return f


def _live(aws: AwsFactory, stage: str, fn: str) -> tuple[str, dict, str | None]:
    """(version, routing weights, image digest of that version) of a function's live alias.

    The digest comes from the version's description, where the deploy engine records it: moto
    answers a qualified get_function with $LATEST's code (lambda_ops.version_digest)."""
    from pipeline_tools.targets.lambda_ops import version_digest

    lam = aws.client("lambda")
    alias = lam.get_alias(FunctionName=f"iris-{stage}-{fn}", Name="live")
    version = alias["FunctionVersion"]
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return version, weights, version_digest(lam, f"iris-{stage}-{fn}", version)


def _bad_copy(tmp: Path) -> Path:
    """The example with one change: a new image, as a new commit would make.
    copytree keeps mtimes, so docker's layer cache serves every layer before the changed files."""
    dest = tmp / "iris-v2"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("reports", ".benchmarks", "__pycache__",
                                                                 ".pytest_cache"))
    # a code change (app.py is only in the last layer: the cheapest rebuild on vfs)
    app = dest / "app.py"
    app.write_text(app.read_text() + "\n# v2: a change that ships a new image\n")
    cfg = (EXAMPLE / "pipeline.yml").read_text()
    dockerfile = (ROOT / "docker" / "model" / "Dockerfile").resolve()
    cfg = "\n".join(f"    dockerfile: {dockerfile}" if ln.strip().startswith("dockerfile:") else ln
                    for ln in cfg.splitlines())
    (dest / "pipeline.yml").write_text(cfg + "\n")
    return dest / "pipeline.yml"


def test_release_then_a_bad_release_is_rolled_back_and_not_promoted(release_env, tmp_path):
    state, env = release_env

    # --- 1. the good release: staging canary, gate, two approvals, prod (window overridden) ----
    # its own moto server on a free port (a moto already answering on 4566 would be reused)
    from pipeline_tools.local.stack import free_port

    r = _pt(env, "release", "--local", "--port", free_port(), "--config", EXAMPLE / "pipeline.yml",
            "--output", "json")
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads(r.stdout)
    assert summary["result"] == "released" and summary["exit_code"] == 0
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert steps == {"local": "ok", "build": steps["build"], "test": "ok", "deploy:staging": "ok",
                     "gate:staging": "ok", "approvals:prod": "ok", "promote:prod": "ok", "status": "ok"}
    assert steps["build"] in ("ok", "skipped")
    good = summary["digest"]
    assert good and good.startswith("sha256:")

    aws = _aws(state)
    for stage in ("staging", "prod"):
        for fn in FUNCTIONS:
            version, weights, digest = _live(aws, stage, fn)
            assert (weights, digest) == ({}, good), (stage, fn)
            assert version != "1"  # moved off the bootstrap version
    ledger = Ledger(aws.client("dynamodb"), "iris-ledger")
    staging = ledger.query("staging", "deploy")[0]
    assert (staging.state, staging.digest) == ("succeeded", good)
    states = [t["state"] for t in staging.transitions if t.get("state")]  # events (notifications) have none
    assert states[-3:] == ["baking", "finishing", "succeeded"] and "shifting" in states
    assert [t.get("percent") for t in staging.transitions if t.get("state") == "shifting"] == [10, 100]  # canary
    assert any(t.get("event") == "notification" for t in staging.transitions)  # as `pt deploy` notifies
    assert staging.actor["name"] == "ci-bot" and staging.actor["author"] == "carol@example.com"
    assert ledger.query("staging", "gate")[0].state == "pass"
    approvals = ledger.query("prod", "approval")
    assert {a.data["approver"] for a in approvals} == set(APPROVERS)
    assert all(a.data["digest"] == good for a in approvals)
    prod = ledger.query("prod", "deploy")[0]
    assert (prod.state, prod.digest) == ("succeeded", good)
    assert prod.data["window"]["overridden"] is True and "pt release --local" in prod.data["window"]["reason"]
    overrides = ledger.query("prod", "window-override")
    assert overrides and "pt release --local" in (overrides[0].reason or "")
    assert ledger.query("prod", "promotion")[0].state == "succeeded"

    # --- 2. both handlers run like Lambda from the image prod's live alias points at -----------
    local_env = {**env, **_local_env(state)}
    r = _pt(local_env, "invoke", "--local", "predict", "--stage", "prod", "--config", EXAMPLE / "pipeline.yml",
            "--event", "-", "--output", "json", stdin=json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}), timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["status"] == "ok" and out["payload"]["class"] == "setosa" and out["image"].endswith(good)
    rows = {"rows": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    r = _pt(local_env, "invoke", "--local", "batch-score", "--config", EXAMPLE / "pipeline.yml", "--event", "-",
            "--output", "json", stdin=json.dumps(rows), timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    preds = json.loads(r.stdout)["payload"]["predictions"]
    assert [p["class"] for p in preds] == ["setosa", "virginica"]

    # --- 3. a bad release: alarm during the canary → rollback, promotion refused, exit 1 --------
    bad_cfg = _bad_copy(tmp_path)
    r = _pt(env, "release", "--local", "--inject-failure", "--config", bad_cfg, "--output", "json")
    assert r.returncode == 1, r.stderr[-4000:]
    summary = json.loads(r.stdout)
    assert summary["result"] == "rolled back" and summary["exit_code"] == 1
    bad = summary["digest"]
    assert bad != good
    steps = {s["step"]: s for s in summary["steps"]}
    assert steps["deploy:staging"]["status"] == "failed"
    assert "rolled back" in steps["deploy:staging"]["detail"] and "ALARM" in steps["deploy:staging"]["detail"]
    assert steps["gate:staging"]["status"] == steps["approvals:prod"]["status"] == "not run"
    assert steps["promote:prod"]["status"] == "blocked"
    assert steps["promote:prod"]["detail"].startswith("deployed:")

    for stage in ("staging", "prod"):
        for fn in FUNCTIONS:
            _version, weights, digest = _live(aws, stage, fn)
            assert (weights, digest) == ({}, good), (stage, fn)  # back on the good version at 100 %
    rolled = ledger.query("staging", "deploy")[0]
    assert (rolled.state, rolled.digest) == ("rolled_back", bad)
    assert "gate FAIL" in (rolled.reason or "") and "iris-staging-" in rolled.reason
    assert "rolling_back" in [t.get("state") for t in rolled.transitions]
    assert ledger.query("prod", "deploy")[0].digest == good  # prod never saw the bad digest
    refused = ledger.query("prod", "promotion")[0]
    assert refused.state == "refused" and refused.data["condition"] == "deployed"
    cw = aws.client("cloudwatch")
    injected = [a for a in cw.describe_alarms(AlarmNamePrefix="iris-staging-")["MetricAlarms"]
                if "inject-failure" in (a.get("StateReason") or "")]
    assert injected and all(a["StateValue"] == "OK" for a in injected)  # the injection is over
