"""Teardown of one stage never empties or deletes what another stage derives too (moto server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline_tools.core.config import Config, load
from pipeline_tools.core.errors import ConfigError
from pipeline_tools.ops import teardown as td

from .conftest_ops import seed_bucket, seed_function, seed_log_group, write_config


def _config(bucket: str, *, val_eu_account: str = "123456789012", functions: str = "predict") -> str:
    fns = "\n".join(f"  {f}: {{image: model}}" for f in functions.split(","))
    return f"""\
project: iris
region: us-east-1
images:
  model: {{context: .}}
artifacts:
  bucket: "{bucket}"
functions:
{fns}
stages:
  val:
    account: "123456789012"
    branch: val
  val-eu:
    account: "{val_eu_account}"
    branch: val-eu
  staging:
    account: "111111111111"
    branch: integration
"""


def _unchecked(text: str) -> Config:
    """The config as the models read it, without the cross checks that `pt config validate` (and so
    every command) applies first: teardown's own scope check must hold even then."""
    return Config.model_validate(yaml.safe_load(text))


# (id, config, stage torn down, (type, name) kept, words in the reason)
PURE = [
    ("bucket-template-without-stage", _config("{project}-artifacts"), "val",
     ("s3:bucket", "iris-artifacts"), "shared with stage(s) val-eu, staging: artifacts.bucket '{project}-artifacts' "
                                      "renders the same name for them (it has no {stage})"),
    ("fixed-bucket-name-other-accounts", _config("models-bucket", val_eu_account="999999999999"), "staging",
     ("s3:bucket", "models-bucket"), "shared with stage(s) val, val-eu"),
    ("function-names-collide", _config("{project}-{stage}-artifacts", functions="predict,eu-predict"), "val",
     ("lambda:function", "iris-val-eu-predict"), "also the function of stage val-eu in account 123456789012/us-east-1"),
    ("function-names-collide-other-side", _config("{project}-{stage}-artifacts", functions="predict,eu-predict"),
     "val-eu", ("logs:group", "/aws/lambda/iris-val-eu-predict"), "also the function of stage val"),
]


@pytest.mark.parametrize("text, stage, key, why", [r[1:] for r in PURE], ids=[r[0] for r in PURE])
def test_shared_resources_table(tmp_path, text, stage, key, why):
    with pytest.raises(ConfigError, match="is also derived for stage"):  # the first line of defence
        load(write_config(tmp_path, text))
    cfg = _unchecked(text)
    shared = td.shared_resources(cfg, stage)
    assert key in shared and why in shared[key]


def test_function_collision_only_within_one_account(tmp_path):
    cfg = _unchecked(_config("{project}-{stage}-artifacts", val_eu_account="999999999999",
                                        functions="predict,eu-predict"))
    assert td.shared_resources(cfg, "val") == {}


def _run(aws, run_pt, cfg_path: Path, stage: str, ev_dir: Path):
    """`pt teardown` refuses the config (exit 2, nothing touched); the library, handed the same
    config without those checks, keeps what is shared and says why in its evidence."""
    r = run_pt("teardown", "--stage", stage, "--yes", "--config", cfg_path, "--evidence-dir", ev_dir)
    assert r.exit_code == 2 and "is also derived for stage" in r.stderr, r
    assert not ev_dir.exists() or not list(ev_dir.glob("*.json"))
    clients = td.Clients(lambda_client=aws.client("lambda"), s3=aws.client("s3"), ecr=aws.client("ecr"),
                         logs=aws.client("logs"), cloudformation=aws.client("cloudformation"),
                         cloudwatch=aws.client("cloudwatch"), sns=aws.client("sns"))
    ev = td.teardown(_unchecked(cfg_path.read_text()), stage, clients, clock=lambda: 1_800_000_000.0,
                     sleep=lambda _s: None, evidence_dir=ev_dir)
    evidence = json.loads(next(ev_dir.glob("*.json")).read_text())
    return ev, evidence


def _kept_reasons(evidence: dict) -> list[str]:
    return [f"kept {k['type']} {k['name']}: {k['why']}" for k in evidence["kept"]]


def test_shared_bucket_is_never_emptied(aws, tmp_path, run_pt):
    cfg_path = write_config(tmp_path, _config("{project}-artifacts"))
    entries = seed_bucket(aws, "iris-artifacts", keys=2, versions_per_key=2, markers=1)
    seed_function(aws, "iris-val-predict", versions=1)
    _r, ev = _run(aws, run_pt, cfg_path, "val", tmp_path / "ev")
    assert ("kept s3:bucket iris-artifacts: shared with stage(s) val-eu, staging: artifacts.bucket "
            "'{project}-artifacts' renders the same name for them (it has no {stage})") in _kept_reasons(ev)
    assert len(td.list_object_versions(aws.client("s3"), "iris-artifacts")) == entries
    assert not [a for a in ev["actions"] if a["resource_type"].startswith("s3:") and a["result"] != "kept"]
    assert {"type": "s3:bucket", "name": "iris-artifacts"}.items() <= ev["kept"][0].items()
    assert "iris-val-predict" not in {f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]}
    assert ev["ok"] is True


def test_colliding_function_its_log_group_and_alarms_are_kept(aws, tmp_path, run_pt):
    cfg_path = write_config(tmp_path, _config("{project}-{stage}-artifacts", functions="predict,eu-predict"))
    for fn in ("iris-val-predict", "iris-val-eu-predict"):
        seed_function(aws, fn, versions=1)
        seed_log_group(aws, f"/aws/lambda/{fn}", ["hello"])
    cw = aws.client("cloudwatch")
    for name in ("iris-val-predict-errors", "iris-val-eu-predict-errors"):
        cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    for stage in ("val-eu", "val"):
        ev_dir = tmp_path / f"ev-{stage}"
        _r, ev = _run(aws, run_pt, cfg_path, stage, ev_dir)
        kept = {(k["type"], k["name"]) for k in ev["kept"]}
        assert ("lambda:function", "iris-val-eu-predict") in kept, ev["kept"]
        assert any(k.startswith("kept lambda:function iris-val-eu-predict: also the function of stage")
                   for k in _kept_reasons(ev))
    functions = {f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]}
    assert functions == {"iris-val-eu-predict"}
    groups = {g["logGroupName"] for g in aws.client("logs").describe_log_groups()["logGroups"]}
    assert groups == {"/aws/lambda/iris-val-eu-predict"}
    assert [a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]] == ["iris-val-eu-predict-errors"]


def test_stack_that_manages_a_shared_resource_is_kept(aws, tmp_path, run_pt):
    """The stage stack of `val` owns the shared bucket: deleting the stack would delete it."""
    cfg_path = write_config(tmp_path, _config("{project}-artifacts"))
    template = {"Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "iris-artifacts"}},
                              "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "iris-val-events"}}}}
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="iris-val-stage", TemplateBody=json.dumps(template))
    aws.client("s3").put_object(Bucket="iris-artifacts", Key="staging/model.bin", Body=b"x")
    _r, ev = _run(aws, run_pt, cfg_path, "val", tmp_path / "ev")
    assert any(k.startswith("kept cloudformation:stack iris-val-stage: the stack manages iris-artifacts, which is "
                            "shared (shared with stage(s) val-eu, staging") for k in _kept_reasons(ev))
    assert cfn.describe_stacks(StackName="iris-val-stage")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert aws.client("s3").get_object(Bucket="iris-artifacts", Key="staging/model.bin")["Body"].read() == b"x"
    assert not [a for a in ev["actions"] if a["step"] == "delete-stack"]
