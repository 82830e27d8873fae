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
    reads: dict | None = None         # where what runs was read: {"ledger": n, "aws": m, ...}

    @property
    def noop(self) -> bool:
        return not any(m.changes for m in self.models)

    def changing(self) -> tuple[ModelPlan, ...]:
        return tuple(m for m in self.models if m.changes)

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for m in self.models if m.action == a) for a in (SKIP, COPY, NEW_VERSION)}

    def to_dict(self) -> dict:
        return {"stage": self.stage, "set_digest": self.set_digest, "noop": self.noop, "counts": self.counts(),
                "models": [m.to_dict() for m in self.models], **({"reads": self.reads} if self.reads else {})}

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


# --- consumer waves --------------------------------------------------------------------------

REST = "rest"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_wave(item: Any) -> tuple[str, float]:
    """One `zoo.waves` entry → ("count", n) | ("percent", p) | ("rest", 0); ValueError says why not."""
    if isinstance(item, bool):
        raise ValueError(f"wave {item!r}: expected a count (1), a percentage (\"10%\") or \"rest\"")
    if isinstance(item, int):
        if item < 1:
            raise ValueError(f"wave {item}: a count must be at least 1")
        return "count", float(item)
    if isinstance(item, str):
        if item.strip().lower() == REST:
            return REST, 0.0
        m = _PERCENT.match(item)
        if m:
            p = float(m[1])
            if not 0 < p <= 100:
                raise ValueError(f"wave {item!r}: a percentage must be above 0 and at most 100")
            return "percent", p
    raise ValueError(f"wave {item!r}: expected a count (1), a percentage (\"10%\") or \"rest\"")


def check_waves(spec: Iterable[Any]) -> list[tuple[str, float]]:
    """Parse a wave plan; `rest` only as the last wave."""
    parsed = [parse_wave(i) for i in spec]
    if not parsed:
        raise ValueError("waves is empty: give at least one wave, e.g. [1, \"10%\", \"rest\"]")
    for i, (kind, _) in enumerate(parsed):
        if kind == REST and i != len(parsed) - 1:
            raise ValueError(f"\"rest\" must be the last wave (it is wave {i + 1} of {len(parsed)})")
    return parsed


def wave_sizes(spec: Iterable[Any], n: int) -> list[int]:
    """How many of `n` consumers each wave re-points (pure; empty waves dropped).

    A count takes that many; a percentage takes ceil(p% of n) — of all n, not of what is left, so
    ["10%", "10%", "rest"] moves 10 %, then 10 % more; `rest` takes what is left. The waves stop once
    every consumer is placed. A plan that places fewer than n (no `rest`, too small a sum) is a
    ValueError: a rollout must never leave consumers on the old version silently.
    """
    import math

    sizes, left = [], n
    for kind, value in check_waves(spec):
        if left <= 0:
            break
        if kind == REST:
            take = left
        elif kind == "count":
            take = int(value)
        else:
            take = max(1, math.ceil(value * n / 100 - 1e-9))
        take = min(take, left)
        sizes.append(take)
        left -= take
    if left > 0:
        raise ValueError(f"waves place {n - left} of {n} consumer(s): add \"rest\" as the last wave "
                         f"or make the waves add up to {n} (or 100%)")
    return sizes


def split_waves(items: list[Any], spec: Iterable[Any] | None) -> list[list[Any]]:
    """`items` in order, cut into the waves of `spec` (None or empty → one wave with all of them)."""
    if not items:
        return []
    if not spec:
        return [list(items)]
    out, i = [], 0
    for size in wave_sizes(spec, len(items)):
        out.append(list(items[i:i + size]))
        i += size
    return out


def check_coverage(spec: Iterable[Any], n: int) -> None:
    """ValueError unless the waves place every consumer of any rollout: a rollout re-points the
    consumers of the models that change, so any count from 1 to n (rounding makes coverage of n
    not imply coverage of fewer: 40%+40% places 6 of 6 but 4 of 5)."""
    spec = list(spec)
    check_waves(spec)
    for k in range(1, n + 1):
        wave_sizes(spec, k)


# --- what gc must keep -----------------------------------------------------------------------


def protected_versions(records: Iterable[Mapping[str, Any]]) -> set[str]:
    """`function:version` strings gc must never delete, from the stage's zoo records (newest first;
    each: {"operation", "state", "models", "reverted_by"}) — pure.

    * per function, the versions of the newest record that touched it, whatever its state (an
      apply: the version it published and the one it replaced; a revert: the one it went back to) — so an apply
      of another model never frees this model's live or previous version;
    * the previous version of every succeeded apply not reverted yet: `pt zoo revert` walks back
      through them one by one, so each must still be there.
    """
    keep: set[str] = set()
    seen: set[str] = set()
    for r in records:
        op = r.get("operation")
        for m in r.get("models") or []:
            fn = m.get("function")
            if not fn:
                continue
            if op == "apply":
                ends = (m.get("version"), m.get("previous_version"))
                if r.get("state") == "succeeded" and not r.get("reverted_by") and m.get("previous_version"):
                    keep.add(f"{fn}:{m['previous_version']}")
            elif op == "revert":
                ends = (m.get("to_version"),)  # what it reverted from is the version nobody wants back
            else:
                continue
            if fn not in seen:
                seen.add(fn)
                keep.update(f"{fn}:{v}" for v in ends if v)
    return keep


# --- what runs, as the ledger left it (plan's cache) -----------------------------------------

UNKNOWN = object()  # a function whose state the ledger cannot tell: read it from AWS


class LedgerView:
    """What each zoo function runs according to the stage's zoo records (fed newest first) — pure.

    pt zoo is the only writer of its functions' alias `live` and records every move, so the newest
    record that touched a function tells what runs, as long as it ended cleanly:
    * a succeeded apply: the version it published (and its artifacts, image);
    * an apply rolled back or reverted (and its revert record) changed nothing in the end: look
      further back, expecting the version it went back to;
    * anything else (running, failed with undo errors, older records without the image) → unknown.
    `state(fn)` is a Deployed, or UNKNOWN (read it from AWS). A hand-moved alias is not seen here:
    `pt zoo plan --refresh` and every `pt zoo apply` read AWS instead.
    """

    def __init__(self, functions: Iterable[str]):
        self.wanted = set(functions)
        self.known: dict[str, Any] = {}
        self._expect: dict[str, str | None] = {}  # version a transparent record went back to (None: no function)

    @property
    def done(self) -> bool:
        return len(self.known) == len(self.wanted)

    def state(self, fn: str) -> Any:
        if fn in self.known:
            return self.known[fn]
        return Deployed(fn) if self._expect.get(fn, "?") is None else UNKNOWN

    def _settle(self, fn: str, value: Any) -> None:
        if fn not in self.wanted or fn in self.known:
            return
        if fn in self._expect and value is not UNKNOWN:
            exp = self._expect[fn]
            got = value.version if value.exists else None
            value = value if got == exp else UNKNOWN
        self.known[fn] = value

    def feed(self, rec: Mapping[str, Any]) -> None:
        op, st = rec.get("operation"), rec.get("state")
        models = rec.get("models") or []
        if op not in ("apply", "revert") or (op == "apply" and rec.get("refused")):
            return
        if op == "revert":
            if st != "succeeded":
                for m in models:
                    self._settle(m.get("function"), UNKNOWN)
            return  # a succeeded revert: the apply it reverted is marked reverted_by, see below
        transparent = st == "rolled_back" or (st == "succeeded" and rec.get("reverted_by"))
        for m in models:
            fn = m.get("function")
            if fn not in self.wanted or fn in self.known:
                continue
            if transparent:
                if fn not in self._expect:
                    self._expect[fn] = None if m.get("created") else m.get("previous_version")
            elif st == "succeeded" and m.get("version") and m.get("image_repo") and m.get("image_digest"):
                self._settle(fn, Deployed(fn, True, m["version"], m.get("artifacts"), m["image_digest"],
                                          f"{m['image_repo']}@{m['image_digest']}"))
            else:
                self._settle(fn, UNKNOWN)
