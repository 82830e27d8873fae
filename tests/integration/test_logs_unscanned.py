"""`pt logs scan` never reports clean on input it did not read (issue 18).

One row per kind of input: how it is written, the expected exit code, and a line that must be in
the output (the finding's place, or the "not scanned" reason). Files are scanned through the CLI
with --no-cloudwatch; log groups through moto server.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import sys
from pathlib import Path

import pytest

from .conftest_ops import seed_log_group, write_config

EMAIL = "jane.doe@example.com"
TEXT = f"first line\nuser {EMAIL} signed in\nlast line\n"


def _gz_corrupt(data: bytes) -> bytes:
    gz = bytearray(gzip.compress(data))
    mid = len(gz) // 2
    gz[mid:mid + 8] = b"\xff" * 8
    return bytes(gz)


def _long_line(at: int) -> str:
    return "x " * (at // 2) + EMAIL + " y" * 60000 + "\n"


# (id, files {name: bytes}, extra args, exit code, expected substring in stdout+stderr)
FILES = [
    ("utf16-bom", {"a.log": TEXT.encode("utf-16")}, [], 1, "a.log:2"),
    ("utf16le-no-bom", {"a.log": TEXT.encode("utf-16-le")}, [], 1, "a.log:2"),
    ("utf16be-no-bom", {"a.log": TEXT.encode("utf-16-be")}, [], 1, "a.log:2"),
    ("utf32-bom", {"a.log": TEXT.encode("utf-32")}, [], 1, "a.log:2"),
    ("utf32be-no-bom", {"a.log": TEXT.encode("utf-32-be")}, [], 1, "a.log:2"),
    ("plain-text-named-gz", {"a.log.gz": TEXT.encode()}, [], 1, "a.log.gz:2"),
    ("gzip-named-log", {"a.log": gzip.compress(TEXT.encode())}, [], 1, "a.log:2"),
    ("bzip2", {"a.log.1": bz2.compress(TEXT.encode())}, [], 1, "a.log.1:2"),
    ("xz", {"a.log.1": lzma.compress(TEXT.encode())}, [], 1, "a.log.1:2"),
    ("gzip-utf16", {"a.gz": gzip.compress(TEXT.encode("utf-16"))}, [], 1, "a.gz:2"),
    ("nul-byte-line-is-real", {"a.log": b"ok\nuser\0 " + EMAIL.encode() + b"\n"}, [], 1, "a.log:2"),
    ("nul-byte-clean-says-where", {"a.log": b"ok\nfine\0 here\nend\n"}, [], 0,
     "1 NUL byte(s), first at line 2 (scanned as text)"),
    ("long-line-match-at-window-edge", {"a.log": _long_line(64 * 1024 - 10).encode()}, [], 1, "a.log:1"),
    ("long-line-match-far-out", {"a.log": _long_line(300_000).encode()}, [], 1, "a.log:1"),
    ("utf16-after-utf8-head", {"a.log": b"plain head\n" * 500 + TEXT.encode("utf-16-le")}, [], 1,
     "NOT SCANNED {d}/a.log: line 501 looks like UTF-16/32 text (every other byte NUL) in a file read as utf-8"),
    ("utf8-after-utf16-head", {"a.log": "head line\n".encode("utf-16") + b"user jane.doe@example.com in\n"}, [], 1,
     "a.log:2  (8-bit text in a UTF-16 file) user [REDACTED:email] in"),
    ("truncated-gzip", {"a.log.gz": gzip.compress(("fine\n" * 20000).encode())[:-100]}, [], 1,
     "NOT SCANNED {d}/a.log.gz: read error: compressed stream is truncated after line"),
    ("truncated-gzip-findings-before-the-cut-kept", {"a.gz": gzip.compress((TEXT * 3000).encode())[:-50]}, [], 1,
     "a.gz:2"),
    ("corrupt-gzip", {"a.gz": _gz_corrupt(("fine\n" * 20000).encode())}, [], 1,
     "NOT SCANNED {d}/a.gz: read error: compressed stream is corrupt"),
    ("latin1-bytes", {"a.log": b"ok\nfine\ncaf\xe9 au lait\n"}, [], 1,
     "NOT SCANNED {d}/a.log: 1 byte(s) not valid utf-8, first at line 3"),
    ("latin1-bytes-allowed", {"a.log": b"ok\nfine\ncaf\xe9 au lait\n"}, ["--allow-unscanned"], 0,
     "accepted by --allow-unscanned"),
    ("random-binary", {"a.bin": bytes(range(128, 256)) * 4}, [], 1, "NOT SCANNED {d}/a.bin: 512 byte(s) not valid"),
    ("symlink-out-of-tree-in-dir", {"a.log": b"fine\n", "@a.link": "{tmp}/outside.log"}, [], 1,
     "NOT SCANNED {d}/a.link: symlink to a file outside the tree, not followed (pass it as --path to scan it)"),
    ("symlink-dir-out-of-tree", {"a.log": b"fine\n", "@sub": "{tmp}"}, [], 1,
     "NOT SCANNED {d}/sub: symlink to a directory outside the tree, not followed"),
    ("broken-symlink-in-dir", {"a.log": b"fine\n", "@gone.log": "{tmp}/nope.log"}, [], 1,
     "NOT SCANNED {d}/gone.log: broken symlink to"),
    ("fifo-in-dir", {"a.log": b"fine\n", "|pipe": ""}, [], 1, "NOT SCANNED {d}/pipe: not a regular file (fifo)"),
]


def _materialize(tmp_path: Path, files: dict) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    (tmp_path / "outside.log").write_text(f"secret {EMAIL}\n")
    for name, data in files.items():
        if name.startswith("@"):
            (d / name[1:]).symlink_to(data.format(tmp=tmp_path))
        elif name.startswith("|"):
            os.mkfifo(d / name[1:])
        else:
            (d / name).write_bytes(data)
    return d


@pytest.mark.parametrize("files, extra, code, needle", [r[1:] for r in FILES], ids=[r[0] for r in FILES])
def test_file_inputs(tmp_path, run_pt, files, extra, code, needle):
    cfg = write_config(tmp_path)
    d = _materialize(tmp_path, files)
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path", d, *extra)
    assert r.exit_code == code, r
    assert needle.format(d=d, tmp=tmp_path) in r.stdout + r.stderr, r
    assert EMAIL not in r.stdout + r.stderr
    if code == 1 and "NOT SCANNED" in needle:
        assert "NOT CLEAN" in r.stdout and "clean: nothing" not in r.stdout


# Paths given explicitly (not inside a directory)
def test_explicit_symlink_is_followed_with_a_warning(tmp_path, run_pt):
    cfg = write_config(tmp_path)
    (tmp_path / "real.log").write_text(TEXT)
    (tmp_path / "link.log").symlink_to(tmp_path / "real.log")
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path",
               tmp_path / "link.log", "--output", "json")
    assert r.exit_code == 1, r
    data = r.json()
    assert [f["where"] for f in data["findings"]] == [f"{tmp_path / 'link.log'}:2"]
    assert data["files"][str(tmp_path / "link.log")]["note"] == \
        f"symlink to {tmp_path / 'real.log'}, followed (given explicitly)"


@pytest.mark.parametrize("make, code, needle", [
    (lambda t: (t / "b.log").symlink_to(t / "nowhere"), 1, "NOT SCANNED {t}/b.log: broken symlink to {t}/nowhere"),
    (lambda t: os.mkfifo(t / "b.log"), 1, "NOT SCANNED {t}/b.log: not a regular file (fifo)"),
], ids=["broken-symlink", "fifo"])
def test_explicit_path_not_readable(tmp_path, run_pt, make, code, needle):
    cfg = write_config(tmp_path)
    make(tmp_path)
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path", tmp_path / "b.log",
               "--output", "json")
    assert r.exit_code == code, r
    assert needle.format(t=tmp_path).split(": ", 1)[1] in [u["reason"] for u in r.json()["unscanned"]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")
def test_file_that_fails_to_read_is_not_scanned(tmp_path, run_pt):
    # /proc/self/mem is a regular file whose read at offset 0 fails with EIO, even for root
    cfg = write_config(tmp_path)
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path", "/proc/self/mem")
    assert r.exit_code == 1, r
    assert "NOT SCANNED /proc/self/mem: cannot read: Input/output error" in r.stderr


# --- pattern files in other encodings -----------------------------------------------------------

PATTERNS = "- {name: order_id, regex: 'ORD-\\d{8}'}\n"


@pytest.mark.parametrize("data, code, needle", [
    (PATTERNS.encode("utf-16"), 1, "order_id"),
    (PATTERNS.encode("utf-16-le"), 1, "order_id"),
    (b"# caf\xe9\n" + PATTERNS.encode(), 2, "p.yml: not valid UTF-8 (byte 0xe9 at line 1)"),
    (b"# ok\n\n" + PATTERNS.encode() + b"- {name: b,\0 regex: 'y'}\n", 2,
     "p.yml: line 4: invalid YAML/JSON: a NUL byte"),
    (PATTERNS.encode() + b"- {name: b, regex: 'y'\n", 2, "p.yml: line 3: invalid YAML/JSON: expected ',' or '}'"),
], ids=["utf16-bom", "utf16-no-bom", "latin1-refused", "nul-byte-line", "syntax-error-line"])
def test_pattern_file_encodings(tmp_path, run_pt, data, code, needle):
    cfg = write_config(tmp_path)
    pats = tmp_path / "p.yml"
    pats.write_bytes(data)
    log = tmp_path / "a.log"
    log.write_text("order ORD-12345678 shipped\n")
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path", log,
               "--patterns", pats)
    assert r.exit_code == code, r
    assert needle in r.stdout + r.stderr
    if code == 2:
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in r.stderr


# --- CloudWatch (moto server) ---------------------------------------------------------------------

GROUPS = ["/aws/lambda/iris-val-predict", "/aws/lambda/iris-val-batch-score"]


@pytest.mark.parametrize("extra, code, needle", [
    (["--log-group", "/typo/app"], 1, "NOT SCANNED /typo/app: log group does not exist"),
    (["--log-group", "/typo/app", "--allow-unscanned"], 0, "accepted by --allow-unscanned"),
], ids=["missing-group", "missing-group-allowed"])
def test_missing_log_group(aws, tmp_path, run_pt, extra, code, needle):
    cfg = write_config(tmp_path)
    for g in GROUPS:
        seed_log_group(aws, g, ["all fine"])
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, *extra)
    assert r.exit_code == code, r
    assert needle in r.stdout + r.stderr
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, *extra, "--output", "json")
    assert r.json()["unscanned"] == [{"source": "cloudwatch", "input": "/typo/app",
                                      "reason": "log group does not exist"}]
    assert r.json()["clean"] is False


def test_long_cloudwatch_event_is_scanned_to_its_end(aws, tmp_path, run_pt):
    cfg = write_config(tmp_path)
    seed_log_group(aws, GROUPS[0], ["x " * 100_000 + EMAIL])  # 200 KB event, match at the end
    seed_log_group(aws, GROUPS[1], ["fine"])
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--output", "json")
    assert r.exit_code == 1, r
    assert [f["kind"] for f in r.json()["findings"]] == ["email"]


def test_github_outputs_and_summary_list_what_was_not_scanned(tmp_path, run_pt, monkeypatch):
    cfg = write_config(tmp_path)
    gh_out, summary = tmp_path / "out", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh_out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    log = tmp_path / "app.log.gz"
    log.write_bytes(gzip.compress(("fine\n" * 20000).encode())[:-100])
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg, "--no-cloudwatch", "--path", log)
    assert r.exit_code == 1, r
    assert "clean=false" in gh_out.read_text() and "unscanned=1" in gh_out.read_text()
    md = summary.read_text()
    assert "**1 input(s) not scanned**" in md and f"| {log} | read error: compressed stream is truncated" in md
