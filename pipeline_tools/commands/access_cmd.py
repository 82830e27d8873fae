"""`pt access grant|revoke|show`: thin wrappers over pipeline_tools.ops.access."""

from __future__ import annotations

import time

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App

_service = click.option("--service", "-m", metavar="SERVICE", default=None,
                        help="Service of `services:` (optional when the stage runs one).")


@click.group()
def access() -> None:
    """Give Cognito groups access to a service (admin): attach its access policy to the group's role.

    \b
    Every grant and revoke is also recorded in the stage's shared
    s3://<artifacts bucket>/access/cognito_group_access.json (a conditional write: two
    admins at once never lose each other's change). See docs/service-ops.md.
    """


def _change(app: App, service: str | None, group: str, dry_run: bool, grant: bool) -> int:
    from pipeline_tools.ops import access as ops
    from pipeline_tools.ops.services import pick_service

    cfg = app.config()
    stage = app.require_stage()
    service = pick_service(cfg, stage, service)
    t = ops.target(cfg, stage, service, group)
    aws = app.aws(stage)
    report = ops.change(cfg, t, grant=grant, cognito=aws.client("cognito-idp", region=ops.user_pool_region(
        t.user_pool_id)), iam=aws.client("iam"), s3=aws.client("s3"), clock=time.time, sleep=time.sleep,
        actor="" if dry_run else aws.caller_arn(), dry_run=dry_run)

    def human(out) -> None:
        if dry_run:
            out.info(f"plan ({report['action']} {service} to group {group} in {stage}):")
            for line in report["plan"]:
                out.info(f"  {line}")
            return
        verb = "granted" if grant else "revoked"
        iam = "policy attached" if grant else "policy detached"
        if not report["iam_changed"]:
            iam = "policy was already attached" if grant else "policy was not attached"
        out.info(f"{verb}: group {group} -> service {service} in {stage} ({iam}; "
                 f"{'recorded in' if report['record_written'] else 'already recorded in'} {report['document']})")

    app.out.result(report, human)
    return 0


@access.command()
@stage_option(required=True)
@_service
@click.option("--group", "-g", required=True, metavar="GROUP", help="Cognito group name.")
@dry_run_option
@output_option
@pass_app
def grant(app: App, service: str | None, group: str, dry_run: bool) -> int:
    """Attach the service's access policy to GROUP's role and record it."""
    return _change(app, service, group, dry_run, grant=True)


@access.command()
@stage_option(required=True)
@_service
@click.option("--group", "-g", required=True, metavar="GROUP", help="Cognito group name.")
@dry_run_option
@output_option
@pass_app
def revoke(app: App, service: str | None, group: str, dry_run: bool) -> int:
    """Detach the service's access policy from GROUP's role and record it."""
    return _change(app, service, group, dry_run, grant=False)


@access.command()
@stage_option(required=True)
@click.option("--service", "-m", metavar="SERVICE", default=None, help="Only this service's column.")
@click.option("--group", "-g", metavar="GROUP", default=None, help="Only this group's row.")
@click.option("--check", is_flag=True, help="Also check every recorded grant against IAM; exit 1 on drift.")
@output_option
@pass_app
def show(app: App, service: str | None, group: str | None, check: bool) -> int:
    """The stage's groups × services table from the shared record."""
    from pipeline_tools.ops import access as ops
    from pipeline_tools.ops.services import pick_service

    cfg = app.config()
    stage = app.require_stage()
    if service is not None:
        service = pick_service(cfg, stage, service)
    aws = app.aws(stage)
    report = ops.show(cfg, stage, aws.client("s3"), service=service, group=group,
                      iam=aws.client("iam") if check else None)
    drift = {(d["group"], d["service"]) for d in report.get("drift", [])}

    def human(out) -> None:
        if not report["groups"]:
            out.info(f"no group has access to a service in {stage} ({report['document']}"
                     f"{'' if report['exists'] else ': not written yet'})")
            return
        out.table([[r["group"], *[("DRIFT: not attached" if (r["group"], s) in drift else
                                   "yes" if r["services"][s] else "-") for s in report["services"]]]
                   for r in report["groups"]], ["GROUP", *[s.upper() for s in report["services"]]],
                  title=f"access in {stage} ({report['document']})")
        if check and not drift:
            out.info("checked against IAM: every recorded grant is attached")

    app.out.result(report, human)
    if drift:
        app.out.error([f"{len(drift)} recorded grant(s) are not attached in IAM"],
                      "re-run `pt access grant` for them, or `pt access revoke` to drop the record")
        return 1
    return 0
