"""`pt audit export`: every ledger record, of every kind, in one stable schema (docs/records.md).

Schema 1 (one row per ledger record; field order is the CSV column order):
  schema, id, stage, kind, state, created, updated, actor, actor_arn, declared, author, git_sha,
  ci, run_url, reason, digest, events, data
`events` is the record's list of transitions/events, `data` its kind-specific body (both JSON
in CSV). New fields may be added at the end; a change to an existing field bumps `schema`.

Reads page through DynamoDB directly (one Query per page, `sk` bounded by the time-ordered record
id so `--since` costs no full read); an item that cannot be decoded is skipped with a warning,
never silently and never fatally.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_tools.core.output import markdown_table
from pipeline_tools.release.ledger import RECORD_PREFIX, CorruptItem, Ledger, Record, iso

SCHEMA = 1
FIELDS = ("schema", "id", "stage", "kind", "state", "created", "updated", "actor", "actor_arn", "declared",
          "author", "git_sha", "ci", "run_url", "reason", "digest", "events", "data")
FORMATS = ("jsonl", "csv", "md")


@dataclass
class Export:
    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per damaged item
    pages: int = 0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["kind"]] = out.get(r["kind"], 0) + 1
        return dict(sorted(out.items()))


def id_floor(ts: float) -> str:
    """The smallest record id created at or after `ts` (ids start with their UTC time)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{int(dt.microsecond / 1000):03d}"


def row(rec: Record) -> dict:
    a = rec.actor or {}
    return {"schema": SCHEMA, "id": rec.id, "stage": rec.stage, "kind": rec.kind, "state": rec.state,
            "created": iso(rec.created), "updated": iso(rec.updated), "actor": a.get("name"),
            "actor_arn": a.get("arn"), "declared": a.get("declared"), "author": a.get("author"),
            "git_sha": a.get("git_sha"), "ci": a.get("ci"), "run_url": a.get("run_url"), "reason": rec.reason,
            "digest": rec.data.get("digest"),
            "events": [{k: v for k, v in t.items() if k != "ts"} for t in rec.transitions],
            "data": rec.data}


def iter_items(client: Any, table: str, stage: str, *, since: float | None = None,
               page_size: int | None = None, on_page: Callable[[], None] | None = None) -> Iterator[dict]:
    """Raw ledger record items of one stage, oldest first, page by page."""
    values: dict[str, Any] = {":pk": {"S": stage}}
    if since is None:
        cond = "pk = :pk AND begins_with(sk, :p)"
        values[":p"] = {"S": RECORD_PREFIX}
    else:
        cond = "pk = :pk AND sk BETWEEN :lo AND :hi"
        values[":lo"] = {"S": RECORD_PREFIX + id_floor(since)}
        values[":hi"] = {"S": RECORD_PREFIX + "\uffff"}
    kw: dict[str, Any] = {"TableName": table, "ScanIndexForward": True, "ConsistentRead": True,
                          "KeyConditionExpression": cond, "ExpressionAttributeValues": values}
    if page_size:
        kw["Limit"] = page_size
    while True:
        resp = client.query(**kw)
        if on_page:
            on_page()
        yield from resp.get("Items", [])
        if "LastEvaluatedKey" not in resp:
            return
        kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def _decode(ledger: Ledger, item: dict) -> Record:
    """The item as a Record (the ledger validates it: CorruptItem names the key and the problem)."""
    rec = ledger.decode(item)
    for t in rec.transitions:
        if not isinstance(t, dict):
            raise CorruptItem(ledger.table, rec.stage, f"R#{rec.id}", "a transition is not an object")
    return rec


def collect(client: Any, table: str, stages: Sequence[str], *, since: float | None = None,
            kinds: Iterable[str] = (), page_size: int | None = None) -> Export:
    """Every record of `stages` (oldest first per stage, stages in the given order)."""
    want = set(kinds)
    exp = Export()
    ledger = Ledger(client, table)

    def page() -> None:
        exp.pages += 1

    for stage in stages:
        for item in iter_items(client, table, stage, since=since, page_size=page_size, on_page=page):
            try:
                rec = _decode(ledger, item)
            except CorruptItem as e:
                exp.skipped.append(f"{e.message}: skipped")
                continue
            if since is not None and rec.created < since:
                continue
            if want and rec.kind not in want:
                continue
            exp.rows.append(row(rec))
    return exp


def render(rows: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, sort_keys=False, default=str, separators=(",", ":")) + "\n" for r in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(FIELDS)
        for r in rows:
            w.writerow([json.dumps(r[f], sort_keys=True, default=str) if f in ("events", "data")
                        else ("" if r[f] is None else r[f]) for f in FIELDS])
        return buf.getvalue()
    if fmt == "md":
        cols = ("created", "stage", "kind", "id", "state", "actor", "author", "digest", "reason")
        lines = [f"# Ledger audit export (schema {SCHEMA})", "", f"{len(rows)} record(s).", ""]
        lines.append(markdown_table([[r[c] for c in cols] for r in rows], cols))
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt}")
