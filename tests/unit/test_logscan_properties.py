"""Invariants of the log scanner (hypothesis): it never reports clean on bytes it did not read,
and cutting a line into windows (or text into pieces) never hides a match."""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline_tools.ops import detectors, logread
from pipeline_tools.ops import logs as ops_logs

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _scan_bytes(tmp_path, data: bytes, name: str = "x.log") -> ops_logs.ScanReport:
    p = tmp_path / name
    p.write_bytes(data)
    return ops_logs.scan_paths([p])


def _decompress(data: bytes) -> bytes:
    kind = logread.compression(data)
    return {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}[kind](data) if kind else data


_CODECS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "latin-1"]
_WRAP = {"none": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}


@st.composite
def _near_valid(draw) -> bytes:
    """Text in some encoding, maybe with stray bytes inserted, maybe compressed, maybe cut short."""
    text = draw(st.text(max_size=800))
    body = text.encode(draw(st.sampled_from(_CODECS)), "replace")
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=3)) + body[at:]
    data = _WRAP[draw(st.sampled_from(list(_WRAP)))](body)
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return data


@SETTINGS
@given(data=st.one_of(st.binary(max_size=3000), _near_valid()))
def test_any_bytes_clean_only_if_every_byte_decodes(tmp_path, data):
    """Whatever the bytes: if the file is not reported as not scanned, then a strict decoder
    (independent of the scanner's counting) decodes all of them with the encoding reported."""
    rep = _scan_bytes(tmp_path, data)
    info = rep.files[str(tmp_path / "x.log")]
    if rep.unscanned:
        assert info["status"] == "not scanned" and info["reason"]
        return
    assert info["status"] == "scanned"
    _decompress(data).decode(info["encoding"])  # raises if any byte was not really decodable (or truncated)


@SETTINGS
@given(text=st.text(min_size=1, max_size=2000), codec=st.sampled_from(
    ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]),
    wrap=st.sampled_from(["none", "gzip", "bzip2", "xz"]))
def test_encoded_text_with_a_secret_is_always_found(tmp_path, text, codec, wrap):
    """An email appended to any text in any of the supported encodings (and compressions) is
    found, or the file is reported as not scanned: never clean."""
    body = (text + "\ncontact jane.doe@example.com now\n").encode(codec, "surrogatepass")
    data = {"none": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}[wrap](body)
    rep = _scan_bytes(tmp_path, data)
    assert not rep.clean
    assert rep.unscanned or "email" in [f.kind for f in rep.findings]


@SETTINGS
@given(head=st.text(alphabet=st.characters(codec="ascii", exclude_characters="\0"), max_size=6000),
       codec=st.sampled_from(["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]))
def test_wide_text_after_a_narrow_head_is_never_clean(tmp_path, head, codec):
    """The encoding is guessed from the first 4 KiB; text in UTF-16/32 after an ASCII head (two
    writers, one file) is reported as not scanned when the secret in it cannot be seen."""
    data = head.encode() + "\ncontact jane.doe@example.com now\n".encode(codec)
    rep = _scan_bytes(tmp_path, data)
    assert not rep.clean
    assert rep.unscanned or "email" in [f.kind for f in rep.findings]


@SETTINGS
@given(head=st.text(alphabet=st.characters(codec="ascii", exclude_characters="\0"), max_size=3000),
       codec=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be"]), pad=st.booleans())
def test_narrow_text_after_a_utf16_head_is_never_clean(tmp_path, head, codec, pad):
    """The other way round: a UTF-8 writer appending to a UTF-16 log. Read as UTF-16 those bytes
    look like CJK text; the scanner re-reads such runs as 8-bit text, so the secret is found."""
    tail = b"contact jane.doe@example.com now\n" + (b"x" if pad else b"")
    rep = _scan_bytes(tmp_path, (head + "\n").encode(codec) + tail)
    assert not rep.clean
    assert "email" in [f.kind for f in rep.findings] or rep.unscanned


@SETTINGS
@given(text=st.text(alphabet=st.characters(codec="ascii"), min_size=200, max_size=3000),
       cut=st.floats(min_value=0.0, max_value=0.999))
def test_truncated_gzip_is_never_clean(tmp_path, text, cut):
    gz = gzip.compress(text.encode())
    k = max(2, int(len(gz) * cut))  # keep the magic: below that it is not a gzip file at all
    assume(k < len(gz))
    rep = _scan_bytes(tmp_path, gz[:k], "x.gz")
    assert not rep.clean and not rep.ok
    assert rep.unscanned[0]["reason"].startswith("read error: compressed stream is")


@SETTINGS
@given(before=st.integers(0, 5000), after=st.integers(0, 2000), pieces=st.lists(st.integers(1, 900), max_size=30))
def test_a_match_anywhere_in_a_long_line_is_found_once(before, after, pieces):
    """Small windows (600/100/50) so that matches straddle window boundaries often; the text is
    fed in arbitrary pieces. The email is found exactly once, on line 2."""
    email = "jane.doe@example.com"
    text = "head\n" + "ab " * (before // 3) + email + " cd" * (after // 3) + "\nnext\n"
    sc = ops_logs.LineScanner(window=600, overlap=100, context=50)
    hits, pos = [], 0
    for n in pieces:
        hits += sc.feed(text[pos:pos + n])
        pos += n
    hits += sc.feed(text[pos:]) + sc.finish()
    assert [(h[0], h[1]) for h in hits] == [(2, "email")]


_TOKENS = st.sampled_from(["alpha", "beta", "x", "bob@example.org", "203.0.113.9", "+44 20 7946 0958",
                           "078-05-1120", "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", "v1.2.3.4", "12:30:45"])


@SETTINGS
@given(tokens=st.lists(_TOKENS, min_size=1, max_size=400), window=st.integers(300, 900))
def test_windowing_finds_what_one_pass_over_the_line_finds(tokens, window):
    line = " ".join(tokens)
    whole = Counter(h.kind for h in detectors.find(line))
    sc = ops_logs.LineScanner(window=window, overlap=64, context=40)
    got = Counter(k for _n, k, _e in sc.feed(line) + sc.finish())
    assert got == whole


@pytest.mark.parametrize("head, codec", [
    (codecs.BOM_UTF8 + b"abc", "utf-8-sig"),
    (codecs.BOM_UTF16_LE + "abc".encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + "abc".encode("utf-16-be"), "utf-16"),
    (codecs.BOM_UTF32_LE + "abc".encode("utf-32-le"), "utf-32"),
    (codecs.BOM_UTF32_BE + "abc".encode("utf-32-be"), "utf-32"),
    ("hello world".encode("utf-16-le"), "utf-16-le"),
    ("hello world".encode("utf-16-be"), "utf-16-be"),
    ("hello world".encode("utf-32-le"), "utf-32-le"),
    ("hello world".encode("utf-32-be"), "utf-32-be"),
    (b"plain\0text with a stray nul", "utf-8"),
    (b"", "utf-8"),
])
def test_sniff_encoding(head, codec):
    assert logread.sniff_encoding(head) == codec


def test_window_arguments_are_checked():
    with pytest.raises(ValueError):
        ops_logs.LineScanner(window=100, overlap=90, context=20)


@SETTINGS
@given(before=st.integers(0, 3000), chunk=st.sampled_from([7, 100, 4096, 1 << 20]))
def test_the_first_undecodable_byte_is_reported_on_its_line(tmp_path, before, chunk):
    p = tmp_path / "x.log"
    p.write_bytes(b"fine line\n" * before + b"caf\xe9 au lait\n" + b"after\n" * 3)
    src = logread.open_text(p)
    assert "".join(src.chunks(chunk)).count("\n") == before + 4
    assert src.undecodable == 1 and src.first_undecodable_line == before + 1
    assert src.problem == f"1 byte(s) not valid utf-8, first at line {before + 1}"
