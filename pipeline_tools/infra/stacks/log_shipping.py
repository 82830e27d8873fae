"""LogShipping: ship chosen CloudWatch log groups to an OpenSearch domain (`stages.<s>.logs.opensearch`).

Design: one subscription filter per log group → one small forwarding Lambda (inline code,
`log_forwarder.py`) that posts each batch to the domain's `_bulk` API signed with SigV4. We chose
it over Kinesis Data Firehose because Firehose's OpenSearch destination also needs a backup S3
bucket, a delivery role and a subscription role for CloudWatch Logs; the Lambda needs one role
whose rights are exactly: write its own log group, and `es:ESHttpPost`/`ESHttpPut` on the domain.
A batch OpenSearch rejects makes the invocation fail, and CloudWatch Logs' asynchronous
invocation retries it; each document's `_id` is the log event id, so a retried batch does not
duplicate what already got in.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_logs_destinations as destinations
from constructs import Construct, IConstruct

from pipeline_tools.infra.stacks.constructs import acknowledge_wildcards, ref

FORWARDER = Path(__file__).with_name("log_forwarder.py")
RUNTIME = lambda_.Runtime.PYTHON_3_14  # cdk-nag L1: the newest Python runtime


class LogShipping(Construct):
    def __init__(self, scope: Construct, id: str, *, domain_arn: str, endpoint: str, groups: list[str],
                 index: str, filter_pattern: str = "", depends_on: list[IConstruct] | None = None,
                 retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH) -> None:
        super().__init__(scope, id)
        if not groups:
            raise ValueError("LogShipping needs at least one log group")
        self.log_group = logs.LogGroup(self, "ForwarderLogs", retention=retention,
                                       removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description="ships CloudWatch Logs to OpenSearch: its own logs, and _bulk on the domain")
        self.role.add_to_policy(iam.PolicyStatement(
            sid="OwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[self.log_group.log_group_arn, f"{self.log_group.log_group_arn}:log-stream:*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="OpenSearchBulk", actions=["es:ESHttpPost", "es:ESHttpPut"], resources=[f"{domain_arn}/*"]))
        self.function = lambda_.Function(
            self, "Forwarder", runtime=RUNTIME, handler="index.handler",
            code=lambda_.Code.from_inline(FORWARDER.read_text()), role=self.role, log_group=self.log_group,
            timeout=Duration.seconds(30), memory_size=256,
            environment={"ENDPOINT": endpoint, "INDEX": index},
            description=f"ships {len(groups)} log group(s) to OpenSearch")
        self.filters: list[logs.SubscriptionFilter] = []
        for i, name in enumerate(groups):
            group = logs.LogGroup.from_log_group_name(self, f"Group{i}", name)
            f = logs.SubscriptionFilter(self, f"Subscription{i}", log_group=group,
                                        destination=destinations.LambdaDestination(self.function),
                                        filter_pattern=logs.FilterPattern.literal(filter_pattern))
            for dep in depends_on or []:  # a group this stack creates must exist before its filter
                f.node.default_child.add_dependency(dep.node.default_child)  # type: ignore[union-attr]
            self.filters.append(f)
        acknowledge_wildcards(self, (
            "the forwarder writes only its own log group's streams and may only post documents to the "
            "named OpenSearch domain's paths (_bulk)"),
            [f"Resource::{ref(self.log_group)}:log-stream:*", f"Resource::{domain_arn}/*"])
