"""One state machine of `targets.stepfunctions.<name>` for one stage (a construct).

Definition: the repository's ASL file (read at synth), with `definitionSubstitutions` = the config's
`substitutions` (a value `function:<key>` becomes that function's `live` alias ARN), resolved as
`pt deploy` resolves them (write `ModelFunctionArn: function:<the service's function>`).
Logging (level ALL, no execution data: inputs may hold customer data) to
`/aws/vendedlogs/states/<name>`, X-Ray tracing, role `<project>-<stage>-<name>-sfn` that may only
invoke the `live` aliases it names. A first version and the alias `live` → it, so the API works
before the first `pt deploy`; from then on `pt deploy --target stepfunctions:<name>` publishes
versions and moves the alias. Alarms `<project>-<stage>-<name>-executions-failed|-timed-out` (→ the
stage's gate prefixes).
"""

from __future__ import annotations

import re

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import acknowledge_wildcards, arn

ALARM_METRICS = ("executions-failed", "executions-timed-out")


def function_alias_arn(stack: Stack, cfg: Config, stage: str, function: str) -> str:
    return arn(stack, "lambda", f"function:{cfg.function_name(stage, function)}:{names.LIVE_ALIAS}")


def state_machine_arn(stack: Stack, cfg: Config, stage: str, name: str) -> str:
    return arn(stack, "states", f"stateMachine:{names.state_machine(cfg.project, stage, name)}")


def alias_arn(stack: Stack, cfg: Config, stage: str, name: str) -> str:
    return f"{state_machine_arn(stack, cfg, stage, name)}:{names.LIVE_ALIAS}"


def alarm_names(cfg: Config, stage: str, name: str) -> list[str]:
    return [names.alarm_name(cfg.project, stage, name, m) for m in ALARM_METRICS]


def substitutions(stack: Stack, cfg: Config, stage: str, name: str) -> tuple[dict[str, str], list[str]]:
    """(definitionSubstitutions, the function keys whose aliases the definition invokes): exactly the
    config's `substitutions`, resolved as `pt deploy` resolves them (targets/sfn_definition.py), so the
    version the stack creates is the one a release would render."""
    from pipeline_tools.targets import sfn_definition

    subs = cfg.targets.stepfunctions[name].substitutions
    invoked = [v[len(sfn_definition.FUNCTION_PREFIX):] for v in subs.values()
               if v.startswith(sfn_definition.FUNCTION_PREFIX)]
    resolved = sfn_definition.resolve(subs, lambda fn: function_alias_arn(stack, cfg, stage, fn))
    return resolved, list(dict.fromkeys(invoked))


class StateMachine(Construct):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str, name: str, topic_arn: str,
                 removal: RemovalPolicy) -> None:
        from aws_cdk import aws_cloudwatch_actions as cw_actions
        from aws_cdk import aws_sns as sns

        super().__init__(scope, id)
        stack = Stack.of(self)
        t = cfg.targets.stepfunctions[name]
        physical = names.state_machine(cfg.project, stage, name)
        text = (cfg.base_dir / t.definition).read_text(encoding="utf-8")
        subs, invoked = substitutions(stack, cfg, stage, name)
        # Only the placeholders the file uses: the role then invokes only aliases the definition can reach.
        used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", text))
        subs = {k: v for k, v in subs.items() if k in used}
        invoked = [f for f in invoked if function_alias_arn(stack, cfg, stage, f) in subs.values()]

        self.log_group = logs.LogGroup(self, "Logs", log_group_name=names.state_machine_log_group(
            cfg.project, stage, name), retention=logs.RetentionDays.ONE_MONTH, removal_policy=removal)
        self.role = iam.Role(self, "Role", role_name=names.state_machine_role(cfg.project, stage, name),
                             assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
                             description=f"{physical}: invoke the live aliases it names, write its logs/traces")
        aliases = [function_alias_arn(stack, cfg, stage, f) for f in invoked]
        if aliases:
            self.role.add_to_policy(iam.PolicyStatement(sid="InvokeLiveAliases", actions=["lambda:InvokeFunction"],
                                                        resources=aliases))
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=physical,
            state_machine_type=sfn.StateMachineType[t.type],
            definition_body=sfn.DefinitionBody.from_string(text),
            definition_substitutions=subs or None,
            role=self.role,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            removal_policy=removal,
        )
        version = sfn.CfnStateMachineVersion(
            self, "Version", state_machine_arn=self.state_machine.state_machine_arn,
            state_machine_revision_id=self.state_machine.state_machine_revision_id,
            description="created by the stack; later versions are published by pt deploy")
        version.apply_removal_policy(RemovalPolicy.RETAIN)  # an old version may still be routed to
        self.alias = sfn.CfnStateMachineAlias(
            self, "Live", name=names.LIVE_ALIAS, description="moved by pt deploy",
            routing_configuration=[sfn.CfnStateMachineAlias.RoutingConfigurationVersionProperty(
                state_machine_version_arn=version.attr_arn, weight=100)])
        self.alias_arn = alias_arn(stack, cfg, stage, name)
        self.express = t.type == "EXPRESS"

        minute = Duration.minutes(1)
        topic = sns.Topic.from_topic_arn(self, "Events", topic_arn)
        self.alarms: list[cw.Alarm] = []
        for metric, alarm_name in zip((self.state_machine.metric_failed(period=minute, statistic="Sum"),
                                       self.state_machine.metric_timed_out(period=minute, statistic="Sum")),
                                      alarm_names(cfg, stage, name), strict=True):
            alarm = cw.Alarm(self, f"Alarm{len(self.alarms)}", alarm_name=alarm_name, metric=metric,
                             alarm_description=f"{alarm_name} ({physical}); read by `pt gate --stage {stage}`",
                             threshold=1, evaluation_periods=1,
                             comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                             treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(cw_actions.SnsAction(topic))
            alarm.add_ok_action(cw_actions.SnsAction(topic))
            self.alarms.append(alarm)
        # CDK's logging and tracing grants: CloudWatch Logs delivery and X-Ray have no resource scope.
        acknowledge_wildcards(self.role, "CloudWatch Logs vended delivery (logs:*LogDelivery, DescribeResourcePolicies"
                              ", DescribeLogGroups) and X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* "
                              "accept no resource scope", ["Resource::*"])


def deploy_statements(stack: Stack, cfg: Config, stage: str, machines: list[str]) -> list[iam.PolicyStatement]:
    """What `pt deploy --target stepfunctions:<name>` calls (targets/stepfunctions.py) on these machines."""
    if not machines:
        return []
    sms = [state_machine_arn(stack, cfg, stage, m) for m in machines]
    executions = [arn(stack, "states", f"execution:{names.state_machine(cfg.project, stage, m)}:*") for m in machines]
    return [iam.PolicyStatement(sid="StatesRelease", actions=[
        "states:DescribeStateMachine", "states:UpdateStateMachine", "states:PublishStateMachineVersion",
        "states:ListStateMachineVersions", "states:DeleteStateMachineVersion", "states:DescribeStateMachineAlias",
        "states:CreateStateMachineAlias", "states:UpdateStateMachineAlias", "states:DeleteStateMachineAlias",
        "states:ListStateMachineAliases", "states:StartExecution", "states:StartSyncExecution",
        "states:ListExecutions", "states:ListTagsForResource"],
        resources=sms + [f"{s}:*" for s in sms]),
        iam.PolicyStatement(sid="StatesExecutions", actions=["states:DescribeExecution", "states:StopExecution",
                                                             "states:GetExecutionHistory"], resources=executions)]
