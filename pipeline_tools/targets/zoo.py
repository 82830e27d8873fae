"""Model-zoo rollouts: each whitelisted model (`zoo.models`) is a Lambda target.

`copy: true` deploys `<project>-<stage>-<model>_copy` next to the running model (both live, no
consumer re-pointed); `copy: false` publishes a new version of `<project>-<stage>-<model>`, moves
its alias `live` and re-points the model's consumers (SSM parameters, Lambda environment
variables) to `<function>:<version>`. A model whose artifacts hash (SHA-256 of its pt artifacts
manifest) and image equal what runs is skipped.

Layers (the planner is pure and lives in `zoo_plan.py`; everything with a client is here):
- `zoo_plan`: names (`function_names`, `check_function_name`), `plan_models(stage, inputs, states)
  -> ZooPlan` (per model skip / copy / new-version with the reason), `set_digest(inputs)` (the set
  that staging proved; prod needs the same), gc age arithmetic.
- reading: `resolve_artifacts(...)` (manifest verified, hash), `read_deployed(lc, name)`.
- executor: `apply_stage`, `revert`, `gc`, `rollout` (stages in promotion order, gate between
  them, prod's approvals/window/lock checks). Every step is a ledger record of kind `zoo`
  (operation apply | revert | gc), written before it acts; the stage lock is the deploy lock.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import DeployFailed, GateWait, LockedError, NotFoundError, PtError, UsageError
from pipeline_tools.release import approvals as rules
from pipeline_tools.release.ledger import Ledger, Lock, Record, RecoveryNeeded, lease_from_env, new_id
from pipeline_tools.targets import lambda_ops as lo
from pipeline_tools.targets.zoo_plan import (
    COPY_SUFFIX,
    NEW_VERSION,
    UNKNOWN,
    Deployed,
    LedgerView,
    ModelInput,
    ModelPlan,
    ZooPlan,
    function_names,
    gc_candidates,
    lambda_time,
    plan_models,
    protected_versions,
    select,
    short,
    split_waves,
)

ZOO = "zoo"
ARTIFACTS_IN_TEXT = re.compile(r"artifacts=(sha256:[0-9a-f]{64})")
ENV_MODEL, ENV_ARTIFACTS, ENV_SHA = "PT_MODEL", "PT_MODEL_ARTIFACTS", "PT_MODEL_SHA256"
TAG_MODEL, TAG_APPLY = "pt:zoo-model", "pt:zoo-apply"  # on functions pt creates


class ArtifactsMismatch(PtError):
    """Model artifacts do not match their manifest."""


# --- reading AWS -------------------------------------------------------------------------------


def _code(e: BaseException) -> str | None:
    resp = getattr(e, "response", None)
    return resp.get("Error", {}).get("Code") if isinstance(resp, dict) else None


def read_deployed(lc: Any, name: str) -> Deployed:
    try:
        alias = lo.read_alias(lc, name)
        if not alias.exists:
            lc.get_function_configuration(FunctionName=name)
            return Deployed(name, exists=True)
    except Exception as e:
        if _code(e) == "ResourceNotFoundException":
            return Deployed(name)
        raise
    # one GetFunction gives the version's configuration and its code (2 requests per model, not 5)
    f = lc.get_function(FunctionName=name, Qualifier=alias.version)
    c = f.get("Configuration") or {}
    desc = c.get("Description") or ""
    m = ARTIFACTS_IN_TEXT.search(desc) if desc.startswith("pt ") else None
    art = m.group(1) if m else ((c.get("Environment") or {}).get("Variables") or {}).get(ENV_SHA)
    uri = (f.get("Code") or {}).get("ImageUri")
    d = lo.DIGEST_IN_TEXT.search(desc) if desc.startswith("pt ") else None
    d = d or lo.DIGEST_IN_TEXT.search(uri or "")  # the same order as lambda_ops.version_digest
    digest = d.group(0) if d else None
    return Deployed(name, True, alias.version, art, digest, with_digest(uri, digest), bool(alias.weights))


def with_digest(uri: str | None, digest: str | None) -> str | None:
    """`repo[:tag][@digest]` → `repo@digest` (deploys always reference digests)."""
    if not uri or not digest:
        return None
    repo = uri.split("@", 1)[0]
    head, _, last = repo.rpartition("/")
    if ":" in last:
        repo = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    return f"{repo}@{digest}"


@dataclass(frozen=True)
class Artifacts:
    model: str
    location: str        # s3://bucket/prefix or a local directory
    local: bool
    sha256: str          # sha256:… of the manifest's SHA256SUMS
    files: int


def manifest_hash(manifest: Any) -> str:
    return "sha256:" + hashlib.sha256(manifest.sha256sums()).hexdigest()


def resolve_artifacts(cfg: Any, stage: str, model: str, *, s3: Any = None, workers: int = 8) -> Artifacts:
    """Find a model's artifacts, verify them against their manifest, hash the manifest.

    Missing artifacts → NotFoundError; a file that differs from the manifest → ArtifactsMismatch.
    """
    from pipeline_tools.core.names import render
    from pipeline_tools.ops import artifacts as art
    from pipeline_tools.ops import manifest as mf

    spec = cfg.zoo.models[model].artifacts
    where = render(spec, project=cfg.project, stage=stage, bucket=cfg.bucket(stage))
    if where.startswith("s3://"):
        loc = art.parse_s3_url(where, f"zoo.models.{model}.artifacts")
        if s3 is None:
            raise UsageError(f"model {model}: artifacts are in S3 ({loc.url}) but no S3 client was given")
        try:
            report = art.verify(s3, loc, workers=workers)
        except NotFoundError as e:
            raise NotFoundError(f"model {model}: artifacts missing: {e.message}",
                                f"push them: `pt artifacts push DIR --stage {stage} --prefix {loc.prefix}`") from None
        if not report["ok"]:
            raise ArtifactsMismatch(f"model {model}: {len(report['problems'])} file(s) in {loc.url} do not match "
                                    f"the manifest: {_problems(report['problems'])}",
                                    "push the artifacts again (`pt artifacts push`) or fix the manifest")
        manifest = art.get_manifest(s3, loc)
        return Artifacts(model, loc.url, False, manifest_hash(manifest), len(manifest.files))
    root = (cfg.base_dir / where).resolve()
    if not root.is_dir():
        raise NotFoundError(f"model {model}: artifacts missing: {root} is not a directory",
                            f"fix zoo.models.{model}.artifacts in pipeline.yml")
    if not (root / mf.MANIFEST_NAME).is_file():
        raise NotFoundError(f"model {model}: artifacts missing their manifest: {root / mf.MANIFEST_NAME}",
                            f"create it with `pt artifacts manifest {root}`")
    report = art.verify_local(root, workers=workers)
    if not report["ok"]:
        raise ArtifactsMismatch(f"model {model}: {len(report['problems'])} file(s) in {root} do not match its "
                                f"manifest: {_problems(report['problems'])}",
                                f"re-create the manifest (`pt artifacts manifest {root}`) if the change is wanted")
    manifest = mf.read(root / mf.MANIFEST_NAME)
    return Artifacts(model, str(root), True, manifest_hash(manifest), len(manifest.files))


def _problems(problems: list[dict]) -> str:
    shown = ", ".join(f"{p['path']} ({p['problem']})" for p in problems[:3])
    return shown + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")


# --- consumers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consumer:
    model: str
    kind: str                # ssm | lambda-env
    target: str              # parameter name or function name
    variable: str | None = None

    @property
    def key(self) -> str:
        return f"ssm:{self.target}" if self.kind == "ssm" else f"lambda:{self.target}#{self.variable}"


def consumers(cfg: Any, stage: str) -> list[Consumer]:
    from pipeline_tools.core.names import render

    out = []
    for c in cfg.zoo.consumers:
        if c.ssm is not None:
            out.append(Consumer(c.model, "ssm", render(c.ssm, project=cfg.project, stage=stage)))
        else:
            fn = cfg.function_name(stage, c.function) if c.function in cfg.functions else \
                render(c.function, project=cfg.project, stage=stage)
            out.append(Consumer(c.model, "lambda-env", fn, c.variable))
    return out


def read_consumer(c: Consumer, *, ssm: Any, lc: Any) -> str | None:
    if c.kind == "ssm":
        try:
            return ssm.get_parameter(Name=c.target)["Parameter"]["Value"]
        except Exception as e:
            if _code(e) == "ParameterNotFound":
                return None
            raise
    env = (lc.get_function_configuration(FunctionName=c.target).get("Environment") or {}).get("Variables") or {}
    return env.get(c.variable or "")


def write_consumer(c: Consumer, value: str | None, *, ssm: Any, lc: Any, clock: Callable[[], float],
                   sleep: Callable[[float], None]) -> None:
    """Set (or, with None, remove) the consumer's value."""
    if c.kind == "ssm":
        if value is None:
            try:
                ssm.delete_parameter(Name=c.target)
            except Exception as e:
                if _code(e) != "ParameterNotFound":
                    raise
        else:
            ssm.put_parameter(Name=c.target, Value=value, Type="String", Overwrite=True)
        return
    latest = lo.wait_updated(lc, c.target, clock, sleep, 120.0)
    alias = lo.read_alias(lc, c.target)
    if alias.exists:
        # The consumer is served through its alias: the new value goes live as a new version of it,
        # which must run exactly the code the alias runs now (never ship an unpublished $LATEST).
        live_sha = lc.get_function_configuration(FunctionName=c.target, Qualifier=alias.version).get("CodeSha256")
        if alias.weights or live_sha != latest.get("CodeSha256"):
            raise DeployFailed(f"consumer {c.target}: its $LATEST code differs from its live version "
                               f"v{alias.version} (or traffic is split), so its environment cannot be re-published",
                               f"finish or roll back the deploy of {c.target} first (`pt status`)")
    env = dict((latest.get("Environment") or {}).get("Variables") or {})
    if value is None:
        env.pop(c.variable or "", None)
    else:
        env[c.variable or ""] = value
    lo.retrying(lc.update_function_configuration, sleep, FunctionName=c.target, Environment={"Variables": env})
    lo.wait_updated(lc, c.target, clock, sleep, 120.0)
    if alias.exists:
        desc = lc.get_function_configuration(FunctionName=c.target, Qualifier=alias.version).get("Description") or ""
        version = lo.publish(lc, c.target, desc if desc.startswith("pt ") else f"pt zoo consumer {c.variable}", sleep)
        lo.set_alias(lc, c.target, version, {}, exists=True, sleep=sleep)


def set_consumers(changes: list[tuple[Consumer, str | None, str | None]], *, ssm: Any, lc: Any,
                  clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    """Apply (consumer, old, new) changes all or none: on a failure, undo the ones done, then raise."""
    done: list[tuple[Consumer, str | None, str | None]] = []
    try:
        for c, old, new in changes:
            write_consumer(c, new, ssm=ssm, lc=lc, clock=clock, sleep=sleep)
            done.append((c, old, new))
    except BaseException as exc:
        undo_errors = []
        for c, old, _new in reversed(done):
            try:
                write_consumer(c, old, ssm=ssm, lc=lc, clock=clock, sleep=sleep)
            except Exception as e:  # keep undoing the rest; report every failure
                undo_errors.append(f"{c.key}: {e}")
        failed = changes[len(done)][0].key if len(done) < len(changes) else "?"
        msg = f"re-pointing consumers failed at {failed}: {getattr(exc, 'message', None) or exc}"
        if undo_errors:
            raise DeployFailed(msg + f"; could NOT undo: {'; '.join(undo_errors)}",
                               "set these consumers by hand to the values in the ledger record") from exc
        raise DeployFailed(msg + f" (undid {len(done)} already changed)") from exc


# --- executor --------------------------------------------------------------------------------


@dataclass
class ZooDeps:
    lambda_client: Any
    ssm: Any
    ledger: Ledger
    cloudwatch: Any = None
    s3: Any = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = lambda _m: None
    actor: dict = field(default_factory=dict)
    lease: float = field(default_factory=lease_from_env)
    update_timeout: float = 300.0
    parallel: int = 1  # models read/rolled out at once (`pt zoo … --parallel N`)


LIST_FUNCTIONS_FROM = 20  # models; below this, per-function reads are as cheap


def _existing_functions(lc: Any, wanted: set[str]) -> set[str] | None:
    """The names in `wanted` that exist, from ListFunctions; None (read each one) when the account
    holds so many other functions that listing them would cost more than reading ours."""
    found: set[str] = set()
    marker = None
    for _ in range(max(4, len(wanted) // 25)):  # pages of 50: at most ~2 pages per 50 of ours
        resp = lc.list_functions(**({"Marker": marker} if marker else {}), MaxItems=50)
        found.update(f["FunctionName"] for f in resp.get("Functions", []) if f["FunctionName"] in wanted)
        marker = resp.get("NextMarker")
        if not marker:
            return found
    return None


def plan_stage(cfg: Any, stage: str, *, deps: ZooDeps, models: Iterable[str] | None = None,
               image_uri: str | None = None, artifacts: Mapping[str, Artifacts] | None = None,
               cached: bool = False) -> ZooPlan:
    """Resolve and verify every selected model's artifacts, read what runs, plan (no changes).

    `cached`: take what runs from the ledger where it can tell (`LedgerView`: a few Query pages
    instead of two Lambda reads per model) and read AWS only for the rest — for `pt zoo plan`;
    an apply always reads AWS (it acts on what it reads).
    """
    import threading

    from pipeline_tools.release.deploy import parse_image_uri

    zoo = require_zoo(cfg)
    names_ = select(zoo.models, models)
    ref = parse_image_uri(image_uri) if image_uri else None
    cons = consumers(cfg, stage)
    # a copy: false model's `_copy` function plays no part in its plan: not read
    wanted = {fn for n in names_ for fn in function_names(cfg, stage, n)[:2 if zoo.models[n].copy_alongside else 1]}
    reads = {"ledger": 0, "aws": 0}
    view = _ledger_view(deps.ledger, stage, wanted) if cached else None
    from_ledger = {fn: st for fn in wanted if view is not None and (st := view.state(fn)) is not UNKNOWN}
    unknown = wanted - set(from_ledger)
    # Which model functions exist at all: one ListFunctions page per 50 functions instead of two
    # NotFound round trips per missing function (a first rollout of 500 models: 10 requests, not 2,000).
    existing = _existing_functions(deps.lambda_client, unknown) if len(unknown) >= LIST_FUNCTIONS_FROM else None
    lock = threading.Lock()

    def read_fn(fn: str) -> Deployed:
        if fn in from_ledger:
            where, out = "ledger", from_ledger[fn]
        elif existing is not None and fn not in existing:
            where, out = "aws", Deployed(fn)  # not in the listing
        else:
            where, out = "aws", read_deployed(deps.lambda_client, fn)
        with lock:
            reads[where] += 1
        return out

    # Artifacts verified once per location: models sharing one (a common base) are not re-hashed
    resolved: dict[str, Any] = {}

    def resolve(name: str) -> Artifacts:
        given = (artifacts or {}).get(name)
        if given is not None:
            return given
        key = zoo.models[name].artifacts
        with lock:
            cell = resolved.setdefault(key, {"lock": threading.Lock(), "value": None})
        with cell["lock"]:
            if cell["value"] is None:
                cell["value"] = resolve_artifacts(cfg, stage, name, s3=deps.s3)
        return replace(cell["value"], model=name)

    def read(name: str) -> tuple[ModelInput, tuple[Deployed, Deployed]]:
        a = resolve(name)
        main, copy = function_names(cfg, stage, name)
        return (ModelInput(name, zoo.models[name].copy_alongside, a.sha256, ref.digest if ref else None,
                           ref.uri if ref else None, tuple(c.key for c in cons if c.model == name), a.location),
                (read_fn(main), read_fn(copy) if copy in wanted else Deployed(copy)))

    # Reads only: bounded parallelism (each model is a few round trips; 500 models in sequence is seconds).
    # Threads only when there is waiting to overlap: Lambda reads, or more than one artifacts location
    # to verify. Functions settled by the ledger or missing from the listing cost no request, and
    # 500 thread hand-offs for pure work only add CPU.
    to_read = [fn for fn in wanted if fn not in from_ledger and (existing is None or fn in existing)]
    locations = {zoo.models[n].artifacts for n in names_ if n not in (artifacts or {})}
    if deps.parallel > 1 and len(names_) > 1 and (len(to_read) > 1 or len(locations) > 1):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(deps.parallel, len(names_))) as pool:
            got = list(pool.map(read, names_))
    else:
        got = [read(n) for n in names_]
    plan = plan_models(stage, [i for i, _ in got], {i.name: st for i, st in got})
    return replace(plan, reads={**reads, "functions": len(wanted), "cached": cached})


def _ledger_view(led: Ledger, stage: str, wanted: set[str], page: int = 25) -> LedgerView:
    """Feed the stage's zoo records, newest first, until every wanted function is settled."""
    view = LedgerView(wanted)
    before = None
    for _ in range(10_000):
        recs, before = led.page(stage, ZOO, limit=page, before=before)
        for r in recs:
            view.feed({**r.data, "state": r.state})
            if view.done:
                return view
        if before is None:
            return view
    return view


def require_zoo(cfg: Any) -> Any:
    if cfg.zoo is None or not cfg.zoo.models:
        raise UsageError("no model zoo configured (zoo.models is empty)",
                         "add a `zoo:` section with `models: {NAME: {copy: false, artifacts: DIR}}` to pipeline.yml")
    clash = sorted(n for m in cfg.zoo.models for n in (m, m + COPY_SUFFIX) if n in cfg.functions)
    if clash:
        raise UsageError(f"zoo model name(s) {', '.join(clash)} collide with `functions:` (same Lambda name)",
                         "rename the model: `pt deploy` and `pt zoo` would fight over one function")
    return cfg.zoo


def _role(cfg: Any, stage: str, lc: Any, model: str) -> str:
    if cfg.zoo.role:
        return cfg.zoo.role
    main, _ = function_names(cfg, stage, model)
    for fn in [main, *(cfg.function_name(stage, f) for f in sorted(cfg.functions))]:
        try:
            return lc.get_function_configuration(FunctionName=fn)["Role"]
        except Exception as e:
            if _code(e) != "ResourceNotFoundException":
                raise
    raise NotFoundError(f"no execution role for the new function of model {model} in {stage}",
                        "set zoo.role to a Lambda execution role ARN, or deploy the StageStack's functions first")


def _upload(cfg: Any, stage: str, m: ModelPlan, s3: Any) -> str:
    """Local artifacts go to the stage bucket under zoo/<model>/<hash>; S3 ones stay where they are."""
    from pipeline_tools.ops import artifacts as art

    if m.location and m.location.startswith("s3://"):
        return m.location
    if s3 is None:
        raise UsageError(f"model {m.model}: local artifacts need an S3 client to upload them")
    loc = art.Location.of(cfg.bucket(stage), f"zoo/{m.model}/{m.artifacts.removeprefix('sha256:')[:16]}",
                          f"zoo model {m.model}: artifacts prefix")
    art.push(s3, m.location or "", loc, stack=names.stage_stack(cfg.project, stage))
    return loc.url


def _environment(cfg: Any, m: ModelPlan, where: str) -> dict[str, str]:
    spec = cfg.zoo.models[m.model]
    return {**spec.environment, ENV_MODEL: m.model, ENV_ARTIFACTS: where, ENV_SHA: m.artifacts}


def _deploy_model(cfg: Any, stage: str, m: ModelPlan, where: str, rid: str, d: ZooDeps) -> str:
    """Create or update the function, publish a version carrying the hashes, move alias live."""
    lc = d.lambda_client
    spec = cfg.zoo.models[m.model]
    env = _environment(cfg, m, where)
    conf: dict[str, Any] = {"Environment": {"Variables": env}}
    if spec.handler:
        conf["ImageConfig"] = {"Command": [spec.handler]}
    if spec.memory:
        conf["MemorySize"] = spec.memory
    if spec.timeout:
        conf["Timeout"] = spec.timeout
    if m.create:
        lo.retrying(lc.create_function, d.sleep, FunctionName=m.function, PackageType="Image",
                    Code={"ImageUri": m.image_uri}, Role=_role(cfg, stage, lc, m.model),
                    Description=f"pt zoo model {m.model}", Tags={TAG_MODEL: m.model, TAG_APPLY: rid}, **conf)
        lo.wait_updated(lc, m.function, d.clock, d.sleep, d.update_timeout)
    else:
        lo.wait_updated(lc, m.function, d.clock, d.sleep, d.update_timeout)
        lo.retrying(lc.update_function_configuration, d.sleep, FunctionName=m.function, **conf)
        lo.wait_updated(lc, m.function, d.clock, d.sleep, d.update_timeout)
        lo.update_code(lc, m.function, m.image_uri or "", d.clock, d.sleep, d.update_timeout)
    desc = f"pt zoo {rid} {m.image_digest or ''} artifacts={m.artifacts}"
    version = lo.publish(lc, m.function, desc, d.sleep)
    if m.previous_version is not None and version == m.previous_version:
        raise DeployFailed(f"publishing {m.function} returned the live version v{version} (nothing new published)",
                           "check the function's code and configuration")
    # the plan (read just before) knows whether alias live exists; creating it falls back to an update
    lo.set_alias(lc, m.function, version, {}, exists=m.previous_version is not None, sleep=d.sleep)
    return version


def _undo_model(lc: Any, step: dict, sleep: Callable[[float], None]) -> None:
    """Put a model function back as it was before the apply (alias back; a created function deleted).

    A function is deleted only if it carries the tag of the apply that created it: if creating it
    failed because someone else's function of that name appeared meanwhile, that one stays.
    """
    if step.get("created"):
        try:
            tags = lc.get_function(FunctionName=step["function"]).get("Tags") or {}
            mine = tags.get(TAG_APPLY) == step["apply_id"] if step.get("apply_id") else TAG_MODEL in tags
            if mine:
                lo.retrying(lc.delete_function, sleep, FunctionName=step["function"])
        except Exception as e:
            if _code(e) != "ResourceNotFoundException":
                raise
        return
    if step.get("previous_version") is None:
        lo.delete_alias(lc, step["function"], sleep)
    else:
        lo.set_alias(lc, step["function"], step["previous_version"], {}, exists=True, sleep=sleep)


def qualified(function: str, version: str) -> str:
    return f"{function}:{version}"


def apply_stage(cfg: Any, plan: ZooPlan, d: ZooDeps, *, window: dict | None = None,
                preexisting: frozenset[str] = frozenset()) -> Record | None:
    """Roll the plan out on its stage: lock, each model (recorded), consumers wave by wave, done.

    Consumers move in the waves of `zoo.waves` (one wave when unset), the stage's gate between
    waves. Any failure — a model, a consumer, a gate between waves that is not PASS —, Ctrl-C or
    SIGTERM rolls back everything this apply changed (every wave's consumers, aliases, created
    functions) and raises DeployFailed; the record ends `rolled_back` with each consumer's outcome.
    None when nothing changes. `preexisting`: alarms already firing before (per gate policy).
    """
    from pipeline_tools.release.deploy import _Signals  # the deploy engine's SIGTERM/SIGINT → rollback handling

    if plan.noop:
        return None
    with _Signals() as sig:
        return _apply_stage(cfg, plan, d, window, sig, preexisting)


def _apply_stage(cfg: Any, plan: ZooPlan, d: ZooDeps, window: dict | None, sig: Any,
                 preexisting: frozenset[str]) -> Record:
    stage = plan.stage
    led = d.ledger
    check_startable(led, stage, d.clock)
    rid = new_id(d.clock())
    sig.shielded = True  # no lock without its record: a signal here is handled once inside `try`
    lock = led.acquire(stage, rid, d.actor, d.lease)
    steps: list[dict] = []
    rollout = _Repoint(cfg, stage, d, rid, lock, preexisting)
    rec = None
    try:
        sig.shielded = False
        if sig.received:
            from pipeline_tools.release.deploy import Interrupted

            raise Interrupted(sig.received)
        rec = led.put_record(ZOO, stage, {"operation": "apply", "set_digest": plan.set_digest,
                                          "plan": _record_plan(plan), "window": window, "models": [],
                                          "consumers": []},
                             actor=d.actor, state="locked", record_id=rid,
                             reason=f"window override: {window.get('reason')}"
                             if window and window.get("overridden") else None, lock=lock)
        rec = led.transition(stage, rid, "applying", actor=d.actor, current=rec, lock=lock)
        rec = _roll_models(cfg, plan, d, rid, rec, steps, lock=lock)
        rec = rollout.run(steps, rec)
        rec = led.transition(stage, rid, "succeeded", actor=d.actor, current=rec,
                             reason=f"{len(steps)} model(s) rolled out", data={"finished": d.clock()}, lock=lock)
    except BaseException as exc:
        sig.shielded = True  # a second signal must not interrupt the rollback
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        errors = rollout.undo()  # every wave's consumers back first: they name the new versions
        for s in reversed(steps):
            try:
                _undo_model(d.lambda_client, s, d.sleep)
            except Exception as e:  # keep undoing the others
                errors.append(f"{s['function']}: {e}")
        final = "rolled_back" if (steps or rollout.items) and not errors else "failed"
        try:
            if rec is not None:
                led.transition(stage, rid, final, actor=d.actor, reason=reason,
                               data={"undo_errors": errors, **rollout.data()}, lock=lock)
        finally:
            if not errors:
                led.release(lock)
        hint = f"could not undo {'; '.join(errors)}: fix by hand; the lock stays" if errors else None
        raise DeployFailed(f"zoo apply {rid} to {stage} {final.replace('_', ' ')}: {reason}", hint) \
            from (exc if isinstance(exc, Exception) else None)
    led.release(lock)
    return rec


class _Repoint:
    """Re-point the consumers of the models an apply published, wave by wave (`zoo.waves`).

    Every consumer is in the record with its wave and outcome (pending → set → reverted, or
    failed / undo-failed / untouched) before any is changed, and again after each wave. Inside a
    wave up to `d.parallel` targets change at once (the consumers of one Lambda one after the
    other: its environment is one document). Between waves the stage's gate decides (fail closed:
    anything but PASS stops); a failure anywhere undoes every wave (`undo`), not only the last —
    the earlier waves run the same new versions the gate just failed.
    """

    def __init__(self, cfg: Any, stage: str, d: ZooDeps, rid: str, lock: Lock | None,
                 preexisting: frozenset[str]):
        self.cfg, self.stage, self.d, self.rid, self.lock, self.pre = cfg, stage, d, rid, lock, preexisting
        self.items: list[dict] = []     # one per consumer: the ledger's view, updated in place
        self.waves: list[dict] = []
        self._cons: dict[str, Consumer] = {}

    def data(self) -> dict:
        return {"consumers": self.items, "waves": self.waves} if self.items else {}

    def run(self, steps: list[dict], rec: Record) -> Record:
        d, led = self.d, self.d.ledger
        cons = consumers(self.cfg, self.stage)
        for s in steps:
            if s["action"] != NEW_VERSION:
                continue
            for c in cons:
                if c.model == s["model"]:
                    try:
                        old = read_consumer(c, ssm=d.ssm, lc=d.lambda_client)
                    except Exception as e:
                        raise DeployFailed(f"re-pointing consumers failed at {c.key} (reading it): "
                                           f"{getattr(e, 'message', None) or e}") from e
                    self._cons[c.key] = c
                    self.items.append({**_change(c, old, qualified(s["function"], s["version"])),
                                       "outcome": "pending"})
        if not self.items:
            return rec
        try:
            waves = split_waves(self.items, self.cfg.zoo.waves)
        except ValueError as e:
            raise UsageError(f"zoo.waves: {e}", "fix zoo.waves in pipeline.yml (`pt config validate`)") from None
        for n, wave in enumerate(waves, 1):
            for it in wave:
                it["wave"] = n
        self.waves = [{"wave": n, "consumers": [it["consumer"] for it in w], "gate": None}
                      for n, w in enumerate(waves, 1)]
        for n, wave in enumerate(waves, 1):
            head = f"{self.stage}: wave {n}/{len(waves)}"
            d.log(f"{head}: re-pointing {len(wave)} consumer(s): " + ", ".join(it["consumer"] for it in wave[:5])
                  + (f" and {len(wave) - 5} more" if len(wave) > 5 else ""))
            rec = led.transition(self.stage, self.rid, "repointing", actor=d.actor, current=rec,
                                 reason=f"wave {n}/{len(waves)}: {len(wave)} consumer(s)", data=self.data(),
                                 lock=self.lock)
            try:
                self._wave(wave)
            finally:  # what this wave set (or failed) is on the record, even when it stops here
                rec = self._save(rec, f"wave {n}/{len(waves)}: " + ", ".join(
                    f"{sum(1 for it in wave if it['outcome'] == o)} {o}" for o in ("set", "failed", "pending")
                    if any(it["outcome"] == o for it in wave)))
            if n == len(waves):
                break
            status, why, _ = stage_gate(self.cfg, self.stage, d.clock(), d, wait=True, preexisting=self.pre,
                                        bake=self.cfg.zoo.wave_bake)
            self.waves[n - 1]["gate"] = {"status": status, "explanation": why}
            d.log(f"{head}: gate {status}: {why}")
            rec = self._save(rec, f"wave {n}/{len(waves)} gate {status}: {why}")
            if status != "PASS":  # WAIT after the bake cannot move on: fail closed
                raise DeployFailed(f"gate {status} after wave {n}/{len(waves)} ({why}): stopped before wave "
                                   f"{n + 1}; every wave is undone")
        return rec

    def _save(self, rec: Record, reason: str) -> Record:
        try:
            return self.d.ledger.transition(self.stage, self.rid, "repointing", actor=self.d.actor, current=rec,
                                            reason=reason, data=self.data(), lock=self.lock)
        except Exception as e:  # keep the consumer's own error; the outcome is written with the final state
            self.d.log(f"warning: could not record {reason}: {e}")
            return rec

    def _wave(self, wave: list[dict]) -> None:
        import threading

        groups: dict[str, list[dict]] = {}
        for it in wave:  # one Lambda's variables one after the other
            groups.setdefault(f"{it['kind']}:{it['target']}", []).append(it)
        stop = threading.Event()

        def run_group(items: list[dict]) -> None:
            for it in items:
                if stop.is_set():
                    return
                try:
                    write_consumer(self._cons[it["consumer"]], it["value"], ssm=self.d.ssm, lc=self.d.lambda_client,
                                   clock=self.d.clock, sleep=self.d.sleep)
                except BaseException as e:
                    it["outcome"], it["error"] = "failed", str(getattr(e, "message", None) or e)
                    stop.set()
                    raise
                it["outcome"] = "set"

        par = max(1, min(self.d.parallel, len(groups)))
        errors: list[BaseException] = []
        if par == 1:
            try:
                for items in groups.values():
                    run_group(items)
            except Exception as e:
                errors.append(e)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=par, thread_name_prefix="pt-zoo-wave") as pool:
                futures = [pool.submit(run_group, items) for items in groups.values()]
            errors = [e for e in (f.exception() for f in futures) if e is not None]
            for e in errors:
                if not isinstance(e, Exception):
                    raise e
        if errors:
            failed = [it["consumer"] for it in wave if it["outcome"] == "failed"]
            raise DeployFailed(f"re-pointing consumers failed at {', '.join(failed)}: "
                               f"{getattr(errors[0], 'message', None) or errors[0]}") from errors[0]

    def undo(self) -> list[str]:
        """Every consumer this apply set (or may have half set) back to its previous value, newest
        first; outcomes recorded. Returns the ones that could not be undone."""
        errors = []
        for it in reversed(self.items):
            if it["outcome"] == "pending":
                it["outcome"] = "untouched"
                continue
            if it["outcome"] not in ("set", "failed"):
                continue
            try:
                write_consumer(self._cons[it["consumer"]], it["previous"], ssm=self.d.ssm, lc=self.d.lambda_client,
                               clock=self.d.clock, sleep=self.d.sleep)
                it["outcome"] = "reverted" if it["outcome"] == "set" else "failed, reverted"
            except Exception as e:  # keep undoing the others; report every failure
                it["outcome"], it["undo_error"] = "undo-failed", str(e)
                errors.append(f"{it['consumer']}: {e}")
        return errors


def _record_plan(plan: ZooPlan) -> dict:
    """The plan as kept in the ledger record: the per-model details live in `models` (the steps),
    so only what changes is listed here (a DynamoDB item is at most 400 KB: 500 full model plans
    and their steps would not fit)."""
    p = plan.to_dict()
    p["models"] = [{"model": m.model, "action": m.action, "reason": m.reason} for m in plan.changing()]
    return p


def _roll_models(cfg: Any, plan: ZooPlan, d: ZooDeps, rid: str, rec: Record, steps: list[dict],
                 lock: Lock | None = None) -> Record:
    """Roll out every changing model, up to d.parallel at once, in waves of a few models.

    Each wave is written to the ledger record (its models' steps) before any of them is touched,
    and again with their new versions once they are live, so a model is never changed without
    being recorded; two writes per wave keep the record small at hundreds of models. The first
    failure stops new models; the running ones finish; then the caller undoes every recorded step.
    """
    import threading

    stage, led = plan.stage, d.ledger
    stop = threading.Event()
    state = {"rec": rec}
    changing = list(plan.changing())
    par = max(1, min(d.parallel, len(changing) or 1))
    wave = max(4, 4 * par)

    def write(reason: str) -> None:
        state["rec"] = led.transition(stage, rid, "applying", reason=reason, actor=d.actor,
                                      data={"models": steps}, current=state["rec"], lock=lock)

    def one(m: Any, step: dict) -> None:
        if stop.is_set():
            return
        d.log(f"{stage}: {m.model}: {m.action} → {m.function}")
        step["artifacts_location"] = where = _upload(cfg, stage, m, d.s3)
        step["version"] = _deploy_model(cfg, stage, m, where, rid, d)

    def run_wave(batch: list[tuple[Any, dict]]) -> None:
        if par == 1 or len(batch) == 1:
            for m, step in batch:
                one(m, step)
            return
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=min(par, len(batch)), thread_name_prefix="pt-zoo") as pool:
            futures = [pool.submit(one, m, step) for m, step in batch]
            try:
                for f in as_completed(futures):
                    f.result()
            except BaseException:
                stop.set()  # no new model starts; leaving `with` waits for the running ones
                raise

    for i in range(0, len(changing), wave):
        batch = [(m, {"model": m.model, "action": m.action, "function": m.function, "created": m.create,
                      "apply_id": rid, "previous_version": m.previous_version, "version": None,
                      "artifacts": m.artifacts, "artifacts_location": m.location, "image_digest": m.image_digest,
                      "image_repo": (m.image_uri or "").split("@", 1)[0] or None})
                 for m in changing[i:i + wave]]
        steps.extend(step for _, step in batch)
        names_ = ", ".join(m.model for m, _ in batch)
        write(f"{batch[0][0].action} {names_}" if len(batch) == 1 else f"rolling out {len(batch)}: {names_}")
        try:
            run_wave(batch)
        finally:  # record what went live in this wave, even when a model of it failed
            live = [f"{step['model']} v{step['version']}" for _, step in batch if step["version"]]
            if live:
                try:
                    write(f"live: {', '.join(live)}")
                except Exception as e:  # keep the model's own error; the steps are already recorded
                    d.log(f"warning: could not record {', '.join(live)} as live: {e}")
    return state["rec"]


def _change(c: Consumer, old: str | None, new: str | None) -> dict:
    return {"consumer": c.key, "model": c.model, "kind": c.kind, "target": c.target, "variable": c.variable,
            "previous": old, "value": new}


def last_apply(led: Ledger, stage: str) -> Record | None:
    """The newest apply that succeeded and was not reverted yet."""
    recs = led.query(stage, ZOO, state="succeeded", limit=1,
                     where=lambda r: r.data.get("operation") == "apply" and not r.data.get("reverted_by"))
    return recs[0] if recs else None


def drift(d: ZooDeps, apply_rec: Record) -> list[str]:
    """What changed since the apply (aliases, consumers): reverting over it would undo someone else."""
    out = []
    for s in apply_rec.data.get("models") or []:
        now = read_deployed(d.lambda_client, s["function"])
        if not now.live:
            out.append(f"{s['function']}: gone or without alias live (the apply left v{s.get('version')})")
        elif now.version != s.get("version") or now.weighted:
            out.append(f"{s['function']}: live is v{now.version}, the apply left v{s.get('version')}")
    for ch in apply_rec.data.get("consumers") or []:
        c = Consumer(ch["model"], ch["kind"], ch["target"], ch.get("variable"))
        now = read_consumer(c, ssm=d.ssm, lc=d.lambda_client)
        if now != ch["value"]:
            out.append(f"{c.key}: holds {now!r}, the apply set {ch['value']!r}")
    return out


def revert(cfg: Any, stage: str, d: ZooDeps, *, dry_run: bool = False, force: bool = False) -> dict:
    """Re-point every consumer and alias back to the previous versions, in one recorded step."""
    from pipeline_tools.release.deploy import _Signals

    with _Signals() as sig:
        return _revert(cfg, stage, d, dry_run=dry_run, force=force, sig=sig)


def _revert(cfg: Any, stage: str, d: ZooDeps, *, dry_run: bool, force: bool, sig: Any) -> dict:
    led = d.ledger
    target = last_apply(led, stage)
    if target is None:
        raise NotFoundError(f"nothing to revert in {stage}: no zoo apply that succeeded and is not reverted yet",
                            "every apply that succeeded there was reverted already, or none ran; "
                            f"`pt zoo plan --stage {stage}` shows what runs")
    changed = drift(d, target)
    if changed and not force:
        raise PtError(f"{stage} changed since zoo apply {target.id}: " + "; ".join(changed),
                      "reverting would undo those changes too: check them, then `pt zoo revert --force`")
    steps = target.data.get("models") or []
    cons = {c.key: c for c in consumers(cfg, stage)}
    changes = []
    for ch in target.data.get("consumers") or []:
        c = cons.get(ch["consumer"]) or Consumer(ch["model"], ch["kind"], ch["target"], ch.get("variable"))
        changes.append((c, ch["value"], ch["previous"]))
    data = {"operation": "revert", "reverts": target.id, "set_digest": target.data.get("set_digest"),
            "drift": changed,
            "models": [{"model": s["model"], "function": s["function"], "from_version": s.get("version"),
                        "apply_id": s.get("apply_id"),
                        "to_version": None if s.get("created") else s.get("previous_version"),
                        "delete_function": bool(s.get("created"))} for s in steps],
            "consumers": [_change(c, new, old) for c, new, old in changes]}
    if dry_run:
        return {"dry_run": True, **data}
    check_startable(led, stage, d.clock)
    rid = new_id(d.clock())
    lock = led.acquire(stage, rid, d.actor, d.lease)
    rec = led.put_record(ZOO, stage, data, actor=d.actor, state="reverting", record_id=rid,
                         reason=f"revert zoo apply {target.id}", lock=lock)
    undone: list[dict] = []
    try:
        set_consumers([(c, new, old) for c, new, old in changes], ssm=d.ssm, lc=d.lambda_client,
                      clock=d.clock, sleep=d.sleep)
        try:
            # aliases first (reversible), functions this apply created last (deleted for good)
            for s in sorted(steps, key=lambda s: bool(s.get("created"))):
                _undo_model(d.lambda_client, s, d.sleep)
                undone.append(s)
        except BaseException:
            # all or none: put the consumers and the models already reverted back as the apply left them
            for s in reversed(undone):
                if not s.get("created") and s.get("version"):
                    lo.set_alias(d.lambda_client, s["function"], s["version"], {}, exists=True, sleep=d.sleep)
            set_consumers([(c, old, new) for c, new, old in changes], ssm=d.ssm, lc=d.lambda_client,
                          clock=d.clock, sleep=d.sleep)
            raise
    except BaseException as exc:
        sig.shielded = True
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        led.transition(stage, rid, "failed", actor=d.actor, reason=reason, current=rec, lock=lock)
        led.release(lock)
        raise DeployFailed(f"zoo revert {rid} on {stage} failed, nothing changed: {reason}") \
            from (exc if isinstance(exc, Exception) else None)
    led.transition(stage, rid, "succeeded", actor=d.actor, current=rec, reason=f"reverted {target.id}", lock=lock)
    led.append_event(stage, target.id, "reverted", actor=d.actor, data={"reverted_by": rid}, lock=lock)
    led.release(lock)
    return {"dry_run": False, "revert_id": rid, **data}


# --- recovery --------------------------------------------------------------------------------

FINAL = frozenset({"succeeded", "rolled_back", "failed"})


def unfinished(led: Ledger, stage: str) -> Record | None:
    for rec in led.query(stage, ZOO, limit=20):
        if rec.state not in FINAL:
            return rec
    return None


def check_startable(led: Ledger, stage: str, clock: Callable[[], float]) -> None:
    """A zoo operation that died mid-way (record not final, lease expired) must be recovered first."""
    rec = unfinished(led, stage)
    if rec is None:
        return
    lock = led.current_lock(stage)
    if lock is not None and lock.deploy_id == rec.id and lock.lease_until > clock():
        raise LockedError(lock.describe(), f"wait for it to finish (`pt status --stage {stage}`)")
    raise RecoveryNeeded(f"zoo {rec.data.get('operation')} {rec.id} on {stage} did not finish (state {rec.state})",
                         f"run `pt zoo recover --stage {stage}` to undo it first")


def recover(cfg: Any, stage: str, d: ZooDeps, *, force: bool = False, dry_run: bool = False) -> dict:
    """Finish what a dead zoo operation left: an apply is undone (models and consumers back to the
    values recorded before it acted), a revert is completed, a gc is closed as failed."""
    led = d.ledger
    rec = unfinished(led, stage)
    if rec is None:
        return {"stage": stage, "action": "nothing-to-recover"}
    op = rec.data.get("operation")
    action = {"apply": "undo-apply", "revert": "finish-revert"}.get(op or "", "close")
    out = {"stage": stage, "record": rec.id, "operation": op, "died_in": rec.state, "action": action}
    if dry_run:
        return {**out, "dry_run": True}
    lock = led.take_over(stage, rec.id, d.actor, d.lease, force=force)
    try:
        led.append_event(stage, rec.id, "recover", actor=d.actor, reason=f"{action} after dying in {rec.state}",
                         lock=lock)
        if op == "apply":
            changes = [(Consumer(c["model"], c["kind"], c["target"], c.get("variable")), c["value"], c["previous"])
                       for c in rec.data.get("consumers") or []]
            set_consumers(changes, ssm=d.ssm, lc=d.lambda_client, clock=d.clock, sleep=d.sleep)
            for step in reversed(rec.data.get("models") or []):
                _undo_model(d.lambda_client, step, d.sleep)
            led.transition(stage, rec.id, "rolled_back", actor=d.actor,
                           reason=f"recovered: undone (died in {rec.state})", lock=lock)
        elif op == "revert":
            changes = [(Consumer(c["model"], c["kind"], c["target"], c.get("variable")), c["previous"], c["value"])
                       for c in rec.data.get("consumers") or []]
            set_consumers(changes, ssm=d.ssm, lc=d.lambda_client, clock=d.clock, sleep=d.sleep)
            for m in sorted(rec.data.get("models") or [], key=lambda m: bool(m.get("delete_function"))):
                _undo_model(d.lambda_client, {"function": m["function"], "created": m.get("delete_function"),
                                              "previous_version": m.get("to_version"),
                                              "apply_id": m.get("apply_id")}, d.sleep)
            led.transition(stage, rec.id, "succeeded", actor=d.actor, reason="recovered: revert completed", lock=lock)
            if rec.data.get("reverts"):
                led.append_event(stage, rec.data["reverts"], "reverted", actor=d.actor, data={"reverted_by": rec.id},
                                 lock=lock)
        else:
            led.transition(stage, rec.id, "failed", actor=d.actor, reason=f"recovered: closed (died in {rec.state})",
                           lock=lock)
    finally:
        led.release(lock)
    return {**out, "state": "recovered"}


# --- garbage collection ----------------------------------------------------------------------


def _list_all(call: Callable[..., dict], key: str, **kw: Any) -> list[dict]:
    out, marker = [], None
    for _ in range(1000):
        resp = call(**kw, **({"Marker": marker} if marker else {}))
        out += resp.get(key, [])
        marker = resp.get("NextMarker")
        if not marker:
            break
    return out


def gc(cfg: Any, stage: str, d: ZooDeps, *, older_than: float, dry_run: bool = False,
       models: Iterable[str] | None = None) -> dict:
    """Delete model versions older than `older_than` that no alias, consumer or pending revert uses."""
    zoo = require_zoo(cfg)
    lc = d.lambda_client
    now = d.clock()
    used_by_consumers: set[str] = set()
    for c in consumers(cfg, stage):
        v = read_consumer(c, ssm=d.ssm, lc=lc)
        if v:
            used_by_consumers.add(v)
    # Not only the last apply's previous versions: per function, whichever record touched it last,
    # and every unreverted apply's previous version (revert walks back through them).
    keep_for_revert = protected_versions(
        {**r.data, "state": r.state} for r in d.ledger.query(stage, ZOO)
        if r.data.get("operation") in ("apply", "revert"))
    plan = []
    for model in select(zoo.models, models):
        for fn in function_names(cfg, stage, model):
            try:
                versions = _list_all(lc.list_versions_by_function, "Versions", FunctionName=fn)
                aliases = _list_all(lc.list_aliases, "Aliases", FunctionName=fn)
            except Exception as e:
                if _code(e) == "ResourceNotFoundException":
                    continue
                raise
            in_use = {str(a["FunctionVersion"]) for a in aliases}
            for a in aliases:
                in_use.update((a.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}).keys())
            in_use |= {q.rsplit(":", 1)[1] for q in used_by_consumers | keep_for_revert
                       if q.rsplit(":", 1)[0] == fn}
            vs = [(str(v["Version"]), lambda_time(v.get("LastModified"))) for v in versions]
            for v in gc_candidates(vs, in_use, now, older_than):
                plan.append({"function": fn, "version": v, "model": model})
    data = {"operation": "gc", "older_than_s": older_than, "delete": plan, "dry_run": dry_run}
    if dry_run or not plan:
        return {**data, "deleted": []}
    check_startable(d.ledger, stage, d.clock)
    rid = new_id(now)
    lock = d.ledger.acquire(stage, rid, d.actor, d.lease)
    rec = d.ledger.put_record(ZOO, stage, data, actor=d.actor, state="collecting", record_id=rid)
    deleted = []
    try:
        for p in plan:
            lo.retrying(lc.delete_function, d.sleep, FunctionName=p["function"], Qualifier=p["version"])
            deleted.append(p)
    except Exception as exc:
        d.ledger.transition(stage, rid, "failed", actor=d.actor, current=rec, data={"deleted": deleted},
                            reason=getattr(exc, "message", None) or str(exc))
        d.ledger.release(lock)
        raise
    d.ledger.transition(stage, rid, "succeeded", actor=d.actor, current=rec, data={"deleted": deleted},
                        reason=f"deleted {len(deleted)} version(s)")
    d.ledger.release(lock)
    return {**data, "gc_id": rid, "deleted": deleted}


# --- multi-stage rollout ---------------------------------------------------------------------


def stage_order(cfg: Any) -> list[str]:
    """Stages in promotion order: the longest promote_from chain (staging → prod)."""
    chains = [cfg.promotion_chain(s) for s in cfg.stages]
    return max(chains, key=len)


def succeeded_at(rec: Record) -> float:
    for t in reversed(rec.transitions):
        if t.get("state") == "succeeded" and t.get("ts") is not None:
            return float(t["ts"])
    return rec.updated


def source_apply(led: Ledger, source: str, digest: str) -> Record | None:
    """The source stage's newest succeeded, unreverted zoo apply of this set."""
    last = last_apply(led, source)
    return last if last is not None and last.data.get("set_digest") == digest else None


def preflight(cfg: Any, stage: str, d: ZooDeps) -> frozenset[str]:
    """Alarms already firing before an apply: refused (`preexisting_alarm: block`, as `pt deploy`
    does) or returned, so the gate after the apply treats them per policy. API errors raise."""
    from pipeline_tools.release import gate as gate_mod  # apply only: `pt zoo plan` does not load it

    policy = gate_mod.GatePolicy.from_config(cfg, stage)
    firing = gate_mod.GateWatch(d.cloudwatch, policy, d.clock()).start()
    if firing and policy.preexisting_alarm == "block":
        names_ = ", ".join(a.name for a in firing)
        raise DeployFailed(f"alarm already in ALARM before the zoo apply to {stage}: {names_}",
                           "fix or silence it first, or set gate.preexisting_alarm: ignore for this stage")
    return frozenset(a.name for a in firing)


def stage_gate(cfg: Any, stage: str, since: float, d: ZooDeps, *, wait: bool,
               preexisting: frozenset[str] = frozenset(), bake: float | None = None) -> tuple[str, str, dict | None]:
    """Gate of `stage` over its bake (default deploy.bake) since `since`: (PASS|FAIL|WAIT, explanation, verdict)."""
    from pipeline_tools.release import gate as gate_mod

    policy = gate_mod.GatePolicy.from_config(cfg, stage)
    bake = cfg.stages[stage].deploy.bake if bake is None else bake
    watch = gate_mod.GateWatch(d.cloudwatch, policy, since)
    watch.preexisting = preexisting
    while True:
        now = d.clock()
        v = watch.poll(now)
        if v.failed:
            return "FAIL", v.summary(), v.to_dict()
        if now - since >= bake:
            status = "PASS" if v.passed else v.status
            return status, f"{v.summary()} after bake {bake:g}s", v.to_dict()
        if not wait:
            return "WAIT", f"baking: {now - since:.0f}s of {bake:g}s", v.to_dict()
        d.sleep(max(0.05, min(policy.poll, since + bake - now)))


def promotion_checks(cfg: Any, target: str, digest: str, d: ZooDeps, *, override_window: bool = False,
                     reason: str | None = None) -> tuple[list[dict], Any]:
    """Before a stage with promote_from: the source ran this set and its gate passed, approvals for the
    set digest, the deploy window, a free lock. Raises on the first that fails."""
    src = cfg.stages[target].promote_from
    led = d.ledger
    checks: list[dict] = []
    rec = source_apply(led, src, digest)
    if rec is None:
        raise PtError(f"{src} has not run this zoo set ({short(digest)}) with success: promote it there first",
                      f"`pt zoo apply --stage {src}` (same pipeline.yml and artifacts), then {target}")
    checks.append({"check": "deployed", "ok": True, "detail": f"{src} zoo apply {rec.id}"})
    status, why, _ = stage_gate(cfg, src, succeeded_at(rec), d, wait=False)
    if status != "PASS":
        raise (GateWait if status == "WAIT" else PtError)(f"{src} gate {status}: {why}",
                                                         f"`pt gate --stage {src}` shows the alarms")
    checks.append({"check": "gate", "ok": True, "detail": why})
    rule = cfg.stages[target].approvals
    if rule is not None:
        from pipeline_tools.release.promote import load_approvals

        st = rules.evaluate(load_approvals(led, target), stage=target, digest=digest, rule=rule,
                            author=rules.authors_of(rec.actor))
        if not st.satisfied:
            raise PtError(f"approvals for {target} not satisfied for zoo set {short(digest)}: {st.explain()}",
                          f"each approver runs `pt zoo approve --stage {target}`")
        checks.append({"check": "approvals", "ok": True, "detail": st.explain()})
    from pipeline_tools.release import windows

    decision = windows.check(cfg.stages[target].window, datetime.fromtimestamp(d.clock(), UTC),
                             override=override_window, reason=reason)
    checks.append({"check": "window", "ok": True, "detail": decision.window or "no window",
                   "overridden": decision.overridden})
    held = led.current_lock(target)
    if held is not None and held.lease_until > d.clock():
        raise LockedError(held.describe(), f"wait for it (`pt status --stage {target}`)")
    checks.append({"check": "lock", "ok": True, "detail": f"{target} is free"})
    return checks, decision


def approve(cfg: Any, target: str, d: ZooDeps, *, decision: str = rules.APPROVE,
            comment: str | None = None, dry_run: bool = False) -> dict:
    """Record an approval of the zoo set the source stage runs (its last succeeded apply) for `target`."""
    from pipeline_tools.release.promote import APPROVAL, load_approvals

    src = cfg.stages[target].promote_from
    if not src:
        raise UsageError(f"stage {target} has no promote_from: zoo approvals apply to promotions")
    rec = last_apply(d.ledger, src)
    if rec is None:
        raise NotFoundError(f"{src} runs no zoo set applied by pt (no succeeded, unreverted zoo apply)",
                            f"approve after `pt zoo apply --stage {src}` succeeded")
    digest = rec.data["set_digest"]
    new = rules.Approval(stage=target, digest=digest, approver=d.actor.get("name") or "unknown", decision=decision,
                         arn=d.actor.get("arn"), comment=comment, at=d.clock(), deploy_id=rec.id, source="pt-zoo",
                         declared=d.actor.get("declared"))
    existing = load_approvals(d.ledger, target)
    author = rules.authors_of(rec.actor)
    note = rules.check_new(new, existing=existing, rule=cfg.stages[target].approvals, author=author)
    if note is None and not dry_run:
        d.ledger.put_record(APPROVAL, target, {k: v for k, v in new.to_dict().items() if k != "id"}, actor=d.actor,
                            state="approved" if decision == rules.APPROVE else "rejected", reason=comment)
    st = rules.evaluate(load_approvals(d.ledger, target), stage=target, digest=digest,
                        rule=cfg.stages[target].approvals, author=author)
    return {"stage": target, "digest": digest, "source_apply": rec.id, "note": note, "dry_run": dry_run,
            "status": st.to_dict()}


def rollout(cfg: Any, deps_for: Callable[[str], ZooDeps], *, stages: list[str] | None = None,
            models: Iterable[str] | None = None, image_uri: str | None = None, dry_run: bool = False,
            override_window: bool = False, reason: str | None = None,
            log: Callable[[str], None] = lambda _m: None) -> dict:
    """Apply the zoo stage by stage (promotion order); the gate of each stage decides the next.

    A gate FAIL reverts that stage's apply and stops (exit 1); a WAIT stops (exit 3).
    """
    order = stages or stage_order(cfg)
    result: dict[str, Any] = {"stages": [], "dry_run": dry_run}
    models = list(models) if models else None
    for i, stage in enumerate(order):
        d = deps_for(stage)
        if not dry_run:  # a dead operation leaves a half state: planning on it would mislead
            check_startable(d.ledger, stage, d.clock)
        plan = plan_stage(cfg, stage, deps=d, models=models, image_uri=image_uri)
        entry: dict[str, Any] = {"stage": stage, "plan": plan.to_dict()}
        result["stages"].append(entry)
        result["set_digest"] = plan.set_digest
        window = None
        src = cfg.stages[stage].promote_from
        if src and dry_run and src in order[:i]:
            entry["checks"] = [{"check": "promotion", "ok": True,
                                "detail": f"checked after {src} is applied and its gate passes "
                                          "(source, gate, approvals, window, lock)"}]
        elif src and dry_run:
            try:
                entry["checks"], _ = promotion_checks(cfg, stage, plan.set_digest, d,
                                                      override_window=override_window, reason=reason)
            except PtError as e:
                entry["checks"] = [{"check": "refused", "ok": False, "detail": e.message, "hint": e.hint}]
        elif src:
            try:
                entry["checks"], decision = promotion_checks(cfg, stage, plan.set_digest, d,
                                                             override_window=override_window, reason=reason)
            except PtError as e:
                d.ledger.put_record(ZOO, stage, {"operation": "apply", "set_digest": plan.set_digest,
                                                 "refused": True, "hint": e.hint}, actor=d.actor,
                                    state="failed", reason=f"refused: {e.message}")
                raise
            window = decision.to_dict()
        if dry_run:
            continue
        pre = preflight(cfg, stage, d) if not plan.noop else frozenset()
        rec = apply_stage(cfg, plan, d, window=window, preexisting=pre)
        entry["apply_id"] = rec.id if rec else None
        entry["state"] = rec.state if rec else "noop"
        if rec is not None and rec.data.get("waves"):
            entry["waves"] = rec.data["waves"]
        nxt = order[i + 1] if i + 1 < len(order) else None
        gates_next = nxt is not None and cfg.stages[nxt].promote_from == stage
        if rec is None and not gates_next:
            continue
        # Every stage that changed bakes under its gate (as a `pt deploy` would); a stage that did
        # not change is still gated before the next one.
        prior = rec or last_apply(d.ledger, stage)
        since = succeeded_at(prior) if prior else d.clock()
        log(f"{stage}: gate over bake {cfg.stages[stage].deploy.bake:g}s" + (f" before {nxt}" if gates_next else ""))
        status, why, verdict = stage_gate(cfg, stage, since, d, wait=True, preexisting=pre)
        entry["gate"] = {"status": status, "explanation": why, "verdict": verdict}
        if rec is not None:
            d.ledger.append_event(stage, rec.id, "gate", actor=d.actor, reason=why,
                                  data={"gate": {"status": status, "explanation": why}})
        untouched = f"; {nxt} untouched" if gates_next else ""
        if status == "FAIL":
            if rec is not None:
                entry["reverted"] = revert(cfg, stage, d)["revert_id"]
            raise DeployFailed(f"{stage} gate FAIL after the zoo apply: {why}; "
                               + ("reverted it" if rec is not None else "nothing changed in this run") + untouched)
        if status == "WAIT":
            raise GateWait(f"{stage} gate still WAIT after bake: {why}{untouched}",
                           f"`pt zoo apply --stage {nxt}` when the gate passes" if gates_next else
                           f"watch it with `pt gate --stage {stage}`; `pt zoo revert --stage {stage}` to undo")
    return result

