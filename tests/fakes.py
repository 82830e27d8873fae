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


class FakeTarget:
    """An in-memory `Target` (release/target.py): `live` is what serves (version, digest, weights).

    `fail` maps a method name (current, check, prepare, smoke, shift, restore, finish) to an
    exception raised on its next call(s): `fail_at` (shift) raises only at that percent;
    `on_shift` runs a callback (e.g. deliver a signal) after a shift. `calls` records every call.
    """

    def __init__(self, tid: str, digest: str | None = "sha256:" + "0" * 64, *, version: str | None = "1",
                 weighted: bool = True, exists: bool = True, calls: list | None = None):
        self.id = tid
        self.weighted = weighted
        self.live: dict = {"version": version if exists else None, "digest": digest if exists else None,
                           "weights": {}, "exists": exists}
        self.versions: dict[str, str] = {version: digest} if exists and version else {}
        self.fail: dict[str, BaseException] = {}
        self.fail_at: int | None = None
        self.on_shift = None
        self.calls = calls if calls is not None else []
        self.extra_unchanged = None      # set to a callable to model the optional `unchanged`
        self.next = int(version or 0) + 1

    def _maybe_fail(self, method: str) -> None:
        self.calls.append((self.id, method))
        if method in self.fail:
            raise self.fail[method]

    def check(self) -> None:
        self._maybe_fail("check")

    def current(self):
        from pipeline_tools.release.target import Placement

        self._maybe_fail("current")
        live = self.live
        return Placement(self.id, f"res-{self.id}", live["exists"], live["version"], live["digest"],
                         dict(live["weights"]))

    def prepare(self, release, placement):
        from pipeline_tools.release.target import Candidate

        self._maybe_fail("prepare")
        v = str(self.next)
        self.next += 1
        self.versions[v] = release.digest
        return Candidate(self.id, v, release.digest)

    def smoke(self, candidate) -> None:
        self._maybe_fail("smoke")

    def shift(self, placement, candidate, percent: int) -> None:
        self.calls.append((self.id, "shift", percent))
        if "shift" in self.fail and (self.fail_at is None or self.fail_at == percent):
            raise self.fail["shift"]
        if percent >= 100 or not placement.exists:
            self.live = {"version": candidate.version, "digest": candidate.digest, "weights": {}, "exists": True}
        else:
            self.live = {"version": placement.version, "digest": placement.digest, "exists": True,
                         "weights": {candidate.version: percent / 100}}
        if self.on_shift is not None:
            self.on_shift(percent)

    def restore(self, placement) -> None:
        self._maybe_fail("restore")
        self.live = {"version": placement.version, "digest": placement.digest, "weights": {},
                     "exists": placement.exists}

    def finish(self, placement, candidate) -> list[str]:
        self._maybe_fail("finish")
        return [placement.version] if placement.version else []

    def describe(self) -> dict:
        return dict(self.live)

    def alarm_dimensions(self, candidate) -> list[dict[str, str]]:
        return [{"Name": "Version", "Value": candidate.version}]

    def __getattr__(self, name: str):
        if name == "unchanged" and self.__dict__.get("extra_unchanged") is not None:
            return self.__dict__["extra_unchanged"]
        raise AttributeError(name)
