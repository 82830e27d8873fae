"""The stage's CloudWatch dashboard (`<project>-<stage>`, DashboardStack): its console URL (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from pipeline_tools.core import names

if TYPE_CHECKING:  # `pt status` stays light: no pydantic import for the URL
    from pipeline_tools.core.config import Config


def console_host(region: str) -> str:
    if region.startswith("cn-"):
        return "console.amazonaws.cn"
    if region.startswith("us-gov-"):
        return "console.amazonaws-us-gov.com"
    return "console.aws.amazon.com"


def dashboard_url(cfg: Config, stage: str) -> str:
    """https://<region>.console…/cloudwatch/home?region=<region>#dashboards/dashboard/<name>"""
    cfg.stage(stage)  # unknown stage -> UsageError (exit 2)
    region = cfg.stage_region(stage)
    name = quote(names.dashboard_name(cfg.project, stage), safe="")
    return f"https://{region}.{console_host(region)}/cloudwatch/home?region={region}#dashboards/dashboard/{name}"
