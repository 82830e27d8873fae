"""The content tag: what changes it, what must not, and bounded memory on big contexts."""

from __future__ import annotations

import io
import os
import random
import tarfile
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_tools.images import buildctx
from pipeline_tools.images.buildctx import base_images, build_tag, content_digest, scan, write_tar

ROOT = Path(__file__).resolve().parents[2]

names = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))
paths = st.lists(names, min_size=1, max_size=3).map("/".join)
trees = st.dictionaries(paths, st.binary(max_size=64), min_size=1, max_size=8).filter(
    lambda d: not any(a != b and b.startswith(a + "/") for a in d for b in d))


def make(root: Path, files: dict[str, bytes], order_seed: int = 0, mtime: int | None = None) -> None:
    items = list(files.items())
    random.Random(order_seed).shuffle(items)
    for rel, data in items:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")


def tag_of(root: Path, **kw) -> str:
    ctx = scan(root, root / "Dockerfile")
    args = dict(build_args=kw.get("build_args", {}), target=kw.get("target"), platform=kw.get("platform"),
                bases=kw.get("bases", {}))
    return build_tag(content_digest(ctx), ctx.dockerfile_bytes, **args)


settings_ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings_
@given(files=trees, seed=st.integers(0, 1000), t1=st.integers(10**8, 2 * 10**9), t2=st.integers(10**8, 2 * 10**9))
def test_order_and_mtime_do_not_change_the_tag(tmp_path_factory, files, seed, t1, t2):
    a = tmp_path_factory.mktemp("a")
    b = tmp_path_factory.mktemp("b")
    make(a, files, order_seed=0, mtime=t1)
    make(b, files, order_seed=seed, mtime=t2)
    assert tag_of(a) == tag_of(b)


@settings_
@given(files=trees, data=st.data())
def test_any_content_change_changes_the_tag(tmp_path_factory, files, data):
    a = tmp_path_factory.mktemp("a")
    make(a, files)
    before = tag_of(a)
    rel = data.draw(st.sampled_from(sorted(files)))
    new = data.draw(st.binary(max_size=64).filter(lambda b: b != files[rel]))
    (a / rel).write_bytes(new)
    assert tag_of(a) != before


def test_rename_mode_and_new_files_change_the_tag(tmp_path):
    make(tmp_path, {"a.txt": b"x", "dir/b.txt": b"y"})
    t0 = tag_of(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "c.txt")
    t1 = tag_of(tmp_path)
    os.chmod(tmp_path / "c.txt", 0o755)
    t2 = tag_of(tmp_path)
    (tmp_path / "empty").mkdir()
    t3 = tag_of(tmp_path)
    (tmp_path / "link").symlink_to("c.txt")
    t4 = tag_of(tmp_path)
    assert len({t0, t1, t2, t3, t4}) == 5


def test_moving_bytes_between_files_changes_the_tag(tmp_path):
    make(tmp_path, {"a": b"xy", "b": b""})
    t0 = tag_of(tmp_path)
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "b").write_bytes(b"y")
    assert tag_of(tmp_path) != t0


def test_ignored_files_do_not_change_the_tag(tmp_path):
    make(tmp_path, {"app.py": b"x", "notes.log": b"1", "cache/x": b"2"})
    (tmp_path / ".dockerignore").write_text("*.log\ncache\n")
    t0 = tag_of(tmp_path)
    (tmp_path / "notes.log").write_bytes(b"changed")
    (tmp_path / "cache" / "y").write_bytes(b"new")
    assert tag_of(tmp_path) == t0
    (tmp_path / ".dockerignore").write_text("*.log\n")  # the ignore file itself is context
    assert tag_of(tmp_path) != t0


def test_build_inputs_change_the_tag(tmp_path):
    make(tmp_path, {"app.py": b"x"})
    base = tag_of(tmp_path, build_args={"A": "1", "B": "2"})
    assert base == tag_of(tmp_path, build_args={"B": "2", "A": "1"})  # arg order is irrelevant
    variants = {
        tag_of(tmp_path, build_args={"A": "1", "B": "3"}),
        tag_of(tmp_path, build_args={"A": "1"}),
        tag_of(tmp_path, build_args={"A": "1", "B": "2"}, target="prod"),
        tag_of(tmp_path, build_args={"A": "1", "B": "2"}, platform="linux/arm64"),
        tag_of(tmp_path, build_args={"A": "1", "B": "2"}, bases={"py:3.11": "sha256:aa"}),
        tag_of(tmp_path, build_args={"A": "1", "B": "2"}, bases={"py:3.11": "sha256:bb"}),
    }
    assert base not in variants and len(variants) == 6
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY . /app/\n")
    assert tag_of(tmp_path, build_args={"A": "1", "B": "2"}) != base
    assert base.startswith("pt-") and len(base) == 35


def test_from_lines_resolve_global_args():
    text = """# syntax comment
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.11
ARG OTHER
FROM ${BASE_IMAGE} AS build
RUN echo hi
FROM --platform=linux/amd64 build
FROM scratch
FROM python:${PYV:-3.12}-slim
FROM \\
  registry.example.com/x@sha256:abc
"""
    assert base_images(text, {}) == ["public.ecr.aws/lambda/python:3.11", "python:3.12-slim",
                                     "registry.example.com/x@sha256:abc"]
    # build args override declared ARGs only (PYV is not declared: docker ignores it too)
    assert base_images(text, {"BASE_IMAGE": "pt-local/lambda-python:3.11", "PYV": "3.10"})[:2] == [
        "pt-local/lambda-python:3.11", "python:3.12-slim"]


def test_tar_holds_exactly_the_hashed_files(tmp_path):
    make(tmp_path, {"app.py": b"x", "skip.log": b"1", "sub/m.py": b"m"})
    (tmp_path / ".dockerignore").write_text("*.log\n")
    ctx = scan(tmp_path, tmp_path / "Dockerfile")
    buf = io.BytesIO()
    df_name = write_tar(ctx, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {e.path for e in ctx.entries}
        assert members["app.py"].uid == 0 and members["app.py"].uname == ""
        assert tar.extractfile("sub/m.py").read() == b"m"
    assert df_name == "Dockerfile"


def test_dockerfile_outside_context_is_added_and_dropped_again(tmp_path):
    ctx_dir = tmp_path / "ctx"
    make(ctx_dir, {"app.py": b"x"})
    (ctx_dir / "Dockerfile").unlink()
    outside = tmp_path / "docker" / "Dockerfile"
    outside.parent.mkdir()
    outside.write_text("FROM scratch\n")
    ctx = scan(ctx_dir, outside)
    buf = io.BytesIO()
    df_name = write_tar(ctx, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names_ = set(tar.getnames())
        ignore = tar.extractfile(".dockerignore").read().decode().split()
    assert df_name.startswith(".dockerfile.") and df_name in names_
    # the daemon removes files matched by .dockerignore after reading them: neither lands in the image
    assert df_name in ignore and ".dockerignore" in ignore


def test_dockerfile_excluded_by_dockerignore_is_still_sent(tmp_path):
    make(tmp_path, {"app.py": b"x"})
    (tmp_path / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    ctx = scan(tmp_path, tmp_path / "Dockerfile")
    assert {e.path for e in ctx.entries} == {"app.py"}
    buf = io.BytesIO()
    assert write_tar(ctx, buf) == "Dockerfile"
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        assert set(tar.getnames()) == {"app.py", "Dockerfile", ".dockerignore"}


def test_huge_context_hashes_and_tars_in_bounded_memory(tmp_path):
    make(tmp_path, {})
    big = tmp_path / "weights.bin"
    with open(big, "wb") as fh:
        fh.truncate(96 * 1024 * 1024)  # sparse: cheap to create, 96 MiB to read
    ctx = scan(tmp_path, tmp_path / "Dockerfile")
    seen = []
    tracemalloc.start()
    try:
        content_digest(ctx, progress=seen.append)
        with open(os.devnull, "wb") as sink:
            write_tar(ctx, sink)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert seen[-1] == ctx.total_bytes > 96 * 1024 * 1024 and len(seen) >= 96  # progress per chunk


def test_missing_context_and_dockerfile_are_usage_errors(tmp_path):
    import pytest

    from pipeline_tools.core.errors import UsageError

    with pytest.raises(UsageError, match=r"build context .* does not exist"):
        scan(tmp_path / "nope", tmp_path / "Dockerfile")
    with pytest.raises(UsageError, match=r"Dockerfile .* not found"):
        scan(tmp_path, tmp_path / "Dockerfile")


def test_model_dockerfile_template_stays_equal():
    """`pt init` writes pipeline_tools/infra/templates/Dockerfile: it must be docker/model/Dockerfile."""
    assert (ROOT / "pipeline_tools" / "infra" / "templates" / "Dockerfile").read_bytes() == \
        (ROOT / "docker" / "model" / "Dockerfile").read_bytes()
    assert buildctx.base_images((ROOT / "docker" / "model" / "Dockerfile").read_text(), {}) == [
        "public.ecr.aws/lambda/python:3.11"]


def test_hash_progress_is_throttled():
    from pipeline_tools.images.images import _throttled

    now = [0.0]
    lines: list[str] = []
    progress = _throttled(lines.append, "m: hashing context", lambda: now[0], every=2.0)
    for i in range(1, 11):
        now[0] = i * 0.5
        progress(i * 100_000_000)
    assert lines == ["m: hashing context: 400 MB (200 MB/s)", "m: hashing context: 800 MB (200 MB/s)"]
