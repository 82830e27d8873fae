"""Target implementations (see `pipeline_tools.release.target` for the protocol).

Each kind lives in its own module and is loaded only when a stage uses it, so `pt --help`
and Lambda-only stages import no SageMaker/Step Functions/Batch code.

A target class is built as `Cls(cfg, stage, name, env)` where `env` is a `TargetEnv` (the stage's
client factory, clock, sleep, log); its module has `names(cfg, stage) -> list[str]`: the names
of that kind present in the stage, in config order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# kind -> "module:Class"; the module also defines names(cfg, stage)
KINDS: dict[str, str] = {
    "lambda": "pipeline_tools.targets.lambda_:LambdaTarget",
    "sagemaker": "pipeline_tools.targets.sagemaker_target:SageMakerTarget",
    "stepfunctions": "pipeline_tools.targets.stepfunctions:StateMachineTarget",
    "batch": "pipeline_tools.targets.batch:BatchJobTarget",
}


@dataclass(frozen=True)
class TargetEnv:
    client: Callable[[str], Any]          # service name -> boto3 client for the stage's account/region
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    log: Callable[[str], None] = lambda _m: None
    update_timeout: float = 300.0


def load_kind(kind: str) -> Any:
    """The module of a target kind (raises KeyError for an unknown kind)."""
    module, _, _cls = KINDS[kind].partition(":")
    return importlib.import_module(module)


def target_class(kind: str) -> type:
    module, _, cls = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)
