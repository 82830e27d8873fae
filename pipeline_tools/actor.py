"""Who is acting: the STS caller plus the human/CI identity, for ledger records and approvals.

`PT_ACTOR` names the person (a demo or a laptop); in CI the provider's variables are read
(GitHub Actions, CodeBuild). The commit author comes from `PT_COMMIT_AUTHOR`, else git.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def ci_context(env: Mapping[str, str] | None = None, git: Callable[..., str | None] = _git) -> dict:
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
    ctx["author"] = env.get("PT_COMMIT_AUTHOR") or git("log", "-1", "--format=%ae")
    return ctx


def actor_name(caller_arn: str | None, env: Mapping[str, str] | None = None) -> str:
    """The identity a person is known by: PT_ACTOR, else the CI user, else the STS caller."""
    env = os.environ if env is None else env
    return (env.get("PT_ACTOR") or env.get("GITHUB_ACTOR") or env.get("CODEBUILD_INITIATOR")
            or caller_arn or env.get("USER") or "unknown")


def identify(caller_arn: str | None, env: Mapping[str, str] | None = None,
             git: Callable[..., str | None] = _git) -> dict:
    """Everything a ledger record says about who did it."""
    ctx = ci_context(env, git)
    return {"name": actor_name(caller_arn, env), "arn": caller_arn, **ctx}
