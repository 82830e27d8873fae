"""The manifest of a tree with awkward names is the same whichever way it is hashed, and byte for
byte what the plain-json reference gives: the fast paths (scandir walk on tuples, one read per small
file, json's C string escaper) change nothing a reader of manifest.json or SHA256SUMS sees."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import pytest

from pipeline_tools.ops import manifest as mf

NAMES = ["a b.txt", "a-b", "a.b", "a/b", "A", "Z", "a0", "é.txt", "e\u0301.txt", "日本語/ファイル.bin",
         "emoji-🙂.bin", "back\\slash", "new\nline", "cr\rname", 'quote"d', "tab\tname", "ctrl\x01x",
         "sub/manifest.json", "sub/SHA256SUMS", "z/y/x/w/deep.bin", "big.bin", "empty"]


@pytest.fixture(name="tree")
def tree_fixture(tmp_path):
    root = tmp_path / "tricky"
    for i, name in enumerate(NAMES):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        data = b"" if name == "empty" else (os.urandom(mf.SMALL_FILE + 99) if name == "big.bin"
                                             else f"{i}:{name!r}".encode() * (i + 1))
        p.write_bytes(data)
    (root / "manifest.json").write_text("{}")  # pt's own files at the root: never in the set
    (root / "SHA256SUMS").write_text("x")
    (root / "emptydir").mkdir()
    os.symlink("a0", root / "link-a0")
    os.symlink("z", root / "link-dir")
    os.symlink("/etc/hostname", root / "link-out")
    os.symlink("nowhere", root / "link-dangling")
    os.mkfifo(root / "fifo")
    return root


def _reference(root) -> dict[str, tuple[int, str]]:
    out = {}
    for name in NAMES + ["link-a0"]:
        data = (root / name).read_bytes()
        out[name] = (len(data), hashlib.sha256(data).hexdigest())
    return out


@pytest.mark.parametrize("kw", [{"jobs": 1}, {"jobs": 2}, {"workers": 4}, {}])
def test_tricky_names_give_the_reference_manifest(tree, kw):
    m = mf.build(tree, **kw)
    ref = _reference(tree)
    assert [e.path for e in m.files] == sorted(ref)  # code-point order of the whole path
    assert {e.path: (e.size, e.sha256) for e in m.files} == ref
    assert [(s.path, s.reason) for s in m.skipped] == [
        ("fifo", "FIFO (not a regular file)"), ("link-dangling", "dangling symlink"),
        ("link-dir", "symlink to a directory (not followed)"),
        ("link-out", "symlink pointing outside the tree (not followed)")]
    # manifest.json is exactly json.dumps(indent=1, ensure_ascii=False) of the document
    assert m.to_json() == (json.dumps(m.to_dict(), indent=1, ensure_ascii=False) + "\n").encode()
    assert mf.Manifest.from_json(m.to_json(), "m").files == m.files


def test_entries_are_ordinary_file_entries(tree):
    m = mf.build(tree, jobs=1)
    e = m.by_path["a.b"]
    assert e == mf.FileEntry("a.b", e.size, e.sha256) and hash(e) == hash(mf.FileEntry("a.b", e.size, e.sha256))
    with pytest.raises(AttributeError):
        e.size = 1  # type: ignore[misc]  # still frozen


def test_sha256sums_escapes_like_gnu(tree):
    sums = mf.build(tree, jobs=1).sha256sums().decode()
    lines = sums.splitlines()
    assert len(lines) == len(NAMES) + 1
    assert any(line.startswith("\\") and line.endswith(" *new\\nline") for line in lines)
    assert any(line.startswith("\\") and line.endswith(" *back\\\\slash") for line in lines)
    assert any(line.endswith(" *tab\tname") and not line.startswith("\\") for line in lines)


def test_a_tree_deeper_than_the_recursion_limit(tmp_path):
    depth = sys.getrecursionlimit() + 50
    root = str(tmp_path / "deep")
    p = root
    os.mkdir(p)
    for _ in range(depth):
        p += "/d"
        os.mkdir(p)
    with open(p + "/leaf", "wb") as fh:
        fh.write(b"leaf")
    try:
        m = mf.build(root, jobs=1)
        assert [e.path for e in m.files] == ["d/" * depth + "leaf"]
    finally:  # bottom up: shutil.rmtree (pytest's tmp cleanup) recurses once per level
        os.unlink(p + "/leaf")
        while p != root:
            os.rmdir(p)
            p = p[:-2]
        os.rmdir(root)


def test_files_grown_or_shrunk_after_the_walk_are_hashed_as_they_are(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"0123456789")
    for expected in (-1, 3, 10, 50):  # -1: the walk did not stat; 3: it grew; 50: it shrank
        assert mf.hash_small(str(p), expected) == (hashlib.sha256(b"0123456789").hexdigest(), 10)
