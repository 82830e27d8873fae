"""The model zoo's pure parts: names, the planner (skip / copy / new version per model with the
reason) and version-age arithmetic for gc. No I/O; `zoo.py` reads AWS and executes the plans."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_tools.core.errors import UsageError

COPY_SUFFIX = "_copy"
SKIP, COPY, NEW_VERSION = "skip", "copy", "new-version"
LAMBDA_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# --- names -----------------------------------------------------------------------------------


def check_function_name(name: str) -> str:
    """Lambda's rule: 1-64 characters of letters, digits, '-' and '_'."""
    if not LAMBDA_NAME_RE.match(name):
        raise UsageError(f"Lambda function name {name!r} breaks Lambda's naming rules "
                         f"(1-64 letters, digits, '-' or '_'; it has {len(name)} characters)",
                         "shorten the project, stage or model name in pipeline.yml")
    return name


def function_names(cfg: Any, stage: str, model: str) -> tuple[str, str]:
    """(running function, copy function): `<project>-<stage>-<model>` and `…_copy`."""
    main = cfg.function_name(stage, model)
    return check_function_name(main), check_function_name(main + COPY_SUFFIX)


# --- the pure planner ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInput:
    """What a model should run: its artifacts hash and (optionally) an image digest."""

    name: str
    copy: bool
    artifacts: str                    # sha256:… of the manifest
    image_digest: str | None = None   # None: keep the image the model runs
    image_uri: str | None = None
    consumers: tuple[str, ...] = ()   # consumer keys (ssm:/p, lambda:fn#VAR)
    location: str | None = None       # where the artifacts are (s3://… or a local dir)


@dataclass(frozen=True)
class Deployed:
    """What one function runs on its alias `live` (read from AWS)."""

    function: str
    exists: bool = False
    version: str | None = None
    artifacts: str | None = None
    digest: str | None = None
    image_uri: str | None = None
    weighted: bool = False            # alias has RoutingConfig weights (mid-deploy)

    @property
    def live(self) -> bool:
        return self.exists and self.version is not None


@dataclass(frozen=True)
class ModelPlan:
    model: str
    action: str                       # skip | copy | new-version
    function: str                     # the function this action deploys (or the one that runs it)
    reason: str
    copy: bool
    artifacts: str
    image_digest: str | None
    image_uri: str | None
    create: bool = False              # the function does not exist yet
    previous_version: str | None = None
    previous_artifacts: str | None = None
    repoint: tuple[str, ...] = ()     # consumers re-pointed to the new version
    location: str | None = None

    @property
    def changes(self) -> bool:
        return self.action != SKIP

    def to_dict(self) -> dict:
        return {"model": self.model, "action": self.action, "function": self.function, "reason": self.reason,
                "copy": self.copy, "artifacts": self.artifacts, "image_digest": self.image_digest,
                "image_uri": self.image_uri, "create": self.create, "previous_version": self.previous_version,
                "previous_artifacts": self.previous_artifacts, "repoint": list(self.repoint),
                "location": self.location}


@dataclass(frozen=True)
class ZooPlan:
    stage: str
    models: tuple[ModelPlan, ...]
    set_digest: str

    @property
    def noop(self) -> bool:
        return not any(m.changes for m in self.models)

    def changing(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in self.models if m.changes)

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for m in self.models if m.action == a) for a in (SKIP, COPY, NEW_VERSION)}

    def to_dict(self) -> dict:
        return {"stage": self.stage, "set_digest": self.set_digest, "noop": self.noop, "counts": self.counts(),
                "models": [m.to_dict() for m in self.models]}

    def rows(self) -> list[list[str]]:
        return [[m.model, m.action, m.function, short(m.artifacts), m.reason] for m in self.models]


def short(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest[:19] + "…" if len(digest) > 19 else digest


def set_digest(models: Iterable[ModelPlan]) -> str:
    """The identity of a zoo set (models, copy flags, artifacts, the images they run after the
    rollout): what staging proved is what prod gets."""
    doc = sorted([m.model, m.copy, m.artifacts, m.image_digest] for m in models)
    return "sha256:" + hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def _same(d: Deployed, m: ModelInput) -> bool:
    return d.live and not d.weighted and d.artifacts == m.artifacts and \
        (m.image_digest is None or d.digest == m.image_digest)


def _differs(d: Deployed, m: ModelInput) -> str:
    parts = []
    if d.artifacts != m.artifacts:
        parts.append(f"artifacts {short(d.artifacts)} → {short(m.artifacts)}")
    if m.image_digest is not None and d.digest != m.image_digest:
        parts.append(f"image {short(d.digest)} → {short(m.image_digest)}")
    if d.weighted:
        parts.append("alias live is split between versions")
    return ", ".join(parts) or "differs"


def plan_model(m: ModelInput, main: Deployed, copy: Deployed) -> ModelPlan:
    """skip / copy / new-version for one model, with the reason (pure)."""
    image_digest = m.image_digest or main.digest or copy.digest
    image_uri = m.image_uri or main.image_uri or copy.image_uri
    base = dict(model=m.name, copy=m.copy, artifacts=m.artifacts, image_digest=image_digest, image_uri=image_uri,
                location=m.location)
    if _same(main, m):
        what = "already has these artifacts: no duplicate copy" if m.copy else "already runs these artifacts"
        return ModelPlan(action=SKIP, function=main.function, previous_version=main.version,
                         previous_artifacts=main.artifacts,
                         reason=f"{main.function} v{main.version} {what}"
                                + ("" if m.image_digest is None else " and image"), **base)
    if m.copy and main.live and _same(copy, m):
        return ModelPlan(action=SKIP, function=copy.function, previous_version=copy.version,
                         previous_artifacts=copy.artifacts,
                         reason=f"copy {copy.function} v{copy.version} already runs these artifacts "
                                "(no duplicate copy)", **base)
    if image_uri is None:
        raise UsageError(f"model {m.name} has never been deployed to this stage, so there is no image to keep",
                         "pass the image with --image-uri REPO@sha256:… or --from-build build.json")
    if m.copy and main.live:
        reason = (f"{_differs(main, m)} vs running {main.function} v{main.version}: deploy "
                  + (f"a new version of {copy.function}" if copy.exists else f"{copy.function} alongside"))
        return ModelPlan(action=COPY, function=copy.function, create=not copy.exists,
                         previous_version=copy.version, previous_artifacts=copy.artifacts, reason=reason, **base)
    if not main.exists:
        reason = "not deployed yet: create " + main.function
        if m.copy:
            reason += " (no running model to copy alongside)"
    elif not main.live:
        reason = f"{main.function} exists without alias live: first version"
    else:
        reason = f"{_differs(main, m)}: new version of {main.function} (v{main.version} → next)"
    return ModelPlan(action=NEW_VERSION, function=main.function, create=not main.exists,
                     previous_version=main.version, previous_artifacts=main.artifacts, repoint=m.consumers,
                     reason=reason, **base)


def plan_models(stage: str, inputs: Iterable[ModelInput], states: Mapping[str, tuple[Deployed, Deployed]]) -> ZooPlan:
    """`states[model]` = (running function, copy function) as read from AWS; models sorted by name."""
    inputs = sorted(inputs, key=lambda i: i.name)
    plans = tuple(plan_model(m, *states[m.name]) for m in inputs)
    return ZooPlan(stage, plans, set_digest(plans))


def select(models: Mapping[str, Any], wanted: Iterable[str] | None) -> list[str]:
    """The whitelisted models to act on; an unknown name is a usage error."""
    import difflib

    wanted = list(wanted or [])
    for w in wanted:
        if w not in models:
            m = difflib.get_close_matches(w, list(models), n=1, cutoff=0.6)
            raise UsageError(f"model '{w}' is not in the zoo whitelist (zoo.models)",
                             f"did you mean '{m[0]}'?" if m else
                             f"whitelisted: {', '.join(models) or 'none'}; add it to zoo.models in pipeline.yml")
    return sorted(set(wanted)) if wanted else sorted(models)


# --- garbage collection ----------------------------------------------------------------------


_LAMBDA_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$")


def lambda_time(text: str | None) -> float | None:
    """Lambda's LastModified ('2026-11-27T23:17:58.841+0000'; moto: '….841873000Z') → epoch seconds."""
    m = _LAMBDA_TIME.match(text or "")
    if not m:
        return None
    tz = m[3] or "Z"
    tz = "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    frac = float(m[2]) if m[2] else 0.0
    return datetime.fromisoformat(m[1] + tz).timestamp() + frac


def gc_candidates(versions: Iterable[tuple[str, float | None]], in_use: set[str], now: float,
                  older_than: float) -> list[str]:
    """Versions (number, last modified) older than `older_than` and not in use (pure)."""
    out = []
    for v, at in versions:
        if v == "$LATEST" or not v.isdigit() or v in in_use:
            continue
        if at is not None and now - at >= older_than:
            out.append(v)
    return sorted(out, key=int)
