"""Seeding helpers for the logs and teardown tests (moto server through the `aws` fixture)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

OPS_CONFIG = """\
project: iris
region: us-east-1
images:
  model: {context: .}
  tools: {context: .}
functions:
  predict: {image: model}
  batch-score: {image: model}
stages:
  val:                       # alone in its account: owns the ECR repositories too
    account: "123456789012"
    branch: val
    gate: {alarms: ["iris-val-*"]}
  val-eu:                    # its names start with "iris-val-": teardown of val must spare them
    account: "333333333333"
    branch: val-eu
    gate: {alarms: ["iris-val-eu-*"]}
  staging:
    account: "111111111111"
    branch: integration
    gate: {alarms: ["iris-staging-*"]}
  qa:                        # same account/region as staging: ECR repositories are shared
    account: "111111111111"
    branch: qa
    gate: {alarms: ["iris-qa-*"]}
  prod:                      # protected by default
    account: "222222222222"
    branch: master
    gate: {alarms: ["iris-prod-*"]}
"""


def write_config(tmp_path: Path, text: str = OPS_CONFIG) -> Path:
    p = tmp_path / "pipeline.yml"
    p.write_text(text)
    return p


def load_config(tmp_path: Path):
    from pipeline_tools.core.config import load

    return load(write_config(tmp_path))


def role_arn(aws) -> str:
    iam = aws.client("iam")
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                   "Action": "sts:AssumeRole"}]}
    try:
        return iam.create_role(RoleName="pt-test-lambda", AssumeRolePolicyDocument=json.dumps(doc))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        return iam.get_role(RoleName="pt-test-lambda")["Role"]["Arn"]


def seed_function(aws, name: str, versions: int = 2) -> None:
    lam = aws.client("lambda")
    lam.create_function(FunctionName=name, PackageType="Image", Role=role_arn(aws),
                        Code={"ImageUri": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/iris-model@sha256:{'a' * 64}"})
    last = None
    for i in range(versions):
        lam.update_function_configuration(FunctionName=name, Description=f"v{i}")
        last = lam.publish_version(FunctionName=name)["Version"]
    if last:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion=last)


def seed_bucket(aws, bucket: str, keys: int = 3, versions_per_key: int = 4, markers: int = 2) -> int:
    """A versioned bucket with keys × versions plus delete markers; returns the number of entries."""
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for k in range(keys):
        for v in range(versions_per_key):
            s3.put_object(Bucket=bucket, Key=f"model/part-{k}.bin", Body=f"{k}-{v}".encode())
    for k in range(markers):
        s3.delete_object(Bucket=bucket, Key=f"model/part-{k}.bin")
    return keys * versions_per_key + markers


def seed_repository(aws, repo: str, images: int = 3) -> list[str]:
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName=repo)
    digests = []
    for i in range(images):
        config_digest = "sha256:" + hashlib.sha256(f"c{i}".encode()).hexdigest()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                          "size": 10, "digest": config_digest},
                               "layers": []})
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageDigest=digest, imageTag=f"t{i}")
        digests.append(digest)
    return digests


def seed_log_group(aws, group: str, messages: list[str], *, now_ms: int | None = None,
                   stream: str = "2026/11/27/[$LATEST]abc", step_ms: int = 1000) -> None:
    logs = aws.client("logs")
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    try:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    now_ms = now_ms or int(time.time() * 1000)
    base = now_ms - step_ms * len(messages)
    events = [{"timestamp": base + i * step_ms, "message": m} for i, m in enumerate(messages)]
    for i in range(0, len(events), 5000):
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events[i:i + 5000])
