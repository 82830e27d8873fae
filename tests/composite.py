"""Runs a composite GitHub Action's `run:` steps the way the runner does (no act needed): each step is a
bash script with the step's `env:` (only `${{ inputs.* }}` expressions are evaluated; anything else fails
the test), GITHUB_ACTION_PATH set to the action's directory and GITHUB_PATH/GITHUB_OUTPUT files that are
read back afterwards."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


@dataclass
class ActionRun:
    path: list[str] = field(default_factory=list)  # directories the action appended to GITHUB_PATH
    outputs: dict[str, str] = field(default_factory=dict)  # step id -> {name: value} flattened as "id.name"
    procs: list[subprocess.CompletedProcess] = field(default_factory=list)

    def env_with_path(self, env: dict[str, str]) -> dict[str, str]:
        """`env` as a later step of the job sees it: GITHUB_PATH entries prepended to PATH."""
        return {**env, "PATH": os.pathsep.join([*reversed(self.path), env.get("PATH", "")])}


def _eval(value: str, inputs: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        expr = m[1]
        if not expr.startswith("inputs."):
            raise AssertionError(f"unsupported expression in action env: {m[0]}")
        return inputs[expr.removeprefix("inputs.")]
    return EXPR.sub(one, str(value))


def _read_kv(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def run_composite_action(action_dir: Path, inputs: dict[str, str], *, runner_temp: Path,
                         env: dict[str, str], cwd: Path, timeout: int = 600) -> ActionRun:
    spec = yaml.safe_load((action_dir / "action.yml").read_text())
    assert spec["runs"]["using"] == "composite"
    declared = spec.get("inputs", {})
    unknown = set(inputs) - set(declared)
    assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
    values = {name: str(inputs.get(name, d.get("default", ""))) for name, d in declared.items()}
    result = ActionRun()
    runner_temp.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(spec["runs"]["steps"]):
        assert "run" in step, f"step {i} is not a run: step; this runner only runs scripts"
        assert "${{" not in step["run"], f"step {i}: expression inside run: (pass it through env:)"
        files = {k: runner_temp / f"_step{i}_{k}" for k in ("GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_ENV")}
        for f in files.values():
            f.write_text("")
        step_env = {**result.env_with_path(env), **{k: str(v) for k, v in files.items()},
                    "GITHUB_ACTION_PATH": str(action_dir), "RUNNER_TEMP": str(runner_temp),
                    **{k: _eval(v, values) for k, v in (step.get("env") or {}).items()}}
        assert step.get("shell") == "bash", f"step {i}: composite run steps need shell: bash"
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              env=step_env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        result.procs.append(proc)
        if proc.returncode != 0:
            return result
        result.path += [line for line in files["GITHUB_PATH"].read_text().splitlines() if line]
        if step.get("id"):
            result.outputs.update({f"{step['id']}.{k}": v for k, v in _read_kv(files["GITHUB_OUTPUT"]).items()})
    return result
