"""The ledger: deployment (and other) records plus the per-stage lock, in one DynamoDB table.

Table `<project>-ledger` (`cfg.ledger_table()`), on-demand, keys (the CDK stack must match):
  partition key `pk` (S) = stage name, sort key `sk` (S) = `R#<record id>` or `LOCK`.
Record ids are time-ordered (`20261127T222226123Z-1a2b3c`), so a stage's records sort by time.
Each record item: pk, sk, id, kind, state, created (N), updated (N), body (S, JSON of the rest).

Public API
- `new_id(now) -> str`: a time-ordered record id.
- `TableGuard(client, table, …)`: the same check, made only when a call finds no table.
- `ensure_table(client, table, *, project, stage, local)`: exists? else create it in local mode,
  else `NotFoundError` naming the stack that creates it (`names.stage_stack`).
- `Ledger(client, table, clock=time.time)` — `client` is a boto3 DynamoDB *client*:
  * `put_record(kind, stage, data, *, actor=None, state=None, reason=None, record_id=None) -> Record`
    any kind: "deploy" (this module's deploys/rollbacks), and e.g. "approval", "window-override",
    "promotion" written by other modules. Refuses to overwrite an existing id.
  * `get(stage, record_id) -> Record | None`
  * `query(stage, kind=None, *, state=None, limit=None, where=None) -> list[Record]` newest first.
  * `transition(stage, record_id, state, *, reason=None, actor=None, data=None, expected=None,
    current=None) -> Record`
    appends {state, at, reason, actor} to the record's `transitions`, merges `data` into the body,
    conditional on the current state being `expected` (when given) — written *before* acting.
  * `append_event(stage, record_id, event, *, actor=None, reason=None, data=None) -> Record`
    an event on a record without changing its state (e.g. a window override, a verdict).
  * `last_succeeded(stage, operations=("deploy",)) -> Record | None`: the newest deploy record
    in state `succeeded` not since undone by `pt rollback` (data `rolled_back_by`), i.e. the
    digest that runs and passed its bake (digest, time, actor incl. commit author:
    `rec.actor["author"]`, git sha `rec.actor["git_sha"]`).
  * `unfinished(stage) -> Record | None`: the newest deploy record not in a final state.
  * lock: `acquire(stage, deploy_id, actor, lease) -> Lock` (conditional put; raises
    `LockedError` exit 4 "stage S is locked by A (deploy ID, since T)", or `RecoveryNeeded`
    when the holder died with its deploy unfinished), `renew(lock, lease) -> Lock`,
    `release(lock)`, `current_lock(stage) -> Lock | None`, `take_over(stage, deploy_id, actor,
    lease, *, force=False) -> Lock` (for `pt recover`), `remove_damaged_lock(stage)`.
- Fencing: every acquisition (also `take_over`) draws a fresh random `token`; renew/release are
  conditional on it, and so is every record write given `lock=` (`put_record`, `transition`,
  `append_event`: a DynamoDB transaction whose ConditionCheck is the lock item's token). A holder
  whose lock was taken over gets `FenceLost` and cannot overwrite the new holder's work.
- Validation: every item read is checked (`CorruptItem`, exit 1, naming the item's key and what
  is wrong); `query(..., on_corrupt=warn)` skips such items after calling `warn(error)`.
- `lease_from_env()`: PT_LOCK_LEASE (seconds, default 120), read when used, never at import.
- `Record` (frozen): id, stage, kind, state, created, updated, actor, reason, data, transitions;
  `.final`, `.digest`, `.to_dict()`. `Lock` (frozen): stage, deploy_id, actor, since, lease_until,
  token.
- Deploy states: `DEPLOY_STATES`; final ones: `FINAL_STATES`.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import LockedError, NotFoundError, PtError, UsageError

PK = "pk"
SK = "sk"
LOCK_SK = "LOCK"
RECORD_PREFIX = "R#"
DEPLOY = "deploy"
DEPLOY_STATES = ("locked", "updating", "shifting", "baking", "rolling_back", "finishing",
                 "succeeded", "rolled_back", "failed")
FINAL_STATES = frozenset({"succeeded", "rolled_back", "failed"})
DEFAULT_LEASE = 120.0
LEASE_LIMITS = (1.0, 86400.0)
TXN_RETRIES = 5


def lease_from_env(env: dict[str, str] | None = None) -> float:
    """The lock lease in seconds: PT_LOCK_LEASE, else 120. Read when a lock is taken, not at import."""
    raw = (os.environ if env is None else env).get("PT_LOCK_LEASE")
    if raw is None or not raw.strip():
        return DEFAULT_LEASE
    lo_, hi = LEASE_LIMITS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not lo_ <= value <= hi:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise UsageError(f"PT_LOCK_LEASE={shown!r} is not a lease in seconds between {lo_:g} and {hi:g}",
                         "set PT_LOCK_LEASE to a number of seconds (e.g. 120) or unset it")
    return value


class RecoveryNeeded(LockedError):
    """A deploy died mid-way (record not final, lease expired): `pt recover` must run first."""


class LedgerConflict(PtError):
    """A conditional write lost (someone else changed the record or the lock)."""


class FenceLost(LedgerConflict):
    """The lock this process held now carries another token: it was taken over (`pt recover`)."""


class CorruptItem(PtError):
    """A ledger item that is not what pt writes (body not JSON, missing fields, damaged lock)."""

    def __init__(self, table: str, pk: str, sk: str, problem: str, hint: str | None = None):
        super().__init__(f"ledger item pk={pk} sk={sk} in table {table} is damaged: {problem}",
                         hint or "pt skips it where it can (history, status); inspect or delete the item "
                                 "with `aws dynamodb get-item` / `delete-item`")
        self.key = (pk, sk)
        self.problem = problem


def new_id(now: float) -> str:
    dt = datetime.fromtimestamp(now, UTC)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{int(dt.microsecond / 1000):03d}Z-{secrets.token_hex(3)}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    id: str
    stage: str
    kind: str
    state: str | None
    created: float
    updated: float
    actor: dict = field(default_factory=dict)
    reason: str | None = None
    data: dict = field(default_factory=dict)
    transitions: tuple[dict, ...] = ()

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def digest(self) -> str | None:
        return self.data.get("digest")

    def to_dict(self) -> dict:
        return {"id": self.id, "stage": self.stage, "kind": self.kind, "state": self.state,
                "created": iso(self.created), "updated": iso(self.updated), "actor": self.actor,
                "reason": self.reason, **self.data, "transitions": list(self.transitions)}


@dataclass(frozen=True)
class Lock:
    stage: str
    deploy_id: str
    actor: dict
    since: float
    lease_until: float
    token: str = ""  # fresh per acquisition: the fence of renew/release and of the holder's writes

    def describe(self) -> str:
        who = self.actor.get("name") or self.actor.get("arn") or "unknown"
        return f"stage {self.stage} is locked by {who} (deploy {self.deploy_id}, since {iso(self.since)})"


def ensure_table(client: Any, table: str, *, project: str, stage: str, local: bool,
                 sleep: Callable[[float], None] = time.sleep, stack: str | None = None) -> bool:
    """True if the table exists (or was created here, local mode only). `stack`: the stack that
    creates it (default: the stage's StageStack; the ledger stack when the ledger is shared)."""
    from botocore.exceptions import ClientError

    try:
        client.describe_table(TableName=table)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    if not local:
        stack = stack or names.stage_stack(project, stage)
        raise NotFoundError(f"ledger table {table} does not exist",
                            f"deploy the stack {stack} (it creates the ledger), e.g. `npx cdk deploy {stack}`")
    try:
        client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": PK, "AttributeType": "S"},
                                                  {"AttributeName": SK, "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": PK, "KeyType": "HASH"},
                                       {"AttributeName": SK, "KeyType": "RANGE"}])
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    for _ in range(120):
        status = client.describe_table(TableName=table)["Table"].get("TableStatus")
        if status == "ACTIVE":
            break
        sleep(0.5)
    return True


class TableGuard:
    """A ledger's DynamoDB client whose table is not checked up front (no DescribeTable per
    command): the first call that finds no table creates it in local mode and is retried, or
    fails with how to create it (the stack's name). Everything else passes through."""

    def __init__(self, client: Any, table: str, *, project: str, stage: str, local: bool,
                 stack: str | None = None, sleep: Callable[[float], None] = time.sleep):
        self._client, self._table, self._local, self._sleep = client, table, local, sleep
        self._project, self._stage, self._stack = project, stage, stack

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr) or name in ("get_paginator", "get_waiter", "can_paginate"):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            try:
                return attr(*a, **kw)
            except Exception as e:
                if getattr(e, "response", {}).get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
            # the table is missing: created here (local mode; raises NotFoundError otherwise), then once more
            ensure_table(self._client, self._table, project=self._project, stage=self._stage, local=self._local,
                         sleep=self._sleep, stack=self._stack)
            return attr(*a, **kw)

        return call


def _conditional_failed(e: BaseException) -> bool:
    return getattr(e, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _cancel_reasons(e: BaseException) -> list[str] | None:
    """Per-item codes of a cancelled transaction, or None when it was not a cancellation."""
    resp = getattr(e, "response", {})
    if resp.get("Error", {}).get("Code") != "TransactionCanceledException":
        return None
    return [str((r or {}).get("Code") or "None") for r in resp.get("CancellationReasons") or []]


def _s(item: dict, key: str) -> str | None:
    v = item.get(key)
    return v.get("S") if isinstance(v, dict) and isinstance(v.get("S"), str) else None


def _n(item: dict, key: str) -> float | None:
    v = item.get(key)
    raw = v.get("N") if isinstance(v, dict) else None
    try:
        f = float(raw) if raw is not None else None
    except ValueError:
        return None
    return f if f is not None and math.isfinite(f) else None


class Ledger:
    def __init__(self, client: Any, table: str, clock: Callable[[], float] = time.time):
        self.client = client
        self.table = table
        self.clock = clock

    # --- records ----------------------------------------------------------------------------
    def _item(self, rec: Record) -> dict:
        body = {"actor": rec.actor, "reason": rec.reason, "data": rec.data, "transitions": list(rec.transitions)}
        item = {PK: {"S": rec.stage}, SK: {"S": RECORD_PREFIX + rec.id}, "id": {"S": rec.id},
                "kind": {"S": rec.kind}, "created": {"N": repr(rec.created)}, "updated": {"N": repr(rec.updated)},
                "body": {"S": json.dumps(body, default=str, separators=(",", ":"))}}
        if rec.state is not None:
            item["state"] = {"S": rec.state}
        return item

    def _corrupt(self, item: dict, problem: str) -> CorruptItem:
        return CorruptItem(self.table, _s(item, PK) or "?", _s(item, SK) or "?", problem)

    def decode(self, item: dict) -> Record:
        """A raw DynamoDB item of this table as a Record (for readers that page the table
        themselves, e.g. `pt audit export`); CorruptItem names its key and what is wrong."""
        return self._record(item)

    def _record(self, item: dict) -> Record:
        """The item as a Record, or CorruptItem naming its key and what is wrong."""
        missing = [k for k in (PK, SK, "id", "kind", "body") if _s(item, k) is None]
        missing += [k for k in ("created", "updated") if _n(item, k) is None]
        if missing:
            raise self._corrupt(item, "missing or mistyped " + ", ".join(missing))
        if "state" in item and _s(item, "state") is None:
            raise self._corrupt(item, "state is not a string")
        try:
            body = json.loads(item["body"]["S"])
        except ValueError as e:
            raise self._corrupt(item, f"body is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise self._corrupt(item, f"body is a JSON {type(body).__name__}, not an object")
        for key, typ in (("actor", dict), ("data", dict), ("transitions", list)):
            if body.get(key) is not None and not isinstance(body[key], typ):
                raise self._corrupt(item, f"body.{key} is a {type(body[key]).__name__}, not a {typ.__name__}")
        if not all(isinstance(t, dict) for t in body.get("transitions") or ()):
            raise self._corrupt(item, "body.transitions holds entries that are not objects")
        if body.get("reason") is not None and not isinstance(body["reason"], str):
            raise self._corrupt(item, "body.reason is not a string")
        return Record(id=item["id"]["S"], stage=item[PK]["S"], kind=item["kind"]["S"],
                      state=_s(item, "state"), created=float(item["created"]["N"]),
                      updated=float(item["updated"]["N"]), actor=body.get("actor") or {},
                      reason=body.get("reason"), data=body.get("data") or {},
                      transitions=tuple(body.get("transitions") or ()))

    def _lock_key(self, stage: str) -> dict:
        return {PK: {"S": stage}, SK: {"S": LOCK_SK}}

    def _put(self, item: dict, cond: str, values: dict | None, lock: Lock | None, release: bool = False) -> None:
        """put_item under `cond`; with a fenced `lock`, in one transaction with a ConditionCheck that
        the lock item still carries its token (with `release`, a Delete of the lock under that same
        condition: the last write and the release in one request). FenceLost / ConditionalCheckFailed
        (as ClientError)."""
        extra = {"ExpressionAttributeValues": values} if values else {}
        if lock is None or not lock.token:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression=cond, **extra)
            if release and lock is not None:
                self.release(lock)
            return
        fence = {"TableName": self.table, "Key": self._lock_key(lock.stage), **self._fence(lock)}
        try:
            self.client.transact_write_items(TransactItems=[
                {"Delete" if release else "ConditionCheck": fence},
                {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": cond, **extra}}])
        except Exception as e:
            reasons = _cancel_reasons(e)
            if reasons is None:
                raise
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise self._fence_lost(lock) from None
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise _RecordCondition() from None
            if not reasons and not self._holds(lock):  # a backend without reasons: look
                raise self._fence_lost(lock) from None
            if not reasons:
                raise _RecordCondition() from None
            raise

    def _holds(self, lock: Lock) -> bool:
        try:
            held = self.current_lock(lock.stage)
        except CorruptItem:
            return False
        return held is not None and held.token == lock.token

    def _fence_lost(self, lock: Lock) -> FenceLost:
        return FenceLost(f"lost the lock on stage {lock.stage} (deploy {lock.deploy_id}): another process holds it "
                         "now", f"it was taken over (e.g. by `pt recover`); check `pt status --stage {lock.stage}`")

    def put_record(self, kind: str, stage: str, data: dict, *, actor: dict | None = None,
                   state: str | None = None, reason: str | None = None, record_id: str | None = None,
                   lock: Lock | None = None, then: tuple[str, ...] = ()) -> Record:
        """`then`: states entered right after `state`, recorded in the same write (one request
        instead of a put and a transition per state); the record ends in the last one."""
        now = self.clock()
        rid = record_id or new_id(now)
        trans = tuple({"state": s, "at": iso(now), "ts": now, "reason": reason if s == state else None,
                       "actor": (actor or {}).get("name")} for s in (state, *then)) if state else ()
        rec = Record(rid, stage, kind, trans[-1]["state"] if trans else state, now, now, actor or {}, reason,
                     dict(data), trans)
        try:
            self._put(self._item(rec), "attribute_not_exists(sk)", None, lock)
        except Exception as e:
            if _conditional_failed(e) or isinstance(e, _RecordCondition):
                stored = self.get(stage, rid)
                if stored is not None and stored.created == rec.created:  # our own write, retried
                    return stored
                raise LedgerConflict(f"ledger record {rid} already exists in stage {stage}") from None
            raise
        return rec

    def get(self, stage: str, record_id: str) -> Record | None:
        resp = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key={PK: {"S": stage}, SK: {"S": RECORD_PREFIX + record_id}})
        return self._record(resp["Item"]) if "Item" in resp else None

    def query(self, stage: str, kind: str | None = None, *, state: str | None = None, limit: int | None = None,
              where: Callable[[Record], bool] | None = None,
              on_corrupt: Callable[[CorruptItem], None] | None = None) -> list[Record]:
        """A stage's records newest first, optionally of one kind/state, up to `limit`.

        A damaged item raises CorruptItem, unless `on_corrupt` is given: then it is called with
        the error and the item is skipped (for listings such as history and status)."""
        out: list[Record] = []
        kw: dict[str, Any] = {"TableName": self.table, "ScanIndexForward": False, "ConsistentRead": True,
                              "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                              "ExpressionAttributeValues": {":pk": {"S": stage}, ":p": {"S": RECORD_PREFIX}}}
        filters = []
        if kind is not None:
            filters.append("kind = :k")
            kw["ExpressionAttributeValues"][":k"] = {"S": kind}
        if state is not None:
            filters.append("#st = :s")
            kw["ExpressionAttributeNames"] = {"#st": "state"}
            kw["ExpressionAttributeValues"][":s"] = {"S": state}
        if filters:
            kw["FilterExpression"] = " AND ".join(filters)
        while True:
            resp = self.client.query(**kw)
            for item in resp.get("Items", []):
                try:
                    rec = self._record(item)
                except CorruptItem as e:
                    if on_corrupt is None:
                        raise
                    on_corrupt(e)
                    continue
                if where is None or where(rec):
                    out.append(rec)
                    if limit is not None and len(out) >= limit:
                        return out
            if "LastEvaluatedKey" not in resp:
                return out
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def page(self, stage: str, kind: str | None = None, *, limit: int = 20, before: str | None = None,
             on_corrupt: Callable[[CorruptItem], None] | None = None) -> tuple[list[Record], str | None]:
        """One page of a stage's records, newest first: (records, cursor for the next page or None).

        Each Query asks DynamoDB for about one page of items (`Limit`), so the first page of a
        10,000-record stage reads ~`limit` items, not the whole 1 MB a bare Query returns.
        `before` is the id of the last record of the previous page (the cursor returned).
        A damaged item raises CorruptItem, unless `on_corrupt` is given (called, then skipped).
        """
        limit = max(1, limit)
        kw: dict[str, Any] = {"TableName": self.table, "ScanIndexForward": False, "ConsistentRead": True,
                              "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                              "ExpressionAttributeValues": {":pk": {"S": stage}, ":p": {"S": RECORD_PREFIX}}}
        if kind is not None:
            kw["FilterExpression"] = "kind = :k"
            kw["ExpressionAttributeValues"][":k"] = {"S": kind}
        if before:
            kw["ExclusiveStartKey"] = {PK: {"S": stage}, SK: {"S": RECORD_PREFIX + before}}
        out: list[Record] = []
        batch = limit + 1  # one more than asked: tells whether a next page exists without another call
        for _ in range(10_000):  # bounded: a filter may skip many items
            resp = self.client.query(**kw, Limit=batch)
            for item in resp.get("Items", []):
                if len(out) == limit:
                    return out, out[-1].id
                try:
                    out.append(self._record(item))
                except CorruptItem as e:
                    if on_corrupt is None:
                        raise
                    on_corrupt(e)
            if "LastEvaluatedKey" not in resp:
                return out, None
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            batch = min(max(batch * 2, 25), 1000)  # a selective filter: fewer round trips
        return out, (out[-1].id if out else None)

    def _rewrite(self, old: Record, new: Record, lock: Lock | None = None, release: bool = False) -> Record:
        cond = "attribute_exists(sk) AND updated = :u"
        try:
            self._put(self._item(new), cond, {":u": {"N": repr(old.updated)}}, lock, release)
        except Exception as e:
            if _conditional_failed(e) or isinstance(e, _RecordCondition):
                stored = self.get(new.stage, new.id)
                if stored is not None and self._item(stored) == self._item(new):  # our own write, retried
                    return stored
                raise LedgerConflict(f"ledger record {old.id} changed concurrently",
                                     "another pt process is acting on this stage") from None
            raise
        return new

    def _amend(self, stage: str, record_id: str, change: Callable[[Record], Record], *,
               current: Record | None, expected: str | None, lock: Lock | None, release: bool = False) -> Record:
        """Read (or take `current`), apply `change`, write conditionally; when only someone else's
        events were appended in between (the state is unchanged), re-read and apply again."""
        old = current if current is not None and current.id == record_id else self.get(stage, record_id)
        for attempt in range(TXN_RETRIES):
            if old is None:
                raise NotFoundError(f"ledger record {record_id} not found in stage {stage}")
            if expected is not None and old.state != expected:
                raise LedgerConflict(f"ledger record {record_id} is {old.state}, expected {expected}")
            try:
                return self._rewrite(old, change(old), lock, release)
            except FenceLost:
                raise
            except LedgerConflict:
                fresh = self.get(stage, record_id)
                if attempt == TXN_RETRIES - 1 or fresh is None or fresh.state != old.state:
                    raise
                old = fresh
        raise AssertionError("unreachable")

    def transition(self, stage: str, record_id: str, state: str, *, reason: str | None = None,
                   actor: dict | None = None, data: dict | None = None, expected: str | None = None,
                   current: Record | None = None, lock: Lock | None = None,
                   via: tuple[str | tuple[str, float], ...] = (), release: bool = False) -> Record:
        """`current`: the caller's copy of the record (saves a read; the write still checks it).
        `lock`: the caller's lock; the write happens only while it still holds it (fence).
        `via`: states passed through on the way, recorded (without reason) in the same write; a
        (state, ts) pair keeps the time it was entered.
        `release`: the lock is deleted in the same transaction (the deploy's last write)."""
        def change(old: Record) -> Record:
            who = (actor or {}).get("name") if actor else None
            prev, passed = old.updated, []
            for v in via:  # each at its own time, never before the record's last write
                state_, ts = (v, self.clock()) if isinstance(v, str) else v
                prev = max(ts, prev + 1e-6)
                passed.append({"state": state_, "at": iso(prev), "ts": prev, "reason": None, "actor": who})
            now = max(self.clock(), prev + 1e-6)
            entry = {"state": state, "at": iso(now), "ts": now, "reason": reason, "actor": who}
            # scalar data (e.g. the traffic percent of a step) is kept on the transition too
            entry.update({k: v for k, v in (data or {}).items()
                          if isinstance(v, int | float | str | bool) and k not in entry})
            return Record(old.id, stage, old.kind, state, old.created, now, old.actor,
                          reason if reason is not None else old.reason, {**old.data, **(data or {})},
                          (*old.transitions, *passed, entry))

        return self._amend(stage, record_id, change, current=current, expected=expected, lock=lock,
                           release=release)

    def append_event(self, stage: str, record_id: str, event: str, *, actor: dict | None = None,
                     reason: str | None = None, data: dict | None = None, lock: Lock | None = None) -> Record:
        def change(old: Record) -> Record:
            now = max(self.clock(), old.updated + 1e-6)
            entry = {"event": event, "at": iso(now), "ts": now, "reason": reason,
                     "actor": (actor or {}).get("name") if actor else None}
            return Record(old.id, stage, old.kind, old.state, old.created, now, old.actor, old.reason,
                          {**old.data, **(data or {})}, (*old.transitions, entry))

        return self._amend(stage, record_id, change, current=None, expected=None, lock=lock)

    def last_succeeded(self, stage: str, operations: tuple[str, ...] = ("deploy",)) -> Record | None:
        recs = self.query(stage, DEPLOY, state="succeeded", limit=1,
                          where=lambda r: r.data.get("operation", "deploy") in operations
                          and not r.data.get("rolled_back_by"))
        return recs[0] if recs else None

    def unfinished(self, stage: str) -> Record | None:
        for rec in self.query(stage, DEPLOY, limit=20):
            if not rec.final:
                return rec
        return None

    # --- lock -------------------------------------------------------------------------------
    def _raw_lock(self, stage: str) -> dict | None:
        resp = self.client.get_item(TableName=self.table, ConsistentRead=True, Key=self._lock_key(stage))
        return resp.get("Item") or None

    def _lock_of(self, stage: str, item: dict) -> Lock:
        missing = [k for k in ("deploy_id", "actor") if _s(item, k) is None]
        missing += [k for k in ("since", "lease_until") if _n(item, k) is None]
        if missing:
            raise self._damaged_lock(stage, "missing or mistyped " + ", ".join(missing))
        try:
            actor = json.loads(item["actor"]["S"])
        except ValueError as e:
            raise self._damaged_lock(stage, f"actor is not JSON ({e})") from None
        if not isinstance(actor, dict):
            raise self._damaged_lock(stage, "actor is not a JSON object")
        if "token" in item and _s(item, "token") is None:
            raise self._damaged_lock(stage, "token is not a string")
        return Lock(stage, item["deploy_id"]["S"], actor, float(item["since"]["N"]),
                    float(item["lease_until"]["N"]), _s(item, "token") or "")

    def _damaged_lock(self, stage: str, problem: str) -> CorruptItem:
        return CorruptItem(self.table, stage, LOCK_SK, problem,
                           f"if no pt process is running on {stage}, remove it with "
                           f"`pt recover --stage {stage} --force`")

    def current_lock(self, stage: str) -> Lock | None:
        item = self._raw_lock(stage)
        return self._lock_of(stage, item) if item is not None else None

    def remove_damaged_lock(self, stage: str) -> bool:
        """Delete the lock item of `stage` if it is damaged (and still the same item). For `pt recover --force`."""
        item = self._raw_lock(stage)
        if item is None:
            return False
        try:
            self._lock_of(stage, item)
            return False
        except CorruptItem:
            pass
        since = item.get("since")
        kw: dict[str, Any] = ({"ConditionExpression": "since = :s", "ExpressionAttributeValues": {":s": since}}
                              if isinstance(since, dict) and since else
                              {"ConditionExpression": "attribute_not_exists(since)"})
        try:
            self.client.delete_item(TableName=self.table, Key=self._lock_key(stage), **kw)
        except Exception as e:
            if _conditional_failed(e):
                return False
            raise
        return True

    def _lock_item(self, lock: Lock) -> dict:
        item = {PK: {"S": lock.stage}, SK: {"S": LOCK_SK}, "kind": {"S": "lock"},
                "deploy_id": {"S": lock.deploy_id}, "actor": {"S": json.dumps(lock.actor, default=str)},
                "since": {"N": repr(lock.since)}, "lease_until": {"N": repr(lock.lease_until)}}
        if lock.token:
            item["token"] = {"S": lock.token}
        return item

    @staticmethod
    def _fence(lock: Lock) -> dict:
        """The condition that the stored lock is `lock` (its token; a token-less legacy lock by id)."""
        if lock.token:
            return {"ConditionExpression": "#tok = :tok", "ExpressionAttributeNames": {"#tok": "token"},
                    "ExpressionAttributeValues": {":tok": {"S": lock.token}}}
        return {"ConditionExpression": "deploy_id = :d AND attribute_not_exists(#tok)",
                "ExpressionAttributeNames": {"#tok": "token"},
                "ExpressionAttributeValues": {":d": {"S": lock.deploy_id}}}

    def acquire(self, stage: str, deploy_id: str, actor: dict, lease: float | None = None) -> Lock:
        """Take the stage lock (a fresh token), or raise LockedError / RecoveryNeeded.

        Under the lock, the stage's deploy records are read again: one left unfinished by a
        process that died (or a rollback that stopped part-way) sends the caller to `pt recover`."""
        lock = self._acquire(stage, deploy_id, actor, lease_from_env() if lease is None else lease)
        try:
            rec = self.unfinished(stage)
        except BaseException:
            self.release(lock)
            raise
        if rec is not None and rec.id != deploy_id:
            self.release(lock)
            raise RecoveryNeeded(f"{rec.kind} {rec.id} to stage {stage} did not finish (state {rec.state})",
                                 f"run `pt recover --stage {stage}` to roll it back (or forward) first")
        return lock

    def _acquire(self, stage: str, deploy_id: str, actor: dict, lease: float) -> Lock:
        now = self.clock()
        lock = Lock(stage, deploy_id, actor, now, now + lease, secrets.token_hex(16))
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(lock),
                                 ConditionExpression="attribute_not_exists(sk)")
            return lock
        except Exception as e:
            if not _conditional_failed(e):
                raise
        held = self.current_lock(stage)
        if held is None:  # released in between: one more try
            return self._acquire(stage, deploy_id, actor, lease)
        if held.token == lock.token:  # our own put, retried
            return held
        if held.lease_until > now:
            raise LockedError(held.describe(),
                              f"wait for it to finish (`pt status --stage {stage}`); lease until "
                              f"{iso(held.lease_until)}")
        rec = self.get(stage, held.deploy_id)
        if rec is not None and not rec.final:
            command = "pt zoo recover" if rec.kind == "zoo" else "pt recover"
            raise RecoveryNeeded(f"{rec.kind} {held.deploy_id} to stage {stage} died mid-way (state {rec.state}, "
                                 f"lease expired {iso(held.lease_until)})",
                                 f"run `{command} --stage {stage}` to roll it back (or forward) first")
        return self._swap(held, lock)

    def _swap(self, held: Lock, lock: Lock) -> Lock:
        cond = (self._fence(held) if held.token else
                {"ConditionExpression": "deploy_id = :d AND lease_until = :l",
                 "ExpressionAttributeValues": {":d": {"S": held.deploy_id}, ":l": {"N": repr(held.lease_until)}}})
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(lock), **cond)
        except Exception as e:
            if _conditional_failed(e):
                now_held = self.current_lock(lock.stage) or held
                raise LockedError(now_held.describe(), "another pt process took the lock first") from None
            raise
        return lock

    def take_over(self, stage: str, deploy_id: str, actor: dict, lease: float | None = None, *,
                  force: bool = False) -> Lock:
        """For `pt recover`: take a stale lock (or a live one with force) or a free one. The new
        lock has a new token, so a late renew/release/write of the old holder fails."""
        lease = lease_from_env() if lease is None else lease
        now = self.clock()
        lock = Lock(stage, deploy_id, actor, now, now + lease, secrets.token_hex(16))
        held = self.current_lock(stage)
        if held is None:
            return self._acquire(stage, deploy_id, actor, lease)
        if held.lease_until > now and not force:
            raise LockedError(held.describe() + f"; its lease runs until {iso(held.lease_until)}",
                              "if that process is really gone, wait for the lease to expire or pass --force")
        return self._swap(held, lock)

    def renew(self, lock: Lock, lease: float | None = None) -> Lock:
        lease = lease_from_env() if lease is None else lease
        new = Lock(lock.stage, lock.deploy_id, lock.actor, lock.since, self.clock() + lease, lock.token)
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(new), **self._fence(lock))
        except Exception as e:
            if _conditional_failed(e):
                raise self._fence_lost(lock) from None
            raise
        return new

    def release(self, lock: Lock) -> None:
        """Delete the lock if it is still ours (by token); a lock taken over is left alone."""
        try:
            self.client.delete_item(TableName=self.table, Key=self._lock_key(lock.stage), **self._fence(lock))
        except Exception as e:
            if not _conditional_failed(e):
                raise


class _RecordCondition(Exception):
    """The record's own condition failed inside a fenced transaction (the fence held)."""
