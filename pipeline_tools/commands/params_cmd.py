"""`pt params push|diff|show`: thin wrappers over pipeline_tools.ops.params."""

from __future__ import annotations

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App

_service = click.option("--service", "-m", metavar="SERVICE", default=None,
                        help="Service of `services:` (optional when the stage runs one).")
_file = click.option("--file", "-f", "file_", metavar="FILE", default=None,
                     help="Hyperparameter file (default: services.<m>.parameters, relative to pipeline.yml).")
_secure = click.option("--secure", "secure", metavar="KEY", multiple=True,
                       help="Store KEY (a path such as db/password) as a SecureString. Repeatable.")


@click.group()
def params() -> None:
    """A service's hyperparameters in SSM Parameter Store under /pt/<service>/<stage>/.

    \b
    `diff` exits 0 when SSM matches the file and 1 when it differs (like diff(1)).
    Secrets in plain text are refused: use --secure KEY or an `ssm:` reference.
    See docs/service-ops.md.
    """


def _desired(app: App, service: str | None, file_: str | None, secure: tuple[str, ...]):
    from pathlib import Path

    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.ops import params as ops
    from pipeline_tools.ops.services import partition, pick_service

    cfg = app.config()
    stage = app.require_stage()
    service = pick_service(cfg, stage, service)
    rel = file_ or cfg.services[service].parameters
    if not rel:
        raise UsageError(f"services.{service}.parameters is not set and no --file was given",
                         f"pass --file FILE or set services.{service}.parameters in pipeline.yml")
    path = Path(rel) if file_ else cfg.base_dir / rel
    data, lines = ops.load_file(path)
    prefix = cfg.params_path(service, stage)
    region = cfg.stage_region(stage)
    arn = f"arn:{partition(region)}:ssm:{region}:{cfg.stages[stage].account}:parameter"
    desired = ops.build(data, lines, str(rel), prefix, secure=secure, arn_prefix=arn)
    return stage, service, prefix, str(rel), desired


def _render_diff(out, report: dict, head: str) -> None:
    from pipeline_tools.ops.params import report_lines

    out.info(f"{head}: {len(report['added'])} added, {len(report['changed'])} changed, "
             f"{len(report['removed'])} removed, {report['unchanged']} unchanged")
    for line in report_lines(report):
        out.info(f"  {line}")


@params.command()
@stage_option(required=True)
@_service
@_file
@_secure
@click.option("--prune", is_flag=True, help="Delete parameters that are no longer in the file (their history too).")
@dry_run_option
@output_option
@pass_app
def push(app: App, service: str | None, file_: str | None, secure: tuple[str, ...], prune: bool,
         dry_run: bool) -> int:
    """Write what differs from the file to SSM (each change is a new parameter version)."""
    from pipeline_tools.ops import params as ops

    stage, service, prefix, rel, desired = _desired(app, service, file_, secure)
    ssm = app.aws(stage).client("ssm")
    report = ops.push(ssm, prefix, desired, dry_run=dry_run, prune=prune,
                      description=f"pt params push of {rel}")

    def human(out) -> None:
        _render_diff(out, report, f"{'plan' if dry_run else 'pushed'} {rel} -> {prefix}")
        if report["removed"] and not prune:
            out.info("  removed keys were kept: pass --prune to delete them")
        for w in report["written"]:
            out.info(f"  wrote {prefix}{w['key']} (version {w['version']})")

    app.out.result(report, human)
    return 0


@params.command()
@stage_option(required=True)
@_service
@_file
@_secure
@output_option
@pass_app
def diff(app: App, service: str | None, file_: str | None, secure: tuple[str, ...]) -> int:
    """Compare the file with SSM. Exit 0: same; exit 1: they differ."""
    from pipeline_tools.ops import params as ops

    stage, service, prefix, rel, desired = _desired(app, service, file_, secure)
    d = ops.diff(desired, ops.read_current(app.aws(stage).client("ssm"), prefix))
    report = {"prefix": prefix, "file": rel, "same": d.empty, **d.to_dict()}
    app.out.result(report, lambda out: _render_diff(out, report, f"{rel} vs {prefix}"))
    return 0 if d.empty else 1


@params.command()
@stage_option(required=True)
@_service
@output_option
@pass_app
def show(app: App, service: str | None) -> int:
    """List the service's parameters in SSM with their versions (SecureString values masked)."""
    from pipeline_tools.ops import params as ops
    from pipeline_tools.ops.services import pick_service

    cfg = app.config()
    stage = app.require_stage()
    service = pick_service(cfg, stage, service)
    prefix = cfg.params_path(service, stage)
    report = ops.show(app.aws(stage).client("ssm"), prefix)

    def human(out) -> None:
        if not report["parameters"]:
            out.info(f"no parameters under {prefix} (pt params push writes them)")
            return
        out.table([(p["key"], p["value"], p["type"], p["version"]) for p in report["parameters"]],
                  ["KEY", "VALUE", "TYPE", "VERSION"], title=prefix)

    app.out.result(report, human)
    return 0
