"""`pt logs scan` and `pt logs archive`: sensitive identifiers in a stage's logs; logs to S3.

Library functions take their clients (`logs_client`, `s3`) and a `clock`/`sleep`; nothing here
prints. Findings never carry a raw value: only the kind, where, and a redacted excerpt.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.errors import AwsError, NotFoundError, UsageError
from pipeline_tools.ops import detectors

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"


def stage_log_groups(cfg: Config, stage: str, extra: Sequence[str] = ()) -> list[str]:
    """The stage's Lambda log groups (`/aws/lambda/<function name>`) plus any extra groups."""
    groups = [f"/aws/lambda/{cfg.function_name(stage, fn)}" for fn in cfg.functions]
    for g in extra:
        if g not in groups:
            groups.append(g)
    return groups


def parse_since(text: str | None) -> float | None:
    """'24h', '7d', '30m', '90s' (or None) → seconds."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise UsageError(f"--since: expected a duration like 30m, 24h or 7d (got {text!r})")
    seconds = float(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]
    if seconds <= 0:  # a window of no time reads nothing, and nothing read must never look clean
        raise UsageError(f"--since must be longer than 0s (got {text!r}): a window of no time reads no log events",
                         "give a duration like 30m, 24h or 7d")
    return seconds


# --- scan --------------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    source: str            # "cloudwatch" | "file"
    where: str             # group/stream@timestamp, or file:line
    excerpt: str           # redacted
    group: str | None = None
    stream: str | None = None
    timestamp: int | None = None   # epoch millis
    file: str | None = None
    line: int | None = None


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    groups: dict[str, dict] = field(default_factory=dict)   # group -> {status, events[, reason]}
    files: dict[str, dict] = field(default_factory=dict)    # path -> {status, lines, encoding…[, reason]}
    unscanned: list[dict] = field(default_factory=list)     # {source, input, reason}: not (fully) read
    since: float | None = None
    allow_unscanned: bool = False

    @property
    def clean(self) -> bool:
        """Nothing found AND everything read: input that was not read is never called clean."""
        return not self.findings and not self.unscanned

    @property
    def ok(self) -> bool:
        """Exit 0? No findings, and nothing left unread unless --allow-unscanned accepts that."""
        return not self.findings and (not self.unscanned or self.allow_unscanned)

    def not_scanned(self, source: str, what: str, reason: str) -> None:
        self.unscanned.append({"source": source, "input": what, "reason": reason})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict:
        return {
            "clean": self.clean,
            "ok": self.ok,
            "total": len(self.findings),
            "counts": self.counts(),
            "since_seconds": self.since,
            "groups": self.groups,
            "files": self.files,
            "unscanned": self.unscanned,
            "allow_unscanned": self.allow_unscanned,
            "findings": [{k: v for k, v in asdict(f).items() if v is not None} for f in self.findings],
        }


WINDOW = 64 * 1024   # a line longer than this is scanned in overlapping windows of this many characters
OVERLAP = 8 * 1024   # consecutive windows share this much: any match up to this long is found whole
CONTEXT = 256        # characters before a window's first position, so look-behinds still see them


class LineScanner:
    """Feed text in any pieces; get (line, kind, redacted excerpt) for every hit, in order.

    A line is scanned whole when it is at most WINDOW characters; a longer line (or one that
    has no end yet) in windows of WINDOW characters that overlap by OVERLAP: window k answers
    for the hits that start in its first WINDOW - OVERLAP characters, so a match of up to
    OVERLAP characters is always inside the window that answers for it, whatever the line
    length and however the text was cut into pieces. Memory stays about WINDOW characters."""

    def __init__(self, extra: Sequence[detectors.Detector] = (), window: int = WINDOW, overlap: int = OVERLAP,
                 context: int = CONTEXT):
        if not 0 < overlap < window - context:
            raise ValueError("overlap must be positive and smaller than window - context")
        self.extra, self.window, self.overlap, self.context = extra, window, overlap, context
        self.line = 1
        self.buf = ""
        self.done_to = 0   # positions in buf before this were already answered for (buf[:done_to] is context)

    def _scan(self, text: str, lo: int, hi: int | None) -> list[tuple[int, str, str]]:
        hits = [h for h in detectors.find(text, self.extra) if h.start >= lo and (hi is None or h.start < hi)]
        if not hits:
            return []
        excerpt = detectors.redact(text, hits)
        return [(self.line, h.kind, excerpt) for h in hits]

    def feed(self, text: str) -> list[tuple[int, str, str]]:
        out: list[tuple[int, str, str]] = []
        buf = self.buf + text if self.buf else text
        start = 0  # buf[start:] is the current line; buf[start:start + done_to] was answered for
        while True:
            nl = buf.find("\n", start + self.done_to)
            if 0 <= nl - start <= self.window:
                out += self._scan(buf[start:nl], self.done_to, None)
                start, self.done_to = nl + 1, 0
                self.line += 1
                continue
            if nl < 0 and len(buf) - start <= self.window:
                self.buf = buf[start:]
                return out
            # the line goes on past the window: answer for [done_to, window - overlap), keep the rest
            stop = self.window - self.overlap
            out += self._scan(buf[start:start + self.window], self.done_to, stop)
            keep = max(stop - self.context, 0)
            start, self.done_to = start + keep, stop - keep

    def finish(self) -> list[tuple[int, str, str]]:
        out = self._scan(self.buf, self.done_to, None) if len(self.buf) > self.done_to else []
        self.buf, self.done_to = "", 0
        return out


def scan_text(lines: Iterable[str], extra: Sequence[detectors.Detector] = ()) -> Iterator[tuple[int, str, str]]:
    """(line number, kind, redacted excerpt) for every hit in `lines` (1-based numbers)."""
    sc = LineScanner(extra)
    for line in lines:
        yield from sc.feed(line.rstrip("\n") + "\n")
    yield from sc.finish()


def iter_log_events(logs_client, group: str, start_ms: int | None, end_ms: int | None = None,
                    page_size: int = 10000) -> Iterator[dict]:
    """Every event of a group (filter_log_events, following nextToken)."""
    kwargs: dict[str, Any] = {"logGroupName": group, "limit": page_size}
    if start_ms is not None:
        kwargs["startTime"] = start_ms
    if end_ms is not None:
        kwargs["endTime"] = end_ms
    token = None
    while True:
        resp = logs_client.filter_log_events(**kwargs, **({"nextToken": token} if token else {}))
        yield from resp.get("events", [])
        new = resp.get("nextToken")
        if not new or new == token:
            return
        token = new


def _code(exc: BaseException) -> str | None:
    from pipeline_tools.core.aws import client_error_code

    return client_error_code(exc)


def scan_groups(logs_client, groups: Sequence[str], since: float | None, clock: Callable[[], float],
                extra: Sequence[detectors.Detector] = (), report: ScanReport | None = None) -> ScanReport:
    """Scan every event of each group. A group that does not exist or cannot be read (part way
    included) is recorded as not scanned, never as clean."""
    from pipeline_tools.core.errors import translate

    report = report or ScanReport(since=since)
    start_ms = int((clock() - since) * 1000) if since else None
    for group in groups:
        events = 0
        try:
            for ev in iter_log_events(logs_client, group, start_ms):
                events += 1
                msg = ev.get("message", "")
                sc = LineScanner(extra)
                ts = int(ev.get("timestamp", 0))
                stream = ev.get("logStreamName", "")
                for _n, kind, excerpt in sc.feed(msg) + sc.finish():
                    report.findings.append(Finding(kind, "cloudwatch", f"{group}/{stream}@{_iso(ts)}", excerpt,
                                                   group=group, stream=stream, timestamp=ts))
        except Exception as e:
            code = _code(e)
            if code is None:
                raise
            if code == "ResourceNotFoundException":
                reason = "log group does not exist"
            else:
                err = translate(e)
                reason = (err.message if err else f"{code}: {e}") + (f" (after {events} events)" if events else "")
            report.groups[group] = {"status": "not scanned", "events": events, "reason": reason}
            report.not_scanned("cloudwatch", group, reason)
            continue
        report.groups[group] = {"status": "scanned", "events": events}
    return report


def _within(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _special(p: Path) -> str:
    import stat

    try:
        mode = p.stat().st_mode
    except OSError as e:
        return f"cannot stat: {e.strerror or e}"
    kind = ("fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file")
    return f"not a regular file ({kind})"


def _iter_files(paths: Sequence[str | os.PathLike]) -> Iterator[tuple[Path, str | None, str | None]]:
    """(file, note, why not scanned). Nothing is skipped silently:

    - a path given explicitly that is a symlink is followed, with a note saying so;
    - inside a directory, a symlink whose target is a file or directory in the same tree is
      scanned there (noted); any other symlink is not followed and is reported as not scanned;
    - special files, unreadable directories and broken links are reported as not scanned."""
    for raw in paths:
        p = Path(raw)
        note = None
        if p.is_symlink():
            target = os.path.realpath(p)
            if not os.path.exists(target):
                yield p, None, f"broken symlink to {os.readlink(p)}"
                continue
            note = f"symlink to {target}, followed (given explicitly)"
        if p.is_dir():
            root_real = os.path.realpath(p)
            if note:
                yield p, note, None
            walk_errors: list[OSError] = []
            for root, dirs, files in os.walk(p, onerror=walk_errors.append):
                dirs.sort()
                for d in list(dirs):
                    full = Path(root) / d
                    if full.is_symlink():
                        target = os.path.realpath(full)
                        if os.path.isdir(target) and _within(target, root_real):
                            yield full, f"symlink to {target}, scanned there", None
                        else:
                            yield full, None, ("symlink to a directory outside the tree, not followed "
                                               "(pass it as --path to scan it)")
                for name in sorted(files):
                    full = Path(root) / name
                    if full.is_symlink():
                        target = os.path.realpath(full)
                        if os.path.isfile(target) and _within(target, root_real):
                            yield full, f"symlink to {target}, scanned there", None
                        elif not os.path.exists(target):
                            yield full, None, f"broken symlink to {os.readlink(full)}"
                        else:
                            yield full, None, ("symlink to a file outside the tree, not followed "
                                               "(pass it as --path to scan it)")
                    elif full.is_file():
                        yield full, None, None
                    else:
                        yield full, None, _special(full)
            for err in walk_errors:
                yield Path(err.filename or p), None, f"cannot list directory: {err.strerror or err}"
        elif p.is_file():
            yield p, note, None
        elif not p.exists() and not p.is_symlink():
            raise UsageError(f"--path {p}: no such file or directory", "pass an existing file or directory")
        else:
            yield p, None, _special(p)


def scan_file(path: Path, extra: Sequence[detectors.Detector] = ()) -> tuple[list[Finding], dict, str | None]:
    """Findings, file info, and why (part of) it was not scanned (None: every byte was read)."""
    from pipeline_tools.ops import logread

    src = logread.open_text(path)
    key = str(path)
    sc = LineScanner(extra)
    found: list[Finding] = []
    try:
        for chunk in src.chunks():
            first = sc.line
            for n, kind, excerpt in sc.feed(chunk):
                found.append(Finding(kind, "file", f"{key}:{n}", excerpt, file=key, line=n))
            if src.utf16_order:  # 8-bit text inside a UTF-16 file reads as CJK-like code units: scan it as bytes too
                for off, view in logread.narrow_views(chunk, src.utf16_order):
                    n = first + chunk.count("\n", 0, off)
                    for piece in view.splitlines():
                        hits = detectors.find(piece, extra)
                        if hits:
                            excerpt = detectors.redact(piece, hits)
                            found += [Finding(h.kind, "file", f"{key}:{n}", f"(8-bit text in a UTF-16 file) {excerpt}",
                                              file=key, line=n) for h in hits]
    except OSError as e:
        return found, src.info(), f"cannot read: {e.strerror or e}"
    for n, kind, excerpt in sc.finish():
        found.append(Finding(kind, "file", f"{key}:{n}", excerpt, file=key, line=n))
    return found, src.info(), src.problem


def scan_paths(paths: Sequence[str | os.PathLike], extra: Sequence[detectors.Detector] = (),
               report: ScanReport | None = None) -> ScanReport:
    report = report or ScanReport()
    for path, note, unread in _iter_files(paths):
        key = str(path)
        if unread:
            report.files[key] = {"status": "not scanned", "lines": 0, "reason": unread}
            report.not_scanned("file", key, unread)
            continue
        if note and note.endswith("scanned there"):
            report.files[key] = {"status": "scanned", "lines": 0, "note": note}
            continue
        if path.is_dir():  # an explicit symlink to a directory: its files follow
            report.files[key] = {"status": "followed", "lines": 0, "note": note}
            continue
        found, info, problem = scan_file(path, extra)
        report.findings += found
        entry = {"status": "not scanned" if problem else "scanned", **info}
        if note:
            entry["note"] = note
        if problem:
            entry["reason"] = problem
            report.not_scanned("file", key, problem)
        report.files[key] = entry
    return report


def scan(cfg: Config, stage: str, *, logs_client=None, since: float | None = 86400.0,
         extra_groups: Sequence[str] = (), paths: Sequence[str] = (), patterns: str | None = None,
         cloudwatch: bool = True, clock: Callable[[], float], allow_unscanned: bool = False) -> ScanReport:
    """Scan the stage's log groups (unless `cloudwatch=False`) and local `paths`."""
    extra = detectors.load_patterns(patterns) if patterns else []
    report = ScanReport(since=since, allow_unscanned=allow_unscanned)
    if cloudwatch:
        scan_groups(logs_client, stage_log_groups(cfg, stage, extra_groups), since, clock, extra, report)
    if paths:
        scan_paths(paths, extra, report)
    return report


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- archive ----------------------------------------------------------------------------------


def parse_s3_url(url: str, what: str = "--to") -> tuple[str, str]:
    from pipeline_tools.core import keys

    return keys.parse_s3_url(url, what)


def _slug(group: str) -> str:
    """A log group name as one key segment (never '.' or '..')."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", group.strip("/")) or "_"
    return "_" + slug if set(slug) == {"."} else slug


def join_key(prefix: str, *parts: str) -> str:
    """prefix/part/… through keys.join: refuses '.', '..' and empty segments."""
    from pipeline_tools.core import keys

    return keys.join(prefix, *parts)


@dataclass
class ArchiveResult:
    bucket: str
    prefix: str
    manifest_key: str
    groups: dict[str, dict]
    new_objects: list[str]
    objects: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def _read_manifest(s3, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:
        if _code(e) in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(body)


def _sha256_object(s3, bucket: str, key: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def check_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as e:
        if _code(e) in ("404", "NoSuchBucket", "NotFound"):
            raise NotFoundError(f"archive bucket s3://{bucket} does not exist",
                                "create it first (aws s3 mb s3://BUCKET) or pass another --to") from None
        if _code(e) in ("403", "AccessDenied", "Forbidden"):
            raise AwsError(f"no access to archive bucket s3://{bucket} (HeadBucket: 403)",
                           "grant s3:ListBucket/s3:PutObject on it to this role", code="AccessDenied") from None
        raise


def _stream_export(logs_client, s3, group: str, bucket: str, key: str, start_ms: int, end_ms: int) -> int:
    """Download the group's events in [start, end) as gzipped NDJSON; one put_object. Returns events.

    The gzip is built in a spooled temporary file, so memory stays bounded for big groups."""
    import tempfile

    n = 0
    with tempfile.SpooledTemporaryFile(max_size=32 << 20) as tmp:
        with gzip.GzipFile(fileobj=tmp, mode="wb", mtime=0) as gz:
            for ev in iter_log_events(logs_client, group, start_ms, end_ms - 1):
                rec = {"timestamp": ev.get("timestamp"), "stream": ev.get("logStreamName"),
                       "message": ev.get("message"), "ingestionTime": ev.get("ingestionTime")}
                gz.write(json.dumps(rec, ensure_ascii=False).encode() + b"\n")
                n += 1
        if n == 0:
            return 0
        tmp.seek(0)
        s3.upload_fileobj(tmp, bucket, key, ExtraArgs={"ContentType": "application/x-ndjson",
                                                       "ContentEncoding": "gzip"})
    return n


def _export_task(logs_client, s3, group: str, bucket: str, prefix: str, start_ms: int, end_ms: int,
                 clock: Callable[[], float], sleep: Callable[[float], None], timeout: float) -> list[str]:
    """create_export_task and wait for it; returns the object keys it wrote (new under `prefix`)."""
    before = set(_list_keys(s3, bucket, prefix + "/"))
    task = logs_client.create_export_task(taskName=f"pt-{_slug(group)}-{start_ms}"[:512], logGroupName=group,
                                          fromTime=start_ms, to=end_ms - 1, destination=bucket,
                                          destinationPrefix=prefix)["taskId"]
    deadline = clock() + timeout
    while True:
        tasks = logs_client.describe_export_tasks(taskId=task).get("exportTasks", [])
        code = tasks[0]["status"]["code"] if tasks else "PENDING"
        if code == "COMPLETED":
            break
        if code in ("FAILED", "CANCELLED"):
            raise AwsError(f"log export task {task} for {group} ended {code}: "
                           f"{tasks[0]['status'].get('message', '')}")
        if clock() > deadline:
            raise AwsError(f"log export task {task} for {group} did not finish in {timeout:.0f}s",
                           "re-run `pt logs archive` later; finished ranges are not exported twice")
        sleep(2.0)
    return sorted(k for k in set(_list_keys(s3, bucket, prefix + "/")) - before
                  if not k.endswith("aws-logs-write-test"))


def _list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


_EXPORT_FALLBACK = {"InvalidParameterException", "LimitExceededException", "OperationAbortedException",
                    "InternalFailure", "ServiceUnavailableException", "InternalServerError", "500"}


def archive(cfg: Config, stage: str, to: str, *, logs_client, s3, since: float | None = None,
            extra_groups: Sequence[str] = (), method: str = "auto", clock: Callable[[], float],
            sleep: Callable[[float], None], export_timeout: float = 900.0,
            dry_run: bool = False, groups: Sequence[str] | None = None) -> ArchiveResult:
    """Export the stage's log groups to s3://bucket/prefix incrementally.

    Idempotent: the manifest records, per group, up to which millisecond it is archived; a
    re-run exports only newer events (nothing new → no new object). The manifest (with SHA-256
    and size of every object) and a `SHA256SUMS` file are written last.
    """
    bucket, prefix = parse_s3_url(to)
    if bucket == cfg.bucket(stage):
        raise UsageError(f"--to s3://{bucket}: that is the stage's own artifacts bucket",
                         "archive to a bucket that outlives the stage")
    if method not in ("auto", "export", "stream"):
        raise UsageError(f"--method must be auto, export or stream (got {method!r})")
    check_bucket(s3, bucket)
    manifest_key = join_key(prefix, MANIFEST)
    manifest = _read_manifest(s3, bucket, manifest_key) or {"version": 1, "stage": stage, "project": cfg.project,
                                                            "groups": {}, "objects": []}
    now_ms = int(clock() * 1000)
    default_start = int((clock() - since) * 1000) if since else 0
    result_groups: dict[str, dict] = {}
    new_objects: list[str] = []
    for group in groups if groups is not None else stage_log_groups(cfg, stage, extra_groups):
        if not _group_exists(logs_client, group):
            result_groups[group] = {"status": "missing"}
            continue
        done = manifest["groups"].get(group, {}).get("archived_to_ms")
        start_ms = max(default_start, done) if done is not None else default_start
        if start_ms >= now_ms:
            result_groups[group] = {"status": "up to date", "archived_to_ms": done}
            continue
        if not _has_events(logs_client, group, start_ms, now_ms):
            result_groups[group] = {"status": "up to date", "archived_to_ms": done}
            continue
        if dry_run:
            result_groups[group] = {"status": "would export", "from_ms": start_ms, "to_ms": now_ms}
            continue
        gprefix = join_key(prefix, "logs", _slug(group))
        keys: list[str] = []
        used = method
        if method in ("auto", "export"):
            try:
                keys = _export_task(logs_client, s3, group, bucket, gprefix, start_ms, now_ms, clock, sleep,
                                    export_timeout)
                used = "export"
            except Exception as e:
                if method == "export" or _code(e) not in _EXPORT_FALLBACK:
                    raise
                used = "stream"
        if used == "stream":
            key = join_key(gprefix, f"{start_ms}-{now_ms}.ndjson.gz")
            if _stream_export(logs_client, s3, group, bucket, key, start_ms, now_ms):
                keys = [key]
        for key in keys:
            digest, size = _sha256_object(s3, bucket, key)
            manifest["objects"] = [o for o in manifest["objects"] if o["key"] != key]
            manifest["objects"].append({"key": key, "sha256": digest, "size": size, "group": group,
                                        "from_ms": start_ms, "to_ms": now_ms, "method": used})
            new_objects.append(key)
        manifest["groups"][group] = {"archived_to_ms": now_ms, "method": used}
        result_groups[group] = {"status": "exported", "from_ms": start_ms, "to_ms": now_ms,
                                "objects": len(keys), "method": used}
    if new_objects and not dry_run:
        manifest["updated_at_ms"] = now_ms
        sums = "".join(f"{o['sha256']}  {o['key'][len(prefix) + 1 if prefix else 0:]}\n"
                       for o in sorted(manifest["objects"], key=lambda o: o["key"]))
        s3.put_object(Bucket=bucket, Key=join_key(prefix, CHECKSUMS), Body=sums.encode(), ContentType="text/plain")
        s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest, indent=2).encode(),
                      ContentType="application/json")
    return ArchiveResult(bucket, prefix, manifest_key, result_groups, new_objects, manifest["objects"])


def _has_events(logs_client, group: str, start_ms: int, end_ms: int) -> bool:
    """Any event in [start, end)? (Export tasks write objects even for empty ranges.)"""
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "endTime": end_ms - 1, "limit": 1}
    token = None
    while True:  # filter_log_events may return an empty page with a nextToken
        resp = logs_client.filter_log_events(**kwargs, **({"nextToken": token} if token else {}))
        if resp.get("events"):
            return True
        new = resp.get("nextToken")
        if not new or new == token:
            return False
        token = new


def _group_exists(logs_client, group: str) -> bool:
    for page in logs_client.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=group):
        if any(g["logGroupName"] == group for g in page.get("logGroups", [])):
            return True
    return False


def verify_archive(s3, bucket: str, prefix: str) -> list[str]:
    """Keys whose content no longer matches the manifest (empty list = all good)."""
    manifest = _read_manifest(s3, bucket, join_key(prefix, MANIFEST)) or {"objects": []}
    bad = []
    for o in manifest["objects"]:
        try:
            digest, _ = _sha256_object(s3, bucket, o["key"])
        except Exception:
            bad.append(o["key"])
            continue
        if digest != o["sha256"]:
            bad.append(o["key"])
    return bad


def gunzip_lines(data: bytes) -> list[str]:
    return gzip.GzipFile(fileobj=io.BytesIO(data)).read().decode("utf-8", "replace").splitlines()
