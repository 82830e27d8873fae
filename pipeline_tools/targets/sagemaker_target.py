"""SageMaker real-time endpoint behind the `Target` protocol (release/target.py).

The release engine drives it like any target (`--target sagemaker` or `sagemaker:<endpoint>`);
the SageMaker calls, names and request builders are `targets/sagemaker.py`'s. Two modes
(`targets.sagemaker.mode`):

`weighted` (default): production variant weights follow the stage's schedule.
- `current`: the endpoint's config, its production variants with their runtime weights
  (DescribeEndpoint `CurrentWeight`), the primary variant's model and image digest. No endpoint:
  `exists=False` (the first release creates it).
- `prepare`: CreateModel (image digest + the verified artifacts prefix), an endpoint config with
  the production variant copied unchanged (its real name) plus the candidate as a second
  production variant (`candidate`) at weight 0, UpdateEndpoint, wait InService on it. First
  release: the endpoint is created with the candidate as its only variant.
- `shift(p)`: UpdateEndpointWeightsAndCapacities production `100-p`, candidate `p`; wait.
- `finish`: an endpoint config whose only variant is the candidate's model under the production
  variant's real name (the stage alarms watch that name), UpdateEndpoint, wait; then the
  superseded models/configs pt made (named `<endpoint>-…`) are deleted.
- `restore`: weights back to production first (traffic), then UpdateEndpoint to the recorded
  config; what the release made is deleted. First release: the endpoint is deleted.

`shadow`: the shadow flow deploy shadow → compare → promote/rollback, mapped onto the protocol:
- `prepare` = deploy the shadow (the candidate in ShadowProductionVariants at `shadow_sampling`%);
  it answers no request, so no traffic moved;
- `smoke` = compare: shadow vs production metrics (`sagemaker.compare`, the checks of
  `pt gate --shadow`) polled until PASS; FAIL, or WAIT past `shadow_bake + shadow_wait`, drops
  the shadow (endpoint back on its config) and fails the release with traffic untouched;
- `shift(100)` = promote (`weighted` is False, so the engine moves 0 → 100 in one step): a config
  whose only production variant is the candidate under the production variant's real name;
- `finish` deletes the superseded models/configs; `restore` = rollback to the recorded config.

Data capture, in every config pt makes: model outputs only, to
`s3://<stage bucket>/datacapture/<endpoint>/`. `alarm_dimensions` are EndpointName +
VariantName of the candidate (the shadow variant in shadow mode), with `error_metrics`
Invocation5XXErrors, so the gate reads the candidate's own errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names as naming
from pipeline_tools.core.errors import DeployFailed, LockedError, PtError, UsageError
from pipeline_tools.release.target import Candidate, Placement, Release, target_id
from pipeline_tools.targets import sagemaker as sm

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config
    from pipeline_tools.targets import TargetEnv

KIND = "sagemaker"
ERROR_METRICS = ((sm.NAMESPACE, "Invocation5XXErrors"),)
CREATE, WEIGHTED, SHADOW = "create", "weighted", "shadow"


def names(cfg: Config, stage: str) -> list[str]:
    """The endpoint key of `targets.sagemaker` when `stage` has it (targets/__init__.py registry)."""
    cfg.stage(stage)
    t = cfg.targets.sagemaker
    if t is None or (t.stages is not None and stage not in t.stages):
        return []
    return [t.endpoint]


# --- pure helpers -------------------------------------------------------------------------------


def image_digest(image: str | None) -> str | None:
    """`repo@sha256:…` → `sha256:…` (None for a tag or nothing)."""
    if not image or "@" not in image:
        return None
    return image.rsplit("@", 1)[1]


def routing(variants: list[dict], shadows: list[dict]) -> dict[str, float]:
    """Placement.weights: empty when one variant takes all traffic and no shadow runs; else the
    traffic share (%) of each production variant, and each shadow's share of copied requests. Pure."""
    if len(variants) <= 1 and not shadows:
        return {}
    total = sum(v["CurrentWeight"] for v in variants) or 1.0
    out = {v["VariantName"]: round(100.0 * v["CurrentWeight"] / total, 3) for v in variants}
    top = max((v["CurrentWeight"] for v in variants), default=1.0) or 1.0
    for s in shadows:
        out[s["VariantName"]] = round(100.0 * float(s.get("InitialVariantWeight", 0.0)) / top, 3)
    return out


def weights_request(production: str, candidate: str, percent: int) -> list[dict]:
    """DesiredWeightsAndCapacities for `percent` % on the candidate. Pure."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent {percent} is not 0–100")
    return [{"VariantName": production, "DesiredWeight": float(100 - percent)},
            {"VariantName": candidate, "DesiredWeight": float(percent)}]


def made_by_pt(endpoint: str, name: str | None) -> bool:
    """Models/configs pt creates are `<endpoint>-<m|c|f|p><record id>`; the stack's are not."""
    return bool(name) and str(name).startswith(f"{endpoint}-")


def superseded(endpoint: str, live: dict, placement: Placement, candidate: Candidate) -> tuple[list[str], list[str]]:
    """(configs, models) a finished release may delete: pt's own, not used by the live config. Pure."""
    live_cfg = live.get("EndpointConfigName")
    in_use = {v.get("model") for v in live.get("variants") or []}
    configs = [c for c in dict.fromkeys([placement.version, candidate.data.get("endpoint_config")])
               if c and c != live_cfg and made_by_pt(endpoint, c)]
    models = [m for m in dict.fromkeys(v.get("model") for v in placement.data.get("variants") or [])
              if m and m not in in_use and made_by_pt(endpoint, m)]
    return configs, models


# --- the target ---------------------------------------------------------------------------------


class SageMakerTarget:
    """`sagemaker:<endpoint>`: one endpoint of `targets.sagemaker` (see the module docstring)."""

    error_metrics = ERROR_METRICS

    def __init__(self, cfg: Config, stage: str, name: str, env: TargetEnv):
        self.cfg, self.stage, self.env = cfg, stage, env
        self.t = sm.target(cfg, stage)
        if name != self.t.endpoint:
            raise UsageError(f"stage {stage} has no SageMaker endpoint {name!r}",
                             f"targets.sagemaker.endpoint is {self.t.endpoint}: use --target "
                             f"sagemaker:{self.t.endpoint} (or --target sagemaker)")
        self.id = target_id(KIND, name)
        self.endpoint = sm.endpoint_name(cfg, stage)
        self.mode = self.t.mode
        self.weighted = self.mode == WEIGHTED
        self._clients: dict[str, Any] = {}
        self._verified = False

    # clients and waits
    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.env.client(service)
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @property
    def poll(self) -> float:
        from pipeline_tools.core.envvars import env_seconds

        return env_seconds("PT_SAGEMAKER_POLL", 15.0, minimum=0.001, maximum=3600)

    def _wait(self, config: str) -> dict:
        return sm.wait_endpoint(self.sagemaker, self.endpoint, config, timeout=self.t.wait, clock=self.env.clock,
                                sleep=self.env.sleep, poll=self.poll)

    def _wait_idle(self) -> dict | None:
        """Until the endpoint is not Creating/Updating/… (whatever config), with the deadline."""
        deadline = self.env.clock() + self.t.wait
        while True:
            desc = sm.describe_endpoint(self.sagemaker, self.endpoint)
            if desc is None or desc.get("EndpointStatus") not in sm.BUSY:
                return desc
            if self.env.clock() >= deadline:
                raise sm.EndpointFailed(f"endpoint {self.endpoint} still {desc.get('EndpointStatus')} at the deadline",
                                        "raise targets.sagemaker.wait, or check the endpoint in the console")
            self.env.sleep(min(self.poll, max(0.0, deadline - self.env.clock())))

    def _create_config(self, req: dict) -> None:
        try:
            self.sagemaker.create_endpoint_config(**req)
        except Exception as e:  # a retried step finds its own config: fine
            msg = str(getattr(e, "response", {}).get("Error", {}).get("Message", ""))
            if "already exist" not in msg.lower():
                raise

    def _delete(self, configs: list[str], models: list[str]) -> list[str]:
        done = []
        for call, key, items in ((self.sagemaker.delete_endpoint_config, "EndpointConfigName", configs),
                                 (self.sagemaker.delete_model, "ModelName", models)):
            for n in items:
                try:
                    call(**{key: n})
                    done.append(n)
                except Exception as e:  # housekeeping: an unused leftover costs nothing
                    self.env.log(f"{self.id}: could not delete {n}: {e}")
        return done

    # reading
    def _read(self) -> dict | None:
        """What the endpoint runs (sagemaker.read_current) as one JSON-able dict (None: no endpoint)."""
        cur = sm.read_current(self.sagemaker, self.endpoint)
        if not cur.exists:
            return None
        primary = cur.production or {}
        return {"status": cur.status, "failure_reason": cur.failure_reason, "EndpointConfigName": cur.config,
                "primary": primary.get("VariantName"), "production": sm.copy_variant(primary) if primary else None,
                "variants": [{"name": v["VariantName"], "model": v.get("ModelName"), "weight": v["CurrentWeight"]}
                             for v in cur.variants],
                "routing": routing(list(cur.variants), list(cur.shadows)),
                "shadow_variants": [{"name": v.get("VariantName"), "model": v.get("ModelName")} for v in cur.shadows],
                "image": cur.production_image, "artifacts": cur.production_artifacts,
                "data_capture": _capture_summary(cur.capture)}

    def current(self) -> Placement:
        live = self._read()
        if live is None:
            return Placement(self.id, self.endpoint, False)
        status = live["status"]
        if status in sm.BROKEN:
            why = f": {live['failure_reason']}" if live.get("failure_reason") else ""
            raise sm.EndpointFailed(f"endpoint {self.endpoint} is {status}{why}",
                                    f"fix or delete it (`aws sagemaker delete-endpoint --endpoint-name "
                                    f"{self.endpoint}`), then release again")
        if status in sm.BUSY:
            raise LockedError(f"endpoint {self.endpoint} is {status} (another update is running)",
                              "wait until it is InService, then release again")
        data = {"endpoint_config": live["EndpointConfigName"], "production_variant": live["primary"],
                "production": live["production"],
                "variants": [{k: v[k] for k in ("name", "model", "weight")} for v in live["variants"]],
                "shadow_variants": live["shadow_variants"], "image": live["image"],
                "artifacts": (live["artifacts"] or "").rstrip("/") or None}
        return Placement(self.id, self.endpoint, True, live["EndpointConfigName"], image_digest(live["image"]),
                         live["routing"], data)

    def unchanged(self, placement: Placement, release: Release) -> bool:
        """Serves the digest with all traffic and from the configured artifacts prefix."""
        return placement.serves(release.digest) and \
            placement.data.get("artifacts") == sm.artifacts_location(self.cfg, self.stage).url

    def check(self) -> None:
        """Before any change: the artifacts match their manifest, and the stage alarms watch the
        production variant the endpoint really has (else they would stay silent: exit 2)."""
        self._verify_artifacts()
        live = self._read()
        want = sm.production_variant_name(self.cfg, self.stage)
        if live is not None and live["primary"] and live["primary"] != want:
            raise UsageError(f"endpoint {self.endpoint}'s production variant is {live['primary']} but the stage "
                             f"alarms watch {want}",
                             f"set targets.sagemaker.production_variant: {live['primary']} in pipeline.yml and "
                             "deploy the stage stack")

    def _verify_artifacts(self) -> None:
        if not self._verified:
            sm.verify_artifacts(self._client("s3"), sm.artifacts_location(self.cfg, self.stage))
            self._verified = True

    # changing
    def prepare(self, release: Release, placement: Placement) -> Candidate:
        self._verify_artifacts()
        t, ep, rid = self.t, self.endpoint, release.deploy_id
        model = sm.resource_name(ep, rid, "m")
        config = sm.resource_name(ep, rid, "c")
        prod_name = placement.data.get("production_variant") or sm.production_variant_name(self.cfg, self.stage)
        capture = sm.data_capture(t.data_capture, sm.capture_uri(self.cfg, self.stage))
        mreq = sm.model_request(model, release.image_uri, sm.artifacts_location(self.cfg, self.stage).url,
                                sm.role_arn(self.cfg, self.stage), digest=release.digest, record_id=rid)
        if not placement.exists:
            mode, name = CREATE, prod_name
            creq = sm.endpoint_config_request(config, sm.variant(prod_name, model, t.instance_type, t.instance_count),
                                              None, capture, record_id=rid)
        else:
            described = placement.data.get("production") or self.current().data.get("production") or {}
            prod = {**described, "InitialVariantWeight": 1.0}
            mode, name = self.mode, naming.sagemaker_candidate_variant({prod_name})
            if mode == SHADOW:
                name = naming.SAGEMAKER_SHADOW_VARIANT if prod_name != naming.SAGEMAKER_SHADOW_VARIANT else name
                shadow = sm.variant(name, model, t.instance_type, t.instance_count,
                                    sm.shadow_weight(1.0, t.shadow_sampling))
                creq = sm.endpoint_config_request(config, prod, shadow, capture, record_id=rid)
            else:
                creq = sm.endpoint_config_request(config, prod, None, capture, record_id=rid)
                creq["ProductionVariants"].append(sm.variant(name, model, t.instance_type, t.instance_count, 0.0))
        cand = Candidate(self.id, name, release.digest,
                         {"mode": mode, "deploy_id": rid, "model": model, "endpoint_config": config,
                          "production_variant": prod_name, "previous_config": placement.version,
                          "image_uri": release.image_uri})
        self.env.log(f"{self.id}: model {model}, endpoint config {config} ({mode})")
        made: list[str] = []
        try:
            self.sagemaker.create_model(**mreq)
            made.append("model")
            self._create_config(creq)
            made.append("config")
            if mode == CREATE:
                self.sagemaker.create_endpoint(EndpointName=ep, EndpointConfigName=config,
                                               Tags=[{"Key": "pt:managed", "Value": "true"}])
            else:
                self.sagemaker.update_endpoint(EndpointName=ep, EndpointConfigName=config)
            self._wait(config)
        except BaseException as e:
            outcome = self._undo(placement, cand, made)
            if isinstance(e, PtError):
                raise type(e)(f"{e.message}; {outcome}", e.hint) from None
            if isinstance(e, Exception):
                from pipeline_tools.core.errors import translate

                err = translate(e)
                if err is not None:
                    raise type(err)(f"{err.message}; {outcome}", err.hint) from None
            raise
        return Candidate(cand.target, cand.version, cand.digest, {**cand.data, "live_at": self.env.clock()})

    def _undo(self, placement: Placement, cand: Candidate, made: list[str]) -> str:
        """A prepare (or smoke) that failed: endpoint back as it was, its own model/config deleted."""
        if not placement.exists:
            gone = self._delete_endpoint()
            outcome = "endpoint deleted" if gone else "nothing to restore"
        else:
            deps = sm.Deps(self.sagemaker, None, clock=self.env.clock, sleep=self.env.sleep,  # type: ignore[arg-type]
                           poll=self.poll)
            outcome = sm._restore(deps, self.endpoint, placement.version, self.t.wait)
        if not placement.exists or sm._restored_ok(outcome):
            self._delete([cand.data["endpoint_config"]] if "config" in made else [],
                         [cand.data["model"]] if "model" in made else [])
        return outcome

    def discard(self, placement: Placement, candidate: Candidate) -> str:
        """Drop a prepared candidate that never took traffic (another target's prepare/smoke failed)."""
        return self._undo(placement, candidate, ["model", "config"])

    def _delete_endpoint(self) -> bool:
        try:
            self.sagemaker.delete_endpoint(EndpointName=self.endpoint)
            return True
        except Exception as e:
            if sm._missing(e):
                return False
            raise

    def smoke(self, candidate: Candidate) -> None:
        """Shadow mode: the comparison (see the module docstring). Otherwise nothing to run."""
        if candidate.data.get("mode") != SHADOW:
            return
        t, cfg, stage = self.t, self.cfg, self.stage
        bake = t.shadow_bake if t.shadow_bake is not None else cfg.stages[stage].deploy.bake
        start = float(candidate.data.get("live_at") or self.env.clock())
        deadline = start + bake + t.shadow_wait
        poll = cfg.stages[stage].gate.poll
        cw = self._client("cloudwatch")
        placement = Placement(self.id, self.endpoint, True, candidate.data.get("previous_config"))
        while True:
            now = self.env.clock()
            try:
                s, p = sm.read_metrics(cw, self.endpoint, start, now, t.thresholds.user_metric,
                                       shadow_variant=candidate.version,
                                       production_variant=candidate.data["production_variant"])
            except Exception as e:
                outcome = self._undo(placement, candidate, ["model", "config"])
                raise DeployFailed(f"{self.id}: cannot read the shadow metrics ({type(e).__name__}: {e}); fails "
                                   f"closed, shadow dropped: {outcome}") from None
            status, checks = sm.compare(s, p, t.thresholds, elapsed=now - start, bake=bake)
            if status == sm.PASS:
                self.env.log(f"{self.id}: shadow comparison PASS ({len(checks)} checks)")
                return
            late = now >= deadline
            if status == sm.FAIL or late:
                whys = "; ".join(c.why for c in checks if c.status == status)
                outcome = self._undo(placement, candidate, ["model", "config"])
                what = "FAIL" if status == sm.FAIL else f"still WAIT after {sm.format_duration(now - start)}"
                raise DeployFailed(f"{self.id}: shadow comparison {what}: {whys}; shadow dropped: {outcome}",
                                   "thresholds are targets.sagemaker.thresholds; a slow-traffic endpoint needs a "
                                   "longer targets.sagemaker.shadow_wait")
            self.env.sleep(max(0.0, min(poll, deadline - now)))

    def shift(self, placement: Placement, candidate: Candidate, percent: int) -> None:
        mode = candidate.data.get("mode")
        if mode == CREATE:
            return  # the endpoint was created with the candidate as its only variant
        if mode == SHADOW:
            if percent < 100:
                return  # a shadow answers no request: nothing to split
            self._promote(candidate)
            return
        desc = sm.describe_endpoint(self.sagemaker, self.endpoint) or {}
        self.sagemaker.update_endpoint_weights_and_capacities(
            EndpointName=self.endpoint,
            DesiredWeightsAndCapacities=weights_request(candidate.data["production_variant"], candidate.version,
                                                        percent))
        self._wait(desc.get("EndpointConfigName") or candidate.data["endpoint_config"])

    def _only_candidate(self, candidate: Candidate, what: str) -> str:
        """An endpoint config whose only variant is the candidate's model under the production name."""
        t, rid = self.t, _record_of(candidate)
        name = sm.resource_name(self.endpoint, rid, what)
        v = sm.variant(candidate.data["production_variant"], candidate.data["model"], t.instance_type,
                       t.instance_count)
        self._create_config(sm.endpoint_config_request(
            name, v, None, sm.data_capture(t.data_capture, sm.capture_uri(self.cfg, self.stage)), record_id=rid))
        desc = sm.describe_endpoint(self.sagemaker, self.endpoint) or {}
        if desc.get("EndpointConfigName") != name:
            self.sagemaker.update_endpoint(EndpointName=self.endpoint, EndpointConfigName=name)
        self._wait(name)
        return name

    def _promote(self, candidate: Candidate) -> None:
        self.env.log(f"{self.id}: promoting the shadow {candidate.data['model']} to production")
        self._only_candidate(candidate, "p")

    def finish(self, placement: Placement, candidate: Candidate) -> list[str]:
        mode = candidate.data.get("mode")
        if mode == CREATE:
            return []
        try:
            if mode == WEIGHTED:
                self.env.log(f"{self.id}: making {candidate.version} the only variant "
                             f"({candidate.data['production_variant']})")
                self._only_candidate(candidate, "f")
            live = self._read() or {}
            configs, models = superseded(self.endpoint, live, placement, candidate)
            return self._delete(configs, models)
        except Exception as e:  # housekeeping never fails a good release
            self.env.log(f"warning: {self.id}: finish: {type(e).__name__}: {e}")
            return []

    def restore(self, placement: Placement) -> None:
        if not placement.exists:
            live = self._read()
            if live is None:
                return
            self._delete_endpoint()
            self._delete([live["EndpointConfigName"]] if made_by_pt(self.endpoint, live["EndpointConfigName"]) else [],
                         [v["model"] for v in live["variants"] if made_by_pt(self.endpoint, v["model"])])
            return
        desc = self._wait_idle()
        if desc is None:
            raise DeployFailed(f"endpoint {self.endpoint} does not exist: cannot put {placement.version} back",
                               "deploy it again (`pt deploy --target sagemaker`)")
        live = self._read() or {}
        now_on = live.get("EndpointConfigName")
        prod = placement.data.get("production_variant")
        if now_on == placement.version and live.get("routing") == placement.weights:
            return
        if now_on != placement.version and prod and len(live.get("variants") or []) > 1 \
                and any(v["name"] == prod for v in live["variants"]):
            # traffic first: all of it back on the production variant, then the config
            self.sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=self.endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": v["name"], "DesiredWeight": 1.0 if v["name"] == prod
                                              else 0.0} for v in live["variants"]])
            self._wait(now_on)
        if now_on != placement.version:
            self.sagemaker.update_endpoint(EndpointName=self.endpoint, EndpointConfigName=placement.version)
            self._wait(placement.version)
        if placement.weights and len(placement.data.get("variants") or []) > 1:
            self.sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=self.endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": v["name"], "DesiredWeight": float(v["weight"])}
                                             for v in placement.data["variants"]])
            self._wait(placement.version)
        if now_on and now_on != placement.version and made_by_pt(self.endpoint, now_on):
            keep = {v.get("model") for v in placement.data.get("variants") or []}
            self._delete([now_on], [v["model"] for v in live.get("variants") or []
                                    if v["model"] not in keep and made_by_pt(self.endpoint, v["model"])]
                         + [s["model"] for s in live.get("shadow_variants") or []
                            if s.get("model") not in keep and made_by_pt(self.endpoint, s.get("model"))])

    def describe(self) -> dict:
        out: dict[str, Any] = {"target": self.id, "endpoint": self.endpoint, "mode": self.mode,
                               "alarm_variant": sm.production_variant_name(self.cfg, self.stage)}
        try:
            live = self._read()
        except Exception as e:
            return {**out, "error": f"{type(e).__name__}: {e}"}
        if live is None:
            return {**out, "exists": False}
        out.update({"exists": True, "status": live["status"], "endpoint_config": live["EndpointConfigName"],
                    "production_variant": live["primary"], "digest": image_digest(live["image"]),
                    "image": live["image"], "routing": live["routing"],
                    "variants": [{k: v[k] for k in ("name", "model", "weight")} for v in live["variants"]],
                    "shadow_variants": live["shadow_variants"], "data_capture": live["data_capture"]})
        if live["primary"] and live["primary"] != out["alarm_variant"]:
            out["warning"] = (f"the stage alarms watch variant {out['alarm_variant']}, the endpoint's is "
                              f"{live['primary']}: set targets.sagemaker.production_variant")
        return out

    def alarm_dimensions(self, candidate: Candidate) -> list[dict[str, str]]:
        return [{"Name": "EndpointName", "Value": self.endpoint}, {"Name": "VariantName", "Value": candidate.version}]


def _record_of(candidate: Candidate) -> str:
    """The deploy id the candidate's resource names were made from."""
    return str(candidate.data["deploy_id"])


def _capture_summary(dc: dict | None) -> dict | None:
    if not dc:
        return None
    return {"enabled": bool(dc.get("EnableCapture")), "percent": dc.get("InitialSamplingPercentage"),
            "destination": dc.get("DestinationS3Uri"),
            "modes": [o.get("CaptureMode") for o in dc.get("CaptureOptions") or []]}
