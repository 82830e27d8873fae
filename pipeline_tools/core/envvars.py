"""Typed reads of PT_* (and AWS_*) environment variables, at call time, never at import.

A value of the wrong type is a usage error naming the variable and the accepted range.
"""

from __future__ import annotations

import os

from pipeline_tools.core.errors import UsageError


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:40])[:-1] + f"…' ({len(value)} characters)"


def env_int(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise UsageError(f"{name}={_shown(raw)} is not a whole number from {minimum} to {maximum}",
                         f"set {name} to a whole number from {minimum} to {maximum}, or unset it "
                         f"(default {default})")
    return value


def env_seconds(name: str, default: float, *, minimum: float, maximum: float) -> float:
    """Seconds, as a number or a duration like 30s / 5m."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    from pipeline_tools.core.config import parse_duration

    try:
        value: float | None = parse_duration(float(raw) if _is_number(raw) else raw)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise UsageError(f"{name}={_shown(raw)} is not a duration from {minimum:g}s to {maximum:g}s",
                         f"set {name} to seconds or a duration like 30s or 5m, or unset it (default {default:g}s)")
    return value


def _is_number(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def endpoint_url() -> str | None:
    """AWS_ENDPOINT_URL, checked: http(s)://host[:port][/path] or a usage error."""
    raw = os.environ.get("AWS_ENDPOINT_URL")
    if not raw:
        return None
    from urllib.parse import urlsplit

    ok = False
    try:
        u = urlsplit(raw.strip())
        ok = u.scheme in ("http", "https") and bool(u.hostname) and not any(c.isspace() for c in raw.strip())
        _ = u.port  # raises ValueError on a port that is not a number or out of range
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"AWS_ENDPOINT_URL={_shown(raw)} is not an http(s) URL",
                         "set it like http://127.0.0.1:5000 (a local stack), or unset it to use AWS")
    return raw.strip()
