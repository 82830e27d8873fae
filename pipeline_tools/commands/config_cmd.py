"""`pt config validate|show|schema|accounts`."""

from __future__ import annotations

import json

import click

from pipeline_tools.clikit import OutputPath, output_option, pass_app, stage_option
from pipeline_tools.core.context import App


@click.group()
def config() -> None:
    """Validate pipeline.yml, show it resolved, export its JSON Schema, check account access."""


@config.command()
@output_option
@pass_app
def validate(app: App) -> int:
    """Check pipeline.yml; print every problem as FILE:LINE: PATH: MESSAGE (exit 2)."""
    cfg = app.config()
    shown = app.config_path or "pipeline.yml"
    summary = {
        "valid": True,
        "file": shown,
        "project": cfg.project,
        "images": list(cfg.images),
        "functions": list(cfg.functions),
        "stages": list(cfg.stages),
    }
    app.out.result(summary, f"OK {shown}: project {cfg.project}, {len(cfg.images)} image(s), "
                            f"{len(cfg.functions)} function(s), stages {', '.join(cfg.stages)}")
    return 0


@config.command()
@stage_option()
@output_option
@pass_app
def show(app: App) -> int:
    """Print the config resolved (names, buckets, registries); secrets stay references."""
    cfg = app.config()
    if app.stage:
        cfg.stage(app.stage)
    data = cfg.resolved(app.stage)
    if app.out.json:
        app.out.result(data)
    else:
        import yaml

        app.out.info(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())
    return 0


@config.command()
@stage_option(help="Only this stage (default: every stage).")
@output_option
@pass_app
def accounts(app: App) -> int:
    """Check that pt reaches every stage's account and the ledger (roles assumed, table found).

    \b
    Exit 0 when every row is ok, 1 when one is not (the row says why). See docs/accounts.md.
    """
    from pipeline_tools.core import accounts as acc
    from pipeline_tools.core.context import single_account

    cfg = app.config()
    stages = [app.stage] if app.stage else list(cfg.stages)
    if app.stage:
        cfg.stage(app.stage)
    caller = app.caller()
    rows = acc.check_access(cfg, stages, stage_factory=app.aws, ledger_factory=app.ledger_aws,
                            ledger_stack_name=app.ledger_stack, same_account=not single_account())
    ok = all(r["ok"] for r in rows)

    def human(out) -> None:
        out.info(f"caller: {caller.arn}")
        out.table([(r["what"], r["account"], r["region"], r["via"], "ok" if r["ok"] else "FAIL",
                    r.get("acting_as") or r.get("error", "")) for r in rows],
                  ["what", "account", "region", "via", "result", "acting as / error"])

    app.out.result({"caller": caller.arn, "ok": ok, "checks": rows}, human)
    return 0 if ok else 1


@config.command()
@click.option("--out", "-o", "out_file", type=OutputPath(), default=None,
              help="Write to FILE instead of stdout.")
def schema(out_file: str | None) -> int:
    """Print the JSON Schema of pipeline.yml (for editor completion and validation).

    \b
    VS Code (redhat.vscode-yaml):  "yaml.schemas": {"pipeline.schema.json": "pipeline.yml"}
    """
    from pipeline_tools.core.config import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out_file:
        with open(out_file, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
    return 0
