"""The `Target` protocol: the seam between the release engine and what it deploys.

The engine (plan → lock → prepare → shift → bake → finish, or restore) owns schedules, the lock,
signals, the ledger states and recovery. A target owns only its AWS calls: it reads what it
serves now (`current`), makes a candidate that takes no traffic (`prepare`), moves traffic
(`shift`) after an optional `smoke` check, cleans up after success (`finish`) and puts a
recorded placement back (`restore`).
The engine imports this module, never a concrete target; commands wire targets in
(`pipeline_tools.targets.build_targets`).

Every value that crosses the seam is JSON-able (`to_dict`/`from_dict`), because the ledger
records placements and candidates before traffic moves, and `pt recover` rebuilds them from
the record in another process.

Target ids are `<kind>:<name>`: `lambda:predict`, `sagemaker:scorer`, `stepfunctions:flow`,
`batch:score`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

KINDS = ("lambda", "sagemaker", "stepfunctions", "batch")


@dataclass(frozen=True)
class Release:
    """What is being released: the image (by digest) and the deploy it belongs to."""

    image_uri: str           # repo@sha256:…
    digest: str              # sha256:…
    deploy_id: str
    image: str = ""          # key of `images:` in pipeline.yml

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """What a target serves now; enough to describe it and to put it back exactly."""

    target: str                                   # target id, e.g. "lambda:predict"
    resource: str                                 # physical name or ARN
    exists: bool                                  # False: nothing live yet (first deploy)
    version: str | None = None                    # live version / variant / revision
    digest: str | None = None                     # what that version runs (image digest or definition hash)
    weights: dict[str, float] = field(default_factory=dict)  # extra routing in effect (a shift in progress)
    data: dict[str, Any] = field(default_factory=dict)        # kind-specific, JSON-able

    @property
    def kind(self) -> str:
        return self.target.split(":", 1)[0]

    def serves(self, digest: str) -> bool:
        """True when this placement already runs `digest` with all traffic (nothing to do)."""
        return self.exists and not self.weights and self.digest == digest

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Placement:
        return cls(d["target"], d["resource"], bool(d["exists"]), d.get("version"), d.get("digest"),
                   dict(d.get("weights") or {}), dict(d.get("data") or {}))


@dataclass(frozen=True)
class Candidate:
    """A prepared new version that takes no traffic until `shift`."""

    target: str
    version: str
    digest: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        return cls(d["target"], d["version"], d["digest"], dict(d.get("data") or {}))


@runtime_checkable
class Target(Protocol):
    """One deployable thing of a stage. Implementations live in `pipeline_tools.targets`."""

    id: str                  # "<kind>:<name>"
    weighted: bool           # False: traffic cannot be split (batch); the engine goes 0 → 100 in one step

    def current(self) -> Placement:
        """What is live now. Raises PtError (exit 2) when the resource does not exist."""
        ...

    def prepare(self, release: Release, placement: Placement) -> Candidate:
        """Publish a version / model / revision for `release`; no traffic moves."""
        ...

    def smoke(self, candidate: Candidate) -> None:
        """Exercise the candidate before any traffic moves (a smoke invoke, a smoke job); raise on failure.
        A target with nothing configured to run returns at once."""
        ...

    def shift(self, placement: Placement, candidate: Candidate, percent: int) -> None:
        """Send `percent` (0–100) of traffic to the candidate, the rest to the placement."""
        ...

    def restore(self, placement: Placement) -> None:
        """Put `placement` back with all traffic (idempotent; `exists=False` removes what a first deploy made)."""
        ...

    def finish(self, placement: Placement, candidate: Candidate) -> list[str]:
        """Housekeeping after success (prune old versions); returns what was removed. Never raises for it."""
        ...

    def describe(self) -> dict:
        """For `pt status`: what is live, JSON-able."""
        ...

    def alarm_dimensions(self, candidate: Candidate) -> list[dict[str, str]]:
        """CloudWatch dimensions that select the candidate's own metrics (for the gate)."""
        ...


def target_id(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def split_id(tid: str) -> tuple[str, str]:
    kind, _, name = tid.partition(":")
    return kind, name
