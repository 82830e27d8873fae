"""Every hint names commands and options that exist.

Extracts the string literals of pipeline_tools (f-string holes become `{}`) and checks them
against the real click CLI, walked through `pipeline_tools.cli`'s registry:

- every backticked `pt …` command line: each word names a (sub)command and each --option/-o
  belongs to the command it follows;
- every --option in an error, warning or hint (calls of *Error classes, `hint=`, warn/error/info/log,
  click help texts): some pt command has that option, unless the text says it is another tool's.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

PKG = Path(__file__).resolve().parents[2] / "pipeline_tools"

PT_SEGMENT = re.compile(r"`pt(\s[^`]*)?`")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)")
LONG_OPTION = re.compile(r"(?<![\w$/-])(--[a-z][a-z0-9-]*)")
# Options of other tools that messages quote, by the tool named right before them.
FOREIGN = re.compile(r"\b(aws|docker|npx|cdk|git|pip|sha256sum|curl|python|pytest|gh|convmv)\b[^`;,()]*$")
MESSAGE_CALLS = re.compile(r"(Error|Exception|Failed|Wait|Abort)$|^(warn|error|info|log|fail|BadParameter|echo)$")


@dataclass(frozen=True)
class Literal:
    file: str
    line: int
    text: str
    kind: str  # "message" (error/warning/hint/help) or "other"


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left if left is not None else "{}") + (right if right is not None else "{}")
    return None


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def literals() -> list[Literal]:
    out: list[Literal] = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = str(path.relative_to(PKG.parent))
        inner: set[int] = set()  # parts of a bigger string expression: judged as part of it
        message: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr | ast.BinOp):
                inner.update(id(v) for v in ast.walk(node) if v is not node)
            if isinstance(node, ast.Call):
                args = list(node.args) if MESSAGE_CALLS.search(_call_name(node)) else []
                args += [k.value for k in node.keywords if k.arg in ("hint", "help", "message")]
                for a in args:
                    message.update(id(v) for v in ast.walk(a))
        for node in ast.walk(tree):
            if id(node) in inner:
                continue
            text = _text(node)
            if text is not None:
                out.append(Literal(rel, node.lineno, text, "message" if id(node) in message else "other"))
    return out


def _root_ctx() -> tuple[click.Group, click.Context]:
    from pipeline_tools.cli import cli

    return cli, click.Context(cli, info_name="pt")


def _subcommands(cmd: click.Command, ctx: click.Context) -> dict[str, click.Command]:
    if not isinstance(cmd, click.Group):
        return {}
    return {name: cmd.get_command(ctx, name) for name in cmd.list_commands(ctx)}


def _options(cmd: click.Command) -> set[str]:
    opts = {"--help", "-h"}
    for p in cmd.params:
        if isinstance(p, click.Option):
            opts.update(o for o in p.opts + p.secondary_opts if o.startswith("-"))
    return opts


def all_options() -> set[str]:
    root, ctx = _root_ctx()
    found = set(_options(root))
    todo = list(_subcommands(root, ctx).values())
    while todo:
        cmd = todo.pop()
        found |= _options(cmd)
        todo += list(_subcommands(cmd, ctx).values())
    return found


def _takes_value(cmds: list[click.Command], opt: str) -> bool:
    for c in cmds:
        for p in c.params:
            if isinstance(p, click.Option) and opt in p.opts + p.secondary_opts:
                return not (p.is_flag or p.count)
    return False


def check_command_line(segment: str) -> list[str]:
    """Problems with one `pt …` line: unknown (sub)commands, options the command lacks."""
    segment = re.split(r"\s(?:>|\||&&|;)\s|\$\(", segment)[0]  # shell: the pt part only
    root, ctx = _root_ctx()
    problems: list[str] = []
    cmds: list[click.Command] = [root]
    path = "pt"
    descending = True
    skip_value = False
    for raw in segment.split():
        if skip_value:
            skip_value = False
            continue
        token = raw.strip("[]().,:;")
        if not token or "{}" in token or token == "…":
            descending = False
            continue
        if token.startswith("-") and OPTION.fullmatch(token.split("=")[0]):
            opt = token.split("=")[0]
            if not any(opt in _options(c) for c in cmds):
                problems.append(f"`{path}` has no option {opt}")
            skip_value = "=" not in token and _takes_value(cmds, opt)
            continue
        subs = _subcommands(cmds[0], ctx) if len(cmds) == 1 else {}
        if descending and subs and re.fullmatch(r"[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*", token):
            names = token.split("|")
            missing = [n for n in names if n not in subs]
            if missing:
                problems.append(f"`{path}` has no subcommand {', '.join(missing)}")
                return problems
            # alternatives: options after them must exist on every alternative
            cmds = [subs[n] for n in names]
            path += f" {token}"
            continue
        descending = False  # an argument: later words are values, options are still checked
    return problems


def doc_command_lines() -> list[tuple[str, int, str]]:
    """`pt …` in docs/*.md (backticked, or lines of fenced code) and in the templates pt init writes."""
    root = PKG.parent
    out = []
    templates = PKG / "infra" / "templates"
    files = sorted((root / "docs").glob("*.md")) + sorted(p for p in templates.rglob("*") if p.is_file())
    for path in files:
        fenced = path.suffix != ".md"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            found = [m.group(0) for m in PT_SEGMENT.finditer(line)]
            if fenced:
                cmd = re.sub(r"^\s*(?:-\s+)?(?:run:\s*\|?\s*|\$\s+)?", "", line)
                found += [f"`{part.strip()}`" for part in re.split(r"&&|;|\|\s", cmd)
                          if re.match(r"\s*pt\s", part)]
            out += [(str(path.relative_to(root)), n, seg) for seg in found]
    return out


LITERALS = literals()
SEGMENTS = sorted({(lit.file, lit.line, m.group(0)) for lit in LITERALS for m in PT_SEGMENT.finditer(lit.text)}
                  | set(doc_command_lines()))


def test_the_extraction_finds_hints():
    """The extractor sees the hints it is meant to check (else the checks below prove nothing)."""
    texts = {lit.text for lit in LITERALS if lit.kind == "message"}
    assert any("run `pt local up`" in t for t in texts)
    assert any("--yes" in t for t in texts)
    assert len(SEGMENTS) > 30


@pytest.mark.parametrize("file,line,segment", SEGMENTS, ids=[f"{f}:{n}" for f, n, _ in SEGMENTS])
def test_pt_command_lines_in_strings_exist(file, line, segment):
    body = PT_SEGMENT.fullmatch(segment).group(1) or ""
    problems = check_command_line(body)
    assert problems == [], f"{file}:{line}: {segment}"


def test_options_named_in_messages_exist():
    known = all_options()
    bad = []
    for lit in LITERALS:
        if lit.kind != "message":
            continue
        text = PT_SEGMENT.sub(" ", lit.text)  # those are checked per command above
        for m in LONG_OPTION.finditer(text):
            if m.group(1) not in known and not FOREIGN.search(text[: m.start()]):
                bad.append(f"{lit.file}:{lit.line}: {m.group(1)} in {lit.text!r}")
    assert bad == []


@pytest.mark.parametrize("segment,problem", [
    ("deploy --stage prod --digest sha256:x", "`pt deploy` has no option --digest"),
    ("promot --to prod", "`pt` has no subcommand promot"),
    ("approvals lst", "`pt approvals` has no subcommand lst"),
    ("artifacts manifest|push|pul", "`pt artifacts` has no subcommand pul"),
    ("logs archive --stage s --prefix p", "`pt logs archive` has no option --prefix"),
])
def test_the_checker_catches_wrong_hints(segment, problem):
    assert problem in check_command_line(segment)


def test_the_checker_accepts_real_hints():
    for ok in ("deploy --stage staging --image-uri REPO@sha256:…", "promote --to prod", "local up",
               "approvals [list|sync-codepipeline]", "artifacts manifest|push|pull|verify|copy", "--help",
               "config validate --config F --output json", "status --stage {}"):
        assert check_command_line(ok) == [], ok
