"""SHA-256 manifests of an artifact tree: walk, hash (streamed, parallel), write, read.

Pure local code (no AWS). The tree rules, documented in docs/artifacts.md:
- paths are relative to the tree root, POSIX separators, sorted;
- `manifest.json` and `SHA256SUMS` at the root are pt's own files and never part of the set;
- a symlink to a regular file inside the tree is followed (hashed under the link's path);
  a symlink to a directory, outside the tree or dangling is skipped with a warning;
- FIFOs, sockets and devices are skipped with a warning;
- a file name that is not valid UTF-8 cannot become an S3 key or a JSON string: it is an
  error (listed with its escaped bytes), never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string  # type: ignore[attr-defined]  # C escaper
from operator import attrgetter, itemgetter
from pathlib import Path

from pipeline_tools.core.errors import PtError, UsageError

MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
RESERVED = frozenset({MANIFEST_NAME, SUMS_NAME})
FORMAT = "pt-artifacts-manifest/1"
BUFSIZE = 1 << 20  # 1 MiB per worker: memory stays bounded whatever the file size

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative POSIX path
    size: int
    sha256: str  # lowercase hex

    def to_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class Manifest:
    files: list[FileEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files.sort(key=lambda e: e.path)

    @property
    def by_path(self) -> dict[str, FileEntry]:
        return {e.path: e for e in self.files}

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.files)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "algorithm": "sha256",
            "files": [e.to_dict() for e in self.files],
            "file_count": len(self.files),
            "total_bytes": self.total_bytes,
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def to_json(self) -> bytes:
        """`json.dumps(to_dict(), indent=1, ensure_ascii=False)` + newline, byte for byte, built per
        entry: with `indent`, json uses its pure-Python encoder (~5 µs and dozens of small strings
        per file: seconds and ~60 MB at 100,000 files); json.dumps(s, ensure_ascii=False) of each
        string builds a new JSONEncoder (~5 µs), so strings go through json's own C escaper."""
        dumps = json.dumps
        string = _json_string  # what json.dumps(s, ensure_ascii=False) returns, without a new encoder per call
        head = dumps({"format": FORMAT, "algorithm": "sha256"}, indent=1, ensure_ascii=False)[:-2]
        parts = [head, ',\n "files": [']
        entries = [f'\n  {{\n   "path": {string(e.path)},\n   "size": {e.size:d},'
                   f'\n   "sha256": {string(e.sha256)}\n  }}' for e in self.files]
        parts.append(",".join(entries))
        parts.append("\n ]," if entries else "],")
        tail = dumps({"file_count": len(self.files), "total_bytes": self.total_bytes,
                      "skipped": [s.to_dict() for s in self.skipped]}, indent=1, ensure_ascii=False)
        parts.append(tail[1:])
        return ("".join(parts) + "\n").encode("utf-8")

    def sha256sums(self) -> bytes:
        """`sha256sum -c` format (binary mode `*`), GNU escaping for `\\` and newlines."""
        lines = []
        for e in self.files:
            name = e.path
            prefix = ""
            if "\\" in name or "\n" in name or "\r" in name:
                prefix = "\\"
                name = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"{prefix}{e.sha256} *{name}\n")
        return "".join(lines).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
            files = [FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"]).lower())
                     for f in doc["files"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PtError(f"{where}: not a pt artifacts manifest ({e})",
                          "re-create it with `pt artifacts manifest` or `pt artifacts push`") from None
        for f in files:
            check_relpath(f.path, where)
            if len(f.sha256) != 64 or any(c not in "0123456789abcdef" for c in f.sha256):
                raise PtError(f"{where}: bad sha256 for {f.path!r}")
        return cls(files=files, skipped=[Skipped(**s) for s in doc.get("skipped", [])])


def check_relpath(path: str, where: str) -> None:
    """A manifest path must stay inside the tree (a hostile manifest must not write ../x)."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in path:
        raise PtError(f"{where}: unsafe path {path!r} in manifest",
                      "manifest paths must be relative, without '..' or empty parts")


def display(name: str) -> str:
    """A path for messages: undecodable bytes shown as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# --- walking the tree ------------------------------------------------------------------------

# A file to hash: (relative path, path to open, size from the walk or -1). Plain tuples: the walk
# makes one per file, so a class instance (~2 µs each) shows at 100,000 files.
_Candidate = tuple[str, str, int]


def walk(root: str | os.PathLike, sizes: bool = True, flush: Callable[[list[_Candidate]], None] | None = None,
         ) -> tuple[list[_Candidate], list[Skipped], list[str]]:
    """Files to hash, things skipped (with reason) and non-UTF-8 names (as displayable text).

    Depth-first, each directory's entries by name, its files before its subdirectories.
    sizes=False: regular files get size -1 (no lstat; the hasher's fstat gives the size).
    flush: called with the growing file list after each directory (hashing starts during the walk).
    """
    if not os.path.isdir(root):
        raise UsageError(f"{root}: not a directory", "pass the artifact directory, e.g. `pt artifacts manifest model/`")
    real_root = os.path.realpath(root)
    files: list[_Candidate] = []
    skipped: list[Skipped] = []
    bad_names: list[str] = []
    append = files.append
    by_name = attrgetter("name")
    stack: list[tuple[str, str]] = [(real_root, "")]  # explicit stack: no recursion limit on deep trees
    while stack:
        dirpath, reldir = stack.pop()
        # scandir: file type from the directory entry (no system call for a regular file), no path joins
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=by_name)
        except OSError as e:
            skipped.append(Skipped(reldir or ".", f"cannot list: {e.strerror}"))
            continue
        subdirs: list[tuple[str, str]] = []
        for ent in entries:
            name = ent.name
            try:
                regular = ent.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            if regular:  # the common case, decided without a system call
                if not name.isascii() and not _utf8(name):
                    bad_names.append(reldir + display(name))
                elif reldir or name not in RESERVED:
                    if not sizes:
                        append((reldir + name, ent.path, -1))
                        continue
                    try:
                        append((reldir + name, ent.path, ent.stat(follow_symlinks=False).st_size))
                        continue
                    except OSError:
                        _other(ent, reldir, real_root, files, skipped, bad_names, subdirs)
                continue
            _other(ent, reldir, real_root, files, skipped, bad_names, subdirs)
        if flush is not None:
            flush(files)
        stack.extend(reversed(subdirs))
    return files, skipped, bad_names


def _other(ent: os.DirEntry, reldir: str, real_root: str, files: list[_Candidate], skipped: list[Skipped],
           bad_names: list[str], subdirs: list[tuple[str, str]]) -> None:
    """A directory entry that is not (or could not be seen as) a plain regular file."""
    name = ent.name
    try:
        is_dir = ent.is_dir()  # follows a symlink, like os.walk's dirnames
    except OSError:
        is_dir = False
    if is_dir:
        if ent.is_symlink():
            skipped.append(Skipped(reldir + display(name), "symlink to a directory (not followed)"))
        elif not _utf8(name):
            bad_names.append(reldir + display(name) + "/")
        else:
            subdirs.append((ent.path, reldir + name + "/"))
        return
    if not _utf8(name):
        bad_names.append(reldir + display(name))
        return
    if reldir == "" and name in RESERVED:
        return
    cand, skip = _classify(ent.path, reldir + name, real_root)
    if cand:
        files.append(cand)
    else:
        skipped.append(skip)  # type: ignore[arg-type]


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogateescape'd bytes from the file system
        return False
    return True


def _classify(full: str, rel: str, real_root: str) -> tuple[_Candidate | None, Skipped | None]:
    try:
        st = os.lstat(full)
    except OSError as e:
        return None, Skipped(rel, f"cannot stat: {e.strerror}")
    if stat.S_ISLNK(st.st_mode):
        target = os.path.realpath(full)
        if not (target + os.sep).startswith(real_root + os.sep):
            return None, Skipped(rel, "symlink pointing outside the tree (not followed)")
        try:
            st = os.stat(full)
        except OSError:
            return None, Skipped(rel, "dangling symlink")
        if not stat.S_ISREG(st.st_mode):
            return None, Skipped(rel, "symlink to something that is not a regular file")
        return (rel, target, st.st_size), None
    if stat.S_ISREG(st.st_mode):
        return (rel, full, st.st_size), None
    kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
            else "device" if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode) else "special file")
    return None, Skipped(rel, f"{kind} (not a regular file)")


# --- hashing ---------------------------------------------------------------------------------


def hash_file(path: str | os.PathLike, bufsize: int = BUFSIZE, buf: bytearray | None = None) -> tuple[str, int]:
    """(sha256 hex, size) streamed through one reusable buffer; hashlib drops the GIL."""
    h = hashlib.sha256()
    buf = buf if buf is not None else bytearray(bufsize)
    view = memoryview(buf)
    size = 0
    # O_NONBLOCK: if a regular file was swapped for a FIFO after the walk, do not hang on open.
    fd = os.open(path, _OPEN_FLAGS)
    with open(fd, "rb", buffering=0) as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PtError(f"{path}: no longer a regular file")
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


SMALL_FILE = 256 << 10  # up to this size a file is read with one read() (no buffer, no file object)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def hash_small(path: str, expected: int, _open=os.open, _fstat=os.fstat, _read=os.read, _close=os.close,
               _isreg=stat.S_ISREG, _sha256=hashlib.sha256) -> tuple[str, int]:
    """hash_file for a file the walk saw as small (or did not stat: expected -1): one
    open/fstat/read/close, and reads on to the end if it is or grew bigger (or a read came
    back short). The defaults bind the calls once: this runs once per file."""
    fd = _open(path, _OPEN_FLAGS)
    try:
        st = _fstat(fd)
        if not _isreg(st.st_mode):
            raise PtError(f"{path}: no longer a regular file")
        now = st.st_size
        if expected < 0:
            expected = now if now < SMALL_FILE else SMALL_FILE
        data = _read(fd, expected + 1)
        h = _sha256(data)
        size = len(data)
        if size > expected or size < now:  # grew since the walk, or a short read: read on to the end
            while chunk := _read(fd, BUFSIZE):
                h.update(chunk)
                size += len(chunk)
        return h.hexdigest(), size
    finally:
        _close(fd)


def _batches(files: list[_Candidate], max_files: int = 64, max_bytes: int = 8 << 20) -> list[list[_Candidate]]:
    """Group small files so a task is worth its overhead; big files go alone."""
    out: list[list[_Candidate]] = []
    cur: list[_Candidate] = []
    cur_bytes = 0
    for c in files:
        if cur and (len(cur) >= max_files or cur_bytes + c[2] > max_bytes):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(c)
        cur_bytes += c[2]
    if cur:
        out.append(cur)
    return out


def default_workers() -> int:
    return min(32, (os.cpu_count() or 2) * 2)


def _hash_rows(cands: list[_Candidate]) -> list[tuple[str, int, str]]:
    """(path, size, sha256) for each candidate; plain tuples (a process-pool task returns them
    as they are: cheap to pickle)."""
    done = []
    append = done.append
    buf = None
    for rel, path, size in cands:
        try:
            if size <= SMALL_FILE:
                digest, size = hash_small(path, size)
            else:
                if buf is None:
                    buf = bytearray(BUFSIZE)
                digest, size = hash_file(path, buf=buf)
        except OSError as e:
            raise PtError(f"cannot read {rel}: {e.strerror}", "check file permissions") from None
        append((rel, size, digest))
    return done


def _hash_batch(cands: list[_Candidate]) -> list[FileEntry]:
    return _entries(_hash_rows(cands))


def _entries(rows: list[tuple[str, int, str]]) -> list[FileEntry]:
    """FileEntry objects for (path, size, sha256) rows, without the frozen dataclass __init__
    (object.__setattr__ per field, ~2 µs an entry): the same fields, equality and hash."""
    new = object.__new__
    out = []
    append = out.append
    for path, size, digest in rows:
        e = new(FileEntry)
        d = e.__dict__
        d["path"] = path
        d["size"] = size
        d["sha256"] = digest
        append(e)
    return out


def build(root: str | os.PathLike, *, workers: int | None = None, jobs: int | None = None,
          progress: Progress | None = None, warn: Callable[[str], None] | None = None,
          clock: Callable[[], float] | None = None) -> Manifest:
    """Hash every file under root; raise on non-UTF-8 names.

    `workers`: threads (hashlib drops the GIL on big buffers: scales for big files).
    `jobs`: processes (small files are bound by per-file interpreter work, which threads share
    one core for); jobs=1 hashes in this thread without a pool.
    """
    import time

    clock = clock or time.monotonic
    if jobs and jobs > 1:
        return _build_in_processes(root, jobs, progress, warn, clock)
    files, skipped, bad = walk(root, sizes=not jobs)  # jobs: the hasher's fstat gives the size
    _check_walk(root, skipped, bad, warn)
    total = sum(c[2] for c in files if c[2] > 0)
    ticker = Ticker(progress, clock, "hashed", len(files), total)
    rows: list[tuple[str, int, str]] = []

    def take(done: list[tuple[str, int, str]]) -> None:
        rows.extend(done)
        ticker.add_many(len(done), sum(r[1] for r in done))

    if jobs == 1 or (jobs is None and workers == 1):
        for b in _batches(files):
            take(_hash_rows(b))
    else:
        # Threads pay off for big files only (hashlib drops the GIL per buffer); small files are
        # per-file interpreter work: hash them in this thread while the pool streams the big ones.
        big = [c for c in files if c[2] > SMALL_FILE]
        small = [c for c in files if c[2] <= SMALL_FILE]
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            pending = pool.map(_hash_rows, _batches(big, max_files=1))
            take(_hash_rows(small))
            for done in pending:
                take(done)
    ticker.done()
    return _manifest(rows, skipped)


def _manifest(rows: list[tuple[str, int, str]], skipped: list[Skipped]) -> Manifest:
    rows.sort(key=itemgetter(0))  # Manifest sorts too: already sorted, that pass is linear
    return Manifest(files=_entries(rows), skipped=skipped)


def _check_walk(root, skipped: list[Skipped], bad: list[str], warn: Callable[[str], None] | None) -> None:
    if bad:
        shown = ", ".join(f"'{b}'" for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UsageError(f"{root}: {len(bad)} file name(s) are not valid UTF-8: {shown}",
                         "S3 keys and manifests need UTF-8 names: rename them "
                         "(e.g. `convmv -f latin1 -t utf8 -r --notest DIR`)")
    for s in skipped:
        if warn:
            warn(f"skipped {s.path}: {s.reason}")


PROCESS_BATCH = 512


def _build_in_processes(root, jobs: int, progress: Progress | None, warn: Callable[[str], None] | None,
                        clock: Callable[[], float]) -> Manifest:
    """Hash in `jobs` processes, fed while the walk runs (the walk is serial: overlapping it with
    the hashing is what lets every core work). Same entries, same order as jobs=1."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    # fork is cheap but unsafe while other threads run (push hashes while boto3 loads): spawn then
    ctx = multiprocessing.get_context("spawn" if threading.active_count() > 1 else None)
    futures = []
    sent = 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        def flush(files: list[_Candidate], final: bool = False) -> None:
            nonlocal sent
            while len(files) - sent >= PROCESS_BATCH or (final and sent < len(files)):
                chunk = files[sent:sent + PROCESS_BATCH]
                sent += len(chunk)
                futures.append(pool.submit(_hash_rows, chunk))

        try:
            files, skipped, bad = walk(root, sizes=False, flush=flush)
            _check_walk(root, skipped, bad, warn)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        flush(files, final=True)
        ticker = Ticker(progress, clock, "hashed", len(files), 0)
        rows: list[tuple[str, int, str]] = []
        for fut in futures:
            done = fut.result()
            rows.extend(done)
            ticker.add_many(len(done), sum(r[1] for r in done))
    ticker.done()
    return _manifest(rows, skipped)


def write(manifest: Manifest, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write manifest.json at `out` and SHA256SUMS next to it (atomic renames)."""
    out = Path(out)
    sums = out.with_name(SUMS_NAME)
    for path, data in ((sums, manifest.sha256sums()), (out, manifest.to_json())):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return out, sums


def read(path: str | os.PathLike) -> Manifest:
    p = Path(path)
    try:
        return Manifest.from_json(p.read_bytes(), str(p))
    except FileNotFoundError:
        raise UsageError(f"{p}: no manifest", "create it with `pt artifacts manifest DIR`") from None


class Ticker:
    """Progress lines for long work: at most one per `every` seconds, plus a final one."""

    def __init__(self, sink: Progress | None, clock: Callable[[], float], verb: str, count: int,
                 total_bytes: int, every: float = 2.0):
        self.sink, self.clock, self.verb = sink, clock, verb
        self.count, self.total = count, total_bytes
        self.every = every
        self.n = 0
        self.bytes = 0
        self.start = clock()
        self.last = self.start

    def add(self, nbytes: int) -> None:
        self.n += 1
        self.bytes += nbytes
        now = self.clock()
        if self.sink and now - self.last >= self.every:
            self.last = now
            self.sink(self._line(now))

    def add_many(self, files: int, nbytes: int) -> None:
        self.n += files - 1
        self.add(nbytes)

    def done(self) -> None:
        if self.sink and self.count and self.clock() - self.start >= self.every:
            self.sink(self._line(self.clock()))

    def _line(self, now: float) -> str:
        rate = self.bytes / max(now - self.start, 1e-9)
        of = f"/{human_bytes(self.total)}" if self.total else ""
        return (f"{self.verb} {self.n}/{self.count} files, {human_bytes(self.bytes)}{of}"
                f" ({human_bytes(rate)}/s)")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def iter_chunks(body, size: int = BUFSIZE) -> Iterator[bytes]:
    """Chunks of a botocore StreamingBody (bounded memory)."""
    while chunk := body.read(size):
        yield chunk
