"""Everything `pt` prints goes through here.

- human mode: rich tables/colour on a TTY (NO_COLOR respected), plain text otherwise;
- json mode: exactly one JSON document on stdout, everything else on stderr;
- GitHub Actions: key results to $GITHUB_OUTPUT, a markdown summary to $GITHUB_STEP_SUMMARY,
  errors as ::error:: annotations;
- a redaction filter masks values that look like secrets in everything printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

_SECRET_SOURCES = [
    # AWS access key ids and secret keys (the latter after a key-like name)
    (r"\b(AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b", "\\1****************"),
    (r"(?i)(aws_secret_access_key|secret_access_key|secretaccesskey|aws_session_token)"
                r"(\W{1,4})[A-Za-z0-9/+=]{16,}", "\\1\\2****"),
    # webhook URLs: keep the host, hide the path
    (r"(https://hooks\.slack\.com/)[^\s\"'<>]+", "\\1****"),
    (r"(https://[\w.-]*webhook\.office\.com/)[^\s\"'<>]+", "\\1****"),
    (r"(https://[\w.-]*\.logic\.azure\.com[:\d]*/)[^\s\"'<>]+", "\\1****"),
    (r"(https://discord(?:app)?\.com/api/webhooks/)[^\s\"'<>]+", "\\1****"),
    # tokens
    (r"\b(gh[pousr]_)[A-Za-z0-9]{20,}", "\\1****"),
    (r"\b(xox[abprs]-)[A-Za-z0-9-]{10,}", "\\1****"),
    (r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{12,}", "\\1****"),
    (r"(?i)((?:password|passwd|token|secret|api[_-]?key)\s*[=:]\s*)[^\s,;\"']{6,}", "\\1****"),
    (r"(://[^/\s:@]+:)[^@\s/]+(@)", "\\1****\\2"),
]

_extra_secrets: set[str] = set()
_compiled: list = []


def _patterns() -> list:
    if not _compiled:
        _compiled.extend((re.compile(p), r) for p, r in _SECRET_SOURCES)
    return _compiled


def register_secret(value: str | None) -> None:
    """A value resolved at run time (e.g. a webhook from SSM) that must never be printed.
    In GitHub Actions the runner is told too (`::add-mask::`), so no later step prints it either."""
    if value and len(value) >= 6 and value not in _extra_secrets:
        _extra_secrets.add(value)
        if in_github_actions():
            # Workflow commands are read from stdout; a JSON-mode run keeps stdout for its document.
            stream = sys.stderr if os.environ.get("PT_OUTPUT") == "json" else sys.stdout
            for part in value.splitlines():
                if part.strip():
                    stream.write(f"::add-mask::{part}\n")
            stream.flush()


def redact(text: str) -> str:
    for secret in sorted(_extra_secrets, key=len, reverse=True):
        text = text.replace(secret, "****")
    for pattern, repl in _patterns():
        text = pattern.sub(repl, text)
    return text


def _redact_data(data: Any) -> Any:
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {k: _redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_redact_data(v) for v in data]
    return data


_LONG_TOKEN = re.compile(r"\S{201,}")


def shorten(text: str) -> str:
    """An error line never echoes a huge value back: any run of over 200 non-blank characters
    keeps its first 100 and says how long it was."""
    return _LONG_TOKEN.sub(lambda m: f"{m[0][:100]}…({len(m[0])} characters)", text)


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


class Output:
    """The printer handed to every command. `mode` is 'human' or 'json'."""

    def __init__(self, mode: str = "human", stdout: TextIO | None = None, stderr: TextIO | None = None,
                 verbose: bool = False, quiet: bool = False):
        self.mode = mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.verbose = verbose
        self.quiet = quiet
        self._console = None
        self._err_console = None

    @property
    def json(self) -> bool:
        return self.mode == "json"

    @property
    def color(self) -> bool:
        return (not os.environ.get("NO_COLOR")) and hasattr(self.stderr, "isatty") and self.stderr.isatty()

    def is_tty(self) -> bool:
        return hasattr(self.stdout, "isatty") and self.stdout.isatty() and not self.json

    # --- plain lines --------------------------------------------------------------------
    def _write(self, stream: TextIO, text: str) -> None:
        stream.write(redact(text) + "\n")
        stream.flush()

    def info(self, text: str) -> None:
        """Progress and notes: stdout in human mode, stderr in json mode; none with -q."""
        if not self.quiet:
            self._write(self.stderr if self.json else self.stdout, text)

    def log(self, text: str) -> None:
        """Always stderr (progress lines of long work); none with -q."""
        if not self.quiet:
            self._write(self.stderr, text)

    def debug(self, text: str) -> None:
        if self.verbose:
            self._write(self.stderr, f"debug: {text}")

    def warn(self, text: str) -> None:
        text = shorten(text)
        self._write(self.stderr, f"warning: {text}")
        if in_github_actions():
            self._write(self.stderr, f"::warning::{_gh_escape(redact(text))}")

    def error(self, lines: Sequence[str], hint: str | None = None, prefix: bool = True) -> None:
        """Error lines on stderr. `prefix=False` for lines that start with FILE:LINE already."""
        lines = [shorten(ln) for ln in lines]
        hint = shorten(hint) if hint else hint
        for ln in lines:
            self._write(self.stderr, f"error: {ln}" if prefix and not ln.startswith("error:") else ln)
        if hint:
            self._write(self.stderr, f"hint: {hint}")
        if in_github_actions():
            located = [gh_file_annotation(ln, hint) for ln in lines] if not prefix else []
            if located and all(located):
                # config problems: one annotation each, on the file and line they are about
                for annotation in located:
                    self._write(self.stdout if not self.json else self.stderr, annotation)
                return
            body = "%0A".join(_gh_escape(redact(ln)) for ln in lines)
            if hint:
                body += "%0A" + _gh_escape(redact("hint: " + hint))
            self._write(self.stderr, f"::error::{body}")

    # --- results ------------------------------------------------------------------------
    def result(self, data: Any, human: Callable[[Output], None] | str | None = None) -> None:
        """The command's result: one JSON document in json mode, else the human rendering."""
        if self.json:
            self.stdout.write(json.dumps(_redact_data(data), indent=2, default=str, sort_keys=False) + "\n")
            self.stdout.flush()
        elif callable(human):
            human(self)
        elif isinstance(human, str):
            self._write(self.stdout, human)
        else:
            self._write(self.stdout, json.dumps(_redact_data(data), indent=2, default=str))

    def table(self, rows: Iterable[Sequence[Any]], columns: Sequence[str], title: str | None = None) -> None:
        rows = [[("" if c is None else str(c)) for c in r] for r in rows]
        if self.is_tty():
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title, show_lines=False)
            for c in columns:
                t.add_column(c)
            for r in rows:
                t.add_row(*[redact(c) for c in r])
            Console(file=self.stdout, no_color=bool(os.environ.get("NO_COLOR"))).print(t)
            return
        if title:
            self._write(self.stdout, title)
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        self._write(self.stdout, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        for r in rows:
            self._write(self.stdout, "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())

    # --- GitHub Actions ----------------------------------------------------------------
    def github_output(self, values: dict[str, Any]) -> None:
        self._append_github_file("GITHUB_OUTPUT", github_output_text(values))

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """A collapsible group around a long step in GitHub Actions (elsewhere the step's own progress
        lines, timestamped in CI, say where it is)."""
        if in_github_actions() and not self.json:
            self._write(self.stdout, f"::group::{_gh_escape(title)}")
            try:
                yield
            finally:
                self._write(self.stdout, "::endgroup::")
            return
        yield

    def document(self, text: str, out_file: str | None, wrote: str) -> None:
        """A rendered document (report, export, record): to `out_file` when given (then `wrote`,
        e.g. "wrote 12 record(s) to FILE", goes to stderr), else to stdout. Redacted either way."""
        text = redact(text)
        if out_file:
            with open(out_file, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            self.log(wrote)
        else:
            self.stdout.write(text)
            self.stdout.flush()

    def step_summary(self, markdown: str) -> None:
        self._append_github_file("GITHUB_STEP_SUMMARY", redact(markdown).rstrip() + "\n\n")

    def _append_github_file(self, variable: str, text: str) -> None:
        """Append to a file the runner names; a path that cannot be written is a warning, because
        the command's own work is already done and its exit code must still say how that went."""
        path = os.environ.get(variable)
        if not (in_github_actions() and path):
            return
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as e:
            from pipeline_tools.core.errors import os_error

            self.warn(f"cannot write ${variable}: {os_error(e).message}")


def github_output_text(values: dict[str, Any]) -> str:
    """`name=value` lines for $GITHUB_OUTPUT; a multi-line value uses a random delimiter that it does
    not contain (a fixed one lets a value end the block early and set other outputs)."""
    import secrets

    lines = []
    for k, v in values.items():
        v = v if isinstance(v, str) else json.dumps(v, default=str)
        v = redact(v)
        if "\n" in v or "\r" in v:
            delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
            while delimiter in v:
                delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
            lines.append(f"{k}<<{delimiter}\n{v}\n{delimiter}\n")
        else:
            lines.append(f"{k}={v}\n")
    return "".join(lines)


def markdown_table(rows: Iterable[Sequence[Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        return ("" if v is None else str(v)).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


_LOCATED_RE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<message>.+)$")


def gh_file_annotation(line: str, hint: str | None = None) -> str | None:
    """`FILE:LINE: message` → `::error file=FILE,line=LINE,title=pt config::message` (None otherwise)."""
    m = _LOCATED_RE.match(line)
    if not m:
        return None
    message = redact(m["message"]) + (f"\nhint: {redact(hint)}" if hint else "")
    return (f"::error file={_gh_prop(m['file'])},line={m['line']},title=pt config::"
            f"{_gh_escape(message)}")


def _gh_prop(text: str) -> str:
    return _gh_escape(text).replace(":", "%3A").replace(",", "%2C")


def _gh_escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
