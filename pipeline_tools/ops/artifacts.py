"""Content-addressed sync of artifact trees to S3: push, pull, verify, copy.

Remote layout under `s3://<bucket>/<prefix>/`: every file at its relative path (so humans,
vendors and SageMaker see a normal tree), plus `SHA256SUMS` and `manifest.json`, written LAST:
a reader never sees a manifest naming objects that are not there yet.

- push: hash locally, GET the remote manifest once (a missing bucket or a denied read fails
  there: no separate HeadBucket), upload only files whose (sha256, size)
  differ. Small files go up with put_object carrying `ChecksumSHA256` (S3 rejects the body
  if it does not match the manifest hash); big files go multipart through the boto3 transfer
  manager with `ChecksumAlgorithm=SHA256` (S3 verifies every part). Every object carries its
  hash in metadata (`x-amz-meta-pt-sha256`), so a re-run after an interruption finds what is
  already up (one LIST, or HEADs when few files changed) and uploads only the rest.
- verify: per object, the S3 SHA-256 checksum when it is a whole-object one, else (multipart,
  objects written by other tools, `--rehash`) a streamed re-hash of the object.
- pull: streamed download, hashed while writing, renamed into place only when it matches.
- copy: server-side copy to another stage's bucket or any s3://bucket/prefix, checked against
  the manifest, then the manifest last.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_tools.core import keys
from pipeline_tools.core.errors import AwsError, NotFoundError, PtError, UsageError
from pipeline_tools.ops import manifest as mf
from pipeline_tools.ops.manifest import BUFSIZE, FileEntry, Manifest, Progress, Ticker, human_bytes

META_KEY = "pt-sha256"
MULTIPART_THRESHOLD = 64 << 20
MULTIPART_CHUNK = 16 << 20
DEFAULT_WORKERS = 8
HEAD_INSTEAD_OF_LIST = 32  # up to this many candidates, HEAD them; more, LIST the prefix


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str = ""  # normalized: no leading/trailing slash

    @classmethod
    def of(cls, bucket: str, prefix: str | None, what: str = "--prefix") -> Location:
        """Refuses (exit 2) a prefix with '.', '..' or empty segments or a leading '/' (keys.py)."""
        return cls(bucket, keys.prefix(prefix, what))

    def key(self, rel: str) -> str:
        return keys.join(self.prefix, rel, what="manifest path")

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    @property
    def manifest_key(self) -> str:
        return self.key(mf.MANIFEST_NAME)

    @property
    def sums_key(self) -> str:
        return self.key(mf.SUMS_NAME)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_url(url: str, what: str = "S3 URL") -> Location:
    bucket, prefix = keys.parse_s3_url(url, what)
    return Location(bucket, prefix)


def s3_client(factory, workers: int = DEFAULT_WORKERS):
    """An S3 client whose connection pool fits the worker threads (else urllib3 drops sockets)."""
    from botocore.config import Config as BotoConfig

    config = factory.client_config().merge(BotoConfig(max_pool_connections=max(10, workers * 2)))
    kwargs: dict[str, Any] = {"region_name": factory.region or factory.session.region_name, "config": config}
    if factory.endpoint:
        kwargs["endpoint_url"] = factory.endpoint
    return factory.session.client("s3", **kwargs)


def lean_s3_client(factory, workers: int = DEFAULT_WORKERS):
    """`s3_client` without importing boto3 (~0.05-0.1 s of a push process) when the factory is a
    plain one (no assumed role, no session built yet): a botocore client, same credential chain,
    on the factory's lean botocore session (core/aws.py `lean_client`: the ledger record's
    DynamoDB and STS clients share it). It has no managed transfers (`upload_file`, `copy`):
    `upload_one` drives s3transfer itself."""
    from botocore.config import Config as BotoConfig

    from pipeline_tools.core.aws import lean_client

    return lean_client(factory, "s3", BotoConfig(max_pool_connections=max(10, workers * 2)))


# --- small helpers ---------------------------------------------------------------------------


def _code(exc: BaseException) -> str | None:
    resp = getattr(exc, "response", None)
    return resp.get("Error", {}).get("Code") if isinstance(resp, dict) else None


def _is_client_error(exc: BaseException) -> bool:
    return _code(exc) is not None


def b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def check_bucket(s3, loc: Location, stack: str | None = None) -> None:
    """Fail early and clearly: missing bucket names the stack that creates it."""
    try:
        s3.head_bucket(Bucket=loc.bucket)
    except Exception as e:
        code = _code(e)
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise _no_bucket(loc, stack) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise AwsError(f"access denied to bucket {loc.bucket}",
                           "the role needs s3:ListBucket, s3:GetObject and s3:PutObject on it "
                           "(use the stage's deploy role)", code="AccessDenied", operation="HeadBucket") from None
        raise


def _no_bucket(loc: Location, stack: str | None) -> NotFoundError:
    hint = (f"it is created by the stack {stack}: deploy it (`npx cdk deploy {stack}`)"
            if stack else "create the bucket or fix the URL")
    return NotFoundError(f"artifacts bucket {loc.bucket} does not exist", hint)


def get_manifest(s3, loc: Location, stack: str | None = None) -> Manifest | None:
    """The remote manifest (one GET), or None when there is none yet. A missing bucket is the
    same error as check_bucket's (`stack`: the stack that creates it), so a caller may skip
    the HeadBucket: a GET's error names the bucket (`NoSuchBucket`) where a HEAD's cannot."""
    try:
        body = s3.get_object(Bucket=loc.bucket, Key=loc.manifest_key)["Body"].read()
    except Exception as e:
        if _code(e) == "NoSuchBucket":
            raise _no_bucket(loc, stack) from None
        if _code(e) in ("NoSuchKey", "404"):
            return None
        if _code(e) in ("403", "AccessDenied"):
            raise AwsError(f"access denied reading {loc.url}/{mf.MANIFEST_NAME}",
                           "the role needs s3:GetObject (and s3:ListBucket) on the artifacts bucket",
                           code="AccessDenied", operation="GetObject") from None
        raise
    return Manifest.from_json(body, f"{loc.url}/{mf.MANIFEST_NAME}")


def put_manifest(s3, loc: Location, manifest: Manifest) -> None:
    """SHA256SUMS, then manifest.json: the manifest is the commit point of a push."""
    for key, data, ctype in ((loc.sums_key, manifest.sha256sums(), "text/plain; charset=utf-8"),
                             (loc.manifest_key, manifest.to_json(), "application/json")):
        s3.put_object(Bucket=loc.bucket, Key=key, Body=data, ContentType=ctype,
                      ChecksumAlgorithm="SHA256", ChecksumSHA256=hex_to_b64(hashlib.sha256(data).hexdigest()))


def list_keys(s3, loc: Location) -> dict[str, int]:
    """key -> size of every object under the prefix (paginated LIST)."""
    out: dict[str, int] = {}
    prefix = f"{loc.prefix}/" if loc.prefix else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["Size"]
    return out


def run_parallel(items: Iterable[Any], fn: Callable[[Any], Any], workers: int,
                 on_done: Callable[[Any, Any], None] | None = None) -> None:
    """Run fn over items in a pool; on the first failure stop submitting, wait for the calls
    in flight (they complete or fail on their own) and re-raise that failure."""
    items = list(items)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = iter(items)
        running: dict[Future, Any] = {}
        failure: BaseException | None = None
        try:
            for item in it:
                running[pool.submit(fn, item)] = item
                if len(running) >= workers * 2:  # keep the queue short, and stop early on a failure
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    failure = _collect(done, running, on_done, lock)
                    if failure:
                        break
            if failure is None:
                done, _ = wait(list(running))
                failure = _collect(done, running, on_done, lock)
            else:
                done, _ = wait(list(running))
                _collect(done, running, on_done, lock)
        except KeyboardInterrupt:
            for f in running:
                f.cancel()
            raise
    if failure is not None:
        raise failure


def _collect(done, running, on_done, lock) -> BaseException | None:
    failure = None
    for f in done:
        item = running.pop(f)
        exc = f.exception()
        if exc is not None:
            failure = failure or exc
        elif on_done:
            with lock:
                on_done(item, f.result())
    return failure


# --- push ------------------------------------------------------------------------------------


@dataclass
class PushPlan:
    upload: list[FileEntry]
    resumed: list[FileEntry]  # already uploaded by an interrupted run (hash in metadata matches)
    unchanged: list[FileEntry]
    delete: list[str]  # keys
    manifest_changed: bool

    def summary(self) -> dict:
        return {
            "upload": len(self.upload),
            "upload_bytes": sum(e.size for e in self.upload),
            "already_uploaded": len(self.resumed),
            "unchanged": len(self.unchanged),
            "delete": len(self.delete),
        }


def plan_push(s3, loc: Location, local: Manifest, remote: Manifest | None, *, delete: bool,
              workers: int = DEFAULT_WORKERS) -> PushPlan:
    remote_by_path = remote.by_path if remote else {}
    unchanged, candidates = [], []
    for e in local.files:
        r = remote_by_path.get(e.path)
        (unchanged if r is not None and r.sha256 == e.sha256 and r.size == e.size else candidates).append(e)
    resumed = _already_uploaded(s3, loc, candidates, workers)
    done = {e.path for e in resumed}
    upload = [e for e in candidates if e.path not in done]
    to_delete: list[str] = []
    if delete:
        keep = {loc.key(e.path) for e in local.files} | {loc.manifest_key, loc.sums_key}
        to_delete = sorted(k for k in list_keys(s3, loc) if k not in keep)
    changed = remote is None or remote.to_dict()["files"] != local.to_dict()["files"]
    return PushPlan(upload, resumed, unchanged, to_delete, changed)


def _already_uploaded(s3, loc: Location, candidates: list[FileEntry], workers: int) -> list[FileEntry]:
    """Candidates whose object exists with the same size and our hash in its metadata."""
    if not candidates:
        return []
    if len(candidates) > HEAD_INSTEAD_OF_LIST:
        sizes = list_keys(s3, loc)
        candidates = [e for e in candidates if sizes.get(loc.key(e.path)) == e.size]
    found: list[FileEntry] = []

    def head(e: FileEntry) -> bool:
        try:
            h = s3.head_object(Bucket=loc.bucket, Key=loc.key(e.path))
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return h.get("ContentLength") == e.size and h.get("Metadata", {}).get(META_KEY) == e.sha256

    run_parallel(candidates, head, workers, lambda e, ok: found.append(e) if ok else None)
    return found


def upload_one(s3, root: Path, loc: Location, e: FileEntry, *, multipart_threshold: int = MULTIPART_THRESHOLD,
               transfer_config=None) -> None:
    path = root / e.path
    key = loc.key(e.path)
    try:
        if e.size < multipart_threshold:
            with open(path, "rb") as fh:
                s3.put_object(Bucket=loc.bucket, Key=key, Body=fh, ChecksumAlgorithm="SHA256",
                              ChecksumSHA256=hex_to_b64(e.sha256), Metadata={META_KEY: e.sha256})
        else:
            extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {META_KEY: e.sha256}}
            if hasattr(s3, "upload_file"):
                s3.upload_file(str(path), loc.bucket, key, Config=transfer_config, ExtraArgs=extra)
            else:  # a plain botocore client (lean_s3_client): what boto3's upload_file does
                from boto3.s3.transfer import S3Transfer

                with S3Transfer(s3, transfer_config) as transfer:
                    transfer.upload_file(str(path), loc.bucket, key, extra_args=extra)
    except Exception as exc:
        code = _code(exc)
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            raise PtError(f"S3 rejected {key}: its content does not match the hash in the manifest",
                          f"{e.path} changed while pushing; re-run the push") from None
        if code in ("403", "AccessDenied"):
            raise AwsError(f"access denied writing s3://{loc.bucket}/{key}",
                           "the role needs s3:PutObject on the artifacts bucket (use the stage's deploy role)",
                           code="AccessDenied", operation="PutObject") from None
        raise


def transfer_config(multipart_threshold: int, chunk: int = MULTIPART_CHUNK, workers: int = 4):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=max(chunk, 5 << 20),
                          max_concurrency=workers, use_threads=True)


def push(s3, root: str | os.PathLike, loc: Location, *, delete: bool = False, dry_run: bool = False,
         workers: int = DEFAULT_WORKERS, multipart_threshold: int = MULTIPART_THRESHOLD, stack: str | None = None,
         progress: Progress | None = None, warn: Callable[[str], None] | None = None,
         clock: Callable[[], float] = time.monotonic, local: Manifest | Future | None = None) -> dict:
    """`local` may be given (or a Future of it, so the caller can hash while it builds clients)."""
    root = Path(root)
    if delete and not loc.prefix:
        raise UsageError("--delete needs --prefix: at the bucket root it would delete everything else in the bucket",
                         "push the set under a prefix, e.g. --prefix models/iris/v3")
    started = clock()
    own = None
    if local is None:  # hash locally while the bucket check and the manifest GET wait on the network
        own = ThreadPoolExecutor(max_workers=1)
        local = own.submit(mf.build, root, progress=progress, warn=warn, clock=clock)
    try:
        remote = get_manifest(s3, loc, stack)  # and the bucket check: one request, not HeadBucket + GET
    finally:
        if isinstance(local, Future):
            local = local.result()  # a local problem (bad names, unreadable file) wins
        if own:
            own.shutdown()
    assert isinstance(local, Manifest)
    plan = plan_push(s3, loc, local, remote, delete=delete, workers=workers)
    report: dict[str, Any] = {"destination": loc.url, "dry_run": dry_run, **plan.summary(),
                              "files": len(local.files), "bytes": local.total_bytes,
                              "skipped": [s.to_dict() for s in local.skipped]}
    if dry_run:
        report["plan"] = {"upload": [e.path for e in plan.upload], "delete": plan.delete,
                          "write_manifest": plan.manifest_changed or bool(plan.upload or plan.resumed)}
        report["seconds"] = round(clock() - started, 3)
        return report
    ticker = Ticker(progress, clock, "uploaded", len(plan.upload), sum(e.size for e in plan.upload))
    big = any(e.size >= multipart_threshold for e in plan.upload)  # s3transfer only when needed
    tconf = transfer_config(multipart_threshold, workers=min(workers, 8)) if big else None
    uploaded: list[str] = []

    def done(e: FileEntry, _res: Any) -> None:
        uploaded.append(e.path)
        ticker.add(e.size)

    try:
        run_parallel(plan.upload, lambda e: upload_one(s3, root, loc, e, multipart_threshold=multipart_threshold,
                                                       transfer_config=tconf), workers, done)
    except (Exception, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            err: BaseException = PtError(f"push to {loc.url} interrupted", exit_code=130)
        else:
            err = exc if isinstance(exc, PtError) else (_translate(exc) or exc)
        if isinstance(err, PtError):
            err.hint = ((err.hint + "; ") if err.hint else "") + (
                f"push interrupted after {len(uploaded)} of {len(plan.upload)} uploads, manifest not written: "
                "re-run the same command to upload only the rest")
        raise err from None
    ticker.done()
    if plan.manifest_changed or plan.upload or plan.resumed:
        put_manifest(s3, loc, local)
    deleted = _delete_keys(s3, loc.bucket, plan.delete) if plan.delete else []
    report.update(uploaded=len(uploaded), deleted=len(deleted), manifest=f"{loc.url}/{mf.MANIFEST_NAME}",
                  seconds=round(clock() - started, 3))
    return report


def _translate(exc: BaseException) -> PtError | None:
    from pipeline_tools.core.errors import translate

    return translate(exc)


def _delete_keys(s3, bucket: str, keys: list[str]) -> list[str]:
    deleted: list[str] = []
    for i in range(0, len(keys), 1000):
        batch = keys[i:i + 1000]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
        errors = resp.get("Errors", [])
        if errors:
            first = errors[0]
            raise AwsError(f"could not delete {len(errors)} object(s), e.g. {first.get('Key')}: "
                           f"{first.get('Code')}: {first.get('Message')}", code=first.get("Code"),
                           operation="DeleteObjects")
        deleted += batch
    return deleted


# --- verify ----------------------------------------------------------------------------------


def hash_object(s3, bucket: str, key: str, sink=None) -> tuple[str, int]:
    """Stream an object, hashing it (and writing it to `sink` if given); bounded memory."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    size = 0
    try:
        for chunk in mf.iter_chunks(body, BUFSIZE):
            h.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    finally:
        body.close()
    return h.hexdigest(), size


def check_object(s3, loc: Location, e: FileEntry, rehash: bool) -> dict | None:
    """None when the object matches the manifest entry, else a problem record."""
    key = loc.key(e.path)
    try:
        head = s3.head_object(Bucket=loc.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound"):
            return {"path": e.path, "problem": "missing", "expected": e.sha256}
        raise
    if head.get("ContentLength") != e.size:
        return {"path": e.path, "problem": "size", "expected": e.size, "actual": head.get("ContentLength")}
    checksum = head.get("ChecksumSHA256")
    multipart = "-" in str(head.get("ETag", ""))
    if checksum and not multipart and "-" not in checksum and not rehash:
        actual = b64_to_hex(checksum)
        method = "s3-checksum"
    else:
        actual, _ = hash_object(s3, loc.bucket, key)
        method = "rehash"
    if actual != e.sha256:
        return {"path": e.path, "problem": "checksum", "expected": e.sha256, "actual": actual, "method": method}
    return None


def verify(s3, loc: Location, *, rehash: bool = False, workers: int = DEFAULT_WORKERS, stack: str | None = None,
           progress: Progress | None = None, clock: Callable[[], float] = time.monotonic) -> dict:
    started = clock()
    check_bucket(s3, loc, stack)
    remote = get_manifest(s3, loc)
    if remote is None:
        raise NotFoundError(f"no manifest at {loc.url}/{mf.MANIFEST_NAME}",
                            "push the artifacts first (`pt artifacts push DIR --stage S --prefix P`)")
    problems: list[dict] = []
    ticker = Ticker(progress, clock, "verified", len(remote.files), remote.total_bytes)

    def done(e: FileEntry, problem: dict | None) -> None:
        ticker.add(e.size)
        if problem:
            problems.append(problem)

    run_parallel(remote.files, lambda e: check_object(s3, loc, e, rehash), workers, done)
    ticker.done()
    problems.sort(key=lambda p: p["path"])
    return {"location": loc.url, "ok": not problems, "files": len(remote.files), "bytes": remote.total_bytes,
            "problems": problems, "rehash": rehash, "seconds": round(clock() - started, 3)}


def verify_local(root: str | os.PathLike, *, workers: int | None = None, progress: Progress | None = None,
                 warn: Callable[[str], None] | None = None) -> dict:
    """Check a local tree against the manifest.json at its root."""
    root = Path(root)
    expected = mf.read(root / mf.MANIFEST_NAME)
    actual = mf.build(root, workers=workers, progress=progress, warn=warn).by_path
    problems = []
    for e in expected.files:
        a = actual.pop(e.path, None)
        if a is None:
            problems.append({"path": e.path, "problem": "missing", "expected": e.sha256})
        elif a.sha256 != e.sha256 or a.size != e.size:
            problems.append({"path": e.path, "problem": "checksum", "expected": e.sha256, "actual": a.sha256})
    for path in sorted(actual):
        problems.append({"path": path, "problem": "not in manifest", "actual": actual[path].sha256})
    return {"location": str(root), "ok": not problems, "files": len(expected.files), "problems": problems}


# --- pull ------------------------------------------------------------------------------------


def pull(s3, loc: Location, dest: str | os.PathLike, *, dry_run: bool = False, workers: int = DEFAULT_WORKERS,
         stack: str | None = None, progress: Progress | None = None,
         clock: Callable[[], float] = time.monotonic) -> dict:
    """Download the set named by the remote manifest into dest; files already there with the
    right hash are kept; every download is hashed while written and renamed only on a match."""
    started = clock()
    dest = Path(dest)
    check_bucket(s3, loc, stack)
    remote = get_manifest(s3, loc)
    if remote is None:
        raise NotFoundError(f"no manifest at {loc.url}/{mf.MANIFEST_NAME}",
                            "push the artifacts first, or check --stage/--prefix")
    todo, present = [], []
    for e in remote.files:
        target = dest / e.path
        if target.is_file() and not target.is_symlink() and target.stat().st_size == e.size \
                and mf.hash_file(target)[0] == e.sha256:
            present.append(e)
        else:
            todo.append(e)
    report: dict[str, Any] = {"source": loc.url, "destination": str(dest), "dry_run": dry_run,
                              "files": len(remote.files), "download": len(todo),
                              "download_bytes": sum(e.size for e in todo), "unchanged": len(present)}
    if dry_run:
        report["plan"] = {"download": [e.path for e in todo]}
        return report
    problems: list[dict] = []
    ticker = Ticker(progress, clock, "downloaded", len(todo), sum(e.size for e in todo))

    real_dest = os.path.realpath(dest)

    def one(e: FileEntry) -> dict | None:
        target = dest / e.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (os.path.realpath(target.parent) + os.sep).startswith(real_dest + os.sep):
            raise PtError(f"{target}: a symlinked directory leads outside {dest}", "pull into an empty directory")
        part = target.with_name(f".{target.name}.pt-part")
        try:
            with open(part, "wb") as fh:
                digest, size = hash_object(s3, loc.bucket, loc.key(e.path), sink=fh)
        except Exception as exc:
            part.unlink(missing_ok=True)
            if _code(exc) in ("NoSuchKey", "404"):
                return {"path": e.path, "problem": "missing", "expected": e.sha256}
            raise
        if digest != e.sha256 or size != e.size:
            part.unlink(missing_ok=True)
            return {"path": e.path, "problem": "checksum", "expected": e.sha256, "actual": digest}
        if target.is_symlink() or target.is_dir():
            raise PtError(f"{target}: exists and is not a regular file", "move it away and re-run the pull")
        os.replace(part, target)
        return None

    def done(e: FileEntry, problem: dict | None) -> None:
        ticker.add(e.size)
        if problem:
            problems.append(problem)

    run_parallel(todo, one, workers, done)
    ticker.done()
    if not problems:
        mf.write(remote, dest / mf.MANIFEST_NAME)
    problems.sort(key=lambda p: p["path"])
    report.update(ok=not problems, problems=problems, downloaded=len(todo) - len(problems),
                  seconds=round(clock() - started, 3))
    return report


# --- copy ------------------------------------------------------------------------------------


class HashingReader:
    """A file-like view of a streaming body that hashes what is read (for upload_fileobj)."""

    def __init__(self, body):
        self.body, self.h, self.size = body, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.body.read() if n is None or n < 0 else self.body.read(n)
        self.h.update(chunk)
        self.size += len(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def stream_one(src_s3, src: Location, dst_s3, dst: Location, e: FileEntry, *, tconf=None,
               multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
    """Copy one object through this process (GET with the source credentials, PUT with the
    destination's), hashing the bytes on the way: a copy whose bytes differ from the manifest
    is deleted at the destination and reported. Memory: one part (multipart) or one small object."""
    key = dst.key(e.path)
    body = src_s3.get_object(Bucket=src.bucket, Key=src.key(e.path))["Body"]
    try:
        if e.size < multipart_threshold:
            data = body.read()
            actual, size = hashlib.sha256(data).hexdigest(), len(data)
            if actual == e.sha256 and size == e.size:  # S3 checks the body against the hash again
                dst_s3.put_object(Bucket=dst.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                  ChecksumSHA256=hex_to_b64(e.sha256), Metadata={META_KEY: e.sha256})
        else:
            reader = HashingReader(body)
            dst_s3.upload_fileobj(reader, dst.bucket, key, Config=tconf,
                                  ExtraArgs={"ChecksumAlgorithm": "SHA256", "Metadata": {META_KEY: e.sha256}})
            actual, size = reader.hexdigest(), reader.size
            if actual != e.sha256 or size != e.size:
                dst_s3.delete_object(Bucket=dst.bucket, Key=key)
    finally:
        body.close()
    if actual != e.sha256 or size != e.size:
        raise PtError(f"{e.path} read from {src.url} does not match the manifest (sha256 {actual[:12]}…, "
                      f"{size} bytes; expected {e.sha256[:12]}…, {e.size} bytes)",
                      "the source changed during the copy: verify it (`pt artifacts verify`) and re-run")


def copy(src_s3, src: Location, dst_s3, dst: Location, *, dry_run: bool = False, delete: bool = False,
         workers: int = DEFAULT_WORKERS, src_stack: str | None = None, dst_stack: str | None = None,
         progress: Progress | None = None, clock: Callable[[], float] = time.monotonic,
         stream: bool = False) -> dict:
    """Copy a verified set to another bucket/prefix, check every copy against the manifest, then
    write the manifest last. Only objects that differ at the destination move.

    Server-side (CopyObject, one set of credentials reads the source and writes the destination),
    or with `stream` (separate source and destination credentials, e.g. two accounts without a
    bucket policy between them): every object is streamed through this process and hashed on the
    way; after the manifest is written the whole destination is verified against it."""
    started = clock()
    if delete and not dst.prefix:
        raise UsageError("--delete needs a destination prefix: at the bucket root it would delete everything else",
                         "copy to s3://bucket/prefix or pass --to-prefix")
    if src == dst:
        raise UsageError(f"source and destination are the same ({src.url})",
                         "pick another --to-stage, --to or --to-prefix")
    check_bucket(src_s3, src, src_stack)
    check_bucket(dst_s3, dst, dst_stack)
    manifest = get_manifest(src_s3, src)
    if manifest is None:
        raise NotFoundError(f"no manifest at {src.url}/{mf.MANIFEST_NAME}", "push the artifacts to the source first")
    # the set must be intact before it is handed on
    src_report = verify(src_s3, src, workers=workers, progress=progress, clock=clock)
    if not src_report["ok"]:
        shown = ", ".join(f"{p['path']} ({p['problem']})" for p in src_report["problems"][:5])
        raise PtError(f"source {src.url} does not match its manifest: {shown}",
                      "fix the source (re-push) before copying; nothing was copied")
    dest_manifest = get_manifest(dst_s3, dst)
    plan = plan_push(dst_s3, dst, manifest, dest_manifest, delete=delete, workers=workers)
    report: dict[str, Any] = {"source": src.url, "destination": dst.url, "dry_run": dry_run,
                              "files": len(manifest.files), "copy": len(plan.upload),
                              "copy_bytes": sum(e.size for e in plan.upload),
                              "already_there": len(plan.unchanged) + len(plan.resumed), "delete": len(plan.delete)}
    if dry_run:
        report["plan"] = {"copy": [e.path for e in plan.upload], "delete": plan.delete}
        return report
    tconf = transfer_config(MULTIPART_THRESHOLD, workers=4)
    ticker = Ticker(progress, clock, "copied", len(plan.upload), sum(e.size for e in plan.upload))

    def one(e: FileEntry) -> None:
        if stream:
            stream_one(src_s3, src, dst_s3, dst, e, tconf=tconf)
        else:
            extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {META_KEY: e.sha256}, "MetadataDirective": "REPLACE"}
            dst_s3.copy({"Bucket": src.bucket, "Key": src.key(e.path)}, dst.bucket, dst.key(e.path),
                        ExtraArgs=extra, SourceClient=src_s3, Config=tconf)
        problem = check_object(dst_s3, dst, e, rehash=False)
        if problem:
            raise PtError(f"copy of {e.path} to {dst.url} does not match the manifest ({problem['problem']})",
                          "re-run the copy; the destination manifest was not written")

    run_parallel(plan.upload, one, workers, lambda e, _r: ticker.add(e.size))
    ticker.done()
    put_manifest(dst_s3, dst, manifest)
    deleted = _delete_keys(dst_s3, dst.bucket, plan.delete) if plan.delete else []
    report.update(copied=len(plan.upload), deleted=len(deleted), method="stream" if stream else "server-side")
    if stream:  # the destination, as the other account will read it: every object against the manifest
        check = verify(dst_s3, dst, workers=workers, clock=clock)
        report["destination_verified"] = check["ok"]
        if not check["ok"]:
            shown = ", ".join(f"{p['path']} ({p['problem']})" for p in check["problems"][:5])
            raise PtError(f"destination {dst.url} does not match the manifest after the copy: {shown}",
                          "re-run the copy (only the files that differ move)")
    report["seconds"] = round(clock() - started, 3)
    return report


def plan_lines(kind: str, report: dict) -> list[str]:
    """Human lines for a dry-run plan."""
    plan = report.get("plan", {})
    lines = []
    for verb, paths in plan.items():
        if isinstance(paths, list):
            for p in paths[:50]:
                lines.append(f"  {verb} {p}")
            if len(paths) > 50:
                lines.append(f"  … and {len(paths) - 50} more to {verb}")
    return lines


__all__ = ["Location", "copy", "human_bytes", "parse_s3_url", "pull", "push", "verify", "verify_local"]
