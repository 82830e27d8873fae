"""A help page laid out the way click's HelpFormatter lays it out, without importing click.

Only for `pt --help` (cli.fast_path): usage line, help text (paragraphs, `\\b` blocks kept as
they are), then definition-list sections. It mirrors click.formatting.HelpFormatter/wrap_text and
click._textwrap.TextWrapper for text without ANSI escapes (pt's help has none);
tests/unit/test_startup.py checks it against click's own rendering at many widths.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence


class _Wrapper(textwrap.TextWrapper):
    """click._textwrap.TextWrapper for plain text: a long word is cut at the width (no hyphen search)."""

    def _handle_long_word(self, reversed_chunks: list[str], cur_line: list[str], cur_len: int,
                          width: int) -> None:
        space_left = max(width - cur_len, 1)
        if self.break_long_words:
            last = reversed_chunks[-1]
            cur_line.append(last[:space_left])
            reversed_chunks[-1] = last[space_left:]
        elif not cur_line:
            cur_line.append(reversed_chunks.pop())


def wrap_text(text: str, width: int, initial_indent: str = "", subsequent_indent: str = "",
              preserve_paragraphs: bool = False) -> str:
    """click.formatting.wrap_text."""
    text = text.expandtabs()
    wrapper = _Wrapper(width, initial_indent=initial_indent, subsequent_indent=subsequent_indent,
                       replace_whitespace=False)
    if not preserve_paragraphs:
        return wrapper.fill(text)
    paragraphs: list[tuple[int, bool, str]] = []
    buf: list[str] = []
    indent: int | None = None

    def flush() -> None:
        if not buf:
            return
        if buf[0].strip() == "\b":
            paragraphs.append((indent or 0, True, "\n".join(buf[1:])))
        else:
            paragraphs.append((indent or 0, False, " ".join(buf)))
        del buf[:]

    for line in text.splitlines():
        if not line:
            flush()
            indent = None
        else:
            if indent is None:
                stripped = line.lstrip()
                indent = len(line) - len(stripped)
                line = stripped
            buf.append(line)
    flush()
    out = []
    for extra, raw, par in paragraphs:
        first, rest = initial_indent + " " * extra, subsequent_indent + " " * extra
        if raw:
            out.append("\n".join(f"{first if i == 0 else rest}{ln}" for i, ln in enumerate(par.splitlines())))
        else:
            wrapper.initial_indent, wrapper.subsequent_indent = first, rest
            out.append(wrapper.fill(par))
    return "\n\n".join(out)


def _usage(width: int, prog: str, args: str) -> str:
    prefix = "Usage: "
    usage_prefix = f"{prefix}{prog} "
    if not args:
        return usage_prefix.rstrip(" ") + "\n"
    if width >= len(usage_prefix) + 20:
        return wrap_text(args, width, usage_prefix, " " * len(usage_prefix)) + "\n"
    indent = " " * (len(prefix) + 4)
    return usage_prefix + "\n" + wrap_text(args, width, indent, indent) + "\n"


def _dl(width: int, indent: int, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> str:
    """click HelpFormatter.write_dl."""
    out: list[str] = []
    first_col = min(max(len(first) for first, _ in rows), col_max) + col_spacing
    for first, second in rows:
        out.append(" " * indent + first)
        if not second:
            out.append("\n")
            continue
        if len(first) <= first_col - col_spacing:
            out.append(" " * (first_col - len(first)))
        else:
            out.append("\n" + " " * (first_col + indent))
        lines = wrap_text(second, max(width - first_col - 2, 10), preserve_paragraphs=True).splitlines()
        if lines:
            out.append(lines[0] + "\n")
            out.extend(" " * (first_col + indent) + line + "\n" for line in lines[1:])
        else:
            out.append("\n")
    return "".join(out)


def page(width: int, prog: str, args: str, help_text: str,
         sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """Usage, help text, sections: click's Command.get_help() for these parts (help_text clean)."""
    buf = [_usage(width, prog, args)]
    if help_text:
        buf.append("\n" + wrap_text(help_text, width, "  ", "  ", preserve_paragraphs=True) + "\n")
    for name, rows in sections:
        if rows:
            buf.append(f"\n{name}:\n" + _dl(width, 2, rows))
    return "".join(buf).rstrip("\n")
