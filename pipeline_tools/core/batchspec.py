"""What AWS accepts for a Batch job on Fargate and for an EventBridge Scheduler expression (pure).

Used by the config check (so a bad value fails at load with FILE:LINE, exit 2) and by the Batch
target before it registers anything. Each function returns None or one line saying what is wrong
and what would be accepted.
"""

from __future__ import annotations

import re
from datetime import datetime

# Fargate vCPU → allowed memory (MiB), from the AWS Batch / ECS Fargate task size table.
FARGATE_MEMORY: dict[float, tuple[int, ...]] = {
    0.25: (512, 1024, 2048),
    0.5: tuple(range(1024, 4096 + 1, 1024)),
    1.0: tuple(range(2048, 8192 + 1, 1024)),
    2.0: tuple(range(4096, 16384 + 1, 1024)),
    4.0: tuple(range(8192, 30720 + 1, 1024)),
    8.0: tuple(range(16384, 61440 + 1, 4096)),
    16.0: tuple(range(32768, 122880 + 1, 8192)),
}


def _span(sizes: tuple[int, ...]) -> str:
    if len(sizes) <= 3:
        return ", ".join(str(s) for s in sizes)
    return f"{sizes[0]}–{sizes[-1]} in steps of {sizes[1] - sizes[0]}"


def fargate_problem(vcpu: float, memory: int) -> str | None:
    if isinstance(vcpu, bool) or not isinstance(vcpu, int | float):
        return None  # the model reports the type
    if float(vcpu) not in FARGATE_MEMORY:
        return (f"Fargate has no {vcpu:g} vCPU size; use one of "
                f"{', '.join(f'{v:g}' for v in FARGATE_MEMORY)}")
    sizes = FARGATE_MEMORY[float(vcpu)]
    if isinstance(memory, int) and not isinstance(memory, bool) and memory not in sizes:
        return f"Fargate with {vcpu:g} vCPU takes memory {_span(sizes)} MiB (got {memory})"
    return None


# --- EventBridge Scheduler expressions ------------------------------------------------------

_RATE_RE = re.compile(r"^rate\((\d+) (minutes?|hours?|days?)\)$")
_AT_RE = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_CRON_RE = re.compile(r"^cron\((.*)\)$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# field name, low, high, names (1-based), extra characters allowed
_FIELDS = (("minutes", 0, 59, (), ""), ("hours", 0, 23, (), ""), ("day-of-month", 1, 31, (), "?LW"),
           ("month", 1, 12, _MONTHS, ""), ("day-of-week", 1, 7, _DAYS, "?L#"), ("year", 1970, 2199, (), ""))
_EXAMPLES = "rate(5 minutes), cron(0 3 * * ? *) or at(2030-01-31T03:00:00)"


def _value(token: str, low: int, high: int, names: tuple[str, ...]) -> int | None:
    up = token.upper()
    if up in names:
        return names.index(up) + 1
    if token.isdigit() and low <= int(token) <= high:
        return int(token)
    return None


def _cron_field(text: str, name: str, low: int, high: int, names: tuple[str, ...], extra: str) -> str | None:
    bad = f"cron {name} field {text!r}"
    for item in text.split(","):
        if item == "*":
            continue
        if item == "?":
            if "?" not in extra:
                return f"{bad}: '?' is allowed only in day-of-month and day-of-week"
            continue
        if "L" in extra and item in ("L", "LW") and (item == "L" or "W" in extra):
            continue
        if "#" in extra and "#" in item:
            day, _, nth = item.partition("#")
            if _value(day, low, high, names) is None or nth not in ("1", "2", "3", "4", "5"):
                return f"{bad}: use DAY#N with N 1–5, e.g. MON#1"
            continue
        if "W" in extra and item.endswith("W") and item[:-1].isdigit():
            item = item[:-1]
        if "L" in extra and name == "day-of-week" and item.endswith("L") and len(item) > 1:
            item = item[:-1]
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            return f"{bad}: the increment after '/' must be a positive number"
        if base == "*" and slash:
            continue
        start, dash, end = base.partition("-")
        if _value(start, low, high, names) is None or (dash and _value(end, low, high, names) is None):
            allowed = f"{low}–{high}" + (f" or {names[0]}–{names[-1]}" if names else "")
            return f"{bad}: values must be {allowed}"
    return None


def schedule_problem(expr: str) -> str | None:
    """None when EventBridge Scheduler accepts `expr` as a schedule expression, else why not."""
    if not isinstance(expr, str):
        return None
    e = expr.strip()
    if e != expr:
        return f"schedule {expr!r} has leading or trailing spaces"
    if m := _RATE_RE.match(e):
        value, unit = int(m[1]), m[2]
        if value < 1:
            return f"schedule {expr!r}: the rate must be at least 1"
        if value == 1 and unit.endswith("s"):
            return f"schedule {expr!r}: write rate(1 {unit[:-1]}) (singular unit for 1)"
        if value > 1 and not unit.endswith("s"):
            return f"schedule {expr!r}: write rate({value} {unit}s) (plural unit above 1)"
        return None
    if m := _AT_RE.match(e):
        try:
            datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return f"schedule {expr!r}: not a valid date and time (yyyy-mm-ddThh:mm:ss)"
        return None
    if m := _CRON_RE.match(e):
        fields = m[1].split()
        if len(fields) != 6:
            return (f"schedule {expr!r}: cron needs 6 fields (minutes hours day-of-month month day-of-week year), "
                    f"got {len(fields)}")
        for text, spec in zip(fields, _FIELDS, strict=True):
            if problem := _cron_field(text, *spec):
                return f"schedule {expr!r}: {problem}"
        dom, dow = fields[2], fields[4]
        if (dom == "?") == (dow == "?"):
            return (f"schedule {expr!r}: exactly one of day-of-month and day-of-week must be '?' "
                    "(e.g. cron(0 3 * * ? *))")
        return None
    return f"schedule {expr!r} is not a schedule expression; write {_EXAMPLES}"
