"""A state machine's definition from the repository (pure: no AWS, no config models).

`targets.stepfunctions.<name>.definition` is Amazon States Language JSON with `${Name}`
placeholders (the syntax of CloudFormation's DefinitionSubstitutions). A deploy substitutes them
from `substitutions` (`function:<key>` → that function's `live` alias ARN, anything else as
written), parses the result and hashes its canonical form: that hash is the "digest" of a
state-machine version, so an unchanged definition is not published again.

Every problem is a `DefinitionError` that renders as one line `FILE:LINE[:COL]: message`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\$\{([^}\n]*)\}")
FUNCTION_PREFIX = "function:"
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


class DefinitionError(ValueError):
    def __init__(self, shown: str, message: str, line: int | None = None, col: int | None = None):
        self.shown, self.message, self.line, self.col = shown, message, line, col
        where = shown + (f":{line}" if line else "") + (f":{col}" if line and col else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Placeholder:
    name: str
    line: int
    col: int


@dataclass(frozen=True)
class Rendered:
    definition: str      # canonical JSON sent to Step Functions
    digest: str          # sha256:<hex> of `definition`


def read(path: Path, shown: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DefinitionError(shown, "no such file (targets.stepfunctions.*.definition is relative to "
                                     "pipeline.yml)") from None
    except IsADirectoryError:
        raise DefinitionError(shown, "is a directory, expected a JSON file") from None
    except OSError as e:
        raise DefinitionError(shown, f"cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DefinitionError(shown, "not UTF-8 text", raw[: e.start].count(b"\n") + 1) from None


def placeholders(text: str) -> list[Placeholder]:
    out = []
    for m in PLACEHOLDER.finditer(text):
        before = text[: m.start()]
        out.append(Placeholder(m[1], before.count("\n") + 1, m.start() - (before.rfind("\n") + 1) + 1))
    return out


def parse_json(text: str, shown: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DefinitionError(shown, f"invalid JSON: {e.msg}", e.lineno, e.colno) from None


def check_asl(doc: Any, shown: str) -> None:
    """The shape every state machine needs (Step Functions checks the rest when it is published)."""
    if not isinstance(doc, dict):
        raise DefinitionError(shown, "top level must be a JSON object with StartAt and States", 1)
    states = doc.get("States")
    if not isinstance(states, dict) or not states:
        raise DefinitionError(shown, "needs a non-empty `States` object", 1)
    start = doc.get("StartAt")
    if not isinstance(start, str) or start not in states:
        raise DefinitionError(shown, f"`StartAt` must name one of the states ({', '.join(states)}); got {start!r}", 1)


def check(text: str, shown: str, substitutions: Mapping[str, str]) -> list[str]:
    """Every problem of a definition file against its substitutions, one line each (config check).

    Placeholders are replaced by digits of the same length first (valid inside a string and as a
    bare number, as CloudFormation allows), so JSON errors point at the file as written.
    """
    problems: list[str] = []
    for p in placeholders(text):
        if p.name not in substitutions:
            known = ", ".join(sorted(substitutions)) or "none"
            problems.append(str(DefinitionError(shown, f"unknown substitution ${{{p.name}}} "
                                                       f"(targets.stepfunctions.*.substitutions: {known})",
                                                p.line, p.col)))
    stand_in = _stand_in(text)
    try:
        check_asl(parse_json(stand_in, shown), shown)
    except DefinitionError as e:
        problems.append(str(e))
    return problems


def resolve(substitutions: Mapping[str, str], function_arn: Callable[[str], str]) -> dict[str, str]:
    """`function:<key>` → function_arn(key); other values unchanged."""
    return {k: function_arn(v[len(FUNCTION_PREFIX):]) if v.startswith(FUNCTION_PREFIX) else v
            for k, v in substitutions.items()}


def substitute(text: str, values: Mapping[str, str], shown: str) -> str:
    for p in placeholders(text):
        if p.name not in values:
            raise DefinitionError(shown, f"unknown substitution ${{{p.name}}} (known: "
                                         f"{', '.join(sorted(values)) or 'none'})", p.line, p.col)
    return PLACEHOLDER.sub(lambda m: values[m[1]], text)


def canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_of(definition: str) -> str:
    """sha256 of a definition's canonical form (any JSON text of the same document gives the same)."""
    return "sha256:" + hashlib.sha256(canonical(json.loads(definition)).encode()).hexdigest()


def _stand_in(text: str) -> str:
    return PLACEHOLDER.sub(lambda m: "1" * len(m[0]), text)


def render(text: str, values: Mapping[str, str], shown: str) -> Rendered:
    parse_json(_stand_in(text), shown)  # JSON errors as written, with line and column
    substituted = substitute(text, values, shown)
    try:
        doc = json.loads(substituted)
    except json.JSONDecodeError as e:
        # Valid before substitution, invalid after: a value broke the JSON (e.g. a quote in it).
        raise DefinitionError(shown, f"invalid JSON after substitution: {e.msg} (check values with quotes "
                                     "or backslashes in targets.stepfunctions.*.substitutions)") from None
    check_asl(doc, shown)
    text_out = canonical(doc)
    return Rendered(text_out, "sha256:" + hashlib.sha256(text_out.encode()).hexdigest())
