"""`pt upgrade-pipelines`: move the toolkit pin of the workflows `pt init` wrote."""

from __future__ import annotations

import click

from pipeline_tools.clikit import output_option, pass_app
from pipeline_tools.core.context import App


@click.command("upgrade-pipelines")
@click.option("--toolkit-ref", default=None, metavar="OWNER/REPO@SHA",
              help="Commit of pipeline-tools to pin (default: the commit this pt was released from or "
                   "pip-installed at from git). The version comment and input are this pt's version.")
@click.option("--directory", "-C", default=".", type=click.Path(file_okay=False), help="Repository root.")
@click.option("--dry-run", is_flag=True, help="Show the diff, write nothing.")
@output_option
@pass_app
def upgrade_pipelines(app: App, toolkit_ref: str | None, directory: str, dry_run: bool) -> int:
    """Rewrite the pt toolkit pins (`uses: OWNER/REPO@SHA  # pt-toolkit vX.Y.Z` and its `version:` input) in
    .github/workflows. Only lines marked `# pt-toolkit` change; prints a unified diff. Exit 0 when changed or
    already up to date, 2 on bad input."""
    from pipeline_tools.infra.toolkit import resolve_ref, upgrade_workflows

    ref = resolve_ref(toolkit_ref)
    changes = upgrade_workflows(directory, ref, dry_run=dry_run)
    data = {"toolkit_ref": str(ref), "version": ref.version, "changed": [c.path for c in changes],
            "up_to_date": not changes, "dry_run": dry_run}

    def human(o) -> None:
        if not changes:
            o.info(f"up to date: the workflows already pin {ref} (v{ref.version})")
            return
        o.result(None, "".join(c.diff for c in changes).rstrip("\n"))
        verb = "would update" if dry_run else "updated"
        o.info(f"{verb} {len(changes)} workflow{'s' if len(changes) != 1 else ''} to {ref} (v{ref.version})")

    app.out.result(data, human)
    return 0
