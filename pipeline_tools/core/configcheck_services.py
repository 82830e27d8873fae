"""Checks of pipeline.yml the stacks need before synthesis (raw, line-marked data; config.parse calls
them next to configcheck.checks): each `targets.stepfunctions.<n>.definition` is a file, and each
`targets.batch.<n>.schedule` is an expression EventBridge Scheduler accepts (core/schedule_expr.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline_tools.core.schedule_expr import problem

Problem = tuple[tuple, str]


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def checks(data: dict, base_dir: Path | None) -> list[Problem]:
    """`base_dir`: the config file's directory; None (text parsed without a file) skips the file checks."""
    out: list[Problem] = []
    targets = _dict(data.get("targets"))
    for name, sm in _dict(targets.get("stepfunctions")).items() if base_dir else ():
        definition = _dict(sm).get("definition", "step-functions.json")
        if not isinstance(definition, str) or not definition.strip():
            continue  # the model reports the type / empty value
        path = base_dir / definition
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            out.append(((("targets", "stepfunctions", name, "definition") if "definition" in _dict(sm)
                         else ("targets", "stepfunctions", name)),
                        f"definition file {definition} {what} (relative to {base_dir}); give the path of the "
                        "Amazon States Language JSON file"))
    for name, job in _dict(targets.get("batch")).items():
        schedule = _dict(job).get("schedule")
        if isinstance(schedule, str) and (why := problem(schedule)):
            out.append((("targets", "batch", name, "schedule"), why))
    return out
