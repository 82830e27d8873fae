"""The naming contract (ARCHITECTURE.md, "Names"): every module derives names from here."""

from __future__ import annotations

import re

LIVE_ALIAS = "live"
_TEMPLATE_RE = re.compile(r"\{([^{}]*)\}")


def render(template: str, **values: str) -> str:
    """`{project}`-style placeholders filled from `values`; an unknown one is left as it is."""
    return _TEMPLATE_RE.sub(lambda m: values.get(m[1], m[0]), template)


def ecr_repository(project: str, image: str) -> str:
    return f"{project}-{image}"


def function_name(project: str, stage: str, function: str) -> str:
    return f"{project}-{stage}-{function}"


def default_bucket_template() -> str:
    return "{project}-{stage}-artifacts"


def ledger_table(project: str) -> str:
    return f"{project}-ledger"


def sns_topic(project: str, stage: str) -> str:
    return f"{project}-{stage}-events"


def alarm_name(project: str, stage: str, function: str, metric: str) -> str:
    return f"{project}-{stage}-{function}-{metric}"


def ecr_registry(account: str, region: str) -> str:
    return f"{account}.dkr.ecr.{region}.amazonaws.com"


def stage_stack(project: str, stage: str) -> str:
    return f"{project}-{stage}-stage"


def pipeline_stack(project: str, stage: str) -> str:
    return f"{project}-{stage}-pipeline"


def deploy_role(project: str, stage: str) -> str:
    return f"{project}-{stage}-deploy"


def ledger_stack(project: str) -> str:
    """The stack that holds the shared ledger in the tooling account (`accounts.tooling`)."""
    return f"{project}-ledger"


def ledger_role(project: str) -> str:
    """Role in the tooling account that stage deploy roles assume to reach the shared ledger."""
    return f"{project}-ledger"


def role_arn(account: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


def dashboard_name(project: str, stage: str) -> str:
    return f"{project}-{stage}"


def service_stack(project: str, service: str, stage: str) -> str:
    return f"{project}-{service}-{stage}-service"


def params_path(service: str, stage: str) -> str:
    """SSM Parameter Store prefix of a service's hyperparameters (ends with /)."""
    return f"/pt/{service}/{stage}/"


def access_role(project: str, service: str, stage: str) -> str:
    """Role a Cognito group assumes (through the identity pool) to use a service."""
    return f"{project}-{stage}-{service}-access"


def access_policy(project: str, service: str, stage: str) -> str:
    """Managed policy with the same rights, for an existing group's role to attach."""
    return f"{project}-{stage}-{service}-access"


def state_machine(project: str, stage: str, name: str) -> str:
    """State machine of `targets.stepfunctions.<name>`; its alias is LIVE_ALIAS."""
    return f"{project}-{stage}-{name}"


def state_machine_role(project: str, stage: str, name: str) -> str:
    return f"{project}-{stage}-{name}-sfn"


def batch_job_definition(project: str, stage: str, name: str) -> str:
    """Job definition of `targets.batch.<name>` (each deploy registers a revision)."""
    return f"{project}-{stage}-{name}"


def batch_job_queue(project: str, stage: str) -> str:
    return f"{project}-{stage}-batch"


def batch_compute_environment(project: str, stage: str) -> str:
    return f"{project}-{stage}-batch"


def batch_schedule(project: str, stage: str, name: str) -> str:
    """EventBridge Scheduler schedule that submits `targets.batch.<name>`."""
    return f"{project}-{stage}-{name}"


def batch_execution_role(project: str, stage: str) -> str:
    """Role ECS uses to pull the image and write logs for the stage's Batch jobs."""
    return f"{project}-{stage}-batch-exec"


def batch_job_role(project: str, stage: str, name: str) -> str:
    """Role the job's code runs as."""
    return f"{project}-{stage}-{name}-job"


def scheduler_role(project: str, stage: str) -> str:
    """Role EventBridge Scheduler assumes to submit the stage's Batch jobs."""
    return f"{project}-{stage}-scheduler"


def api_name(project: str, service: str, stage: str) -> str:
    return f"{project}-{stage}-{service}-api"


SAGEMAKER_PRODUCTION_VARIANT = "production"
SAGEMAKER_CANDIDATE_VARIANT = "candidate"
SAGEMAKER_SHADOW_VARIANT = "shadow"


def sagemaker_production_variant(configured: str | None = None) -> str:
    """The production variant of a stage's SageMaker endpoint: the StageStack's endpoint config and
    alarms, and every endpoint config `pt` makes, use it. `targets.sagemaker.production_variant` names
    the one an existing endpoint really has (e.g. `AllTraffic`, the SageMaker SDK's default)."""
    return configured or SAGEMAKER_PRODUCTION_VARIANT


def sagemaker_candidate_variant(taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The variant a release adds next to production (weight 0 until shifted); never a name in use."""
    name, n = SAGEMAKER_CANDIDATE_VARIANT, 1
    while name in taken:
        n += 1
        name = f"{SAGEMAKER_CANDIDATE_VARIANT}-{n}"
    return name


def sagemaker_capture_prefix(endpoint: str) -> str:
    """Key prefix of the endpoint's data capture (model outputs) in the stage bucket."""
    return f"datacapture/{endpoint}"


def targets_stack(project: str, stage: str) -> str:
    """Per-stage stack of the Batch path and of state machines no service of the stage owns."""
    return f"{project}-{stage}-targets"


def dashboard_stack(project: str, stage: str) -> str:
    return f"{project}-{stage}-dashboard"


def batch_outcome_rule(project: str, stage: str, outcome: str) -> str:
    """EventBridge rule matching the stage's Batch jobs ending in `outcome` (succeeded/failed);
    its TriggeredRules metric is the dashboard's job-outcome count."""
    return f"{project}-{stage}-batch-{outcome}"


def state_machine_log_group(project: str, stage: str, name: str) -> str:
    return f"/aws/vendedlogs/states/{state_machine(project, stage, name)}"


def format_duration(seconds: float) -> str:
    """1h2m3s (0s for zero)."""
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s or not (h or m) else ""]
    return "".join(parts)
