"""Lambda target: a function released as a published version behind alias `live`.

- `current`: alias `live` (version + AdditionalVersionWeights), the image digest that version
  runs, and its configuration (memory, timeout, /tmp, environment) plus the function's reserved
  concurrency in `data`, so `restore` can put every part back.
- `unchanged`: the alias serves the digest at 100 % *and* the live version's configuration is
  what `functions.<f>` says: a configuration change alone is a deploy of its own.
- `prepare`: update the code to the release's image, apply the configuration with
  `update_function_configuration` (waiting for LastUpdateStatus with a deadline through the
  injected clock/sleep), publish a version (CodeSha256-pinned); no traffic moves.
- `smoke`: with `functions.<f>.smoke`, invoke the candidate version with `payload`; the invoke
  must not raise a FunctionError, a `statusCode` in the response must equal `expect_status`, and
  every key of `expect_keys` must be in the response (or in its JSON `body`).
- `shift`: alias routing (schedule.weights); at 100 % the reserved concurrency is applied.
- `restore`: alias back to the recorded version at 100 % and reserved concurrency as it was;
  a first deploy (no alias before) deletes the alias.
- `finish`: prunes versions beyond `deploy.keep_versions` that no alias references.
- `alarm_dimensions`: FunctionName, Resource (`<fn>:live`) and ExecutedVersion of the
  candidate, with `error_metrics` AWS/Lambda Errors: the gate reads the new version's own errors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.core.names import LIVE_ALIAS
from pipeline_tools.release import schedule
from pipeline_tools.release.target import Candidate, Placement, Release, target_id
from pipeline_tools.targets import lambda_ops as lo

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config, FunctionConfig
    from pipeline_tools.targets import TargetEnv

KIND = "lambda"
HINT_MISSING = "deploy the stage stack first (`npx cdk deploy` creates the functions)"


def names(cfg: Config, stage: str) -> list[str]:
    """The functions of `stage`, in config order (every function is in every stage)."""
    cfg.stage(stage)
    return list(cfg.functions)


def config_of(c: dict) -> dict:
    """The deployable configuration of a get_function_configuration answer (JSON-able)."""
    return {"memory": c.get("MemorySize"), "timeout": c.get("Timeout"),
            "ephemeral_storage": (c.get("EphemeralStorage") or {}).get("Size", 512),
            "environment": dict((c.get("Environment") or {}).get("Variables") or {})}


def desired_config(cfg: Config, stage: str, fn: str, live_env: dict[str, str]) -> dict:
    """What `functions.<fn>` asks for. Environment: variables the config does not name (the stage
    stack's PT_PROJECT/PT_STAGE, parameters) are kept; the config's own win."""
    f = cfg.functions[fn]
    env = {**live_env, **f.environment}
    return {"memory": f.memory, "timeout": f.timeout, "ephemeral_storage": f.ephemeral_storage, "environment": env}


def config_diff(live: dict, want: dict) -> list[str]:
    """Names of the settings that differ (pure)."""
    return [k for k in ("memory", "timeout", "ephemeral_storage", "environment") if live.get(k) != want.get(k)]


def check_smoke(fn: str, version: str, resp: dict, expect_status: int | None, expect_keys: list[str]) -> None:
    """Judge a smoke invoke's answer (pure apart from reading the payload). Raises DeployFailed."""
    where = f"smoke invoke of {fn} version {version}"
    hint = f"check `functions.{fn}.smoke` in pipeline.yml and the new version's logs (`pt logs`)"
    raw = resp.get("Payload")
    body = raw.read() if hasattr(raw, "read") else (raw or b"")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    if not 200 <= int(resp.get("StatusCode") or 0) < 300:
        raise DeployFailed(f"{where} answered HTTP {resp.get('StatusCode')}", hint)
    if resp.get("FunctionError"):
        raise DeployFailed(f"{where} raised {resp['FunctionError']}: {text[:300]}", hint)
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if expect_status is not None:
        got = data.get("statusCode") if isinstance(data, dict) else None
        if got is None or int(got) != int(expect_status):
            raise DeployFailed(f"{where}: statusCode {got!r}, expected {expect_status}", hint)
    if expect_keys:
        obj = data
        if isinstance(data, dict) and isinstance(data.get("body"), str):
            try:
                obj = {**data, **json.loads(data["body"])}
            except (ValueError, TypeError):
                obj = data
        missing = [k for k in expect_keys if not isinstance(obj, dict) or k not in obj]
        if missing:
            raise DeployFailed(f"{where}: response lacks {', '.join(missing)}", hint)


class LambdaTarget:
    weighted = True
    error_metrics = (("AWS/Lambda", "Errors"),)

    def __init__(self, cfg: Config, stage: str, name: str, env: TargetEnv):
        cfg.stage(stage)
        if name not in cfg.functions:
            from pipeline_tools.core.errors import UsageError

            raise UsageError(f"unknown function '{name}' (functions: {', '.join(cfg.functions) or 'none'})",
                             "pass a key of `functions:` in pipeline.yml")
        self.cfg, self.stage, self.fn, self.env = cfg, stage, name, env
        self.spec: FunctionConfig = cfg.functions[name]
        self.id = target_id(KIND, name)
        self.image = self.spec.image
        self.name = cfg.function_name(stage, name)
        self.keep = cfg.stages[stage].deploy.keep_versions
        self._fence: tuple[bool, str | None] | None = None  # set by arm_fence, spent by the first shift

    @property
    def lc(self) -> Any:
        return self.env.client("lambda")

    @property
    def manages_concurrency(self) -> bool:
        """`reserved_concurrency` is in the config (a number sets it, an explicit null removes it);
        absent, pt leaves the function's setting alone and does not read it."""
        return "reserved_concurrency" in getattr(self.spec, "model_fields_set", {"reserved_concurrency"})

    def current(self) -> Placement:
        """Alias `live` (GetAlias) and the live version's digest and configuration (one GetFunction,
        cached: a numbered version is immutable). Without an alias: $LATEST's configuration, which
        also says the function exists (NotFoundError otherwise)."""
        alias = lo.read_alias(self.lc, self.name)
        data: dict[str, Any] = {}
        if self.manages_concurrency:
            data["reserved_concurrency"] = self._reserved()
        if not alias.exists:
            data["latest_config"] = config_of(lo.function_exists(self.lc, self.name, HINT_MISSING))
            return Placement(self.id, self.name, False, data=data)
        digest, live = lo.version_info(self.lc, self.name, str(alias.version))
        data["config"] = config_of(live)
        if alias.revision:
            data["revision"] = alias.revision
        return Placement(self.id, self.name, True, alias.version, digest, dict(alias.weights), data)

    def arm_fence(self, placement: Placement) -> None:
        """The engine read `placement` before taking the lock and does not read it again: the first
        alias write of this release is conditional on the alias being what was read (RevisionId),
        so a change in between fails the release before any traffic moves (lo.AliasChanged)."""
        self._fence = (placement.exists, placement.data.get("revision"))

    def _reserved(self) -> int | None:
        try:
            return self.lc.get_function_concurrency(FunctionName=self.name).get("ReservedConcurrentExecutions")
        except Exception as e:
            if lo._code(e) == "ResourceNotFoundException":
                return None
            raise

    def wanted(self, placement: Placement) -> dict:
        live_env = ((placement.data.get("config") or placement.data.get("latest_config") or {})
                    .get("environment") or {})
        return desired_config(self.cfg, self.stage, self.fn, live_env)

    def changes(self, placement: Placement) -> list[str]:
        """The configuration settings a deploy would change (for the plan)."""
        out = config_diff(placement.data.get("config") or {}, self.wanted(placement)) if placement.exists else []
        if self.manages_concurrency and placement.data.get("reserved_concurrency") != self.spec.reserved_concurrency:
            out.append("reserved_concurrency")
        return out

    def unchanged(self, placement: Placement, release: Release) -> bool:
        return placement.serves(release.digest) and not self.changes(placement)

    def prepare(self, release: Release, placement: Placement) -> Candidate:
        """Configuration first (only when it differs from what runs), then the code with
        `Publish`: one call updates and publishes exactly that code. If $LATEST's configuration
        was changed behind pt's back, the published version shows it: the configuration is put
        right and a version published again (CodeSha256-pinned)."""
        lc, e = self.lc, self.env
        want = self.wanted(placement)
        have = placement.data.get("config") if placement.exists else placement.data.get("latest_config")
        if config_diff(have or {}, want):
            self._apply_config(want)
        published = lo.update_code(lc, self.name, release.image_uri, e.clock, e.sleep, e.update_timeout,
                                   publish=True)
        version = str(published.get("Version") or "")
        if not version.isdigit() or config_diff(config_of(published), want):
            self._apply_config(want)
            version = lo.publish(lc, self.name, f"pt {release.deploy_id} {release.digest}", e.sleep,
                                 code_sha256=published.get("CodeSha256"))
        if placement.exists and version == placement.version:
            raise DeployFailed(f"publishing {self.name} returned the live version {version}: Lambda saw "
                               "no change", "check the function's code with `pt status`")
        return Candidate(self.id, version, release.digest,
                         {"config": want, "reserved_concurrency": self.spec.reserved_concurrency}
                         if self.manages_concurrency else {"config": want})

    def _apply_config(self, want: dict) -> None:
        lc, e = self.lc, self.env
        lo.retrying(lc.update_function_configuration, e.sleep, FunctionName=self.name,
                    MemorySize=want["memory"], Timeout=want["timeout"],
                    EphemeralStorage={"Size": want["ephemeral_storage"]},
                    Environment={"Variables": want["environment"]})
        lo.wait_updated(lc, self.name, e.clock, e.sleep, e.update_timeout)
        e.log(f"{self.id}: configuration applied")

    def check_candidate(self, candidate: Candidate) -> None:
        """A recorded version a rollback returns to must still exist."""
        from pipeline_tools.core.errors import NotFoundError

        try:
            self.lc.get_function_configuration(FunctionName=self.name, Qualifier=candidate.version)
        except Exception as e:
            if lo._code(e) == "ResourceNotFoundException":
                raise NotFoundError(f"version {candidate.version} of {self.name} no longer exists "
                                    "(pruned by keep_versions)", "redeploy that digest with `pt deploy`") from None
            raise

    def smoke(self, candidate: Candidate) -> None:
        smoke = getattr(self.spec, "smoke", None)
        if smoke is None:
            return
        try:
            resp = lo.retrying(self.lc.invoke, self.env.sleep, attempts=3, FunctionName=self.name,
                               Qualifier=candidate.version, InvocationType="RequestResponse",
                               Payload=json.dumps(smoke.payload).encode())
        except Exception as e:
            raise DeployFailed(f"smoke invoke of {self.fn} version {candidate.version} failed: {e}",
                               f"check `functions.{self.fn}.smoke` and the new version's logs (`pt logs`)") from None
        check_smoke(self.fn, candidate.version, resp, smoke.expect_status, list(smoke.expect_keys))
        self.env.log(f"{self.id}: smoke invoke of version {candidate.version} passed")

    def shift(self, placement: Placement, candidate: Candidate, percent: int) -> None:
        old = placement.version if placement.exists else None
        primary, extra = schedule.weights(percent, old, candidate.version)
        fence = self._fence
        if fence is not None:  # the first write of an armed release: conditional
            existed, revision = fence
            self._fence = None
            lo.set_alias(self.lc, self.name, primary, extra, exists=existed, sleep=self.env.sleep,
                         revision=revision, create_only=not existed)
        else:
            lo.set_alias(self.lc, self.name, primary, extra, exists=placement.exists or self._alias_exists(),
                         sleep=self.env.sleep)
        if percent >= 100 and self.manages_concurrency:
            self._set_reserved(candidate.data.get("reserved_concurrency"), placement.data.get("reserved_concurrency"))

    def _alias_exists(self) -> bool:
        return lo.read_alias(self.lc, self.name).exists

    def _set_reserved(self, want: int | None, have: int | None) -> None:
        if want == have:
            return
        if want is None:
            lo.retrying(self.lc.delete_function_concurrency, self.env.sleep, FunctionName=self.name)
        else:
            lo.retrying(self.lc.put_function_concurrency, self.env.sleep, FunctionName=self.name,
                        ReservedConcurrentExecutions=int(want))

    def restore(self, placement: Placement) -> None:
        if placement.exists and placement.version is not None:
            lo.set_alias(self.lc, self.name, placement.version, {}, exists=True, sleep=self.env.sleep)
        else:
            lo.delete_alias(self.lc, self.name, self.env.sleep)
        if "reserved_concurrency" in placement.data:
            self._set_reserved(placement.data.get("reserved_concurrency"), self._reserved())

    def finish_needed(self, placement: Placement, candidate: Candidate) -> bool:
        """Pruning makes requests only once version numbers pass keep_versions."""
        return lo.prune_needed(candidate.version, self.keep)

    def finish(self, placement: Placement, candidate: Candidate) -> list[str]:
        try:
            return lo.prune_versions(self.lc, self.name, self.keep, self.env.sleep, newest=candidate.version)
        except Exception as e:  # housekeeping: never fail a good deploy for it
            self.env.log(f"warning: could not prune old versions of {self.name}: {e}")
            return []

    def describe(self) -> dict:
        p = self.current()
        if not self.manages_concurrency:
            p.data["reserved_concurrency"] = self._reserved()
        out: dict[str, Any] = {"name": self.name, "alias": p.exists, "version": p.version, "digest": p.digest,
                               "weights": p.weights, "config": p.data.get("config"),
                               "reserved_concurrency": p.data.get("reserved_concurrency")}
        if p.weights:
            out["weighted_digests"] = {v: lo.version_digest(self.lc, self.name, v) for v in p.weights}
        if not p.exists:
            out["note"] = "no alias live yet (created by the first pt deploy)"
        return out

    def alarm_dimensions(self, candidate: Candidate) -> list[dict[str, str]]:
        return [{"Name": "FunctionName", "Value": self.name},
                {"Name": "Resource", "Value": f"{self.name}:{LIVE_ALIAS}"},
                {"Name": "ExecutedVersion", "Value": candidate.version}]
