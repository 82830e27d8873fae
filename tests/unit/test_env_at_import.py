"""No module reads the environment at import time: a bad PT_* value must only affect the command
that uses it (and then as a usage error), never `pt --help` or an unrelated command."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "pipeline_tools"
# Fixed on another branch this session (xfail until it is merged; then drop the entry).


def _reads_env(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr in ("environ", "getenv", "environb") \
                and isinstance(n.value, ast.Name) and n.value.id == "os":
            return True
    return False


def _import_time_nodes(body: list[ast.stmt]):
    """What runs on import: module and class bodies, decorators and default values, not function bodies."""
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from stmt.decorator_list
            yield from stmt.args.defaults
            yield from (d for d in stmt.args.kw_defaults if d is not None)
        elif isinstance(stmt, ast.ClassDef):
            yield from stmt.decorator_list
            yield from stmt.bases
            yield from _import_time_nodes(stmt.body)
        else:
            yield stmt


def offenders() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = [n.lineno for n in _import_time_nodes(tree.body) if _reads_env(n)]
        if lines:
            out[str(path.relative_to(PKG.parent))] = lines
    return out


def test_no_module_reads_the_environment_at_import():
    assert offenders() == {}


def test_the_check_sees_import_time_reads():
    tree = ast.parse("import os\nX = int(os.environ.get('A', 1))\n"
                     "def f(y=os.getenv('B')):\n    return os.environ['C']\n"
                     "class K:\n    Z = os.environ.get('D')\n    def m(self):\n        return os.environ.get('E')\n")
    assert [n.lineno for n in _import_time_nodes(tree.body) if _reads_env(n)] == [2, 3, 6]
