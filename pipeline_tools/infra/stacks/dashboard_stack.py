"""DashboardStack `<project>-<stage>-dashboard`: the CloudWatch dashboard `<project>-<stage>`.

Rows (each only when the stage has such resources), every metric addressed by its contract name:
  gate alarms        an alarm-status widget of every alarm the stacks create that the stage's gate
                     patterns match (functions, state machines, SageMaker), with its state;
  Lambda             invocations, errors, throttles; duration p50/p99 per function;
  Step Functions     executions started/succeeded/failed/timed out per state machine;
  API Gateway        count, 4XX, 5XX; latency p50/p99 per service API;
  Batch              jobs succeeded/failed (TriggeredRules of the TargetsStack's outcome rules);
  SageMaker          invocations and ModelLatency p50/p99 of the production and shadow variants.
pt status --open opens it (pipeline_tools/ops/dashboard.py: dashboard_url).
"""

from __future__ import annotations

import fnmatch

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import arn
from pipeline_tools.infra.stacks.state_machine import alarm_names as machine_alarms
from pipeline_tools.infra.stacks.targets_stack import batch_jobs

PERIOD = Duration.minutes(1)


def stage_machines(cfg: Config, stage: str) -> list[str]:
    return [m for m, t in cfg.targets.stepfunctions.items() if t.stages is None or stage in t.stages]


def sagemaker_endpoint(cfg: Config, stage: str) -> str | None:
    t = cfg.targets.sagemaker
    if t is None or (t.stages is not None and stage not in t.stages):
        return None
    from pipeline_tools.targets import sagemaker as smt

    return smt.endpoint_name(cfg, stage)


def created_alarms(cfg: Config, stage: str) -> list[str]:
    """Names of every alarm the stacks create for `stage`."""
    from pipeline_tools.infra.stacks.stage_stack import generated_alarm_names

    out = [a for f in cfg.functions for a in generated_alarm_names(cfg, stage, f)]
    out += [a for m in stage_machines(cfg, stage) for a in machine_alarms(cfg, stage, m)]
    if sagemaker_endpoint(cfg, stage) is not None:
        from pipeline_tools.targets import sagemaker as smt

        assert cfg.targets.sagemaker is not None
        out += list(smt.alarm_names(cfg.project, stage, cfg.targets.sagemaker.endpoint).values())
    return out


def gate_alarms(cfg: Config, stage: str) -> list[str]:
    """The created alarms the stage's gate watches (its patterns: names or prefixes with a trailing *)."""
    patterns = cfg.gate_patterns(stage)
    return [a for a in created_alarms(cfg, stage) if any(fnmatch.fnmatchcase(a, p) for p in patterns)]


class DashboardStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, stage: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=names.dashboard_name(cfg.project, stage),
                                      default_interval=Duration.hours(3))
        w = 24
        alarms = gate_alarms(cfg, stage)
        if alarms:
            self.dashboard.add_widgets(cw.AlarmStatusWidget(
                title=f"gate alarms ({', '.join(cfg.gate_patterns(stage))})", width=w,
                alarms=[cw.Alarm.from_alarm_arn(self, f"Gate{i}", arn(self, "cloudwatch", f"alarm:{a}"))
                        for i, a in enumerate(alarms)]))
        for f in cfg.functions:
            dims = {"FunctionName": cfg.function_name(stage, f)}

            def lam(metric: str, stat: str = "Sum", label: str | None = None, dims=dims) -> cw.Metric:
                return cw.Metric(namespace="AWS/Lambda", metric_name=metric, dimensions_map=dims, statistic=stat,
                                 period=PERIOD, label=label or metric)
            self.dashboard.add_widgets(
                cw.GraphWidget(title=f"λ {f}: invocations, errors, throttles", width=12,
                               left=[lam("Invocations"), lam("Errors"), lam("Throttles")]),
                cw.GraphWidget(title=f"λ {f}: duration p50/p99 (ms)", width=12,
                               left=[lam("Duration", "p50", "p50"), lam("Duration", "p99", "p99")]))
        for m in stage_machines(cfg, stage):
            sm_arn = arn(self, "states", f"stateMachine:{names.state_machine(cfg.project, stage, m)}")
            dims = {"StateMachineArn": sm_arn}
            self.dashboard.add_widgets(cw.GraphWidget(
                title=f"states {m}: executions", width=w,
                left=[cw.Metric(namespace="AWS/States", metric_name=n, dimensions_map=dims, statistic="Sum",
                                period=PERIOD) for n in ("ExecutionsStarted", "ExecutionsSucceeded",
                                                         "ExecutionsFailed", "ExecutionsTimedOut")]))
        for service, svc in cfg.services_for(stage).items():
            if svc.api is None or not svc.state_machine:
                continue
            dims = {"ApiName": names.api_name(cfg.project, service, stage), "Stage": stage}

            def api(metric: str, stat: str = "Sum", label: str | None = None, dims=dims) -> cw.Metric:
                return cw.Metric(namespace="AWS/ApiGateway", metric_name=metric, dimensions_map=dims, statistic=stat,
                                 period=PERIOD, label=label or metric)
            self.dashboard.add_widgets(
                cw.GraphWidget(title=f"API {service}: requests, 4XX, 5XX", width=12,
                               left=[api("Count"), api("4XXError"), api("5XXError")]),
                cw.GraphWidget(title=f"API {service}: latency p50/p99 (ms)", width=12,
                               left=[api("Latency", "p50", "p50"), api("Latency", "p99", "p99")]))
        if batch_jobs(cfg, stage):
            self.dashboard.add_widgets(cw.GraphWidget(
                title="Batch jobs: succeeded / failed", width=w,
                left=[cw.Metric(namespace="AWS/Events", metric_name="TriggeredRules", statistic="Sum", period=PERIOD,
                                dimensions_map={"RuleName": names.batch_outcome_rule(cfg.project, stage, o)}, label=o)
                      for o in ("succeeded", "failed")]))
        endpoint = sagemaker_endpoint(cfg, stage)
        if endpoint is not None:
            from pipeline_tools.targets import sagemaker as smt

            def sm(variant: str, metric: str, stat: str) -> cw.Metric:
                return cw.Metric(namespace=smt.NAMESPACE, metric_name=metric, statistic=stat, period=PERIOD,
                                 dimensions_map={"EndpointName": endpoint, "VariantName": variant},
                                 label=f"{variant} {stat if stat != 'Sum' else ''}".strip())
            assert cfg.targets.sagemaker is not None
            variants = (names.sagemaker_production_variant(cfg.targets.sagemaker.production_variant), smt.SHADOW)
            self.dashboard.add_widgets(
                cw.GraphWidget(title=f"SageMaker {endpoint}: invocations", width=12,
                               left=[sm(v, "Invocations", "Sum") for v in variants]),
                cw.GraphWidget(title=f"SageMaker {endpoint}: ModelLatency p50/p99 (µs)", width=12,
                               left=[sm(v, "ModelLatency", s) for v in variants for s in ("p50", "p99")]))
