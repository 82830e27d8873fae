"""`pt params push|diff|show`: a service's hyperparameter file kept in SSM Parameter Store.

The file (YAML or JSON, `services.<m>.parameters` or `--file`) is a mapping; nested mappings
flatten into a path: `{train: {lr: 0.01}}` is `/pt/<service>/<stage>/train/lr`. A value is
stored as its text when it is a string and as compact JSON otherwise (`0.01`, `true`,
`[1, 2]`), so readers get exactly what the file says. SSM keeps a version of every parameter
(each push that changes it adds one).

Every push diffs first (added / changed / removed, reading the whole prefix with paginated
GetParametersByPath, 10 parameters a call) and writes only what differs; parameters that are no
longer in the file are deleted only with `--prune` (a deleted parameter loses its history).

Secrets are refused in plain text (exit 2, nothing written): a string under a key named like
a secret (password, passwd, secret, token, api_key, private_key, access_key, credential(s)) or a
value that `ops/detectors.py` recognizes as a credential (JWT, AWS access key id, AWS secret
key). Either mark the key with `--secure KEY` (stored as a SecureString) or put a reference
`ssm:/path/of/a/SecureString` in the file instead. SecureString values are never printed.

Pure functions (load, flatten, check, diff) are kept apart from the two that call SSM.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.core.errors import PtError, UsageError

MAX_VALUE = 4096          # Standard tier
MAX_LEVELS = 15           # SSM hierarchy depth, the /pt/<service>/<stage> prefix included
MAX_NAME = 1011           # full name, ARN included
REFERENCE = "ssm:"
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_SECRET_WORDS = {"password", "passwd", "pwd", "secret", "secrets", "token", "apikey", "credential", "credentials",
                 "privatekey", "accesskey", "secretkey", "clientsecret"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("client", "secret")}
_CREDENTIAL_KINDS = {"jwt", "aws_access_key_id", "aws_secret_access_key"}
MASK = "(secure)"


@dataclass(frozen=True)
class Param:
    key: str          # relative to the prefix: train/lr
    value: str
    secure: bool = False

    @property
    def type(self) -> str:
        return "SecureString" if self.secure else "String"


@dataclass(frozen=True)
class Current:
    key: str
    value: str
    type: str
    version: int

    @property
    def secure(self) -> bool:
        return self.type == "SecureString"


@dataclass
class Diff:
    added: list[Param] = field(default_factory=list)
    changed: list[tuple[Current, Param]] = field(default_factory=list)
    removed: list[Current] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def to_dict(self) -> dict:
        def show(value: str, secure: bool) -> str:
            return MASK if secure else value

        return {"added": [{"key": p.key, "value": show(p.value, p.secure), "type": p.type} for p in self.added],
                "changed": [{"key": n.key, "old": show(o.value, o.secure), "new": show(n.value, n.secure),
                             "old_type": o.type, "type": n.type, "version": o.version} for o, n in self.changed],
                "removed": [{"key": c.key, "value": show(c.value, c.secure), "version": c.version}
                            for c in self.removed],
                "unchanged": len(self.unchanged)}

    def lines(self) -> list[str]:
        return report_lines(self.to_dict())


def report_lines(d: dict) -> list[str]:
    """`+ key = value`, `~ key: old -> new`, `- key` lines of a diff report (values already masked)."""
    return ([f"+ {a['key']} = {a['value']}" for a in d["added"]]
            + [f"~ {c['key']}: {c['old']} -> {c['new']}" + (f" ({c['old_type']} -> {c['type']})"
                                                            if c["old_type"] != c["type"] else "")
               for c in d["changed"]]
            + [f"- {r['key']} (was {r['value']}, v{r['version']})" for r in d["removed"]])


# --- the file (pure apart from reading it) -------------------------------------------------------


def load_file(path: str | Path) -> tuple[dict, dict[tuple, int]]:
    """(data, lines) of the hyperparameter file; any problem is one `file:line: …` line (exit 2)."""
    import yaml

    from pipeline_tools.core.yamlmarks import load_with_lines

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{p}: hyperparameter file not found",
                         "pass --file FILE or fix services.<m>.parameters in pipeline.yml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{p}: cannot read ({getattr(e, 'strerror', None) or e})",
                         "save it as UTF-8 YAML or JSON") from None
    try:
        loaded = load_with_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = (getattr(e, "problem", None) or str(e).splitlines()[0]).strip()
        raise UsageError(f"{p}:{line}: invalid YAML/JSON: {problem}", "fix the syntax") from None
    if loaded.problems:
        pr = loaded.problems[0]
        raise UsageError(f"{p}:{pr.line}: {pr.message}", "fix the file")
    if not isinstance(loaded.data, dict) or not loaded.data:
        raise UsageError(f"{p}:1: expected a mapping of hyperparameters (key: value)",
                         "e.g. learning_rate: 0.01")
    return loaded.data, loaded.lines


def flatten(data: dict, _path: tuple = ()) -> dict[tuple, Any]:
    """Nested mappings → {path tuple: leaf}; lists and scalars are leaves (pure)."""
    out: dict[tuple, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, _path + (k,)))
        else:
            out[_path + (k,)] = v
    return out


def render(value: Any) -> str:
    """The stored text of a leaf: strings as they are, everything else as compact JSON (pure)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def secret_key(key: str) -> bool:
    """Does the last segment of `key` name a secret? (`db_password`, `apiKey`; not `max_tokens`)."""
    last = key.rsplit("/", 1)[-1]
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", last)]
    if any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS:
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def credential_kinds(key: str, value: str) -> list[str]:
    """Credential detectors that fire on `key: value` (the key gives the AWS secret key its context)."""
    from pipeline_tools.ops.detectors import find

    return sorted({h.kind for h in find(f"{key}: {value}") if h.kind in _CREDENTIAL_KINDS})


def build(data: dict, lines: dict[tuple, int], where: str, prefix: str, *, secure: Iterable[str] = (),
          arn_prefix: str = "") -> dict[str, Param]:
    """The parameters the file asks for, checked (pure). Every refusal is one `file:line:` line."""
    flat = flatten(data)
    secure = set(secure)
    keys = {"/".join(str(s) for s in path) for path in flat}
    unknown = sorted(secure - keys)
    if unknown:
        raise UsageError(f"--secure {unknown[0]}: no such key in {where}",
                         f"keys are paths like {sorted(keys)[0]} (nested keys joined with /)")
    out: dict[str, Param] = {}
    for path, leaf in flat.items():
        key = "/".join(str(s) for s in path)
        at = f"{where}:{lines.get(path) or lines.get(path[:-1]) or 1}"
        for seg in path:
            if not _SEGMENT.match(str(seg)):
                raise UsageError(f"{at}: key '{seg}': SSM names allow only letters, digits and _ . -",
                                 "rename the key")
        if len(path) + prefix.strip("/").count("/") + 1 > MAX_LEVELS:
            raise UsageError(f"{at}: key '{key}' nests deeper than SSM's {MAX_LEVELS} levels", "flatten the file")
        if len(arn_prefix + prefix + key) > MAX_NAME:
            raise UsageError(f"{at}: key '{key}' makes a parameter name longer than SSM's {MAX_NAME} characters",
                             "shorten the key")
        if leaf is None or leaf == "" or leaf == {}:
            raise UsageError(f"{at}: key '{key}' has no value (SSM cannot store an empty value)",
                             "give it a value or remove the key")
        value = render(leaf)
        if len(value.encode()) > MAX_VALUE:
            raise UsageError(f"{at}: value of '{key}' is {len(value.encode())} bytes; SSM's standard tier "
                             f"holds {MAX_VALUE}", "keep large values in the service bucket and store their key")
        is_secure = key in secure
        if not is_secure and not value.startswith(REFERENCE):
            kinds = credential_kinds(key, value)
            if kinds or (isinstance(leaf, str) and secret_key(key)):
                what = f"a {kinds[0].replace('_', ' ')}" if kinds else "a secret (by its name)"
                raise UsageError(f"{at}: '{key}' looks like {what} in plain text; refusing to store it",
                                 f"store it as a SecureString with --secure {key}, or put a reference "
                                 f"'{REFERENCE}/path/of/a/SecureString' in the file")
        out[key] = Param(key, value, is_secure)
    return out


def diff(desired: dict[str, Param], current: dict[str, Current]) -> Diff:
    """What a push changes (pure). A value or a String/SecureString change is a change."""
    d = Diff()
    for key in sorted(desired):
        p = desired[key]
        c = current.get(key)
        if c is None:
            d.added.append(p)
        elif c.value != p.value or c.secure != p.secure:
            d.changed.append((c, p))
        else:
            d.unchanged.append(key)
    d.removed = [current[k] for k in sorted(current) if k not in desired]
    return d


# --- SSM -----------------------------------------------------------------------------------------


def read_current(ssm, prefix: str) -> dict[str, Current]:
    """Every parameter under the prefix (decrypted, for comparison only; never printed)."""
    out: dict[str, Current] = {}
    pages = ssm.get_paginator("get_parameters_by_path").paginate(
        Path=prefix.rstrip("/"), Recursive=True, WithDecryption=True, PaginationConfig={"PageSize": 10})
    for page in pages:
        for prm in page.get("Parameters", []):
            key = prm["Name"][len(prefix):] if prm["Name"].startswith(prefix) else prm["Name"]
            out[key] = Current(key, prm.get("Value", ""), prm.get("Type", "String"), int(prm.get("Version", 0)))
    return out


def push(ssm, prefix: str, desired: dict[str, Param], *, dry_run: bool = False, prune: bool = False,
         description: str = "") -> dict:
    current = read_current(ssm, prefix)
    d = diff(desired, current)
    report: dict[str, Any] = {"prefix": prefix, "dry_run": dry_run, "prune": prune, **d.to_dict(),
                              "written": [], "deleted": []}
    if dry_run:
        return report
    for p in [*d.added, *(n for _o, n in d.changed)]:
        kw: dict[str, Any] = {"Description": description[:1024]} if description else {}
        try:
            resp = ssm.put_parameter(Name=prefix + p.key, Value=p.value, Type=p.type, Overwrite=True, **kw)
        except Exception as e:
            from pipeline_tools.core.errors import translate

            err = translate(e) or PtError(str(e))
            raise PtError(f"writing {prefix + p.key} failed after {len(report['written'])} write(s): {err.message}",
                          "re-run `pt params push` (it writes only what still differs)") from None
        report["written"].append({"key": p.key, "version": int(resp.get("Version", 0))})
    if prune and d.removed:
        names = [prefix + c.key for c in d.removed]
        for i in range(0, len(names), 10):
            resp = ssm.delete_parameters(Names=names[i:i + 10])
            report["deleted"] += [n[len(prefix):] for n in resp.get("DeletedParameters", [])]
    return report


def show(ssm, prefix: str) -> dict:
    current = read_current(ssm, prefix)
    return {"prefix": prefix, "parameters": [
        {"key": c.key, "value": MASK if c.secure else c.value, "type": c.type, "version": c.version}
        for c in sorted(current.values(), key=lambda c: c.key)]}
