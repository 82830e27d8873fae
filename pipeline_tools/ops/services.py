"""Which service a service command acts on, and the small facts the service modules share (pure)."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pipeline_tools.core.errors import UsageError

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config


def pick_service(cfg: Config, stage: str, service: str | None) -> str:
    """The `--service` value checked against `services:` and the stage; optional when the stage
    runs exactly one service."""
    if not cfg.services:
        raise UsageError("pipeline.yml has no `services:` section",
                         "add one (see docs/service-ops.md), or check --config")
    here = cfg.services_for(stage)
    if service is None:
        if len(here) == 1:
            return next(iter(here))
        if not here:
            raise UsageError(f"no service runs in stage '{stage}'",
                             "add the stage to services.<name>.stages, or pass another --stage")
        raise UsageError(f"stage '{stage}' runs several services ({', '.join(here)}): which one?",
                         f"pass --service ({' | '.join(here)})")
    if service not in cfg.services:
        match = difflib.get_close_matches(service, list(cfg.services), n=1, cutoff=0.6)
        raise UsageError(f"unknown service '{service}'",
                         f"did you mean '{match[0]}'?" if match else f"services are: {', '.join(cfg.services)}")
    if service not in here:
        raise UsageError(f"service '{service}' does not run in stage '{stage}' "
                         f"(services.{service}.stages: {', '.join(cfg.services[service].stages or [])})",
                         f"pass --stage ({' | '.join(cfg.services[service].stages or [])})")
    return service


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
