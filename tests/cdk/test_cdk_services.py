"""Model services (`services:`), the Batch path and the dashboard, from one config: real synth with
cdk-nag AwsSolutions as a plugin and cfn-lint, for one account and for three (`accounts:`)."""

from __future__ import annotations

import json

import pytest

from .conftest import DIGEST, base_config, cfn_lint, synth_app, write_config

pytestmark = pytest.mark.cdk

POOL = "us-east-1:12345678-1234-1234-1234-123456789012"
A, B, C = "111111111111", "222222222222", "333333333333"
DEFINITION = {
    "StartAt": "Score",
    "States": {"Score": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "${ModelFunctionArn}", "Payload.$": "$"},
                         "Next": "Batch"},
               "Batch": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                         "Parameters": {"FunctionName": "${BatchFunction}", "Payload.$": "$", "Mode": "${Mode}"},
                         "End": True}},
}


def services_config(tmp_path, *, accounts: bool = False):
    data = base_config()
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "score.json").write_text(json.dumps(DEFINITION, indent=2))
    (tmp_path / "flows" / "quick.json").write_text(json.dumps(
        {"StartAt": "Go", "States": {"Go": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                             "Parameters": {"FunctionName": "${Fn}"}, "End": True}}}))
    data["functions"]["predict"].update(ephemeral_storage=4096, reserved_concurrency=5)
    data["targets"] = {
        "stepfunctions": {
            "score": {"definition": "flows/score.json",
                      "substitutions": {"ModelFunctionArn": "function:predict",
                                        "BatchFunction": "function:batch-score", "Mode": "full"}},
            "quick": {"definition": "flows/quick.json", "type": "EXPRESS",
                      "substitutions": {"Fn": "function:predict"}},
            "offline": {"definition": "flows/quick.json", "substitutions": {"Fn": "function:batch-score"}},
        },
        "batch": {"nightly": {"image": "model", "command": ["python", "-m", "score"], "vcpu": 1, "memory": 2048,
                              "timeout": 1800, "retry": 2, "environment": {"MODE": "nightly"},
                              "schedule": "cron(0 3 * * ? *)"}},
    }
    data["services"] = {
        "scorer": {"function": "predict", "state_machine": "score", "batch": ["nightly"],
                   "api": {"throttle_rate": 25, "throttle_burst": 40},
                   "access": {"identity_pool_id": POOL, "user_pool_id": "us-east-1_AbC123", "groups": ["analysts"],
                              "prefixes": ["scenarios", "results"]}},
        "fast": {"function": "predict", "state_machine": "quick", "stages": ["staging"],
                 "access": {"identity_pool_id": POOL}},
    }
    if accounts:
        data["accounts"] = {"tooling": C}
        data["stages"]["staging"]["account"], data["stages"]["prod"]["account"] = A, B
    return write_config(tmp_path / "pipeline.yml", data)


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    path = services_config(tmp_path_factory.mktemp("svc"))
    s = synth_app(path, tmp_path_factory.mktemp("cdk.out"), nag=True, image_digests={"model": DIGEST})
    print(f"\n[cdk] services synth of {len(s.templates)} stacks with cdk-nag: {s.seconds:.1f}s")
    return s


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    path = services_config(tmp_path_factory.mktemp("svc3"), accounts=True)
    return synth_app(path, tmp_path_factory.mktemp("cdk.out"), nag=True, image_digests={"model": DIGEST})


def tpl(s, name: str):
    from aws_cdk.assertions import Template

    return Template.from_json(s.template(name))


def resources(template: dict, kind: str) -> list[dict]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def text(v) -> str:
    return json.dumps(v)


def test_stacks_per_service_and_stage(svc):
    assert {"iris-scorer-staging-service", "iris-scorer-prod-service", "iris-fast-staging-service",
            "iris-staging-targets", "iris-prod-targets", "iris-staging-dashboard",
            "iris-prod-dashboard"} <= set(svc.templates)
    assert "iris-fast-prod-service" not in svc.templates  # services.fast.stages: [staging]


def test_service_bucket_is_versioned_encrypted_and_ssl_only(svc):
    from aws_cdk.assertions import Match

    t = tpl(svc, "iris-scorer-staging-service")
    t.has_resource_properties("AWS::S3::Bucket", {
        "BucketName": "iris-scorer-staging", "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}})
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_service_function_storage_concurrency_and_params_path(svc):
    fns = {f["FunctionName"]: f for f in resources(svc.template("iris-staging-stage"), "AWS::Lambda::Function")}
    predict = fns["iris-staging-predict"]
    assert predict["EphemeralStorage"] == {"Size": 4096} and predict["ReservedConcurrentExecutions"] == 5
    env = predict["Environment"]["Variables"]
    assert env["PT_SERVICE"] == "scorer" and env["PT_PARAMS_PATH"] == "/pt/scorer/staging/"
    assert env["PT_PARAMS_PATHS"] == "scorer=/pt/scorer/staging/,fast=/pt/fast/staging/"
    assert "PT_PARAMS_PATH" not in fns["iris-staging-batch-score"]["Environment"]["Variables"]
    assert fns["iris-staging-batch-score"]["EphemeralStorage"] == {"Size": 512}
    assert "ReservedConcurrentExecutions" not in fns["iris-staging-batch-score"]
    prod = next(f for f in resources(svc.template("iris-prod-stage"), "AWS::Lambda::Function")
                if f["FunctionName"] == "iris-prod-predict")
    assert "PT_PARAMS_PATHS" not in prod["Environment"]["Variables"]
    policies = text(resources(svc.template("iris-staging-stage"), "AWS::IAM::Policy"))
    assert "parameter/pt/scorer/staging/*" in policies and "ssm:GetParametersByPath" in policies


def test_state_machine_definition_substitutions_logging_tracing(svc):
    t = svc.template("iris-scorer-staging-service")
    (sm,) = resources(t, "AWS::StepFunctions::StateMachine")
    assert sm["StateMachineName"] == "iris-staging-score" and sm["StateMachineType"] == "STANDARD"
    subs = sm["DefinitionSubstitutions"]
    assert set(subs) == {"ModelFunctionArn", "BatchFunction", "Mode"}
    assert text(subs["ModelFunctionArn"]).endswith(':function:iris-staging-predict:live"]]}')
    assert "function:iris-staging-batch-score:live" in text(subs["BatchFunction"])
    assert subs["Mode"] == "full"
    assert json.loads(sm["DefinitionString"]) == DEFINITION  # the repository's file, placeholders kept
    assert sm["LoggingConfiguration"]["Level"] == "ALL" and sm["TracingConfiguration"] == {"Enabled": True}
    (alias,) = resources(t, "AWS::StepFunctions::StateMachineAlias")
    assert alias["Name"] == "live" and alias["RoutingConfiguration"][0]["Weight"] == 100
    role = next(r for r in resources(t, "AWS::IAM::Role") if r.get("RoleName") == "iris-staging-score-sfn")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "states.amazonaws.com"}
    invoke = [s for p in resources(t, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]
              if "lambda:InvokeFunction" in text(s["Action"])]
    assert len(invoke) == 1 and invoke[0]["Action"] == "lambda:InvokeFunction"
    targets = text(invoke[0]["Resource"])
    assert targets.count(":live") == 2 and "iris-staging-predict:live" in targets
    alarms = {a["AlarmName"] for a in resources(t, "AWS::CloudWatch::Alarm")}
    assert alarms == {"iris-staging-score-executions-failed", "iris-staging-score-executions-timed-out"}


def test_api_is_iam_authorized_and_integrates_step_functions_directly(svc):
    from aws_cdk.assertions import Match

    t = tpl(svc, "iris-scorer-staging-service")
    t.has_resource_properties("AWS::ApiGateway::RestApi", {"Name": "iris-staging-scorer-api"})
    t.resource_count_is("AWS::ApiGateway::Method", 2)
    t.has_resource_properties("AWS::ApiGateway::Method", {
        "HttpMethod": "POST", "AuthorizationType": "AWS_IAM",
        "Integration": Match.object_like({
            "Type": "AWS", "IntegrationHttpMethod": "POST",
            "Uri": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                        ":apigateway:us-east-1:states:action/StartExecution"]]},
            "Credentials": Match.any_value(), "PassthroughBehavior": "NEVER"})})
    t.has_resource_properties("AWS::ApiGateway::Method", {
        "HttpMethod": "GET", "AuthorizationType": "AWS_IAM",
        "RequestParameters": {"method.request.path.id": True},
        "Integration": Match.object_like({
            "Uri": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                        ":apigateway:us-east-1:states:action/DescribeExecution"]]}})})
    t.has_resource_properties("AWS::ApiGateway::Stage", {
        "StageName": "staging", "TracingEnabled": True,
        "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
        "MethodSettings": Match.array_with([Match.object_like({
            "HttpMethod": "*", "ResourcePath": "/*", "ThrottlingRateLimit": 25, "ThrottlingBurstLimit": 40})])})
    raw = svc.template("iris-scorer-staging-service")
    post = next(m for m in resources(raw, "AWS::ApiGateway::Method") if m["HttpMethod"] == "POST")
    assert "stateMachine:iris-staging-score:live" in text(post["Integration"]["RequestTemplates"])
    api_role = [s for p in resources(raw, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]
                if "states:" in text(s["Action"])]
    assert {s["Action"] for s in api_role} == {"states:StartExecution", "states:DescribeExecution"}
    start = next(s for s in api_role if s["Action"] == "states:StartExecution")
    assert text(start["Resource"]).endswith(':stateMachine:iris-staging-score:live"]]}')


def test_express_machine_api_uses_start_sync_execution(svc):
    raw = svc.template("iris-fast-staging-service")
    (sm,) = resources(raw, "AWS::StepFunctions::StateMachine")
    assert sm["StateMachineType"] == "EXPRESS" and set(sm["DefinitionSubstitutions"]) == {"Fn"}
    post = next(m for m in resources(raw, "AWS::ApiGateway::Method") if m["HttpMethod"] == "POST")
    assert ":states:action/StartSyncExecution" in text(post["Integration"]["Uri"])
    stage = resources(raw, "AWS::ApiGateway::Stage")[0]
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 50  # config default


def test_cognito_access_role_and_policy(svc):
    raw = svc.template("iris-scorer-staging-service")
    role = next(r for r in resources(raw, "AWS::IAM::Role") if r.get("RoleName") == "iris-staging-scorer-access")
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Principal"] == {"Federated": "cognito-identity.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"cognito-identity.amazonaws.com:aud": POOL},
                                  "ForAnyValue:StringLike": {"cognito-identity.amazonaws.com:amr": "authenticated"}}
    policy = next(p for p in resources(raw, "AWS::IAM::ManagedPolicy")
                  if p.get("ManagedPolicyName") == "iris-staging-scorer-access")
    assert len(role["ManagedPolicyArns"]) == 1  # exactly the access policy: the role and the policy agree
    sids = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert sids["InvokeApi"]["Action"] == "execute-api:Invoke"
    invoke = text(sids["InvokeApi"]["Resource"])
    assert "/staging/POST/run" in invoke and "/staging/GET/executions/*" in invoke
    assert set(sids["ReadWritePrefixes"]["Action"]) == {"s3:GetObject", "s3:PutObject"}
    objects = text(sids["ReadWritePrefixes"]["Resource"])
    assert "/scenarios/*" in objects and "/results/*" in objects and '"/*"' not in objects
    assert sids["ListPrefixes"]["Condition"]["StringLike"]["s3:prefix"] == [
        "scenarios/*", "results/*", "scenarios", "results"]


def test_deploy_role_gets_the_service_rights(svc):
    raw = svc.template("iris-scorer-staging-service")
    policy = next(p for p in resources(raw, "AWS::IAM::ManagedPolicy") if "ManagedPolicyName" not in p)
    assert policy["Roles"] == ["iris-staging-deploy"]
    sids = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert "states:PublishStateMachineVersion" in sids["StatesRelease"]["Action"]
    assert "states:UpdateStateMachineAlias" in sids["StatesRelease"]["Action"]
    assert "parameter/pt/scorer/staging/*" in text(sids["Parameters"]["Resource"])
    assert "ssm:PutParameter" in sids["Parameters"]["Action"]
    grant = sids["GrantAccess"]
    assert set(grant["Action"]) == {"iam:AttachRolePolicy", "iam:DetachRolePolicy"}
    assert list(grant["Condition"]["ArnEquals"]) == ["iam:PolicyARN"]
    assert "userpool/us-east-1_AbC123" in text(sids["CognitoGroups"]["Resource"])
    for s in policy["PolicyDocument"]["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), s


def test_batch_path(svc):
    from aws_cdk.assertions import Match

    t = tpl(svc, "iris-staging-targets")
    t.has_resource_properties("AWS::Batch::ComputeEnvironment", {
        "ComputeEnvironmentName": "iris-staging-batch", "Type": "managed",
        "ComputeResources": Match.object_like({"Type": "FARGATE"})})
    t.has_resource_properties("AWS::Batch::JobQueue", {"JobQueueName": "iris-staging-batch"})
    t.has_resource_properties("AWS::Batch::JobDefinition", {
        "JobDefinitionName": "iris-staging-nightly", "PlatformCapabilities": ["FARGATE"],
        "RetryStrategy": Match.object_like({"Attempts": 2}), "Timeout": {"AttemptDurationSeconds": 1800},
        "ContainerProperties": Match.object_like({
            "Command": ["python", "-m", "score"],
            "NetworkConfiguration": {"AssignPublicIp": "ENABLED"},
            "Environment": Match.array_with([{"Name": "MODE", "Value": "nightly"},
                                             {"Name": "PT_RESULTS", "Value": "s3://iris-scorer-staging/results/nightly/"}]),
            "ResourceRequirements": Match.array_with([{"Type": "MEMORY", "Value": "2048"},
                                                      {"Type": "VCPU", "Value": "1"}])})})
    t.has_resource_properties("AWS::Scheduler::Schedule", {
        "Name": "iris-staging-nightly", "ScheduleExpression": "cron(0 3 * * ? *)", "State": "ENABLED",
        "Target": Match.object_like({"Arn": "arn:aws:scheduler:::aws-sdk:batch:submitJob"})})
    raw = svc.template("iris-staging-targets")
    schedule = resources(raw, "AWS::Scheduler::Schedule")[0]
    assert json.loads(schedule["Target"]["Input"]) == {"JobName": "iris-staging-nightly-scheduled",
                                                      "JobQueue": "iris-staging-batch",
                                                      "JobDefinition": "iris-staging-nightly"}
    roles = {r.get("RoleName"): r for r in resources(raw, "AWS::IAM::Role")}
    assert {"iris-staging-batch-exec", "iris-staging-nightly-job", "iris-staging-scheduler"} <= set(roles)
    sched_trust = roles["iris-staging-scheduler"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert sched_trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    submit = next(s for p in resources(raw, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]
                  if s.get("Sid") == "SubmitJobs")
    assert submit["Action"] == "batch:SubmitJob"
    assert "job-definition/iris-staging-nightly" in text(submit["Resource"])
    assert len(submit["Resource"]) == 3  # the queue, the definition and its revisions: nothing else
    results = next(s for p in resources(raw, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]
                   if s.get("Sid") == "Results")
    assert "s3:::iris-scorer-staging/results/nightly/*" in text(results["Resource"])
    rules = {r["Name"] for r in resources(raw, "AWS::Events::Rule")}
    assert rules == {"iris-staging-batch-succeeded", "iris-staging-batch-failed"}


def test_state_machine_no_service_owns_lives_in_the_targets_stack(svc):
    for stage in ("staging", "prod"):
        names = {s["StateMachineName"] for s in resources(svc.template(f"iris-{stage}-targets"),
                                                          "AWS::StepFunctions::StateMachine")}
        assert names == ({"iris-staging-offline"} if stage == "staging" else {"iris-prod-offline", "iris-prod-quick"})


def dashboard_widgets(s, stage: str) -> list[dict]:
    (dash,) = resources(s.template(f"iris-{stage}-dashboard"), "AWS::CloudWatch::Dashboard")
    assert dash["DashboardName"] == f"iris-{stage}"
    body = dash["DashboardBody"]
    if isinstance(body, dict):  # Fn::Join with region/account/partition tokens: stand-ins keep it JSON
        body = "".join(p if isinstance(p, str) else "TOKEN" for p in body["Fn::Join"][1])
    return json.loads(body)["widgets"]


def metrics_of(widget: dict) -> list[tuple[str, str]]:
    return [(m[0], m[1]) for m in widget["properties"].get("metrics", [])]


def test_dashboard_widgets(svc):
    widgets = dashboard_widgets(svc, "staging")
    alarm = next(w for w in widgets if w["type"] == "alarm")
    watched = [a.rsplit(":", 1)[1] for a in alarm["properties"]["alarms"]]
    assert {"iris-staging-predict-errors", "iris-staging-predict-throttles", "iris-staging-predict-latency-p90",
            "iris-staging-batch-score-duration-p99", "iris-staging-score-executions-failed",
            "iris-staging-quick-executions-timed-out", "iris-staging-offline-executions-failed"} <= set(watched)
    graphs = {w["properties"]["title"]: w for w in widgets if w["type"] == "metric"}
    assert set(metrics_of(graphs["λ predict: invocations, errors, throttles"])) == {
        ("AWS/Lambda", "Invocations"), ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")}
    stats = [m[-1]["stat"] for m in graphs["λ predict: duration p50/p99 (ms)"]["properties"]["metrics"]]
    assert stats == ["p50", "p99"]
    assert {("AWS/States", "ExecutionsFailed"), ("AWS/States", "ExecutionsTimedOut")} <= set(
        metrics_of(graphs["states score: executions"]))
    assert {("AWS/ApiGateway", "4XXError"), ("AWS/ApiGateway", "5XXError")} <= set(
        metrics_of(graphs["API scorer: requests, 4XX, 5XX"]))
    api_dims = graphs["API scorer: latency p50/p99 (ms)"]["properties"]["metrics"][0]
    assert "iris-staging-scorer-api" in api_dims and "staging" in api_dims
    batch = graphs["Batch jobs: succeeded / failed"]["properties"]["metrics"]
    assert [m[3] for m in batch] == ["iris-staging-batch-succeeded", "iris-staging-batch-failed"]
    assert not any(t.startswith("SageMaker") for t in graphs)  # the base config has no SageMaker target


def test_cdk_nag_clean_and_acknowledgments_have_reasons(svc, three):
    for s in (svc, three):
        findings = [v["ruleName"] for rep in s.report["pluginReports"] for v in rep.get("violations", [])]
        assert findings == []
        for path, per_path in s.acknowledgments.items():
            for rule, reason in per_path.items():
                assert len(reason) >= 30, (path, rule)
                assert not rule.endswith("AwsSolutions-IAM5"), (path, rule)  # wildcards one by one


@pytest.mark.parametrize("which", ["svc", "three"])
def test_cfn_lint_clean(which, request):
    s = request.getfixturevalue(which)
    files = sorted(str(p) for p in s.outdir.glob("*.template.json"))
    assert len(files) == len(s.templates)
    assert cfn_lint(*files) == []


def test_three_accounts_service_stacks_live_in_their_stage_account(three):
    raw = three.template("iris-scorer-prod-service")
    deploy = next(p for p in resources(raw, "AWS::IAM::ManagedPolicy") if "ManagedPolicyName" not in p)
    assert deploy["Roles"] == ["iris-prod-deploy"]
    assert f"iam::{B}:role/*" in text(deploy["PolicyDocument"])
    stack_env = three.template("iris-prod-targets")
    assert "iris-prod-batch" in text(resources(stack_env, "AWS::Batch::JobQueue"))
    # the stage's deploy role (StageStack) is still trusted by the tooling account's CI roles of that stage
    trust = text(next(r for r in resources(three.template("iris-prod-stage"), "AWS::IAM::Role")
                      if r.get("RoleName") == "iris-prod-deploy")["AssumeRolePolicyDocument"])
    assert f":iam::{C}:role/iris-prod-codebuild" in trust and f":iam::{C}:role/iris-prod-github" in trust
    assert "iris-ledger" in three.templates


def test_three_accounts_pipelines_live_in_the_tooling_account(three):
    manifest = json.loads((three.outdir / "manifest.json").read_text())
    envs = {k: v.get("environment") for k, v in manifest["artifacts"].items()
            if v.get("type") == "aws:cloudformation:stack"}
    assert envs["iris-staging-pipeline"] == envs["iris-prod-pipeline"] == f"aws://{C}/us-east-1"
    assert envs["iris-staging-stage"] == f"aws://{A}/us-east-1" and envs["iris-scorer-prod-service"] == f"aws://{B}/us-east-1"
    for stage, account in (("staging", A), ("prod", B)):
        raw = three.template(f"iris-{stage}-pipeline")
        build = next(r for r in resources(raw, "AWS::IAM::Role") if r.get("RoleName") == f"iris-{stage}-codebuild")
        assert build  # the name the stage's deploy role trusts (test above)
        variables = [v for p in resources(raw, "AWS::CodeBuild::Project")
                     for v in p["Environment"]["EnvironmentVariables"] if v["Name"] == "PT_DEPLOY_ROLE_ARN"]
        assert variables and all(f":iam::{account}:role/iris-{stage}-deploy" in text(v["Value"]) for v in variables)
    prod = three.template("iris-prod-pipeline")
    approve = next(a for st in resources(prod, "AWS::CodePipeline::Pipeline")[0]["Stages"] if st["Name"] == "Approve"
                   for a in st["Actions"])
    assert "NotificationArn" not in approve.get("Configuration", {})  # the stage's topic is in another account
    statements = [s for p in resources(prod, "AWS::IAM::Policy") for s in p["PolicyDocument"]["Statement"]]
    assert any(s.get("Sid") == "Approvals" and "codepipeline:PutApprovalResult" in s["Action"] for s in statements)


def test_one_account_pipelines_stay_with_their_stage(svc):
    raw = svc.template("iris-prod-pipeline")
    approve = next(a for st in resources(raw, "AWS::CodePipeline::Pipeline")[0]["Stages"] if st["Name"] == "Approve"
                   for a in st["Actions"])
    assert "NotificationArn" in approve["Configuration"]


BAD_INPUTS = """\
project: iris
region: us-east-1
images: {model: {}}
functions: {predict: {image: model}}
targets:
  stepfunctions:
    flow: {definition: flows/missing.json}
  batch:
    nightly: {image: model, schedule: "cron(0 3 * * * *)"}
services:
  scorer: {function: predict, state_machine: flow, batch: [nightly]}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["iris-staging-*"]}}
"""


def test_cdk_app_refuses_missing_definition_and_bad_schedule_before_synth(tmp_path):
    from .test_cdk_cli import run_app

    proc = run_app(tmp_path, BAD_INPUTS)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    # one line each, at the key's line (the wording is configcheck_targets'; docs/targets.md)
    assert len(errors) == 2, errors
    assert errors[0].startswith("error: pipeline.yml:7: targets.stepfunctions.flow.definition: ")
    assert "flows/missing.json" in errors[0]
    assert errors[1].startswith("error: pipeline.yml:9: targets.batch.nightly.schedule: ") and "'?'" in errors[1]
    assert "Traceback" not in proc.stderr and not list((tmp_path / "out").glob("*.template.json"))
