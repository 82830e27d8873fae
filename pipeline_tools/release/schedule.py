"""Traffic schedules (pure): which share of traffic the new version gets, step by step.

Public API
- `Step(percent, wait)`: set the new version to `percent` % of alias traffic, then watch the gate
  for `wait` seconds before the next step. The last step is always 100 % with wait 0 (the bake
  after it is separate).
- `steps(strategy, percent=None, interval=0) -> tuple[Step, ...]`:
  all-at-once → [100]; canary P → [P, 100]; linear P → [P, 2P, …, 100].
- `weights(percent, old, new) -> (primary_version, {version: weight})`: the alias update for a step
  (`AdditionalVersionWeights` takes fractions 0..1 of the *additional* version).
- `total_time(steps, bake)`: the planned duration.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("all-at-once", "canary", "linear")


@dataclass(frozen=True)
class Step:
    percent: int
    wait: float

    def to_dict(self) -> dict:
        return {"percent": self.percent, "wait": self.wait}


def steps(strategy: str, percent: int | None = None, interval: float = 0.0) -> tuple[Step, ...]:
    if strategy == "all-at-once":
        return (Step(100, 0.0),)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use {', '.join(STRATEGIES)})")
    if percent is None or not 1 <= percent <= 99:
        raise ValueError(f"strategy {strategy} needs a percent between 1 and 99 (got {percent!r})")
    if interval < 0:
        raise ValueError("interval must not be negative")
    if strategy == "canary":
        return (Step(percent, interval), Step(100, 0.0))
    out = [Step(p, interval) for p in range(percent, 100, percent)]
    return (*out, Step(100, 0.0))


def weights(percent: int, old: str | None, new: str) -> tuple[str, dict[str, float]]:
    """Alias target for a step: at 100 % (or with no old version) only the new version."""
    if percent >= 100 or old is None or old == new:
        return new, {}
    return old, {new: round(percent / 100.0, 4)}


def total_time(plan_steps: tuple[Step, ...], bake: float) -> float:
    return sum(s.wait for s in plan_steps) + bake
