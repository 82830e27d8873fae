"""Config changes reach the templates: a new function and a new stage, nothing else moves."""

from __future__ import annotations

import pytest

from .conftest import DIGEST, base_config, synth_app, write_config

pytestmark = pytest.mark.cdk


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    data = base_config()
    data["functions"]["explain"] = {"image": "model", "handler": "app.explain", "memory": 512, "timeout": 60}
    data["stages"]["qa"] = {"account": "333333333333", "region": "eu-west-1", "branch": "qa",
                            "gate": {"alarms": ["iris-qa-*"]}}
    del data["cdk"]  # StageStacks (+ dashboards) only: no repository/connection -> no pipeline or OIDC stacks
    d = tmp_path_factory.mktemp("variant")
    s = synth_app(write_config(d / "pipeline.yml", data), d / "cdk.out", nag=False, image_digests={"model": DIGEST})
    print(f"\n[cdk] synth of {len(s.templates)} stage stacks (variant): {s.seconds:.1f}s")
    return s


def kinds(template: dict, kind: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def test_only_stage_stacks_without_repository(variant):
    assert sorted(variant.templates) == ["iris-prod-dashboard", "iris-prod-stage", "iris-qa-dashboard",
                                         "iris-qa-stage", "iris-staging-dashboard", "iris-staging-stage"]


def test_new_function_adds_its_lambda_alias_alarms_and_permissions(synthesized, variant):
    before, after = synthesized.template("iris-staging-stage"), variant.template("iris-staging-stage")
    new_ids = set(after["Resources"]) - set(before["Resources"])
    assert {after["Resources"][i]["Type"] for i in new_ids} >= {
        "AWS::Lambda::Function", "AWS::Lambda::Alias", "AWS::Lambda::Version", "AWS::Logs::LogGroup",
        "AWS::IAM::Role", "AWS::CloudWatch::Alarm"}
    fn = next(after["Resources"][i]["Properties"] for i in new_ids
              if after["Resources"][i]["Type"] == "AWS::Lambda::Function")
    assert fn["FunctionName"] == "iris-staging-explain" and fn["Timeout"] == 60
    assert fn["ImageConfig"] == {"Command": ["app.explain"]}
    alarms = sorted(after["Resources"][i]["Properties"]["AlarmName"] for i in new_ids
                    if after["Resources"][i]["Type"] == "AWS::CloudWatch::Alarm")
    assert alarms == ["iris-staging-explain-duration-p99", "iris-staging-explain-errors",
                      "iris-staging-explain-throttles"]
    assert not set(before["Resources"]) - set(after["Resources"])  # nothing removed
    # Of the existing resources only the deploy role's policy changes (it now names the new function).
    changed = {i for i in before["Resources"] if before["Resources"][i] != after["Resources"][i]}
    assert {before["Resources"][i]["Type"] for i in changed} == {"AWS::IAM::ManagedPolicy"}
    policy = next(iter(kinds(after, "AWS::IAM::ManagedPolicy").values()))["Properties"]["PolicyDocument"]
    assert "function:iris-staging-explain" in str(policy)


def test_new_stage_gets_its_own_stack_in_its_account_and_region(variant):
    qa = variant.template("iris-qa-stage")
    fns = sorted(r["Properties"]["FunctionName"] for r in kinds(qa, "AWS::Lambda::Function").values())
    assert fns == ["iris-qa-batch-score", "iris-qa-explain", "iris-qa-predict"]
    assert [r["Properties"]["TopicName"] for r in kinds(qa, "AWS::SNS::Topic").values()] == ["iris-qa-events"]
    assert "iris-qa-artifacts" in [r["Properties"].get("BucketName") for r in kinds(qa, "AWS::S3::Bucket").values()]
    roles = [r["Properties"].get("RoleName") for r in kinds(qa, "AWS::IAM::Role").values()]
    assert "iris-qa-deploy" in roles
    # a new account owns its own copies of the account-wide resources
    assert [r["Properties"]["TableName"] for r in kinds(qa, "AWS::DynamoDB::Table").values()] == ["iris-ledger"]
    assert [r["Properties"]["RepositoryName"] for r in kinds(qa, "AWS::ECR::Repository").values()] == ["iris-model"]
    assert "eu-west-1" in str(qa) and "333333333333" in str(qa)


def test_same_account_stage_refers_to_shared_resources_by_name():
    from pipeline_tools.core.config import parse
    from pipeline_tools.infra.stacks import synth_stage_template

    from .conftest import CONTRACT

    cfg = parse(CONTRACT.read_text().replace('"222222222222"', '"111111111111"'))
    prod = synth_stage_template(cfg, "prod", local=False)
    assert not kinds(prod, "AWS::DynamoDB::Table") and not kinds(prod, "AWS::ECR::Repository")
    policy = str(next(iter(kinds(prod, "AWS::IAM::ManagedPolicy").values())))
    assert "table/iris-ledger" in policy and "repository/iris-model" in policy
