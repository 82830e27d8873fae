"""TargetsStack `<project>-<stage>-targets`: the Batch path of a stage and the state machines no
service of the stage owns (created when the stage has any of them).

Batch (`targets.batch.<job>` for this stage):
  - a VPC of two public subnets without NAT gateways (flow logs on): Fargate jobs get a public IP
    to reach ECR and CloudWatch Logs, and the security group allows no inbound traffic;
  - Fargate compute environment `<project>-<stage>-batch` and job queue `<project>-<stage>-batch`;
  - execution role `<project>-<stage>-batch-exec` (pull the stage's images, write /aws/batch/job logs);
  - per job: job role `<project>-<stage>-<job>-job` (read/write its results prefix
    `results/<job>/` in the service bucket when a service of the stage lists the job, else in the
    stage's artifacts bucket), an initial job definition `<project>-<stage>-<job>` (image by the
    digest from context `image_digests`, else tag `bootstrap`; `pt deploy --target batch:<job>`
    registers the real revisions, keeping `assignPublicIp: ENABLED`);
  - per job with `schedule`: an EventBridge Scheduler schedule `<project>-<stage>-<job>` → the
    universal target `batch:submitJob` (queue + job definition name = its latest ACTIVE revision),
    with role `<project>-<stage>-scheduler` that may submit only to that queue/definitions. The
    schedule starts DISABLED while no digest is known (nothing runnable yet);
  - EventBridge rules `<project>-<stage>-batch-succeeded|failed` matching the queue's job-state
    changes: their TriggeredRules metric is the dashboard's job-outcome count.
Plus a managed policy on the stage's deploy role for what `pt` does with these.
"""

from __future__ import annotations

import json

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Size, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import acknowledge, acknowledge_wildcards, arn, logical, nag_arn
from pipeline_tools.infra.stacks.service_stack import machine_owner
from pipeline_tools.infra.stacks.state_machine import StateMachine, deploy_statements

BATCH_LOG_GROUP = "/aws/batch/job"  # where Batch's awslogs driver writes by default


def batch_jobs(cfg: Config, stage: str) -> list[str]:
    return [j for j, t in cfg.targets.batch.items() if t.stages is None or stage in t.stages]


def unowned_machines(cfg: Config, stage: str) -> list[str]:
    return [m for m, t in cfg.targets.stepfunctions.items()
            if (t.stages is None or stage in t.stages) and machine_owner(cfg, stage, m) is None]


def results_location(cfg: Config, stage: str, job: str) -> tuple[str, str]:
    """(bucket, prefix) a job writes its results to."""
    owner = next((s for s, svc in cfg.services_for(stage).items() if job in svc.batch), None)
    bucket = cfg.service_bucket(owner, stage) if owner else cfg.bucket(stage)
    return bucket, f"results/{job}/"


def needs_targets_stack(cfg: Config, stage: str) -> bool:
    return bool(batch_jobs(cfg, stage) or unowned_machines(cfg, stage))


class TargetsStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str,
                 image_digests: dict[str, str] | None = None, local: bool = False, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.cfg, self.stage_name = cfg, stage
        image_digests = image_digests or {}
        removal = RemovalPolicy.DESTROY if local else RemovalPolicy.RETAIN
        self.machines = {m: StateMachine(self, f"Workflow{logical(m)}", cfg=cfg, stage=stage, name=m,
                                         topic_arn=arn(self, "sns", cfg.sns_topic(stage)), removal=removal)
                         for m in unowned_machines(cfg, stage)}
        statements = deploy_statements(self, cfg, stage, list(self.machines))
        findings = []
        for m in self.machines:
            sm = names.state_machine(cfg.project, stage, m)
            findings += [f"Resource::{nag_arn(self, 'states', f'stateMachine:{sm}:*')}",
                         f"Resource::{nag_arn(self, 'states', f'execution:{sm}:*')}"]
        jobs = batch_jobs(cfg, stage)
        self.job_definitions: dict[str, batch.EcsJobDefinition] = {}
        if jobs:
            s, f = self._batch(jobs, image_digests, removal)
            statements += s
            findings += f
        deploy_role = iam.Role.from_role_name(self, "DeployRole", names.deploy_role(cfg.project, stage))
        policy = iam.ManagedPolicy(self, "DeployPolicy", statements=statements, roles=[deploy_role],
                                   description=f"what pt needs for the Batch jobs and state machines of {stage}")
        acknowledge_wildcards(policy, "scoped wildcards: revisions of this stage's job definitions, versions/aliases"
                              " and executions of its state machines, its Batch log streams; Describe/List calls of"
                              " Batch take no resource scope", findings + (["Resource::*"] if jobs else []))

    @property
    def availability_zones(self) -> list[str]:
        """Two AZs resolved at deploy time (Fn::GetAZs): synth needs no account lookup, and the template
        names no AZ (cfn-lint W3010)."""
        return [Fn.select(0, Fn.get_azs()), Fn.select(1, Fn.get_azs())]

    def _batch(self, jobs: list[str], image_digests: dict[str, str],
               removal: RemovalPolicy) -> tuple[list[iam.PolicyStatement], list[str]]:
        cfg, stage = self.cfg, self.stage_name
        vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=0,
                      subnet_configuration=[ec2.SubnetConfiguration(name="jobs", subnet_type=ec2.SubnetType.PUBLIC)],
                      flow_logs={"all": ec2.FlowLogOptions(traffic_type=ec2.FlowLogTrafficType.ALL)})
        group = ec2.SecurityGroup(self, "JobsSecurityGroup", vpc=vpc, allow_all_outbound=True,
                                  description=f"{cfg.project} {stage} Batch jobs: outbound only")
        env = batch.FargateComputeEnvironment(
            self, "Compute", compute_environment_name=names.batch_compute_environment(cfg.project, stage),
            vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC), security_groups=[group],
            maxv_cpus=64)
        queue = batch.JobQueue(self, "Queue", job_queue_name=names.batch_job_queue(cfg.project, stage), priority=1,
                               compute_environments=[batch.OrderedComputeEnvironment(
                                   compute_environment=env, order=1)])
        exec_role = iam.Role(self, "ExecutionRole", role_name=names.batch_execution_role(cfg.project, stage),
                             assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                             description=f"ECS pulls the images of {cfg.project} {stage} Batch jobs and writes logs")
        images = sorted({cfg.targets.batch[j].image for j in jobs})
        logs_arn = arn(self, "logs", f"log-group:{BATCH_LOG_GROUP}")
        exec_role.add_to_policy(iam.PolicyStatement(sid="Pull", actions=[
            "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[arn(self, "ecr", f"repository/{cfg.ecr_repository(i)}") for i in images]))
        exec_role.add_to_policy(iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"],
                                                    resources=["*"]))
        exec_role.add_to_policy(iam.PolicyStatement(sid="Logs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                                    resources=[f"{logs_arn}:log-stream:*"]))
        acknowledge_wildcards(exec_role, "ECR login has no resource scope; streams of Batch's job log group are "
                              "named per job at run time",
                              ["Resource::*", f"Resource::{nag_arn(self, 'logs', f'log-group:{BATCH_LOG_GROUP}')}"
                                              ":log-stream:*"])
        sched_role = None
        job_defs: list[str] = []
        job_roles: list[str] = [exec_role.role_arn]
        for job in jobs:
            t = cfg.targets.batch[job]
            bucket, prefix = results_location(cfg, stage, job)
            job_role = iam.Role(self, f"JobRole{logical(job)}", role_name=names.batch_job_role(cfg.project, stage, job),
                                assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                                description=f"batch job {job} ({stage}): its results prefix s3://{bucket}/{prefix}")
            job_role.add_to_policy(iam.PolicyStatement(sid="Results", actions=["s3:GetObject", "s3:PutObject"],
                                                       resources=[f"arn:{self.partition}:s3:::{bucket}/{prefix}*"]))
            job_role.add_to_policy(iam.PolicyStatement(
                sid="ResultsList", actions=["s3:ListBucket"], resources=[f"arn:{self.partition}:s3:::{bucket}"],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}}))
            acknowledge_wildcards(job_role, "objects under the job's own results prefix",
                                  [f"Resource::arn:<AWS::Partition>:s3:::{bucket}/{prefix}*"])
            job_roles.append(job_role.role_arn)
            repo = cfg.ecr_repository(t.image)
            registry = f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}/{repo}"
            digest = image_digests.get(t.image)
            image = ecs.ContainerImage.from_registry(f"{registry}@{digest}" if digest else f"{registry}:bootstrap")
            name = names.batch_job_definition(cfg.project, stage, job)
            definition = batch.EcsJobDefinition(
                self, f"Job{logical(job)}", job_definition_name=name, retry_attempts=t.retry,
                timeout=Duration.seconds(t.timeout), propagate_tags=True,
                container=batch.EcsFargateContainerDefinition(
                    self, f"Container{logical(job)}", image=image, cpu=t.vcpu, memory=Size.mebibytes(t.memory),
                    command=t.command, assign_public_ip=True, execution_role=exec_role, job_role=job_role,
                    fargate_platform_version=ecs.FargatePlatformVersion.LATEST,
                    environment={**t.environment, "PT_PROJECT": cfg.project, "PT_STAGE": stage, "PT_JOB": job,
                                 "PT_RESULTS": f"s3://{bucket}/{prefix}"}))
            self.job_definitions[job] = definition
            job_defs.append(arn(self, "batch", f"job-definition/{name}"))
            if t.schedule:
                if sched_role is None:
                    sched_role = iam.Role(
                        self, "SchedulerRole", role_name=names.scheduler_role(cfg.project, stage),
                        assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com").with_conditions(
                            {"StringEquals": {"aws:SourceAccount": self.account}}),
                        description=f"EventBridge Scheduler submits {cfg.project} {stage} Batch jobs")
                scheduler.CfnSchedule(
                    self, f"Schedule{logical(job)}", name=names.batch_schedule(cfg.project, stage, job),
                    description=f"submits batch job {job} ({stage}); pt deploy points it at new revisions",
                    schedule_expression=t.schedule, schedule_expression_timezone="UTC",
                    state="ENABLED" if digest else "DISABLED",
                    flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                    target=scheduler.CfnSchedule.TargetProperty(
                        arn="arn:aws:scheduler:::aws-sdk:batch:submitJob", role_arn=sched_role.role_arn,
                        input=json.dumps({"JobName": f"{name}-scheduled", "JobDefinition": name,
                                          "JobQueue": names.batch_job_queue(cfg.project, stage)}),
                        retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(maximum_retry_attempts=2)))
        if sched_role is not None:
            sched_role.add_to_policy(iam.PolicyStatement(
                sid="SubmitJobs", actions=["batch:SubmitJob"],
                resources=[queue.job_queue_arn] + job_defs + [f"{d}:*" for d in job_defs]))
            acknowledge_wildcards(sched_role, "every revision of the stage's job definitions (pt deploy registers "
                                  "them)", [f"Resource::{nag_arn(self, 'batch', f'job-definition/{n}')}:*"
                                            for n in (names.batch_job_definition(cfg.project, stage, j)
                                                      for j in jobs if cfg.targets.batch[j].schedule)])
        for outcome in ("succeeded", "failed"):
            events.Rule(self, f"Jobs{outcome.title()}", rule_name=names.batch_outcome_rule(cfg.project, stage, outcome),
                        description=f"{cfg.project} {stage} Batch jobs {outcome} (dashboard metric)",
                        event_pattern=events.EventPattern(source=["aws.batch"], detail_type=["Batch Job State Change"],
                                                          detail={"status": [outcome.upper()],
                                                                  "jobQueue": [queue.job_queue_arn]}))
        acknowledge(self.node.find_child("Compute"),
                    AwsSolutions_IAM4="Batch's service role uses the AWS-managed AWSBatchServiceRole policy that "
                                      "the Batch service requires for managing Fargate capacity")
        CfnOutput(self, "JobQueue", value=queue.job_queue_name)

        # --- what pt does with the jobs ---
        names_ = [names.batch_job_definition(cfg.project, stage, j) for j in jobs]
        statements = [
            iam.PolicyStatement(sid="BatchRegister", actions=["batch:RegisterJobDefinition",
                                                              "batch:DeregisterJobDefinition", "batch:TagResource"],
                                resources=job_defs + [f"{d}:*" for d in job_defs]),
            iam.PolicyStatement(sid="BatchSubmit", actions=["batch:SubmitJob"],
                                resources=[queue.job_queue_arn] + job_defs + [f"{d}:*" for d in job_defs]),
            iam.PolicyStatement(sid="BatchJobs", actions=["batch:TerminateJob", "batch:CancelJob"],
                                resources=[arn(self, "batch", "job/*")]),
            iam.PolicyStatement(sid="BatchRead", actions=["batch:DescribeJobDefinitions", "batch:DescribeJobs",
                                                          "batch:ListJobs", "batch:DescribeJobQueues"],
                                resources=["*"]),
            iam.PolicyStatement(sid="PassJobRoles", actions=["iam:PassRole"], resources=job_roles,
                                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
            iam.PolicyStatement(sid="BatchLogs", actions=["logs:GetLogEvents", "logs:FilterLogEvents"],
                                resources=[logs_arn, f"{logs_arn}:log-stream:*"]),
        ]
        findings = [f"Resource::{nag_arn(self, 'batch', f'job-definition/{n}')}:*" for n in names_]
        findings += [f"Resource::{nag_arn(self, 'batch', 'job/*')}",
                     f"Resource::{nag_arn(self, 'logs', f'log-group:{BATCH_LOG_GROUP}')}:log-stream:*"]
        if sched_role is not None:
            schedules = [arn(self, "scheduler", f"schedule/default/{names.batch_schedule(cfg.project, stage, j)}")
                         for j in jobs if cfg.targets.batch[j].schedule]
            statements.append(iam.PolicyStatement(sid="Schedules", actions=["scheduler:GetSchedule",
                                                                            "scheduler:UpdateSchedule"],
                                                  resources=schedules))
            statements.append(iam.PolicyStatement(
                sid="PassSchedulerRole", actions=["iam:PassRole"], resources=[sched_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}))
        return statements, findings
