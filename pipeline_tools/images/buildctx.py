"""Build contexts: which files docker would send, their content hash, and the tar we send.

One walk decides the file set; the tag hashes exactly that set and the build sends exactly
that set, so a tag can never describe different bytes than the image was built from.
Files are streamed (fixed 1 MiB buffer) for hashing and for the tar: memory stays bounded
whatever the context size.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pipeline_tools.core.errors import UsageError
from pipeline_tools.images.dockerignore import Matcher

CHUNK = 1 << 20
HASH_VERSION = b"pt-context-v1"
Progress = Callable[[int], None]  # bytes processed so far


@dataclass(frozen=True)
class Entry:
    path: str  # relative, slash separated
    kind: str  # "f" file, "d" directory, "l" symlink
    mode: int  # permission bits
    size: int = 0
    link: str = ""


@dataclass
class BuildContext:
    root: Path
    dockerfile: Path
    dockerfile_bytes: bytes
    entries: list[Entry]
    dockerignore: str | None
    dockerfile_in_context: str | None  # relative path when the Dockerfile lives in the context
    total_bytes: int = field(default=0)


def scan(context: str | os.PathLike, dockerfile: str | os.PathLike) -> BuildContext:
    """Walk `context` like the docker CLI does (after .dockerignore); read the Dockerfile."""
    root = Path(context)
    if not root.exists():
        raise UsageError(f"build context {root} does not exist", "fix `context:` of the image in pipeline.yml")
    if not root.is_dir():
        raise UsageError(f"build context {root} is not a directory", "fix `context:` of the image in pipeline.yml")
    df = Path(dockerfile)
    try:
        dockerfile_bytes = df.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"Dockerfile {df} not found", "fix `dockerfile:` of the image in pipeline.yml "
                         "(relative to the config file)") from None
    except IsADirectoryError:
        raise UsageError(f"Dockerfile {df} is a directory", "point `dockerfile:` at the file") from None
    ignore_path = root / ".dockerignore"
    ignore_text = ignore_path.read_text(encoding="utf-8", errors="replace") if ignore_path.is_file() else None
    matcher = Matcher.from_text(ignore_text or "")
    entries = sorted(_walk(root, matcher), key=lambda e: e.path)
    try:
        rel = df.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = None
    return BuildContext(root=root, dockerfile=df, dockerfile_bytes=dockerfile_bytes, entries=entries,
                        dockerignore=ignore_text, dockerfile_in_context=rel,
                        total_bytes=sum(e.size for e in entries))


def git_dirs(ctx: BuildContext) -> list[str]:
    """`.git` directories (or gitdir files of worktrees/submodules) that the context sends to docker
    after .dockerignore: they hold the history and, on CI runners, possibly a token in .git/config."""
    return [e.path for e in ctx.entries if e.path.rsplit("/", 1)[-1] == ".git"]


def _walk(root: Path, matcher: Matcher) -> Iterator[Entry]:
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                items = list(it)
        except PermissionError:
            raise UsageError(f"cannot read {root / rel_dir}: permission denied",
                             "make it readable or add it to .dockerignore") from None
        for de in items:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            st = de.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if matcher.excluded(rel):
                if is_dir and not matcher.can_skip_dir(rel):
                    stack.append(rel)
                continue
            mode = stat.S_IMODE(st.st_mode)
            if is_dir:
                yield Entry(rel, "d", mode)
                stack.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                yield Entry(rel, "l", mode, 0, os.readlink(de.path))
            elif stat.S_ISREG(st.st_mode):
                yield Entry(rel, "f", mode, st.st_size)
            # sockets, fifos, devices: docker skips them too


def content_digest(ctx: BuildContext, progress: Progress | None = None) -> str:
    """sha256 over (kind, path, mode, size, link, bytes) of every entry, in path order.

    mtimes, owners and walk order do not enter; any byte, name or permission change does.
    """
    h = hashlib.sha256(HASH_VERSION + b"\0")
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    for e in ctx.entries:
        h.update(f"{e.kind}\0{e.path}\0{e.mode:o}\0{e.size}\0{e.link}\0".encode("utf-8", "surrogateescape"))
        if e.kind != "f":
            continue
        n_total = 0
        with open(ctx.root / e.path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                h.update(view[:n])
                n_total += n
                done += n
                if progress:
                    progress(done)
        if n_total != e.size:
            raise UsageError(f"{ctx.root / e.path} changed while hashing", "re-run when the files are stable")
    return h.hexdigest()


# --- Dockerfile: FROM references ---------------------------------------------------------------

_ARG_RE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", re.I)
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I)
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _logical_lines(text: str) -> Iterator[str]:
    cur = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not cur:
            continue
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        yield cur + line
        cur = ""
    if cur:
        yield cur


def _expand(word: str, values: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        full = m[0]
        if name in values:
            return values[name]
        dm = re.match(r"\$\{[^:}-]+:?-([^}]*)\}", full)
        return dm[1] if dm else ""

    return _VAR_RE.sub(sub, word)


def base_images(dockerfile_text: str, build_args: Mapping[str, str]) -> list[str]:
    """Images named in FROM lines (global ARGs expanded), excluding earlier stages and scratch."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    out: list[str] = []
    seen_from = False
    for line in _logical_lines(dockerfile_text):
        if not seen_from and (m := _ARG_RE.match(line)):
            args[m[1]] = build_args.get(m[1], _expand(m[2] or "", args))
            continue
        if m := _FROM_RE.match(line):
            seen_from = True
            image = _expand(m[1], args)
            if m[2]:
                stages.add(m[2].lower())
            if image.lower() == "scratch" or image.lower() in stages or image in out:
                continue
            out.append(image)
    return out


def build_tag(content: str, dockerfile_bytes: bytes, build_args: Mapping[str, str], target: str | None,
              platform: str | None, bases: Mapping[str, str]) -> str:
    """The content tag: 32 hex chars of sha256 over every build input."""
    h = hashlib.sha256(b"pt-tag-v1\0")
    h.update(content.encode() + b"\0")
    h.update(hashlib.sha256(dockerfile_bytes).hexdigest().encode() + b"\0")
    for k in sorted(build_args):
        h.update(f"arg\0{k}\0{build_args[k]}\0".encode())
    h.update(f"target\0{target or ''}\0platform\0{platform or ''}\0".encode())
    for name in sorted(bases):
        h.update(f"base\0{name}\0{bases[name]}\0".encode())
    return "pt-" + h.hexdigest()[:32]


# --- the tar sent to the daemon --------------------------------------------------------------------


def write_tar(ctx: BuildContext, out: BinaryIO, progress: Progress | None = None) -> str:
    """Write the context tar (uid/gid 0 like the docker CLI); return the Dockerfile's name in it."""
    done = 0
    ignore_text = ctx.dockerignore
    if ctx.dockerfile_in_context is not None:
        df_name = ctx.dockerfile_in_context
        extra_df = not any(e.path == df_name for e in ctx.entries)  # excluded: send it anyway, like docker
    else:
        # Outside the context: add it under a hidden name and have the daemon drop it again, as the
        # docker CLI does (the daemon removes files that .dockerignore matches after reading them).
        df_name = f".dockerfile.{hashlib.sha256(ctx.dockerfile_bytes).hexdigest()[:12]}"
        extra_df = True
        lines = (ignore_text.rstrip("\n") + "\n") if ignore_text else ".dockerignore\n"
        ignore_text = lines + df_name + "\n"
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for e in ctx.entries:
            if e.path == ".dockerignore" and ignore_text is not None:
                continue
            full = ctx.root / e.path
            info = tarfile.TarInfo(e.path)
            info.mode = e.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = int(os.lstat(full).st_mtime)
            if e.kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = e.link
                tar.addfile(info)
            else:
                info.size = e.size
                with open(full, "rb") as fh:
                    tar.addfile(info, fh)
                done += e.size
                if progress:
                    progress(done)
        if ignore_text is not None:
            _add_bytes(tar, ".dockerignore", ignore_text.encode())
        if extra_df:
            _add_bytes(tar, df_name, ctx.dockerfile_bytes)
    return df_name


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
