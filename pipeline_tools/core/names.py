"""The naming contract (ARCHITECTURE.md, "Names"): every module derives names from here."""

from __future__ import annotations

LIVE_ALIAS = "live"


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
