"""LogShipping construct: real synth with aws_cdk.assertions and cdk-nag (AwsSolutions), and the
inline forwarder's bulk body."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

pytest.importorskip("aws_cdk", reason="needs the [cdk] extra")

DOMAIN = "arn:aws:es:us-east-1:111111111111:domain/iris-logs"
ENDPOINT = "https://search-iris-logs-abc.us-east-1.es.amazonaws.com"
GROUPS = ["/aws/lambda/iris-val-predict", "/aws/lambda/iris-val-batch-score"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    import aws_cdk as cdk
    from aws_cdk import aws_logs as logs
    from cdk_nag import AwsSolutionsChecks

    from pipeline_tools.infra.stacks import FEATURE_FLAGS, silence_node_warnings
    from pipeline_tools.infra.stacks.log_shipping import LogShipping

    silence_node_warnings()
    out = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=FEATURE_FLAGS, outdir=str(out), analytics_reporting=False)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = cdk.Stack(app, "Shipping", env=cdk.Environment(account="111111111111", region="us-east-1"))
    own = logs.LogGroup(stack, "FnLogs", log_group_name=GROUPS[0], retention=logs.RetentionDays.ONE_WEEK)
    LogShipping(stack, "Ship", domain_arn=DOMAIN, endpoint=ENDPOINT, groups=GROUPS, index="iris-val-logs",
                filter_pattern="?ERROR ?WARN", depends_on=[own])
    assembly = app.synth()
    report = out / "validation-report.json"
    return (cdk.assertions.Template.from_stack(stack), assembly.get_stack_by_name("Shipping").template,
            json.loads(report.read_text()) if report.exists() else None)


def test_one_filter_per_group_to_the_forwarder(synth):
    from aws_cdk.assertions import Match

    template, raw, _ = synth
    template.resource_count_is("AWS::Logs::SubscriptionFilter", 2)
    for g in GROUPS:
        template.has_resource_properties("AWS::Logs::SubscriptionFilter", {
            "LogGroupName": g, "FilterPattern": "?ERROR ?WARN", "DestinationArn": Match.any_value()})
    template.has_resource_properties("AWS::Lambda::Function", {
        "Runtime": "python3.14", "Handler": "index.handler",
        "Environment": {"Variables": {"ENDPOINT": ENDPOINT, "INDEX": "iris-val-logs"}}})
    template.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunction", "Principal": "logs.amazonaws.com"})
    fn = next(r for r in raw["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    assert len(fn["Properties"]["Code"]["ZipFile"]) < 4096  # CloudFormation's inline code limit
    # the function's own log group exists before its filter (DependsOn)
    own = next(k for k, r in raw["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"
               and r["Properties"].get("LogGroupName") == GROUPS[0])
    filt = next(r for r in raw["Resources"].values() if r["Type"] == "AWS::Logs::SubscriptionFilter"
                and r["Properties"]["LogGroupName"] == GROUPS[0])
    assert own in filt.get("DependsOn", [])


def test_role_has_only_its_logs_and_the_domain(synth):
    _, raw, _ = synth
    stmts = [s for r in raw["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
             for s in r["Properties"]["PolicyDocument"]["Statement"]]
    assert {s["Sid"]: s["Action"] for s in stmts} == {
        "OwnLogs": ["logs:CreateLogStream", "logs:PutLogEvents"], "OpenSearchBulk": ["es:ESHttpPost", "es:ESHttpPut"]}
    bulk = next(s for s in stmts if s["Sid"] == "OpenSearchBulk")
    assert bulk["Resource"] == f"{DOMAIN}/*"
    roles = [r for r in raw["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert all(not r["Properties"].get("ManagedPolicyArns") for r in roles)


def test_cdk_nag_clean(synth):
    *_, report = synth
    assert report is not None, "cdk-nag plugin did not run"
    violations = [v for rep in report["pluginReports"] for v in rep.get("violations", [])]
    assert violations == []


def test_forwarder_bulk_body():
    from pipeline_tools.infra.stacks import log_forwarder as fw

    data = {"messageType": "DATA_MESSAGE", "logGroup": GROUPS[0], "logStream": "s1", "owner": "111111111111",
            "logEvents": [{"id": "e1", "timestamp": 1_795_000_000_000, "message": "ERROR boom"}]}
    lines = fw.bulk_body(data, "iris-val-logs").splitlines()
    assert json.loads(lines[0]) == {"index": {"_index": "iris-val-logs-2026.11.18", "_id": "e1"}}
    doc = json.loads(lines[1])
    assert doc["message"] == "ERROR boom" and doc["log_group"] == GROUPS[0] and doc["@timestamp"].startswith("2026")
    assert fw.bulk_body({"messageType": "CONTROL_MESSAGE"}, "x") == ""
    event = {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(
        {"messageType": "CONTROL_MESSAGE"}).encode())).decode()}}
    assert fw.handler(event, None) == {"indexed": 0}


def test_stage_stack_ships_its_function_logs_when_configured(tmp_path):
    from .conftest import DIGEST, base_config, synth_app, write_config

    data = base_config()
    data["stages"]["staging"]["logs"] = {"opensearch": {"domain_arn": DOMAIN, "endpoint": ENDPOINT}}
    s = synth_app(write_config(tmp_path / "pipeline.yml", data), tmp_path / "out", nag=True,
                  image_digests={"model": DIGEST})
    violations = [v for rep in (s.report or {"pluginReports": []})["pluginReports"] for v in rep.get("violations", [])]
    assert violations == []
    raw = s.template("iris-staging-stage")
    filters = {r["Properties"]["LogGroupName"]: r for r in raw["Resources"].values()
               if r["Type"] == "AWS::Logs::SubscriptionFilter"}
    assert set(filters) == {"/aws/lambda/iris-staging-predict", "/aws/lambda/iris-staging-batch-score"}
    for f in filters.values():  # created with the function's log group, only when its image exists
        assert f["Condition"] == "HasModelImage" and f["DependsOn"]
    fn = next(r for r in raw["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
              and r["Properties"].get("Environment", {}).get("Variables", {}).get("INDEX") == "iris-staging-logs")
    assert fn["Properties"]["Runtime"] == "python3.14"
    assert not [r for r in s.template("iris-prod-stage")["Resources"].values()
                if r["Type"] == "AWS::Logs::SubscriptionFilter"]
