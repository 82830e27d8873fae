"""EventBridge Scheduler schedule expressions, checked the way AWS checks them (pure, no I/O).

    at(yyyy-mm-ddThh:mm:ss)         one time
    rate(value unit)                value ≥ 1; unit minute|hour|day (singular for 1, plural above)
    cron(min hour dom month dow year)
        minutes 0-59, hours 0-23, day-of-month 1-31 (also ? L W), month 1-12 or JAN-DEC,
        day-of-week 1-7 or SUN-SAT (also ? L #), year 1970-2199; `, - * /` where allowed;
        exactly one of day-of-month and day-of-week is `?`.

`problem(expr)` returns None for a valid expression, else one line saying what is wrong.
"""

from __future__ import annotations

import re
from datetime import datetime

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_UNITS = {"minute": "minutes", "hour": "hours", "day": "days"}

# field name, low, high, named values (1-based), extra single tokens allowed
_FIELDS = (
    ("minutes", 0, 59, (), ()),
    ("hours", 0, 23, (), ()),
    ("day-of-month", 1, 31, (), ("?", "L", "LW")),
    ("month", 1, 12, _MONTHS, ()),
    ("day-of-week", 1, 7, _DAYS, ("?", "L")),
    ("year", 1970, 2199, (), ()),
)

EXAMPLES = "cron(0 3 * * ? *), rate(1 day), rate(6 hours) or at(2027-01-31T03:00:00)"


def problem(expr: str) -> str | None:
    """None if AWS accepts `expr` as a schedule expression, else why not."""
    if not isinstance(expr, str) or not expr.strip():
        return f"must not be empty (e.g. {EXAMPLES})"
    text = expr.strip()
    m = re.fullmatch(r"(at|rate|cron)\((.*)\)", text)
    if not m:
        return f"{text!r} is not a schedule expression: use {EXAMPLES}"
    kind, body = m[1], m[2].strip()
    if kind == "at":
        return _at(body)
    if kind == "rate":
        return _rate(body)
    return _cron(body)


def _at(body: str) -> str | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", body):
        return f"at({body}): the time must be yyyy-mm-ddThh:mm:ss, e.g. at(2027-01-31T03:00:00)"
    try:
        datetime.strptime(body, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return f"at({body}): not a date and time of the calendar"
    return None


def _rate(body: str) -> str | None:
    m = re.fullmatch(r"(\d+)\s+([a-z]+)", body)
    if not m:
        return f"rate({body}): must be rate(VALUE UNIT), e.g. rate(1 day) or rate(6 hours)"
    value, unit = int(m[1]), m[2]
    if value < 1:
        return f"rate({body}): the value must be at least 1"
    singular = {v: k for k, v in _UNITS.items()}.get(unit, unit)
    if singular not in _UNITS:
        return f"rate({body}): unit must be minute(s), hour(s) or day(s)"
    want = singular if value == 1 else _UNITS[singular]
    if unit != want:
        return f"rate({body}): write rate({value} {want})"
    return None


def _cron(body: str) -> str | None:
    parts = body.split()
    if len(parts) != 6:
        return (f"cron({body}): needs 6 fields (minutes hours day-of-month month day-of-week year), "
                f"got {len(parts)}; e.g. cron(0 3 * * ? *)")
    for value, spec in zip(parts, _FIELDS, strict=True):
        if why := _field(value, *spec):
            return f"cron({body}): {why}"
    dom, dow = parts[2], parts[4]
    if (dom == "?") == (dow == "?"):
        return (f"cron({body}): exactly one of day-of-month ({dom}) and day-of-week ({dow}) must be '?', "
                "e.g. cron(0 3 * * ? *) or cron(0 3 ? * MON *)")
    return None


def _number(token: str, low: int, high: int, named: tuple[str, ...]) -> int | None:
    if token.upper() in named:
        return named.index(token.upper()) + 1
    if token.isdigit() and low <= int(token) <= high:
        return int(token)
    return None


def _field(value: str, name: str, low: int, high: int, named: tuple[str, ...], singles: tuple[str, ...]) -> str | None:
    bad = f"{name} {value!r} is not allowed (range {low}-{high}"
    bad += f" or {named[0]}-{named[-1]}" if named else ""
    bad += ")"
    if value in singles or value == "*":
        return None
    if name == "day-of-month" and re.fullmatch(r"\d{1,2}W", value):
        return None if _number(value[:-1], low, high, ()) is not None else bad
    if name == "day-of-week":
        if m := re.fullmatch(r"([^#]+)#(\d)", value):  # nth weekday: 6#3
            ok = _number(m[1], low, high, named) is not None and 1 <= int(m[2]) <= 5
            return None if ok else bad
        if value.endswith("L") and len(value) > 1:  # last weekday: 6L
            return None if _number(value[:-1], low, high, named) is not None else bad
    for item in value.split(","):
        base, _, step = item.partition("/")
        if step and not (step.isdigit() and int(step) >= 1):
            return f"{name} {value!r}: the increment after '/' must be a whole number ≥ 1"
        if base == "*" and (step or "," not in value):
            continue
        lo_tok, dash, hi_tok = base.partition("-")
        lo = _number(lo_tok, low, high, named)
        hi = _number(hi_tok, low, high, named) if dash else lo
        if lo is None or hi is None:
            return bad
    return None
