"""Who is acting: the STS caller plus the CI context, for ledger records and approvals.

Identity comes from the STS caller ARN (normalised by `approvals.principal`: an assumed-role
session is `ROLE/SESSION`, an IAM user its name). `PT_ACTOR` and `PT_COMMIT_AUTHOR` are
self-declared: they are accepted only in local mode (AWS_ENDPOINT_URL, i.e. `pt local` and the
tests, where every caller is moto's one fake principal) or when the stage's config says
`approvals.allow_declared_actor: true`; then the record says `declared`.

The commit author comes from the CI context: the GitHub event payload (`GITHUB_EVENT_PATH`:
head_commit author and pusher), CodeBuild's resolved source version looked up in the clone's
history, or git in a checkout with history. None of them → the author is unknown (None), and
the approval rules decide what that means (never a silent pass).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from pipeline_tools.release.approvals import principal

_SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _github_event_authors(path: str | None) -> list[str]:
    """head_commit.author (e-mail, login) and the pusher of a GitHub push event payload."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(event, dict):
        return []
    head = event.get("head_commit") if isinstance(event.get("head_commit"), dict) else {}
    author = head.get("author") if isinstance(head.get("author"), dict) else {}
    pusher = event.get("pusher") if isinstance(event.get("pusher"), dict) else {}
    got = [author.get("email"), author.get("username")]
    if author:  # the pusher of that commit cannot approve it either
        got += [pusher.get("email"), pusher.get("name")]
    return [g for g in got if isinstance(g, str) and g.strip()]


def _git_author(git: Callable[..., str | None], rev: str) -> list[str]:
    out = git("log", "-1", "--format=%ae", rev)
    return [out] if out and "@" in out else []


def commit_author(env: Mapping[str, str], git: Callable[..., str | None] = _git, *,
                  declared_ok: bool = False) -> tuple[list[str], str | None]:
    """(the author's names, where they came from) — ([], None) when unknown."""
    if declared_ok and env.get("PT_COMMIT_AUTHOR"):
        return [env["PT_COMMIT_AUTHOR"]], "declared"
    if env.get("GITHUB_ACTIONS") == "true":
        found = _github_event_authors(env.get("GITHUB_EVENT_PATH"))
        if found:
            return found, "github-event"
    if env.get("CODEBUILD_BUILD_ID"):
        sha = (env.get("CODEBUILD_RESOLVED_SOURCE_VERSION") or "").lower()
        # a CodePipeline source zip has no .git: git fails and the author stays unknown
        found = _git_author(git, sha) if _SHA_RE.match(sha) else []
        return found, "codebuild-git" if found else None
    found = _git_author(git, "HEAD")
    return found, "git" if found else None


def ci_context(env: Mapping[str, str] | None = None, git: Callable[..., str | None] = _git, *,
               declared_ok: bool = False) -> dict:
    """git SHA, branch, run URL, CI system and commit author, from CI variables or git."""
    env = os.environ if env is None else env
    ctx: dict = {"ci": None, "git_sha": None, "branch": None, "run_url": None, "author": None}
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        ctx.update(ci="github-actions", git_sha=env.get("GITHUB_SHA"),
                   branch=env.get("GITHUB_REF_NAME"), user=env.get("GITHUB_ACTOR"))
        if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            ctx["run_url"] = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    elif env.get("CODEBUILD_BUILD_ID"):
        ctx.update(ci="codebuild", git_sha=env.get("CODEBUILD_RESOLVED_SOURCE_VERSION"),
                   branch=(env.get("CODEBUILD_WEBHOOK_HEAD_REF") or "").removeprefix("refs/heads/") or None,
                   run_url=env.get("CODEBUILD_BUILD_URL"), user=env.get("CODEBUILD_INITIATOR"))
    ctx["git_sha"] = env.get("PT_GIT_SHA") or ctx["git_sha"] or git("rev-parse", "HEAD")
    ctx["branch"] = env.get("PT_GIT_BRANCH") or ctx["branch"] or git("rev-parse", "--abbrev-ref", "HEAD")
    authors, source = commit_author(env, git, declared_ok=declared_ok)
    ctx.update(author=authors[0] if authors else None, authors=authors, author_source=source)
    return ctx


def declared_ok(cfg: Any, stage: str | None, *, local: bool | None = None) -> bool:
    """PT_ACTOR / PT_COMMIT_AUTHOR are trusted in local mode, or when `approvals.allow_declared_actor`
    is set on `stage` or on a stage promoted from it (whose rules will read this record)."""
    if local is None:
        from pipeline_tools.core.aws import is_local

        local = is_local()
    if local:
        return True
    if cfg is None or stage is None:
        return False
    return any(st.approvals is not None and st.approvals.allow_declared_actor
               for name, st in cfg.stages.items() if name == stage or st.promote_from == stage)


def identify(caller_arn: str | None, env: Mapping[str, str] | None = None,
             git: Callable[..., str | None] = _git, *, allow_declared: bool = False,
             local: bool | None = None) -> dict:
    """Everything a ledger record says about who did it.

    `name` is the normalised STS caller unless a declared PT_ACTOR is accepted (local mode, or
    `allow_declared`); then `declared` is "local" or "config". A PT_ACTOR that is not accepted
    is reported in `declared_ignored` (the commands warn about it)."""
    env = os.environ if env is None else env
    if local is None:
        from pipeline_tools.core.aws import is_local

        local = is_local()
    mode = "local" if local else "config" if allow_declared else None
    ctx = ci_context(env, git, declared_ok=mode is not None)
    out: dict = {"arn": caller_arn, **ctx, "declared": None}
    declared = (env.get("PT_ACTOR") or "").strip()
    if declared and mode:
        out.update(name=declared, declared=mode)
    else:
        out["name"] = principal(caller_arn) or caller_arn or "unknown"
        ignored = [v for v in ("PT_ACTOR", "PT_COMMIT_AUTHOR") if env.get(v)] if not mode else []
        if ignored:
            out["declared_ignored"] = ignored
    return out


def names(actor: Mapping | None) -> tuple[str, ...]:
    """The identity strings of an actor dict, as `approvals.same_person` compares them."""
    actor = actor or {}
    got = (actor.get("name"),) if actor.get("declared") == "local" else (actor.get("name"), actor.get("arn"))
    return tuple(g for g in got if g)
