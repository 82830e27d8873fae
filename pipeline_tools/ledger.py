"""The ledger: deployment (and other) records plus the per-stage lock, in one DynamoDB table.

Table `<project>-ledger` (`cfg.ledger_table()`), on-demand, keys (the CDK stack must match):
  partition key `pk` (S) = stage name, sort key `sk` (S) = `R#<record id>` or `LOCK`.
Record ids are time-ordered (`20261127T222226123Z-1a2b3c`), so a stage's records sort by time.
Each record item: pk, sk, id, kind, state, created (N), updated (N), body (S, JSON of the rest).

Public API
- `new_id(now) -> str`: a time-ordered record id.
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
    lease, *, force=False) -> Lock` (for `pt recover`).
- `Record` (frozen): id, stage, kind, state, created, updated, actor, reason, data, transitions;
  `.final`, `.digest`, `.to_dict()`. `Lock` (frozen): stage, deploy_id, actor, since, lease_until.
- Deploy states: `DEPLOY_STATES`; final ones: `FINAL_STATES`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import names
from .errors import LockedError, NotFoundError, PtError

PK = "pk"
SK = "sk"
LOCK_SK = "LOCK"
RECORD_PREFIX = "R#"
DEPLOY = "deploy"
DEPLOY_STATES = ("locked", "updating", "shifting", "baking", "rolling_back", "finishing",
                 "succeeded", "rolled_back", "failed")
FINAL_STATES = frozenset({"succeeded", "rolled_back", "failed"})
DEFAULT_LEASE = float(os.environ.get("PT_LOCK_LEASE", "120"))


class RecoveryNeeded(LockedError):
    """A deploy died mid-way (record not final, lease expired): `pt recover` must run first."""


class LedgerConflict(PtError):
    """A conditional write lost (someone else changed the record or the lock)."""


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

    def describe(self) -> str:
        who = self.actor.get("name") or self.actor.get("arn") or "unknown"
        return f"stage {self.stage} is locked by {who} (deploy {self.deploy_id}, since {iso(self.since)})"


def ensure_table(client: Any, table: str, *, project: str, stage: str, local: bool,
                 sleep: Callable[[float], None] = time.sleep) -> bool:
    """True if the table exists (or was created here, local mode only)."""
    from botocore.exceptions import ClientError

    try:
        client.describe_table(TableName=table)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    if not local:
        raise NotFoundError(f"ledger table {table} does not exist",
                            f"deploy the stack {names.stage_stack(project, stage)} (it creates the ledger), "
                            "e.g. `npx cdk deploy " + names.stage_stack(project, stage) + "`")
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


def _conditional_failed(e: BaseException) -> bool:
    return getattr(e, "response", {}).get("Error", {}).get("Code") == "ConditionalCheckFailedException"


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

    @staticmethod
    def _record(item: dict) -> Record:
        body = json.loads(item["body"]["S"])
        return Record(id=item["id"]["S"], stage=item[PK]["S"], kind=item["kind"]["S"],
                      state=item.get("state", {}).get("S"), created=float(item["created"]["N"]),
                      updated=float(item["updated"]["N"]), actor=body.get("actor") or {},
                      reason=body.get("reason"), data=body.get("data") or {},
                      transitions=tuple(body.get("transitions") or ()))

    def put_record(self, kind: str, stage: str, data: dict, *, actor: dict | None = None,
                   state: str | None = None, reason: str | None = None, record_id: str | None = None) -> Record:
        now = self.clock()
        rid = record_id or new_id(now)
        trans = ({"state": state, "at": iso(now), "ts": now, "reason": reason,
                  "actor": (actor or {}).get("name")},) if state else ()
        rec = Record(rid, stage, kind, state, now, now, actor or {}, reason, dict(data), trans)
        try:
            self.client.put_item(TableName=self.table, Item=self._item(rec),
                                 ConditionExpression="attribute_not_exists(sk)")
        except Exception as e:
            if _conditional_failed(e):
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
              where: Callable[[Record], bool] | None = None) -> list[Record]:
        """A stage's records newest first, optionally of one kind/state, up to `limit`."""
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
                rec = self._record(item)
                if where is None or where(rec):
                    out.append(rec)
                    if limit is not None and len(out) >= limit:
                        return out
            if "LastEvaluatedKey" not in resp:
                return out
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def page(self, stage: str, kind: str | None = None, *, limit: int = 20,
             before: str | None = None) -> tuple[list[Record], str | None]:
        """One page of a stage's records, newest first: (records, cursor for the next page or None).

        Each Query asks DynamoDB for about one page of items (`Limit`), so the first page of a
        10,000-record stage reads ~`limit` items, not the whole 1 MB a bare Query returns.
        `before` is the id of the last record of the previous page (the cursor returned).
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
                out.append(self._record(item))
            if "LastEvaluatedKey" not in resp:
                return out, None
            kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
            batch = min(max(batch * 2, 25), 1000)  # a selective filter: fewer round trips
        return out, (out[-1].id if out else None)

    def _rewrite(self, old: Record, new: Record) -> Record:
        cond = "attribute_exists(sk) AND updated = :u"
        try:
            self.client.put_item(TableName=self.table, Item=self._item(new), ConditionExpression=cond,
                                 ExpressionAttributeValues={":u": {"N": repr(old.updated)}})
        except Exception as e:
            if _conditional_failed(e):
                stored = self.get(new.stage, new.id)
                if stored is not None and stored.updated == new.updated:  # our own write, retried
                    return stored
                raise LedgerConflict(f"ledger record {old.id} changed concurrently",
                                     "another pt process is acting on this stage") from None
            raise
        return new

    def transition(self, stage: str, record_id: str, state: str, *, reason: str | None = None,
                   actor: dict | None = None, data: dict | None = None, expected: str | None = None,
                   current: Record | None = None) -> Record:
        """`current`: the caller's copy of the record (saves a read; the write still checks it)."""
        old = current if current is not None and current.id == record_id else self.get(stage, record_id)
        if old is None:
            raise NotFoundError(f"ledger record {record_id} not found in stage {stage}")
        if expected is not None and old.state != expected:
            raise LedgerConflict(f"ledger record {record_id} is {old.state}, expected {expected}")
        now = max(self.clock(), old.updated + 1e-6)
        entry = {"state": state, "at": iso(now), "ts": now, "reason": reason,
                 "actor": (actor or {}).get("name") if actor else None}
        # scalar data (e.g. the traffic percent of a step) is kept on the transition too
        entry.update({k: v for k, v in (data or {}).items()
                      if isinstance(v, int | float | str | bool) and k not in entry})
        new = Record(old.id, stage, old.kind, state, old.created, now, old.actor,
                     reason if reason is not None else old.reason, {**old.data, **(data or {})},
                     (*old.transitions, entry))
        return self._rewrite(old, new)

    def append_event(self, stage: str, record_id: str, event: str, *, actor: dict | None = None,
                     reason: str | None = None, data: dict | None = None) -> Record:
        old = self.get(stage, record_id)
        if old is None:
            raise NotFoundError(f"ledger record {record_id} not found in stage {stage}")
        now = max(self.clock(), old.updated + 1e-6)
        entry = {"event": event, "at": iso(now), "ts": now, "reason": reason,
                 "actor": (actor or {}).get("name") if actor else None}
        new = Record(old.id, stage, old.kind, old.state, old.created, now, old.actor, old.reason,
                     {**old.data, **(data or {})}, (*old.transitions, entry))
        return self._rewrite(old, new)

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
    def current_lock(self, stage: str) -> Lock | None:
        resp = self.client.get_item(TableName=self.table, ConsistentRead=True,
                                    Key={PK: {"S": stage}, SK: {"S": LOCK_SK}})
        item = resp.get("Item")
        if not item:
            return None
        return Lock(stage, item["deploy_id"]["S"], json.loads(item["actor"]["S"]), float(item["since"]["N"]),
                    float(item["lease_until"]["N"]))

    def _lock_item(self, lock: Lock) -> dict:
        return {PK: {"S": lock.stage}, SK: {"S": LOCK_SK}, "kind": {"S": "lock"},
                "deploy_id": {"S": lock.deploy_id}, "actor": {"S": json.dumps(lock.actor, default=str)},
                "since": {"N": repr(lock.since)}, "lease_until": {"N": repr(lock.lease_until)}}

    def acquire(self, stage: str, deploy_id: str, actor: dict, lease: float = DEFAULT_LEASE) -> Lock:
        """Take the stage lock, or raise LockedError / RecoveryNeeded."""
        now = self.clock()
        lock = Lock(stage, deploy_id, actor, now, now + lease)
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(lock),
                                 ConditionExpression="attribute_not_exists(sk)")
            return lock
        except Exception as e:
            if not _conditional_failed(e):
                raise
        held = self.current_lock(stage)
        if held is None:  # released in between: one more try
            return self.acquire(stage, deploy_id, actor, lease)
        if held.deploy_id == deploy_id and held.since == lock.since:  # our own put, retried
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
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(lock),
                                 ConditionExpression="deploy_id = :d AND lease_until = :l",
                                 ExpressionAttributeValues={":d": {"S": held.deploy_id},
                                                            ":l": {"N": repr(held.lease_until)}})
        except Exception as e:
            if _conditional_failed(e):
                now_held = self.current_lock(lock.stage) or held
                raise LockedError(now_held.describe(), "another pt process took the lock first") from None
            raise
        return lock

    def take_over(self, stage: str, deploy_id: str, actor: dict, lease: float = DEFAULT_LEASE, *,
                  force: bool = False) -> Lock:
        """For `pt recover`: take a stale lock (or a live one with force) or a free one."""
        now = self.clock()
        lock = Lock(stage, deploy_id, actor, now, now + lease)
        held = self.current_lock(stage)
        if held is None:
            return self.acquire(stage, deploy_id, actor, lease)
        if held.lease_until > now and not force:
            raise LockedError(held.describe() + f"; its lease runs until {iso(held.lease_until)}",
                              "if that process is really gone, wait for the lease to expire or pass --force")
        return self._swap(held, lock)

    def renew(self, lock: Lock, lease: float = DEFAULT_LEASE) -> Lock:
        new = Lock(lock.stage, lock.deploy_id, lock.actor, lock.since, self.clock() + lease)
        try:
            self.client.put_item(TableName=self.table, Item=self._lock_item(new),
                                 ConditionExpression="deploy_id = :d",
                                 ExpressionAttributeValues={":d": {"S": lock.deploy_id}})
        except Exception as e:
            if _conditional_failed(e):
                raise LedgerConflict(f"lost the lock on stage {lock.stage} (deploy {lock.deploy_id})",
                                     "another process took it over; check `pt status`") from None
            raise
        return new

    def release(self, lock: Lock) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key={PK: {"S": lock.stage}, SK: {"S": LOCK_SK}},
                                    ConditionExpression="deploy_id = :d",
                                    ExpressionAttributeValues={":d": {"S": lock.deploy_id}})
        except Exception as e:
            if not _conditional_failed(e):
                raise
