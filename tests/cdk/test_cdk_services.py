"""Model services (`services:`), the Batch path and the dashboard, from one config: real synth with
cdk-nag AwsSolutions as a plugin and cfn-lint, for one account and for three (`accounts:`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import DIGEST, base_config, synth_app, write_config

pytestmark = pytest.mark.cdk

POOL = "us-east-1:12345678-1234-1234-1234-123456789012"
A, B, C = "111111111111", "222222222222", "333333333333"
DEFINITION = {
    "StartAt": "Score",
    "States": {"Score": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "${ModelFunctionArn}", "Payload.$": "$"},
                         "Next": "Batch"},
               "Batch": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "${BatchFunction}", "Payload.$": "$",
                                        "Bucket": "${ServiceBucket}", "Mode": "${Mode}"},
                         "End": True}},
}


def services_config(tmp_path, *, accounts: bool = False):
    data = base_config()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "score.json").write_text(json.dumps(DEFINITION, indent=2))
    (tmp_path / "flows" / "quick.json").write_text(json.dumps(
        {"StartAt": "Go", "States": {"Go": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                             "Parameters": {"FunctionName": "${Fn}"}, "End": True}}}))
    data["functions"]["predict"].update(ephemeral_storage=4096, reserved_concurrency=5)
    data["targets"] = {
        "stepfunctions": {
            "score": {"definition": "flows/score.json",
                      "substitutions": {"BatchFunction": "function:batch-score", "Mode": "full"}},
            "quick": {"definition": "flows/quick.json", "type": "EXPRESS",
                      "substitutions": {"Fn": "function:predict"}},
            "offline": {"definition": "flows/quick.json", "substitutions": {"Fn": "function:batch-score"}},
        },
        "batch": {"nightly": {"image": "model", "command": ["python", "-m", "score"], "vcpu": 1, "memory": 2048,
                              "timeout": 1800, "retry": 2, "environment": {"MODE": "nightly"},
                              "schedule": "cron(0 3 * * ? *)"}},
    }
    data["services"] = {
        "scorer": {"function": "predict", "state_machine": "score", "batch": ["nightly"],
                   "api": {"throttle_rate": 25, "throttle_burst": 40},
                   "access": {"identity_pool_id": POOL, "user_pool_id": "us-east-1_AbC123", "groups": ["analysts"],
                              "prefixes": ["scenarios", "results"]}},
        "fast": {"function": "predict", "state_machine": "quick", "stages": ["staging"],
                 "access": {"identity_pool_id": POOL}},
    }
    if accounts:
        data["accounts"] = {"tooling": C}
        data["stages"]["staging"]["account"], data["stages"]["prod"]["account"] = A, B
    return write_config(tmp_path / "pipeline.yml", data)


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    path = services_config(tmp_path_factory.mktemp("svc"))
    s = synth_app(path, tmp_path_factory.mktemp("cdk.out"), nag=True, image_digests={"model": DIGEST})
    print(f"\n[cdk] services synth of {len(s.templates)} stacks with cdk-nag: {s.seconds:.1f}s")
    return s


def test_synth_smoke(svc):
    print(sorted(svc.templates))
