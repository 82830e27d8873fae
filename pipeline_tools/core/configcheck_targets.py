"""Config checks of `targets.stepfunctions` and `targets.batch` (run by config.parse on raw data).

- stepfunctions: the definition file exists, is JSON with StartAt/States, every `${Name}` in it
  has a substitution (reported as DEFINITION:LINE:COL), every `function:<key>` names a function.
- batch: the image exists, vCPU/memory is a Fargate size, the schedule is an expression
  EventBridge Scheduler accepts.

Each problem is (path, message); parse() turns the path into pipeline.yml:LINE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_tools.core import batchspec

Problem = tuple[tuple, str]


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def checks(data: dict, base_dir: Path | None) -> list[Problem]:
    """base_dir: the config file's directory; None (config from a string) skips file checks."""
    targets = _dict(data.get("targets"))
    machines, jobs = _dict(targets.get("stepfunctions")), _dict(targets.get("batch"))
    return _stepfunctions(data, machines, base_dir) + _batch(data, jobs) + \
        _stages(data, "stepfunctions", machines) + _stages(data, "batch", jobs)


def _stages(data: dict, kind: str, items: dict) -> list[Problem]:
    stages = _dict(data.get("stages"))
    out: list[Problem] = []
    for name, item in items.items():
        listed = _dict(item).get("stages")
        for i, st in enumerate(listed if isinstance(listed, list) else []):
            if isinstance(st, str) and stages and st not in stages:
                out.append((("targets", kind, name, "stages", i),
                            f"unknown stage '{st}' (stages: {', '.join(stages)})"))
    return out


def _stepfunctions(data: dict, machines: dict, base_dir: Path | None) -> list[Problem]:
    # The pure definition logic lives with the target that deploys it; imported here only when a
    # config has state machines (core stays free of targets otherwise).
    from pipeline_tools.targets import sfn_definition as sfn

    out: list[Problem] = []
    functions = _dict(data.get("functions"))
    for name, m in machines.items():
        m = _dict(m)
        path = ("targets", "stepfunctions", name)
        subs = m.get("substitutions", {})
        if not isinstance(subs, dict) or not all(isinstance(v, str) for v in subs.values()):
            continue  # the model reports the type
        for key, value in subs.items():
            if value.startswith(sfn.FUNCTION_PREFIX) and value[len(sfn.FUNCTION_PREFIX):] not in functions:
                fn = value[len(sfn.FUNCTION_PREFIX):]
                out.append((path + ("substitutions", key),
                            f"unknown function '{fn}' (functions: {', '.join(functions) or 'none'})"))
        definition = m.get("definition", "step-functions.json")
        if base_dir is None or not isinstance(definition, str) or not definition.strip():
            continue
        dpath = path + ("definition",) if "definition" in m else path
        try:
            text = sfn.read(base_dir / definition, definition)
        except sfn.DefinitionError as e:
            out.append((dpath, str(e)))
            continue
        out += [(dpath, p) for p in sfn.check(text, definition, subs)]
    return out


def _batch(data: dict, jobs: dict) -> list[Problem]:
    out: list[Problem] = []
    images = _dict(data.get("images"))
    for name, j in jobs.items():
        j = _dict(j)
        path = ("targets", "batch", name)
        img = j.get("image")
        if isinstance(img, str) and images and img not in images:
            out.append((path + ("image",), f"unknown image '{img}' (images: {', '.join(images)})"))
        vcpu, memory = j.get("vcpu", 1.0), j.get("memory", 2048)
        if problem := batchspec.fargate_problem(vcpu, memory):
            # Point at the key to change: memory for a size the vCPU lacks, else the vCPU.
            key = "memory" if "memory" in j and "vCPU size" not in problem else "vcpu"
            out.append((path + (key,) if key in j else path, problem))
        sched = j.get("schedule")
        if isinstance(sched, str) and (problem := batchspec.schedule_problem(sched)):
            out.append((path + ("schedule",), problem + "; see docs/targets.md"))
    return out
