""".dockerignore with docker's exact semantics (moby/patternmatcher + the CLI's context walk).

- one pattern per line; `#` lines are comments; surrounding whitespace is trimmed;
- a leading `!` makes an exception (re-include); the last matching pattern wins;
- patterns are cleaned like Go's filepath.Clean and a leading `/` is dropped;
- `*` matches within one path element, `?` one character, `[...]` a class, `\\` escapes,
  `**` any number of directories (also zero); a pattern also matches everything under a
  directory it matches;
- an excluded directory is not descended into unless an exception pattern starts with that
  directory's path (exactly the shortcut docker's archive walker takes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

_META = set(".+()|{}$^")  # regexp metacharacters escaped literally (Go's shouldEscape, minus * ? [ ] \)


def clean(path: str) -> str:
    """Go's filepath.Clean for slash paths."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _compile(pattern: str) -> re.Pattern[str]:
    """A straight port of patternmatcher's compile(): same regexp, same edge cases."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                nxt = pattern[i]
                i += 1
                out.append(nxt if nxt.isalnum() else "\\" + nxt)
            else:
                out.append("\\\\")
        elif ch in ".+()|{}$":  # Go's shouldEscape set
            out.append("\\" + ch)
        else:
            out.append(ch)  # including [ ] and - : character classes pass through as in docker
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        # docker rejects such a pattern at build time; treat it as matching nothing here
        return re.compile(r"(?!)")


@dataclass(frozen=True)
class Pattern:
    text: str  # cleaned, without the leading `!`
    exclusion: bool

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return _compile(self.text)

    def matches(self, path: str) -> bool:
        return self.regex.match(path) is not None

    def matches_or_parent(self, path: str) -> bool:
        if self.matches(path):
            return True
        parts = path.split("/")[:-1]
        return any(self.matches("/".join(parts[: i + 1])) for i in range(len(parts)))


def parse(text: str) -> list[Pattern]:
    """The patterns of a .dockerignore file, as docker's ReadAll reads them."""
    patterns: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                continue
        line = clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(line, exclusion))
    return patterns


class Matcher:
    """Decides which context paths docker sends (relative slash paths, no leading ./)."""

    def __init__(self, patterns: Iterable[Pattern]):
        self.patterns = list(patterns)
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_text(cls, text: str) -> Matcher:
        return cls(parse(text))

    def excluded(self, path: str) -> bool:
        matched = False
        for p in self.patterns:
            # An exception can only flip an excluded path back, a pattern only a kept one.
            if p.exclusion != matched:
                continue
            if p.matches_or_parent(path):
                matched = not p.exclusion
        return matched

    def can_skip_dir(self, path: str) -> bool:
        """An excluded directory need not be walked (docker's shortcut, kept for identical results)."""
        if not self.has_exclusions:
            return True
        prefix = path + "/"
        return not any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)

