"""Deploy-area helpers: a stage in moto server (ECR images, image Lambdas with alias `live`,
alarms, ledger) and the pipeline.yml that points at it. Imported by tests/integration/test_deploy*.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT = "rel"
ACCOUNT = "111111111111"
REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{PROJECT}-model"
FUNCTIONS = ("batch-score", "predict")

CONFIG = """\
project: rel
region: us-east-1
images:
  model: {{context: ., dockerfile: Dockerfile}}
  other: {{context: ., dockerfile: Dockerfile}}
functions:
  predict: {{image: model}}
  batch-score: {{image: model}}
stages:
  staging:
    account: "111111111111"
    branch: integration
    deploy: {{strategy: {strategy}, percent: {percent}, interval: {interval}, bake: {bake}, keep_versions: {keep}}}
    gate: {{alarms: ["rel-staging-*"], insufficient_data: pass, preexisting_alarm: {preexisting}, poll: {poll}}}
  prod:
    account: "222222222222"
    branch: master
    deploy: {{strategy: all-at-once, bake: 0s}}
    gate: {{alarms: ["rel-prod-*"], poll: 0.1s}}
    window: {{days: [mon], hours: "02:00-02:01", timezone: UTC}}
"""


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"image-{n}".encode()).hexdigest()


def uri(n: int) -> str:
    return f"{REPO}@{digest(n)}"


@dataclass
class Stage:
    aws: object
    config: Path
    lam: object
    cw: object
    ddb: object
    role: str = ""

    def add_stage(self, stage: str) -> None:
        """Functions (image, alias `live` on v1 = image 1) and an OK alarm per function."""
        for fn in FUNCTIONS:
            name = f"{PROJECT}-{stage}-{fn}"
            self.lam.create_function(FunctionName=name, PackageType="Image", Code={"ImageUri": uri(1)},
                                     Role=self.role, Timeout=30, MemorySize=512)
            v = self.lam.publish_version(FunctionName=name, Description=f"pt seed {digest(1)}")["Version"]
            self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v)
            alarm = f"{PROJECT}-{stage}-{fn}-errors"
            self.cw.put_metric_alarm(AlarmName=alarm, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                                     Period=60, EvaluationPeriods=1, Threshold=1,
                                     ComparisonOperator="GreaterThanOrEqualToThreshold",
                                     Dimensions=[{"Name": "FunctionName", "Value": name}])
            self.cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="seed")

    def fname(self, fn: str, stage: str = "staging") -> str:
        return f"{PROJECT}-{stage}-{fn}"

    def alias(self, fn: str, stage: str = "staging") -> dict:
        return self.lam.get_alias(FunctionName=self.fname(fn, stage), Name="live")

    def live(self, stage: str = "staging") -> dict[str, tuple[str, dict]]:
        out = {}
        for fn in FUNCTIONS:
            a = self.alias(fn, stage)
            out[fn] = (a["FunctionVersion"], (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
        return out

    def live_digests(self, stage: str = "staging") -> set[str]:
        from pipeline_tools.targets.lambda_ops import version_digest

        return {version_digest(self.lam, self.fname(fn, stage), v) for fn, (v, _) in self.live(stage).items()}

    def set_alarm(self, state: str, fn: str = "predict", stage: str = "staging") -> None:
        self.cw.set_alarm_state(AlarmName=f"{PROJECT}-{stage}-{fn}-errors", StateValue=state,
                                StateReason=f"test set {state}")

    def ledger(self):
        from pipeline_tools.release.ledger import Ledger

        return Ledger(self.ddb, f"{PROJECT}-ledger")

    def write_config(self, **kw) -> Path:
        params = {"strategy": "canary", "percent": 50, "interval": "0.2s", "bake": "0.3s", "poll": "0.1s",
                  "preexisting": "block",
                  # moto reuses version numbers after deletes (len(versions)+1): prune only where tested
                  "keep": 50, **kw}
        self.config.write_text(CONFIG.format(**params))
        return self.config


def make_stage(aws, tmp_path: Path, stages=("staging",), images=(1, 2, 3), **cfg) -> Stage:
    iam = aws.client("iam")
    role = iam.create_role(RoleName="rel-fn", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName=f"{PROJECT}-model")
    for n in images:
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                          "size": 1, "digest": digest(100 + n)}, "layers": []})
        ecr.put_image(repositoryName=f"{PROJECT}-model", imageManifest=manifest, imageTag=f"t{n}",
                      imageDigest=digest(n))
    lam = aws.client("lambda")
    cw = aws.client("cloudwatch")
    st = Stage(aws, tmp_path / "pipeline.yml", lam, cw, aws.client("dynamodb"), role)
    for stage in stages:
        st.add_stage(stage)
    st.write_config(**cfg)
    return st


@pytest.fixture(name="stage")
def stage_fixture(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "alice")
    monkeypatch.setenv("PT_COMMIT_AUTHOR", "bob@example.com")
    monkeypatch.setenv("PT_GIT_SHA", "0" * 40)
    monkeypatch.setenv("PT_GIT_BRANCH", "integration")
    return make_stage(aws, tmp_path, stages=("staging",))


def wait_for(pred, timeout: float = 20.0, interval: float = 0.02):
    """Poll pred() until truthy (returns its value) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
