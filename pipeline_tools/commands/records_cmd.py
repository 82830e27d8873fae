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
@click.option("--publish", is_flag=True,
              help="Also write it to the stage bucket (change-records/<stage>/<deploy or next>.md|json and "
                   "latest.md, which the pipeline's approval links to) and print its console URL.")
@pass_app
def change_record(app: App, deploy_id: str | None, next_: bool, fmt: str, out_file: str | None,
                  purpose: str | None, junit: str | None, repo_dir: str, publish: bool = False) -> int:
    """The change record of a deploy, or of the next promotion to a stage.

    Purpose, commits with authors and links, expected end state, deploy window, dashboards,
    alarms with thresholds (rollback conditions), the exact rollback command, approvals and
    two-person status, test evidence. Under GitHub Actions it is also added to the step summary.
    Exit codes: 0 written, 2 bad input (e.g. no such deploy).
    """
    from pipeline_tools.commands.deploy_cmd import _ledger
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
    repos = None
    if len(cfg.change_record.repos) > 1:
        repos = [(r.name, cr.git_in(str(cfg.base_dir / r.path))) for r in cfg.change_record.repos]
    doc = cr.build(cfg, stage, ledger=led, cloudwatch=cw, clock=time.time, deploy_id=deploy_id,
                   purpose_text=purpose, junit=junit, env=os.environ, git=cr.git_in(repo_dir), repos=repos)
    md = cr.render_md(doc)
    app.out.document(md if fmt == "md" else json.dumps(doc, indent=2) + "\n", out_file,
                     f"wrote change record to {out_file}")
    if publish:
        where = cr.publish(app.aws(stage).client("s3"), cfg, stage, doc, md)
        app.out.log(f"published s3://{where['bucket']}/{where['keys'][0]}: {where['url']}")
        app.out.github_output({"change_record_url": where["url"], "change_record_latest_url": where["latest_url"]})
        md = f"[Change record in S3]({where['url']})\n\n" + md
    app.out.step_summary(md)
    for problem in (doc["diff"]["error"], doc["alarms"]["error"]):
        if problem:
            app.out.warn(problem)
    return 0


def history_records(app: App, stage: str, *, kinds: tuple[str, ...], since: str | None, until: str | None,
                    limit: int, next_token: str | None, client, table: str) -> int:
    """`pt history` with --kind/--since/--until/--next: every record kind (ops/records.history_page)."""
    from pipeline_tools.ops import records

    now = time.time()
    want = () if "all" in kinds else kinds
    rows, token = records.history_page(client, table, stage, kinds=want,
                                       since=records.parse_when(since, now, "--since"),
                                       until=records.parse_when(until, now, "--until", end_of_day=True),
                                       limit=limit, next_token=next_token,
                                       on_corrupt=lambda e: app.out.warn(f"skipped: {e.message}"))

    def human(o) -> None:
        o.table([(r["created"], r["kind"], r["id"], r["state"] or "", r["actor"] or "",
                  (r["digest"] or "")[:19], r["what"][:60], (r["reason"] or "")[:60]) for r in rows],
                ["created", "kind", "id", "state", "actor", "digest", "what", "reason"])
        if token:
            again = " ".join([f"pt history --stage {stage} -n {limit}", *(f"--kind {k}" for k in kinds),
                              *([f"--since {since}"] if since else []), *([f"--until {until}"] if until else [])])
            o.info(f"more: {again} --next {token}")

    app.out.result({"stage": stage, "kinds": list(want), "records": rows, "next": token}, human)
    return 0
