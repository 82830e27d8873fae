"""StageStack: everything one stage runs on, in that stage's account and region.

ECR repositories (one per image), the artifacts bucket, one container-image Lambda per
function with its `live` alias, log group, role and alarms, the stage's SNS topic, the
ledger table, and the deploy role that `pt` assumes.

Shared per account+region: ECR repository names (`<project>-<image>`) and the ledger table
(`<project>-ledger`) have no stage in their name, so when several stages share an account and
region only the first of them (in pipeline.yml order) creates them; the others refer to them
by name. See `owns_shared_resources`.

Seed problem: a Lambda from an image needs an image that exists, but the repository it lives
in is created by this same stack. Each image therefore has a CloudFormation parameter
`<Image>ImageDigest` (empty by default; CDK context `image_digests` sets the default). While it
is empty the stack creates everything except that image's functions, aliases and alarms
(CloudFormation condition `Has<Image>Image`). Bootstrapping a stage is:
  1. `cdk deploy <project>-<stage>-stage`            (repositories, bucket, topic, table, roles)
  2. `pt build-push` → prints the image digest
  3. `cdk deploy <project>-<stage>-stage --parameters ModelImageDigest=sha256:…`
From then on `pt deploy` moves the functions to new digests; later stack updates keep the
parameter (CDK reuses previous parameter values) and do not touch the running code.
"""

from __future__ import annotations

from aws_cdk import (
    CfnCondition,
    CfnOutput,
    CfnParameter,
    CfnResource,
    Duration,
    Fn,
    RemovalPolicy,
    Size,
    Stack,
)
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import AlarmConfig, Config, FunctionConfig
from pipeline_tools.infra.stacks.constructs import SecureBucket, acknowledge_wildcards, arn, logical, nag_arn, ref
from pipeline_tools.infra.stacks.github_oidc_stack import github_role_name
from pipeline_tools.infra.stacks.ledger_stack import add_cross_account_trust, ledger_statements, ledger_table
from pipeline_tools.release.ledger import PK, SK

DIGEST_PATTERN = r"^(sha256:[0-9a-f]{64})?$"
# Ledger item keys: the same constants pipeline_tools/release/ledger.py reads and writes (both strings).
LEDGER_PARTITION_KEY = PK
LEDGER_SORT_KEY = SK

_COMPARISON = {
    "gt": cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    "ge": cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    "lt": cw.ComparisonOperator.LESS_THAN_THRESHOLD,
    "le": cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
}


def codebuild_role_name(project: str, stage: str) -> str:
    """The PipelineStack's CodeBuild service role (named, so the deploy role can trust it)."""
    return f"{project}-{stage}-codebuild"


def owns_shared_resources(cfg: Config, stage: str) -> bool:
    """True if `stage` is the first stage in its account+region: it creates the ECR
    repositories and the ledger table that all stages there share."""
    key = (cfg.stages[stage].account, cfg.stage_region(stage))
    first = next(s for s in cfg.stages if (cfg.stages[s].account, cfg.stage_region(s)) == key)
    return first == stage


def generated_alarm_names(cfg: Config, stage: str, function: str) -> list[str]:
    """Names of the alarms the stack creates for one function (generated + user-defined)."""
    metrics = ["errors", "throttles", "duration-p99"] + [a.name for a in cfg.functions[function].alarms]
    return [names.alarm_name(cfg.project, stage, function, m) for m in metrics]


class StageStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str,
                 image_digests: dict[str, str] | None = None, local: bool = False, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.cfg, self.stage_name = cfg, stage
        image_digests = image_digests or {}
        owner = owns_shared_resources(cfg, stage)
        removal = RemovalPolicy.DESTROY if local else RemovalPolicy.RETAIN

        # --- ECR repositories ---
        self.repositories: dict[str, ecr.IRepository] = {}
        for image in cfg.images:
            repo_name = cfg.ecr_repository(image)
            if owner:
                self.repositories[image] = ecr.Repository(
                    self, f"Repo{logical(image)}",
                    repository_name=repo_name,
                    image_tag_mutability=ecr.TagMutability.IMMUTABLE,
                    image_scan_on_push=True,
                    encryption=ecr.RepositoryEncryption.AES_256,
                    lifecycle_rules=[ecr.LifecycleRule(
                        description=f"keep the last {cfg.cdk.untagged_images_kept} untagged images",
                        tag_status=ecr.TagStatus.UNTAGGED,
                        max_image_count=cfg.cdk.untagged_images_kept,
                    )],
                    removal_policy=removal,
                )
            else:
                self.repositories[image] = ecr.Repository.from_repository_name(
                    self, f"Repo{logical(image)}", repo_name)

        # --- artifacts bucket ---
        self.artifacts = SecureBucket(self, "Artifacts", bucket_name=cfg.bucket(stage), removal_policy=removal)

        # --- notifications ---
        self.topic_key = kms.Key(self, "EventsKey", enable_key_rotation=True, removal_policy=removal,
                                 description=f"encrypts SNS topic {cfg.sns_topic(stage)}")
        # CloudWatch alarm actions publish to the encrypted topic; they need the key.
        self.topic_key.add_to_resource_policy(iam.PolicyStatement(
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"],
            resources=["*"],
            conditions={"StringEquals": {"aws:SourceAccount": self.account}},
        ))
        self.topic = sns.Topic(self, "Events", topic_name=cfg.sns_topic(stage), master_key=self.topic_key,
                               enforce_ssl=True)
        # `pt gate` of the stage this one promotes from announces "approval needed" on this topic
        # with its own deploy role: let that role publish (topic and key policy, so it also works
        # from another account; the upstream StageStack grants the IAM side, see DeployRole).
        upstream = cfg.stages[stage].promote_from
        if upstream and cfg.stages[stage].approvals is not None:
            up_role = (f"arn:{self.partition}:iam::{cfg.stages[upstream].account}:role/"
                       f"{names.deploy_role(cfg.project, upstream)}")
            self.topic.add_to_resource_policy(iam.PolicyStatement(
                sid="UpstreamGatePublish", principals=[iam.ArnPrincipal(up_role)], actions=["sns:Publish"],
                resources=[self.topic.topic_arn]))
            self.topic_key.add_to_resource_policy(iam.PolicyStatement(
                sid="UpstreamGatePublish", principals=[iam.ArnPrincipal(up_role)],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{self.region}.amazonaws.com"}}))

        # --- ledger (in the tooling account's LedgerStack when `accounts.tooling` is set) ---
        if owner and cfg.accounts is None:
            self.ledger: dynamodb.ITable = ledger_table(self, cfg, local=local, removal=removal)
        else:
            self.ledger = dynamodb.Table.from_table_name(self, "Ledger", cfg.ledger_table())

        # --- functions (conditional on their image's digest parameter) ---
        self.functions: dict[str, ModelFunction] = {}
        conditions: dict[str, CfnCondition] = {}
        for image in cfg.images:
            if not cfg.functions_for_image(image):
                continue
            param = CfnParameter(
                self, f"{logical(image)}ImageDigest", type="String", default=image_digests.get(image, ""),
                allowed_pattern=DIGEST_PATTERN,
                constraint_description="empty, or an image digest sha256:<64 hex> (from `pt build-push`)",
                description=f"digest of image '{image}' in {cfg.ecr_repository(image)} the functions start "
                            "from; empty = create the stack without them (first deploy, before any push)",
            )
            conditions[image] = CfnCondition(
                self, f"Has{logical(image)}Image",
                expression=Fn.condition_not(Fn.condition_equals(param.value_as_string, "")))
            for fname, fcfg in cfg.functions_for_image(image).items():
                fn = ModelFunction(self, f"Fn{logical(fname)}", cfg=cfg, stage=stage, function=fname, fcfg=fcfg,
                                   repository=self.repositories[image], digest=param.value_as_string,
                                   topic=self.topic, removal=removal)
                for child in fn.node.find_all():
                    if isinstance(child, CfnResource):
                        child.cfn_options.condition = conditions[image]
                self.functions[fname] = fn

        # --- image pull by Lambda ---
        # DockerImageCode.from_ecr lets the Lambda service principal pull with no condition; narrow
        # it to this project's functions in this account and region (Lambda sends aws:SourceArn).
        for repo in self.repositories.values():
            if isinstance(repo, ecr.Repository):
                repo.node.default_child.add_property_override("RepositoryPolicyText", {  # type: ignore[union-attr]
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "LambdaPull",
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                        "Condition": {"StringLike": {
                            "aws:SourceArn": arn(self, "lambda", f"function:{cfg.project}-*")}},
                    }],
                })

        # --- log shipping to OpenSearch (stages.<s>.logs.opensearch) ---
        self.log_shipping = self._log_shipping(cfg, stage, conditions)

        # --- deploy role ---
        self.deploy_role = DeployRole(self, "Deploy", stage_stack=self).role

        # --- SageMaker endpoint target (targets.sagemaker, when this stage has it) ---
        self.endpoint: SageMakerEndpoint | None = None
        sm_target = cfg.targets.sagemaker
        if sm_target is not None and (sm_target.stages is None or stage in sm_target.stages):
            self.endpoint = SageMakerEndpoint(self, "SageMaker", stage_stack=self,
                                              digest=image_digests.get(sm_target.image, ""), removal=removal)

        CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn)
        CfnOutput(self, "TopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "ArtifactsBucket", value=self.artifacts.bucket.bucket_name)

    def _log_shipping(self, cfg: Config, stage: str, conditions: dict[str, CfnCondition]):
        ship = getattr(getattr(cfg.stages[stage], "logs", None), "opensearch", None)
        if ship is None:
            return None
        from pipeline_tools.infra.stacks.log_shipping import LogShipping

        own = {f"/aws/lambda/{cfg.function_name(stage, fname)}": (fn, conditions.get(cfg.functions[fname].image))
               for fname, fn in self.functions.items()}
        groups = ship.groups or list(own)
        index = ship.index.replace("{project}", cfg.project).replace("{stage}", stage)
        shipping = LogShipping(self, "LogShipping", domain_arn=ship.domain_arn, endpoint=ship.endpoint, groups=groups,
                               index=index, filter_pattern=ship.filter_pattern)
        for group, filt in zip(groups, shipping.filters, strict=True):
            if group in own:  # the function's log group exists only with its image: so does its filter
                fn, cond = own[group]
                cfn_filter = filt.node.default_child
                cfn_filter.add_dependency(fn.log_group.node.default_child)  # type: ignore[union-attr]
                if cond is not None:
                    cfn_filter.cfn_options.condition = cond  # type: ignore[union-attr]
        return shipping


class ModelFunction(Construct):
    """One function: image Lambda + `live` alias + log group + role + alarms."""

    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str, function: str,
                 fcfg: FunctionConfig, repository: ecr.IRepository, digest: str, topic: sns.ITopic,
                 removal: RemovalPolicy) -> None:
        super().__init__(scope, id)
        name = cfg.function_name(stage, function)
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=f"/aws/lambda/{name}", removal_policy=removal)
        self.log_group.node.default_child.retention_in_days = _retention(cfg.cdk.log_retention_days)  # type: ignore
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"runtime role of {name}: write its own logs, pull its image")
        # Only the two calls the runtime makes; no managed policy (that would grant all log groups).
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"]))
        acknowledge_wildcards(self.role, "streams of the function's own log group; Lambda names them at run time",
                              [f"Resource::{ref(self.log_group)}:log-stream:*"])
        # A function that serves model services reads their hyperparameters (SSM, params path) and
        # their buckets; the service stacks reference it by name (services own no function).
        services = [sv for sv, svc in cfg.services_for(stage).items() if svc.function == function]
        service_env: dict[str, str] = {}
        if services:
            service_env = {"PT_SERVICE": services[0], "PT_PARAMS_PATH": names.params_path(services[0], stage)}
            if len(services) > 1:
                service_env["PT_PARAMS_PATHS"] = ",".join(f"{sv}={names.params_path(sv, stage)}" for sv in services)
            paths = [names.params_path(sv, stage).rstrip("/") for sv in services]
            self.role.add_to_policy(iam.PolicyStatement(
                sid="ServiceParameters", actions=["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
                resources=[arn(Stack.of(self), "ssm", f"parameter{p}{q}") for p in paths for q in ("", "/*")]))
            buckets = [f"arn:{Stack.of(self).partition}:s3:::{cfg.service_bucket(sv, stage)}" for sv in services]
            self.role.add_to_policy(iam.PolicyStatement(sid="ServiceBuckets", actions=["s3:ListBucket"],
                                                        resources=buckets))
            self.role.add_to_policy(iam.PolicyStatement(sid="ServiceObjects", actions=["s3:GetObject", "s3:PutObject"],
                                                        resources=[f"{b}/*" for b in buckets]))
            acknowledge_wildcards(self.role, "the service's own parameters (params path) and its bucket's objects",
                                  [f"Resource::{nag_arn(Stack.of(self), 'ssm', f'parameter{p}/*')}" for p in paths]
                                  + [f"Resource::arn:<AWS::Partition>:s3:::{cfg.service_bucket(sv, stage)}/*"
                                     for sv in services])
        self.function = lambda_.DockerImageFunction(
            self, "Function",
            function_name=name,
            description=f"{cfg.project} {stage} {function} (image {fcfg.image}); code moved by `pt deploy`",
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest="bootstrap",
                                                  cmd=[fcfg.handler] if fcfg.handler else None),
            memory_size=fcfg.memory,
            timeout=Duration.seconds(fcfg.timeout),
            role=self.role,
            log_group=self.log_group,
            environment={**fcfg.environment, "PT_PROJECT": cfg.project, "PT_STAGE": stage, **service_env},
            ephemeral_storage_size=Size.mebibytes(fcfg.ephemeral_storage),
            reserved_concurrent_executions=fcfg.reserved_concurrency,
        )
        # The image is addressed by digest, never by tag (the bootstrap tag above is replaced).
        self.function.node.default_child.add_property_override(  # type: ignore[union-attr]
            "Code.ImageUri", Fn.join("", [repository.repository_uri, "@", digest]))
        self.alias = lambda_.Alias(self, "Live", alias_name=names.LIVE_ALIAS,
                                   version=self.function.current_version)

        self.alarms: list[cw.Alarm] = []
        minute = Duration.minutes(1)
        self._alarm(cfg, stage, function, "errors", self.function.metric_errors(period=minute, statistic="Sum"),
                    threshold=1, evaluation_periods=1)
        self._alarm(cfg, stage, function, "throttles", self.function.metric_throttles(period=minute, statistic="Sum"),
                    threshold=1, evaluation_periods=1)
        # p99 duration within 10 % of the timeout: requests are about to time out.
        self._alarm(cfg, stage, function, "duration-p99",
                    self.function.metric_duration(period=minute, statistic="p99"),
                    threshold=round(fcfg.timeout * 1000 * 0.9), evaluation_periods=3, datapoints=2)
        for a in fcfg.alarms:
            self._user_alarm(cfg, stage, function, name, a)
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarm.add_ok_action(cw_actions.SnsAction(topic))

    def _alarm(self, cfg: Config, stage: str, function: str, metric_name: str, metric: cw.IMetric, *,
               threshold: float, evaluation_periods: int, datapoints: int | None = None,
               comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD) -> None:
        alarm_name = names.alarm_name(cfg.project, stage, function, metric_name)
        self.alarms.append(cw.Alarm(
            self, f"Alarm{logical(metric_name)}",
            alarm_name=alarm_name,
            alarm_description=(f"{metric_name} of {cfg.function_name(stage, function)}; "
                               f"read by `pt gate --stage {stage}`"),
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints,
            comparison_operator=comparison,
            # No invocations means no errors: missing data is OK, not INSUFFICIENT_DATA, so an idle
            # function does not hold the gate (which fails closed on INSUFFICIENT_DATA).
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ))

    def _user_alarm(self, cfg: Config, stage: str, function: str, physical: str, a: AlarmConfig) -> None:
        metric = cw.Metric(namespace=a.namespace, metric_name=a.metric, statistic=a.statistic,
                           period=Duration.seconds(a.period), dimensions_map={"FunctionName": physical})
        self._alarm(cfg, stage, function, a.name, metric, threshold=a.threshold,
                    evaluation_periods=a.evaluation_periods, comparison=_COMPARISON[a.comparison])


class DeployRole(Construct):
    """The role `pt` assumes for one stage: exactly what its commands call, on this stage's resources.

    Trusted for this stage's GitHub OIDC role (`<project>-<stage>-github`) and the pipeline's
    CodeBuild role (`<project>-<stage>-codebuild`) of this account; each also needs its own
    sts:AssumeRole grant. Another stage's roles cannot assume it."""

    def __init__(self, scope: Construct, id: str, *, stage_stack: StageStack) -> None:
        super().__init__(scope, id)
        st = stage_stack
        cfg, stage = st.cfg, st.stage_name
        fn_names = [cfg.function_name(stage, f) for f in cfg.functions]
        self.role = iam.Role(
            self, "Role",
            role_name=names.deploy_role(cfg.project, stage),
            # Only the two CI roles (GitHubOidcStack, PipelineStack) may assume it; a condition, not
            # role principals, because those roles are created after this stack.
            assumed_by=iam.AccountRootPrincipal().with_conditions({"ArnEquals": {"aws:PrincipalArn": [
                arn(st, "iam", f"role/{github_role_name(cfg.project, stage)}", region=False),
                arn(st, "iam", f"role/{codebuild_role_name(cfg.project, stage)}", region=False),
            ]}}),
            max_session_duration=Duration.hours(2),
            description=f"assumed by pt (CI) to build, deploy, gate and promote {cfg.project} {stage}",
        )
        add_cross_account_trust(self.role, st)
        statements: list[iam.PolicyStatement] = []
        if fn_names:
            statements.append(iam.PolicyStatement(
                sid="LambdaDeploy",
                actions=["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionCode",
                         "lambda:PublishVersion", "lambda:ListVersionsByFunction", "lambda:GetAlias",
                         "lambda:CreateAlias", "lambda:UpdateAlias", "lambda:DeleteAlias", "lambda:ListAliases",
                         "lambda:InvokeFunction", "lambda:ListTags",
                         # functions.* configuration and reserved concurrency are part of a release
                         "lambda:UpdateFunctionConfiguration", "lambda:GetFunctionConcurrency",
                         "lambda:PutFunctionConcurrency", "lambda:DeleteFunctionConcurrency"],
                resources=[arn(st, "lambda", f"function:{n}{q}") for n in fn_names for q in ("", ":*")]))
            # Pruning old versions (deploy.keep_versions) deletes qualified ARNs only, never the function.
            statements.append(iam.PolicyStatement(
                sid="LambdaPruneVersions", actions=["lambda:DeleteFunction"],
                resources=[arn(st, "lambda", f"function:{n}:*") for n in fn_names]))
            statements.append(iam.PolicyStatement(
                sid="Logs",
                actions=["logs:FilterLogEvents", "logs:GetLogEvents", "logs:DescribeLogStreams"],
                resources=[arn(st, "logs", f"log-group:/aws/lambda/{n}{q}") for n in fn_names for q in ("", ":*")]))
        statements += [
            # DescribeAlarms/DescribeAlarmHistory are read-only and filtered by name prefix in the
            # request; they do not support resource-level scoping for prefix queries.
            iam.PolicyStatement(sid="AlarmsRead", actions=["cloudwatch:DescribeAlarms",
                                                          "cloudwatch:DescribeAlarmHistory"],
                                resources=["*"]),
            iam.PolicyStatement(sid="ReadOnlyUnscoped", resources=["*"], actions=[
                # GetMetricData/ListMetrics: gate signals (ListMetrics tells "no data" from "no such metric")
                "cloudwatch:GetMetricData", "cloudwatch:ListMetrics", "logs:DescribeLogGroups", "sns:ListTopics"]),
            *ledger_statements(st),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="EcrPushPull",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
                         "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage",
                         "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages", "ecr:DescribeRepositories"],
                resources=[arn(st, "ecr", f"repository/{cfg.ecr_repository(i)}") for i in cfg.images]),
            iam.PolicyStatement(
                sid="Artifacts",
                actions=["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning", "s3:GetObject",
                         "s3:GetObjectVersion", "s3:PutObject", "s3:GetObjectAttributes", "s3:DeleteObject",
                         "s3:AbortMultipartUpload"],
                resources=[st.artifacts.bucket.bucket_arn, st.artifacts.bucket.arn_for_objects("*")]),
            iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[st.topic.topic_arn]),
            iam.PolicyStatement(sid="NotifyKey", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                resources=[st.topic_key.key_arn]),
            iam.PolicyStatement(
                sid="Approvals",
                actions=["codepipeline:GetPipelineState", "codepipeline:PutApprovalResult"],
                resources=[arn(st, "codepipeline", names.pipeline_stack(cfg.project, stage)),
                           arn(st, "codepipeline", f"{names.pipeline_stack(cfg.project, stage)}/*")]),
        ]
        # `pt gate` announces "approval needed" on the topics of the stages promoted from this one
        # (their StageStack lets this role use the topic's key).
        downstream = [d for d, dst in cfg.stages.items() if dst.promote_from == stage and dst.approvals is not None]
        if downstream:
            statements.append(iam.PolicyStatement(
                sid="NotifyDownstream", actions=["sns:Publish"],
                resources=[f"arn:{st.partition}:sns:{cfg.stage_region(d)}:{cfg.stages[d].account}:{cfg.sns_topic(d)}"
                           for d in downstream]))
        params = [ref.split(":", 1)[1] for ref in (cfg.notifications.slack_webhook, cfg.notifications.teams_webhook)
                  if ref and ref.startswith("ssm:")]
        if params:
            statements.append(iam.PolicyStatement(
                sid="NotificationSecrets", actions=["ssm:GetParameter"],
                resources=[arn(st, "ssm", f"parameter/{p.lstrip('/')}") for p in params]))
            statements.append(iam.PolicyStatement(
                sid="NotificationSecretsKey", actions=["kms:Decrypt"],
                resources=[arn(st, "kms", "key/*")],
                conditions={"StringEquals": {"kms:ViaService": f"ssm.{st.region}.amazonaws.com"}}))
        policy = iam.ManagedPolicy(self, "Policy", statements=statements,
                                   description=f"what pt needs for {cfg.project} {stage}")
        self.role.add_managed_policy(policy)
        findings = ["Resource::*", f"Resource::{ref(st.artifacts.bucket)}/*"]
        findings += [f"Resource::{nag_arn(st, 'lambda', f'function:{n}:*')}" for n in fn_names]
        findings += [f"Resource::{nag_arn(st, 'logs', f'log-group:/aws/lambda/{n}:*')}" for n in fn_names]
        findings.append(f"Resource::{nag_arn(st, 'codepipeline', names.pipeline_stack(cfg.project, stage) + '/*')}")
        if params:
            findings.append(f"Resource::{nag_arn(st, 'kms', 'key/*')}")
        acknowledge_wildcards(self, (
            "each wildcard is scoped: versions/aliases (`:*`) of this stage's functions, their log groups' "
            "streams, objects in this stage's artifacts bucket, approval actions of this stage's pipeline, "
            "the AWS-managed SSM key only via SSM; `*` only for calls without resource scope "
            "(read-only cloudwatch:DescribeAlarms/DescribeAlarmHistory/GetMetricData/ListMetrics, "
            "logs:DescribeLogGroups, "
            "sns:ListTopics; ecr:GetAuthorizationToken)"),
            findings)


_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                   2922, 3288, 3653)


def _retention(days: int) -> int:
    """The smallest retention CloudWatch Logs allows that is at least `days`."""
    return min((d for d in _RETENTION_DAYS if d >= days), default=_RETENTION_DAYS[-1])


class SageMakerEndpoint(Construct):
    """The SageMaker target of a stage (`targets.sagemaker`, pipeline_tools/targets/sagemaker.py).

    - the execution role SageMaker runs the model with (`<project>-<stage>-sagemaker`): pull the
      image, read the model artifacts prefix, write data capture, its own logs and metrics;
    - a bucket policy on the artifacts bucket: only that role may write the data-capture prefix;
    - the endpoint `<project>-<stage>-<endpoint>` with the model as its production variant and data
      capture (model outputs only) on, conditional on the parameter `SageMakerImageDigest` (empty: created by the first
      `pt deploy --target sagemaker`; later shadows and promotions are `pt`'s, like Lambda code);
    - alarms on the production variant (5XX errors, ModelLatency p99) for `pt gate`;
    - the deploy role's SageMaker permissions (models, endpoint configs, the endpoint, PassRole).
    """

    def __init__(self, scope: Construct, id: str, *, stage_stack: StageStack, digest: str,
                 removal: RemovalPolicy) -> None:
        from aws_cdk import aws_sagemaker as sagemaker

        from pipeline_tools.targets import sagemaker as smt

        super().__init__(scope, id)
        st = stage_stack
        cfg, stage = st.cfg, st.stage_name
        t = cfg.targets.sagemaker
        assert t is not None
        ep = smt.endpoint_name(cfg, stage)
        loc = smt.artifacts_location(cfg, stage)
        capture_prefix = smt.capture_prefix(ep)
        variant_name = smt.production_variant_name(cfg, stage)  # the one name alarms and configs share
        bucket = st.artifacts.bucket
        repo = st.repositories[t.image]
        self.endpoint_name = ep

        self.role = iam.Role(self, "ExecutionRole", role_name=smt.role_name(cfg.project, stage),
                             assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"SageMaker runs {ep} with it: image, model artifacts, data capture, logs")
        log_group = arn(st, "logs", f"log-group:/aws/sagemaker/Endpoints/{ep}")
        model_objects = f"{bucket.bucket_arn}/{loc.prefix}/*" if loc.bucket == cfg.bucket(stage) else None
        statements = [
            iam.PolicyStatement(sid="PullImage", actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                                          "ecr:BatchCheckLayerAvailability"],
                                resources=[repo.repository_arn]),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(sid="DataCapture", actions=["s3:PutObject"],
                                resources=[bucket.arn_for_objects(f"{capture_prefix}/*")]),
            iam.PolicyStatement(sid="Logs", actions=["logs:CreateLogGroup", "logs:CreateLogStream",
                                                     "logs:PutLogEvents", "logs:DescribeLogStreams"],
                                resources=[log_group, f"{log_group}:log-stream:*"]),
            iam.PolicyStatement(sid="Metrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
                                conditions={"StringLike": {"cloudwatch:namespace": ["AWS/SageMaker", "/aws/sagemaker/*"]
                                                           + ([t.thresholds.user_metric.namespace]
                                                              if t.thresholds.user_metric else [])}}),
        ]
        if model_objects:
            statements.append(iam.PolicyStatement(sid="ModelArtifacts", actions=["s3:GetObject"],
                                                  resources=[model_objects]))
            statements.append(iam.PolicyStatement(
                sid="ModelArtifactsList", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{loc.prefix}/*", loc.prefix]}}))
        else:  # artifacts in another bucket (s3://… in model_artifacts)
            other = f"arn:{st.partition}:s3:::{loc.bucket}"
            objects = f"{other}/{loc.prefix}/*" if loc.prefix else f"{other}/*"
            statements.append(iam.PolicyStatement(sid="ModelArtifacts", actions=["s3:GetObject"],
                                                  resources=[objects]))
            statements.append(iam.PolicyStatement(sid="ModelArtifactsList", actions=["s3:ListBucket"],
                                                  resources=[other]))
        policy = iam.Policy(self, "ExecutionPolicy", statements=statements)
        policy.attach_to_role(self.role)

        # Data capture: this role writes the prefix, nobody else (besides the account's admins).
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DataCaptureWriterOnly", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{capture_prefix}/*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [
                self.role.role_arn, arn(st, "iam", f"role/{names.deploy_role(cfg.project, stage)}", region=False)]}}))
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="DataCaptureWrite", principals=[self.role], actions=["s3:PutObject"],
            resources=[bucket.arn_for_objects(f"{capture_prefix}/*")]))

        # --- the endpoint (seeded from a digest parameter) ---
        param = CfnParameter(st, "SageMakerImageDigest", type="String", default=digest,
                             allowed_pattern=DIGEST_PATTERN,
                             constraint_description="empty, or an image digest sha256:<64 hex> (from `pt build-push`)",
                             description=f"digest of image '{t.image}' endpoint {ep} starts from; empty = no "
                                         "endpoint yet (`pt deploy --target sagemaker` creates it)")
        has = CfnCondition(st, "HasSageMakerImage",
                           expression=Fn.condition_not(Fn.condition_equals(param.value_as_string, "")))
        model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=self.role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=Fn.join("", [repo.repository_uri, "@", param.value_as_string]), mode="SingleModel",
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=f"{loc.url}/", s3_data_type="S3Prefix", compression_type="None"))))
        model.node.add_dependency(policy)
        config = sagemaker.CfnEndpointConfig(
            self, "Config",
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=variant_name, model_name=model.attr_model_name, instance_type=t.instance_type,
                initial_instance_count=t.instance_count, initial_variant_weight=1.0)],
            data_capture_config=sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=t.data_capture > 0, initial_sampling_percentage=max(t.data_capture, 1),
                destination_s3_uri=smt.capture_uri(cfg, stage),
                capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=o["CaptureMode"])
                                 for o in smt.CAPTURE_OPTIONS]))
        endpoint = sagemaker.CfnEndpoint(self, "Endpoint", endpoint_name=ep,
                                         endpoint_config_name=config.attr_endpoint_config_name)
        endpoint.apply_removal_policy(removal)
        for res in (model, config, endpoint):
            res.cfn_options.condition = has

        # --- alarms on the production variant (read by `pt gate`; the shadow is compared by metrics) ---
        names_ = smt.alarm_names(cfg.project, stage, t.endpoint)
        dims = {"EndpointName": ep, "VariantName": variant_name}
        minute = Duration.minutes(1)
        self.alarms = [
            cw.Alarm(self, "Alarm5xx", alarm_name=names_["errors"],
                     alarm_description=f"5XX errors of {ep} (production); read by `pt gate --stage {stage}`",
                     metric=cw.Metric(namespace=smt.NAMESPACE, metric_name="Invocation5XXErrors", statistic="Sum",
                                      period=minute, dimensions_map=dims),
                     threshold=1, evaluation_periods=1,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
            cw.Alarm(self, "AlarmLatency", alarm_name=names_["latency"],
                     alarm_description=f"ModelLatency p99 of {ep} (production) above {t.latency_alarm_ms} ms",
                     metric=cw.Metric(namespace=smt.NAMESPACE, metric_name="ModelLatency", statistic="p99",
                                      period=minute, dimensions_map=dims),
                     threshold=t.latency_alarm_ms * 1000, evaluation_periods=3, datapoints_to_alarm=2,
                     comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                     treat_missing_data=cw.TreatMissingData.NOT_BREACHING),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(cw_actions.SnsAction(st.topic))
            alarm.add_ok_action(cw_actions.SnsAction(st.topic))

        # --- what `pt` needs on top of the DeployRole ---
        models = arn(st, "sagemaker", f"model/{ep}-*")
        configs = arn(st, "sagemaker", f"endpoint-config/{ep}-*")
        endpoint_arn = arn(st, "sagemaker", f"endpoint/{ep}")
        deploy_policy = iam.ManagedPolicy(self, "DeployPolicy", description=f"what pt needs for endpoint {ep}",
                                          statements=[
            iam.PolicyStatement(sid="SageMakerRead", actions=["sagemaker:DescribeEndpoint",
                                                               "sagemaker:DescribeEndpointConfig",
                                                               "sagemaker:DescribeModel"],
                                resources=[endpoint_arn, configs, models, arn(st, "sagemaker", "endpoint-config/*"),
                                           arn(st, "sagemaker", "model/*")]),
            iam.PolicyStatement(sid="SageMakerDeploy", actions=[
                "sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:CreateEndpointConfig",
                "sagemaker:DeleteEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
                "sagemaker:UpdateEndpointWeightsAndCapacities", "sagemaker:DeleteEndpoint", "sagemaker:AddTags"],
                resources=[endpoint_arn, configs, models]),
            iam.PolicyStatement(sid="PassExecutionRole", actions=["iam:PassRole"], resources=[self.role.role_arn],
                                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}),
        ])
        st.deploy_role.add_managed_policy(deploy_policy)
        acknowledge_wildcards(policy, "ECR login has no resource scope; data capture and model artifacts are "
                              "object prefixes of the stage bucket; log streams of the endpoint's own log group; "
                              "PutMetricData has no resource scope and is limited by namespace",
                              ["Resource::*", f"Resource::{ref(bucket)}/{capture_prefix}/*",
                               f"Resource::{ref(bucket)}/{loc.prefix}/*" if model_objects else
                               f"Resource::arn:<AWS::Partition>:s3:::{loc.bucket}/{loc.prefix}/*",
                               f"Resource::{nag_arn(st, 'logs', f'log-group:/aws/sagemaker/Endpoints/{ep}')}"
                               ":log-stream:*"])
        acknowledge_wildcards(self, "models and endpoint configs pt creates are named <endpoint>-<record id>; "
                              "describing the endpoint's current config/model needs their ARNs, which pt learns "
                              "at run time",
                              [f"Resource::{nag_arn(st, 'sagemaker', f'model/{ep}-*')}",
                               f"Resource::{nag_arn(st, 'sagemaker', f'endpoint-config/{ep}-*')}",
                               f"Resource::{nag_arn(st, 'sagemaker', 'endpoint-config/*')}",
                               f"Resource::{nag_arn(st, 'sagemaker', 'model/*')}"])
        CfnOutput(st, "SageMakerEndpoint", value=ep)
        CfnOutput(st, "SageMakerExecutionRoleArn", value=self.role.role_arn)
