"""Shared fixtures: moto server over HTTP, Docker daemon, local registry, CLI runner.

Tests marked `docker` skip locally without a daemon, but under CI=true such a skip is turned
into a failure (see pytest_runtest_makereport), so CI cannot pass by skipping them.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "examples" / "iris" / "pipeline.yml"
CONTRACT_CONFIG = ROOT / "tests" / "data" / "pipeline.example.yml"
IN_CI = os.environ.get("CI") == "true"

# Never let a test reach a real AWS account.
for _k in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_k, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("GITHUB_ACTIONS", None)

# moto as AWS behaves (local/motoserver.py): Lambda version numbers never reused, and each
# published version keeps its own Code.ImageUri (moto 5.2 shares $LATEST's). In-process
# mock_aws and the ThreadedMotoServer of this process both use the patched storage.
from pipeline_tools.local.motoserver import patch_lambda_versions  # noqa: E402

patch_lambda_versions()
# Unimplemented moto calls answer HTML 500s that botocore would retry: keep attempts low.
os.environ.setdefault("PT_AWS_MAX_ATTEMPTS", "2")
# moto's EC2 backend loads ~1,370 canned AMIs (each with a snapshot owned by the test account) on every
# reset: ~10 s of CPU before the first EC2 answer, and 1,366 snapshots in every DescribeSnapshots(self).
# Three public AMIs (Owners=["amazon"]) are all the tests use. Set before moto is imported; inherited by
# the moto servers that `pt local up` starts in subprocesses.
os.environ.setdefault("MOTO_AMIS_PATH", str(ROOT / "tests" / "data" / "moto-amis.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- CI: a skipped docker test is a failure ------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("docker") is not None:
        report.outcome = "failed"
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"docker test skipped under CI=true (not allowed): {reason}"


# --- moto server -----------------------------------------------------------------------------


def _atomic_dynamodb_writes() -> None:
    """DynamoDB applies a conditional write atomically; moto checks the condition and then writes, with
    no lock, while ThreadedMotoServer answers requests on many threads. Two racing
    `attribute_not_exists` puts could then both succeed (seen under load: 2 lock holders in
    test_lock_race_in_threads). One lock around moto's write calls gives the real service's guarantee."""
    import functools
    import threading

    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_pt_atomic", False):
        return
    lock = threading.RLock()

    def locked(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            with lock:
                return fn(*a, **kw)
        return wrapper

    for name in ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item",
                 "execute_statement", "execute_transaction"):
        setattr(DynamoDBBackend, name, locked(getattr(DynamoDBBackend, name)))
    DynamoDBBackend._pt_atomic = True


@pytest.fixture(scope="session")
def moto_server():
    """A ThreadedMotoServer on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    _atomic_dynamodb_writes()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    yield url
    server.stop()


def reset_moto(url: str) -> None:
    req = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """Fresh moto state, env pointing at it (AWS_ENDPOINT_URL), and a client factory."""
    from pipeline_tools.core.aws import AwsFactory

    reset_moto(moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return AwsFactory(region="us-east-1", endpoint=moto_server)


# --- docker + registry -------------------------------------------------------------------


def _docker_unavailable_reason() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as e:
        return f"no Docker daemon ({type(e).__name__}); run `source scripts/services.sh`"
    return None


@pytest.fixture(scope="session")
def docker_client():
    reason = _docker_unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    import docker

    client = docker.from_env(timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(docker_client) -> str:
    """host:port of the local registry (PT_TEST_REGISTRY, started by scripts/services.sh)."""
    host = os.environ.get("PT_TEST_REGISTRY", "127.0.0.1:5055")
    try:
        urllib.request.urlopen(f"http://{host}/v2/", timeout=3).read()
    except Exception as e:
        msg = f"no local registry at {host} ({e}); run `source scripts/services.sh`"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return host


def _local_image(docker_client, env: str, default: str) -> str:
    """A locally made base image (docker/base/build-base.sh): skip locally, FAIL under CI."""
    name = os.environ.get(env, default)
    try:
        docker_client.images.get(name)
    except Exception:
        msg = f"base image {name} missing; run `source scripts/services.sh`"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return name


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The plain local Python base image."""
    return _local_image(docker_client, "PT_BASE_IMAGE", "pt-local/python:3.11")


@pytest.fixture(scope="session")
def lambda_base_image(docker_client) -> str:
    """The Lambda-like local base (plain base + awslambdaric + pytest)."""
    return _local_image(docker_client, "PT_LAMBDA_BASE_IMAGE", "pt-local/lambda-python:3.11")


# --- CLI ---------------------------------------------------------------------------------


class CliResult:
    def __init__(self, code: int, stdout: str, stderr: str):
        self.exit_code = code
        self.stdout = stdout
        self.stderr = stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"CliResult(exit={self.exit_code}, stdout={self.stdout[-2000:]!r}, stderr={self.stderr[-2000:]!r})"


@pytest.fixture
def run_pt(capsys):
    """Run `pt` in-process through the real entry point (main), capturing output."""
    from pipeline_tools import cli

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        cli._state.clear()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def pt_subprocess():
    """Run `python -m pipeline_tools` in a subprocess (for signals and startup tests)."""
    import subprocess

    def run(*args: str, env: dict | None = None, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run([sys.executable, "-m", "pipeline_tools", *map(str, args)], capture_output=True,
                              text=True, env=full_env, timeout=timeout, **kw)

    return run
