"""`pt teardown`."""

from __future__ import annotations

import sys
import time

import click

from pipeline_tools.clikit import OutputPath, dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.command()
@stage_option(required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (required when stdin is not a TTY).")
@click.option("--purge-ledger", is_flag=True, help="Also delete the stage's records in the ledger table.")
@click.option("--archive-to", metavar="s3://BUCKET/PREFIX",
              help="Archive the log groups here first; the evidence report is stored next to them.")
@click.option("--evidence-dir", default="reports", show_default=True, type=OutputPath(directory=True),
              help="Local directory for the evidence report (JSON + markdown).")
@dry_run_option
@output_option
@pass_app
def teardown(app: App, yes: bool, purge_ledger: bool, archive_to: str | None, evidence_dir: str,
             dry_run: bool) -> int:
    """Delete what a stage owns, in order, with an evidence report (refuses protected stages)."""
    from pipeline_tools.ops import teardown as ops

    cfg = app.config()
    stage = app.require_stage()
    ops.check_allowed(cfg, stage)
    if not (yes or dry_run):
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to tear down stage '{stage}' without --yes (stdin is not a terminal)",
                             "pass --yes, or --dry-run to see the plan")
        typed = click.prompt(f"This deletes everything stage '{stage}' owns. Type the stage name to confirm",
                             default="", show_default=False, err=True)
        if typed.strip() != stage:
            raise UsageError("teardown not confirmed", "type the stage name exactly, or pass --yes")
    aws = app.aws(stage)
    clients = ops.Clients(lambda_client=aws.client("lambda"), s3=aws.client("s3"), ecr=aws.client("ecr"),
                          logs=aws.client("logs"), cloudformation=aws.client("cloudformation"),
                          dynamodb=app.ledger_aws(stage).client("dynamodb"), cloudwatch=aws.client("cloudwatch"),
                          sns=aws.client("sns"), apigateway=aws.client("apigateway"),
                          stepfunctions=aws.client("stepfunctions"), scheduler=aws.client("scheduler"),
                          sagemaker=aws.client("sagemaker"), iam=aws.client("iam"), ssm=aws.client("ssm"),
                          ec2=aws.client("ec2") if ops.ec2_spec(cfg, stage) else None)
    actor = None
    if not (dry_run or purge_ledger):  # who tore it down, for the `teardown` ledger record
        from pipeline_tools.commands.deploy_cmd import _who

        try:
            actor = _who(app, stage)
        except Exception as e:
            app.out.warn(f"teardown record without an actor: {e}")
    ev = ops.teardown(cfg, stage, clients, clock=time.time, sleep=time.sleep, dry_run=dry_run,
                      purge_ledger=purge_ledger, archive_to=archive_to, evidence_dir=evidence_dir, actor=actor)

    def human(out) -> None:
        out.table([(a.step, a.resource_type, a.resource, a.result, a.detail) for a in ev.actions],
                  ["step", "type", "resource", "result", "detail"],
                  title=("plan (dry run) " if dry_run else "") + f"teardown of {cfg.project} stage {stage}")
        for k in ev.kept:
            out.info(f"kept {k['type']} {k['name']}: {k['why']}")
        if ev.remaining:
            out.info("still present: " + ", ".join(f"{r['type']} {r['name']}" for r in ev.remaining))
        verdict = ("dry run: nothing deleted" if dry_run else
                   "done: nothing the stage owned remains" if ev.ok else
                   f"INCOMPLETE: {len(ev.failed)} failed action(s); re-run `pt teardown` to finish")
        out.info(verdict)
        out.info("evidence: " + ", ".join(ev.files))

    app.out.result(ev.to_dict(), human)
    app.out.github_output({"teardown_ok": str(ev.ok).lower(), "evidence": ev.files[0] if ev.files else ""})
    app.out.step_summary(ev.markdown())
    return 0 if (ev.ok or dry_run) else 1
