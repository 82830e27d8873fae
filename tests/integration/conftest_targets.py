"""Helpers for the Step Functions and Batch target tests (moto server through the `aws` fixture).

The state machine, job queue and compute environment stand in for what the CDK stacks create
(same names from core/names.py). moto 5.2 runs Batch jobs in Docker unless its config says
`batch.use_docker: false` (then a job SUCCEEDS at once, or FAILS with MOTO_SIMPLE_BATCH_FAIL_AFTER=0):
`simple_batch` sets that through the server's /moto-api/config and puts it back afterwards.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline_tools.core import names
from pipeline_tools.core.config import load
from pipeline_tools.release.target import Release
from pipeline_tools.targets import TargetEnv

ACCOUNT = "123456789012"  # moto's account: ARNs pt derives from the stage account match moto's
FLOW = """{
  "Comment": "score one request",
  "StartAt": "Score",
  "States": {
    "Score": {"Type": "Task", "Resource": "${ModelFunctionArn}", "Next": "Done"},
    "Done": {"Type": "Pass", "Result": "${Label}", "End": true}
  }
}
"""
CONFIG = f"""\
project: iris
region: us-east-1
images: {{model: {{}}}}
functions: {{predict: {{image: model}}}}
stages:
  staging:
    account: "{ACCOUNT}"
    branch: integration
    gate: {{alarms: ["iris-staging-*"]}}
    deploy: {{keep_versions: 2}}
targets:
  stepfunctions:
    flow:
      definition: flow.json
      substitutions: {{ModelFunctionArn: "function:predict", Label: "{{label}}"}}
  batch:
    score:
      image: model
      command: ["python", "score.py"]
      vcpu: 0.5
      memory: 2048
      timeout: 600
      retry: 2
      environment: {{MODE: batch}}
      schedule: "cron(0 3 * * ? *)"
      smoke_command: ["python", "score.py", "--smoke"]
"""


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}" * 64 if n < 16 else "sha256:" + f"{n:064x}"


def release(n: int, deploy_id: str | None = None) -> Release:
    return Release(f"127.0.0.1:5055/iris-model@{digest(n)}", digest(n), deploy_id or f"d{n}", "model")


def write_config(tmp_path: Path, label: str = "v1", extra: str = "") -> Path:
    (tmp_path / "flow.json").write_text(FLOW)
    p = tmp_path / "pipeline.yml"
    p.write_text(CONFIG.replace("{label}", label) + extra)
    return p


def load_config(tmp_path: Path, **kw):
    return load(write_config(tmp_path, **kw))


class Env:
    """A TargetEnv with a real clock, a recorded (non-blocking) sleep and a log."""

    def __init__(self, aws):
        self.logs: list[str] = []
        self.sleeps: list[float] = []
        self.env = TargetEnv(client=aws.client, clock=time.monotonic, sleep=self.sleeps.append,
                             log=self.logs.append)


def create_state_machine(aws, stage: str = "staging", name: str = "flow") -> str:
    sfn = aws.client("stepfunctions")
    return sfn.create_state_machine(
        name=names.state_machine("iris", stage, name),
        definition='{"StartAt": "Init", "States": {"Init": {"Type": "Pass", "End": true}}}',
        roleArn=names.role_arn(ACCOUNT, names.state_machine_role("iris", stage, name)))["stateMachineArn"]


def create_batch_queue(aws, stage: str = "staging") -> str:
    """The stage's queue on a compute environment (UNMANAGED here: moto then needs no VPC; the
    stack's is a managed Fargate one, which the target never reads)."""
    iam, batch = aws.client("iam"), aws.client("batch")
    role = iam.create_role(RoleName=f"iris-{stage}-batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    ce = batch.create_compute_environment(computeEnvironmentName=names.batch_compute_environment("iris", stage),
                                          type="UNMANAGED", state="ENABLED", serviceRole=role)
    return batch.create_job_queue(jobQueueName=names.batch_job_queue("iris", stage), state="ENABLED", priority=1,
                                  computeEnvironmentOrder=[{"order": 1, "computeEnvironment":
                                                            ce["computeEnvironmentArn"]}])["jobQueueArn"]


def _moto_config(url: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}/moto-api/config", method="POST", data=json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


@pytest.fixture
def simple_batch(moto_server, aws, monkeypatch):
    """Batch jobs end at once without Docker (SUCCEEDED; FAILED when the test sets the fail env)."""
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", raising=False)
    before = _moto_config(moto_server, {"batch": {"use_docker": False}})
    assert before["batch"]["use_docker"] is False
    yield
    _moto_config(moto_server, {"batch": {"use_docker": True}})
