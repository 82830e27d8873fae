"""Template assertions on the synthesized stacks (one synth per session, see conftest.py)."""

from __future__ import annotations

import pytest

from pipeline_tools.core import names

from .conftest import CONNECTION, DIGEST, REPOSITORY

pytestmark = pytest.mark.cdk


def tpl(synthesized, name):
    from aws_cdk.assertions import Template

    return Template.from_json(synthesized.template(name))


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def statements(template: dict) -> list[tuple[str, dict]]:
    out = []
    for lid, r in template["Resources"].items():
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            out += [(lid, s) for s in r["Properties"]["PolicyDocument"]["Statement"]]
        if r["Type"] == "AWS::IAM::Role":
            for p in r["Properties"].get("Policies", []):
                out += [(lid, s) for s in p["PolicyDocument"]["Statement"]]
    return out


def as_list(v):
    return v if isinstance(v, list) else [v]


# --- StageStack ------------------------------------------------------------------------------

def test_stage_stack_ecr_repositories(synthesized):
    t = tpl(synthesized, "iris-staging-stage")
    t.resource_count_is("AWS::ECR::Repository", 1)
    repo = next(iter(resources(synthesized.template("iris-staging-stage"), "AWS::ECR::Repository").values()))
    props = repo["Properties"]
    assert props["RepositoryName"] == "iris-model"
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert '"tagStatus":"untagged"' in props["LifecyclePolicy"]["LifecyclePolicyText"]
    assert '"countNumber":10' in props["LifecyclePolicy"]["LifecyclePolicyText"]
    assert repo["DeletionPolicy"] == "Retain"
    pull = props["RepositoryPolicyText"]["Statement"]
    assert len(pull) == 1 and pull[0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(pull[0]["Action"]) == ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    assert "function:iris-*" in str(pull[0]["Condition"]["StringLike"]["aws:SourceArn"])


def test_stage_stack_artifacts_bucket(synthesized):
    from aws_cdk.assertions import Match

    t = tpl(synthesized, "iris-staging-stage")
    t.has_resource_properties("AWS::S3::Bucket", {
        "BucketName": "iris-staging-artifacts",
        "VersioningConfiguration": {"Status": "Enabled"},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "BucketEncryption": Match.object_like({"ServerSideEncryptionConfiguration": Match.any_value()}),
        "LoggingConfiguration": Match.object_like({"DestinationBucketName": Match.any_value()}),
        "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like(
            {"NoncurrentVersionExpiration": {"NoncurrentDays": 90}, "Status": "Enabled"})])},
    })
    # SSL only: a Deny on aws:SecureTransport=false in the artifacts bucket's policy.
    t.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})


def test_stage_stack_functions_alias_and_seed_parameter(synthesized):
    raw = synthesized.template("iris-staging-stage")
    fns = resources(raw, "AWS::Lambda::Function")
    by_name = {f["Properties"]["FunctionName"]: f for f in fns.values()}
    assert set(by_name) == {"iris-staging-predict", "iris-staging-batch-score"}
    predict = by_name["iris-staging-predict"]["Properties"]
    assert predict["PackageType"] == "Image"
    assert predict["MemorySize"] == 1024 and predict["Timeout"] == 30
    assert predict["ImageConfig"] == {"Command": ["app.handler"]}
    # the image is referenced by digest from the seed parameter, never by tag
    image_uri = predict["Code"]["ImageUri"]["Fn::Join"][1]
    assert "@" in image_uri and {"Ref": "ModelImageDigest"} in image_uri
    param = raw["Parameters"]["ModelImageDigest"]
    assert param["Default"] == DIGEST and param["AllowedPattern"] == r"^(sha256:[0-9a-f]{64})?$"
    assert raw["Conditions"]["HasModelImage"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ModelImageDigest"}, ""]}]}
    assert all(f.get("Condition") == "HasModelImage" for f in fns.values())
    aliases = resources(raw, "AWS::Lambda::Alias")
    assert sorted(a["Properties"]["Name"] for a in aliases.values()) == [names.LIVE_ALIAS] * 2
    # log groups with retention, named where Lambda writes
    groups = {g["Properties"]["LogGroupName"]: g["Properties"] for g in resources(raw, "AWS::Logs::LogGroup").values()}
    assert groups["/aws/lambda/iris-staging-predict"]["RetentionInDays"] == 30


def test_stage_stack_function_role_is_least_privilege(synthesized):
    raw = synthesized.template("iris-staging-stage")
    fn = next(f for f in resources(raw, "AWS::Lambda::Function").values()
              if f["Properties"]["FunctionName"] == "iris-staging-predict")
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    role = raw["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role  # no AWSLambdaBasicExecutionRole (all log groups)
    stmts = [s for lid, s in statements(raw)
             if any(r.get("Ref") == role_id for r in raw["Resources"][lid]["Properties"].get("Roles", []))]
    actions = sorted(a for s in stmts for a in as_list(s["Action"]))
    # its own log group only; the image pull is granted to the Lambda service by the repository policy
    assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert all(s["Resource"] != "*" for s in stmts)


def test_stage_stack_alarms_match_gate_patterns(synthesized, cdk_config):
    raw = synthesized.template("iris-staging-stage")
    alarms = {a["Properties"]["AlarmName"]: a for a in resources(raw, "AWS::CloudWatch::Alarm").values()}
    expected = {names.alarm_name("iris", "staging", f, m) for f in ("predict", "batch-score")
                for m in ("errors", "throttles", "duration-p99")} | {"iris-staging-predict-latency-p90"}
    assert set(alarms) == expected
    from pipeline_tools.core.config import load as load_cfg
    from pipeline_tools.infra.stacks.stage_stack import generated_alarm_names

    cfg = load_cfg(cdk_config)
    assert {n for f in cfg.functions for n in generated_alarm_names(cfg, "staging", f)} == expected
    # The config's gate prefixes (`iris-staging-*`) match every alarm the stack creates.
    from pipeline_tools.core.config import load

    from .conftest import CONTRACT

    prefixes = [p.rstrip("*") for p in load(CONTRACT).gate_patterns("staging")]
    assert all(any(n.startswith(p) for p in prefixes) for n in alarms)
    dur = alarms["iris-staging-batch-score-duration-p99"]["Properties"]
    assert dur["ExtendedStatistic"] == "p99" and dur["Threshold"] == 270000  # 90 % of 300 s
    user = alarms["iris-staging-predict-latency-p90"]["Properties"]
    assert user["ComparisonOperator"] == "GreaterThanThreshold" and user["Threshold"] == 2000
    assert user["Dimensions"] == [{"Name": "FunctionName", "Value": "iris-staging-predict"}]
    for a in alarms.values():
        assert a["Properties"]["AlarmActions"] and a["Properties"]["TreatMissingData"] == "notBreaching"


def test_stage_stack_topic_and_ledger(synthesized):
    t = tpl(synthesized, "iris-staging-stage")
    from aws_cdk.assertions import Match

    t.has_resource_properties("AWS::SNS::Topic", {"TopicName": "iris-staging-events",
                                                  "KmsMasterKeyId": Match.any_value()})
    from pipeline_tools.release import ledger

    t.has_resource_properties("AWS::DynamoDB::Table", {
        "TableName": "iris-ledger",
        "KeySchema": [{"AttributeName": ledger.PK, "KeyType": "HASH"},
                      {"AttributeName": ledger.SK, "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": ledger.PK, "AttributeType": "S"},
                                 {"AttributeName": ledger.SK, "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
    })


def test_deploy_role_grants_exactly_what_pt_needs(synthesized):
    raw = synthesized.template("iris-staging-stage")
    role = next(r for r in resources(raw, "AWS::IAM::Role").values()
                if r["Properties"].get("RoleName") == names.deploy_role("iris", "staging"))
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1 and trust[0]["Action"] == "sts:AssumeRole"
    allowed = [str(a) for a in trust[0]["Condition"]["ArnEquals"]["aws:PrincipalArn"]]
    assert len(allowed) == 2
    assert "role/iris-staging-github" in allowed[0] and "role/iris-staging-codebuild" in allowed[1]
    policy = next(iter(resources(raw, "AWS::IAM::ManagedPolicy").values()))["Properties"]["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"LambdaDeploy", "LambdaPruneVersions", "Logs", "AlarmsRead", "ReadOnlyUnscoped", "Ledger",
                           "EcrLogin", "EcrPushPull",
                           "Artifacts", "Notify", "NotifyKey", "Approvals", "NotificationSecrets",
                           "NotificationSecretsKey", "NotifyDownstream"}
    # the staging gate announces "approval needed" on prod's topic (prod promotes from staging)
    assert by_sid["NotifyDownstream"]["Action"] == "sns:Publish"
    assert "sns:us-east-1:222222222222:iris-prod-events" in str(by_sid["NotifyDownstream"]["Resource"])
    lam = as_list(by_sid["LambdaDeploy"]["Action"])
    assert "lambda:DeleteAlias" in lam  # a rollback of a first deploy deletes the alias it created
    prod = synthesized.template("iris-prod-stage")
    topic_policy = next(iter(resources(prod, "AWS::SNS::TopicPolicy").values()))["Properties"]["PolicyDocument"]
    up = [st for st in topic_policy["Statement"] if st.get("Sid") == "UpstreamGatePublish"]
    assert len(up) == 1 and "role/iris-staging-deploy" in str(up[0]["Principal"])
    key = next(iter(r for r in resources(prod, "AWS::KMS::Key").values()
                    if "iris-prod-events" in str(r["Properties"].get("Description"))))
    up_key = [st for st in key["Properties"]["KeyPolicy"]["Statement"] if st.get("Sid") == "UpstreamGatePublish"]
    assert len(up_key) == 1
    assert up_key[0]["Condition"] == {"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}}
    lam = by_sid["LambdaDeploy"]
    assert {"lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:UpdateAlias", "lambda:GetAlias",
            "lambda:GetFunction"} <= set(lam["Action"])
    assert "lambda:DeleteFunction" not in lam["Action"]
    # the function itself cannot be deleted: only qualified (version) ARNs
    prune = as_list(by_sid["LambdaPruneVersions"]["Resource"])
    assert len(prune) == 2 and all(str(r).endswith(":*']]}") for r in prune), prune
    resources_text = str(lam["Resource"])
    assert "function:iris-staging-predict" in resources_text and "function:iris-prod" not in resources_text
    assert "table/iris-ledger" in str(by_sid["Ledger"]["Resource"])
    assert "repository/iris-model" in str(by_sid["EcrPushPull"]["Resource"])
    assert "parameter/iris/slack-webhook" in str(by_sid["NotificationSecrets"]["Resource"])
    via = by_sid["NotificationSecretsKey"]["Condition"]["StringEquals"]["kms:ViaService"]
    assert via == "ssm.us-east-1.amazonaws.com"
    assert by_sid["Notify"]["Action"] == "sns:Publish"
    # `*` resources only for read-only / account-level calls without resource scope
    star = sorted(a for s in policy["Statement"] if s["Resource"] == "*" for a in as_list(s["Action"]))
    assert star == ["cloudwatch:DescribeAlarmHistory", "cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData",
                    "cloudwatch:ListMetrics", "ecr:GetAuthorizationToken", "logs:DescribeLogGroups", "sns:ListTopics"]


def test_no_wildcard_actions_on_wildcard_resources(synthesized):
    bad = []
    for name, raw in synthesized.templates.items():
        for lid, s in statements(raw):
            if s.get("Effect") != "Allow":
                continue
            wild_action = any(a == "*" or a.endswith(":*") for a in as_list(s["Action"]))
            wild_resource = "*" in as_list(s.get("Resource", []))
            if wild_action and wild_resource:
                bad.append((name, lid, s))
            assert not any(a == "*" for a in as_list(s["Action"])), (name, lid, s)
    assert not bad


def test_second_stage_in_same_account_shares_repositories_and_ledger():
    """ECR repository and ledger names carry no stage: only the first stage of an account creates them."""
    from pipeline_tools.core.config import parse
    from pipeline_tools.infra.stacks.stage_stack import owns_shared_resources

    from .conftest import CONTRACT

    text = CONTRACT.read_text().replace('"222222222222"', '"111111111111"')
    cfg = parse(text)
    assert owns_shared_resources(cfg, "staging") and not owns_shared_resources(cfg, "prod")
    cfg2 = parse(CONTRACT.read_text())
    assert owns_shared_resources(cfg2, "prod")


# --- PipelineStack ---------------------------------------------------------------------------

def _pipeline(synthesized, stage):
    raw = synthesized.template(f"iris-{stage}-pipeline")
    return raw, next(iter(resources(raw, "AWS::CodePipeline::Pipeline").values()))["Properties"]


def test_staging_pipeline_builds_deploys_and_gates(synthesized):
    raw, p = _pipeline(synthesized, "staging")
    assert p["PipelineType"] == "V2" and p["Name"] == "iris-staging-pipeline"
    assert [s["Name"] for s in p["Stages"]] == ["Source", "Build", "Deploy", "Gate"]
    src = p["Stages"][0]["Actions"][0]
    assert src["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert src["Configuration"]["BranchName"] == "integration"
    assert src["Configuration"]["FullRepositoryId"] == REPOSITORY
    assert src["Configuration"]["ConnectionArn"] == CONNECTION
    # a full clone: builds see .git, so pt can name the commit author (two-person rule)
    assert src["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    use = [st for lid, st in statements(raw) if lid.startswith("BuildRole")
           and "codestar-connections:UseConnection" in as_list(st["Action"])]
    assert len(use) == 1 and use[0]["Resource"] == CONNECTION
    specs = {pr["Properties"]["Name"]: pr["Properties"] for pr in resources(raw, "AWS::CodeBuild::Project").values()}
    build = specs["iris-staging-build"]
    assert build["Environment"]["PrivilegedMode"] is True
    text = str(build["Source"]["BuildSpec"])  # Fn::Join: the report group ARN is a token
    assert "pt build-push --stage staging --output json > build.json" in text
    assert "pt test --stage staging --junit reports/junit.xml" in text
    assert "JUNITXML" in text
    assert "pt deploy --stage staging --from-build" in str(specs["iris-staging-deploy"]["Source"]["BuildSpec"])
    assert "pt gate --stage staging --wait" in str(specs["iris-staging-gate"]["Source"]["BuildSpec"])
    assert not specs["iris-staging-deploy"]["Environment"].get("PrivilegedMode")
    groups = resources(raw, "AWS::CodeBuild::ReportGroup")
    assert [g["Properties"]["Type"] for g in groups.values()] == ["TEST"]


def test_prod_pipeline_approves_then_promotes_without_rebuilding(synthesized):
    raw, p = _pipeline(synthesized, "prod")
    assert [s["Name"] for s in p["Stages"]] == ["Source", "Approve", "Promote", "Gate"]
    assert p["Stages"][0]["Actions"][0]["Configuration"]["BranchName"] == "master"
    approve = p["Stages"][1]["Actions"][0]
    assert approve["ActionTypeId"]["Provider"] == "Manual"
    assert "iris-prod-events" in str(approve["Configuration"]["NotificationArn"])
    # approvers land on the change record `pt change-record --stage prod --next --publish` wrote
    assert approve["Configuration"]["ExternalEntityLink"] == (
        "https://us-east-1.console.aws.amazon.com/s3/object/iris-prod-artifacts?region=us-east-1"
        "&bucketType=general&prefix=change-records/prod/latest.md")
    assert "change record" in approve["Configuration"]["CustomData"]
    projects = resources(raw, "AWS::CodeBuild::Project").values()
    specs = " ".join(str(pr["Properties"]["Source"]["BuildSpec"]) for pr in projects)
    assert "pt promote --to prod" in specs and "build-push" not in specs
    sync = "pt approvals sync-codepipeline --stage prod --pipeline iris-prod-pipeline"
    assert specs.index(sync) < specs.index("pt promote --to prod")


def test_pipeline_artifacts_encrypted_and_builds_only_assume_deploy_role(synthesized):
    raw, p = _pipeline(synthesized, "staging")
    store = p["ArtifactStore"]
    assert store["Type"] == "S3"
    bucket = raw["Resources"][store["Location"]["Ref"]]["Properties"]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    build_role = next(r for r in resources(raw, "AWS::IAM::Role").values()
                      if r["Properties"].get("RoleName") == "iris-staging-codebuild")
    assert build_role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "codebuild.amazonaws.com"}
    role_stmts = [s for lid, s in statements(raw) if lid.startswith("BuildRole")]
    assume = [s for s in role_stmts if "sts:AssumeRole" in as_list(s["Action"])]
    assert len(assume) == 1 and "role/iris-staging-deploy" in str(assume[0]["Resource"])
    direct = ("lambda:", "dynamodb:", "ecr:Put")
    assert not [s for s in role_stmts if any(a.startswith(direct) for a in as_list(s["Action"]))]


# --- GitHubOidcStack -------------------------------------------------------------------------

def test_github_oidc_trusts_only_this_repository(synthesized):
    oidc = {n: t for n, t in synthesized.templates.items() if "github-oidc" in n}
    assert sorted(oidc) == ["iris-github-oidc-111111111111", "iris-github-oidc-222222222222"]
    raw = oidc["iris-github-oidc-111111111111"]
    provider = next(iter(resources(raw, "AWS::IAM::OIDCProvider").values()))["Properties"]
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]
    role = next(iter(resources(raw, "AWS::IAM::Role").values()))["Properties"]
    assert role["RoleName"] == "iris-staging-github"
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1 and trust[0]["Action"] == "sts:AssumeRoleWithWebIdentity"
    cond = trust[0]["Condition"]
    assert list(cond) == ["StringEquals"]  # exact subjects, no StringLike wildcards
    assert cond["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert cond["StringEquals"]["token.actions.githubusercontent.com:sub"] == f"repo:{REPOSITORY}:environment:staging"
    prod = oidc["iris-github-oidc-222222222222"]
    prod_role = next(iter(resources(prod, "AWS::IAM::Role").values()))["Properties"]
    assert prod_role["RoleName"] == "iris-prod-github"
    assert prod_role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"] == f"repo:{REPOSITORY}:environment:prod"
    stmts = [s for _, s in statements(raw)]
    assert [as_list(s["Action"]) for s in stmts] == [["sts:AssumeRole", "sts:TagSession"]]
    assert "role/iris-staging-deploy" in str(stmts[0]["Resource"])


def test_github_oidc_two_stages_in_one_account_get_one_role_each():
    """A push to `integration` (staging environment) must not reach prod's deploy role."""
    import aws_cdk as cdk

    from pipeline_tools.core.config import load
    from pipeline_tools.infra.stacks import FEATURE_FLAGS
    from pipeline_tools.infra.stacks.github_oidc_stack import GitHubOidcStack

    from .conftest import CONTRACT

    app = cdk.App(context=FEATURE_FLAGS, analytics_reporting=False)
    stack = GitHubOidcStack(app, "oidc", cfg=load(CONTRACT), repository=REPOSITORY, stages=["staging", "prod"],
                            env=cdk.Environment(account="111111111111", region="us-east-1"))
    raw = app.synth().get_stack_by_name(stack.stack_name).template
    roles = {r["Properties"]["RoleName"]: (lid, r["Properties"])
             for lid, r in resources(raw, "AWS::IAM::Role").items()}
    assert sorted(roles) == ["iris-prod-github", "iris-staging-github"]
    for stage, other in (("staging", "prod"), ("prod", "staging")):
        _, props = roles[f"iris-{stage}-github"]
        trust = props["AssumeRolePolicyDocument"]["Statement"]
        assert len(trust) == 1
        assert trust[0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
            f"repo:{REPOSITORY}:environment:{stage}")
        mine = [s for pid, s in statements(raw) if pid.startswith(f"Role{stage.capitalize()}")]
        assert len(mine) == 1 and as_list(mine[0]["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
        assert f"role/iris-{stage}-deploy" in str(mine[0]["Resource"])
        assert f"iris-{other}-deploy" not in str(mine[0]["Resource"])


def test_github_oidc_reuses_an_existing_provider():
    import aws_cdk as cdk

    from pipeline_tools.core.config import load
    from pipeline_tools.infra.stacks import FEATURE_FLAGS
    from pipeline_tools.infra.stacks.github_oidc_stack import GitHubOidcStack

    from .conftest import CONTRACT

    existing = "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"
    app = cdk.App(context=FEATURE_FLAGS, analytics_reporting=False)
    stack = GitHubOidcStack(app, "oidc", cfg=load(CONTRACT), repository=REPOSITORY, stages=["staging"],
                            provider_arn=existing, env=cdk.Environment(account="111111111111", region="us-east-1"))
    raw = app.synth().get_stack_by_name(stack.stack_name).template
    assert not resources(raw, "AWS::IAM::OIDCProvider")
    role = next(iter(resources(raw, "AWS::IAM::Role").values()))["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Federated": existing}
