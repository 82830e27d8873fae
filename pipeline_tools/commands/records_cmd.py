"""`pt change-record`: thin wrapper over ops/change_record.py."""

from __future__ import annotations

import json
import os
import time

import click

from pipeline_tools.clikit import OutputPath, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.command("change-record")
@stage_option(required=True, help="The stage the change goes to.")
@click.option("--deploy", "deploy_id", metavar="DEPLOY_ID", help="Record of this deploy (see `pt history`).")
@click.option("--next", "next_", is_flag=True, help="Record of the promotion about to happen (the default).")
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default=None,
              help="md (default) or json (also chosen by --output json).")
@click.option("-o", "--out", "out_file", type=OutputPath(), default=None, help="Write to FILE.")
@click.option("--purpose", metavar="TEXT", help="Why (default: the PR title/body on GitHub, else the commit message).")
@click.option("--junit", metavar="FILE", type=click.Path(dir_okay=False),
              help="JUnit XML of the tests (e.g. `pytest --junitxml`): summarised as test evidence.")
@click.option("--repo", "repo_dir", metavar="DIR", default=".", show_default=True,
              help="Git checkout with the history between the running and the new revision.")
@pass_app
def change_record(app: App, deploy_id: str | None, next_: bool, fmt: str, out_file: str | None,
                  purpose: str | None, junit: str | None, repo_dir: str) -> int:
    """The change record of a deploy, or of the next promotion to a stage.

    Purpose, commits with authors and links, expected end state, deploy window, dashboards,
    alarms with thresholds (rollback conditions), the exact rollback command, approvals and
    two-person status, test evidence. Under GitHub Actions it is also added to the step summary.
    Exit codes: 0 written, 2 bad input (e.g. no such deploy).
    """
    from pipeline_tools.commands._deploy_common import ledger as _ledger
    from pipeline_tools.ops import change_record as cr

    if deploy_id and next_:
        raise UsageError("pass either --deploy ID or --next, not both", "`pt history --stage S` lists deploy ids")
    stage = app.stage
    fmt = fmt or ("json" if app.out.json else "md")
    cfg = app.config()
    led = _ledger(app, stage, create=False)
    src = cfg.stages[stage].promote_from
    if not deploy_id and not src:
        raise UsageError(f"stage {stage} has no promote_from: there is no promotion to describe",
                         f"describe a deploy instead: `pt change-record --stage {stage} --deploy ID` "
                         f"(`pt history --stage {stage}` lists them)")
    cw = app.aws(stage).client("cloudwatch")
    doc = cr.build(cfg, stage, ledger=led, cloudwatch=cw, clock=time.time, deploy_id=deploy_id,
                   purpose_text=purpose, junit=junit, env=os.environ, git=cr.git_in(repo_dir))
    md = cr.render_md(doc)
    app.out.document(md if fmt == "md" else json.dumps(doc, indent=2) + "\n", out_file,
                     f"wrote change record to {out_file}")
    app.out.step_summary(md)
    for problem in (doc["diff"]["error"], doc["alarms"]["error"]):
        if problem:
            app.out.warn(problem)
    return 0
