"""Reading log files for `pt logs scan` without ever dropping bytes silently.

- compression by magic bytes, never by name: gzip (`1f 8b`), bzip2 (`BZh`), xz (`fd 37 7a 58 5a 00`);
  a file named `.gz` that is plain text is read as text. A truncated or corrupt stream is a read
  error: what was decoded before it is scanned, the rest is reported as not scanned.
- text encoding: a BOM (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE) wins; without one, UTF-16/32 is
  recognised by its zero-byte pattern in the first 4 KiB; otherwise UTF-8. Bytes that do not
  decode are counted (with the line of the first one) and make the file "not scanned".
- NUL bytes are text like any other character (a stray NUL does not turn a log into "binary");
  the line of the first one is reported.

`open_text(path)` returns a `TextSource`: iterate `chunks()` for decoded text (universal
newlines), then read `problem` (None when every byte was decoded).
"""

from __future__ import annotations

import bz2
import codecs
import io
import lzma
import re
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20       # characters per read
SNIFF = 4096          # bytes looked at for compression / encoding

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))

# Decode errors are counted by a registered error handler (the decoder is inside TextIOWrapper).
_counter = threading.local()


def _count_errors(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _counter.bad = getattr(_counter, "bad", 0) + (exc.end - exc.start)
    return "\ufffd", exc.end


codecs.register_error("pt-logscan-count", _count_errors)


def compression(head: bytes) -> str | None:
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def sniff_encoding(head: bytes) -> str:
    """The codec for text starting with `head` (pure; see the module doc)."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    n4 = len(head) // 4 * 4
    if n4 >= 8:
        quads = [head[i:i + 4] for i in range(0, n4, 4)]
        le = sum(1 for q in quads if q[0] and not (q[1] or q[2] or q[3]))
        be = sum(1 for q in quads if q[3] and not (q[0] or q[1] or q[2]))
        if le >= 0.8 * len(quads):
            return "utf-32-le"
        if be >= 0.8 * len(quads):
            return "utf-32-be"
    n2 = len(head) // 2 * 2
    if n2 >= 4:
        pairs = n2 // 2
        odd_zero = sum(1 for i in range(1, n2, 2) if head[i] == 0)
        even_zero = sum(1 for i in range(0, n2, 2) if head[i] == 0)
        if odd_zero >= 0.6 * pairs and even_zero <= 0.05 * pairs:
            return "utf-16-le"
        if even_zero >= 0.6 * pairs and odd_zero <= 0.05 * pairs:
            return "utf-16-be"
    return "utf-8"


class _Inflate(io.RawIOBase):
    """A decompressing reader that never loses what it decoded before an error: a truncated or
    corrupt stream ends the data and sets `error` (instead of raising inside TextIOWrapper, which
    would drop the text decoded in the same read). Multi-member gzip and bzip2 are followed."""

    MAX_OUT = 1 << 20  # bytes per decompress call: a small bomb never needs more memory than this

    def __init__(self, raw, kind: str):
        self.raw, self.kind = raw, kind
        self.d = self._new()
        self.pending = b""      # compressed input not yet handed to the decompressor
        self.buf = b""
        self.done = False
        self.error: str | None = None

    def _new(self):
        if self.kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bz2.BZ2Decompressor() if self.kind == "bzip2" else lzma.LZMADecompressor()

    def readable(self) -> bool:
        return True

    def _needs_input(self) -> bool:
        if self.pending:
            return False
        return True if self.kind == "gzip" else self.d.needs_input

    def _fill(self) -> None:
        try:
            while not self.buf and not self.done:
                if self.d.eof:  # end of a member: another one may follow
                    rest = self.d.unused_data + self.pending
                    self.pending = b""
                    if not rest.strip(b"\0"):
                        more = self.raw.read(1 << 16)
                        if not more:
                            self.done = True
                            return
                        rest += more
                        if not rest.strip(b"\0"):
                            continue
                    self.d, self.pending = self._new(), rest.lstrip(b"\0")
                if self._needs_input():
                    data = self.raw.read(1 << 16)
                    if not data:
                        if self.kind == "gzip":
                            self.buf = self.d.flush()
                        self.error = "read error: compressed stream is truncated"
                        self.done = True
                        return
                    self.pending = data
                self.buf = self.d.decompress(self.pending, self.MAX_OUT)
                self.pending = self.d.unconsumed_tail if self.kind == "gzip" else b""
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as e:
            self.error = f"read error: compressed stream is corrupt ({e})"
            self.done = True

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


@dataclass
class TextSource:
    path: Path
    compression: str | None = None
    encoding: str = "utf-8"
    lines: int = 0                      # lines seen (a last line without newline counts)
    undecodable: int = 0                # bytes that did not decode
    first_undecodable_line: int | None = None
    nul_bytes: int = 0
    first_nul_line: int | None = None
    read_error: str | None = None       # truncated/corrupt stream, I/O error
    read_error_line: int | None = None
    wide_text_line: int | None = None   # a line that looks like UTF-16/32 inside a file read as UTF-8
    utf16_order: str | None = None      # "le"/"be" when read as UTF-16
    notes: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        """Why (part of) the file was not scanned, or None when every byte was decoded and read."""
        parts = []
        if self.read_error:
            parts.append(f"{self.read_error} after line {self.read_error_line or 0}"
                         f"{'' if self.compression is None else f' ({self.compression})'}")
        if self.undecodable:
            parts.append(f"{self.undecodable} byte(s) not valid {self.encoding}, first at line "
                         f"{self.first_undecodable_line}")
        if self.wide_text_line:
            parts.append(f"line {self.wide_text_line} looks like UTF-16/32 text (every other byte NUL) in a file "
                         f"read as {self.encoding}; convert the file to one encoding (iconv)")
        return "; ".join(parts) or None

    def info(self) -> dict:
        out: dict = {"lines": self.lines, "encoding": self.encoding}
        if self.compression:
            out["compression"] = self.compression
        if self.nul_bytes:
            out["nul_bytes"] = self.nul_bytes
            out["first_nul_line"] = self.first_nul_line
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def chunks(self, chunk: int = CHUNK) -> Iterator[str]:
        """Decoded text (newlines normalized to \\n), chunk by chunk. Problems are recorded on the
        source, not raised (OSError from opening the file is left to the caller)."""
        with self.path.open("rb") as fh:
            head = fh.read(SNIFF)
            self.compression = compression(head)
            if self.compression:
                fh.seek(0)
                head = _Inflate(fh, self.compression).read(SNIFF) or b""
        self.encoding = sniff_encoding(head)
        if self.encoding.startswith("utf-16"):
            self.utf16_order = ("be" if self.encoding.endswith("be") or head.startswith(codecs.BOM_UTF16_BE)
                                else "le")
        _counter.bad = 0
        with self.path.open("rb") as raw:
            inflate = _Inflate(raw, self.compression) if self.compression else None
            binary = io.BufferedReader(inflate) if inflate else raw
            text = io.TextIOWrapper(binary, encoding=self.encoding, errors="pt-logscan-count", newline=None)  # type: ignore[arg-type]
            line = 1
            while True:
                before = _counter.bad
                try:
                    data = text.read(chunk)
                except OSError as e:  # I/O error in the middle of the file
                    self.read_error, self.read_error_line = f"read error: {e.strerror or e}", self.lines
                    return
                self.undecodable += _counter.bad - before
                # TextIOWrapper decodes ahead: the error may be counted one read before its U+FFFD shows
                if self.undecodable and self.first_undecodable_line is None and (i := data.find("\ufffd")) >= 0:
                    self.first_undecodable_line = line + data.count("\n", 0, i)
                if not data:
                    break
                nul = data.count("\0")
                if nul:
                    if not self.nul_bytes:
                        self.first_nul_line = line + data.count("\n", 0, data.find("\0"))
                    self.nul_bytes += nul
                    if self.wide_text_line is None and self.encoding.startswith("utf-8"):
                        self.wide_text_line = _wide_line(data, line)
                line += data.count("\n")
                self.lines = line - 1 + (0 if data.endswith("\n") else 1)
                yield data
            if self.undecodable and self.first_undecodable_line is None:
                self.first_undecodable_line = max(self.lines, 1)
            if inflate is not None and inflate.error:
                self.read_error, self.read_error_line = inflate.error, self.lines


# A UTF-16 code unit whose two bytes are both printable ASCII (or tab/newline/CR): what 8-bit text
# (UTF-8/ASCII appended to a UTF-16 file by another writer) turns into when read as UTF-16.
_PAIR = "".join(f"{chr(h << 8 | 0x09)}-{chr(h << 8 | 0x7E)}" for h in range(0x09, 0x7F) if h << 8 | 0x09 >= 0x100)
NARROW_IN_UTF16 = re.compile(f"[{_PAIR}]{{8,}}")


def narrow_views(data: str, order: str) -> list[tuple[int, str]]:
    """(offset in `data`, text) for every run of 8+ such code units, re-read as 8-bit text: the
    scanner scans these too, so a secret in a UTF-8 tail of a UTF-16 file is not missed."""
    codec = "utf-16-le" if order == "le" else "utf-16-be"
    return [(m.start(), m.group().encode(codec, "surrogatepass").decode("latin-1"))
            for m in NARROW_IN_UTF16.finditer(data)]


def _wide_line(data: str, first_line: int) -> int | None:
    """The first line where at least a third of the characters (8 or more) are NUL: text in a
    wider encoding that the sniffer did not see at the start of the file."""
    for i, ln in enumerate(data.split("\n")):
        n = ln.count("\0")
        if n >= 8 and 3 * n >= len(ln):
            return first_line + i
    return None


def open_text(path: str | Path) -> TextSource:
    return TextSource(Path(path))
