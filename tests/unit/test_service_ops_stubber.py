"""What moto lacks or cannot fail on demand, with botocore's Stubber shaped like the API reference:
Step Functions versions (ListStateMachineVersions pages), and SSM read errors (fail closed)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from pipeline_tools.core.config import parse
from pipeline_tools.ops import params
from pipeline_tools.ops.teardown import Clients
from pipeline_tools.ops.teardown_services import discover

CFG = """\
project: iris
region: us-east-1
images: {model: {}}
targets: {stepfunctions: {flow: {}}}
stages:
  val: {account: "123456789012", branch: val, gate: {alarms: ["iris-val-*"]}}
"""
SM = "arn:aws:states:us-east-1:123456789012:stateMachine:iris-val-flow"


def client(name: str):
    return boto3.client(name, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_state_machine_versions_and_aliases_are_read_across_pages():
    sfn = client("stepfunctions")
    with Stubber(sfn) as st:
        st.add_response("list_state_machines", {"stateMachines": [
            {"stateMachineArn": SM, "name": "iris-val-flow", "type": "STANDARD", "creationDate": 0},
            {"stateMachineArn": SM + "-x", "name": "iris-val-flow-x", "type": "STANDARD", "creationDate": 0}]})
        st.add_response("list_state_machine_aliases", {"stateMachineAliases": [
            {"stateMachineAliasArn": SM + ":live", "creationDate": 0}]}, {"stateMachineArn": SM})
        st.add_response("list_state_machine_versions", {"stateMachineVersions": [
            {"stateMachineVersionArn": SM + ":2", "creationDate": 0}], "nextToken": "t"}, {"stateMachineArn": SM})
        st.add_response("list_state_machine_versions", {"stateMachineVersions": [
            {"stateMachineVersionArn": SM + ":1", "creationDate": 0}]}, {"stateMachineArn": SM, "nextToken": "t"})
        inv = discover(parse(CFG), "val", Clients(lambda_client=None, s3=None, ecr=None, logs=None,
                                                  cloudformation=None, stepfunctions=sfn))
        st.assert_no_pending_responses()
    assert inv.state_machines == [{"arn": SM, "name": "iris-val-flow", "aliases": [SM + ":live"],
                                   "versions": [SM + ":2", SM + ":1"]}]


def test_params_read_pages_and_a_read_error_is_never_same():
    ssm = client("ssm")
    page = {"Path": "/pt/s/val", "Recursive": True, "WithDecryption": True, "MaxResults": 10}
    with Stubber(ssm) as st:
        st.add_response("get_parameters_by_path", {"Parameters": [
            {"Name": "/pt/s/val/a", "Type": "String", "Value": "1", "Version": 3}], "NextToken": "n"}, page)
        st.add_response("get_parameters_by_path", {"Parameters": [
            {"Name": "/pt/s/val/b", "Type": "SecureString", "Value": "x", "Version": 1}]}, {**page, "NextToken": "n"})
        cur = params.read_current(ssm, "/pt/s/val/")
    assert cur == {"a": params.Current("a", "1", "String", 3), "b": params.Current("b", "x", "SecureString", 1)}
    with Stubber(ssm) as st:
        st.add_client_error("get_parameters_by_path", "AccessDeniedException", "no", expected_params=page)
        with pytest.raises(ClientError):
            params.push(ssm, "/pt/s/val/", {"a": params.Param("a", "1")})
