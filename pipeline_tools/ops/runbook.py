"""`pt runbook`: a checklist whose every step leaves evidence in the ledger.

A checklist is YAML:

    name: vendor-validation            # required
    title: Vendor model validation     # optional
    vars: {inputs: ./synthetic}        # optional; `pt runbook start --var k=v` overrides
    steps:
      - id: checksums                  # required, unique
        title: Checksums of the inputs
        run: "pt artifacts manifest {inputs}"   # a pt command: pt runs it, output = evidence
      - id: sign-off
        title: Vendor signs off
        manual: true                   # needs `--evidence FILE|TEXT`, records the actor

`{stage}`, `{runbook}` and the vars are substituted in `run:` lines.

State is one ledger record (kind "runbook", in the stage's partition) plus one event per
attempt, so everyone with ledger access sees the same progress. Steps are done in order.
Evidence: the full text (or file) is hashed (SHA-256); an excerpt is kept in the ledger.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.core.errors import PtError, UsageError
from pipeline_tools.release.ledger import Ledger, Record, iso

RUNBOOK = "runbook"
EXCERPT = 4000  # characters of evidence kept in the ledger (the hash covers all of it)
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VAR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class StepFailed(PtError):
    """A `run:` step exited non-zero; its output is recorded as evidence of the failed attempt."""


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    run: str | None = None
    manual: bool = False

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "run": self.run, "manual": self.manual}


@dataclass(frozen=True)
class Checklist:
    name: str
    title: str
    steps: tuple[Step, ...]
    vars: dict[str, str]
    file: str
    sha256: str


def load_checklist(path: str) -> Checklist:
    """Parse and validate a checklist file; every problem is one `FILE: where: what` line."""
    import yaml

    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read checklist {path}: {e.strerror or e}", "pass an existing YAML file") from None
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None

    def bad(where: str, what: str) -> UsageError:
        return UsageError(f"{path}: {where}: {what}", "see docs/records.md (runbook checklist format)")

    if not isinstance(doc, dict):
        raise bad("top level", "must be a mapping with `name` and `steps`")
    name = doc.get("name")
    if not isinstance(name, str) or not _ID_RE.match(name):
        raise bad("name", "required: letters, digits, '-', '_', '.'")
    vars_ = doc.get("vars") or {}
    if not isinstance(vars_, dict) or not all(isinstance(k, str) for k in vars_):
        raise bad("vars", "must be a mapping of names to values")
    steps_raw = doc.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise bad("steps", "required: a non-empty list")
    steps: list[Step] = []
    seen: set[str] = set()
    for i, s in enumerate(steps_raw):
        where = f"steps[{i}]"
        if not isinstance(s, dict):
            raise bad(where, "must be a mapping with id, title and run or manual")
        sid = s.get("id")
        if not isinstance(sid, str) or not _ID_RE.match(sid):
            raise bad(f"{where}.id", "required: letters, digits, '-', '_', '.'")
        if sid in seen:
            raise bad(f"{where}.id", f"duplicate step id {sid!r}")
        seen.add(sid)
        run, manual = s.get("run"), s.get("manual", False)
        if (run is None) == (manual is not True):
            raise bad(where, f"step {sid!r} needs exactly one of `run: \"pt …\"` or `manual: true`")
        if run is not None:
            if not isinstance(run, str):
                raise bad(f"{where}.run", "must be a string")
            try:
                argv = shlex.split(run)
            except ValueError as e:
                raise bad(f"{where}.run", f"cannot split the command line ({e})") from None
            if not argv or argv[0] != "pt":
                raise bad(f"{where}.run", f"only pt commands run from a checklist (got {run!r})")
        unknown = s.keys() - {"id", "title", "run", "manual"}
        if unknown:
            raise bad(where, f"unknown key(s) {', '.join(sorted(unknown))}")
        steps.append(Step(sid, str(s.get("title") or sid), run, bool(manual)))
    return Checklist(name, str(doc.get("title") or name), tuple(steps), {k: str(v) for k, v in vars_.items()},
                     str(p), hashlib.sha256(raw).hexdigest())


# --- evidence -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    source: str        # "file" | "text" | "command"
    name: str | None   # the file name for "file"
    sha256: str
    size: int
    excerpt: str

    @classmethod
    def of_bytes(cls, source: str, data: bytes, name: str | None = None) -> Evidence:
        text = data.decode("utf-8", errors="replace")
        return cls(source, name, hashlib.sha256(data).hexdigest(), len(data),
                   text if len(text) <= EXCERPT else text[:EXCERPT // 2] + "\n…\n" + text[-EXCERPT // 2:])

    @classmethod
    def from_arg(cls, value: str | None) -> Evidence | None:
        """`--evidence FILE|TEXT`: an existing file is read (and hashed), anything else is text."""
        if value is None:
            return None
        if os.path.isfile(value):
            try:
                return cls.of_bytes("file", Path(value).read_bytes(), os.path.basename(value))
            except OSError as e:
                raise UsageError(f"cannot read evidence file {value}: {e.strerror or e}") from None
        if not value.strip():
            raise UsageError("--evidence is empty", "pass a file, or a sentence saying what was checked")
        return cls.of_bytes("text", value.encode())

    def to_dict(self) -> dict:
        return {"source": self.source, "name": self.name, "sha256": self.sha256, "size": self.size,
                "excerpt": self.excerpt}


# --- running pt -----------------------------------------------------------------------------------

Runner = Callable[[list[str]], tuple[int, str]]


def subprocess_runner(env: Mapping[str, str] | None = None, timeout: float = 3600.0,
                      cwd: str | None = None) -> Runner:
    """Run `pt ARGS` as `python -m pipeline_tools ARGS` (the same pt), output = stdout + stderr."""

    def run(argv: list[str]) -> tuple[int, str]:
        try:
            p = subprocess.run([sys.executable, "-m", "pipeline_tools", *argv[1:]], capture_output=True,
                               text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd,
                               stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or "") if isinstance(e.stdout, str) else ""
            return 124, out + f"\n(timed out after {timeout:g}s)"
        return p.returncode, (p.stdout or "") + (("\n--- stderr ---\n" + p.stderr) if p.stderr else "")

    return run


def command_line(step: dict, variables: Mapping[str, str]) -> list[str]:
    def sub(m: re.Match) -> str:
        if m[1] not in variables:
            raise UsageError(f"step {step['id']}: undefined variable {{{m[1]}}} in {step['run']!r}",
                             "define it under `vars:` in the checklist or pass `pt runbook start --var "
                             f"{m[1]}=VALUE`")
        return variables[m[1]]

    return [_VAR_RE.sub(sub, a) for a in shlex.split(step["run"])]


# --- ledger state ---------------------------------------------------------------------------------


def start(ledger: Ledger, checklist: Checklist, stage: str, *, actor: dict,
          variables: Mapping[str, str] | None = None) -> Record:
    vars_ = {**checklist.vars, **(variables or {}), "stage": stage}
    for s in checklist.steps:  # refuse an undefined {name} now, not halfway through the runbook
        if s.run:
            command_line(s.to_dict(), {**vars_, "runbook": "RUNBOOK_ID"})
    return ledger.put_record(RUNBOOK, stage, {
        "name": checklist.name, "title": checklist.title, "file": checklist.file, "file_sha256": checklist.sha256,
        "steps": [s.to_dict() for s in checklist.steps], "vars": vars_, "results": {}},
        actor=actor, state="running", reason=f"runbook {checklist.name} started")


def load(ledger: Ledger, stage: str, runbook_id: str) -> Record:
    rec = ledger.get(stage, runbook_id)
    if rec is None or rec.kind != RUNBOOK:
        raise UsageError(f"no runbook {runbook_id} in stage {stage}",
                         f"list them with `pt audit export --stage {stage} --kind runbook --format md`")
    return rec


def steps_of(rec: Record) -> list[dict]:
    return list(rec.data.get("steps") or [])


def next_step(rec: Record) -> dict | None:
    results = rec.data.get("results") or {}
    return next((s for s in steps_of(rec) if s["id"] not in results), None)


def done(ledger: Ledger, stage: str, runbook_id: str, step_id: str, *, actor: dict, clock: Callable[[], float],
         evidence: Evidence | None = None, runner: Runner | None = None, note: str | None = None) -> Record:
    """Complete `step_id` (in order): run its pt command, or take the manual step's evidence."""
    rec = load(ledger, stage, runbook_id)
    steps = {s["id"]: s for s in steps_of(rec)}
    if step_id not in steps:
        raise UsageError(f"runbook {runbook_id} has no step {step_id!r}",
                         f"its steps: {', '.join(steps)} (`pt runbook status {runbook_id} --stage {stage}`)")
    results = dict(rec.data.get("results") or {})
    if step_id in results:
        raise UsageError(f"step {step_id} of runbook {runbook_id} is already done "
                         f"(by {results[step_id].get('actor')} at {results[step_id].get('at')})")
    nxt = next_step(rec)
    if nxt is None or nxt["id"] != step_id:
        raise UsageError(f"step {step_id} is out of order: step {nxt['id'] if nxt else '?'} "
                         f"({nxt['title'] if nxt else ''}) comes first",
                         f"`pt runbook next {runbook_id} --stage {stage}` shows what to do now")
    step = steps[step_id]
    who = actor.get("name") or "unknown"
    base = {"step": step_id, "title": step["title"], "actor": who, "actor_arn": actor.get("arn"),
            "declared": actor.get("declared")}
    if step.get("manual"):
        if evidence is None:
            raise UsageError(f"step {step_id} is a manual step: it needs evidence",
                             f"`pt runbook done {runbook_id} {step_id} --stage {stage} --evidence FILE|TEXT`")
        result = {**base, "kind": "manual", "at": iso(clock()), "evidence": evidence.to_dict(), "note": note}
    else:
        if runner is None:
            raise UsageError(f"step {step_id} runs a pt command, but no runner was given")
        argv = command_line(step, {**(rec.data.get("vars") or {}), "runbook": runbook_id})
        started = clock()
        code, output = runner(argv)
        shown = shlex.join(argv)
        ev = Evidence.of_bytes("command", f"$ {shown}\n{output}\n(exit {code})\n".encode())
        result = {**base, "kind": "run", "command": shown, "exit_code": code, "started": iso(started),
                  "at": iso(clock()), "evidence": ev.to_dict(), "note": note}
        if code != 0:
            ledger.append_event(stage, runbook_id, "step-failed", actor=actor, reason=f"{step_id}: exit {code}",
                                data={"failed": {**(rec.data.get("failed") or {}), step_id: result}})
            last = output.strip().splitlines()[-1] if output.strip() else "(no output)"
            raise StepFailed(f"step {step_id} failed: `{shown}` exited {code}: {last}",
                             f"fix the cause and run `pt runbook done {runbook_id} {step_id} --stage {stage}` again")
    # someone may have completed it while the command ran: never overwrite their result
    fresh = load(ledger, stage, runbook_id)
    if step_id in (fresh.data.get("results") or {}):
        other = fresh.data["results"][step_id]
        raise UsageError(f"step {step_id} of runbook {runbook_id} was completed meanwhile by {other.get('actor')} "
                         f"at {other.get('at')}; this attempt is not recorded",
                         f"`pt runbook status {runbook_id} --stage {stage}`")
    results = {**(fresh.data.get("results") or {}), step_id: result}
    rec = ledger.append_event(stage, runbook_id, "step-done", actor=actor, reason=step_id,
                              data={"results": results})
    if next_step(rec) is None:
        rec = ledger.transition(stage, runbook_id, "completed", actor=actor, reason="every step done", current=rec)
    return rec


def report(rec: Record) -> dict:
    results = rec.data.get("results") or {}
    steps = []
    for s in steps_of(rec):
        r = results.get(s["id"])
        ev = (r or {}).get("evidence") or {}
        steps.append({"id": s["id"], "title": s["title"], "kind": "manual" if s.get("manual") else "run",
                      "command": (r or {}).get("command") or s.get("run"), "status": "done" if r else "pending",
                      "actor": (r or {}).get("actor"), "at": (r or {}).get("at"),
                      "exit_code": (r or {}).get("exit_code"), "evidence_sha256": ev.get("sha256"),
                      "evidence_source": ev.get("source"), "evidence_name": ev.get("name"),
                      "evidence_size": ev.get("size"), "note": (r or {}).get("note")})
    failed = [{"step": k, "at": v.get("at"), "actor": v.get("actor"), "exit_code": v.get("exit_code"),
               "evidence_sha256": (v.get("evidence") or {}).get("sha256")}
              for k, v in (rec.data.get("failed") or {}).items()]
    return {"schema": 1, "runbook": rec.id, "stage": rec.stage, "name": rec.data.get("name"),
            "title": rec.data.get("title"), "file": rec.data.get("file"), "file_sha256": rec.data.get("file_sha256"),
            "state": rec.state, "started": iso(rec.created), "started_by": (rec.actor or {}).get("name"),
            "updated": iso(rec.updated), "steps": steps, "failed_attempts": failed}


def render_md(rep: dict) -> str:
    from pipeline_tools.core.output import markdown_table

    done_n = sum(1 for s in rep["steps"] if s["status"] == "done")
    lines = [f"# Runbook {rep['title']} ({rep['name']})", "",
             f"- runbook: `{rep['runbook']}` in stage `{rep['stage']}`, state **{rep['state']}** "
             f"({done_n}/{len(rep['steps'])} steps)",
             f"- started {rep['started']} by {rep['started_by']}; last change {rep['updated']}",
             f"- checklist: `{rep['file']}` (SHA-256 `{rep['file_sha256']}`)", ""]
    lines.append(markdown_table([[s["id"], s["title"], s["status"], s["actor"], s["at"],
                                  f"exit {s['exit_code']}" if s["kind"] == "run" and s["exit_code"] is not None
                                  else s["kind"], s["evidence_sha256"]] for s in rep["steps"]],
                                ["step", "title", "status", "actor", "at", "result", "evidence SHA-256"]))
    if rep["failed_attempts"]:
        lines += ["", "Failed attempts (last per step):", ""]
        lines += [f"- {f['step']}: exit {f['exit_code']} at {f['at']} by {f['actor']} "
                  f"(evidence `{f['evidence_sha256']}`)" for f in rep["failed_attempts"]]
    return "\n".join(lines) + "\n"


def status_rows(rec: Record) -> list[list[Any]]:
    return [[s["id"], s["status"], s["actor"] or "", s["at"] or "", s["title"]] for s in report(rec)["steps"]]
