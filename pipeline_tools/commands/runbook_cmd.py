"""`pt runbook start|status|next|done|report`: thin wrappers over ops/runbook.py."""

from __future__ import annotations

import os
import time

import click

from pipeline_tools.clikit import OutputPath, dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.group()
def runbook() -> None:
    """Run a checklist (YAML) whose every step leaves evidence in the ledger.

    \b
    pt runbook start examples/runbooks/vendor-validation.yml --stage dev --var inputs=./synthetic
    pt runbook next RUNBOOK_ID --stage dev          # what to do now
    pt runbook done RUNBOOK_ID STEP --stage dev     # runs a `run:` step; manual steps need --evidence
    pt runbook report RUNBOOK_ID --stage dev -o validation.md
    Exit codes: 0 ok, 1 a step's command failed, 2 bad input (out of order, no evidence, unknown id).
    """


def _vars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise UsageError(f"--var {p!r} is not NAME=VALUE", "e.g. --var inputs=./synthetic")
        out[k.strip()] = v
    return out


@runbook.command()
@click.argument("checklist", metavar="FILE")
@stage_option(required=True)
@click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE", help="Override a checklist var (repeatable).")
@dry_run_option
@output_option
@pass_app
def start(app: App, checklist: str, var_pairs: tuple[str, ...], dry_run: bool) -> int:
    """Start a runbook from a checklist FILE; prints its id (share it with the team)."""
    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.commands._deploy_common import who as _who
    from pipeline_tools.ops import runbook as rb

    cl = rb.load_checklist(checklist)
    stage = app.stage
    if dry_run:
        app.out.result({"dry_run": True, "name": cl.name, "file_sha256": cl.sha256,
                        "steps": [s.to_dict() for s in cl.steps]},
                       lambda o: o.table([(s.id, "manual" if s.manual else s.run, s.title) for s in cl.steps],
                                         ["step", "does", "title"], title=f"would start {cl.name} in {stage}"))
        return 0
    rec = rb.start(_ledger(app, stage), cl, stage, actor=_who(app, stage), variables=_vars(var_pairs))
    nxt = rb.next_step(rec)

    def human(o):
        o.info(f"runbook {rec.id} started ({cl.name}, {len(cl.steps)} steps) in stage {stage}")
        o.info(f"next: {nxt['id']}: {nxt['title']}  →  pt runbook done {rec.id} {nxt['id']} --stage {stage}")

    app.out.result({"runbook": rec.id, "stage": stage, "name": cl.name, "next": nxt}, human)
    app.out.github_output({"runbook": rec.id})
    return 0


@runbook.command()
@click.argument("runbook_id", metavar="RUNBOOK_ID")
@stage_option(required=True)
@output_option
@pass_app
def status(app: App, runbook_id: str) -> int:
    """Every step: done or pending, by whom, when."""
    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.ops import runbook as rb

    rec = rb.load(_ledger(app, app.stage, create=False), app.stage, runbook_id)
    rep = rb.report(rec)
    app.out.result(rep, lambda o: o.table(rb.status_rows(rec), ["step", "status", "actor", "at", "title"],
                                          title=f"runbook {rec.id} ({rep['name']}): {rec.state}"))
    return 0


@runbook.command("next")
@click.argument("runbook_id", metavar="RUNBOOK_ID")
@stage_option(required=True)
@output_option
@pass_app
def next_(app: App, runbook_id: str) -> int:
    """The step to do now and the exact command that completes it."""
    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.ops import runbook as rb

    stage = app.stage
    rec = rb.load(_ledger(app, stage, create=False), stage, runbook_id)
    nxt = rb.next_step(rec)
    if nxt is None:
        app.out.result({"runbook": rec.id, "next": None, "state": rec.state},
                       f"runbook {rec.id} is {rec.state}: every step is done "
                       f"(`pt runbook report {rec.id} --stage {stage}`)")
        return 0
    how = f"pt runbook done {rec.id} {nxt['id']} --stage {stage}"
    if nxt.get("manual"):
        how += " --evidence FILE|TEXT"

    def human(o):
        o.info(f"next: {nxt['id']}: {nxt['title']}")
        o.info(f"  {'manual step (needs evidence)' if nxt.get('manual') else 'runs: ' + nxt['run']}")
        o.info(f"  complete it with: {how}")

    app.out.result({"runbook": rec.id, "next": nxt, "command": how}, human)
    return 0


@runbook.command()
@click.argument("runbook_id", metavar="RUNBOOK_ID")
@click.argument("step_id", metavar="STEP")
@stage_option(required=True)
@click.option("--evidence", metavar="FILE|TEXT", help="Evidence of a manual step: a file (hashed) or a sentence.")
@click.option("--note", metavar="TEXT", help="A note kept with the step.")
@click.option("--timeout", type=click.IntRange(1, None), default=3600, show_default=True, metavar="SECONDS",
              help="Limit for a `run:` step's command.")
@output_option
@pass_app
def done(app: App, runbook_id: str, step_id: str, evidence: str | None, note: str | None, timeout: int) -> int:
    """Complete STEP: run its pt command (output and exit code = evidence) or record manual evidence."""
    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.commands._deploy_common import who as _who
    from pipeline_tools.ops import runbook as rb

    stage = app.stage
    env = {}
    if app.config_path:
        env["PT_CONFIG"] = os.path.abspath(app.config_path)
    if app.profile:  # the step runs with the same account/region as this command
        env["PT_PROFILE"] = app.profile
    if app.region:
        env["PT_REGION"] = app.region
    rec = rb.done(_ledger(app, stage, create=False), stage, runbook_id, step_id, actor=_who(app, stage),
                  clock=time.time, evidence=rb.Evidence.from_arg(evidence),
                  runner=rb.subprocess_runner(env, timeout=timeout), note=note)
    result = rec.data["results"][step_id]
    nxt = rb.next_step(rec)

    def human(o):
        o.info(f"{step_id} done by {result['actor']} at {result['at']} "
               f"(evidence sha256 {result['evidence']['sha256'][:16]}…)")
        o.info(f"next: {nxt['id']}: {nxt['title']}" if nxt else
               f"runbook {rec.id} completed: `pt runbook report {rec.id} --stage {stage}`")

    app.out.result({"runbook": rec.id, "step": result, "state": rec.state, "next": nxt}, human)
    return 0


@runbook.command()
@click.argument("runbook_id", metavar="RUNBOOK_ID")
@stage_option(required=True)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default=None,
              help="md (default) or json (also chosen by --output json).")
@click.option("-o", "--out", "out_file", type=OutputPath(), default=None, help="Write to FILE.")
@output_option
@pass_app
def report(app: App, runbook_id: str, fmt: str, out_file: str | None) -> int:
    """One document: every step, actor, time and the SHA-256 of its evidence."""
    import json

    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.ops import runbook as rb

    rec = rb.load(_ledger(app, app.stage, create=False), app.stage, runbook_id)
    rep = rb.report(rec)
    md = rb.render_md(rep)
    fmt = fmt or ("json" if app.out.json else "md")
    app.out.document(md if fmt == "md" else json.dumps(rep, indent=2) + "\n", out_file, f"wrote {out_file}")
    app.out.step_summary(md)
    return 0
