"""deploy_cmd and promote_cmd share their wiring through commands/_deploy_common.py and never
import each other (the cycle they had)."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline_tools.commands as commands

DIR = Path(commands.__file__).parent


def imported(name: str) -> set[str]:
    tree = ast.parse((DIR / f"{name}.py").read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_no_cycle_between_deploy_and_promote_commands():
    assert "pipeline_tools.commands.promote_cmd" not in imported("deploy_cmd")
    assert "pipeline_tools.commands.deploy_cmd" not in imported("promote_cmd")
    for other in ("runbook_cmd", "records_cmd"):
        assert "pipeline_tools.commands.deploy_cmd" not in imported(other)


def test_common_wiring_imports_no_command():
    assert not {m for m in imported("_deploy_common") if m.startswith("pipeline_tools.commands")}
