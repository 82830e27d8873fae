"""`pt local up|status|down`: a real moto server process, the StageStack in moto's CloudFormation,
the gaps moto leaves filled with boto3, idempotence, and `down` stopping only what `up` started."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from pipeline_tools.core import config
from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.core.errors import UsageError
from pipeline_tools.local import stack as local

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "iris" / "pipeline.yml"


def _factory(endpoint: str) -> AwsFactory:
    f = AwsFactory(region="us-east-1", endpoint=endpoint, max_attempts=2)
    local._dummy_credentials_for(f)
    return f


def _alive(pid: int) -> bool:
    return local._pid_cmdline(pid) is not None and not local._zombie(pid)


@pytest.mark.docker
@pytest.mark.slow
def test_up_provisions_every_stage_from_the_stage_stack_then_down(run_pt, docker_client, registry, tmp_path,
                                                                   monkeypatch):
    state = tmp_path / "local"
    monkeypatch.setenv("PT_LOCAL_DIR", str(state))
    monkeypatch.setenv("PT_REGISTRY", registry)
    port = local.free_port()

    r = run_pt("local", "up", "-c", EXAMPLE, "--port", port, "--output", "json")
    assert r.exit_code == 0, r
    res = r.json()
    endpoint = f"http://127.0.0.1:{port}"
    assert res["moto"]["endpoint"] == endpoint and res["moto"]["started_by_pt"] is True
    assert res["registry"] == {"host": registry, "pid": None, "started_by_pt": False, "reused": True}
    pid = res["moto"]["pid"]
    try:
        assert _alive(pid)
        assert res["provisioning"] == "cdk+boto3"
        env_text = Path(res["env_file"]).read_text()
        assert f"export AWS_ENDPOINT_URL={endpoint}\n" in env_text
        assert f"export PT_REGISTRY={registry}\n" in env_text
        assert "export AWS_ACCESS_KEY_ID=testing\n" in env_text

        aws = _factory(endpoint)
        cfn = aws.client("cloudformation")
        for stage in ("staging", "prod"):
            st = cfn.describe_stacks(StackName=f"iris-{stage}-stage")["Stacks"][0]
            assert st["StackStatus"] == "CREATE_COMPLETE"
        by_stage = {s["stage"]: s for s in res["stages"]}
        # what moto's CloudFormation skipped was added with boto3, from the same template
        added = by_stage["staging"]["boto3"]
        assert "alias iris-staging-predict:live -> version 1" in added
        assert "alarm iris-staging-predict-errors" in added
        assert "bucket policy iris-staging-artifacts" in added
        assert {"iris-staging-artifacts: versioning", "ecr iris-model: scan on push",
                "dynamodb iris-ledger: point-in-time recovery"} <= set(added)

        lam, cw, s3 = aws.client("lambda"), aws.client("cloudwatch"), aws.client("s3")
        for stage in ("staging", "prod"):
            for fn in ("predict", "batch-score"):
                alias = lam.get_alias(FunctionName=f"iris-{stage}-{fn}", Name="live")
                assert alias["FunctionVersion"] == "1" and not alias.get("RoutingConfig")
                alarms = cw.describe_alarms(AlarmNamePrefix=f"iris-{stage}-{fn}-")["MetricAlarms"]
                names = {a["AlarmName"] for a in alarms}
                assert names == {f"iris-{stage}-{fn}-{m}" for m in ("errors", "throttles", "duration-p99")}
            bucket = f"iris-{stage}-artifacts"
            assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
            policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
            assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            assert policy["Statement"][0]["Resource"][0] == f"arn:aws:s3:::{bucket}"
        alarm = cw.describe_alarms(AlarmNames=["iris-staging-predict-errors"])["MetricAlarms"][0]
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "iris-staging-predict"}]
        assert alarm["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:iris-staging-events"]
        assert aws.client("ecr").describe_repositories(repositoryNames=["iris-model"])["repositories"][0][
            "imageScanningConfiguration"] == {"scanOnPush": True}
        pitr = aws.client("dynamodb").describe_continuous_backups(TableName="iris-ledger")
        assert pitr["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
            "PointInTimeRecoveryStatus"] == "ENABLED"

        # idempotent: the same server, unchanged stacks, nothing duplicated
        t0 = time.monotonic()
        r2 = run_pt("local", "up", "-c", EXAMPLE, "--output", "json")
        assert r2.exit_code == 0, r2
        again = r2.json()
        assert again["moto"]["pid"] == pid and again["moto"]["reused"] is True
        assert all("stack iris-" in " ".join(s["existing"]) and not s["cfn"] for s in again["stages"])
        assert not any(a.startswith(("alias ", "alarm ")) for s in again["stages"] for a in s["boto3"])
        assert time.monotonic() - t0 < 60
        assert len(lam.list_versions_by_function(FunctionName="iris-staging-predict")["Versions"]) == 2

        r3 = run_pt("local", "status")
        assert r3.exit_code == 0 and endpoint in r3.stdout and "stages provisioned: prod, staging" in r3.stdout
    finally:
        r4 = run_pt("local", "down", "--output", "json")
    assert r4.exit_code == 0, r4
    down = r4.json()
    assert down["stopped"] == [f"moto {endpoint} (pid {pid})"]
    assert down["left"] == [f"registry {registry}: not started by pt local up, left running"]
    assert not _alive(pid)
    assert local.registry_answers(registry)  # someone else's registry is left running
    assert not (state / "env").exists()
    r5 = run_pt("local", "status")
    assert r5.exit_code == 1 and "not started" in r5.stdout


def test_start_moto_picks_a_free_port_when_the_default_is_taken(tmp_path, monkeypatch):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        monkeypatch.setattr(local, "DEFAULT_MOTO_PORT", taken)
        with pytest.raises(UsageError, match=f"port {taken} on 127.0.0.1 is taken"):
            local.start_moto(tmp_path, {}, taken)
        got = local.start_moto(tmp_path, {}, None)
    try:
        assert got["port"] != taken and got["started_by_pt"]
        assert local.moto_answers(got["endpoint"])
        # a second start reuses it instead of starting another
        assert local.start_moto(tmp_path, {"moto": got}, None)["reused"] is True
    finally:
        local._terminate(got["pid"])
    assert not _alive(got["pid"])


def test_down_leaves_a_recycled_pid_alone(tmp_path):
    # state says pt started pid X for moto, but X now runs something else (pid reuse): never kill it
    me = os.getpid()
    local.save_state(tmp_path, {"moto": {"endpoint": "http://127.0.0.1:1", "pid": me, "started_by_pt": True,
                                         "match": "moto.server -H 127.0.0.1 -p 1"}})
    res = local.down(tmp_path)
    assert res["stopped"] == [] and res["left"] == []
    assert res["refused"] == [f"moto http://127.0.0.1:1: state.json has no start time and command line for pid {me} "
                              "(written by an older pt or edited): refusing to signal it"]


def test_boto3_provisioning_without_the_cdk_module(aws):
    """The fallback path (no CDK in the build): same names, same settings, idempotent."""
    cfg = config.load(EXAMPLE)
    rep = local.fill_gaps(cfg, "staging", aws, registry="127.0.0.1:5055")
    assert "lambda iris-staging-predict (bootstrap image)" in rep.boto3
    lam = aws.client("lambda")
    fn = lam.get_function(FunctionName="iris-staging-predict")
    assert fn["Code"]["ImageUri"] == "127.0.0.1:5055/iris-model@" + local.BOOTSTRAP_DIGEST
    assert fn["Configuration"]["ImageConfigResponse"]["ImageConfig"]["Command"] == ["app.handler"]
    assert fn["Configuration"]["Timeout"] == 30 and fn["Configuration"]["MemorySize"] == 1024
    assert lam.get_alias(FunctionName="iris-staging-predict", Name="live")["FunctionVersion"] == "1"
    names = {a["AlarmName"] for a in aws.client("cloudwatch").describe_alarms(AlarmNamePrefix="iris-staging-")[
        "MetricAlarms"]}
    assert names == local_alarm_names(cfg, "staging")
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket="iris-staging-artifacts")["Status"] == "Enabled"
    again = local.fill_gaps(cfg, "staging", aws, registry="127.0.0.1:5055")
    assert not any(x.startswith(("lambda ", "alarm ", "s3 bucket iris-staging-artifacts (")) for x in again.boto3)
    assert len(lam.list_versions_by_function(FunctionName="iris-staging-predict")["Versions"]) == 2


def local_alarm_names(cfg, stage: str) -> set[str]:
    from pipeline_tools.infra.stacks.stage_stack import generated_alarm_names

    return {n for fn in cfg.functions for n in generated_alarm_names(cfg, stage, fn)}


@pytest.mark.docker  # under CI=true a skip (no registry binary) fails the run
@pytest.mark.skipif(not (local.shutil.which("docker-registry") or local.shutil.which("registry")),
                    reason="no docker-registry binary (apt-get install docker-registry)")
def test_registry_is_started_when_none_answers_and_down_stops_it(tmp_path, monkeypatch):
    dead = f"127.0.0.1:{local.free_port()}"
    monkeypatch.setattr(local, "DEFAULT_REGISTRY", dead)
    monkeypatch.delenv("PT_REGISTRY", raising=False)
    monkeypatch.delenv("PT_TEST_REGISTRY", raising=False)
    reg = local.ensure_registry(tmp_path, {})
    try:
        assert reg["started_by_pt"] and reg["host"] != dead and local.registry_answers(reg["host"])
        assert (tmp_path / "registry.yml").read_text().count(f"addr: {reg['host']}") == 1
        # a second call reuses it (from the state) instead of starting another
        assert local.ensure_registry(tmp_path, {"registry": reg})["pid"] == reg["pid"]
        local.save_state(tmp_path, {"registry": reg})
    finally:
        res = local.down(tmp_path)
    assert res["stopped"] == [f"registry {reg['host']} (pid {reg['pid']})"]
    assert not _alive(reg["pid"]) and not local.registry_answers(reg["host"])
