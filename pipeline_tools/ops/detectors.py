"""Detection of sensitive identifiers in text lines (pure: no I/O, no AWS).

Each detector is a candidate regex plus a validator that removes the usual false positives:

- IPv4: four octets 0-255 without leading zeros; not preceded by a letter, dot or dash (so
  `v1.2.3.4` and `libfoo-1.2.3.4` are versions), not followed by `-tag`/`+build`/another dot
  (`1.2.3.4-beta`, `1.2.3.4.5`), not the value of a `version=`/`ver:`/`release=` field; the
  unspecified and loopback addresses (0.0.0.0, 127.x) identify nobody and are not reported.
  Three-part versions such as `3.11.7` never match.
- IPv6: validated by `ipaddress`; `::`, `::1` and plain clock times (`12:30:45`) and MAC
  addresses are not IPv6.
- phone: E.164 (`+` then 8-15 digits, separators allowed) or North American numbers with
  separators and valid area/exchange codes (first digit 2-9). Bare digit runs (epoch seconds,
  epoch millis, ids) and ISO dates/times are never phone numbers.
- credit card: 13-19 digits, Luhn-valid, a known issuer prefix (2, 3, 4, 5, 6), separators
  either none or consistent spaces/dashes in groups of 4 (or Amex 4-6-5); digits embedded in
  a word, a UUID or a longer dashed run do not match; one digit repeated is not a card.
- US SSN: dashed `AAA-GG-SSSS` with the SSA's impossible ranges removed (000, 666, 9xx area,
  00 group, 0000 serial). Undashed 9-digit runs are too common (ids) to report.
- AWS access key id: the documented 4-letter prefixes (AKIA, ASIA, …) + 16 characters.
- AWS secret key: a 40-character base64 token that is not hex (git SHAs, SHA-1 digests), mixes
  upper case, lower case and digits, has high entropy, AND sits on a line that names a secret
  (secret, credential, aws…key) or carries an access key id. Random 40-character ids without
  such context are too common to report.
- JWT: `eyJ….eyJ….sig` whose header decodes to JSON with an `alg`.
- email: local@domain.tld with a letter-only TLD of 2+ characters.
User patterns (`--patterns FILE`) are plain regexes reported as found.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline_tools.core.errors import UsageError

Validator = Callable[[re.Match, str], bool]


@dataclass(frozen=True)
class Detector:
    name: str
    regex: re.Pattern
    validate: Validator | None = None
    group: int = 0  # which regex group is the sensitive value
    gate: Callable[[str, int], bool] | None = None  # cheap pre-check on (line, digit count)


@dataclass(frozen=True)
class Hit:
    kind: str
    start: int
    end: int


# --- validators ------------------------------------------------------------------------------

_VERSION_KEY_RE = re.compile(r"(?i)\b(?:version|ver|vers|release|build|rev|revision|tag|v)\s*[=:]\s*[\"']?$")


def _ipv4(m: re.Match, line: str) -> bool:
    octets = m.group(0).split(".")
    if any(len(o) > 1 and o[0] == "0" for o in octets) or any(int(o) > 255 for o in octets):
        return False
    if _VERSION_KEY_RE.search(line[max(0, m.start() - 24):m.start()]):
        return False
    addr = ipaddress.IPv4Address(m.group(0))
    return not (addr.is_unspecified or addr.is_loopback)


def _ipv6(m: re.Match, line: str) -> bool:
    text = m.group(0)
    if text.count(":") < 2 or ("::" not in text and text.count(":") != 7):
        return False
    if sum(1 for g in text.split(":") if g) < 2:
        return False
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return not (addr.is_unspecified or addr.is_loopback)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _phone_e164(m: re.Match, _line: str) -> bool:
    text = m.group(0)
    n = len(_digits(text))
    if not 8 <= n <= 15:
        return False
    seps = set(re.sub(r"[\d+()]", "", text))
    return len(seps) <= 1


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match, _line: str) -> bool:
    text = m.group(0)
    digits = _digits(text)
    if not 13 <= len(digits) <= 19 or digits[0] not in "23456" or len(set(digits)) == 1:
        return False
    if digits[0] == "2" and not 2221 <= int(digits[:4]) <= 2720:
        return False
    seps = set(re.sub(r"\d", "", text))
    if len(seps) > 1:
        return False
    if seps:
        groups = [len(g) for g in re.split(r"[ -]", text)]
        if groups not in ([4, 6, 5], [4, 6, 4]) and not (all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4):
            return False
    return luhn_ok(digits)


def _ssn(m: re.Match, _line: str) -> bool:
    area, grp, serial = m.group(1), m.group(2), m.group(3)
    return not (area in ("000", "666") or area[0] == "9" or grp == "00" or serial == "0000")


def entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


_SECRET_CONTEXT_RE = re.compile(r"(?i)secret|credential|aws.{0,20}key|private.?key")
_ACCESS_KEY_RE = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)"
                            r"[A-Z0-9]{16}(?![A-Z0-9])")


def _aws_secret(m: re.Match, line: str) -> bool:
    text = m.group(0)
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        return False
    if not (re.search(r"[A-Z]", text) and re.search(r"[a-z]", text) and re.search(r"\d", text)):
        return False
    if entropy(text) < 4.0:
        return False
    return bool(_SECRET_CONTEXT_RE.search(line) or _ACCESS_KEY_RE.search(line))


def _b64url_json(part: str) -> dict | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _jwt(m: re.Match, _line: str) -> bool:
    header = _b64url_json(m.group(0).split(".")[0])
    return bool(header and "alg" in header)


_DROP_DIGITS = str.maketrans("", "", "0123456789")

# --- the built-in set ------------------------------------------------------------------------

BUILTIN: tuple[Detector, ...] = (
    Detector("jwt", re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), _jwt,
             gate=lambda ln, n: "eyJ" in ln),
    Detector("aws_access_key_id", _ACCESS_KEY_RE),
    Detector("aws_secret_access_key", re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
             _aws_secret),
    Detector("email", re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"),
             gate=lambda ln, n: "@" in ln),
    Detector("credit_card", re.compile(r"(?<![\w.-])(?:\d{4}(?P<a>[ -])\d{6}(?P=a)\d{4,5}|"
                                       r"\d{4}(?P<b>[ -])\d{4}(?P=b)\d{4}(?P=b)\d{1,4}|\d{13,19})"
                                       r"(?![\w-]|\.\d)"), _card, gate=lambda ln, n: n >= 13),
    Detector("us_ssn", re.compile(r"(?<![\w.-])(\d{3})-(\d{2})-(\d{4})(?![\w-]|\.\d)"), _ssn,
             gate=lambda ln, n: n >= 9 and "-" in ln),
    Detector("phone", re.compile(r"(?<![\w+])\+[1-9]\d{0,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w:.]|-\d)"),
             _phone_e164, gate=lambda ln, n: n >= 8 and "+" in ln),
    Detector("phone", re.compile(r"(?<![\w.+:-])(?:\([2-9]\d{2}\) ?[2-9]\d{2}[ .-]|"
                                 r"[2-9]\d{2}(?P<sep>[.-])[2-9]\d{2}(?P=sep))\d{4}(?![\w:]|[.-]\d)"),
             gate=lambda ln, n: n >= 10),
    Detector("ipv4", re.compile(r"(?<![\w.-])(?:\d{1,3}\.){3}\d{1,3}(?![\w-]|\.\w|\+\w)"), _ipv4,
             gate=lambda ln, n: n >= 4 and ln.count(".") >= 3),
    Detector("ipv6", re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![\w:.])"), _ipv6,
             gate=lambda ln, n: ln.count(":") >= 2),
)


# --- user patterns -----------------------------------------------------------------------------


def load_patterns(path: str | Path) -> list[Detector]:
    """`--patterns FILE`: a YAML or JSON list of {name, regex}. Any mistake is a UsageError (exit 2)."""
    import yaml

    p = Path(path)
    try:
        text = _decode_patterns(p, p.read_bytes())
    except OSError as e:
        raise UsageError(f"patterns file {p}: cannot read: {e.strerror or e}",
                         "pass a YAML/JSON list of {name, regex}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as e:
        raise UsageError(f"patterns file {p}: line {_yaml_error_line(e, text)}: invalid YAML/JSON: "
                         f"{_yaml_problem(e)}", "expected a list of {name: ..., regex: ...}") from None
    if isinstance(data, dict) and isinstance(data.get("patterns"), list):
        data = data["patterns"]
    if not isinstance(data, list):
        raise UsageError(f"patterns file {p}: expected a list of {{name, regex}}",
                         "e.g. - {name: order_id, regex: 'ORD-\\d{8}'}")
    out: list[Detector] = []
    for i, entry in enumerate(data):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("regex"), str)):
            raise UsageError(f"patterns file {p}: entry {i + 1}: needs string fields `name` and `regex`",
                             "e.g. - {name: order_id, regex: 'ORD-\\d{8}'}")
        try:
            rx = re.compile(entry["regex"])
        except re.error as e:
            raise UsageError(f"patterns file {p}: entry {i + 1} ({entry['name']}): bad regex: {e}",
                             "fix the regular expression (Python `re` syntax)") from None
        if rx.search(""):
            raise UsageError(f"patterns file {p}: entry {i + 1} ({entry['name']}): regex matches the empty string",
                             "make it match at least one character")
        out.append(Detector(entry["name"], rx))
    return out


def _yaml_error_line(e: Exception, text: str) -> int:
    """The 1-based line of a YAML error: reader errors (a NUL byte, …) only carry a character position."""
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        return mark.line + 1
    pos = getattr(e, "position", None)
    return text[:pos].count("\n") + 1 if isinstance(pos, int) else 1


def _yaml_problem(e: Exception) -> str:
    import yaml

    if isinstance(e, yaml.reader.ReaderError):
        c = e.character if isinstance(e.character, int) else ord(e.character[:1] or "\0")
        return "a NUL byte" if c == 0 else f"character U+{c:04X} is not allowed"
    return (getattr(e, "problem", None) or str(e).splitlines()[0]).strip()


def _decode_patterns(p: Path, data: bytes) -> str:
    """UTF-8 (BOM or not), or UTF-16/32 with a BOM or a clear byte pattern; anything else is refused."""
    from pipeline_tools.ops.logread import sniff_encoding

    codec = sniff_encoding(data[:4096])
    try:
        return data.decode(codec).replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        line = data[:e.start].decode(codec, "replace").count("\n") + 1
        raise UsageError(f"patterns file {p}: not valid {codec.upper().replace('-SIG', '')} "
                         f"(byte 0x{data[e.start]:02x} at line {line})",
                         "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`") from None


# --- scanning a line ---------------------------------------------------------------------------


def find(line: str, extra: Sequence[Detector] = ()) -> list[Hit]:
    """Sensitive spans in `line`, in order. Built-ins do not overlap (the first detector wins);
    user patterns are always reported."""
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    digits = len(line) - len(line.translate(_DROP_DIGITS))
    for det in BUILTIN:
        if det.gate is not None and not det.gate(line, digits):
            continue
        pos = 0
        while (m := det.regex.search(line, pos)) is not None:
            s, e = m.span(det.group)
            if not any(s < te and ts < e for ts, te in taken) and (det.validate is None or det.validate(m, line)):
                hits.append(Hit(det.name, s, e))
                taken.append((s, e))
                pos = max(e, m.start() + 1)
            else:
                pos = m.start() + 1  # a rejected candidate may hide a valid one starting inside it
    for det in extra:
        for m in det.regex.finditer(line):
            if m.end() > m.start():
                hits.append(Hit(det.name, m.start(), m.end()))
    return sorted(hits, key=lambda h: (h.start, h.end))


def redact(line: str, hits: Iterable[Hit], width: int = 200) -> str:
    """The line with every hit replaced by [REDACTED:kind], cut to about `width` characters
    around the first hit. Never contains a raw matched value."""
    spans = sorted(hits, key=lambda h: (h.start, -h.end))
    merged: list[list] = []
    for h in spans:
        if merged and h.start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], h.end)
            if h.kind not in merged[-1][2]:
                merged[-1][2].append(h.kind)
        else:
            merged.append([h.start, h.end, [h.kind]])
    out, pos, first = [], 0, None
    for s, e, kinds in merged:
        out.append(line[pos:s])
        if first is None:
            first = sum(len(x) for x in out)
        out.append(f"[REDACTED:{'+'.join(kinds)}]")
        pos = e
    out.append(line[pos:])
    text = "".join(out).replace("\n", " ").replace("\r", " ").strip("\n")
    if len(text) > width:
        lo = max(0, min((first or 0) - width // 4, len(text) - width))
        # never cut inside a placeholder
        lo = text.rfind(" ", 0, lo) + 1 if lo and text.rfind(" ", 0, lo) >= 0 else lo
        cut = text[lo:lo + width]
        text = ("…" if lo else "") + cut + ("…" if lo + width < len(text) else "")
    return text
