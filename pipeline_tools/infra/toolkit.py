"""Which pt the generated workflows run: this repository's GitHub Action pinned by commit SHA
(`uses: OWNER/REPO@SHA  # pt-toolkit vX.Y.Z`), never a package name resolved at run time.

`pt init` writes the pin, `pt upgrade-pipelines` moves it. Only lines carrying the `# pt-toolkit`
marker are touched, so a user's own steps and pins stay as they are."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline_tools import __version__
from pipeline_tools.core.errors import UsageError

REF = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100})@(?P<sha>[0-9a-f]{40})")
MARK = "pt-toolkit"
USES_LINE = re.compile(rf"^(?P<head>[ \t]*(?:- )?uses:[ \t]*)\S+@\S+(?P<sep>[ \t]+)# {MARK} v\S+[ \t]*$", re.M)
VERSION_LINE = re.compile(rf'^(?P<head>[ \t]*version:[ \t]*)"[^"]*"(?P<sep>[ \t]+)# {MARK}[ \t]*$', re.M)
REF_HINT = "pass --toolkit-ref OWNER/REPO@SHA: the 40-hex commit of the pipeline-tools release to run"


@dataclass(frozen=True)
class ToolkitRef:
    repo: str
    sha: str
    version: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.sha}"


def parse_ref(text: str, *, version: str = __version__, where: str = "--toolkit-ref") -> ToolkitRef:
    m = REF.fullmatch(text.strip())
    if not m:
        raise UsageError(f"{where} {text!r}: expected OWNER/REPO@SHA with the full 40-hex commit SHA "
                         "(a branch or tag can move; a commit cannot)", REF_HINT)
    return ToolkitRef(m["repo"], m["sha"], version)


def _github_repo(url: str) -> str | None:
    m = re.fullmatch(r"(?:git\+)?(?:https://|ssh://git@|git@)github\.com[/:]([^/]+/[^/]+?)(?:\.git)?/?", url)
    return m[1] if m else None


def installed_ref() -> tuple[str | None, str]:
    """(OWNER/REPO@SHA or None, where this pt came from). A release writes `__toolkit_ref__` into the package
    (scripts/set_version.py --source); a `pip install git+https://github.com/OWNER/REPO@SHA` leaves PEP 610
    `direct_url.json` with the commit. Anything else (a local checkout, an editable install) names no commit."""
    import pipeline_tools

    baked = getattr(pipeline_tools, "__toolkit_ref__", "")
    if baked:
        return baked, "the release"
    from importlib import metadata

    try:
        raw = metadata.distribution("pipeline-tools").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None, "a source tree that is not installed"
    if not raw:
        return None, "an install that records no source (no direct_url.json)"
    ref = ref_from_direct_url(raw)
    url = (json.loads(raw) or {}).get("url", "an unknown source")
    return (ref, f"git {url}") if ref else (None, url)


def ref_from_direct_url(raw: str) -> str | None:
    """OWNER/REPO@SHA from a PEP 610 direct_url.json of a git install from GitHub, else None."""
    info = json.loads(raw) or {}
    vcs, repo = info.get("vcs_info") or {}, _github_repo(info.get("url", ""))
    if vcs.get("vcs") == "git" and repo and re.fullmatch(r"[0-9a-f]{40}", vcs.get("commit_id", "")):
        return f"{repo}@{vcs['commit_id']}"
    return None


def resolve_ref(option: str | None) -> ToolkitRef:
    if option:
        return parse_ref(option)
    derived, source = installed_ref()
    if not derived:
        raise UsageError(f"cannot tell which commit of pipeline-tools the workflows should pin: this pt comes "
                         f"from {source}, not a release or a git commit", REF_HINT)
    return parse_ref(derived, where=f"the toolkit ref of this pt ({source})")


def rewrite_pins(text: str, ref: ToolkitRef) -> tuple[str, int]:
    """(text with every marked pin set to `ref`, number of marked lines found)."""
    text, n_uses = USES_LINE.subn(lambda m: f"{m['head']}{ref}{m['sep']}# {MARK} v{ref.version}", text)
    text, n_version = VERSION_LINE.subn(lambda m: f'{m["head"]}"{ref.version}"{m["sep"]}# {MARK}', text)
    return text, n_uses + n_version


@dataclass(frozen=True)
class PinChange:
    path: str
    diff: str


def upgrade_workflows(directory: str | Path, ref: ToolkitRef, *, dry_run: bool) -> list[PinChange]:
    """Rewrite the pt-toolkit pins of .github/workflows/*.y(a)ml under `directory`; the files that changed."""
    root = Path(directory)
    wf = root / ".github" / "workflows"
    files = sorted([*wf.glob("*.yml"), *wf.glob("*.yaml")]) if wf.is_dir() else []
    if not files:
        raise UsageError(f"{wf}: no workflow files", "run it in the repository root (or pass -C DIR); "
                         "`pt init` writes the workflows")
    changes, marked = [], 0
    for path in files:
        old = path.read_text(encoding="utf-8")
        new, n = rewrite_pins(old, ref)
        marked += n
        if new == old:
            continue
        rel = path.relative_to(root).as_posix()
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}"))
        if not dry_run:
            path.write_text(new, encoding="utf-8")
        changes.append(PinChange(rel, diff))
    if not marked:
        raise UsageError(f"{wf}: no step uses the pt toolkit action (no line marked `# {MARK}`)",
                         "`pt init --force` writes workflows that pin it")
    return changes


TOOLKIT_BASE = "public.ecr.aws/docker/library/python:3.11-slim"


def toolkit_dockerfile(requirement: str, base: str = TOOLKIT_BASE) -> str:
    """The image CodeBuild's non-docker steps run: `pt` at the pinned `requirement`, plus git (pt reads
    the commit's author from the clone). Built by `cdk deploy` as the PipelineStack's image asset."""
    return (f"FROM {base}\n"
            "ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
            "RUN apt-get update && apt-get install -y --no-install-recommends git \\\n"
            "    && rm -rf /var/lib/apt/lists/*\n"
            f"RUN python3 -m pip install --no-cache-dir '{requirement}' && pt --version\n")
