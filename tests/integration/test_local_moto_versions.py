"""Repeated local releases: Lambda version numbers in the local stack's moto.

The cause of "publish_version of …-batch-score returned the live version 6: Lambda saw no
code change" on the third `pt release --local`: moto 5.2 numbers a new version
len(versions)+1, so once `keep_versions` pruning has deleted an old version the next publish
reuses the live version's number. `pt local up` starts moto through pipeline_tools.local.motoserver,
which numbers versions as AWS does (one past the highest ever published).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.core.config import load
from pipeline_tools.local import stack as local
from pipeline_tools.release import deploy as dp
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_deploy import digest, make_stage, uri


@pytest.fixture
def local_moto(tmp_path, monkeypatch):
    """A moto server started exactly as `pt local up` starts it (local.start_moto)."""
    info = local.start_moto(tmp_path / "state", {}, local.free_port())
    assert info["started_by_pt"] and "pipeline_tools.local.motoserver" in info["argv"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", info["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PT_ACTOR", "ci")
    yield AwsFactory(region="us-east-1", endpoint=info["endpoint"])
    local._terminate(info["pid"])


def test_repeated_deploys_with_pruning_never_reuse_the_live_version(local_moto, tmp_path: Path):
    """keep_versions 2: the third deploy is the first after a prune; without the numbering
    fix it fails with "returned the live version" (moto numbered it len+1 = the live one)."""
    stage = make_stage(local_moto, tmp_path, images=(1, 2, 3), strategy="all-at-once", bake="0s", keep=2)
    cfg = load(stage.config)
    ensure_table(stage.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    seen: list[str] = []
    for i, n in enumerate([2, 3, 2, 3, 2]):
        plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(n)), stage.lam)
        deps = dp.Deps(stage.lam, stage.cw, Ledger(stage.ddb, "rel-ledger"), clock=time.time, sleep=time.sleep,
                       actor={"name": "ci"}, lease=30)
        res = dp.deploy(cfg, plan, deps)
        assert res.state == "succeeded", (i, res)
        assert stage.live_digests() == {digest(n)}, i
        seen.append(res.versions["predict"])
    assert seen == ["2", "3", "4", "5", "6"]  # monotonic, as AWS numbers them
    left = [v["Version"] for v in stage.lam.list_versions_by_function(FunctionName=stage.fname("predict"))["Versions"]]
    assert sorted(int(v) for v in left if v != "$LATEST") == [5, 6]  # pruning still ran


def test_an_old_version_keeps_its_own_image_uri(local_moto, tmp_path: Path):
    """moto shares one Code dict between $LATEST and its versions; the local stack's does not."""
    stage = make_stage(local_moto, tmp_path, images=(1, 2))
    name = stage.fname("predict")
    stage.lam.update_function_code(FunctionName=name, ImageUri=uri(2))
    v2 = stage.lam.publish_version(FunctionName=name)["Version"]
    assert stage.lam.get_function(FunctionName=name, Qualifier="1")["Code"]["ImageUri"] == uri(1)
    assert stage.lam.get_function(FunctionName=name, Qualifier=v2)["Code"]["ImageUri"] == uri(2)


def test_a_plain_moto_started_by_an_earlier_pt_is_restarted_once(tmp_path: Path):
    """State from before the fix: pt had started `moto.server` itself. The next `pt local up` /
    `pt release --local` restarts it through localmoto (same port) instead of reusing it; a moto
    that pt did not start is still reused and never stopped."""
    import sys

    port = local.free_port()
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    pid = local._spawn(argv, tmp_path / "m.log")
    endpoint = f"http://127.0.0.1:{port}"
    new = None
    try:
        assert local._wait_until(lambda: local.moto_answers(endpoint), 30, time.time, time.sleep)
        legacy = {"endpoint": endpoint, "port": port, "started_by_pt": True, **local.marker(pid, argv)}
        foreign = local.start_moto(tmp_path, {"moto": {**legacy, "started_by_pt": False}}, None)
        assert foreign["reused"] is True and local._pid_cmdline(pid) is not None
        new = local.start_moto(tmp_path, {"moto": legacy}, None)
        assert new["reused"] is False and new["port"] == port and new["pid"] != pid
        assert "pipeline_tools.local.motoserver" in new["argv"] and local.moto_answers(endpoint)
        assert local.start_moto(tmp_path, {"moto": new}, None)["reused"] is True  # restarted once only
    finally:
        for p in (pid, new and new["pid"]):
            if p:
                local._terminate(p)
