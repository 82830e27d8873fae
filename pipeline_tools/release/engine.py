"""The release engine: plan → lock → prepare → smoke → shift (by schedule) → bake → finish, or restore.

It drives a list of `Target`s (release/target.py) in the stage's order and knows no concrete
kind: Lambda, SageMaker, Step Functions and Batch live behind the protocol
(`pipeline_tools.targets.build_targets` wires them in; this module never imports them).

A release is a state machine recorded in the ledger (one `deploy` record, id = deploy id):
`locked → updating (prepare + smoke) → shifting (per step) → baking → finishing → succeeded`,
or `… → rolling_back → rolled_back`, or `failed` (traffic never moved). Each state is written
*before* the work it names; placements (what ran) are recorded when the record is created and
candidates before any traffic moves, so `recover` in another process can put every target back
(or finish forward) from the record alone (`Placement/Candidate.from_dict`).

Guarantees (the same as the Lambda-only engine had):
- schedules from release/schedule.py; a target with `weighted=False` goes 0 → 100 in one step,
  at the schedule's last (100 %) step, so a canary that fails never touches it;
- the alarm gate (GateWatch) polled through every step and the bake; candidates whose target
  declares `error_metrics` are also checked with GetMetricData on their `alarm_dimensions`
  (the new version's own errors); the gate fails closed (an unreadable step is a FAIL);
- a fenced stage lock renewed by a heartbeat; SIGTERM/SIGINT → restore;
- prepare/smoke failure → `failed`, traffic untouched; a failure after traffic moved restores
  every target already changed, in reverse order, recorded per target (`restored`).

Optional target extras used when present: `check()` (validate before any change) and
`unchanged(placement, release) -> bool` (else `placement.serves(release.digest)`);
`error_metrics`: ((namespace, metric), …) to read with the candidate's alarm_dimensions.

Rollback (`rollback`) is a release whose candidates exist already (`Plan.reuse`: what an earlier
deploy left live): no prepare, no smoke, no gate, no bake; it moves every target it can and, if one
fails, is left unfinished (lock released) for `recover` to finish forward; it is never undone.

Public API: `EngineDeps`, `Plan`, `plan(cfg, stage, targets, release, …)`, `run(plan, deps, …)`
→ `Result` (raises DeployFailed after a restore), `recover(stage, deps, targets_by_id, …)`,
`rollback(cfg, stage, deps, build, …)`, `rollback_records`, `left_live(record)`,
`is_engine_record`, `describe(targets)`, `Interrupted`, `GateFailed`, `Signals`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline_tools.core.errors import DeployFailed, UsageError
from pipeline_tools.release import schedule
from pipeline_tools.release.gate import GatePolicy, GateWatch
from pipeline_tools.release.ledger import DEPLOY, FenceLost, Ledger, Lock, Record, iso, lease_from_env, new_id
from pipeline_tools.release.target import Candidate, Placement, Release, Target

ENGINE_VERSION = 1


# --- signals / failures ------------------------------------------------------------------------


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived: restore. BaseException so no library swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class GateFailed(Exception):
    def __init__(self, summary: str, phase: str, verdict: dict | None = None):
        super().__init__(summary)
        self.summary = summary
        self.phase = phase
        self.verdict = verdict


class Signals:
    """Turns SIGTERM/SIGINT into Interrupted; while shielded (restoring) they only set a flag."""

    def __init__(self) -> None:
        self.shielded = False
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        self.received = signum
        if not self.shielded:
            self.shielded = True  # one interruption; later signals wait for the restore
            raise Interrupted(signum)

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    @contextmanager
    def shield(self) -> Iterator[None]:
        prev, self.shielded = self.shielded, True
        try:
            yield
        finally:
            self.shielded = prev


def failed(message: str, hint: str | None, deploy_id: str) -> DeployFailed:
    """DeployFailed that names its record (`.deploy_id`)."""
    err = DeployFailed(message, hint)
    err.deploy_id = deploy_id  # type: ignore[attr-defined]
    return err


def reason_of(exc: BaseException, phase: str) -> tuple[str, dict | None]:
    if isinstance(exc, GateFailed):
        return f"gate FAIL while {exc.phase}: {exc.summary}", exc.verdict
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc} while {phase}", None
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted (Ctrl-C) while {phase}", None
    from pipeline_tools.core.errors import translate

    err = translate(exc)
    text = err.message if err is not None else f"{type(exc).__name__}: {exc}"
    return f"error while {phase}: {text}", None


# --- inputs ------------------------------------------------------------------------------------


@dataclass
class EngineDeps:
    cloudwatch: Any
    ledger: Ledger
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = lambda _m: None
    actor: dict = field(default_factory=dict)
    lease: float = field(default_factory=lease_from_env)
    s3: Any = None   # reads gate report signals (gate.signals[].report); without it they fail closed


def unchanged(target: Target, placement: Placement, release: Release) -> bool:
    extra = getattr(target, "unchanged", None)
    if callable(extra):
        return bool(extra(placement, release))
    return placement.serves(release.digest)


@dataclass(frozen=True)
class Plan:
    stage: str
    release: Release
    strategy: str
    steps: tuple[schedule.Step, ...]
    bake: float
    poll: float
    policy: GatePolicy | None            # None: no gate (a rollback)
    targets: tuple[Any, ...]             # Target, in the stage's order
    placements: Mapping[str, Placement]
    operation: str = "deploy"
    # candidates that exist already (a rollback returns to recorded versions): no prepare/smoke
    reuse: Mapping[str, Candidate] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.release.digest

    @property
    def order(self) -> list[str]:
        return [t.id for t in self.targets]

    def changing(self) -> tuple[Any, ...]:
        return tuple(t for t in self.targets if not self._unchanged(t))

    def _unchanged(self, t: Any) -> bool:
        p = self.placements[t.id]
        if t.id in self.reuse:
            return p.exists and not p.weights and p.version == self.reuse[t.id].version
        return unchanged(t, p, self.release)

    @property
    def noop(self) -> bool:
        return not self.changing()

    def to_dict(self) -> dict:
        changing = {t.id for t in self.changing()}
        return {"stage": self.stage, "operation": self.operation, "release": self.release.to_dict(),
                "digest": self.release.digest, "image_uri": self.release.image_uri, "image": self.release.image,
                "strategy": self.strategy, "steps": [s.to_dict() for s in self.steps], "bake": self.bake,
                "poll": self.poll, "noop": self.noop,
                "gate": ({"alarms": list(self.policy.patterns), "insufficient_data": self.policy.insufficient_data,
                          "preexisting_alarm": self.policy.preexisting_alarm} if self.policy else None),
                "targets": [{"target": t.id, "weighted": bool(getattr(t, "weighted", True)),
                             "changes": t.id in changing, "placement": self.placements[t.id].to_dict()}
                            for t in self.targets]}

    def lines(self) -> list[str]:
        out = [f"{self.operation} {self.release.image or 'image'} {self.release.digest[:19]}… to {self.stage} "
               f"({self.strategy}: " + " → ".join(f"{s.percent}%" for s in self.steps)
               + f", bake {self.bake:g}s, poll {self.poll:g}s)"]
        changing = {t.id for t in self.changing()}
        for t in self.targets:
            p = self.placements[t.id]
            live = f"v{p.version} {(p.digest or '?')[:19]}" if p.exists else "nothing live yet"
            extra = f" (weighted {p.weights})" if p.weights else ""
            out.append(f"  {t.id}: live {live}{extra} {'→ new version' if t.id in changing else 'unchanged'}")
        return out


def steps_for(cfg: Any, stage: str, strategy: str | None = None) -> tuple[str, tuple[schedule.Step, ...]]:
    st = cfg.stage(stage)
    strategy = strategy or st.deploy.strategy
    percent = st.deploy.percent
    if strategy in ("canary", "linear") and percent is None:
        percent = 10 if strategy == "canary" else 25
    try:
        return strategy, schedule.steps(strategy, percent, st.deploy.interval)
    except ValueError as e:
        raise UsageError(str(e)) from None


def read_placements(targets: Sequence[Any]) -> dict[str, Placement]:
    """`check()` (when a target has it) for every target first, then what each serves now."""
    for t in targets:
        check = getattr(t, "check", None)
        if callable(check):
            check()
    return {t.id: t.current() for t in targets}


def plan(cfg: Any, stage: str, targets: Sequence[Any], release: Release, *, strategy: str | None = None,
         operation: str = "deploy", reuse: Mapping[str, Candidate] | None = None) -> Plan:
    if not targets:
        raise UsageError(f"stage {stage} has no deploy target", "add `functions:` or `targets:` to pipeline.yml")
    st = cfg.stage(stage)
    if operation == "rollback":
        return Plan(stage, release, "rollback", (schedule.Step(100, 0.0),), 0.0, st.gate.poll, None,
                    tuple(targets), read_placements(targets), operation, dict(reuse or {}))
    strategy, steps = steps_for(cfg, stage, strategy)
    return Plan(stage, release, strategy, steps, st.deploy.bake, st.gate.poll, GatePolicy.from_config(cfg, stage),
                tuple(targets), read_placements(targets), operation, dict(reuse or {}))


@dataclass(frozen=True)
class Result:
    deploy_id: str
    state: str
    plan: Plan
    candidates: dict[str, Candidate]
    verdict: dict | None
    reason: str | None
    started: float
    finished: float
    cleaned: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        rel = self.plan.release
        return {"deploy_id": self.deploy_id, "state": self.state, "operation": self.plan.operation,
                "stage": self.plan.stage, "image": rel.image, "digest": rel.digest, "image_uri": rel.image_uri,
                "strategy": self.plan.strategy, "reason": self.reason,
                "targets": [{"target": t.id, "name": self.plan.placements[t.id].resource,
                             "previous_version": self.plan.placements[t.id].version,
                             "version": (self.candidates[t.id].version if t.id in self.candidates
                                         else self.plan.placements[t.id].version),
                             "changed": t.id in self.candidates} for t in self.plan.targets],
                "verdict": self.verdict, "cleaned": self.cleaned, "started": iso(self.started),
                "duration_s": round(self.finished - self.started, 3)}


# --- the gate ----------------------------------------------------------------------------------


class MetricCheck:
    """Reads each candidate's own error metrics (GetMetricData on its alarm_dimensions) since the
    window start. Any error counted → FAIL; an unreadable metric → an error (fail closed at the
    end of the step)."""

    def __init__(self, cloudwatch: Any, start: float):
        self.cw = cloudwatch
        self.start = start
        self.queries: list[tuple[str, str, str, list[dict[str, str]]]] = []

    def add(self, target: Any, candidate: Candidate) -> None:
        metrics = getattr(target, "error_metrics", ()) or ()
        dims = [d for d in target.alarm_dimensions(candidate) if d.get("Name") and d.get("Value") is not None]
        if not dims:
            return
        for namespace, metric in metrics:
            self.queries.append((target.id, namespace, metric, dims))

    def read(self, now: float) -> tuple[list[str], list[str]]:
        """(failures, read errors)."""
        if not self.queries:
            return [], []
        from datetime import UTC, datetime

        q = [{"Id": f"m{i}", "ReturnData": True,
              "MetricStat": {"Metric": {"Namespace": ns, "MetricName": m, "Dimensions": dims},
                             "Period": 60, "Stat": "Sum"}}
             for i, (_t, ns, m, dims) in enumerate(self.queries)]
        try:
            resp = self.cw.get_metric_data(MetricDataQueries=q,
                                           StartTime=datetime.fromtimestamp(self.start - 60, UTC),
                                           EndTime=datetime.fromtimestamp(now + 60, UTC))
        except Exception as e:
            return [], [f"GetMetricData failed: {e}"]
        by_id = {r.get("Id"): r for r in resp.get("MetricDataResults") or []}
        fails, errors = [], []
        for i, (tid, ns, m, dims) in enumerate(self.queries):
            r = by_id.get(f"m{i}")
            if r is None or r.get("StatusCode") not in (None, "Complete", "PartialData"):
                errors.append(f"{tid}: {ns}/{m} unreadable ({(r or {}).get('StatusCode', 'missing')})")
                continue
            total = sum(float(v) for v in r.get("Values") or [])
            if total > 0:
                where = ", ".join(f"{d['Name']}={d['Value']}" for d in dims)
                fails.append(f"{tid}: {m}={total:g} on the candidate ({where})")
        return fails, errors


# --- heartbeat ---------------------------------------------------------------------------------


class _Heartbeat:
    """Renews the stage lock every lease/3 s from a daemon thread while the process lives."""

    def __init__(self, run: _Run):
        self.run = run
        self.stopped = threading.Event()
        self.lost: str | None = None
        self.fence_lost = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="pt-engine-heartbeat", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        d = self.run.d
        last_ok = d.clock()
        while not self.stopped.wait(max(0.05, d.lease / 3)):
            try:
                if self.run.lock is not None:
                    self.run.lock = d.ledger.renew(self.run.lock, d.lease)
                    last_ok = d.clock()
            except FenceLost as e:
                self.fence_lost = True
                self.lost = e.message
                return
            except Exception as e:
                failing = d.clock() - last_ok
                if failing >= d.lease * 2 / 3:  # stop before another process may take the stage
                    self.lost = (f"lock renewal on stage {self.run.plan.stage} failing for {failing:.0f}s "
                                 f"(lease {d.lease:g}s; last error: {e})")
                    return
                d.log(f"warning: lock renewal failed ({e}); retrying")

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)


# --- one run -----------------------------------------------------------------------------------


class _Run:
    def __init__(self, plan_: Plan, deps: EngineDeps, sig: Signals, watch: GateWatch | None):
        self.plan, self.d, self.sig, self.watch = plan_, deps, sig, watch
        self.id = ""
        self.lock: Lock | None = None
        self.rec: Record | None = None
        self.record_written = False
        self.candidates: dict[str, Candidate] = {}
        self.touched: list[str] = []          # target ids whose traffic moved, in order
        self.last_verdict: dict | None = None
        self.heartbeat: _Heartbeat | None = None
        self.metrics: MetricCheck | None = None
        self.restored: dict[str, str] = {}
        self.passed: list[tuple[str, float]] = []  # states the next write records (pass_through)

    @property
    def stage(self) -> str:
        return self.plan.stage

    @property
    def fence_lost(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.fence_lost

    def check_lock(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost:
            hint = ("another process took the stage over; see `pt status`" if self.heartbeat.fence_lost
                    else "check access to the ledger table; `pt status` shows where the stage ended")
            raise DeployFailed(self.heartbeat.lost, hint)

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()

    def mark(self, state: str, reason: str | None = None, **data: Any) -> Record:
        self.check_lock()
        via, self.passed = tuple(self.passed), []
        self.rec = self.d.ledger.transition(self.stage, self.id, state, reason=reason, actor=self.d.actor,
                                            data=data or None, current=self.rec, lock=self.lock, via=via)
        return self.rec

    def pass_through(self, state: str) -> None:
        """A state entered and left with nothing in between worth a write of its own (no request,
        no wait): recorded, with its time, by the next write."""
        self.passed.append((state, self.d.clock()))

    def target_data(self) -> dict:
        return {"placements": {k: v.to_dict() for k, v in self.plan.placements.items()},
                "candidates": {k: v.to_dict() for k, v in self.candidates.items()},
                "changing": [t.id for t in self.plan.changing()]}

    # phases
    def prepare(self) -> None:
        rel = self.plan.release
        for t in self.plan.changing():
            if t.id in self.plan.reuse:
                self.candidates[t.id] = self.plan.reuse[t.id]
        for t in self.plan.changing():
            if t.id in self.plan.reuse:
                continue
            self.d.log(f"{t.id}: preparing {rel.digest[:19]}…")
            # recorded with the first `shifting` step (before traffic moves), or with `failed`
            self.candidates[t.id] = t.prepare(rel, self.plan.placements[t.id])
            self.check_lock()
        for t in self.plan.changing():
            if t.id not in self.plan.reuse:
                t.smoke(self.candidates[t.id])
        if self.candidates:
            self.d.log("prepared " + ", ".join(f"{k} {c.version}" for k, c in self.candidates.items()))

    def shift(self) -> None:
        changing = self.plan.changing()
        last = len(self.plan.steps) - 1
        for i, step in enumerate(self.plan.steps):
            movers = [t for t in changing if getattr(t, "weighted", True) or i == last]
            if not movers:
                continue
            # placements and candidates are recorded before any traffic moves
            self.mark("shifting", percent=step.percent, **self.target_data())
            errors: list[Exception] = []
            with self.sig.shield():  # every target of the step moves, then a signal may act
                for t in movers:
                    pct = step.percent if getattr(t, "weighted", True) else 100
                    if t.id not in self.touched:
                        self.touched.append(t.id)
                    try:
                        t.shift(self.plan.placements[t.id], self.candidates[t.id], pct)
                    except Exception as e:
                        if self.plan.operation != "rollback":
                            raise
                        errors.append(e)  # a rollback moves every target it can back, then stops
            if errors:
                raise errors[0]
            if self.sig.received:
                raise Interrupted(self.sig.received)
            self.d.log(f"traffic {step.percent}% on the new version" + (f", watching {step.wait:g}s" if step.wait
                                                                          else ""))
            if self.watch is not None and (step.wait or step.percent < 100):
                self.watch_for(step.wait, f"shifting {step.percent}%")

    def bake(self) -> None:
        if self.watch is None:  # a rollback: no gate, no bake
            return
        if self.plan.bake:
            self.mark("baking")
        else:  # one gate poll, no wait: the next write records it
            self.pass_through("baking")
        if self.plan.bake:
            self.d.log(f"baking {self.plan.bake:g}s")
        if not self.watch_for(self.plan.bake, "baking"):
            raise GateFailed(self.last_summary, "baking (gate undecided at the end of the bake)", self.last_verdict)

    last_summary = ""

    def watch_for(self, seconds: float, phase: str) -> bool:
        """Poll the gate until `seconds` pass; True when the last poll PASSed."""
        assert self.watch is not None
        end = self.d.clock() + seconds
        while True:
            self.check_lock()
            now = self.d.clock()
            v = self.watch.poll(now)
            if self.metrics and seconds > 0:
                fails, errors = self.metrics.read(now)
                metrics: dict = {"failures": fails, "errors": errors}
            else:  # no window to observe (a 0 s bake or step): a new version's metrics cannot exist yet
                fails, errors = [], []
                metrics = {"failures": [], "errors": [], "skipped": "no observation window (0 s)"}
            self.last_verdict = {**v.to_dict(), "candidate_metrics": metrics}
            self.last_summary = "; ".join([v.summary(), *fails, *errors])
            if v.failed or fails:
                raise GateFailed("; ".join([v.summary()] * v.failed + fails), phase, self.last_verdict)
            now = self.d.clock()
            if now >= end:
                if (v.errors and not v.passed) or errors:  # no evidence for this step: never move on
                    raise GateFailed(self.last_summary, phase + " (the gate could not read its evidence)",
                                     self.last_verdict)
                return v.passed and not errors
            self.d.sleep(max(0.0, min(self.plan.poll, end - now)))

    def finish_work(self) -> bool:
        """Whether any target's finish makes requests (e.g. pruning versions beyond keep_versions).
        A target without `finish_needed` is assumed to."""
        for t in self.plan.changing():
            needed = getattr(t, "finish_needed", None)
            if not callable(needed) or needed(self.plan.placements[t.id], self.candidates[t.id]):
                return True
        return False

    def finish(self) -> dict[str, list[str]]:
        if not self.finish_work():  # nothing to clean up: `finishing` goes with the last write
            self.pass_through("finishing")
            return {}
        self.mark("finishing", verdict=self.last_verdict)
        out: dict[str, list[str]] = {}
        for t in self.plan.changing():
            try:
                done = t.finish(self.plan.placements[t.id], self.candidates[t.id])
            except Exception as e:  # housekeeping never fails a good release
                self.d.log(f"warning: {t.id}: cleanup failed: {e}")
                done = []
            if done:
                out[t.id] = list(done)
        return out

    def restore_touched(self) -> list[str]:
        """Every target whose traffic moved back to its placement, in reverse order."""
        by_id = {t.id: t for t in self.plan.targets}
        errors = []
        for tid in reversed(self.touched):
            try:
                _retry(lambda tid=tid: by_id[tid].restore(self.plan.placements[tid]), self.d.sleep)
                self.restored[tid] = "restored"
                self.d.log(f"{tid}: restored")
            except Exception as e:
                self.restored[tid] = f"error: {e}"
                errors.append(f"{tid}: {e}")
        return errors


def _retry(fn: Callable[[], Any], sleep: Callable[[float], None], attempts: int = 3) -> Any:
    for attempt in range(attempts):
        try:
            return fn()
        except Exception:
            if attempt == attempts - 1:
                raise
            sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def run(plan_: Plan, deps: EngineDeps, *, window: dict | None = None, extra: dict | None = None) -> Result:
    """Run a planned release to the end: succeeded, or restored / failed (DeployFailed raised).
    `extra`: more data for the ledger record (a rollback's `target`/`current`)."""
    d, stage = deps, plan_.stage
    started = d.clock()
    with Signals() as sig:
        watch = None
        if plan_.policy is not None:
            watch = GateWatch(d.cloudwatch, plan_.policy, started, sleep=d.sleep, s3=d.s3)
            firing = watch.start()
            if firing and plan_.policy.preexisting_alarm == "block":
                names_ = ", ".join(f"{a.name} (since {iso(a.since)})" for a in firing)
                raise DeployFailed(f"alarm already in ALARM before the deploy to {stage}: {names_}",
                                   "fix or silence it first, or set gate.preexisting_alarm: ignore for this stage")
        r = _Run(plan_, d, sig, watch)
        r.id = new_id(started)
        if watch is not None:
            r.metrics = MetricCheck(d.cloudwatch, started)
        # a signal while taking the lock must not leave a lock without its record
        sig.shielded = True
        r.lock = d.ledger.acquire(stage, r.id, d.actor, d.lease)
        r.heartbeat = _Heartbeat(r)
        r.heartbeat.start()
        phase = "locking"
        try:
            sig.shielded = False
            if sig.received:
                raise Interrupted(sig.received)
            # under the lock: what runs now (another release may have finished since the plan). A
            # target that can make its first traffic write conditional on what the plan read
            # (`arm_fence`) is not read again: a change in between fails that write, before any
            # traffic moves.
            fresh = {}
            for t in plan_.targets:
                arm = getattr(t, "arm_fence", None)
                if callable(arm):
                    arm(plan_.placements[t.id])
                    fresh[t.id] = plan_.placements[t.id]
                else:
                    fresh[t.id] = t.current()
            if fresh != dict(plan_.placements):
                d.log("the stage changed while waiting for the lock: using what runs now")
            import dataclasses

            plan_ = r.plan = dataclasses.replace(plan_, placements=fresh,
                                                 release=dataclasses.replace(plan_.release, deploy_id=r.id))
            rel = plan_.release
            data = {"operation": plan_.operation, "engine": ENGINE_VERSION, "image": rel.image,
                    "image_uri": rel.image_uri, "digest": rel.digest, "strategy": plan_.strategy,
                    "plan": plan_.to_dict(), "order": plan_.order, **r.target_data(),
                    "lease": d.lease, "pid": os.getpid(),
                    "preexisting_alarms": sorted(watch.preexisting) if watch else [],
                    "gate_start": watch.snapshot.to_dict() if watch and watch.snapshot else None, **(extra or {})}
            overridden = bool(window and window.get("overridden"))
            if window:
                data["window"] = window
            updating = any(t.id not in plan_.reuse for t in plan_.changing())
            r.rec = d.ledger.put_record(DEPLOY, stage, data, actor=d.actor, state="locked", record_id=r.id,
                                        reason=(f"window override: {window.get('reason')}" if overridden and window
                                                else (extra or {}).get("reason")), lock=r.lock,
                                        then=("updating",) if updating else ())
            r.record_written = True
            if overridden and window:
                r.rec = d.ledger.append_event(stage, r.id, "window-override", actor=d.actor,
                                              reason=window.get("reason"), lock=r.lock)
            d.log(f"{plan_.operation} {r.id}: locked stage {stage}")
            phase = "preparing"
            r.prepare()
            if watch is not None:
                for t in plan_.changing():
                    r.metrics.add(t, r.candidates[t.id])  # type: ignore[union-attr]
            phase = "shifting"
            r.shift()
            phase = "baking"
            r.bake()
            phase = "finishing"
            sig.shielded = True  # reached 100 % and baked: completes forward, signals or not
        except BaseException as exc:
            sig.shielded = True  # a second signal must not interrupt the restore
            reason, verdict = reason_of(exc, phase)
            if plan_.operation == "rollback" and r.touched:
                _rollback_stopped(r, reason, exc)
            released = _abort(r, reason, verdict)
            state = ("rolled back" if released else "stopped while restoring") if r.touched else "failed"
            sig_note = f" (received {signal.Signals(sig.received).name})" if sig.received else ""
            hint = None if released else f"restore incomplete: run `pt recover --stage {stage}`"
            if r.fence_lost:
                hint = f"another process took stage {stage} over and records the outcome; see `pt status`"
            raise failed(f"{plan_.operation} {r.id} to {stage} {state}: {reason}{sig_note}", hint, r.id) \
                from (exc if isinstance(exc, Exception) else None)
        cleaned = r.finish()
        r.stop_heartbeat()
        note = f" ({signal.Signals(sig.received).name} received while finishing)" if sig.received else ""
        why = "gate PASS after bake" if watch is not None else f"{plan_.operation} done"
        current = (extra or {}).get("current")
        superseding = plan_.operation == "rollback" and bool(current)
        try:  # fenced, not check_lock(): a renewal hiccup after the bake must not undo a good release
            done = {**r.target_data(), "cleaned": cleaned}
            if watch is not None:
                done["gate_snapshot"] = watch.snapshot_now().to_dict()
                done["verdict"] = r.last_verdict
            via, r.passed = tuple(r.passed), []
            # the last write releases the lock in the same transaction (unless a fenced event follows)
            r.rec = d.ledger.transition(stage, r.id, "succeeded", reason=why + note, actor=d.actor, data=done,
                                        current=r.rec, lock=r.lock, via=via, release=not superseding)
            if superseding:
                d.ledger.append_event(stage, current, "rolled-back", actor=d.actor,
                                      reason=f"superseded by rollback {r.id}", data={"rolled_back_by": r.id},
                                      lock=r.lock)
        except FenceLost as e:
            raise failed(f"{plan_.operation} {r.id} to {stage} reached 100% but {e.message}",
                         f"the process that took it over (`pt recover --stage {stage}`) finishes it forward",
                         r.id) from None
        if superseding:
            d.ledger.release(r.lock)
        d.log(f"{plan_.operation} {r.id} succeeded")
        return Result(r.id, "succeeded", plan_, dict(r.candidates), r.last_verdict, None, started, d.clock(), cleaned)


def _rollback_stopped(r: _Run, reason: str, exc: BaseException) -> None:
    """A rollback failed after traffic moved: it is never undone (that would return to the release
    being rolled back). Record where each target stands, release the lock, raise; `pt recover`
    finishes it forward."""
    d, stage = r.d, r.stage
    r.stop_heartbeat()
    by_id = {t.id: t for t in r.plan.targets}
    live = []
    for tid in r.touched:
        try:
            p = by_id[tid].current()
            live.append(f"{tid} v{p.version}" + (f" (weighted {p.weights})" if p.weights else ""))
        except Exception:
            live.append(f"{tid} unknown")

    def write(what: Callable[[], Any]) -> None:
        try:
            what()
        except Exception as e:
            d.log(f"warning: ledger write failed ({e})")

    write(lambda: d.ledger.append_event(stage, r.id, "rollback-error", actor=d.actor, reason=reason,
                                        data={"stopped_at": live}, lock=r.lock))
    if r.lock is not None:
        write(lambda: d.ledger.release(r.lock))
    hint = (f"another process took stage {stage} over; see `pt status --stage {stage}`" if r.fence_lost else
            f"run `pt recover --stage {stage}` to finish it; `pt status --stage {stage}` shows each target's version")
    raise failed(f"rollback {r.id} of {stage} stopped part-way ({', '.join(live)}): {reason}", hint, r.id) \
        from (exc if isinstance(exc, Exception) else None)


def _abort(r: _Run, reason: str, verdict: dict | None) -> bool:
    """Restore (or mark failed) and record it. True if the lock was released. Traffic comes first:
    a failing ledger write does not stop the restore; it keeps the lock for `pt recover`."""
    d, stage = r.d, r.stage
    r.stop_heartbeat()  # an unfinished restore must let the lease lapse, for `pt recover`

    def write(what: Callable[[], Any]) -> bool:
        try:
            what()
            return True
        except Exception as e:
            d.log(f"warning: ledger write failed ({e}); the stage will need `pt recover --stage {stage}`")
            return False

    def release() -> bool:
        return r.lock is None or write(lambda: d.ledger.release(r.lock))

    lock = r.lock
    if not r.record_written:
        return release()
    if not r.touched:
        ok = write(lambda: d.ledger.transition(stage, r.id, "failed", reason=f"{reason}; traffic untouched",
                                               actor=d.actor, data={**r.target_data(), "verdict": verdict},
                                               lock=lock, via=tuple(r.passed)))
        d.log(f"{r.plan.operation} {r.id} failed before traffic moved: {reason}")
        return ok and release()
    d.log(f"rolling back {stage}: {reason}")
    write(lambda: d.ledger.transition(stage, r.id, "rolling_back", reason=reason, actor=d.actor,
                                      data={**r.target_data(), "verdict": verdict, "touched": list(r.touched)},
                                      lock=lock, via=tuple(r.passed)))
    errors = r.restore_touched()
    if errors:
        write(lambda: d.ledger.append_event(stage, r.id, "rollback-error", actor=d.actor, reason="; ".join(errors),
                                            data={"restored": dict(r.restored)}, lock=lock))
        d.log("restore incomplete: " + "; ".join(errors))
        return False  # keep the lock: the stage needs `pt recover`
    ok = write(lambda: d.ledger.transition(stage, r.id, "rolled_back", reason=reason, actor=d.actor,
                                           data={"restored": dict(r.restored)}, lock=lock))
    d.log(f"rolled back {stage}: " + ", ".join(f"{k} {v}" for k, v in r.restored.items()))
    return ok and release()


# --- recover / status --------------------------------------------------------------------------


def is_engine_record(rec: Record) -> bool:
    return bool(rec.data.get("engine"))


def recover(stage: str, deps: EngineDeps, targets: Mapping[str, Any], *, force: bool = False,
            dry_run: bool = False) -> dict:
    """Finish forward (reached `finishing`, or a rollback) or put every target back (reverse order)
    for an engine release that died mid-way, from its ledger record alone. `targets`: id → Target
    for the ids of the record's `order`."""
    led = deps.ledger
    rec = led.unfinished(stage)
    if rec is None or not is_engine_record(rec):
        return {"stage": stage, "action": "nothing-to-recover"}
    placements = {k: Placement.from_dict(v) for k, v in (rec.data.get("placements") or {}).items()}
    candidates = {k: Candidate.from_dict(v) for k, v in (rec.data.get("candidates") or {}).items()}
    order = [t for t in rec.data.get("order") or [] if t in placements]
    missing = [t for t in order if t not in targets]
    if missing:
        raise UsageError(f"deploy {rec.id} names targets this config no longer has: {', '.join(missing)}",
                         "restore pipeline.yml as it was for that deploy, then run `pt recover` again")
    moved = rec.state not in ("locked", "updating")
    is_rollback = rec.data.get("operation") == "rollback"
    forward = moved and (rec.state == "finishing" or (is_rollback and rec.state != "rolling_back"))
    action = (("finish-rollback" if is_rollback else "roll-forward") if forward
              else ("roll-back" if moved else "mark-failed"))
    out = {"stage": stage, "deploy_id": rec.id, "operation": rec.data.get("operation", "deploy"),
           "died_in": rec.state, "action": action,
           "targets": {t: {"to_version": (candidates[t].version if forward and t in candidates
                                          else placements[t].version)} for t in order}}
    if dry_run:
        return {**out, "dry_run": True}
    took = led.take_over(stage, rec.id, deps.actor, deps.lease, force=force)
    outcome: dict[str, str] = {}
    try:
        led.append_event(stage, rec.id, "recover", actor=deps.actor, reason=f"{action} after dying in {rec.state}",
                         lock=took)
        with Signals() as sig, sig.shield():
            if forward:
                for t in order:
                    if t in candidates:
                        _retry(lambda t=t: targets[t].shift(placements[t], candidates[t], 100), deps.sleep)
                        outcome[t] = "forward"
                led.transition(stage, rec.id, "succeeded", actor=deps.actor, lock=took, data={"recovered": outcome},
                               reason=(f"recovered: rollback to {rec.data.get('target')} finished (stopped in "
                                       f"{rec.state})" if is_rollback else f"recovered forward (died in {rec.state})"))
                undone = rec.data.get("current")
                if is_rollback and undone and undone != rec.data.get("target"):
                    led.append_event(stage, undone, "rolled-back", actor=deps.actor,
                                     reason=f"superseded by rollback {rec.id}", data={"rolled_back_by": rec.id},
                                     lock=took)
            elif moved:
                if rec.state != "rolling_back":
                    led.transition(stage, rec.id, "rolling_back", actor=deps.actor, lock=took,
                                   reason=f"recover: died in {rec.state}")
                errors = []
                for t in reversed(order):
                    if t not in candidates:
                        continue  # never prepared: its traffic never moved
                    try:
                        _retry(lambda t=t: targets[t].restore(placements[t]), deps.sleep)
                        outcome[t] = "restored"
                    except Exception as e:
                        outcome[t] = f"error: {e}"
                        errors.append(f"{t}: {e}")
                if errors:
                    led.append_event(stage, rec.id, "rollback-error", actor=deps.actor, reason="; ".join(errors),
                                     data={"restored": outcome}, lock=took)
                    raise DeployFailed(f"recover of {rec.id} could not restore: {'; '.join(errors)}",
                                       f"fix the cause, then run `pt recover --stage {stage}` again")
                led.transition(stage, rec.id, "rolled_back", actor=deps.actor, lock=took,
                               data={"restored": outcome}, reason=f"recovered: rolled back (died in {rec.state})")
            else:
                led.transition(stage, rec.id, "failed", actor=deps.actor, lock=took,
                               reason=f"recovered: died in {rec.state}; traffic untouched")
    finally:
        led.release(took)
    state = "succeeded" if forward else ("rolled_back" if moved else "failed")
    return {**out, "state": state, "outcome": outcome}


def describe(targets: Sequence[Any]) -> list[dict]:
    """`describe()` of every target; a target that cannot be read says so instead of failing all."""
    rows = []
    for t in targets:
        try:
            rows.append({"target": t.id, **t.describe()})
        except Exception as e:
            rows.append({"target": t.id, "error": str(e)})
    return rows


# --- rollback ----------------------------------------------------------------------------------


def rollback_records(led: Ledger, stage: str, to: str | None) -> tuple[Record | None, Record]:
    """(the deploy being undone, the succeeded deploy to return to)."""
    from pipeline_tools.core.errors import NotFoundError

    succeeded = [r for r in led.query(stage, DEPLOY, state="succeeded") if not r.data.get("rolled_back_by")]
    if to is not None:
        target = led.get(stage, to)
        if target is None or target.kind != DEPLOY:
            raise NotFoundError(f"no deploy {to} in the ledger of stage {stage}",
                                f"list them with `pt history --stage {stage}`")
        if target.state != "succeeded":
            raise UsageError(f"deploy {to} is {target.state}, not succeeded; only succeeded deploys are targets")
        return (succeeded[0] if succeeded else None), target
    if len(succeeded) < 2:
        raise NotFoundError(f"stage {stage} has no earlier succeeded deploy to roll back to",
                            f"see `pt history --stage {stage}`")
    return succeeded[0], succeeded[1]


def left_live(rec: Record) -> dict[str, Candidate]:
    """What an engine release left serving, per target (its candidate, else what it found live)."""
    out = {k: Candidate.from_dict(v) for k, v in (rec.data.get("candidates") or {}).items()}
    for k, v in (rec.data.get("placements") or {}).items():
        p = Placement.from_dict(v)
        if k not in out and p.exists and p.version is not None:
            out[k] = Candidate(k, p.version, p.digest or "", {})
    return out


def rollback(cfg: Any, stage: str, deps: EngineDeps, build: Callable[[list[str]], Sequence[Any]], *,
             to: str | None = None, dry_run: bool = False, only: Sequence[str] | None = None,
             recorded: Callable[[Record], dict[str, Candidate]] = left_live) -> dict:
    """Return the targets the undone release changed to what an earlier succeeded deploy left live,
    as a release of those recorded versions (no new version, no gate, no bake): the same lock,
    record and states (`locked → shifting → finishing → succeeded`). A rollback that stops
    part-way is left unfinished (lock released) for `recover` to finish forward; never undone.
    `build(ids)` makes the targets; `recorded(record)` reads what a record left live; `only`: these
    target ids alone (`pt rollback --target`)."""
    led = deps.ledger
    current, target = rollback_records(led, stage, to)
    back = recorded(target)
    undone = (current.data.get("changing") or current.data.get("order")) if current and is_engine_record(current) \
        else None
    ids = [i for i in (undone or back) if i in back and (not only or i in only)]
    if not ids:
        raise UsageError(f"deploy {target.id} recorded no version of the targets to roll back",
                         f"deploy its digest with `pt deploy --stage {stage} --image-uri REPO@{target.digest}`")
    targets = list(build(ids))
    release = Release(str(target.data.get("image_uri") or ""), target.digest or "", "",
                      str(target.data.get("image") or ""))
    p = plan(cfg, stage, targets, release, operation="rollback", reuse={i: back[i] for i in ids})
    changing = p.changing()
    preview = {"stage": stage, "target": target.id, "digest": target.digest,
               "current": current.id if current else None,
               "targets": [{"target": t.id, "from_version": p.placements[t.id].version,
                            "from_weights": p.placements[t.id].weights, "to_version": back[t.id].version,
                            "changes": t in changing} for t in p.targets]}
    if dry_run:
        return {**preview, "dry_run": True}
    for t in changing:
        check = getattr(t, "check_candidate", None)
        if callable(check):
            check(back[t.id])  # e.g. a version pruned since: refused before locking
    res = run(p, deps, extra={"target": target.id, "current": current.id if current else None,
                              "reason": f"rollback to {target.id}"})
    return {**preview, "rollback_id": res.deploy_id, "state": res.state}
