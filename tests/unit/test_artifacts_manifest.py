"""Local manifests: hashing, tree rules, SHA256SUMS accepted by the real sha256sum."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tracemalloc

import pytest

from pipeline_tools.core.errors import PtError, UsageError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.ops import manifest as mf


def _tree(root, files: dict[str, bytes]):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_hashes_sizes_and_posix_paths(tmp_path):
    data = {"a.txt": b"alpha", "sub/dir/b.bin": os.urandom(3 << 20), "empty": b""}
    m = mf.build(_tree(tmp_path, data), workers=3)
    assert [e.path for e in m.files] == ["a.txt", "empty", "sub/dir/b.bin"]
    for e in m.files:
        assert e.sha256 == hashlib.sha256(data[e.path]).hexdigest()
        assert e.size == len(data[e.path])
    assert m.total_bytes == sum(map(len, data.values()))


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs GNU sha256sum")
def test_sha256sums_is_accepted_by_sha256sum(tmp_path):
    names = ["plain.txt", "with space.bin", "ünïcødé/模型.pt", "back\\slash", "new\nline", "deep/a/b/c.json"]
    root = _tree(tmp_path / "t", {n: n.encode() * 100 for n in names})
    man, sums = mf.write(mf.build(root), root / mf.MANIFEST_NAME)
    ok = subprocess.run(["sha256sum", "--strict", "-c", sums.name], cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK") == len(names)
    (root / "plain.txt").write_bytes(b"tampered")
    bad = subprocess.run(["sha256sum", "-c", sums.name], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 1 and "plain.txt: FAILED" in bad.stdout
    # the manifest round-trips and excludes its own files when the tree is hashed again
    again = mf.build(root)
    assert mf.MANIFEST_NAME not in again.by_path and mf.SUMS_NAME not in again.by_path
    assert json.loads(man.read_text())["file_count"] == len(names)


def test_reserved_names_only_at_root(tmp_path):
    root = _tree(tmp_path, {"manifest.json": b"{}", "SHA256SUMS": b"", "sub/manifest.json": b"{}"})
    assert [e.path for e in mf.build(root).files] == ["sub/manifest.json"]


def test_symlinks_followed_only_inside_the_tree(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    root = _tree(tmp_path / "t", {"real/data.bin": b"payload"})
    (root / "inside-link").symlink_to("real/data.bin")
    (root / "outside-link").symlink_to(outside)
    (root / "dangling").symlink_to("nope")
    (root / "dirlink").symlink_to("real", target_is_directory=True)
    warnings: list[str] = []
    m = mf.build(root, warn=warnings.append)
    assert [e.path for e in m.files] == ["inside-link", "real/data.bin"]
    assert m.by_path["inside-link"].sha256 == hashlib.sha256(b"payload").hexdigest()
    reasons = {s.path: s.reason for s in m.skipped}
    assert "outside" in reasons["outside-link"]
    assert reasons["dangling"] == "dangling symlink"
    assert "directory" in reasons["dirlink"]
    assert len(warnings) == 3 and all(w.startswith("skipped ") for w in warnings)


def test_fifo_is_skipped_with_a_warning_not_read(tmp_path):
    root = _tree(tmp_path, {"a": b"x"})
    os.mkfifo(root / "pipe")
    warnings: list[str] = []
    m = mf.build(root, warn=warnings.append)  # would block forever if the FIFO were opened
    assert [e.path for e in m.files] == ["a"]
    assert warnings == ["skipped pipe: FIFO (not a regular file)"]


def test_non_utf8_names_are_an_error_naming_the_bytes(tmp_path):
    root = _tree(tmp_path, {"ok.txt": b"x"})
    bad = os.path.join(os.fsencode(root), b"caf\xe9.bin")
    with open(bad, "wb") as fh:
        fh.write(b"latin-1 name")
    with pytest.raises(UsageError) as e:
        mf.build(root)
    assert "caf\\xe9.bin" in e.value.message and "not valid UTF-8" in e.value.message
    assert "rename" in e.value.hint


def test_huge_file_hashes_with_bounded_memory(tmp_path):
    big = tmp_path / "huge.bin"
    with open(big, "wb") as fh:  # sparse: 192 MiB on disk costs nothing
        fh.truncate(192 << 20)
    tracemalloc.start()
    try:
        digest, size = mf.hash_file(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == 192 << 20
    assert digest == "46b23b74b0d431993099b9ccef75ac4e30dc48305089aa236b6ff1de97fed713"
    assert peak < 4 * mf.BUFSIZE, f"peak {peak} bytes"


def test_manifest_rejects_unsafe_paths_and_foreign_documents():
    good = {"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "0" * 64}]}
    assert mf.Manifest.from_json(json.dumps(good), "x").files[0].path == "a"
    for path in ("../evil", "/etc/passwd", "a/../../b", "a//b", ""):
        doc = {"format": mf.FORMAT, "files": [{"path": path, "size": 1, "sha256": "0" * 64}]}
        with pytest.raises(PtError, match="unsafe path"):
            mf.Manifest.from_json(json.dumps(doc), "remote")
    with pytest.raises(PtError, match="not a pt artifacts manifest"):
        mf.Manifest.from_json('{"files": []}', "remote")
    with pytest.raises(PtError, match="bad sha256"):
        mf.Manifest.from_json(json.dumps({"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "zz"}]}),
                              "remote")


def test_progress_lines_are_rate_limited():
    now = [0.0]
    lines: list[str] = []
    t = mf.Ticker(lines.append, lambda: now[0], "hashed", 10, 10 << 20, every=2.0)
    for _ in range(10):
        now[0] += 0.5
        t.add(1 << 20)
    t.done()
    assert lines[0].startswith("hashed 4/10 files, 4.0 MiB/10.0 MiB")
    assert len(lines) == 3 and lines[-1].startswith("hashed 10/10")


def test_verify_local_finds_changed_missing_and_extra_files(tmp_path):
    root = _tree(tmp_path, {"a": b"1", "b": b"2", "c": b"3"})
    mf.write(mf.build(root), root / mf.MANIFEST_NAME)
    assert art.verify_local(root)["ok"]
    (root / "a").write_bytes(b"changed")
    (root / "b").unlink()
    (root / "d").write_bytes(b"new")
    report = art.verify_local(root)
    assert not report["ok"]
    assert {(p["path"], p["problem"]) for p in report["problems"]} == {
        ("a", "checksum"), ("b", "missing"), ("d", "not in manifest")}


def test_s3_urls_and_keys():
    loc = art.parse_s3_url("s3://vendor-drop/models/iris/")
    assert loc == art.Location("vendor-drop", "models/iris")
    assert loc.key("a/b.bin") == "models/iris/a/b.bin" and loc.manifest_key == "models/iris/manifest.json"
    assert art.Location.of("b", "").key("x") == "x"
    for bad in ("vendor-drop/x", "s3://", "s3:///x"):
        with pytest.raises(UsageError):
            art.parse_s3_url(bad)
