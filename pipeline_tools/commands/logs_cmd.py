"""`pt logs scan|tail|archive`."""

from __future__ import annotations

import time

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.group()
def logs() -> None:
    """Scan logs for sensitive identifiers; follow them redacted; archive them to S3."""


@logs.command()
@stage_option(required=True)
@click.option("--since", default="24h", show_default=True, metavar="DURATION",
              help="How far back to read CloudWatch (30m, 24h, 7d).")
@click.option("--log-group", "log_groups", multiple=True, metavar="GROUP",
              help="Another CloudWatch log group to scan (repeatable).")
@click.option("--path", "paths", multiple=True, type=click.Path(), metavar="PATH",
              help="Local file or directory to scan too (repeatable). gzip/bzip2/xz are recognised by "
                   "content, UTF-8/16/32 by BOM or byte pattern.")
@click.option("--patterns", type=click.Path(dir_okay=False), metavar="FILE",
              help="YAML/JSON list of {name, regex}: extra patterns to report.")
@click.option("--no-cloudwatch", is_flag=True, help="Scan only --path, not CloudWatch.")
@click.option("--allow-unscanned", is_flag=True,
              help="Exit 0 even if some input could not be read (missing log group, undecodable bytes, "
                   "truncated gzip, …); it is still listed as not scanned.")
@output_option
@pass_app
def scan(app: App, since: str, log_groups: tuple[str, ...], paths: tuple[str, ...], patterns: str | None,
         no_cloudwatch: bool, allow_unscanned: bool) -> int:
    """Find emails, phones, IPs, AWS keys, cards, SSNs, JWTs in logs.

    Exit 1 if anything is found, or if any input could not be read completely (it is listed as
    "not scanned" with the reason; --allow-unscanned accepts that). Never reports clean on input
    it did not read.
    """
    from pipeline_tools.ops import logs as ops_logs

    cfg = app.config()
    stage = app.require_stage()
    if no_cloudwatch and not paths:
        raise UsageError("nothing to scan: --no-cloudwatch without --path", "add --path FILE_OR_DIR")
    report = ops_logs.scan(cfg, stage, logs_client=None if no_cloudwatch else app.aws(stage).client("logs"),
                           since=ops_logs.parse_since(since), extra_groups=log_groups, paths=paths,
                           patterns=patterns, cloudwatch=not no_cloudwatch, clock=time.time,
                           allow_unscanned=allow_unscanned)

    def human(out) -> None:
        for group, info in report.groups.items():
            out.log(f"{group}: {info['status']} ({info['events']} events)")
        for path, info in report.files.items():
            if info.get("note"):
                out.warn(f"{path}: {info['note']}")
            if info.get("nul_bytes"):
                out.log(f"{path}: {info['nul_bytes']} NUL byte(s), first at line {info['first_nul_line']} "
                        "(scanned as text)")
        for u in report.unscanned:
            out.warn(f"NOT SCANNED {u['input']}: {u['reason']}")
        if report.findings:
            out.table([(f.kind, f.where, f.excerpt) for f in report.findings], ["kind", "where", "excerpt"],
                      title=f"{len(report.findings)} finding(s): "
                            + ", ".join(f"{k} {n}" for k, n in report.counts().items()))
        where = f"{len(report.groups)} log group(s), {len(report.files)} file(s)"
        if report.clean:
            out.info(f"clean: nothing sensitive in {where}")
        elif not report.findings:
            out.info(f"NOT CLEAN: nothing sensitive found, but {len(report.unscanned)} input(s) were not scanned"
                     + (" (accepted by --allow-unscanned)" if allow_unscanned else
                        "; fix them or pass --allow-unscanned to accept"))
        elif report.unscanned:
            out.info(f"and {len(report.unscanned)} input(s) were not scanned (listed above)")

    app.out.result({"stage": stage, **report.to_dict()}, human)
    app.out.github_output({"clean": str(report.clean).lower(), "findings": len(report.findings),
                           "unscanned": len(report.unscanned)})
    if report.findings or report.unscanned:
        from pipeline_tools.core.output import markdown_table

        md = f"### pt logs scan: {len(report.findings)} finding(s) in stage {stage}\n\n"
        if report.findings:
            md += markdown_table([(f.kind, f.where, f.excerpt) for f in report.findings[:200]],
                                 ["kind", "where", "excerpt"]) + "\n"
        if report.unscanned:
            md += (f"\n**{len(report.unscanned)} input(s) not scanned**"
                   + (" (accepted by --allow-unscanned)" if allow_unscanned else "") + "\n\n"
                   + markdown_table([(u["input"], u["reason"]) for u in report.unscanned[:200]], ["input", "reason"]))
        app.out.step_summary(md)
    return 0 if report.ok else 1


@logs.command()
@stage_option(required=True)
@click.option("--to", "to", required=True, metavar="s3://BUCKET/PREFIX", help="Where to archive.")
@click.option("--since", default=None, metavar="DURATION",
              help="Only events newer than this (default: everything not archived yet).")
@click.option("--log-group", "log_groups", multiple=True, metavar="GROUP", help="Another group (repeatable).")
@click.option("--method", type=click.Choice(["auto", "export", "stream"]), default="auto", show_default=True,
              help="export: CloudWatch export task; stream: download + gzip upload; auto: export, else stream.")
@dry_run_option
@output_option
@pass_app
def archive(app: App, to: str, since: str | None, log_groups: tuple[str, ...], method: str, dry_run: bool) -> int:
    """Export the stage's log groups to S3 with a manifest and SHA-256 checksums (idempotent)."""
    from pipeline_tools.ops import logs as ops_logs

    cfg = app.config()
    stage = app.require_stage()
    aws = app.aws(stage)
    res = ops_logs.archive(cfg, stage, to, logs_client=aws.client("logs"), s3=aws.client("s3"),
                           since=ops_logs.parse_since(since), extra_groups=log_groups, method=method,
                           clock=time.time, sleep=time.sleep, dry_run=dry_run)

    def human(out) -> None:
        out.table([(g, i["status"], i.get("objects", ""), i.get("method", "")) for g, i in res.groups.items()],
                  ["log group", "status", "objects", "method"],
                  title=("plan (dry run): " if dry_run else "") + f"s3://{res.bucket}/{res.manifest_key}")
        out.info(f"{len(res.new_objects)} new object(s); manifest lists {len(res.objects)}")

    app.out.result({"stage": stage, "dry_run": dry_run, **res.to_dict()}, human)
    return 0


@logs.command()
@stage_option(required=True)
@click.option("--target", "targets", multiple=True, metavar="KIND:NAME",
              help="Follow only this target's logs, e.g. lambda:predict (a function of the config; repeatable). "
                   "Default: every function of the stage.")
@click.option("--log-group", "log_groups", multiple=True, metavar="GROUP", help="Another log group (repeatable).")
@click.option("--since", default="10m", show_default=True, metavar="DURATION",
              help="Print events from this long ago first (30s, 10m, 2h).")
@click.option("--filter", "pattern", default=None, metavar="PATTERN",
              help="CloudWatch Logs filter pattern, e.g. ERROR or '{ $.level = \"error\" }'.")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Keep following new events until Ctrl-C, or stop after the backlog.")
@click.option("--mode", type=click.Choice(["auto", "live", "poll"]), default="auto", show_default=True,
              help="live: CloudWatch Live Tail; poll: FilterLogEvents; auto: live, else poll.")
@click.option("--interval", type=click.FloatRange(0.2, 300), default=2.0, show_default=True,
              help="Seconds between polls (poll mode).")
@output_option
@pass_app
def tail(app: App, targets: tuple[str, ...], log_groups: tuple[str, ...], since: str, pattern: str | None,
         follow: bool, mode: str, interval: float) -> int:
    """Follow the stage's logs; emails, keys, cards, … are redacted as in `pt logs scan`.

    --output json prints one JSON object per line (group, stream, timestamp, message, redacted).
    Ctrl-C stops cleanly. Exit 1 with --no-follow when a log group could not be read.
    """
    import json

    from pipeline_tools.ops import logs as ops_logs
    from pipeline_tools.ops import logtail

    cfg = app.config()
    stage = app.require_stage()
    groups = tail_groups(cfg, stage, targets, log_groups)
    out = app.out

    def emit(ev) -> None:
        if out.json:
            from pipeline_tools.core.output import redact

            out.stdout.write(redact(json.dumps(ev.to_dict(), separators=(",", ":"))) + "\n")
            out.stdout.flush()
        else:
            from datetime import UTC, datetime

            at = datetime.fromtimestamp(ev.timestamp / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
            out.info(f"{at} {ev.group} {ev.stream} {ev.message}")

    out.log(f"following {', '.join(groups)}" if follow else f"reading {', '.join(groups)}")
    summary = logtail.tail(app.aws(stage).client("logs"), groups, since=ops_logs.parse_since(since),
                           pattern=pattern, follow=follow, mode=mode, clock=time.time, sleep=time.sleep,
                           emit=emit, warn=out.warn, interval=interval)
    end = "stopped (Ctrl-C)" if summary.stopped == "interrupted" else "done"
    out.log(f"{end}: {summary.events} event(s), {summary.redacted} line(s) redacted ({summary.mode})")
    if out.json:
        out.stderr.write(json.dumps({"summary": summary.to_dict()}) + "\n")
    problems = summary.missing + list(summary.unreadable)
    if problems and not follow:
        out.warn(f"not read: {', '.join(problems)}")
        return 1
    return 0


def tail_groups(cfg, stage: str, targets: tuple[str, ...], extra: tuple[str, ...]) -> list[str]:
    """The log groups to follow: the named targets' (or all the stage's functions') plus `extra`."""
    from pipeline_tools.ops import logs as ops_logs

    if not targets:
        return ops_logs.stage_log_groups(cfg, stage, extra)
    groups: list[str] = []
    for t in targets:
        kind, _, name = t.partition(":")
        if kind != "lambda" or not name:
            raise UsageError(f"--target {t!r}: expected lambda:NAME", "e.g. --target lambda:predict, or "
                             "--log-group GROUP for any other log group")
        if name not in cfg.functions:
            raise UsageError(f"--target {t}: no function {name!r} in pipeline.yml",
                             f"functions: {', '.join(cfg.functions) or 'none'}")
        groups.append(f"/aws/lambda/{cfg.function_name(stage, name)}")
    return groups + [g for g in extra if g not in groups]
