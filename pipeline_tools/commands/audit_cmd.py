"""`pt audit export`: the ledger's records (every kind) in a stable, documented schema."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from pipeline_tools.clikit import OutputPath, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.group()
def audit() -> None:
    """Export what the ledger recorded (deploys, gates, approvals, promotions, runbooks, …)."""


def parse_since(text: str | None, now: float) -> float | None:
    """A duration back from now (30d, 12h, 90m) or a UTC date/time (2026-11-01, 2026-11-01T08:00)."""
    if not text:
        return None
    from pipeline_tools.ops.logs import parse_since as duration

    try:
        return now - duration(text)  # type: ignore[operator]
    except UsageError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a duration nor a date",
                         "e.g. --since 30d, --since 12h or --since 2026-11-01") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@audit.command("export")
@stage_option(help="Stage whose records to export (or --all).")
@click.option("--all", "all_stages", is_flag=True, help="Every stage of pipeline.yml.")
@click.option("--since", metavar="DURATION|DATE", default=None,
              help="Only records created since then: 30d, 12h, or a UTC date 2026-11-01.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Only this record kind (repeatable): deploy, gate, approval, promotion, runbook, …")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "md"]), default="jsonl", show_default=True,
              help="jsonl: one JSON object a line; csv: one row a record; md: a table for humans.")
@click.option("-o", "--out", "out_file", type=OutputPath(), default=None,
              help="Write to FILE instead of stdout.")
@pass_app
def export(app: App, all_stages: bool, since: str | None, kinds: tuple[str, ...], fmt: str,
           out_file: str | None) -> int:
    """Write every ledger record of a stage (or all stages) in schema 1 (docs/records.md).

    Damaged ledger items are skipped with a warning each; the exit code is then 1 so a CI
    job that archives the export notices the gap.
    """
    from pipeline_tools.ops import records
    from pipeline_tools.release.ledger import ensure_table

    cfg = app.config()
    if all_stages and app.stage:
        raise UsageError("pass either --stage or --all, not both", "e.g. `pt audit export --all --since 30d`")
    if not all_stages and not app.stage:
        raise UsageError("pt audit export needs --stage STAGE or --all", "e.g. `pt audit export --all --since 30d`")
    stages = list(cfg.stages) if all_stages else [app.stage]
    for s in stages:
        cfg.stage(s)
    floor = parse_since(since, time.time())
    first = stages[0]
    client = app.aws(first).client("dynamodb")
    ensure_table(client, cfg.ledger_table(), project=cfg.project, stage=first, local=False)
    result = records.collect(client, cfg.ledger_table(), stages, since=floor, kinds=kinds)
    for line in result.skipped:
        app.out.warn(line)
    counts = ", ".join(f"{k} {n}" for k, n in result.counts().items()) or "none"
    app.out.document(records.render(result.rows, fmt), out_file,  # redacted: secrets never leave pt
                     f"wrote {len(result.rows)} record(s) ({counts}) to {out_file}")
    return 1 if result.skipped else 0
