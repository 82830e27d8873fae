"""ServiceStack `<project>-<service>-<stage>-service`: one model service (`services.<name>`) in one stage.

  - the service bucket (`services.<s>.bucket`): versioned, SSE-S3, SSL-only, access-logged;
  - the state machine `services.<s>.state_machine` (state_machine.py; its substitutions name the
    service function, e.g. `ModelFunctionArn: function:predict`), unless another service of the
    stage already owns it;
  - the REST API `<project>-<stage>-<service>-api` (when `api` is set and there is a state machine):
    `POST /run` → `states:StartExecution` on the alias (`StartSyncExecution` for EXPRESS), `GET
    /executions/{id}` → `states:DescribeExecution`, both `AWS_IAM` auth, integrated directly through
    a role that may do exactly that; access logs; throttling from `api.throttle_rate/burst`;
  - Cognito-group access (`access`): the managed policy `<project>-<stage>-<service>-access`
    (execute-api:Invoke on the two routes, read/put on the bucket prefixes) and the role of the same
    name, trusted by cognito-identity.amazonaws.com for the identity pool's authenticated identities,
    with that policy attached. The access-grant command (pt access grant, docs/service-ops.md)
    attaches the policy to a group's role;
  - a managed policy on the stage's deploy role for what `pt` does to the service.

The function is NOT created here: every `functions:` entry is the StageStack's (one place for image
digests, aliases, alarms and `pt deploy`). The StageStack gives a service's function its params
path (`PT_PARAMS_PATH`), read access to it and to the service bucket. Everything is referenced by
its contract name (no cross-stack exports), so the stacks deploy and change independently; the
ServiceStack depends on the StageStack (deploy role, function aliases).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import (
    SecureBucket,
    acknowledge,
    acknowledge_wildcards,
    arn,
    nag_arn,
    ref,
)
from pipeline_tools.infra.stacks.state_machine import StateMachine, alias_arn, deploy_statements


def machine_owner(cfg: Config, stage: str, machine: str) -> str | None:
    """The service whose stack creates `machine` in `stage` (the first in pipeline.yml order), or None
    (then the stage's TargetsStack creates it)."""
    return next((s for s, svc in cfg.services_for(stage).items() if svc.state_machine == machine), None)


class ServiceStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, service: str, stage: str, local: bool = False,
                 **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.cfg, self.service, self.stage_name = cfg, service, stage
        svc = cfg.services[service]
        removal = RemovalPolicy.DESTROY if local else RemovalPolicy.RETAIN
        bucket_name = cfg.service_bucket(service, stage)
        self.bucket = SecureBucket(self, "Bucket", bucket_name=bucket_name, removal_policy=removal).bucket

        # --- state machine ---
        self.machine: StateMachine | None = None
        machine = svc.state_machine
        if machine and machine_owner(cfg, stage, machine) == service:
            self.machine = StateMachine(self, "Workflow", cfg=cfg, stage=stage, name=machine,
                                        topic_arn=arn(self, "sns", cfg.sns_topic(stage)), removal=removal)

        # --- REST API ---
        self.api: apigw.RestApi | None = None
        if svc.api is not None and machine:
            self.api = self._api(machine, removal)

        # --- Cognito-group access ---
        self.access_policy: iam.ManagedPolicy | None = None
        if svc.access is not None:
            self._access()

        self._deploy_policy(machine)
        CfnOutput(self, "ServiceBucket", value=self.bucket.bucket_name)
        if self.api is not None:
            CfnOutput(self, "ApiUrl", value=self.api.url)

    # ------------------------------------------------------------------------------------------
    def _api(self, machine: str, removal: RemovalPolicy) -> apigw.RestApi:
        cfg, stage, service = self.cfg, self.stage_name, self.service
        svc = cfg.services[service]
        assert svc.api is not None
        express = cfg.targets.stepfunctions[machine].type == "EXPRESS"
        target = alias_arn(self, cfg, stage, machine)
        sm_name = names.state_machine(cfg.project, stage, machine)
        start = "StartSyncExecution" if express else "StartExecution"
        access_logs = logs.LogGroup(self, "ApiAccessLogs", retention=logs.RetentionDays.THREE_MONTHS,
                                    removal_policy=removal)
        api = apigw.RestApi(
            self, "Api", rest_api_name=names.api_name(cfg.project, service, stage),
            description=f"{cfg.project} {service} ({stage}): POST /run starts {sm_name}, GET /executions/{{id}}",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=apigw.StageOptions(
                stage_name=stage,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=True),
                throttling_rate_limit=svc.api.throttle_rate,
                throttling_burst_limit=svc.api.throttle_burst,
                tracing_enabled=True,
                metrics_enabled=True,
            ),
        )
        role = iam.Role(self, "ApiRole", assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                        description=f"API {names.api_name(cfg.project, service, stage)}: start and read {sm_name}")
        role.add_to_policy(iam.PolicyStatement(sid="Start", actions=[f"states:{start}"], resources=[target]))
        executions = arn(self, "states", f"execution:{sm_name}:*")
        if express:  # express executions are addressed as express:<name>:<id>
            executions_express = arn(self, "states", f"express:{sm_name}:*")
            role.add_to_policy(iam.PolicyStatement(sid="Describe", actions=["states:DescribeExecution"],
                                                   resources=[executions, executions_express]))
        else:
            role.add_to_policy(iam.PolicyStatement(sid="Describe", actions=["states:DescribeExecution"],
                                                   resources=[executions]))
        validator = api.add_request_validator("Validator", validate_request_body=True,
                                              validate_request_parameters=True)
        responses = [apigw.IntegrationResponse(status_code="200"),
                     apigw.IntegrationResponse(status_code="400", selection_pattern="4\\d{2}"),
                     apigw.IntegrationResponse(status_code="500", selection_pattern="5\\d{2}")]
        method_responses = [apigw.MethodResponse(status_code=c) for c in ("200", "400", "500")]
        run = apigw.AwsIntegration(
            service="states", action=start, integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=role, passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_templates={"application/json": (
                    f'{{"stateMachineArn": "{target}", "input": "$util.escapeJavaScript($input.json(\'$\'))"}}')},
                integration_responses=responses))
        api.root.add_resource("run").add_method(
            "POST", run, authorization_type=apigw.AuthorizationType.IAM, request_validator=validator,
            method_responses=method_responses)
        describe = apigw.AwsIntegration(
            service="states", action="DescribeExecution", integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=role, passthrough_behavior=apigw.PassthroughBehavior.NEVER,
                request_parameters={"integration.request.path.id": "method.request.path.id"},
                request_templates={"application/json": (
                    f'{{"executionArn": "{arn(self, "states", f"execution:{sm_name}:")}'
                    "$util.escapeJavaScript($input.params('id'))\"}")},
                integration_responses=responses))
        api.root.add_resource("executions").add_resource("{id}").add_method(
            "GET", describe, authorization_type=apigw.AuthorizationType.IAM, request_validator=validator,
            request_parameters={"method.request.path.id": True}, method_responses=method_responses)
        acknowledge(api,
                    AwsSolutions_APIG3="IAM-authorized (SigV4) API for identities of one Cognito identity pool, "
                                       "throttled per stage; no public anonymous surface for a WAF to filter",
                    AwsSolutions_APIG6="access logs record every request; execution logging needs the account-wide "
                                       "API Gateway CloudWatch role, which a service stack must not own",
                    AwsSolutions_COG4="authorization is AWS_IAM: callers sign with Cognito identity-pool "
                                      "credentials of the access role, not with user-pool tokens")
        kinds = ("execution", "express") if express else ("execution",)
        acknowledge_wildcards(role, "DescribeExecution takes the execution id from the path: any execution of "
                              "this one state machine",
                              [f"Resource::{nag_arn(self, 'states', f'{k}:{sm_name}:*')}" for k in kinds])
        return api

    def _access(self) -> None:
        cfg, stage, service = self.cfg, self.stage_name, self.service
        access = cfg.services[service].access
        assert access is not None
        statements = []
        if self.api is not None:
            statements.append(iam.PolicyStatement(sid="InvokeApi", actions=["execute-api:Invoke"], resources=[
                self.api.arn_for_execute_api("POST", "/run", stage),
                self.api.arn_for_execute_api("GET", "/executions/*", stage)]))
        prefixes = [p.strip("/") for p in access.prefixes]
        objects = [self.bucket.arn_for_objects("*" if p in ("*", "") else f"{p}/*") for p in prefixes]
        statements.append(iam.PolicyStatement(sid="ReadWritePrefixes", actions=["s3:GetObject", "s3:PutObject"],
                                              resources=objects))
        listing = iam.PolicyStatement(sid="ListPrefixes", actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn])
        if "*" not in prefixes and "" not in prefixes:
            listing.add_condition("StringLike", {"s3:prefix": [f"{p}/*" for p in prefixes] + prefixes})
        statements.append(listing)
        policy_name = names.access_policy(cfg.project, service, stage)
        self.access_policy = iam.ManagedPolicy(self, "AccessPolicy", managed_policy_name=policy_name,
                                               statements=statements,
                                               description=f"use {cfg.project} {service} in {stage}: the API and "
                                                           "the bucket prefixes (attach to a Cognito group's role)")
        self.access_role = iam.Role(
            self, "AccessRole", role_name=names.access_role(cfg.project, service, stage),
            assumed_by=iam.FederatedPrincipal("cognito-identity.amazonaws.com", conditions={
                "StringEquals": {"cognito-identity.amazonaws.com:aud": access.identity_pool_id},
                "ForAnyValue:StringLike": {"cognito-identity.amazonaws.com:amr": "authenticated"},
            }, assume_role_action="sts:AssumeRoleWithWebIdentity"),
            managed_policies=[self.access_policy],
            description=f"Cognito identities of {access.identity_pool_id} using {cfg.project} {service} ({stage})")
        findings = [f"Resource::{ref(self.bucket)}/{'*' if p in ('*', '') else p + '/*'}" for p in prefixes]
        if self.api is not None:
            api_id = ref(self.api, None)
            findings.append(f"Resource::arn:<AWS::Partition>:execute-api:{self.region}:{self.account}:{api_id}/"
                            f"{stage}/GET/executions/*")
        acknowledge_wildcards(self.access_policy, "the objects under the service's configured bucket prefixes, and "
                              "the execution ids of GET /executions/{id}", findings)

    def _deploy_policy(self, machine: str | None) -> None:
        """What `pt` (the stage's deploy role) does for the service: release the state machine, push
        parameters and scenarios, read the API, attach the access policy to Cognito group roles."""
        cfg, stage, service = self.cfg, self.stage_name, self.service
        svc = cfg.services[service]
        params = names.params_path(service, stage).rstrip("/")
        statements = deploy_statements(self, cfg, stage, [machine] if self.machine is not None and machine else [])
        statements += [
            iam.PolicyStatement(sid="Parameters", actions=[
                "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
                "ssm:PutParameter", "ssm:DeleteParameter", "ssm:DeleteParameters", "ssm:AddTagsToResource"],
                resources=[arn(self, "ssm", f"parameter{params}"), arn(self, "ssm", f"parameter{params}/*")]),
            iam.PolicyStatement(sid="ServiceBucket", actions=[
                "s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning", "s3:GetObject",
                "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                "s3:AbortMultipartUpload"], resources=[self.bucket.bucket_arn, self.bucket.arn_for_objects("*")]),
        ]
        findings = [f"Resource::{nag_arn(self, 'ssm', f'parameter{params}/*')}", f"Resource::{ref(self.bucket)}/*"]
        if self.machine is not None and machine:
            sm = names.state_machine(cfg.project, stage, machine)
            findings += [f"Resource::{nag_arn(self, 'states', f'stateMachine:{sm}:*')}",
                         f"Resource::{nag_arn(self, 'states', f'execution:{sm}:*')}"]
        if self.api is not None:
            api_arn = f"arn:{self.partition}:apigateway:{self.region}::/restapis/{self.api.rest_api_id}"
            statements.append(iam.PolicyStatement(sid="ApiRead", actions=["apigateway:GET"],
                                                  resources=[api_arn, f"{api_arn}/*"]))
            findings.append(f"Resource::arn:<AWS::Partition>:apigateway:{self.region}::/restapis/"
                            f"{ref(self.api, None)}/*")
        if self.access_policy is not None and svc.access is not None:
            statements.append(iam.PolicyStatement(
                sid="GrantAccess", actions=["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
                resources=[arn(self, "iam", "role/*", region=False)],
                conditions={"ArnEquals": {"iam:PolicyARN": self.access_policy.managed_policy_arn}}))
            statements.append(iam.PolicyStatement(sid="GrantAccessRead", actions=[
                "iam:GetRole", "iam:ListAttachedRolePolicies"], resources=[arn(self, "iam", "role/*", region=False)]))
            findings.append(f"Resource::arn:<AWS::Partition>:iam::{self.account}:role/*")
            if svc.access.user_pool_id:
                statements.append(iam.PolicyStatement(sid="CognitoGroups", actions=[
                    "cognito-idp:GetGroup", "cognito-idp:ListGroups"],
                    resources=[arn(self, "cognito-idp", f"userpool/{svc.access.user_pool_id}")]))
        deploy_role = iam.Role.from_role_name(self, "DeployRole", names.deploy_role(cfg.project, stage))
        policy = iam.ManagedPolicy(self, "DeployPolicy", statements=statements, roles=[deploy_role],
                                   description=f"what pt needs for service {service} in {stage}")
        acknowledge_wildcards(policy, "scoped wildcards: the service's parameters under its params path, objects "
                              "of its bucket, versions/aliases and executions of its state machine, its API's "
                              "sub-resources; iam Attach/DetachRolePolicy on any role but only for the access "
                              "policy (iam:PolicyARN condition): the Cognito group's role is chosen at run time",
                              findings)
