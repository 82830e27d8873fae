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


def _lambda_names(cfg: Any, stage: str) -> list[str]:
    cfg.stage(stage)
    return list(cfg.functions)  # every function is in every stage


def _sagemaker_names(cfg: Any, stage: str) -> list[str]:
    t = cfg.targets.sagemaker
    return [] if t is None or (t.stages is not None and stage not in t.stages) else [t.endpoint]


def _by_stages(section: str) -> Callable[[Any, str], list[str]]:
    def names(cfg: Any, stage: str) -> list[str]:
        return [n for n, t in getattr(cfg.targets, section).items() if t.stages is None or stage in t.stages]
    return names


# kind -> names(cfg, stage): read from the config alone, so finding a stage's targets imports no
# target module (a Lambda-only deploy never loads the SageMaker, Step Functions or Batch code);
# each module's own names() says the same
NAMES: dict[str, Callable[[Any, str], list[str]]] = {
    "lambda": _lambda_names, "sagemaker": _sagemaker_names,
    "stepfunctions": _by_stages("stepfunctions"), "batch": _by_stages("batch"),
}


def kinds_in(cfg: Any, stage: str) -> dict[str, list[str]]:
    """{kind: names of that kind in the stage}, in KINDS order, kinds without targets left out."""
    out: dict[str, list[str]] = {}
    for kind in KINDS:
        names = list(NAMES[kind](cfg, stage))
        if names:
            out[kind] = names
    return out


def stage_ids(cfg: Any, stage: str) -> list[str]:
    """The stage's target ids in release order: `stages.<s>.targets` when set, else every target
    of the stage (kinds in KINDS order, names in config order)."""
    st = cfg.stage(stage)
    present = [f"{k}:{n}" for k, names in kinds_in(cfg, stage).items() for n in names]
    if st.targets:
        return list(st.targets)
    return present


def select_ids(cfg: Any, stage: str, wanted: list[str] | tuple[str, ...] | None) -> list[str]:
    """The ids `--target` selects, in the stage's order. Each value is an id (`lambda:predict`) or
    a kind (`lambda` = every target of that kind); repeatable. Unknown → UsageError (exit 2)."""
    from pipeline_tools.core.errors import UsageError

    ids = stage_ids(cfg, stage)
    if not wanted:
        return ids
    chosen: set[str] = set()
    for w in wanted:
        w = w.strip()
        kind, sep, _name = w.partition(":")
        if kind not in KINDS:
            raise UsageError(f"--target {w}: unknown kind '{kind}'",
                             f"use one of {', '.join(KINDS)}, or an id like lambda:NAME (`pt status --stage {stage}` "
                             "lists the stage's targets)")
        if sep:
            if w not in ids:
                raise UsageError(f"--target {w}: stage {stage} has no such target",
                                 f"its targets are: {', '.join(ids) or 'none'}")
            chosen.add(w)
            continue
        of_kind = [i for i in ids if i.startswith(kind + ":")]
        if not of_kind:
            raise UsageError(f"--target {w}: stage {stage} has no {kind} target",
                             f"its targets are: {', '.join(ids) or 'none'}")
        chosen.update(of_kind)
    return [i for i in ids if i in chosen]


def build_targets(cfg: Any, stage: str, env: TargetEnv, ids: list[str] | None = None) -> list[Any]:
    """Target objects for `ids` (default: the stage's, in order). A kind whose module is missing
    is a UsageError naming it."""
    from pipeline_tools.core.errors import UsageError

    out = []
    for tid in (ids if ids is not None else stage_ids(cfg, stage)):
        kind, _, name = tid.partition(":")
        if kind not in KINDS:
            raise UsageError(f"target {tid}: unknown kind '{kind}'", f"use one of {', '.join(KINDS)}")
        try:
            cls = target_class(kind)
        except (ImportError, AttributeError):
            raise UsageError(f"target kind '{kind}' is not available in this version of pt ({KINDS[kind]})",
                             "upgrade pipeline-tools, or leave that target out with --target") from None
        out.append(cls(cfg, stage, name, env))
    return out
