"""Manifest hashing paths: in-thread (jobs=1), processes (--jobs N) and threads agree exactly,
including the tree rules the walk applies (symlinks, skipped entries, reserved names)."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from pipeline_tools.ops import manifest as mf

DATA = {
    "a.txt": b"alpha",
    "empty": b"",
    "sub/dir/b.bin": os.urandom(mf.SMALL_FILE + 12345),  # streamed path
    "sub/c": b"x" * mf.SMALL_FILE,  # exactly at the one-read limit
    **{f"many/f{i:03d}": f"file {i}".encode() for i in range(300)},
}


@pytest.fixture(name="tree")
def tree_fixture(tmp_path):
    root = tmp_path / "t"
    for rel, data in DATA.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "manifest.json").write_text("{}")  # pt's own file: never part of the set
    os.symlink("a.txt", root / "link-to-file")
    os.symlink("sub", root / "link-to-dir")
    os.symlink("/etc/hostname", root / "outside")
    return root


def _expected():
    out = {rel: (len(d), hashlib.sha256(d).hexdigest()) for rel, d in DATA.items()}
    out["link-to-file"] = out["a.txt"]
    return out


@pytest.mark.parametrize("kw", [{"jobs": 1}, {"jobs": 2}, {"workers": 1}, {"workers": 4}, {}])
def test_every_path_gives_the_same_manifest(tree, kw):
    m = mf.build(tree, **kw)
    assert {e.path: (e.size, e.sha256) for e in m.files} == _expected()
    assert [e.path for e in m.files] == sorted(_expected())
    assert {s.path: s.reason for s in m.skipped} == {
        "link-to-dir": "symlink to a directory (not followed)",
        "outside": "symlink pointing outside the tree (not followed)"}


def test_processes_are_safe_while_other_threads_run(tree):
    """push hashes in a background thread while boto3 loads: the pool must not fork then."""
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        m = mf.build(tree, jobs=2)
    finally:
        stop.set()
        t.join()
    assert {e.path: (e.size, e.sha256) for e in m.files} == _expected()


def test_a_file_that_grew_after_the_walk_is_hashed_whole(tmp_path):
    p = tmp_path / "grows"
    p.write_bytes(b"abc")
    with open(p, "ab") as fh:
        fh.write(b"more bytes than the walk saw")
    digest, size = mf.hash_small(str(p), 3)
    data = p.read_bytes()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_cli_jobs_writes_the_same_manifest(tree, tmp_path, run_pt):
    (tmp_path / "threads").mkdir()
    (tmp_path / "procs").mkdir()
    threads = mf.write(mf.build(tree), tmp_path / "threads" / "manifest.json")[0]
    r = run_pt("artifacts", "manifest", str(tree), "-o", str(tmp_path / "procs" / "manifest.json"), "--jobs", "0")
    assert r.exit_code == 0, r
    assert (tmp_path / "procs" / "manifest.json").read_bytes() == threads.read_bytes()
    bad = run_pt("artifacts", "manifest", str(tree), "--jobs", "-1")
    assert bad.exit_code == 2 and "--jobs" in bad.stderr
