"""The SageMaker target through `pt` against moto server: what moto runs (models, endpoint configs,
create_endpoint, S3 manifests, the ledger) end to end; the bad inputs of the issue (artifacts
missing, manifest mismatch, rollback with nothing to roll back, no shadow for the gate). moto has
no UpdateEndpoint and drops ShadowProductionVariants: the shadow path is in
tests/unit/test_sagemaker_stubber.py; here an update to a second digest fails on moto's missing
API, which exercises the failure path for real (ledger `failed`, new config and model deleted,
endpoint untouched)."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipeline_tools.ops import artifacts as art
from pipeline_tools.release.ledger import Ledger

ACCOUNT = "111111111111"
REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/cv-model"
EP = "cv-staging-vision"
BUCKET = "cv-staging-artifacts"
PREFIX = "models/staging/vision"

CONFIG = f"""\
project: cv
region: us-east-1
images:
  model: {{context: .}}
stages:
  staging:
    account: "{ACCOUNT}"
    branch: integration
    gate: {{alarms: [], allow_no_alarms: true, poll: 0.1s}}
targets:
  sagemaker:
    endpoint: vision
    image: model
    model_artifacts: "models/{{stage}}/vision"
    shadow_sampling: 20
    data_capture: 5
    wait: 30s
"""


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"cv-{n}".encode()).hexdigest()


@pytest.fixture
def cv(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "alice")
    monkeypatch.setenv("PT_COMMIT_AUTHOR", "bob@example.com")
    monkeypatch.setenv("PT_AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("PT_SAGEMAKER_POLL", "0.05")
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="cv-model")
    for n in (1, 2):
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                                          "digest": digest(100 + n)}, "layers": []})
        ecr.put_image(repositoryName="cv-model", imageManifest=manifest, imageTag=f"t{n}", imageDigest=digest(n))
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    model_dir = tmp_path / "model"
    (model_dir / "weights").mkdir(parents=True)
    (model_dir / "weights" / "resnet.bin").write_bytes(b"\x00weights" * 1000)
    (model_dir / "labels.json").write_text('["cat", "dog"]')
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    return {"aws": aws, "s3": s3, "sm": aws.client("sagemaker"), "dir": model_dir, "config": str(cfg)}


def push_artifacts(cv):
    art.push(cv["s3"], cv["dir"], art.Location.of(BUCKET, PREFIX))


def pt(run_pt, cv, *args):
    return run_pt("--config", cv["config"], *args)


def ledger(cv):
    return Ledger(cv["aws"].client("dynamodb"), "cv-ledger")


def test_create_then_noop_then_failed_update_on_moto(run_pt, cv):
    push_artifacts(cv)
    dry = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(1)}", "--dry-run", "--output", "json")
    assert dry.exit_code == 0, dry
    plan = dry.json()["plan"]
    assert plan["action"] == "create" and plan["endpoint"] == EP
    assert dry.json()["artifacts"]["ok"] is True and dry.json()["artifacts"]["files"] == 2
    assert cv["sm"].list_endpoints()["Endpoints"] == []  # dry run changed nothing

    res = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(1)}", "--output", "json")
    assert res.exit_code == 0, res
    rec = res.json()
    assert rec["state"] == "succeeded" and rec["operation"] == "create"
    ep = cv["sm"].describe_endpoint(EndpointName=EP)
    assert ep["EndpointStatus"] == "InService" and ep["EndpointConfigName"] == rec["endpoint_config"]
    ec = cv["sm"].describe_endpoint_config(EndpointConfigName=rec["endpoint_config"])
    assert ec["ProductionVariants"][0]["VariantName"] == "production"
    assert ec["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/datacapture/{EP}/"
    assert ec["DataCaptureConfig"]["CaptureOptions"] == [{"CaptureMode": "Output"}]
    container = cv["sm"].describe_model(ModelName=rec["model"])["PrimaryContainer"]
    assert container["Image"] == f"{REPO}@{digest(1)}"
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{PREFIX}/"
    states = [t["state"] for t in ledger(cv).get("staging", rec["id"]).transitions]
    assert states == ["locked", "creating", "updating", "succeeded"]

    again = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
               f"{REPO}@{digest(1)}", "--output", "json")
    assert again.exit_code == 0 and again.json()["state"] == "noop", again

    # a second digest: a shadow config; moto has no UpdateEndpoint → the deploy fails cleanly
    upd = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(2)}")
    assert upd.exit_code == 1, upd
    assert "failed, endpoint already on " + rec["endpoint_config"] in upd.stderr
    failed = ledger(cv).query("staging", "sagemaker", limit=1)[0]
    assert failed.state == "failed" and failed.data["operation"] == "shadow"
    assert failed.data["previous_endpoint_config"] == rec["endpoint_config"]
    names = {c["EndpointConfigName"] for c in cv["sm"].list_endpoint_configs()["EndpointConfigs"]}
    assert names == {rec["endpoint_config"]}  # the shadow config was deleted again
    assert {m["ModelName"] for m in cv["sm"].list_models()["Models"]} == {rec["model"]}
    assert cv["sm"].describe_endpoint(EndpointName=EP)["EndpointConfigName"] == rec["endpoint_config"]
    assert ledger(cv).current_lock("staging") is None


def test_artifacts_missing_refused_before_anything(run_pt, cv):
    res = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(1)}")
    assert res.exit_code == 1, res
    assert f"no manifest at s3://{BUCKET}/{PREFIX}" in res.stderr
    assert cv["sm"].list_models()["Models"] == []


def test_manifest_mismatch_refused(run_pt, cv):
    push_artifacts(cv)
    cv["s3"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/labels.json", Body=b'["cat", "dog", "eel"]')
    res = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(1)}", "--output", "json")
    assert res.exit_code == 1, res
    assert "do not match their manifest" in res.stderr and "labels.json" in res.stderr
    assert cv["sm"].list_models()["Models"] == [] and ledger_empty(cv)


def ledger_empty(cv) -> bool:
    try:
        return ledger(cv).query("staging", "sagemaker") == []
    except Exception:
        return True


def test_digest_not_in_ecr_and_tag_refused(run_pt, cv):
    push_artifacts(cv)
    res = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
             f"{REPO}@{digest(9)}")
    assert res.exit_code == 1 and "not found in ECR" in res.stderr, res
    res = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri", f"{REPO}:latest")
    assert res.exit_code == 2 and "digest" in res.stderr, res


def test_rollback_gate_promote_without_shadow(run_pt, cv):
    res = pt(run_pt, cv, "rollback", "--stage", "staging", "--target", "sagemaker")
    assert res.exit_code == 1 and "nothing to roll back" in res.stderr, res
    gate = pt(run_pt, cv, "gate", "--stage", "staging", "--shadow", "--output", "json")
    assert gate.exit_code == 1, gate
    assert gate.json()["status"] == "FAIL" and "no shadow variant" in gate.json()["explanation"]
    promo = pt(run_pt, cv, "promote", "--to", "staging", "--shadow", "--dry-run")
    assert promo.exit_code == 1 and "no shadow variant" in promo.stderr, promo


def test_unconfigured_target_is_a_usage_error(run_pt, cv, tmp_path):
    other = tmp_path / "plain.yml"
    other.write_text(CONFIG.split("targets:")[0])
    res = run_pt("--config", str(other), "deploy", "--stage", "staging", "--target", "sagemaker",
                 "--image-uri", f"{REPO}@{digest(1)}")
    assert res.exit_code == 2 and "no SageMaker target configured" in res.stderr, res


def test_dead_shadow_deploy_blocks_then_recover_restores(run_pt, cv):
    import time

    push_artifacts(cv)
    first = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
               f"{REPO}@{digest(1)}", "--output", "json").json()
    # a shadow deploy killed after creating its model and config: record `updating`, lease expired
    smc = cv["sm"]
    smc.create_model(ModelName=f"{EP}-mdead", ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/cv-staging-sagemaker",
                     PrimaryContainer={"Image": f"{REPO}@{digest(2)}"})
    smc.create_endpoint_config(EndpointConfigName=f"{EP}-cdead", ProductionVariants=[{
        "VariantName": "production", "ModelName": f"{EP}-mdead", "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])
    past = Ledger(cv["aws"].client("dynamodb"), "cv-ledger", clock=lambda: time.time() - 3600)
    past.acquire("staging", "20261127T000000000Z-dead00", {"name": "ci"})
    past.put_record("sagemaker", "staging", {"operation": "shadow", "endpoint": EP, "digest": digest(2),
                                             "previous_endpoint_config": first["endpoint_config"],
                                             "endpoint_config": f"{EP}-cdead", "model": f"{EP}-mdead"},
                    state="updating", record_id="20261127T000000000Z-dead00")

    blocked = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
                 f"{REPO}@{digest(2)}")
    assert blocked.exit_code == 4 and "died mid-way" in blocked.stderr, blocked
    dry = pt(run_pt, cv, "recover", "--stage", "staging", "--dry-run", "--output", "json")
    assert dry.exit_code == 0 and dry.json()["to_endpoint_config"] == first["endpoint_config"], dry
    res = pt(run_pt, cv, "recover", "--stage", "staging", "--output", "json")
    assert res.exit_code == 0, res
    assert res.json()["restore"] == f"endpoint already on {first['endpoint_config']}"
    rec = ledger(cv).get("staging", "20261127T000000000Z-dead00")
    assert rec.state == "failed" and "recovered" in rec.reason
    assert ledger(cv).current_lock("staging") is None
    assert f"{EP}-cdead" not in {c["EndpointConfigName"] for c in smc.list_endpoint_configs()["EndpointConfigs"]}
    assert f"{EP}-mdead" not in {m["ModelName"] for m in smc.list_models()["Models"]}
    nothing = pt(run_pt, cv, "recover", "--stage", "staging", "--target", "sagemaker")
    assert nothing.exit_code == 0 and "nothing to recover" in nothing.stdout, nothing


def test_status_shows_the_endpoint(run_pt, cv):
    push_artifacts(cv)
    first = pt(run_pt, cv, "deploy", "--stage", "staging", "--target", "sagemaker", "--image-uri",
               f"{REPO}@{digest(1)}", "--output", "json").json()
    res = pt(run_pt, cv, "status", "--stage", "staging", "--output", "json")
    assert res.exit_code == 0, res
    e = res.json()["stages"][0]["sagemaker"]
    assert e["status"] == "InService" and e["endpoint_config"] == first["endpoint_config"]
    assert e["production_image"] == f"{REPO}@{digest(1)}" and e["shadow"] is None
    assert e["last_step"]["operation"] == "create" and e["last_step"]["state"] == "succeeded"
    human = pt(run_pt, cv, "status", "--stage", "staging")
    assert f"endpoint {EP}: InService on {first['endpoint_config']}" in human.stdout, human
