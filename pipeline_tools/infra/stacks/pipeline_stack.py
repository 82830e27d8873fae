"""PipelineStack: one CodePipeline (V2) per stage, source = the stage's branch on GitHub.

Stages without `promote_from` build:   Source → Build (pt build-push, pt test) → [Approve] → Deploy
(pt deploy --from-build) → Gate (pt gate --wait).
Stages with `promote_from` never rebuild: Source → [Approve] → Promote (pt promote) → Gate.
`Approve` (a Manual approval notifying the stage's SNS topic) exists when the stage has `approvals`.
When CodePipeline can watch the gate alarms itself (infra/gate_conditions.py), Deploy/Promote get an
onSuccess CloudWatchAlarm condition (rollback on ALARM) and Gate runs `pt gate` once, not `--wait`.
CodeBuild keeps pip's cache (and docker's layer cache for docker steps) between builds.

The source is a full clone (`CODEBUILD_CLONE_REF`), so every build has the commit's `.git` and
`pt` can name its author (the image's .dockerignore keeps .git out of the build context).
CodeBuild runs with its own service role, which may only assume the stage's deploy role
(`<project>-<stage>-deploy`, from the StageStack) and use the source connection; `pt` gets that
role through an AWS profile with `credential_source = EcsContainer`, so every `pt` call runs with
the deploy role's rights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.gate_conditions import AlarmRules, alarm_rules
from pipeline_tools.infra.stacks.constructs import (
    SecureBucket,
    acknowledge,
    acknowledge_wildcards,
    arn,
    nag_arn,
    ref,
)
from pipeline_tools.infra.stacks.stage_stack import codebuild_role_name
from pipeline_tools.infra.toolkit import toolkit_dockerfile

BUILD_OUTPUT = "build.json"
REPORTS_DIR = "reports"


class PipelineStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str, repository: str,
                 connection_arn: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        st = cfg.stages[stage]
        owner, repo = repository.split("/", 1)
        # The stage's deploy role, in the stage's account (the pipeline may live in the tooling account).
        self.deploy_role_arn = st.role or names.role_arn(st.account, names.deploy_role(cfg.project, stage),
                                                         self.partition)
        in_stage_account = st.account == self.account

        store = SecureBucket(self, "ArtifactStore", kms_key=True, noncurrent_days=30,
                             removal_policy=RemovalPolicy.DESTROY)
        self.pipeline = codepipeline.Pipeline(
            self, "Pipeline",
            pipeline_name=names.pipeline_stack(cfg.project, stage),
            pipeline_type=codepipeline.PipelineType.V2,
            artifact_bucket=store.bucket,
            restart_execution_on_update=False,
        )
        self.report_group = codebuild.ReportGroup(
            self, "Tests", report_group_name=f"{cfg.project}-{stage}-tests",
            type=codebuild.ReportGroupType.TEST, removal_policy=RemovalPolicy.DESTROY)
        self.build_key = kms.Key(self, "BuildKey", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY,
                                 description=f"encrypts CodeBuild output of {cfg.project} {stage}")
        self.build_logs = logs.LogGroup(self, "BuildLogs", retention=logs.RetentionDays.ONE_MONTH,
                                        removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "BuildRole", assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
                             role_name=codebuild_role_name(cfg.project, stage),
                             description=f"CodeBuild for {cfg.project} {stage}: may only assume the deploy role")
        self.role.add_to_policy(iam.PolicyStatement(actions=["sts:AssumeRole", "sts:TagSession"],
                                                    resources=[self.deploy_role_arn]))
        self.projects: list[codebuild.PipelineProject] = []
        self.toolkit_image = self._toolkit_image(cfg)

        source_out = codepipeline.Artifact("Source")
        self.pipeline.add_stage(stage_name="Source", actions=[actions.CodeStarConnectionsSourceAction(
            action_name="GitHub", owner=owner, repo=repo, branch=st.branch, connection_arn=connection_arn,
            output=source_out, trigger_on_push=True,
            # a full clone, not a zip: the builds see .git, so `pt` can name the commit's author
            # (the two-person rule needs it); CDK grants the build role UseConnection for it
            code_build_clone_output=True)])

        # The approval notifies the stage's topic only from the stage's own account: the topic's key and
        # policy do not admit a pipeline role of another account (`pt gate` announces approvals there).
        topic = sns.Topic.from_topic_arn(self, "Events", arn(self, "sns", cfg.sns_topic(stage))) \
            if in_stage_account else None
        if not in_stage_account:
            # `pt approvals sync-codepipeline` reads this pipeline's state where it lives: the build role
            # (its own credentials, not the deploy role of the stage account) may read and answer it.
            pipeline_arn = arn(self, "codepipeline", names.pipeline_stack(cfg.project, stage))
            self.role.add_to_policy(iam.PolicyStatement(
                sid="Approvals", actions=["codepipeline:GetPipelineState", "codepipeline:PutApprovalResult"],
                resources=[pipeline_arn, f"{pipeline_arn}/*"]))
            own = nag_arn(self, "codepipeline", names.pipeline_stack(cfg.project, stage))
            acknowledge_wildcards(self.role, "the approval actions of this stage's own pipeline",
                                  [f"Resource::{own}/*"])

        def approve() -> None:
            if st.approvals:
                from pipeline_tools.ops.change_record import latest_url

                # the link opens the newest change record `pt change-record --publish` wrote for the stage
                self.pipeline.add_stage(stage_name="Approve", actions=[actions.ManualApprovalAction(
                    action_name="Approve", notification_topic=topic, external_entity_link=latest_url(cfg, stage),
                    additional_information=(f"{st.approvals.required} approval(s) needed for {stage}"
                                            + (" (not the commit author)" if st.approvals.two_person_rule else "")
                                            + f"; record them with `pt approve --stage {stage}`. Review the change "
                                              "record (link; check its digest and time): what changes, the commits, "
                                              "rollback conditions and procedure, approvals and test evidence; "
                                              f"`pt change-record --stage {stage} --next --publish` refreshes it"))])

        conditions = alarm_rules(cfg, stage)
        if st.promote_from:
            approve()
            promote = [f"pt promote --to {stage}"]
            if st.approvals:
                # The console approval counts as one approver in the ledger (others: `pt approve`).
                pipeline_name = names.pipeline_stack(cfg.project, stage)
                promote.insert(0, f"pt approvals sync-codepipeline --stage {stage} --pipeline {pipeline_name}")
            self._step("Promote", cfg, stage, source_out, promote, conditions=conditions)
        else:
            build_out = codepipeline.Artifact("Build")
            self._step("Build", cfg, stage, source_out, [
                f"pt build-push --stage {stage} --output json > {BUILD_OUTPUT}",
                f"pt test --stage {stage} --junit {REPORTS_DIR}/junit.xml",
            ], docker=True, output=build_out, reports=True)
            approve()
            self._step("Deploy", cfg, stage, source_out,
                       [f"pt deploy --stage {stage} --from-build $CODEBUILD_SRC_DIR_Build/{BUILD_OUTPUT}"],
                       extra_inputs=[build_out], conditions=conditions)
        # With stage conditions the pipeline did the (unbilled) waiting: one evaluation records the verdict.
        self._step("Gate", cfg, stage, source_out,
                   [f"pt gate --stage {stage}" + ("" if conditions.usable else " --wait")])
        # CDK's own grants to the pipeline, source and CodeBuild roles on this pipeline's artifact
        # store and key, and CodeBuild's default log group / report group patterns per project.
        findings = [f"Action::{a}" for a in ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*",
                                             "s3:List*", "kms:ReEncrypt*", "kms:GenerateDataKey*")]
        findings.append(f"Resource::{ref(store.bucket)}/*")
        if not cfg.cdk.toolkit_image:
            findings.append("Resource::*")   # ecr:GetAuthorizationToken, which has no resource-level form
        for project in self.projects:
            findings.append(f"Resource::{nag_arn(self, 'logs', f'log-group:/aws/codebuild/{ref(project, None)}:*')}")
            findings.append(f"Resource::{nag_arn(self, 'codebuild', f'report-group/{ref(project, None)}-*')}")
        acknowledge_wildcards(self, (
            "CDK-generated grants, all on this pipeline's own resources: object-level actions on its encrypted "
            "artifact store and key, each CodeBuild project's default log group and report groups, and "
            "ecr:GetAuthorizationToken (account-wide by AWS's design) to pull the toolkit image asset"), findings)

    def _toolkit_image(self, cfg: Config) -> codebuild.IBuildImage:
        """The pinned toolkit for steps without docker: `cdk.toolkit_image` by digest, else an image asset
        (pt at the pinned `cdk.pt_install`) that `cdk deploy` pushes to this account's asset repository and
        the projects reference by its content hash."""
        if cfg.cdk.toolkit_image:
            return codebuild.LinuxBuildImage.from_docker_registry(cfg.cdk.toolkit_image)
        with tempfile.TemporaryDirectory(prefix="pt-toolkit-") as tmp:
            Path(tmp, "Dockerfile").write_text(toolkit_dockerfile(cfg.cdk.pt_install))
            # staged (copied into the cloud assembly) right here, so the temporary directory may go
            return codebuild.LinuxBuildImage.from_asset(self, "ToolkitImage", directory=tmp,
                                                        platform=ecr_assets.Platform.LINUX_AMD64)

    def _step(self, name: str, cfg: Config, stage: str, source: codepipeline.Artifact, commands: list[str], *,
              docker: bool = False, output: codepipeline.Artifact | None = None, reports: bool = False,
              extra_inputs: list[codepipeline.Artifact] | None = None, conditions: AlarmRules | None = None) -> None:
        spec: dict = {
            "version": "0.2",
            "env": {"shell": "bash", "variables": {
                "PT_STAGE": stage, "AWS_PROFILE": "pt-deploy", "AWS_CONFIG_FILE": "/tmp/pt-aws-config"}},
            "cache": {"paths": ["/root/.cache/pip/**/*"]},
            "phases": {
                # docker steps run CodeBuild's standard image (its dockerd) and install the pinned pt;
                # the others run the toolkit image, which has it already
                **({"install": {"commands": [f"python3 -m pip install --quiet '{cfg.cdk.pt_install}'"]}}
                   if docker else {}),
                "pre_build": {"commands": [
                    # boto3 in pt assumes the deploy role using CodeBuild's container credentials.
                    'printf "[profile pt-deploy]\\nrole_arn = %s\\ncredential_source = EcsContainer\\n'
                    'role_session_name = codebuild-%s\\n" "$PT_DEPLOY_ROLE_ARN" "$CODEBUILD_BUILD_NUMBER" '
                    '> "$AWS_CONFIG_FILE"',
                    "pt config validate",
                ]},
                "build": {"commands": commands},
            },
        }
        if output is not None:
            spec["artifacts"] = {"files": [BUILD_OUTPUT]}
        if reports:
            spec["reports"] = {self.report_group.report_group_arn: {
                "files": ["**/*.xml"], "base-directory": REPORTS_DIR, "file-format": "JUNITXML"}}
        project = codebuild.PipelineProject(
            self, f"{name}Project",
            project_name=f"{cfg.project}-{stage}-{name.lower()}",
            description=f"{cfg.project} {stage}: {'; '.join(commands)}",
            role=self.role,
            encryption_key=self.build_key,
            timeout=Duration.hours(2),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0 if docker else self.toolkit_image,
                compute_type=codebuild.ComputeType.SMALL,
                privileged=docker,
            ),
            environment_variables={"PT_DEPLOY_ROLE_ARN": codebuild.BuildEnvironmentVariable(
                value=self.deploy_role_arn)},
            build_spec=codebuild.BuildSpec.from_object(spec),
            # pip's cache between builds; docker steps also keep their layer cache
            cache=codebuild.Cache.local(*([codebuild.LocalCacheMode.DOCKER_LAYER] if docker else []),
                                        codebuild.LocalCacheMode.CUSTOM),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=self.build_logs, prefix=name.lower())),
        )
        self.projects.append(project)
        if reports:
            self.report_group.grant_write(project)
        if docker:
            acknowledge(project, AwsSolutions_CB3=(
                "privileged mode is required to run docker build/push (pt test, pt build-push)"))
        else:
            acknowledge(project, AwsSolutions_CB5=(
                "runs the pt toolkit image: built by this stack's image asset from the pinned cdk.pt_install (or "
                "cdk.toolkit_image by digest), so every step runs exactly the reviewed toolkit version"))
        extra: dict = {}
        if conditions is not None and conditions.usable:
            rules = [codepipeline.Rule(name=r["name"], provider="CloudWatchAlarm", version="1",
                                       configuration=r["configuration"]) for r in conditions.rules]
            extra["on_success"] = codepipeline.Conditions(conditions=[codepipeline.Condition(
                result=codepipeline.Result.ROLLBACK, rules=rules)])
            extra["on_failure"] = codepipeline.FailureConditions(result=codepipeline.Result.ROLLBACK)
        self.pipeline.add_stage(stage_name=name, actions=[actions.CodeBuildAction(
            action_name=name, project=project, input=source, extra_inputs=extra_inputs,
            outputs=[output] if output is not None else None, role=None)], **extra)
