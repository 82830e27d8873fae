"""Small fakes the tests share."""

from __future__ import annotations


class Clock:
    """A clock that stands still until a test advances it."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s
