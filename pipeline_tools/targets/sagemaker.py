"""SageMaker real-time endpoint target: shadow deploys, the shadow gate, promote and rollback.

A target is a new kind of thing to deploy, not a new pipeline: it uses the same ledger (table,
records, stage lock, transitions written before acting), gate verdict (stage alarms), approvals,
deploy windows and the artifacts manifest verification as the Lambda deploy engine.

Flow (config `targets.sagemaker`, endpoint `<project>-<stage>-<endpoint>`):

- `deploy`: verify the model artifacts prefix against its SHA-256 manifest (`artifacts.verify`),
  create a model (image digest + artifacts prefix) and an endpoint config that keeps the current
  production variant and adds the new model as `ShadowProductionVariants` (the shadow weight is
  `shadow_sampling`% of the production weight) with `DataCaptureConfig` to the stage bucket;
  `update_endpoint`, wait with a deadline. With no endpoint yet, the model becomes production
  (`create_endpoint`). Ledger kind `sagemaker`, states `locked → creating → updating →
  succeeded | failed`; on failure the endpoint is put back on its previous config.
- `gate_shadow`: shadow vs production CloudWatch metrics (ModelLatency p50/p99, Invocation5XXErrors
  rate, a user metric) compared by the pure `compare()` against `thresholds`, plus the stage alarms
  through `gate.evaluate`. FAIL > WAIT > PASS.
- `promote_shadow`: after gate PASS, approvals (stage rule, bound to the shadow digest), window and
  lock, an endpoint config whose production variant is the shadow model (no shadow).
- `rollback`: the endpoint back to the config recorded before the newest step (drops a shadow, or
  undoes a promotion).

Pure parts (request builders, `compare`, `wait` decisions) are separate from the calls; every
call takes its clients (`sagemaker`, `s3`, `cloudwatch`, a `Ledger`) and `clock`/`sleep`.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.config import format_duration, render
from pipeline_tools.core.errors import EXIT_WAIT, LockedError, NotFoundError, PtError, UsageError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.release import approvals as rules
from pipeline_tools.release import gate as gate_mod
from pipeline_tools.release import windows
from pipeline_tools.release.ledger import Ledger, Record, iso, new_id

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config, SageMakerTargetConfig, ShadowThresholdsConfig, UserMetricConfig

KIND = "sagemaker"
PRODUCTION = names.SAGEMAKER_PRODUCTION_VARIANT
SHADOW = names.SAGEMAKER_SHADOW_VARIANT
STATES = ("locked", "creating", "updating", "rolling_back", "succeeded", "failed", "rolled_back")
NAMESPACE = "AWS/SageMaker"
PASS, FAIL, WAIT = gate_mod.PASS, gate_mod.FAIL, gate_mod.WAIT
# DescribeEndpoint EndpointStatus values (API reference)
BUSY = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
BROKEN = frozenset({"Failed", "UpdateRollbackFailed", "OutOfService"})


class EndpointFailed(PtError):
    """The endpoint ended Failed, rolled itself back, or missed the deadline."""


# --- names ------------------------------------------------------------------------------------


def target(cfg: Config, stage: str) -> SageMakerTargetConfig:
    cfg.stage(stage)
    t = cfg.targets.sagemaker
    if t is None:
        raise UsageError("no SageMaker target configured", "add `targets: {sagemaker: {endpoint: …, image: …, "
                         "model_artifacts: …}}` to pipeline.yml")
    if t.stages is not None and stage not in t.stages:
        raise UsageError(f"stage {stage} has no SageMaker endpoint (targets.sagemaker.stages: {', '.join(t.stages)})")
    return t


def endpoint_name(cfg: Config, stage: str) -> str:
    return _fit(f"{cfg.project}-{stage}-{target(cfg, stage).endpoint}")


def role_name(project: str, stage: str) -> str:
    return f"{project}-{stage}-sagemaker"


def role_arn(cfg: Config, stage: str) -> str:
    t = target(cfg, stage)
    return t.execution_role or f"arn:aws:iam::{cfg.stages[stage].account}:role/{role_name(cfg.project, stage)}"


def alarm_names(project: str, stage: str, endpoint: str) -> dict[str, str]:
    base = f"{project}-{stage}-{endpoint}"
    return {"latency": f"{base}-latency-p99", "errors": f"{base}-5xx"}


def capture_prefix(endpoint: str) -> str:
    return names.sagemaker_capture_prefix(endpoint)


def capture_uri(cfg: Config, stage: str) -> str:
    """Where SageMaker writes captured model outputs: s3://<stage bucket>/datacapture/<endpoint>/."""
    return f"s3://{cfg.bucket(stage)}/{capture_prefix(endpoint_name(cfg, stage))}/"


def production_variant_name(cfg: Config, stage: str) -> str:
    """The production variant name the stage's alarms watch (names.sagemaker_production_variant)."""
    return names.sagemaker_production_variant(target(cfg, stage).production_variant)


def artifacts_location(cfg: Config, stage: str) -> art.Location:
    raw = render(target(cfg, stage).model_artifacts, project=cfg.project, stage=stage)
    what = f"sagemaker model_artifacts of stage {stage}"
    if raw.startswith("s3://"):
        return art.parse_s3_url(raw, what)
    return art.Location.of(cfg.bucket(stage), raw, what)


def _fit(name: str, limit: int = 63) -> str:
    """SageMaker names: ≤ 63 chars of [a-zA-Z0-9-]; long names keep a hash of the full name."""
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    if len(name) <= limit:
        return name
    h = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: limit - 9].rstrip("-") + "-" + h


def resource_name(endpoint: str, record_id: str, what: str = "") -> str:
    """Model / endpoint config name of one ledger record: unique, traceable to the record."""
    rid = record_id.replace("T", "").replace("Z", "").lower()
    return _fit(f"{endpoint}-{what}{rid}" if what else f"{endpoint}-{rid}")


# --- pure request builders --------------------------------------------------------------------


def model_request(name: str, image_uri: str, artifacts_uri: str, role: str, *, digest: str,
                  record_id: str) -> dict:
    uri = artifacts_uri.rstrip("/") + "/"
    return {"ModelName": name, "ExecutionRoleArn": role,
            "PrimaryContainer": {"Image": image_uri, "Mode": "SingleModel",
                                 "ModelDataSource": {"S3DataSource": {"S3Uri": uri, "S3DataType": "S3Prefix",
                                                                      "CompressionType": "None"}}},
            "Tags": [{"Key": "pt:digest", "Value": digest}, {"Key": "pt:record", "Value": record_id},
                     {"Key": "pt:artifacts", "Value": uri[:256]}]}


def variant(name: str, model: str, instance_type: str, count: int, weight: float = 1.0) -> dict:
    return {"VariantName": name, "ModelName": model, "InstanceType": instance_type,
            "InitialInstanceCount": count, "InitialVariantWeight": weight}


def copy_variant(v: dict, *, name: str | None = None) -> dict:
    """A variant as described (DescribeEndpointConfig) → as CreateEndpointConfig takes it."""
    keep = ("ModelName", "InstanceType", "InitialInstanceCount", "InitialVariantWeight", "AcceleratorType",
            "VolumeSizeInGB", "ModelDataDownloadTimeoutInSeconds", "ContainerStartupHealthCheckTimeoutInSeconds",
            "ServerlessConfig")
    out = {"VariantName": name or v["VariantName"], **{k: v[k] for k in keep if k in v}}
    out.setdefault("InitialVariantWeight", 1.0)
    return out


CAPTURE_OPTIONS = ({"CaptureMode": "Output"},)  # model outputs only: requests may hold personal data


def data_capture(percent: int, uri: str) -> dict | None:
    if percent <= 0:
        return None
    return {"EnableCapture": True, "InitialSamplingPercentage": percent, "DestinationS3Uri": uri,
            "CaptureOptions": [dict(o) for o in CAPTURE_OPTIONS],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"],
                                         "CsvContentTypes": ["text/csv"]}}


def shadow_weight(production_weight: float, sampling: int) -> float:
    """Shadow traffic share = shadow weight / production weight (SageMaker shadow variants)."""
    return round(production_weight * sampling / 100.0, 6)


def endpoint_config_request(name: str, production: dict, shadow: dict | None, capture: dict | None, *,
                            record_id: str) -> dict:
    req: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [production],
                           "Tags": [{"Key": "pt:record", "Value": record_id}]}
    if shadow is not None:
        req["ShadowProductionVariants"] = [shadow]
    if capture is not None:
        req["DataCaptureConfig"] = capture
    return req


# --- reading the endpoint ---------------------------------------------------------------------


def _code(e: BaseException) -> str | None:
    return getattr(e, "response", {}).get("Error", {}).get("Code")


def _missing(e: BaseException) -> bool:
    msg = str(getattr(e, "response", {}).get("Error", {}).get("Message", ""))
    return _code(e) in ("ValidationException", "ResourceNotFound") and ("not find" in msg.lower()
                                                                        or "not exist" in msg.lower()
                                                                        or "not found" in msg.lower())


def describe_endpoint(sagemaker: Any, name: str) -> dict | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=name)
    except Exception as e:
        if _missing(e):
            return None
        raise


@dataclass(frozen=True)
class Current:
    """What the endpoint runs now (None everywhere when it does not exist)."""

    status: str | None = None
    config: str | None = None
    production: dict | None = None       # variant as described in the endpoint config
    shadow: dict | None = None
    production_image: str | None = None
    production_artifacts: str | None = None
    failure_reason: str | None = None
    capture: dict | None = None
    variants: tuple[dict, ...] = ()      # every production variant, with its runtime CurrentWeight
    shadows: tuple[dict, ...] = ()

    @property
    def exists(self) -> bool:
        return self.status is not None

    def to_dict(self) -> dict:
        return {"status": self.status, "endpoint_config": self.config,
                "production_variant": (self.production or {}).get("VariantName"),
                "production_model": (self.production or {}).get("ModelName"),
                "shadow_model": (self.shadow or {}).get("ModelName"),
                "production_image": self.production_image, "production_artifacts": self.production_artifacts,
                "failure_reason": self.failure_reason}


def read_current(sagemaker: Any, endpoint: str) -> Current:
    ep = describe_endpoint(sagemaker, endpoint)
    if ep is None:
        return Current()
    cfg_name = ep.get("EndpointConfigName")
    ec = sagemaker.describe_endpoint_config(EndpointConfigName=cfg_name) if cfg_name else {}
    variants = live_variants(ep, ec)
    prod = primary_variant(variants)
    # moto drops ShadowProductionVariants from describe calls; AWS returns them
    shadows = list(ec.get("ShadowProductionVariants") or ep.get("ShadowProductionVariants") or [])
    shadow = next(iter(shadows), None)
    image = artifacts = None
    if prod and prod.get("ModelName"):
        try:
            m = sagemaker.describe_model(ModelName=prod["ModelName"])
            c = m.get("PrimaryContainer") or {}
            image = c.get("Image")
            artifacts = ((c.get("ModelDataSource") or {}).get("S3DataSource") or {}).get("S3Uri") \
                or c.get("ModelDataUrl")
        except Exception as e:
            if not _missing(e):
                raise
    return Current(ep.get("EndpointStatus"), cfg_name, prod, shadow, image, artifacts, ep.get("FailureReason"),
                   ec.get("DataCaptureConfig"), tuple(variants), tuple(shadows))


def live_variants(desc: dict, ec: dict) -> list[dict]:
    """The config's production variants (as described) with the endpoint's runtime weights merged in
    (`CurrentWeight`, else `DesiredWeight`, else the config's initial weight). Pure."""
    runtime = {v.get("VariantName"): v for v in desc.get("ProductionVariants") or []}
    out = []
    for v in ec.get("ProductionVariants") or []:
        r = runtime.get(v.get("VariantName")) or {}
        w = next((float(x[k]) for x, k in ((r, "CurrentWeight"), (r, "DesiredWeight"), (v, "InitialVariantWeight"))
                  if x.get(k) is not None), 1.0 if not r else 0.0)
        out.append({**v, "CurrentWeight": w})
    return out


def primary_variant(variants: list[dict]) -> dict | None:
    """The production variant that takes the traffic: the highest current (else desired, else
    initial) weight; the first on a tie. Pure."""
    def weight(v: dict) -> float:
        for k in ("CurrentWeight", "DesiredWeight", "InitialVariantWeight"):
            if v.get(k) is not None:
                return float(v[k])
        return 0.0

    best: dict | None = None
    for v in variants:
        if best is None or weight(v) > weight(best):
            best = v
    return best


# --- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    stage: str
    endpoint: str
    action: str                  # create | shadow | noop
    image_uri: str
    digest: str
    artifacts: str               # s3://bucket/prefix
    record_id: str
    model: str
    endpoint_config: str
    current: Current
    model_request: dict
    config_request: dict
    sampling: int
    capture: int
    notes: tuple[str, ...] = ()

    @property
    def noop(self) -> bool:
        return self.action == "noop"

    def to_dict(self) -> dict:
        return {"target": "sagemaker", "stage": self.stage, "endpoint": self.endpoint, "action": self.action,
                "image_uri": self.image_uri, "digest": self.digest, "artifacts": self.artifacts,
                "record_id": self.record_id, "model": self.model, "endpoint_config": self.endpoint_config,
                "current": self.current.to_dict(), "shadow_sampling": self.sampling, "data_capture": self.capture,
                "requests": {"create_model": self.model_request, "create_endpoint_config": self.config_request},
                "notes": list(self.notes)}

    def lines(self) -> list[str]:
        cur = self.current
        out = [f"sagemaker endpoint {self.endpoint} ({self.stage}): {self.action}"]
        if cur.exists:
            out.append(f"  now: {cur.status}, config {cur.config}, production model "
                       f"{(cur.production or {}).get('ModelName')}")
        else:
            out.append("  now: no endpoint (it is created with this model as production)")
        out.append(f"  model {self.model}: {self.image_uri} + {self.artifacts}/")
        if self.action == "shadow":
            out.append(f"  endpoint config {self.endpoint_config}: production kept, shadow {self.sampling}% "
                       f"of requests, data capture {self.capture}%")
        for n in self.notes:
            out.append(f"  note: {n}")
        return out


def plan_deploy(cfg: Config, stage: str, image_uri: str, digest: str, sagemaker: Any, *, record_id: str) -> Plan:
    """Read the endpoint and build the requests (no mutating call)."""
    t = target(cfg, stage)
    ep = endpoint_name(cfg, stage)
    loc = artifacts_location(cfg, stage)
    cur = read_current(sagemaker, ep)
    model = resource_name(ep, record_id, "m")
    ec_name = resource_name(ep, record_id, "c")
    mreq = model_request(model, image_uri, loc.url, role_arn(cfg, stage), digest=digest, record_id=record_id)
    capture = data_capture(t.data_capture, capture_uri(cfg, stage))
    notes: list[str] = []
    new_prod = variant(production_variant_name(cfg, stage), model, t.instance_type, t.instance_count)
    if not cur.exists:
        action = "create"
        creq = endpoint_config_request(ec_name, new_prod, None, capture, record_id=record_id)
    else:
        if cur.status in BROKEN or cur.production is None:
            raise EndpointFailed(f"endpoint {ep} is {cur.status}" + (f": {cur.failure_reason}" if cur.failure_reason
                                                                       else ""),
                                 f"fix or delete the endpoint (`aws sagemaker delete-endpoint --endpoint-name {ep}`),"
                                 " then deploy again; `pt rollback --target sagemaker` restores the previous config")
        if cur.status in BUSY:
            raise LockedError(f"endpoint {ep} is {cur.status} (another update is running)",
                              "wait until it is InService, then deploy again")
        same = cur.production_image == image_uri and (cur.production_artifacts or "").rstrip("/") == loc.url
        action = "noop" if same else "shadow"
        if same and cur.shadow is not None:
            notes.append(f"production already runs this digest; shadow {cur.shadow.get('ModelName')} still runs "
                         "(`pt rollback --target sagemaker` drops it)")
        if cur.shadow is not None and not same:
            notes.append(f"replaces the running shadow {cur.shadow.get('ModelName')}")
        prod = copy_variant(cur.production)
        shadow = variant(SHADOW, model, t.instance_type, t.instance_count,
                         shadow_weight(float(prod.get("InitialVariantWeight", 1.0)), t.shadow_sampling))
        creq = endpoint_config_request(ec_name, prod, shadow, capture, record_id=record_id)
    return Plan(stage, ep, action, image_uri, digest, loc.url, record_id, model, ec_name, cur, mreq, creq,
                t.shadow_sampling, t.data_capture, tuple(notes))


def verify_artifacts(s3: Any, loc: art.Location, stack: str | None = None) -> dict:
    """artifacts.verify, as a refusal: no manifest, a missing object or a checksum mismatch."""
    report = art.verify(s3, loc, stack=stack)
    if not report["ok"]:
        shown = "; ".join(f"{p['path']}: {p['problem']}" for p in report["problems"][:5])
        raise PtError(f"model artifacts at {loc.url} do not match their manifest ({len(report['problems'])} "
                      f"problem(s): {shown})",
                      "push the artifacts again (`pt artifacts push DIR --stage S --prefix P`) and redeploy")
    return report


# --- waiting ----------------------------------------------------------------------------------


def settle(desc: dict | None, expect_config: str) -> str | None:
    """Pure: None while the endpoint is still moving, 'ok' when InService on `expect_config`, else
    an error text (Failed, rolled back by SageMaker to another config, gone)."""
    if desc is None:
        return "endpoint does not exist"
    status = desc.get("EndpointStatus")
    why = f": {desc['FailureReason']}" if desc.get("FailureReason") else ""
    if status in BUSY:
        return None
    if status == "InService":
        if desc.get("EndpointConfigName") == expect_config:
            return "ok"
        return (f"endpoint is InService on {desc.get('EndpointConfigName')}, not {expect_config}: "
                f"SageMaker rolled the update back{why}")
    return f"endpoint is {status}{why}"


def wait_endpoint(sagemaker: Any, endpoint: str, expect_config: str, *, timeout: float,
                  clock: Callable[[], float], sleep: Callable[[float], None], poll: float = 15.0) -> dict:
    deadline = clock() + timeout
    while True:
        desc = describe_endpoint(sagemaker, endpoint)
        verdict = settle(desc, expect_config)
        if verdict == "ok":
            return desc or {}
        if verdict is not None:
            raise EndpointFailed(f"endpoint {endpoint}: {verdict}",
                                 "see the endpoint's events and logs in CloudWatch (/aws/sagemaker/Endpoints/"
                                 f"{endpoint})")
        if clock() >= deadline:
            raise EndpointFailed(f"endpoint {endpoint} still {(desc or {}).get('EndpointStatus')} after "
                                 f"{format_duration(timeout)} (deadline)",
                                 "raise targets.sagemaker.wait, or check the endpoint in the console")
        sleep(min(poll, max(0.0, deadline - clock())))


# --- executor ---------------------------------------------------------------------------------


@dataclass
class Deps:
    sagemaker: Any
    ledger: Ledger
    s3: Any = None
    cloudwatch: Any = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    log: Callable[[str], None] = lambda _m: None
    actor: dict = field(default_factory=dict)
    poll: float = 15.0


def _lock(deps: Deps, stage: str, rid: str):
    return deps.ledger.acquire(stage, rid, deps.actor)


def _switch(deps: Deps, plan_endpoint: str, config: str, *, create: bool, timeout: float) -> dict:
    if create:
        deps.sagemaker.create_endpoint(EndpointName=plan_endpoint, EndpointConfigName=config,
                                       Tags=[{"Key": "pt:managed", "Value": "true"}])
    else:
        deps.sagemaker.update_endpoint(EndpointName=plan_endpoint, EndpointConfigName=config)
    return wait_endpoint(deps.sagemaker, plan_endpoint, config, timeout=timeout, clock=deps.clock,
                         sleep=deps.sleep, poll=deps.poll)


def _restore(deps: Deps, endpoint: str, previous: str | None, timeout: float) -> str:
    """Put the endpoint back on `previous` if it is not there; returns what happened."""
    if previous is None:
        return "no previous endpoint config (nothing to restore)"
    try:
        desc = describe_endpoint(deps.sagemaker, endpoint)
        if desc is None:
            return "endpoint does not exist"
        if desc.get("EndpointStatus") == "InService" and desc.get("EndpointConfigName") == previous:
            return f"endpoint already on {previous}"
        if desc.get("EndpointStatus") in BUSY:
            wait_endpoint(deps.sagemaker, endpoint, previous, timeout=timeout, clock=deps.clock,
                          sleep=deps.sleep, poll=deps.poll)
            return f"SageMaker rolled back to {previous}"
        _switch(deps, endpoint, previous, create=False, timeout=timeout)
        return f"restored {previous}"
    except Exception as e:
        return f"could not restore {previous}: {type(e).__name__}: {e}"


def _cleanup(deps: Deps, model: str | None, config: str | None) -> None:
    for call, kw in ((deps.sagemaker.delete_endpoint_config, {"EndpointConfigName": config}),
                     (deps.sagemaker.delete_model, {"ModelName": model})):
        if next(iter(kw.values())) is None:
            continue
        try:
            call(**kw)
        except Exception:  # best effort: a leftover config/model costs nothing while unused
            pass


def deploy(cfg: Config, plan: Plan, deps: Deps, *, window: dict | None = None) -> Record:
    """Run a plan: model + endpoint config + update, waited on; every step a ledger transition."""
    t = target(cfg, plan.stage)
    led, stage = deps.ledger, plan.stage
    lock = _lock(deps, stage, plan.record_id)
    try:
        now_on = (describe_endpoint(deps.sagemaker, plan.endpoint) or {}).get("EndpointConfigName")
    except BaseException:
        led.release(lock)
        raise
    if now_on != plan.current.config:
        led.release(lock)
        raise LockedError(f"endpoint {plan.endpoint} changed since the plan was made (now on {now_on}, "
                          f"planned from {plan.current.config})", "run the deploy again")
    data = {"operation": "create" if plan.action == "create" else "shadow", "digest": plan.digest,
            "image_uri": plan.image_uri, "endpoint": plan.endpoint, "plan": plan.to_dict(),
            "previous_endpoint_config": plan.current.config, "endpoint_config": plan.endpoint_config,
            "model": plan.model, "artifacts": plan.artifacts, **({"window": window} if window else {})}
    rec = led.put_record(KIND, stage, data, actor=deps.actor, state="locked", record_id=plan.record_id,
                         reason=f"{data['operation']} {plan.digest[:19]}…", lock=lock)
    created: list[str | None] = [None, None]
    try:
        rec = led.transition(stage, rec.id, "creating", current=rec, lock=lock)
        deps.log(f"creating model {plan.model} and endpoint config {plan.endpoint_config}")
        deps.sagemaker.create_model(**plan.model_request)
        created[0] = plan.model
        deps.sagemaker.create_endpoint_config(**plan.config_request)
        created[1] = plan.endpoint_config
        rec = led.transition(stage, rec.id, "updating", current=rec, lock=lock)
        deps.log(f"{'creating' if plan.action == 'create' else 'updating'} endpoint {plan.endpoint}")
        _switch(deps, plan.endpoint, plan.endpoint_config, create=plan.action == "create", timeout=t.wait)
        rec = led.transition(stage, rec.id, "succeeded", current=rec,
                             data={"shadow_active": plan.action == "shadow"},
                             reason="shadow running" if plan.action == "shadow" else "endpoint created", lock=lock)
        if plan.action == "shadow":
            for old in open_shadows(led, stage, exclude=rec.id):
                led.append_event(stage, old.id, "closed", data={"closed_by": rec.id},
                                 reason="replaced by a new shadow", lock=lock)
        return rec
    except BaseException as e:
        why = e.message if isinstance(e, PtError) else f"{type(e).__name__}: {e}"
        restored = _restore(deps, plan.endpoint, plan.current.config, t.wait) if plan.action != "create" else \
            "new endpoint: nothing to restore"
        if plan.action == "create":
            _delete_failed_endpoint(deps, plan.endpoint)
        if _restored_ok(restored):
            _cleanup(deps, created[0], created[1])
        led.transition(stage, rec.id, "failed", reason=why, data={"restore": restored}, lock=lock)
        err = _as_pt_error(e)
        if err is not None:
            raise type(err)(f"{err.message}; deploy {rec.id} failed, {restored}", err.hint) from None
        raise
    finally:
        led.release(lock)


def _restored_ok(restored: str) -> bool:
    """The endpoint no longer uses what the failed step created (so it may be deleted)."""
    return restored.startswith(("restored ", "endpoint already on ", "SageMaker rolled back to ", "new endpoint",
                                "endpoint does not exist"))


def _as_pt_error(e: BaseException) -> PtError | None:
    if isinstance(e, PtError):
        return e
    if not isinstance(e, Exception):
        return None  # Ctrl-C / SystemExit: recorded above, re-raised as is
    from pipeline_tools.core.errors import translate

    return translate(e)


def _delete_failed_endpoint(deps: Deps, endpoint: str) -> None:
    try:
        desc = describe_endpoint(deps.sagemaker, endpoint)
        if desc is not None and desc.get("EndpointStatus") in BROKEN:
            deps.sagemaker.delete_endpoint(EndpointName=endpoint)
    except Exception:
        pass


# --- shadow state from the ledger -------------------------------------------------------------


def open_shadows(led: Ledger, stage: str, exclude: str | None = None) -> list[Record]:
    return led.query(stage, KIND, state="succeeded",
                     where=lambda r: r.data.get("operation") == "shadow" and r.data.get("shadow_active")
                     and not r.data.get("closed_by") and not r.data.get("rolled_back_by") and r.id != exclude)


def active_shadow(led: Ledger, stage: str) -> Record:
    recs = open_shadows(led, stage)
    if not recs:
        raise NotFoundError(f"no shadow variant is running on stage {stage} (ledger)",
                            f"deploy one: `pt deploy --stage {stage} --target sagemaker --image-uri REPO@sha256:…`")
    return recs[0]


def _succeeded_at(rec: Record) -> float:
    for tr in reversed(rec.transitions):
        if tr.get("state") == "succeeded" and tr.get("ts") is not None:
            return float(tr["ts"])
    return rec.updated


# --- metrics and the pure comparison ----------------------------------------------------------


@dataclass(frozen=True)
class VariantMetrics:
    invocations: float | None = None
    errors_5xx: float | None = None
    latency_p50: float | None = None   # microseconds (ModelLatency)
    latency_p99: float | None = None
    user: float | None = None

    @property
    def error_rate(self) -> float | None:
        if not self.invocations or self.errors_5xx is None:
            return None
        return 100.0 * self.errors_5xx / self.invocations

    def to_dict(self) -> dict:
        return {"invocations": self.invocations, "errors_5xx": self.errors_5xx, "error_rate_pct": self.error_rate,
                "latency_p50_us": self.latency_p50, "latency_p99_us": self.latency_p99, "user": self.user}


@dataclass(frozen=True)
class MetricCheck:
    name: str
    status: str
    shadow: float | None
    production: float | None
    limit: str
    why: str

    def to_dict(self) -> dict:
        return {"check": self.name, "status": self.status, "shadow": self.shadow, "production": self.production,
                "limit": self.limit, "why": self.why}


def _overall(statuses) -> str:
    s = set(statuses)
    return FAIL if FAIL in s else WAIT if WAIT in s else PASS


def compare(shadow: VariantMetrics, production: VariantMetrics, th: ShadowThresholdsConfig, *,
            elapsed: float, bake: float, user_metric: UserMetricConfig | None = None) -> tuple[str, list[MetricCheck]]:
    """Shadow vs production → (PASS|FAIL|WAIT, checks). Pure. Missing data is never a PASS."""
    checks: list[MetricCheck] = []
    add = checks.append
    if elapsed < bake:
        add(MetricCheck("bake", WAIT, elapsed, None, f"≥ {format_duration(bake)}",
                        f"shadow running {format_duration(elapsed)} of {format_duration(bake)}"))
    else:
        add(MetricCheck("bake", PASS, elapsed, None, f"≥ {format_duration(bake)}", "bake time elapsed"))
    inv = shadow.invocations
    if inv is None or inv < th.min_invocations or (th.min_invocations == 0 and not inv):
        add(MetricCheck("invocations", WAIT, inv, production.invocations, f"≥ {max(th.min_invocations, 1)}",
                        f"not enough shadow requests yet ({int(inv or 0)} of {max(th.min_invocations, 1)})"))
    else:
        add(MetricCheck("invocations", PASS, inv, production.invocations, f"≥ {th.min_invocations}",
                        f"{int(inv)} shadow requests"))
    if not production.invocations:
        add(MetricCheck("production", WAIT, None, production.invocations, "> 0",
                        "no production requests to compare with"))
    for name, s, p, ratio in (("latency_p50", shadow.latency_p50, production.latency_p50, th.latency_p50_ratio),
                              ("latency_p99", shadow.latency_p99, production.latency_p99, th.latency_p99_ratio)):
        limit = f"≤ {ratio:g} × production"
        if s is None or p is None:
            add(MetricCheck(name, WAIT, s, p, limit, "no ModelLatency data for " +
                            ("shadow" if s is None else "production")))
        elif s > ratio * p:
            add(MetricCheck(name, FAIL, s, p, limit, f"shadow {s / 1000:.1f} ms > {ratio:g} × production "
                                                    f"{p / 1000:.1f} ms"))
        else:
            add(MetricCheck(name, PASS, s, p, limit, f"shadow {s / 1000:.1f} ms, production {p / 1000:.1f} ms"))
    se, pe = shadow.error_rate, production.error_rate
    limit = f"≤ production + {th.error_rate_increase:g} pp"
    if se is None or pe is None:
        add(MetricCheck("errors_5xx", WAIT, se, pe, limit, "no Invocation5XXErrors/Invocations data"))
    elif se - pe > th.error_rate_increase:
        add(MetricCheck("errors_5xx", FAIL, se, pe, limit, f"shadow 5XX rate {se:.2f}% vs production {pe:.2f}%"))
    else:
        add(MetricCheck("errors_5xx", PASS, se, pe, limit, f"shadow {se:.2f}%, production {pe:.2f}%"))
    um = user_metric or th.user_metric
    if um is not None:
        s, p = shadow.user, production.user
        sign = "≥" if um.better == "higher" else "≤"
        limit = f"{sign} production ∓ {um.tolerance:g} × |production|"
        if s is None or p is None:
            add(MetricCheck(um.name, WAIT, s, p, limit, f"no {um.namespace}/{um.name} data for "
                            + ("shadow" if s is None else "production")))
        elif (s < p - abs(p) * um.tolerance) if um.better == "higher" else (s > p + abs(p) * um.tolerance):
            add(MetricCheck(um.name, FAIL, s, p, limit, f"shadow {s:g} vs production {p:g} ({um.better} is better)"))
        else:
            add(MetricCheck(um.name, PASS, s, p, limit, f"shadow {s:g}, production {p:g}"))
    return _overall(c.status for c in checks), checks


def metric_queries(endpoint: str, variant_name: str, prefix: str, user: UserMetricConfig | None,
                   period: int) -> list[dict]:
    dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant_name}]

    def q(qid: str, metric: str, stat: str, ns: str = NAMESPACE) -> dict:
        return {"Id": f"{prefix}{qid}", "ReturnData": True,
                "MetricStat": {"Metric": {"Namespace": ns, "MetricName": metric, "Dimensions": dims},
                               "Period": period, "Stat": stat}}

    out = [q("inv", "Invocations", "Sum"), q("err", "Invocation5XXErrors", "Sum"),
           q("p50", "ModelLatency", "p50"), q("p99", "ModelLatency", "p99")]
    if user is not None:
        out.append(q("usr", user.name, user.statistic, user.namespace))
    return out


def read_metrics(cloudwatch: Any, endpoint: str, start: float, end: float,
                 user: UserMetricConfig | None, *, shadow_variant: str = SHADOW,
                 production_variant: str = PRODUCTION) -> tuple[VariantMetrics, VariantMetrics]:
    """(shadow, production) over [start, end], one datapoint per query (period = the window)."""
    t0 = math.floor(start / 60) * 60
    period = max(60, math.ceil((end - t0) / 60) * 60)
    queries = metric_queries(endpoint, shadow_variant, "s", user, period) + \
        metric_queries(endpoint, production_variant, "p", user, period)
    values: dict[str, list[float]] = {}
    kw: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": datetime.fromtimestamp(t0, UTC),
                          "EndTime": datetime.fromtimestamp(t0 + period, UTC), "ScanBy": "TimestampDescending"}
    while True:
        resp = cloudwatch.get_metric_data(**kw)
        for r in resp.get("MetricDataResults", []):
            values.setdefault(r["Id"], []).extend(float(v) for v in r.get("Values", []))
        if not resp.get("NextToken"):
            break
        kw["NextToken"] = resp["NextToken"]

    def one(qid: str, how: str) -> float | None:
        vals = values.get(qid) or []
        if not vals:
            return None
        return sum(vals) if how == "sum" else max(vals)

    def vm(p: str) -> VariantMetrics:
        return VariantMetrics(one(p + "inv", "sum"), one(p + "err", "sum"), one(p + "p50", "max"),
                              one(p + "p99", "max"), one(p + "usr", "max"))

    return vm("s"), vm("p")


# --- the shadow gate --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowReport:
    stage: str
    status: str
    shadow_id: str | None
    digest: str | None
    endpoint: str
    window_start: float | None
    checked_at: float
    bake: float
    explanation: str
    checks: tuple[MetricCheck, ...] = ()
    shadow: VariantMetrics | None = None
    production: VariantMetrics | None = None
    alarms: gate_mod.Verdict | None = None

    def rows(self) -> list[list[Any]]:
        rows = [[c.name, c.status, _fmt(c.shadow), _fmt(c.production), c.limit, c.why] for c in self.checks]
        if self.alarms is not None:
            for r in self.alarms.reasons:
                rows.append([f"alarm {r.alarm}", r.status, r.state or "", "", "", r.why])
        return rows

    def to_dict(self) -> dict:
        return {"target": "sagemaker", "stage": self.stage, "status": self.status, "shadow_id": self.shadow_id,
                "digest": self.digest, "endpoint": self.endpoint, "window_start": iso(self.window_start),
                "checked_at": iso(self.checked_at), "bake": format_duration(self.bake),
                "explanation": self.explanation, "checks": [c.to_dict() for c in self.checks],
                "shadow": self.shadow.to_dict() if self.shadow else None,
                "production": self.production.to_dict() if self.production else None,
                "alarms": self.alarms.to_dict() if self.alarms else None}


def variant_names(desc: dict, record_data: dict | None = None) -> tuple[str, str]:
    """(production, shadow) variant names as the endpoint really has them: DescribeEndpoint's
    ProductionVariants / ShadowProductionVariants, else the endpoint config the shadow deploy sent
    (recorded in the ledger), else the defaults. Pure."""
    sent = (((record_data or {}).get("plan") or {}).get("requests") or {}).get("create_endpoint_config") or {}
    prod = primary_variant(list(desc.get("ProductionVariants") or [])) \
        or next(iter(sent.get("ProductionVariants") or []), None) or {}
    shadow = next(iter(desc.get("ShadowProductionVariants") or []), None) \
        or next(iter(sent.get("ShadowProductionVariants") or []), None) or {}
    return prod.get("VariantName") or PRODUCTION, shadow.get("VariantName") or SHADOW


def variant_check(real: str, watched: str) -> MetricCheck:
    """The stage alarms watch `watched`; an endpoint whose production variant is another name
    would leave them silent, so that is a FAIL (fail closed) that names the fix."""
    if real == watched:
        return MetricCheck("variant", PASS, None, None, f"= {watched}", f"production variant {real}")
    return MetricCheck("variant", FAIL, None, None, f"= {watched}",
                       f"the endpoint's production variant is {real} but the stage alarms watch {watched}: set "
                       f"targets.sagemaker.production_variant: {real} and deploy the stage stack")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def combine(metric_status: str, alarms: gate_mod.Verdict | None) -> str:
    return _overall([metric_status, alarms.status if alarms else PASS])


def gate_shadow(cfg: Config, stage: str, *, ledger: Ledger, cloudwatch: Any, sagemaker: Any,
                clock: Callable[[], float], bake: float | None = None) -> ShadowReport:
    """Shadow vs production metrics plus the stage alarms. Fails closed (errors → FAIL)."""
    t = target(cfg, stage)
    ep = endpoint_name(cfg, stage)
    now = clock()
    if bake is None:
        bake = t.shadow_bake if t.shadow_bake is not None else cfg.stages[stage].deploy.bake
    try:
        rec = active_shadow(ledger, stage)
    except NotFoundError as e:
        return ShadowReport(stage, FAIL, None, None, ep, None, now, bake, e.message)
    start = _succeeded_at(rec)
    base = dict(stage=stage, shadow_id=rec.id, digest=rec.digest, endpoint=ep, window_start=start,
                checked_at=now, bake=bake)
    try:
        desc = describe_endpoint(sagemaker, ep)
        if desc is None or desc.get("EndpointConfigName") != rec.data.get("endpoint_config"):
            runs = desc.get("EndpointConfigName") if desc else "nothing (no endpoint)"
            return ShadowReport(status=FAIL, explanation=f"endpoint {ep} runs {runs}, not the shadow config "
                                f"{rec.data.get('endpoint_config')} of {rec.id}", **base)
        if desc.get("EndpointStatus") != "InService":
            return ShadowReport(status=FAIL, explanation=f"endpoint {ep} is {desc.get('EndpointStatus')}", **base)
        prod_name, shadow_name = variant_names(desc, rec.data)
        shadow, prod = read_metrics(cloudwatch, ep, start, now, t.thresholds.user_metric,
                                    shadow_variant=shadow_name, production_variant=prod_name)
    except Exception as e:
        from pipeline_tools.core.errors import translate

        err = translate(e)
        text = err.message if err else f"{type(e).__name__}: {e}"
        return ShadowReport(status=FAIL, explanation=f"cannot read the shadow metrics: {text} (fails closed)", **base)
    mstatus, checks = compare(shadow, prod, t.thresholds, elapsed=now - start, bake=bake)
    checks.append(variant_check(prod_name, production_variant_name(cfg, stage)))
    mstatus = _overall(c.status for c in checks)
    alarms = gate_mod.evaluate(cloudwatch, gate_mod.GatePolicy.from_config(cfg, stage), now, start)
    status = combine(mstatus, alarms)
    if status == PASS:
        explanation = (f"shadow {(rec.digest or '?')[:19]}… matches production ({len(checks)} checks, "
                       f"alarms {alarms.status})")
    else:
        whys = [c.why for c in checks if c.status == status][:3]
        if alarms.status == status:
            whys.append(f"alarms: {alarms.summary()}")
        explanation = "; ".join(whys)
    return ShadowReport(status=status, explanation=explanation, checks=tuple(checks), shadow=shadow,
                        production=prod, alarms=alarms, **base)


def record_gate(ledger: Ledger, report: ShadowReport, actor: dict | None) -> Record | None:
    if report.status == WAIT:
        return None
    from pipeline_tools.release.promote import GATE

    return ledger.put_record(GATE, report.stage, {"target": "sagemaker", "deploy_id": report.shadow_id,
                                                  "digest": report.digest, "status": report.status,
                                                  "explanation": report.explanation,
                                                  "checks": [c.to_dict() for c in report.checks]},
                             actor=actor, state=report.status.lower(), reason=report.explanation)


# --- approvals for the shadow -----------------------------------------------------------------


def approve_shadow(cfg: Config, ledger: Ledger, stage: str, *, decision: str, actor: dict,
                   clock: Callable[[], float], comment: str | None = None) -> tuple[rules.Approval, Record | None,
                                                                                    str | None]:
    """Approve/reject the running shadow's digest for promotion to production in `stage`."""
    from pipeline_tools.release.promote import APPROVAL, load_approvals

    target(cfg, stage)
    rec = active_shadow(ledger, stage)
    rule = cfg.stages[stage].approvals
    new = rules.Approval(stage=stage, digest=rec.digest or "", approver=actor.get("name") or "unknown",
                         decision=decision, arn=actor.get("arn"), comment=comment, at=clock(),
                         deploy_id=rec.id, source="pt", declared=actor.get("declared"))
    note = rules.check_new(new, existing=load_approvals(ledger, stage), rule=rule, author=rules.authors_of(rec.actor))
    stored = None
    if note is None:
        stored = ledger.put_record(APPROVAL, stage, {k: v for k, v in new.to_dict().items() if k != "id"},
                                   actor=actor, state="approved" if decision == rules.APPROVE else "rejected",
                                   reason=comment)
    return new, stored, note


def shadow_approvals(cfg: Config, ledger: Ledger, stage: str, rec: Record) -> rules.ApprovalStatus:
    from pipeline_tools.release.promote import load_approvals

    return rules.evaluate(load_approvals(ledger, stage), stage=stage, digest=rec.digest,
                          rule=cfg.stages[stage].approvals, author=rules.authors_of(rec.actor))


# --- promote the shadow -----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


class ShadowRefused(PtError):
    def __init__(self, condition: str, message: str, hint: str | None = None, *, exit_code: int | None = None,
                 checks: list[Step] | None = None):
        super().__init__(message, hint, exit_code=exit_code)
        self.condition = condition
        self.checks = checks or []

    def to_dict(self) -> dict:
        return {**super().to_dict(), "condition": self.condition, "checks": [c.to_dict() for c in self.checks]}


def promote_shadow(cfg: Config, stage: str, deps: Deps, *, now: datetime | None = None,
                   override_window: bool = False, reason: str | None = None, dry_run: bool = False) -> dict:
    """Make the running shadow the production variant, after gate, approvals, window and lock."""
    t = target(cfg, stage)
    led = deps.ledger
    ep = endpoint_name(cfg, stage)
    checks: list[Step] = []

    def refuse(name: str, msg: str, hint: str | None = None, exit_code: int | None = None) -> None:
        checks.append(Step(name, False, msg))
        if not dry_run:
            led.put_record("promotion", stage, {"target": "sagemaker", "condition": name,
                                                "checks": [c.to_dict() for c in checks]},
                           actor=deps.actor, state="refused", reason=msg)
        raise ShadowRefused(name, msg, hint, exit_code=exit_code, checks=checks)

    try:
        shadow = active_shadow(led, stage)
    except NotFoundError as e:
        refuse("shadow", e.message, e.hint)
        raise
    checks.append(Step("shadow", True, f"{shadow.id} runs {shadow.digest}"))
    report = gate_shadow(cfg, stage, ledger=led, cloudwatch=deps.cloudwatch, sagemaker=deps.sagemaker,
                         clock=deps.clock)
    if report.status != PASS:
        refuse("gate", f"shadow gate is {report.status}: {report.explanation}",
               f"`pt gate --stage {stage} --shadow` shows every check",
               exit_code=EXIT_WAIT if report.status == WAIT else None)
    checks.append(Step("gate", True, report.explanation))
    st = shadow_approvals(cfg, led, stage, shadow)
    if not st.satisfied:
        refuse("approvals", f"approvals for {stage}: {st.explain()}",
               f"`pt approve --stage {stage} --shadow` (two distinct people, not the author, if the rule says so)")
    checks.append(Step("approvals", True, st.explain()))
    try:
        decision = windows.check(cfg.stages[stage].window, now or datetime.now(UTC), override=override_window,
                                 reason=reason)
    except windows.WindowClosed as e:
        refuse("window", e.message, e.hint)
        raise
    checks.append(Step("window", True, "overridden: " + (decision.reason or "") if decision.overridden
                       else "open" if decision.window else "no window configured"))
    lock = led.current_lock(stage)
    if lock is not None and lock.lease_until > deps.clock():
        refuse("lock", lock.describe(), "wait for it to finish", exit_code=LockedError.exit_code)
    checks.append(Step("lock", True, "free"))
    cur = read_current(deps.sagemaker, ep)
    sv = cur.shadow or {"ModelName": shadow.data.get("model"), "InstanceType": t.instance_type,
                        "InitialInstanceCount": t.instance_count}
    rid = new_id(deps.clock())
    ec_name = resource_name(ep, rid, "c")
    prod = copy_variant({**sv, "InitialVariantWeight": 1.0},
                        name=(cur.production or {}).get("VariantName") or production_variant_name(cfg, stage))
    creq = endpoint_config_request(ec_name, prod, None, data_capture(t.data_capture, capture_uri(cfg, stage)),
                                   record_id=rid)
    out = {"target": "sagemaker", "stage": stage, "endpoint": ep, "shadow_id": shadow.id, "digest": shadow.digest,
           "checks": [c.to_dict() for c in checks], "previous_endpoint_config": cur.config,
           "endpoint_config": ec_name, "request": creq, "dry_run": dry_run,
           "window": decision.to_dict() if hasattr(decision, "to_dict") else None}
    if dry_run:
        return out
    lk = _lock(deps, stage, rid)
    rec = led.put_record(KIND, stage, {"operation": "promote", "digest": shadow.digest, "endpoint": ep,
                                       "shadow_id": shadow.id, "previous_endpoint_config": cur.config,
                                       "endpoint_config": ec_name, "model": prod["ModelName"],
                                       "checks": out["checks"], "window": out["window"]},
                         actor=deps.actor, state="locked", record_id=rid, reason=f"promote shadow {shadow.id}", lock=lk)
    try:
        rec = led.transition(stage, rid, "creating", current=rec, lock=lk)
        deps.sagemaker.create_endpoint_config(**creq)
        rec = led.transition(stage, rid, "updating", current=rec, lock=lk)
        _switch(deps, ep, ec_name, create=False, timeout=t.wait)
        rec = led.transition(stage, rid, "succeeded", current=rec, reason="shadow is production", lock=lk)
        led.append_event(stage, shadow.id, "promoted", data={"closed_by": rid, "promoted_by": rid}, lock=lk)
        led.put_record("promotion", stage, {"target": "sagemaker", "deploy_id": rid, "digest": shadow.digest,
                                            "checks": out["checks"]}, actor=deps.actor, state="succeeded", lock=lk)
    except BaseException as e:
        why = e.message if isinstance(e, PtError) else f"{type(e).__name__}: {e}"
        restored = _restore(deps, ep, cur.config, t.wait)
        if _restored_ok(restored):
            _cleanup(deps, None, ec_name)
        led.transition(stage, rid, "failed", reason=why, data={"restore": restored}, lock=lk)
        err = _as_pt_error(e)
        if err is not None:
            raise type(err)(f"{err.message}; promotion {rid} failed, {restored}", err.hint) from None
        raise
    finally:
        led.release(lk)
    return {**out, "record": rec.to_dict()}


# --- rollback ---------------------------------------------------------------------------------


def rollback(cfg: Config, stage: str, deps: Deps, *, dry_run: bool = False) -> dict:
    """Endpoint back to the config before the newest succeeded step (drop the shadow / undo a promote)."""
    t = target(cfg, stage)
    led = deps.ledger
    ep = endpoint_name(cfg, stage)
    steps = led.query(stage, KIND, state="succeeded", limit=1,
                      where=lambda r: r.data.get("operation") in ("shadow", "promote")
                      and not r.data.get("rolled_back_by"))
    if not steps or not steps[0].data.get("previous_endpoint_config"):
        raise NotFoundError(f"nothing to roll back on stage {stage}: no shadow deploy or promotion of endpoint "
                            f"{ep} in the ledger that can be undone",
                            f"`pt history --stage {stage}` lists Lambda deploys; SageMaker steps are ledger kind "
                            f"'{KIND}'")
    undo = steps[0]
    prev = undo.data["previous_endpoint_config"]
    desc = describe_endpoint(deps.sagemaker, ep)
    if desc is None:
        raise NotFoundError(f"endpoint {ep} does not exist", "deploy it first (`pt deploy --target sagemaker`)")
    runs = desc.get("EndpointConfigName")
    plan = {"target": "sagemaker", "stage": stage, "endpoint": ep, "undo": undo.id,
            "operation": undo.data.get("operation"), "from_endpoint_config": runs, "to_endpoint_config": prev,
            "endpoint_status": desc.get("EndpointStatus"), "digest": undo.digest, "dry_run": dry_run}
    if dry_run:
        return plan
    rid = new_id(deps.clock())
    lk = _lock(deps, stage, rid)
    rec = led.put_record(KIND, stage, {"operation": "rollback", "endpoint": ep, "undo": undo.id,
                                       "previous_endpoint_config": runs, "endpoint_config": prev,
                                       "digest": undo.digest}, actor=deps.actor, state="locked", record_id=rid,
                         reason=f"roll back {undo.data.get('operation')} {undo.id}", lock=lk)
    try:
        rec = led.transition(stage, rid, "rolling_back", current=rec, lock=lk)
        if desc.get("EndpointStatus") in BUSY:
            raise EndpointFailed(f"endpoint {ep} is {desc.get('EndpointStatus')}", "wait until it settles")
        _switch(deps, ep, prev, create=False, timeout=t.wait)
        rec = led.transition(stage, rid, "succeeded", current=rec, reason=f"endpoint back on {prev}", lock=lk)
        led.append_event(stage, undo.id, "rolled_back", data={"rolled_back_by": rid, "closed_by": rid}, lock=lk)
        if undo.data.get("operation") == "promote" and undo.data.get("shadow_id"):
            # the shadow runs again: re-open it so the gate and `promote --shadow` see it
            sh = led.get(stage, undo.data["shadow_id"])
            if sh is not None:
                led.append_event(stage, sh.id, "reopened", data={"closed_by": None, "promoted_by": None}, lock=lk)
    except BaseException as e:
        why = e.message if isinstance(e, PtError) else f"{type(e).__name__}: {e}"
        led.transition(stage, rid, "failed", reason=why, lock=lk)
        raise
    finally:
        led.release(lk)
    return {**plan, "record": rec.to_dict()}




def status(cfg: Config, stage: str, sagemaker: Any, led: Ledger | None) -> dict:
    """What the endpoint runs (DescribeEndpoint…) and the ledger's view (open shadow, last step)."""
    ep = endpoint_name(cfg, stage)
    out: dict[str, Any] = {"endpoint": ep}
    try:
        out.update(read_current(sagemaker, ep).to_dict())
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    if led is not None:
        shadows = open_shadows(led, stage)
        out["shadow"] = {"id": shadows[0].id, "digest": shadows[0].digest,
                         "since": iso(_succeeded_at(shadows[0]))} if shadows else None
        last = led.query(stage, KIND, limit=1)
        out["last_step"] = {"id": last[0].id, "operation": last[0].data.get("operation"), "state": last[0].state,
                            "digest": last[0].digest} if last else None
    return out


# --- recover -------------------------------------------------------------------------------


def unfinished(led: Ledger, stage: str) -> Record | None:
    for rec in led.query(stage, KIND, limit=20):
        if not rec.final:
            return rec
    return None


def recover(cfg: Config, stage: str, deps: Deps, *, force: bool = False, dry_run: bool = False,
            lease: float | None = None) -> dict:
    """A SageMaker step that died mid-way (killed runner): endpoint back on the config it had
    before the step, the step's own new config/model deleted, record `failed`, lock released."""
    t = target(cfg, stage)
    led = deps.ledger
    rec = unfinished(led, stage)
    if rec is None:
        return {"target": "sagemaker", "stage": stage, "action": "nothing-to-recover"}
    ep = rec.data.get("endpoint") or endpoint_name(cfg, stage)
    prev = rec.data.get("previous_endpoint_config")
    out = {"target": "sagemaker", "stage": stage, "deploy_id": rec.id, "died_in": rec.state,
           "operation": rec.data.get("operation"), "action": "restore", "endpoint": ep, "to_endpoint_config": prev,
           "dry_run": dry_run}
    if dry_run:
        return out
    took = led.take_over(stage, rec.id, deps.actor, lease or None, force=force)
    try:
        led.append_event(stage, rec.id, "recover", actor=deps.actor, reason=f"restore after dying in {rec.state}",
                         lock=took)
        if rec.data.get("operation") == "create":
            _delete_failed_endpoint(deps, ep)
            restored = "new endpoint: nothing to restore"
        elif rec.data.get("operation") == "rollback":
            # a rollback that died: finish it (its target is the config it was moving to)
            restored = _restore(deps, ep, rec.data.get("endpoint_config"), t.wait)
        else:
            restored = _restore(deps, ep, prev, t.wait)
        if rec.data.get("operation") in ("create", "shadow", "promote") and _restored_ok(restored):
            _cleanup(deps, rec.data.get("model") if rec.data.get("operation") != "promote" else None,
                     rec.data.get("endpoint_config"))
        led.transition(stage, rec.id, "failed", actor=deps.actor, reason=f"recovered: died in {rec.state}; {restored}",
                       data={"restore": restored}, lock=took)
    finally:
        led.release(took)
    return {**out, "restore": restored}


__all__ = ["Deps", "EndpointFailed", "Plan", "ShadowRefused", "ShadowReport", "VariantMetrics", "approve_shadow",
           "compare", "deploy", "endpoint_name", "gate_shadow", "plan_deploy", "promote_shadow", "rollback",
           "settle", "verify_artifacts"]
