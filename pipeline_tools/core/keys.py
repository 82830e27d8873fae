"""The one place S3 keys and prefixes are built from user input (pure: no I/O).

S3 keys are literal strings: `a/../b` is a key with a `..` segment, not `b`. Tools that later
treat keys as paths (`aws s3 sync` to disk, SageMaker, a vendor's downloader) resolve them, so
a prefix with `.`/`..` segments writes outside the tree it names. Every prefix and key pt builds
goes through `prefix()` / `join()` here, which refuse (exit 2, one line) instead of guessing:

- no `.` or `..` segment, no empty segment (`a//b`), no leading `/`;
- one trailing `/` on a prefix is accepted and dropped (`models/v3/` = `models/v3`);
- no control characters (NUL, newline, …) and no backslash (a path separator elsewhere);
- at most 1,024 bytes of UTF-8 (the S3 limit for a whole key).

Invariant (tested with hypothesis): `join(p, *parts)` is `p` + "/" + something that has no
`.`/`..`/empty segment, so no key escapes its prefix.
"""

from __future__ import annotations

import re

from pipeline_tools.core.errors import UsageError

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
_HINT = "use a relative prefix such as models/iris/v3: no '.', '..' or empty segments, no leading '/'"


def _problem(value: str) -> str | None:
    if value.startswith("/"):
        return "starts with '/'"
    m = _BAD_CHARS.search(value)
    if m:
        return "contains a backslash" if m[0] == "\\" else f"contains control character {m[0]!r}"
    for seg in value.split("/"):
        if seg in (".", ".."):
            return f"has a '{seg}' segment"
        if seg == "":
            return "has an empty segment ('//')"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    return None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def prefix(value: str | None, what: str = "--prefix") -> str:
    """A normalized key prefix ('' for the bucket root), or UsageError naming `what`."""
    value = value or ""
    if value.endswith("/") and not value.endswith("//"):
        value = value[:-1]
    if value == "":
        return ""
    why = _problem(value)
    if why:
        raise UsageError(f"{what} {_shown(value)}: {why}; S3 keys are literal, so it would not stay "
                         "inside the prefix it names", _HINT)
    return value


def join(base: str, *parts: str, what: str = "key") -> str:
    """`base/part1/part2…`. `base` must already be a normalized prefix (see `prefix()`); every part
    is one or more segments with the same rules. Raises UsageError (exit 2) on anything else."""
    for value, label in ((base, "prefix"), *((p, what) for p in parts)):
        if value and (why := _problem(value)):
            raise UsageError(f"{label} {_shown(value)}: {why}; refusing to build an S3 key from it", _HINT)
        if value.endswith("/"):
            raise UsageError(f"{label} {_shown(value)}: ends with '/'", _HINT)
    rel = "/".join(p for p in parts if p)
    if not rel:
        raise UsageError(f"{what}: empty key under prefix {_shown(base)}", _HINT)
    key = f"{base}/{rel}" if base else rel
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UsageError(f"{what} {_shown(key)}: longer than {MAX_KEY_BYTES} bytes (the S3 key limit)",
                         "use a shorter prefix")
    return key


def parse_s3_url(url: str | None, what: str = "--to") -> tuple[str, str]:
    """s3://BUCKET[/PREFIX] → (bucket, normalized prefix); UsageError naming `what` otherwise."""
    url = url or ""
    if not url.startswith("s3://") or len(url) <= 5:
        raise UsageError(f"{what}: expected s3://BUCKET[/PREFIX] (got {_shown(url)})",
                         "e.g. s3://my-archive-bucket/iris/logs")
    bucket, _, rest = url[5:].partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise UsageError(f"{what}: {_shown(bucket)} is not a valid S3 bucket name (3-63 characters: lower-case "
                         "letters, digits, '.' and '-', starting and ending with a letter or digit)",
                         "e.g. s3://my-archive-bucket/iris/logs")
    return bucket, prefix(rest, f"{what} s3://{bucket}/…: prefix")
