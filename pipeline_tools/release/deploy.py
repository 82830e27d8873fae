"""The deploy engine: plan → lock → update → shift → bake (gate) → finish, or roll back.

A deploy is a state machine recorded in the ledger (one `deploy` record, id = deploy id):
`locked → updating → shifting (per step) → baking → finishing → succeeded`, or
`… → rolling_back → rolled_back`, or `failed` (traffic never moved). Each state is written
*before* the work it names. Rollback on gate FAIL, on any error, on Ctrl-C and SIGTERM.

Public API (clients are passed in; nothing here builds one):
- `ImageRef`, `parse_image_uri(uri)`, `load_build_output(path)`, `choose_image(cfg, …)`.
- `DeployPlan` / `FunctionPlan` (frozen); `plan_deploy(cfg, stage, image, ref, lambda_client, …)`.
- `Deps(lambda_client, cloudwatch, ledger, clock, sleep, log, actor)`.
- `deploy(cfg, stage, plan, deps, *, window=None) -> DeployResult` (raises DeployFailed after a
  rollback, LockedError when the stage is locked / needs recovery).
- `rollback(cfg, stage, deps, *, to=None, dry_run=False) -> dict`,
  `recover(cfg, stage, deps, *, force=False, dry_run=False) -> dict`,
  `status(cfg, stages, lambda_client_for, ledger) -> list[dict]`, `history(ledger, stage, n) -> list[dict]`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.core.errors import DeployFailed, LockedError, NotFoundError, UsageError
from pipeline_tools.release import engine as _engine
from pipeline_tools.release import schedule
from pipeline_tools.release.gate import GatePolicy, GateWatch, Verdict
from pipeline_tools.release.ledger import (
    DEPLOY,
    CorruptItem,
    FenceLost,
    Ledger,
    Lock,
    Record,
    RecoveryNeeded,
    iso,
    lease_from_env,
    new_id,
)
from pipeline_tools.targets import lambda_ops as lo

IMAGE_URI_RE = re.compile(r"^(?P<repo>[a-z0-9][^@\s]*?)@(?P<digest>sha256:[0-9a-f]{64})$")
UPDATE_TIMEOUT = 300.0


# --- input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRef:
    uri: str
    repository: str          # host/path, without digest
    digest: str

    @property
    def repo_name(self) -> str:
        """Repository path without the registry host (the ECR repository name)."""
        first, _, rest = self.repository.partition("/")
        return rest if rest and ("." in first or ":" in first or first == "localhost") else self.repository


def parse_image_uri(uri: str) -> ImageRef:
    uri = uri.strip()
    m = IMAGE_URI_RE.match(uri)
    if m:
        return ImageRef(uri, m["repo"], m["digest"])
    if "@" not in uri:
        raise UsageError(f"image URI {uri} names a tag, not a digest; deploys use digests only",
                         "pass REPO@sha256:… (the image_uri printed by `pt build-push --output json`), "
                         "or use --from-build build.json")
    raise UsageError(f"image URI {uri} is not REPO@sha256:<64 hex digits>",
                     "copy image_uri from `pt build-push --output json`")


def load_build_output(path: str) -> list[dict]:
    """The JSON `pt build-push --output json` prints: {"images": [...]} or a bare list."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--from-build {path}: no such file",
                         "save it with `pt build-push --output json > build.json`") from None
    except ValueError as e:
        raise UsageError(f"--from-build {path}: not JSON ({e})", "pass the output of `pt build-push --output json`") \
            from None
    images = data.get("images") if isinstance(data, dict) else data
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        raise UsageError(f"--from-build {path}: expected {{\"images\": [...]}} or a list of images")
    return images


def choose_image(cfg: Any, *, image_uri: str | None = None, build: list[dict] | None = None,
                 image: str | None = None) -> tuple[str, ImageRef]:
    """Which config image and digest to deploy."""
    if (image_uri is None) == (build is None):
        raise UsageError("pass exactly one of --image-uri REPO@sha256:… or --from-build FILE")
    if image is not None and image not in cfg.images:
        raise UsageError(f"unknown image '{image}'", f"images are: {', '.join(cfg.images)}")
    if build is not None:
        cands = [b for b in build if image is None or b.get("name") == image]
        cands = [b for b in cands if b.get("name") in cfg.images] or cands
        deployable = [b for b in cands if cfg.functions_for_image(b.get("name", ""))]
        if len(deployable) != 1:
            names = ", ".join(str(b.get("name")) for b in (deployable or cands)) or "none"
            raise UsageError(f"--from-build lists {len(deployable)} deployable images ({names})",
                             "choose one with --image NAME")
        b = deployable[0]
        uri = b.get("image_uri") or (f"{b.get('repository')}@{b.get('digest')}" if b.get("digest") else "")
        return b["name"], parse_image_uri(uri)
    ref = parse_image_uri(image_uri or "")
    if image is None:
        by_repo = [i for i in cfg.images if ref.repo_name == cfg.ecr_repository(i)
                   or ref.repo_name.endswith("/" + cfg.ecr_repository(i))]
        with_fns = [i for i in cfg.images if cfg.functions_for_image(i)]
        if len(by_repo) == 1:
            image = by_repo[0]
        elif len(with_fns) == 1:
            image = with_fns[0]
        else:
            raise UsageError(f"cannot tell which image {ref.repository} is", "pass --image NAME")
    return image, ref


# --- plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionPlan:
    function: str
    name: str
    alias_exists: bool
    previous_version: str | None
    previous_digest: str | None
    routing: dict[str, float] = field(default_factory=dict)

    def unchanged(self, digest: str) -> bool:
        return self.alias_exists and not self.routing and self.previous_digest == digest

    def to_dict(self) -> dict:
        return {"function": self.function, "name": self.name, "alias_exists": self.alias_exists,
                "previous_version": self.previous_version, "previous_digest": self.previous_digest,
                "routing": self.routing}


@dataclass(frozen=True)
class DeployPlan:
    stage: str
    image: str
    image_uri: str
    digest: str
    strategy: str
    steps: tuple[schedule.Step, ...]
    bake: float
    poll: float
    keep_versions: int
    functions: tuple[FunctionPlan, ...]
    policy: GatePolicy

    @property
    def noop(self) -> bool:
        return all(f.unchanged(self.digest) for f in self.functions)

    def changing(self) -> tuple[FunctionPlan, ...]:
        return tuple(f for f in self.functions if not f.unchanged(self.digest))

    def to_dict(self) -> dict:
        return {"stage": self.stage, "image": self.image, "image_uri": self.image_uri, "digest": self.digest,
                "strategy": self.strategy, "steps": [s.to_dict() for s in self.steps], "bake": self.bake,
                "poll": self.poll, "keep_versions": self.keep_versions, "noop": self.noop,
                "gate": {"alarms": list(self.policy.patterns), "insufficient_data": self.policy.insufficient_data,
                         "preexisting_alarm": self.policy.preexisting_alarm},
                "functions": [dict(f.to_dict(), changes=not f.unchanged(self.digest)) for f in self.functions]}

    def lines(self) -> list[str]:
        out = [f"deploy {self.image} {self.digest[:19]}… to {self.stage} ({self.strategy}: "
               + " → ".join(f"{s.percent}%" for s in self.steps) + f", bake {self.bake:g}s, poll {self.poll:g}s)"]
        for f in self.functions:
            cur = f"v{f.previous_version} {(f.previous_digest or '?')[:19]}" if f.alias_exists else "no alias yet"
            what = "unchanged" if f.unchanged(self.digest) else "→ new version"
            out.append(f"  {f.name}: live {cur}{' (weighted ' + str(f.routing) + ')' if f.routing else ''} {what}")
        return out


def plan_deploy(cfg: Any, stage: str, image: str, ref: ImageRef, lambda_client: Any, *,
                strategy: str | None = None) -> DeployPlan:
    st = cfg.stage(stage)
    fns = cfg.functions_for_image(image)
    if not fns:
        raise UsageError(f"no function in pipeline.yml uses image '{image}'",
                         "add `image: " + image + "` to a function under `functions:`")
    strategy = strategy or st.deploy.strategy
    percent = st.deploy.percent
    if strategy in ("canary", "linear") and percent is None:
        percent = 10 if strategy == "canary" else 25
    try:
        steps = schedule.steps(strategy, percent, st.deploy.interval)
    except ValueError as e:
        raise UsageError(str(e)) from None
    plans = _read_functions(cfg, stage, sorted(fns), lambda_client)
    return DeployPlan(stage, image, ref.uri, ref.digest, strategy, steps, st.deploy.bake, st.gate.poll,
                      st.deploy.keep_versions, plans, GatePolicy.from_config(cfg, stage))


def _read_functions(cfg: Any, stage: str, fns: list[str], lambda_client: Any) -> tuple[FunctionPlan, ...]:
    """What each function's alias serves now (version, digest, weights)."""
    hint = "deploy the stage stack first (`npx cdk deploy` creates the functions)"

    def read(fn: str) -> FunctionPlan:
        name = cfg.function_name(stage, fn)
        alias = lo.read_alias(lambda_client, name)
        if not alias.exists:
            lo.function_exists(lambda_client, name, hint)
        digest = lo.version_digest(lambda_client, name, alias.version) if alias.exists else None
        return FunctionPlan(fn, name, alias.exists, alias.version, digest, alias.weights)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(fns)))) as ex:
        return tuple(ex.map(read, fns))


def replan(cfg: Any, plan: DeployPlan, lambda_client: Any) -> DeployPlan:
    """The plan with every function re-read: run under the stage lock, so that what a rollback
    returns to is what ran when the lock was taken, not when the plan was first made."""
    import dataclasses

    fresh = _read_functions(cfg, plan.stage, [f.function for f in plan.functions], lambda_client)
    return dataclasses.replace(plan, functions=fresh)


# --- execution -----------------------------------------------------------------------------


# One signal handling for both engines: SIGTERM/SIGINT become `Interrupted` unless shielded.
Interrupted = _engine.Interrupted
_Signals = _engine.Signals


class GateFailed(Exception):
    def __init__(self, verdict: Verdict, phase: str):
        super().__init__(verdict.summary())
        self.verdict = verdict
        self.phase = phase


@dataclass
class Deps:
    lambda_client: Any
    cloudwatch: Any
    ledger: Ledger
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = lambda _m: None
    actor: dict = field(default_factory=dict)
    lease: float = field(default_factory=lease_from_env)
    update_timeout: float = UPDATE_TIMEOUT
    s3: Any = None  # reads the gate's report signals (gate.signals with `report:`)


@dataclass(frozen=True)
class DeployResult:
    deploy_id: str
    state: str
    plan: DeployPlan
    versions: dict[str, str]
    verdict: dict | None
    reason: str | None
    started: float
    finished: float
    pruned: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"deploy_id": self.deploy_id, "state": self.state, "stage": self.plan.stage,
                "image": self.plan.image, "digest": self.plan.digest, "image_uri": self.plan.image_uri,
                "strategy": self.plan.strategy, "reason": self.reason,
                "functions": [{"function": f.function, "name": f.name, "previous_version": f.previous_version,
                               "version": self.versions.get(f.function, f.previous_version)}
                              for f in self.plan.functions],
                "verdict": self.verdict, "pruned": self.pruned, "started": iso(self.started),
                "duration_s": round(self.finished - self.started, 3)}


def _function_data(plan: DeployPlan, versions: dict[str, str]) -> dict:
    return {f.function: {"name": f.name, "previous_version": f.previous_version,
                         "previous_digest": f.previous_digest, "alias_existed": f.alias_exists,
                         "new_version": versions.get(f.function),
                         "version": versions.get(f.function, f.previous_version)}
            for f in plan.functions}


class _Heartbeat:
    """Renews the stage lock every lease/3 s from a daemon thread, so that long waits (a Lambda
    image update can take minutes) never let the lease lapse while this process lives."""

    def __init__(self, run: _Run):
        self.run = run
        self.stopped = threading.Event()
        self.lost: str | None = None
        self.fence_lost = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="pt-lock-heartbeat", daemon=True)
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
                # transient: the next beat retries, but never past 2/3 of the lease: a holder that
                # cannot renew stops (and rolls back) before another process may take the stage
                failing = d.clock() - last_ok
                if failing >= d.lease * 2 / 3:
                    self.lost = (f"lock renewal on stage {self.run.plan.stage} failing for {failing:.0f}s "
                                 f"(lease {d.lease:g}s; last error: {e})")
                    return
                d.log(f"warning: lock renewal failed ({e}); retrying")

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)


class _Run:
    """One deploy in flight."""

    def __init__(self, cfg: Any, plan: DeployPlan, deps: Deps, watch: GateWatch, sig: _Signals):
        self.cfg, self.plan, self.d, self.watch, self.sig = cfg, plan, deps, watch, sig
        self.id = ""
        self.lock: Lock | None = None
        self.versions: dict[str, str] = {}
        self.alias_touched: set[str] = set()
        self.last_verdict: Verdict | None = None
        self._created: set[str] = set()
        self.record_written = False
        self.rec: Record | None = None
        self.heartbeat: _Heartbeat | None = None
        self.finishing_deferred = False  # "finishing" goes into the final write (nothing to prune)

    # ledger helpers
    def mark(self, state: str, reason: str | None = None, **data: Any) -> Record:
        self.check_lock()
        self.rec = self.d.ledger.transition(self.plan.stage, self.id, state, reason=reason, actor=self.d.actor,
                                            data=data or None, current=self.rec, lock=self.lock)
        return self.rec

    def each(self, fn: Callable[[FunctionPlan], Any], plans: tuple[FunctionPlan, ...]) -> dict[str, Any]:
        """Run fn for every function concurrently (they move together); wait for all, even on error."""
        if len(plans) <= 1:
            return {f.function: fn(f) for f in plans}
        from concurrent.futures import ThreadPoolExecutor

        # The with-block waits for every call to end before an exception (or a signal) leaves it,
        # so a rollback never races an alias update still in flight.
        with ThreadPoolExecutor(max_workers=min(8, len(plans))) as ex:
            futures = {f.function: ex.submit(fn, f) for f in plans}
            return {k: fut.result() for k, fut in futures.items()}

    def check_lock(self) -> None:
        if self.heartbeat is not None and self.heartbeat.lost:
            hint = ("another process took the stage over; see `pt status`" if self.heartbeat.fence_lost
                    else "check access to the ledger table; `pt status` shows where the stage ended")
            raise DeployFailed(self.heartbeat.lost, hint)

    @property
    def fence_lost(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.fence_lost

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()

    # phases
    def update(self) -> None:
        desc = f"pt {self.id} {self.plan.digest}"

        def one(f: FunctionPlan) -> str:
            cfg = lo.update_code(self.d.lambda_client, f.name, self.plan.image_uri, self.d.clock, self.d.sleep,
                                 self.d.update_timeout)
            # CodeSha256: publish exactly what we updated, not a concurrent writer's code
            version = lo.publish(self.d.lambda_client, f.name, desc, self.d.sleep, code_sha256=cfg.get("CodeSha256"))
            if f.alias_exists and version == f.previous_version:
                raise DeployFailed(f"publish_version of {f.name} returned the live version {version}: Lambda saw "
                                   "no code change", "check the function's code with `pt status`")
            return version

        self.d.log(f"updating {', '.join(f.name for f in self.plan.changing())} → {self.plan.image_uri}")
        self.versions.update(self.each(one, self.plan.changing()))
        self.d.log("published " + ", ".join(f"{f.name} v{self.versions[f.function]}" for f in self.plan.changing()))

    def shift(self) -> None:
        for step in self.plan.steps:
            # versions recorded before any alias moves, so `pt recover` knows both ends
            self.mark("shifting", percent=step.percent, functions=_function_data(self.plan, self.versions))

            def one(f: FunctionPlan, step: schedule.Step = step) -> None:
                new = self.versions[f.function]
                primary, extra = schedule.weights(step.percent, f.previous_version if f.alias_exists else None, new)
                lo.set_alias(self.d.lambda_client, f.name, primary, extra,
                             exists=f.alias_exists or f.function in self._created, sleep=self.d.sleep)

            self.alias_touched.update(f.function for f in self.plan.changing())
            with self.sig.shield():  # every alias of the step moves, then a signal may act
                self.each(one, self.plan.changing())
                self._created.update(f.function for f in self.plan.changing())
            if self.sig.received:
                raise Interrupted(self.sig.received)
            self.d.log(f"traffic {step.percent}% on the new version"
                       + (f", watching {step.wait:g}s" if step.wait else ""))
            if step.wait or step.percent < 100:
                self.watch_for(step.wait, f"shifting {step.percent}%")

    def bake(self) -> None:
        self.mark("baking")
        if self.plan.bake:
            self.d.log(f"baking {self.plan.bake:g}s")
        v = self.watch_for(self.plan.bake, "baking")
        if v.status != "PASS":
            raise GateFailed(v, "baking (gate undecided at the end of the bake)")

    def watch_for(self, seconds: float, phase: str) -> Verdict:
        end = self.d.clock() + seconds
        while True:
            self.check_lock()
            v = self.watch.poll(self.d.clock())
            self.last_verdict = v
            if v.failed:
                raise GateFailed(v, phase)
            now = self.d.clock()
            if now >= end:
                if v.errors and not v.passed:  # no evidence for this step: never move traffic on
                    raise GateFailed(v, phase + " (the gate could not read its evidence)")
                return v
            self.d.sleep(max(0.0, min(self.plan.poll, end - now)))

    def finish(self) -> dict[str, list[str]]:
        """Prune old versions. "finishing" is written first only when pruning makes requests (a
        process dying in between leaves a record `pt recover` rolls forward); otherwise the final
        write records it (`finishing_deferred`)."""
        if not any(lo.prune_needed(self.versions.get(f.function), self.plan.keep_versions)
                   for f in self.plan.changing()):
            self.finishing_deferred = True
            return {}
        self.mark("finishing", verdict=self.last_verdict.to_dict() if self.last_verdict else None)

        def one(f: FunctionPlan) -> list[str]:
            try:
                return lo.prune_versions(self.d.lambda_client, f.name, self.plan.keep_versions, self.d.sleep,
                                         newest=self.versions.get(f.function))
            except Exception as e:  # pruning is housekeeping: never fail a good deploy for it
                self.d.log(f"warning: could not prune old versions of {f.name}: {e}")
                return []

        done = self.each(one, self.plan.changing())
        return {f.name: done[f.function] for f in self.plan.changing() if done.get(f.function)}

    def roll_back(self, reason: str) -> list[str]:
        """Alias back to the previous version at 100 % for every touched function; errors listed."""
        def one(f: FunctionPlan) -> str | None:
            try:
                _restore(self.d.lambda_client, f.previous_version if f.alias_exists else None, f.name, self.d.sleep)
                return None
            except Exception as e:
                return f"{f.name}: {e}"

        touched = tuple(f for f in self.plan.changing() if f.function in self.alias_touched)
        return [e for e in self.each(one, touched).values() if e]


def _restore(lc: Any, previous: str | None, name: str, sleep: Callable[[float], None]) -> None:
    for attempt in range(3):
        try:
            if previous is None:
                lo.delete_alias(lc, name, sleep)
            else:
                lo.set_alias(lc, name, previous, {}, exists=True, sleep=sleep)
            return
        except Exception:
            if attempt == 2:
                raise
            sleep(0.5 * (attempt + 1))


def deploy(cfg: Any, plan: DeployPlan, deps: Deps, *, window: dict | None = None) -> DeployResult:
    """Run a planned deploy to the end: succeeded, or rolled back / failed (DeployFailed raised)."""
    d, stage = deps, plan.stage
    started = d.clock()
    with _Signals() as sig:
        watch = GateWatch(d.cloudwatch, plan.policy, started, sleep=d.sleep, s3=d.s3)
        firing = watch.start()
        if firing and plan.policy.preexisting_alarm == "block":
            names_ = ", ".join(f"{a.name} (since {iso(a.since)})" for a in firing)
            raise DeployFailed(f"alarm already in ALARM before the deploy to {stage}: {names_}",
                               "fix or silence it first, or set gate.preexisting_alarm: ignore for this stage")
        run = _Run(cfg, plan, d, watch, sig)
        run.id = new_id(started)
        # Shield/unshield are plain attribute stores (no gap where a signal could slip between
        # a `with` exit and a `try`): a signal while taking the lock must not leave a lock
        # without its record; one after `try:` is handled by the rollback below.
        sig.shielded = True
        run.lock = d.ledger.acquire(stage, run.id, d.actor, d.lease)
        run.heartbeat = _Heartbeat(run)
        run.heartbeat.start()
        phase = "locking"
        try:
            sig.shielded = False
            if sig.received:
                raise Interrupted(sig.received)
            # under the lock: what runs now (another deploy may have finished since the plan was read)
            fresh = replan(cfg, plan, d.lambda_client)
            if fresh.functions != plan.functions:
                d.log("the stage changed while waiting for the lock: using what runs now ("
                      + ", ".join(f"{f.name} v{f.previous_version}" for f in fresh.functions) + ")")
            plan = run.plan = fresh
            data = {"operation": "deploy", "image": plan.image, "image_uri": plan.image_uri, "digest": plan.digest,
                    "strategy": plan.strategy, "plan": plan.to_dict(), "functions": _function_data(plan, {}),
                    "lease": d.lease, "pid": os.getpid(),
                    # alarms firing at window start: `pt gate`/`pt promote` apply preexisting_alarm to them
                    "preexisting_alarms": sorted(watch.preexisting),
                    "gate_start": watch.snapshot.to_dict() if watch.snapshot else None}
            overridden = bool(window and window.get("overridden"))
            if window:
                data["window"] = window
            # locked and updating in one write unless an override event goes between them
            run.rec = d.ledger.put_record(DEPLOY, stage, data, actor=d.actor, state="locked", record_id=run.id,
                                          reason=f"window override: {window.get('reason')}"
                                          if overridden and window else None, lock=run.lock,
                                          then=() if overridden else ("updating",))
            run.record_written = True
            if overridden and window:
                run.rec = d.ledger.append_event(stage, run.id, "window-override", actor=d.actor,
                                                reason=window.get("reason"), lock=run.lock)
            d.log(f"deploy {run.id}: locked stage {stage}")
            phase = "updating"
            if run.rec.state != "updating":
                run.mark("updating")
            run.update()
            phase = "shifting"
            run.shift()
            phase = "baking"
            run.bake()
            phase = "finishing"
            sig.shielded = True  # reached 100 % and baked: completes forward, signals or not
        except BaseException as exc:
            sig.shielded = True  # first: a second signal must not interrupt the rollback
            reason, verdict = _reason(exc, phase)
            released = _abort(run, reason, verdict)
            state = "rolled back" if run.alias_touched else "failed"
            sig_note = f" (received {signal.Signals(sig.received).name})" if sig.received else ""
            hint = None if released else f"rollback incomplete: run `pt recover --stage {stage}`"
            if run.fence_lost:
                hint = f"another process took stage {stage} over and records the outcome; see `pt status`"
            raise _failed(f"deploy {run.id} to {stage} {state}: {reason}{sig_note}", hint, run.id) \
                from (exc if isinstance(exc, Exception) else None)
        pruned = run.finish()
        run.stop_heartbeat()
        note = f" ({signal.Signals(sig.received).name} received while finishing)" if sig.received else ""
        final = {"functions": _function_data(plan, run.versions), "pruned": pruned,
                 # the start of `pt gate`'s window
                 "gate_snapshot": watch.snapshot_now().to_dict()}
        if run.finishing_deferred:
            final["verdict"] = run.last_verdict.to_dict() if run.last_verdict else None
        try:  # fenced, not check_lock(): a renewal hiccup after the bake must not undo a good deploy
            # the lock is released in the same transaction
            run.rec = d.ledger.transition(stage, run.id, "succeeded", reason="gate PASS after bake" + note,
                                          actor=d.actor, data=final, current=run.rec, lock=run.lock,
                                          via=("finishing",) if run.finishing_deferred else (), release=True)
        except FenceLost as e:
            raise _failed(f"deploy {run.id} to {stage} reached 100% and baked, but {e.message}",
                          f"the process that took it over (`pt recover --stage {stage}`) finishes it "
                          "forward; see `pt status`", run.id) from None
        d.log(f"deploy {run.id} succeeded")
        return DeployResult(run.id, "succeeded", plan, dict(run.versions),
                            run.last_verdict.to_dict() if run.last_verdict else None, None, started,
                            d.clock(), pruned)


def _failed(message: str, hint: str | None, deploy_id: str) -> DeployFailed:
    """DeployFailed that names the record it belongs to (`.deploy_id`), so that callers (the
    notifications of `notified_deploy`) never attach it to another process's record."""
    err = DeployFailed(message, hint)
    err.deploy_id = deploy_id  # type: ignore[attr-defined]
    return err


def _reason(exc: BaseException, phase: str) -> tuple[str, dict | None]:
    if isinstance(exc, GateFailed):
        return f"gate FAIL while {exc.phase}: {exc.verdict.summary()}", exc.verdict.to_dict()
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc} while {phase}", None
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted (Ctrl-C) while {phase}", None
    from pipeline_tools.core.errors import translate

    err = translate(exc)
    text = err.message if err is not None else f"{type(exc).__name__}: {exc}"
    return f"error while {phase}: {text}", None


def _abort(run: _Run, reason: str, verdict: dict | None) -> bool:
    """Roll back (or mark failed) and record it. Returns True if the lock was released.

    Traffic comes first: a ledger write that fails does not stop the alias rollback; it only
    leaves the lock held so that the next command sends the user to `pt recover`.
    """
    d, stage = run.d, run.plan.stage
    run.stop_heartbeat()  # an unfinished rollback must let the lease lapse, for `pt recover`

    def write(what: Callable[[], Any]) -> bool:
        try:
            what()
            return True
        except Exception as e:
            d.log(f"warning: ledger write failed ({e}); the stage will need `pt recover --stage {stage}`")
            return False

    def release() -> bool:
        return run.lock is None or write(lambda: d.ledger.release(run.lock))

    # every write is fenced by the lock's token: after a take-over they fail instead of clobbering
    lock = run.lock
    funcs = _function_data(run.plan, run.versions)
    if not run.record_written:
        # a signal can land while put_record's response is in flight: the record may exist
        try:
            written = bool(run.id) and d.ledger.get(stage, run.id) is not None
        except Exception as e:
            d.log(f"warning: could not read the ledger ({e}); the stage will need `pt recover --stage {stage}`")
            return False
        if not written:  # died before the record was written: nothing moved
            return release()
    if not run.alias_touched:
        ok = write(lambda: d.ledger.transition(stage, run.id, "failed", reason=f"{reason}; traffic untouched",
                                               actor=d.actor, data={"functions": funcs, "verdict": verdict},
                                               lock=lock))
        d.log(f"deploy {run.id} failed before traffic moved: {reason}")
        return ok and release()
    d.log(f"rolling back {stage}: {reason}")
    write(lambda: d.ledger.transition(stage, run.id, "rolling_back", reason=reason, actor=d.actor,
                                      data={"functions": funcs, "verdict": verdict}, lock=lock))
    errors = run.roll_back(reason)
    if errors:
        write(lambda: d.ledger.append_event(stage, run.id, "rollback-error", actor=d.actor,
                                            reason="; ".join(errors), lock=lock))
        d.log("rollback incomplete: " + "; ".join(errors))
        return False  # keep the lock: the stage needs `pt recover`
    ok = write(lambda: d.ledger.transition(stage, run.id, "rolled_back", reason=reason, actor=d.actor,
                                           lock=lock))
    d.log(f"rolled back {stage}: every function on its previous version at 100%")
    return ok and release()


# --- rollback / recover / status / history -------------------------------------------------


def _fn_names(cfg: Any, stage: str) -> dict[str, str]:
    return {fn: cfg.function_name(stage, fn) for fn in sorted(cfg.functions)}


def _rollback_target(led: Ledger, stage: str, to: str | None) -> tuple[Record | None, Record]:
    """(the deploy being undone, the succeeded deploy to return to)."""
    succeeded = [r for r in led.query(stage, DEPLOY, state="succeeded")
                 if not r.data.get("rolled_back_by")]
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


def _rollback_plan(cfg: Any, stage: str, target: Record, lambda_client: Any) -> tuple[DeployPlan, dict[str, str]]:
    """A deploy plan whose "new" versions are the target's (already published): the rollback runs
    as a deploy of the target, all at once, without a new version and without a bake."""
    fps, to_versions = [], {}
    for fn, info in sorted((target.data.get("functions") or {}).items()):
        version = info.get("version") or info.get("new_version")
        if version is None:
            continue
        name = info["name"]
        alias = lo.read_alias(lambda_client, name)
        if alias.exists and alias.settled and alias.version == str(version):
            digest = target.digest  # already there: unchanged
        else:
            digest = lo.version_digest(lambda_client, name, alias.version) if alias.exists else None
        fps.append(FunctionPlan(fn, name, alias.exists, alias.version, digest, alias.weights))
        to_versions[fn] = str(version)
    st = cfg.stage(stage)
    plan = DeployPlan(stage, str(target.data.get("image") or ""), str(target.data.get("image_uri") or ""),
                      target.digest or "", "rollback", (schedule.Step(100, 0.0),), 0.0, st.gate.poll,
                      st.deploy.keep_versions, tuple(fps), GatePolicy.from_config(cfg, stage))
    return plan, {f.function: to_versions[f.function] for f in plan.changing()}


def _rollback_preview(stage: str, target: Record, current: Record | None, plan: DeployPlan,
                      to_versions: dict[str, str]) -> dict:
    return {"stage": stage, "target": target.id, "digest": target.digest, "current": current.id if current else None,
            "functions": [{"function": f.function, "name": f.name, "from_version": f.previous_version,
                           "from_weights": f.routing, "to_version": to_versions[f.function]}
                          for f in plan.functions if f.function in to_versions]}


def _check_versions(lambda_client: Any, plan: DeployPlan, to_versions: dict[str, str]) -> None:
    for f in plan.functions:
        if f.function not in to_versions:
            continue
        try:
            lambda_client.get_function_configuration(FunctionName=f.name, Qualifier=to_versions[f.function])
        except Exception as e:
            if lo._code(e) == "ResourceNotFoundException":
                raise NotFoundError(f"version {to_versions[f.function]} of {f.name} no longer exists "
                                    "(pruned by keep_versions)", "redeploy that digest with `pt deploy`") from None
            raise


def recorded_versions(rec: Record) -> dict:
    """What a deploy record left live, per target id, as Candidates: an engine record's
    (release/engine.py), or the `functions` of a record this module wrote (`lambda:<fn>`)."""
    from pipeline_tools.release import engine
    from pipeline_tools.release.target import Candidate

    if engine.is_engine_record(rec):
        return engine.left_live(rec)
    out = {}
    for fn, info in sorted((rec.data.get("functions") or {}).items()):
        version = info.get("version") or info.get("new_version")
        if version is not None:
            out[f"lambda:{fn}"] = Candidate(f"lambda:{fn}", str(version), rec.digest or "", {})
    return out


def lambda_targets(cfg: Any, stage: str, deps: Deps) -> Callable[[list[str]], list]:
    """`build(ids)` of the engine for this module's Deps: LambdaTargets on deps.lambda_client."""
    from pipeline_tools.targets import TargetEnv
    from pipeline_tools.targets.lambda_ import LambdaTarget

    env = TargetEnv(client=lambda _service: deps.lambda_client, clock=deps.clock, sleep=deps.sleep, log=deps.log,
                    update_timeout=deps.update_timeout)

    def build(ids: list[str]) -> list:
        return [LambdaTarget(cfg, stage, i.split(":", 1)[1], env) for i in ids if i.startswith("lambda:")]

    return build


def engine_deps(deps: Deps) -> Any:
    from pipeline_tools.release import engine

    return engine.EngineDeps(cloudwatch=deps.cloudwatch, ledger=deps.ledger, clock=deps.clock, sleep=deps.sleep,
                             log=deps.log, actor=deps.actor, lease=deps.lease)


def rollback(cfg: Any, stage: str, deps: Deps, *, to: str | None = None, dry_run: bool = False) -> dict:
    """Point every function back to a previous succeeded deploy, as a deploy of that deploy's
    versions: the same lock (fenced), record and states (`locked → shifting → finishing →
    succeeded`). A rollback that stops part-way (one function moved, then an error) is left
    unfinished, lock released, for `pt recover` to finish forward; it is never undone.
    Undoing a release of the target engine runs through it (`engine.rollback`)."""
    from pipeline_tools.release import engine

    d, led = deps, deps.ledger
    current, target = _rollback_target(led, stage, to)
    if current is not None and engine.is_engine_record(current):
        return engine.rollback(cfg, stage, engine_deps(deps), lambda_targets(cfg, stage, deps), to=to,
                               dry_run=dry_run, recorded=recorded_versions)
    plan, to_versions = _rollback_plan(cfg, stage, target, d.lambda_client)
    if dry_run:
        return {**_rollback_preview(stage, target, current, plan, to_versions), "dry_run": True}
    _check_versions(d.lambda_client, plan, to_versions)  # fail before locking if a version was pruned
    with _Signals() as sig:
        sig.shielded = True  # a rollback is not interrupted: it completes, or stops for `pt recover`
        run = _Run(cfg, plan, d, None, sig)  # type: ignore[arg-type]  (no gate watch: nothing to bake)
        run.id = new_id(d.clock())
        run.lock = led.acquire(stage, run.id, d.actor, d.lease)
        run.heartbeat = _Heartbeat(run)
        run.heartbeat.start()
        try:
            # under the lock: the target and what runs now, read again
            current, target = _rollback_target(led, stage, to)
            plan, to_versions = _rollback_plan(cfg, stage, target, d.lambda_client)
            _check_versions(d.lambda_client, plan, to_versions)
            run.plan, run.versions = plan, dict(to_versions)
            data = {"operation": "rollback", "digest": target.digest, "target": target.id,
                    "current": current.id if current else None, "image_uri": target.data.get("image_uri"),
                    "image": target.data.get("image"), "strategy": "rollback", "plan": plan.to_dict(),
                    "functions": _function_data(plan, run.versions), "lease": d.lease, "pid": os.getpid()}
            run.rec = led.put_record(DEPLOY, stage, data, actor=d.actor, state="locked", record_id=run.id,
                                     reason=f"rollback to {target.id}", lock=run.lock)
            run.record_written = True
            run.mark("shifting", percent=100, functions=_function_data(plan, run.versions))

            def one(f: FunctionPlan) -> None:
                if f.alias_exists:
                    _restore(d.lambda_client, run.versions[f.function], f.name, d.sleep)
                else:
                    lo.set_alias(d.lambda_client, f.name, run.versions[f.function], {}, exists=False, sleep=d.sleep)
                d.log(f"{f.name}: live → version {run.versions[f.function]}")

            run.alias_touched.update(f.function for f in plan.changing())
            run.each(one, plan.changing())
            run.mark("finishing")
        except BaseException as exc:
            _rollback_stopped(run, exc)
            raise AssertionError("unreachable") from None
        run.stop_heartbeat()
        try:
            led.transition(stage, run.id, "succeeded", reason=f"rolled back to {target.id}", actor=d.actor,
                           current=run.rec, lock=run.lock)
            if current is not None and current.id != target.id:
                led.append_event(stage, current.id, "rolled-back", actor=d.actor,
                                 reason=f"superseded by rollback {run.id}", data={"rolled_back_by": run.id},
                                 lock=run.lock)
        except FenceLost as e:
            raise _failed(f"rollback {run.id} of {stage} moved every function, but {e.message}",
                          f"the process that took it over records it; see `pt status --stage {stage}`", run.id) \
                from None
        led.release(run.lock)
    return {**_rollback_preview(stage, target, current, plan, to_versions), "rollback_id": run.id,
            "state": "succeeded"}


def _rollback_stopped(run: _Run, exc: BaseException) -> None:
    """A rollback failed: record where it stopped (never undo it), release the lock, raise."""
    d, stage = run.d, run.plan.stage
    run.stop_heartbeat()
    lock = run.lock

    def write(what: Callable[[], Any]) -> None:
        try:
            what()
        except Exception as e:
            d.log(f"warning: ledger write failed ({e})")

    reason, _ = _reason(exc, "rolling back")
    if not run.record_written:
        if lock is not None:
            write(lambda: d.ledger.release(lock))
        if isinstance(exc, Exception):
            raise exc
        raise _failed(f"rollback of {stage} not started: {reason}", None, run.id) from None
    if not run.alias_touched:
        write(lambda: d.ledger.transition(stage, run.id, "failed", reason=f"{reason}; traffic untouched",
                                          actor=d.actor, lock=lock))
        write(lambda: d.ledger.release(lock))
        raise _failed(f"rollback {run.id} of {stage} failed before any function moved: {reason}", None, run.id) \
            from (exc if isinstance(exc, Exception) else None)
    live = []
    for f in run.plan.changing():
        try:
            live.append(f"{f.name} v{lo.read_alias(d.lambda_client, f.name).version}")
        except Exception:
            live.append(f"{f.name} unknown")
    # left unfinished on purpose: `pt recover` finishes it forward (to the target's versions)
    write(lambda: d.ledger.append_event(stage, run.id, "rollback-error", actor=d.actor, reason=reason,
                                        data={"stopped_at": live}, lock=lock))
    write(lambda: d.ledger.release(lock))
    hint = (f"another process took stage {stage} over; see `pt status --stage {stage}`" if run.fence_lost else
            f"run `pt recover --stage {stage}` to finish it; `pt status --stage {stage}` shows each function's digest")
    raise _failed(f"rollback {run.id} of {stage} stopped part-way ({', '.join(live)}): {reason}", hint, run.id) \
        from (exc if isinstance(exc, Exception) else None)


def recover(cfg: Any, stage: str, deps: Deps, *, force: bool = False, dry_run: bool = False) -> dict:
    """Finish (forward) or roll back a deploy that died mid-way, and record it. A rollback that
    stopped part-way is finished forward (to its target). Runs under a new lock token."""
    from pipeline_tools.release import engine

    led = deps.ledger
    rec = led.unfinished(stage)
    if rec is not None and engine.is_engine_record(rec):
        ids = list(rec.data.get("order") or [])
        return engine.recover(stage, engine_deps(deps), {t.id: t for t in lambda_targets(cfg, stage, deps)(ids)},
                               force=force, dry_run=dry_run)
    try:
        lock = led.current_lock(stage)
    except CorruptItem:
        if rec is not None or not force:
            raise
        if dry_run:
            return {"stage": stage, "action": "remove-damaged-lock", "dry_run": True}
        led.remove_damaged_lock(stage)
        return {"stage": stage, "action": "removed-damaged-lock"}
    if rec is None:
        if lock is not None and not dry_run:
            held = led.get(stage, lock.deploy_id)
            if (held is None or held.final) and (lock.lease_until <= deps.clock() or force):
                led.release(lock)
                return {"stage": stage, "action": "released-stale-lock", "deploy_id": lock.deploy_id}
        return {"stage": stage, "action": "nothing-to-recover"}
    is_rollback = rec.data.get("operation") == "rollback"
    forward = rec.state == "finishing" or is_rollback
    action = "finish-rollback" if is_rollback else ("roll-forward" if forward else "roll-back")
    funcs = rec.data.get("functions") or {}
    out = {"stage": stage, "deploy_id": rec.id, "operation": rec.data.get("operation", "deploy"),
           "died_in": rec.state, "action": action,
           "functions": {fn: {"name": i["name"], "to_version": (i.get("new_version") if forward
                                                                else i.get("previous_version"))}
                         for fn, i in funcs.items()}}
    if dry_run:
        return {**out, "dry_run": True}
    took = led.take_over(stage, rec.id, deps.actor, deps.lease, force=force)
    try:
        led.append_event(stage, rec.id, "recover", actor=deps.actor, reason=f"{action} after dying in {rec.state}",
                         lock=took)
        with _Signals() as sig, sig.shield():
            if forward:
                for i in funcs.values():
                    if i.get("new_version"):
                        alias = lo.read_alias(deps.lambda_client, i["name"])
                        if alias.settled and alias.version == str(i["new_version"]):
                            continue
                        if alias.exists:
                            _restore(deps.lambda_client, i["new_version"], i["name"], deps.sleep)
                        else:
                            lo.set_alias(deps.lambda_client, i["name"], i["new_version"], {}, exists=False,
                                         sleep=deps.sleep)
                why = (f"recovered: rollback to {rec.data.get('target')} finished (stopped in {rec.state})"
                       if is_rollback else f"recovered forward (had reached 100% and baked; died in {rec.state})")
                led.transition(stage, rec.id, "succeeded", actor=deps.actor, reason=why, lock=took)
                undone = rec.data.get("current")
                if is_rollback and undone and undone != rec.data.get("target"):
                    led.append_event(stage, undone, "rolled-back", actor=deps.actor,
                                     reason=f"superseded by rollback {rec.id}", data={"rolled_back_by": rec.id},
                                     lock=took)
            else:
                if rec.state != "rolling_back":
                    led.transition(stage, rec.id, "rolling_back", actor=deps.actor,
                                   reason=f"recover: died in {rec.state}", lock=took)
                for i in funcs.values():
                    if i.get("new_version") is None and not i.get("alias_existed", True):
                        continue
                    prev = i.get("previous_version") if i.get("alias_existed", True) else None
                    alias = lo.read_alias(deps.lambda_client, i["name"])
                    if prev is not None and alias.settled and alias.version == prev:
                        continue
                    if prev is None and not alias.exists:
                        continue
                    _restore(deps.lambda_client, prev, i["name"], deps.sleep)
                led.transition(stage, rec.id, "rolled_back", actor=deps.actor,
                               reason=f"recovered: rolled back (died in {rec.state})", lock=took)
    finally:
        led.release(took)
    return {**out, "state": "succeeded" if forward else "rolled_back"}


def check_startable(ledger: Ledger, stage: str, clock: Callable[[], float]) -> None:
    """Refuse early (before planning side effects) when a dead deploy needs recovery."""
    rec = ledger.unfinished(stage)
    if rec is None:
        return
    lock = ledger.current_lock(stage)
    if lock is not None and lock.deploy_id == rec.id and lock.lease_until > clock():
        raise LockedError(lock.describe(), "wait for it to finish (`pt status --stage " + stage + "`)")
    raise RecoveryNeeded(f"deploy {rec.id} to stage {stage} did not finish (state {rec.state})",
                         f"run `pt recover --stage {stage}` to roll it back (or forward) first")


def status(cfg: Any, stage: str, lambda_client: Any, ledger: Ledger | None, clock: Callable[[], float]) -> dict:
    """What runs where. Damaged ledger items are skipped; each is listed under `warnings`."""
    rows = []
    warnings: list[str] = []

    def skip(e: CorruptItem) -> None:
        warnings.append(f"skipped: {e.message}")

    recent = ledger.page(stage, DEPLOY, limit=20, on_corrupt=skip)[0] if ledger else []  # Limit-bounded
    last = recent[:1]
    unfinished = next((r for r in recent if not r.final), None)
    lock = damaged_lock = None
    if ledger:
        try:
            lock = ledger.current_lock(stage)
        except CorruptItem as e:
            damaged_lock = e.message
            warnings.append(f"{e.message} ({e.hint})")
    for fn, name in _fn_names(cfg, stage).items():
        row: dict[str, Any] = {"function": fn, "name": name}
        try:
            alias = lo.read_alias(lambda_client, name)
        except Exception as e:
            row.update(error=str(e))
            rows.append(row)
            continue
        if not alias.exists:
            try:
                lambda_client.get_function_configuration(FunctionName=name)
                row["note"] = "no alias live yet (created by the first pt deploy)"
            except Exception as e:
                row["note"] = ("function missing" if lo._code(e) == "ResourceNotFoundException"
                               else f"cannot read: {lo._code(e) or e}")
        row.update(alias=alias.exists, version=alias.version, weights=alias.weights,
                   digest=lo.version_digest(lambda_client, name, alias.version) if alias.exists else None)
        if alias.weights:
            row["weighted_digests"] = {v: lo.version_digest(lambda_client, name, v) for v in alias.weights}
        rows.append(row)
    out: dict[str, Any] = {"stage": stage, "functions": rows, "lock": None, "last_deploy": None}
    split = _split(cfg, rows)
    if split:
        out["split"] = split
    in_flight = lock is not None and unfinished is not None and lock.deploy_id == unfinished.id \
        and lock.lease_until > clock()
    if unfinished is not None and not in_flight:
        out["unfinished"] = {"id": unfinished.id, "operation": unfinished.data.get("operation", "deploy"),
                             "state": unfinished.state, "digest": unfinished.digest}
    if damaged_lock:
        out["lock"] = {"damaged": damaged_lock}
    if warnings:
        out["warnings"] = warnings
    if lock:
        out["lock"] = {"deploy_id": lock.deploy_id, "actor": lock.actor.get("name"), "since": iso(lock.since),
                       "lease_until": iso(lock.lease_until), "stale": lock.lease_until <= clock()}
    if last:
        r = last[0]
        out["last_deploy"] = {"id": r.id, "operation": r.data.get("operation", "deploy"), "state": r.state,
                              "digest": r.digest, "actor": r.actor.get("name"), "at": iso(r.created),
                              "age_s": round(clock() - r.created), "reason": r.reason}
    return out


def _split(cfg: Any, rows: list[dict]) -> dict | None:
    """Functions of one image that serve different digests, or a weighted alias: a deploy or a
    rollback stopped part-way (or is in flight). {image: {function name: digest or weights}}."""
    by_image: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.get("alias"):
            continue
        fcfg = cfg.functions.get(row["function"])
        image = getattr(fcfg, "image", None) or "?"
        by_image.setdefault(image, {})[row["name"]] = (row.get("weighted_digests") and
                                                        {"primary": row.get("digest"), **row["weighted_digests"]}) \
            or row.get("digest")
    out = {}
    for image, fns in by_image.items():
        digests = {v for v in fns.values() if isinstance(v, str)}
        if len(digests) > 1 or any(isinstance(v, dict) for v in fns.values()):
            out[image] = fns
    return out or None


def history(ledger: Ledger, stage: str, n: int = 20, *, warn: Callable[[str], None] | None = None) -> list[dict]:
    return history_page(ledger, stage, n, warn=warn)[0]


def history_page(ledger: Ledger, stage: str, n: int = 20, before: str | None = None, *,
                 warn: Callable[[str], None] | None = None) -> tuple[list[dict], str | None]:
    """One page of deploys, newest first, and the cursor (a deploy id) of the next page or None;
    damaged items are skipped (each reported to `warn`)."""
    def skip(e: CorruptItem) -> None:
        if warn is not None:
            warn(f"skipped: {e.message}")

    records, cursor = ledger.page(stage, DEPLOY, limit=n, before=before, on_corrupt=skip)
    out = []
    for r in records:
        end = r.transitions[-1].get("ts") if r.transitions else r.updated
        out.append({"id": r.id, "operation": r.data.get("operation", "deploy"), "state": r.state,
                    "digest": r.digest, "image": r.data.get("image"), "strategy": r.data.get("strategy"),
                    "actor": r.actor.get("name"), "git_sha": r.actor.get("git_sha"), "started": iso(r.created),
                    "duration_s": round((end or r.updated) - r.created, 1), "reason": r.reason,
                    "window_override": bool((r.data.get("window") or {}).get("overridden")),
                    "rolled_back_by": r.data.get("rolled_back_by"), "targets": _record_targets(r)})
    return out, cursor


def _record_targets(r: Record) -> list[str]:
    """The target ids a deploy record changed (an engine record's, or `lambda:<fn>` of this module's)."""
    if r.data.get("engine"):
        return list(r.data.get("changing") or r.data.get("order") or [])
    return [f"lambda:{fn}" for fn in sorted(r.data.get("functions") or {})]


# --- image existence ---------------------------------------------------------------------------

ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def ecr_region(ref: ImageRef) -> str | None:
    m = ECR_HOST_RE.match(ref.repository.partition("/")[0])
    return m.group(2) if m else None


def check_image(ref: ImageRef, *, ecr: Any = None, timeout: float = 10.0) -> None:
    """Refuse a digest the registry does not have (ECR API, else the registry HTTP API)."""
    host, _, path = ref.repository.partition("/")
    hint = "push it first: `pt build-push` prints the image_uri to deploy"
    if ECR_HOST_RE.match(host):
        try:
            ecr.describe_images(repositoryName=path, imageIds=[{"imageDigest": ref.digest}])
        except Exception as e:
            code = lo._code(e)
            if code == "ImageNotFoundException":
                raise NotFoundError(f"image {ref.digest} not found in ECR repository {path}", hint) from None
            if code == "RepositoryNotFoundException":
                raise NotFoundError(f"ECR repository {path} does not exist",
                                    "deploy the stage stack (it creates the repository), then `pt build-push`") \
                    from None
            raise
        return
    import urllib.error
    import urllib.request

    local = host.split(":")[0] in ("127.0.0.1", "localhost") or host.endswith(".local")
    url = f"{'http' if local else 'https'}://{host}/v2/{path}/manifests/{ref.digest}"
    accept = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
    try:
        urllib.request.urlopen(req, timeout=timeout).close()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            raise NotFoundError(f"image {ref.digest} not found in registry {host}/{path}", hint) from None
        if e.code in (401, 403):
            return  # needs registry credentials we do not hold; Lambda's own pull will verify
        raise DeployFailed(f"registry {host} answered HTTP {e.code} for {ref.uri}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DeployFailed(f"cannot reach registry {host}: {getattr(e, 'reason', e)}",
                           "check PT_REGISTRY / network access") from None
