"""`pt init`: a starter pipeline.yml, model Dockerfile and GitHub workflows for a new repo."""

from __future__ import annotations

import click

from pipeline_tools.clikit import Region, output_option, pass_app
from pipeline_tools.core.context import App


@click.command()
@click.option("--project", default=None, help="Service name (default: the directory name).")
@click.option("--region", "region_", type=Region(), default="us-east-1", show_default=True, help="AWS region.")
@click.option("--directory", "-C", default=".", type=click.Path(file_okay=False), help="Repository root.")
@click.option("--toolkit-ref", default=None, metavar="OWNER/REPO@SHA",
              help="Commit of pipeline-tools whose GitHub Action the workflows run (default: the commit this pt "
                   "was released from or pip-installed at from git).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@click.option("--dry-run", is_flag=True, help="List what would be written, write nothing.")
@output_option
@pass_app
def init(app: App, project: str | None, region_: str, directory: str, toolkit_ref: str | None, force: bool,
         dry_run: bool) -> int:
    """Write pipeline.yml, docker/model/Dockerfile, .dockerignore and .github/workflows for a new repository.

    Refuses to overwrite existing files unless --force; an existing .dockerignore is kept.
    """
    from pathlib import Path

    from pipeline_tools.infra.scaffold import KEEP_IF_PRESENT, write_scaffold

    written = write_scaffold(directory, project=project, region=region_, force=force, dry_run=dry_run,
                             toolkit_ref=toolkit_ref)
    kept = sorted(p for p in KEEP_IF_PRESENT if p not in written and (Path(directory) / p).exists())
    verb = "would write" if dry_run else "wrote"
    app.out.result({"written": written, "kept": kept, "dry_run": dry_run},
                   lambda o: [o.info(f"{verb} {p}") for p in written]
                   + [o.info(f"kept {p} (yours; `pt build-push` warns if it lets .git into an image)") for p in kept]
                   + [o.info("next: edit pipeline.yml, then `pt config validate`")])
    return 0
