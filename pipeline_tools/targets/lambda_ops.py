"""Lambda calls the deploy engine makes, each waiting and retrying the way lambroll does.

Public API (every function takes the boto3 `lambda_client`; waits use injected clock/sleep):
- `AliasState(name, exists, version, weights, revision)`; `read_alias(lc, name)`.
- `version_info(lc, name, version) -> (digest, Configuration)`: one GetFunction, cached.
- `version_digest(lc, name, version) -> str | None`: the image digest a version runs (from the
  `pt …` version description we write, else the version's Code.ImageUri): one GetFunction, then
  cached per client (a numbered version's code is immutable).
- `wait_updated(lc, name, clock, sleep, timeout)`: until LastUpdateStatus is Successful (deadline).
- `update_code(lc, name, image_uri, clock, sleep, timeout) -> dict`: update (a conflict waits and
  retries), then wait for Successful.
- `publish(lc, name, description, clock, sleep) -> str`: publish_version, returns the version.
- `set_alias(lc, name, primary, extra_weights, *, exists, revision, create_only) -> RevisionId`:
  create/update alias `live`, conditionally (AliasChanged) when asked.
- `delete_alias(lc, name)`; `prune_versions(lc, name, keep) -> list[str]` (deleted versions);
  `prune_needed(newest, keep)`: whether pruning would make any request.
- `retrying(fn, sleep, **kw)`: ResourceConflictException retried, bounded (throttling: botocore).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline_tools.core.errors import DeployFailed, NotFoundError
from pipeline_tools.core.names import LIVE_ALIAS

DIGEST_IN_TEXT = re.compile(r"sha256:[0-9a-f]{64}")
# Throttling and 5xx are botocore's job (adaptive retry mode, core/aws.py); retrying them here too
# would multiply the attempts. Ours is only the conflict of an update still in progress.
_RETRY_CODES = {"ResourceConflictException"}
MAX_CONFLICT_RETRIES = 8


def _code(e: BaseException) -> str | None:
    resp = getattr(e, "response", None)
    return resp.get("Error", {}).get("Code") if isinstance(resp, dict) else None


def retrying(fn: Callable[..., Any], sleep: Callable[[float], None], *, attempts: int = MAX_CONFLICT_RETRIES,
             **kw: Any) -> Any:
    """Call fn(**kw); retry conflicts (an update in progress), bounded."""
    delay = 0.2
    for i in range(attempts):
        try:
            return fn(**kw)
        except Exception as e:
            if _code(e) not in _RETRY_CODES or i == attempts - 1:
                raise
            sleep(delay)
            delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AliasState:
    function: str
    exists: bool
    version: str | None = None
    weights: dict[str, float] = field(default_factory=dict)
    revision: str | None = field(default=None, compare=False)  # the alias's RevisionId (a write's fence)

    @property
    def settled(self) -> bool:
        """100 % on one version."""
        return self.exists and not self.weights


def read_alias(lc: Any, name: str) -> AliasState:
    try:
        a = lc.get_alias(FunctionName=name, Name=LIVE_ALIAS)
    except Exception as e:
        if _code(e) == "ResourceNotFoundException":
            return AliasState(name, False)
        raise
    w = (a.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return AliasState(name, True, a["FunctionVersion"], {k: float(v) for k, v in w.items()}, a.get("RevisionId"))


def function_exists(lc: Any, name: str, hint: str) -> dict:
    try:
        return lc.get_function_configuration(FunctionName=name)
    except Exception as e:
        if _code(e) == "ResourceNotFoundException":
            raise NotFoundError(f"Lambda function {name} does not exist", hint) from None
        raise


# A published version's code never changes, so its digest is read once per client (one GetFunction:
# its Configuration has the description, its Code the image URI). Keyed by the client object: a
# new client (another account, a reset test server) starts empty.
_DIGESTS: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], tuple[str | None, dict]]] = \
    weakref.WeakKeyDictionary()


def version_info(lc: Any, name: str, version: str) -> tuple[str | None, dict]:
    """(image digest, Configuration) of a version: one GetFunction, cached for numbered versions."""
    try:
        cache = _DIGESTS.setdefault(lc, {})
    except TypeError:  # a client that cannot be weakly referenced: no cache
        cache = {}
    key = (name, str(version))
    if key in cache and version.isdigit():  # `$LATEST` changes: never cached
        return cache[key]
    resp = lc.get_function(FunctionName=name, Qualifier=version)
    conf = resp.get("Configuration") or {}
    desc = conf.get("Description") or ""
    m = DIGEST_IN_TEXT.search(desc) if desc.startswith("pt ") else None
    if not m:
        m = DIGEST_IN_TEXT.search((resp.get("Code") or {}).get("ImageUri") or "")
    cache[key] = found = (m.group(0) if m else None, conf)
    return found


def version_digest(lc: Any, name: str, version: str | None) -> str | None:
    if version is None:
        return None
    return version_info(lc, name, version)[0]


def wait_updated(lc: Any, name: str, clock: Callable[[], float], sleep: Callable[[float], None],
                 timeout: float = 300.0, qualifier: str | None = None) -> dict:
    """Poll until LastUpdateStatus is Successful (`qualifier`: a published version, else $LATEST)."""
    deadline = clock() + timeout
    delay = 0.1
    kw = {"Qualifier": qualifier} if qualifier else {}
    while True:
        c = lc.get_function_configuration(FunctionName=name, **kw)
        status, state = c.get("LastUpdateStatus"), c.get("State")
        if status == "Failed" or state == "Failed":
            why = c.get("LastUpdateStatusReason") or c.get("StateReason") or "no reason given"
            raise DeployFailed(f"Lambda update of {name} failed: {why}",
                               "check the image (architecture, entry point) and the function's role")
        if status in (None, "Successful") and state in (None, "Active", "Inactive"):
            return c
        if clock() >= deadline:
            raise DeployFailed(f"Lambda update of {name} still {status or state} after {timeout:.0f}s",
                               "raise PT_LAMBDA_UPDATE_TIMEOUT or check the function in the console")
        sleep(delay)
        delay = min(delay * 2, 2.0)


def update_code(lc: Any, name: str, image_uri: str, clock: Callable[[], float], sleep: Callable[[float], None],
                timeout: float = 300.0, *, publish: bool = False) -> dict:
    """update_function_code, then wait for LastUpdateStatus=Successful.

    An update already in progress answers ResourceConflictException: wait for it, then retry
    (bounded) — cheaper than a status read before every update. `publish`: the same call
    publishes a version of exactly this code (atomic: no concurrent writer's code can slip in);
    the answer is that version's configuration, and the wait is on that version.
    """
    extra = {"Publish": True} if publish else {}
    for attempt in range(MAX_CONFLICT_RETRIES):
        try:
            resp = lc.update_function_code(FunctionName=name, ImageUri=image_uri, **extra)
            break
        except Exception as e:
            if _code(e) not in _RETRY_CODES or attempt == MAX_CONFLICT_RETRIES - 1:
                raise
            if _code(e) == "ResourceConflictException":
                wait_updated(lc, name, clock, sleep, timeout)
            else:
                sleep(min(0.2 * 2 ** attempt, 3.0))
    if resp.get("LastUpdateStatus") == "Successful" and resp.get("State") in (None, "Active"):
        if publish:
            _forget(lc, name, str(resp.get("Version")))
        return resp
    version = str(resp.get("Version")) if publish and str(resp.get("Version", "")).isdigit() else None
    if version:
        _forget(lc, name, version)
    return wait_updated(lc, name, clock, sleep, timeout, qualifier=version)


def publish(lc: Any, name: str, description: str, sleep: Callable[[float], None],
            code_sha256: str | None = None) -> str:
    kw: dict[str, Any] = {"FunctionName": name, "Description": description[:256]}
    if code_sha256:
        kw["CodeSha256"] = code_sha256
    version = str(retrying(lc.publish_version, sleep, **kw)["Version"])
    _forget(lc, name, version)  # a reused number (moto reuses pruned ones) must not answer an old digest
    return version


def _forget(lc: Any, name: str, version: str) -> None:
    try:
        _DIGESTS.get(lc, {}).pop((name, version), None)
    except TypeError:
        pass


class AliasChanged(DeployFailed):
    """The alias is not what the deploy read (RevisionId no longer matches): nothing was moved."""


def set_alias(lc: Any, name: str, primary: str, extra: dict[str, float], *, exists: bool,
              sleep: Callable[[float], None], revision: str | None = None,
              create_only: bool = False) -> str | None:
    """Point `live` at primary (+ extra weights); returns the alias's new RevisionId.
    `revision`: update only if the alias is still at that RevisionId; `create_only`: the alias
    must not exist yet (AliasChanged otherwise, and nothing is moved)."""
    routing = {"AdditionalVersionWeights": dict(extra)}
    if exists:
        fence = {"RevisionId": revision} if revision else {}
        try:
            resp = retrying(lc.update_alias, sleep, FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=primary,
                            RoutingConfig=routing, **fence)
        except Exception as e:
            if _code(e) == "PreconditionFailedException":
                raise AliasChanged(f"alias {LIVE_ALIAS} of {name} changed since this deploy read it (another "
                                   "deploy or a manual change); no traffic was moved",
                                   "check what runs with `pt status`, then run `pt deploy` again") from None
            raise
        return resp.get("RevisionId") if isinstance(resp, dict) else None
    try:  # a conflict here is mostly an alias that exists: with create_only, one attempt says so
        resp = retrying(lc.create_alias, sleep, attempts=1 if create_only else MAX_CONFLICT_RETRIES,
                        FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=primary,
                        RoutingConfig=routing, Description="pipeline-tools traffic alias")
    except Exception as e:
        if _code(e) != "ResourceConflictException":
            raise
        if create_only:
            raise AliasChanged(f"alias {LIVE_ALIAS} of {name} was created since this deploy read the function "
                               "(another deploy or a manual change); no traffic was moved",
                               "check what runs with `pt status`, then run `pt deploy` again") from None
        resp = retrying(lc.update_alias, sleep, FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=primary,
                        RoutingConfig=routing)
    return resp.get("RevisionId") if isinstance(resp, dict) else None


def delete_alias(lc: Any, name: str, sleep: Callable[[float], None]) -> None:
    try:
        retrying(lc.delete_alias, sleep, FunctionName=name, Name=LIVE_ALIAS)
    except Exception as e:
        if _code(e) != "ResourceNotFoundException":
            raise


def prune_needed(newest: str | None, keep: int) -> bool:
    """False when pruning after publishing `newest` makes no request: version numbers only grow,
    so a function whose newest version is ≤ keep has at most `keep` versions."""
    return not (newest is not None and newest.isdigit() and int(newest) <= keep)


def prune_versions(lc: Any, name: str, keep: int, sleep: Callable[[float], None],
                   newest: str | None = None) -> list[str]:
    """Delete numbered versions beyond the newest `keep` that no alias references.

    `newest`: the version just published. Version numbers only grow, so a function whose newest
    version is ≤ keep has at most `keep` versions: nothing to list or delete (saves 2 requests).
    """
    if not prune_needed(newest, keep):
        return []
    versions: list[int] = []
    marker = None
    for _ in range(1000):
        kw = {"FunctionName": name, **({"Marker": marker} if marker else {})}
        resp = lc.list_versions_by_function(**kw)
        versions += [int(v["Version"]) for v in resp.get("Versions", []) if v["Version"].isdigit()]
        marker = resp.get("NextMarker")
        if not marker:
            break
    if len(versions) <= keep:  # nothing beyond `keep`: no need to read the aliases
        return []
    referenced: set[str] = set()
    marker = None
    for _ in range(1000):
        kw = {"FunctionName": name, **({"Marker": marker} if marker else {})}
        resp = lc.list_aliases(**kw)
        for a in resp.get("Aliases", []):
            referenced.add(str(a["FunctionVersion"]))
            referenced.update((a.get("RoutingConfig") or {}).get("AdditionalVersionWeights", {}).keys())
        marker = resp.get("NextMarker")
        if not marker:
            break
    old = sorted(versions, reverse=True)[keep:]
    deleted = []
    for v in sorted(old):
        if str(v) in referenced:
            continue
        retrying(lc.delete_function, sleep, FunctionName=name, Qualifier=str(v))
        _forget(lc, name, str(v))
        deleted.append(str(v))
    return deleted
