"""PipelineStack with gate alarms CodePipeline can watch itself: stage conditions instead of billed
waiting, cfn-lint clean; CodeBuild caches pip (and docker layers for docker steps)."""

from __future__ import annotations

import pytest

from .conftest import base_config, cfn_lint, synth_app, write_config

pytestmark = pytest.mark.cdk


@pytest.fixture(scope="module")
def exact_alarms(tmp_path_factory):
    data = base_config()
    data["stages"]["staging"]["gate"]["alarms"] = ["iris-staging-predict-Errors", "iris-staging-predict-Throttles"]
    data["stages"]["staging"]["gate"]["insufficient_data"] = "fail"
    path = write_config(tmp_path_factory.mktemp("cond") / "pipeline.yml", data)
    return synth_app(path, tmp_path_factory.mktemp("cond.out"), nag=True,
                     image_digests={"model": "sha256:" + "ab" * 32})


def _stages(synth, stage):
    tpl = synth.template(f"iris-{stage}-pipeline")
    pipeline = next(r for r in tpl["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline")
    return tpl, {s["Name"]: s for s in pipeline["Properties"]["Stages"]}


def test_deploy_stage_rolls_back_on_alarm_and_gate_does_not_wait(exact_alarms):
    tpl, stages = _stages(exact_alarms, "staging")
    cond = stages["Deploy"]["OnSuccess"]["Conditions"][0]
    assert cond["Result"] == "ROLLBACK"
    assert [(r["RuleTypeId"]["Provider"], r["Configuration"]["AlarmName"]) for r in cond["Rules"]] == [
        ("CloudWatchAlarm", "iris-staging-predict-Errors"), ("CloudWatchAlarm", "iris-staging-predict-Throttles")]
    assert cond["Rules"][0]["Configuration"]["WaitTime"] == "5"          # bake 300s of the contract
    assert stages["Deploy"]["OnFailure"]["Result"] == "ROLLBACK"
    specs = {r["Properties"]["Name"]: str(r["Properties"]["Source"]["BuildSpec"])
             for r in tpl["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"}
    assert "pt gate --stage staging" in specs["iris-staging-gate"] and "--wait" not in specs["iris-staging-gate"]
    # prod keeps prefixes and insufficient_data: wait → no condition, pt gate --wait
    _, prod = _stages(exact_alarms, "prod")
    assert "OnSuccess" not in prod["Promote"]


def test_codebuild_caches_pip_and_docker_layers(exact_alarms):
    tpl, _ = _stages(exact_alarms, "staging")
    projects = {r["Properties"]["Name"]: r["Properties"] for r in tpl["Resources"].values()
                if r["Type"] == "AWS::CodeBuild::Project"}
    assert projects["iris-staging-build"]["Cache"] == {"Type": "LOCAL",
                                                       "Modes": ["LOCAL_DOCKER_LAYER_CACHE", "LOCAL_CUSTOM_CACHE"]}
    assert projects["iris-staging-deploy"]["Cache"] == {"Type": "LOCAL", "Modes": ["LOCAL_CUSTOM_CACHE"]}
    assert "/root/.cache/pip/**/*" in str(projects["iris-staging-build"]["Source"]["BuildSpec"])


def test_conditioned_pipeline_is_cfn_lint_and_nag_clean(exact_alarms):
    findings = [v["ruleName"] for rep in (exact_alarms.report or {"pluginReports": []})["pluginReports"]
                for v in rep.get("violations", [])]
    assert exact_alarms.report is not None and findings == []
    path = exact_alarms.outdir / "iris-staging-pipeline.template.json"
    assert cfn_lint(path) == []


def test_steps_without_docker_run_the_pinned_toolkit_image_asset(exact_alarms):
    from pipeline_tools import __version__

    tpl, _ = _stages(exact_alarms, "staging")
    projects = {r["Properties"]["Name"]: r["Properties"] for r in tpl["Resources"].values()
                if r["Type"] == "AWS::CodeBuild::Project"}
    deploy, build = projects["iris-staging-deploy"], projects["iris-staging-build"]
    image = str(deploy["Environment"]["Image"])
    assert "container-assets" in image and deploy["Environment"]["ImagePullCredentialsType"] == "SERVICE_ROLE"
    assert "pip install" not in str(deploy["Source"]["BuildSpec"])
    assert build["Environment"]["Image"] == "aws/codebuild/standard:7.0"     # its dockerd builds the images
    spec = build["Source"]["BuildSpec"]
    text = "".join(p for p in spec["Fn::Join"][1] if isinstance(p, str)) if isinstance(spec, dict) else spec
    assert f"pip install --quiet 'pipeline-tools=={__version__}'" in text
    # the asset is in the cloud assembly with the pinned requirement in its Dockerfile
    dockerfiles = list(exact_alarms.outdir.glob("asset.*/Dockerfile"))
    assert dockerfiles and all(f"'pipeline-tools=={__version__}'" in p.read_text() for p in dockerfiles)
