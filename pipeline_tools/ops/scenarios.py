"""`pt artifacts push --scenario NAME…`: a service's scenario folders into its bucket.

`<services.<m>.scenarios>/NAME/` (relative to pipeline.yml) goes to
`s3://<service bucket>/NAME/` with the same content-addressed sync and manifest as
`pt artifacts push` (ops/artifacts.py). The first scenario a service gets must be `base`: a
bucket whose `base/` has no manifest yet takes `base` (alone or first in the same command) and
nothing else, so every later scenario can be read against the base one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import UsageError
from pipeline_tools.ops import artifacts as art

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

BASE = "base"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    location: art.Location


def plan(cfg: Config, stage: str, service: str, requested: list[str]) -> list[Scenario]:
    """The scenarios to push, `base` first, each checked to exist locally (pure apart from stat)."""
    root = cfg.base_dir / cfg.services[service].scenarios
    bucket = cfg.service_bucket(service, stage)
    out: list[Scenario] = []
    seen: set[str] = set()
    for name in sorted(dict.fromkeys(requested), key=lambda n: n != BASE):
        if not _NAME.match(name) or name in (".", ".."):
            raise UsageError(f"--scenario {name!r}: a scenario is one folder name (letters, digits, . _ -)",
                             f"pass the name of a folder under {root}")
        path = root / name
        if not path.is_dir():
            have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise UsageError(f"scenario '{name}' not found: {path} is not a directory",
                             f"scenarios in {root}: {', '.join(have)}" if have else
                             f"create {path} (services.{service}.scenarios is {cfg.services[service].scenarios!r})")
        if name not in seen:
            seen.add(name)
            out.append(Scenario(name, path, art.Location.of(bucket, name, "--scenario")))
    if not out:
        raise UsageError("no scenario given", "pass --scenario NAME (repeatable)")
    return out


def check_base_first(s3, scenarios: list[Scenario], stack: str) -> bool:
    """Refuse (exit 2) to push anything but `base` into a bucket that has no `base/` yet.
    Returns whether `base/` already exists."""
    bucket = scenarios[0].location.bucket
    art.check_bucket(s3, scenarios[0].location, stack)
    has_base = art.get_manifest(s3, art.Location(bucket, BASE)) is not None
    if not has_base and scenarios[0].name != BASE:
        raise UsageError(f"s3://{bucket} has no '{BASE}' scenario yet: the first scenario of a service must be "
                         f"'{BASE}' (asked for {', '.join(s.name for s in scenarios)})",
                         f"push it first: pt artifacts push --scenario {BASE}")
    return has_base


def push(s3, cfg: Config, stage: str, service: str, requested: list[str], *, dry_run: bool = False,
         workers: int = art.DEFAULT_WORKERS, progress: Callable[[str], None] | None = None,
         warn: Callable[[str], None] | None = None, **push_kw: Any) -> dict:
    scenarios = plan(cfg, stage, service, requested)
    stack = names.service_stack(cfg.project, service, stage)
    had_base = check_base_first(s3, scenarios, stack)
    reports = []
    for sc in scenarios:
        rep = art.push(s3, sc.path, sc.location, dry_run=dry_run, workers=workers, stack=stack,
                       progress=progress, warn=warn, **push_kw)
        reports.append({"scenario": sc.name, "source": str(sc.path), **rep})
    return {"service": service, "stage": stage, "bucket": scenarios[0].location.bucket, "dry_run": dry_run,
            "had_base": had_base, "scenarios": reports}
