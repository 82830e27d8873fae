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
import re
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
_ID_RE = re.compile(r"\d{8}T\d{9}Z-[0-9a-z]{6,}")


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


# --- `pt history`: every record kind, newest first, one page at a time ----------------------------


def id_ceiling(ts: float) -> str:
    """A sort key just above every record id created at or before `ts`."""
    return id_floor(ts) + "\uffff"


def _short(digest: Any) -> str | None:
    return digest[:19] + "…" if isinstance(digest, str) and len(digest) > 20 else digest


def describe(rec: Record) -> str:
    """One line saying what a record is about, whatever its kind (pure)."""
    d = rec.data
    kind = rec.kind
    target = d.get("target") or d.get("target_kind")
    if kind == "deploy":
        what = d.get("operation", "deploy")
        names = d.get("targets") or [f.get("name") for f in d.get("functions") or [] if isinstance(f, dict)]
        parts = [what, f"[{target}]" if target else None, ", ".join(str(n) for n in names if n) or None,
                 d.get("strategy")]
    elif kind == "gate":
        parts = [f"gate {rec.state or ''}".strip(), f"for {d['deploy_id']}" if d.get("deploy_id") else None,
                 f"[{target}]" if target else None]
    elif kind == "approval":
        parts = [d.get("decision", "approve"), f"by {d['approver']}" if d.get("approver") else None,
                 f"({d['source']})" if d.get("source") not in (None, "pt") else None]
    elif kind == "promotion":
        parts = [f"from {d['source']}" if d.get("source") else None, f"[{target}]" if target else None,
                 f"condition {d['condition']}" if d.get("condition") else None]
    elif kind == "window-override":
        parts = [f"outside {d['window']}" if d.get("window") else "window override"]
    elif kind == "break-glass":
        parts = ["break-glass", f"approvers {', '.join(d['approvers'])}" if d.get("approvers") else None]
    elif kind == "sagemaker":
        parts = [d.get("operation"), d.get("endpoint")]
    elif kind == "zoo":
        parts = [d.get("operation"), f"set {_short(d['set_digest'])}" if d.get("set_digest") else None]
    elif kind == "runbook":
        steps = d.get("steps") or []
        parts = [d.get("name"), f"{len(d.get('results') or {})}/{len(steps)} steps"]
    else:  # artifacts, teardown and whatever later modules write
        parts = [d.get("operation") or d.get("summary") or kind,
                 d.get("destination") or d.get("bucket") or d.get("prefix")]
    return " ".join(str(p) for p in parts if p)


def history_row(rec: Record) -> dict:
    a = rec.actor or {}
    return {"id": rec.id, "kind": rec.kind, "state": rec.state, "created": iso(rec.created),
            "updated": iso(rec.updated), "actor": a.get("name"), "digest": rec.data.get("digest"),
            "target": rec.data.get("target"), "what": describe(rec), "reason": rec.reason}


def history_page(client: Any, table: str, stage: str, *, kinds: Sequence[str] = (), since: float | None = None,
                 until: float | None = None, limit: int = 20, next_token: str | None = None,
                 on_corrupt: Callable[[CorruptItem], None] | None = None,
                 on_page: Callable[[], None] | None = None) -> tuple[list[dict], str | None]:
    """One page of `stage`'s records, newest first: (rows, token of the next page or None).

    A DynamoDB Query on the stage's partition (never a Scan): `since`/`until` bound the sort key
    by the time-ordered record id, `kinds` become a FilterExpression, `Limit` asks for about one
    page. The token is the id of the page's last record (`--next` resumes after it); a token that
    is not a record id is a usage error. Damaged items go to `on_corrupt` and are skipped."""
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.release.ledger import PK, SK

    if next_token is not None and not _ID_RE.fullmatch(next_token):
        raise UsageError(f"--next {next_token!r} is not a page token (a record id like 20261118T110540000Z-1a2b3c)",
                         "pass the `next` value printed with the previous page")
    if since is not None and until is not None and since > until:
        raise UsageError("--since is after --until: the time range is empty", "swap them")
    lo = RECORD_PREFIX + (id_floor(since) if since is not None else "")
    hi = RECORD_PREFIX + (id_ceiling(until) if until is not None else "\uffff")
    values: dict[str, Any] = {":pk": {"S": stage}, ":lo": {"S": lo}, ":hi": {"S": hi}}
    kw: dict[str, Any] = {"TableName": table, "ScanIndexForward": False, "ConsistentRead": True,
                          "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
                          "ExpressionAttributeValues": values}
    want = list(dict.fromkeys(kinds))
    if want:
        keys = [f":k{i}" for i in range(len(want))]
        kw["FilterExpression"] = f"kind IN ({', '.join(keys)})"
        values.update({k: {"S": v} for k, v in zip(keys, want, strict=True)})
    if next_token:
        kw["ExclusiveStartKey"] = {PK: {"S": stage}, SK: {"S": RECORD_PREFIX + next_token}}
    ledger = Ledger(client, table)
    limit = max(1, limit)
    rows: list[dict] = []
    batch = limit + 1  # one more than asked: tells whether a next page exists
    for _ in range(10_000):  # bounded: a selective filter may skip many items
        resp = client.query(**kw, Limit=batch)
        if on_page:
            on_page()
        for item in resp.get("Items", []):
            if len(rows) == limit:
                return rows, rows[-1]["id"]
            try:
                rec = _decode(ledger, item)
            except CorruptItem as e:
                if on_corrupt is None:
                    raise
                on_corrupt(e)
                continue
            rows.append(history_row(rec))
        if "LastEvaluatedKey" not in resp:
            return rows, None
        kw["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        batch = min(max(batch * 2, 25), 1000)
    return rows, (rows[-1]["id"] if rows else None)


def parse_when(text: str | None, now: float, what: str = "--since", *, end_of_day: bool = False) -> float | None:
    """A duration back from now (30d, 12h, 90m) or a UTC date/time (2026-11-01, 2026-11-01T08:00).
    With `end_of_day` a bare date means the end of that day (for --until)."""
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.ops.logs import parse_since as duration

    if not text:
        return None
    try:
        return now - duration(text)  # type: ignore[operator]
    except UsageError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} {text!r} is neither a duration nor a date",
                         f"e.g. {what} 30d, {what} 12h or {what} 2026-11-01") from None
    ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    return ts + 86400 - 0.001 if end_of_day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()) else ts
