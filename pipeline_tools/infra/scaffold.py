"""Files `pt init` writes into a new repository (templates ship inside the package)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from pipeline_tools.core.errors import UsageError

# template in pipeline_tools/infra/templates -> path in the user's repository
FILES = {
    "pipeline.yml": "pipeline.yml",
    "Dockerfile": "docker/model/Dockerfile",
    "dockerignore": ".dockerignore",
    "workflows/staging.yml": ".github/workflows/pt-staging.yml",
    "workflows/prod.yml": ".github/workflows/pt-prod.yml",
}

KEEP_IF_PRESENT = {".dockerignore"}


def template_text(name: str) -> str:
    return resources.files("pipeline_tools.infra").joinpath("templates", name).read_text(encoding="utf-8")


def write_scaffold(directory: str, *, project: str | None, region: str, force: bool, dry_run: bool,
                   toolkit_ref: str | None = None) -> list[str]:
    """Write the starter files; the workflows pin the toolkit action at `toolkit_ref` (OWNER/REPO@SHA, default:
    the commit this pt was released from or installed at; refused when it names none)."""
    from pipeline_tools.infra.toolkit import resolve_ref, rewrite_pins

    root = Path(directory)
    project = project or re.sub(r"[^a-z0-9-]", "-", root.resolve().name.lower()).strip("-") or "service"
    if not re.match(r"^[a-z][a-z0-9-]{0,39}$", project):
        raise UsageError(f"--project {project!r}: must be lowercase letters, digits and dashes, "
                         "starting with a letter", "pass --project NAME")
    toolkit = resolve_ref(toolkit_ref)
    # A repository's own .dockerignore is kept (without --force): `pt build-push` warns if it lets .git in.
    existing = [dst for dst in FILES.values() if (root / dst).exists() and dst not in KEEP_IF_PRESENT]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                         "nothing written", "pass --force to overwrite")
    written = []
    for src, dst in FILES.items():
        if dst in KEEP_IF_PRESENT and (root / dst).exists() and not force:
            continue
        text = template_text(src).replace("__PROJECT__", project).replace("__REGION__", region)
        if src.startswith("workflows/"):
            text, pins = rewrite_pins(text, toolkit)
            assert pins, f"template {src} has no `# pt-toolkit` pin"
        if not dry_run:
            (root / dst).parent.mkdir(parents=True, exist_ok=True)
            (root / dst).write_text(text, encoding="utf-8")
        written.append(dst)
    return written
