"""The StageStack with `targets.sagemaker`: endpoint (seeded from a digest parameter), execution
role, data-capture bucket policy, production-variant alarms, the deploy role's SageMaker
permissions; cdk-nag AwsSolutions clean and cfn-lint clean. One synth per session."""

from __future__ import annotations

import pytest

from .conftest import DIGEST, base_config, cfn_lint, synth_app, write_config

pytestmark = pytest.mark.cdk

TARGET = {"endpoint": "vision", "image": "model", "model_artifacts": "models/{stage}/vision",
          "instance_type": "ml.g5.xlarge", "instance_count": 2, "shadow_sampling": 20, "data_capture": 10,
          "stages": ["staging"], "latency_alarm_ms": 800, "production_variant": "AllTraffic",
          "thresholds": {"user_metric": {"namespace": "Vision", "name": "Accuracy"}}}


@pytest.fixture(scope="module")
def sm_synth(tmp_path_factory):
    data = base_config()
    data["targets"] = {"sagemaker": TARGET}
    cfg = write_config(tmp_path_factory.mktemp("smcfg") / "pipeline.yml", data)
    return data, synth_app(cfg, tmp_path_factory.mktemp("sm.out"), nag=True, image_digests={"model": DIGEST})


def _stage(synth, data, stage):
    return synth.template(f"{data['project']}-{stage}-stage")


def _of(template, rtype):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def test_endpoint_model_and_config(sm_synth):
    data, synth = sm_synth
    t = _stage(synth, data, "staging")
    project = data["project"]
    ep = f"{project}-staging-vision"
    (endpoint,) = _of(t, "AWS::SageMaker::Endpoint").values()
    assert endpoint["Properties"]["EndpointName"] == ep
    assert endpoint["Condition"] == "HasSageMakerImage"
    (config,) = _of(t, "AWS::SageMaker::EndpointConfig").values()
    variant = config["Properties"]["ProductionVariants"][0]
    # the configured production variant name (names.sagemaker_production_variant), as the alarms use it
    assert variant["VariantName"] == "AllTraffic" and variant["InstanceType"] == "ml.g5.xlarge"
    assert variant["InitialInstanceCount"] == 2
    dc = config["Properties"]["DataCaptureConfig"]
    assert dc["InitialSamplingPercentage"] == 10 and dc["EnableCapture"] is True
    assert dc["DestinationS3Uri"] == f"s3://{project}-staging-artifacts/datacapture/{ep}/"
    assert dc["CaptureOptions"] == [{"CaptureMode": "Output"}]  # model outputs only
    (model,) = _of(t, "AWS::SageMaker::Model").values()
    src = model["Properties"]["PrimaryContainer"]["ModelDataSource"]["S3DataSource"]
    assert src == {"S3Uri": f"s3://{project}-staging-artifacts/models/staging/vision/", "S3DataType": "S3Prefix",
                   "CompressionType": "None"}
    assert t["Parameters"]["SageMakerImageDigest"]["Default"] == DIGEST
    # prod is not in targets.sagemaker.stages: no endpoint there
    assert not _of(_stage(synth, data, "prod"), "AWS::SageMaker::Endpoint")


def test_alarms_on_the_production_variant(sm_synth):
    data, synth = sm_synth
    t = _stage(synth, data, "staging")
    project = data["project"]
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in _of(t, "AWS::CloudWatch::Alarm").values()}
    lat = alarms[f"{project}-staging-vision-latency-p99"]
    assert lat["ExtendedStatistic"] == "p99" and lat["Threshold"] == 800_000 and lat["Namespace"] == "AWS/SageMaker"
    assert {d["Name"]: d["Value"] for d in lat["Dimensions"]} == {"EndpointName": f"{project}-staging-vision",
                                                                  "VariantName": "AllTraffic"}
    err = alarms[f"{project}-staging-vision-5xx"]
    assert err["MetricName"] == "Invocation5XXErrors" and err["AlarmActions"]
    assert {d["Name"]: d["Value"] for d in err["Dimensions"]}["VariantName"] == "AllTraffic"


def test_data_capture_bucket_policy_and_roles(sm_synth):
    data, synth = sm_synth
    t = _stage(synth, data, "staging")
    project = data["project"]
    (policy,) = [p for p in _of(t, "AWS::S3::BucketPolicy").values()
                 if any(s.get("Sid", "").startswith("DataCapture")
                        for s in p["Properties"]["PolicyDocument"]["Statement"])]
    stmts = {s.get("Sid"): s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert stmts["DataCaptureWrite"]["Effect"] == "Allow" and stmts["DataCaptureWrite"]["Action"] == "s3:PutObject"
    assert stmts["DataCaptureWriterOnly"]["Effect"] == "Deny"
    roles = {r["Properties"].get("RoleName"): r["Properties"] for r in _of(t, "AWS::IAM::Role").values()}
    exec_role = roles[f"{project}-staging-sagemaker"]
    assert exec_role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    deploy = [p["Properties"] for p in _of(t, "AWS::IAM::ManagedPolicy").values()
              if any(s.get("Sid") == "SageMakerDeploy" for s in p["Properties"]["PolicyDocument"]["Statement"])]
    assert len(deploy) == 1
    sids = {s["Sid"]: s for s in deploy[0]["PolicyDocument"]["Statement"]}
    assert "sagemaker:UpdateEndpoint" in sids["SageMakerDeploy"]["Action"]
    assert "sagemaker:UpdateEndpointWeightsAndCapacities" in sids["SageMakerDeploy"]["Action"]
    assert sids["PassExecutionRole"]["Condition"] == {"StringEquals": {"iam:PassedToService":
                                                                       "sagemaker.amazonaws.com"}}


def test_cdk_nag_and_cfn_lint_clean(sm_synth):
    _, synth = sm_synth
    assert synth.report is not None, "cdk-nag plugin did not run"
    findings = [(v["ruleName"], [c.get("constructPath") for c in v.get("violatingConstructs", [])])
                for rep in synth.report["pluginReports"] for v in rep.get("violations", [])]
    assert findings == []
    files = sorted(str(p) for p in synth.outdir.glob("*stage.template.json"))
    assert cfn_lint(*files) == []


def test_dashboard_shows_the_endpoint_variants_and_its_alarms(sm_synth):
    from .test_cdk_services import dashboard_widgets, metrics_of

    _, synth = sm_synth
    widgets = dashboard_widgets(synth, "staging")
    graphs = {w["properties"]["title"]: w for w in widgets if w["type"] == "metric"}
    latency = graphs["SageMaker iris-staging-vision: ModelLatency p50/p99 (µs)"]["properties"]["metrics"]
    production = TARGET.get("production_variant", "production")
    want = {(v, s) for v in (production, "shadow") for s in ("p50", "p99")}
    assert {(m[5], m[-1]["stat"]) for m in latency} == want
    assert set(metrics_of(graphs["SageMaker iris-staging-vision: invocations"])) == {("AWS/SageMaker", "Invocations")}
    alarm = next(w for w in widgets if w["type"] == "alarm")
    from pipeline_tools.targets.sagemaker import alarm_names

    watched = {a.rsplit(":", 1)[1] for a in alarm["properties"]["alarms"]}
    assert set(alarm_names("iris", "staging", "vision").values()) <= watched
    prod = dashboard_widgets(synth, "prod")  # the target is staging-only
    assert not any(w["properties"].get("title", "").startswith("SageMaker") for w in prod)
