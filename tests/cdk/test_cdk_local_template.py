"""synth_stage_template(local=True): the template `pt local up` gives moto's CloudFormation."""

from __future__ import annotations

import json

import pytest

from .conftest import CONTRACT, DIGEST

pytestmark = pytest.mark.cdk


@pytest.fixture(scope="module")
def local_template():
    from pipeline_tools.core.config import load
    from pipeline_tools.infra.stacks import synth_stage_template

    return synth_stage_template(load(CONTRACT), "staging", local=True)


def test_local_template_needs_no_bootstrap(local_template):
    assert "Rules" not in local_template  # no CheckBootstrapVersion rule
    assert set(local_template.get("Parameters", {})) == {"ModelImageDigest"}
    types = {r["Type"] for r in local_template["Resources"].values()}
    assert "AWS::CDK::Metadata" not in types
    names = [r["Properties"]["RepositoryName"] for r in local_template["Resources"].values()
             if r["Type"] == "AWS::ECR::Repository"]
    assert names == ["iris-model"] and all(n == n.lower() for n in names)
    # local stacks can be torn down: nothing retained, no deletion protection
    assert not [k for k, r in local_template["Resources"].items() if r.get("DeletionPolicy") == "Retain"]
    table = next(r for r in local_template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    assert table["Properties"]["DeletionProtectionEnabled"] is False


def test_unknown_stage_is_a_usage_error():
    from pipeline_tools.core.config import load
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.infra.stacks import synth_stage_template

    with pytest.raises(UsageError, match="unknown stage 'stagin'"):
        synth_stage_template(load(CONTRACT), "stagin", local=True)


def test_moto_cloudformation_creates_the_local_stage_stack(aws, local_template):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="iris-staging-stage", TemplateBody=json.dumps(local_template),
                     Parameters=[{"ParameterKey": "ModelImageDigest", "ParameterValue": DIGEST}],
                     Capabilities=["CAPABILITY_NAMED_IAM"])
    stack = cfn.describe_stacks(StackName="iris-staging-stage")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    fn = aws.client("lambda").get_function(FunctionName="iris-staging-predict")["Configuration"]
    assert fn["MemorySize"] == 1024 and fn["Timeout"] == 30  # (moto's CloudFormation drops PackageType)
    assert aws.client("dynamodb").describe_table(TableName="iris-ledger")["Table"]["KeySchema"][0] == {
        "AttributeName": "pk", "KeyType": "HASH"}
    repos = aws.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repos] == ["iris-model"]
    topics = [t["TopicArn"] for t in aws.client("sns").list_topics()["Topics"]]
    assert any(t.endswith(":iris-staging-events") for t in topics)
