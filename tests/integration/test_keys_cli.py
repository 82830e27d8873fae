"""Every option that names an S3 prefix refuses '.', '..', empty segments and a leading '/'
(exit 2, one line) before anything is written (moto server)."""

from __future__ import annotations

import pytest

from .conftest_ops import seed_log_group, write_config

BUCKETS = ["iris-val-artifacts", "iris-staging-artifacts", "arch-bucket"]

# (id, argv after `pt`, exit code, the one error line must contain)
ROWS = [
    ("push-prefix", ["artifacts", "push", "{src}", "--stage", "val", "--prefix", "../escape"], 2,
     "--prefix '../escape': has a '..' segment"),
    ("push-prefix-leading-slash", ["artifacts", "push", "{src}", "--stage", "val", "--prefix", "/abs/x"], 2,
     "--prefix '/abs/x': starts with '/'"),
    ("push-prefix-empty-segment", ["artifacts", "push", "{src}", "--stage", "val", "--prefix", "a//b"], 2,
     "--prefix 'a//b': has an empty segment"),
    ("push-prefix-dot", ["artifacts", "push", "{src}", "--stage", "val", "--prefix", "a/./b"], 2,
     "--prefix 'a/./b': has a '.' segment"),
    ("pull-prefix", ["artifacts", "pull", "{dst}", "--stage", "val", "--prefix", "a/../.."], 2,
     "--prefix 'a/../..': has a '..' segment"),
    ("verify-prefix", ["artifacts", "verify", "--stage", "val", "--prefix", ".."], 2,
     "--prefix '..': has a '..' segment"),
    ("copy-to-prefix", ["artifacts", "copy", "--from-stage", "val", "--prefix", "set", "--to-stage", "staging",
                        "--to-prefix", "../../x"], 2, "--to-prefix '../../x': has a '..' segment"),
    ("copy-to-url", ["artifacts", "copy", "--from-stage", "val", "--prefix", "set", "--to", "s3://arch-bucket/../.."],
     2, "--to s3://arch-bucket/…: prefix '../..': has a '..' segment"),
    ("logs-archive-to", ["logs", "archive", "--stage", "val", "--to", "s3://arch-bucket/a/../../b"], 2,
     "--to s3://arch-bucket/…: prefix 'a/../../b': has a '..' segment"),
    ("teardown-archive-to", ["teardown", "--stage", "val", "--yes", "--archive-to", "s3://arch-bucket/../x"], 2,
     "--archive-to s3://arch-bucket/…: prefix '../x': has a '..' segment"),
]


@pytest.fixture
def env(aws, tmp_path):
    s3 = aws.client("s3")
    for b in BUCKETS:
        s3.create_bucket(Bucket=b)
    src = tmp_path / "model"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 100)
    seed_log_group(aws, "/aws/lambda/iris-val-predict", ["hello"])
    return {"cfg": write_config(tmp_path), "src": src, "dst": tmp_path / "out", "s3": s3}


@pytest.mark.parametrize("argv, code, needle", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_traversal_is_refused_everywhere(env, run_pt, argv, code, needle):
    if argv[:2] == ["artifacts", "copy"]:  # a real set to copy, so only the destination can be wrong
        assert run_pt("artifacts", "push", env["src"], "--stage", "val", "--prefix", "set",
                      "--config", env["cfg"]).exit_code == 0
    before = {b: _keys(env["s3"], b) for b in BUCKETS}
    args = [a.format(src=env["src"], dst=env["dst"]) for a in argv]
    r = run_pt(*args, "--config", env["cfg"])
    assert r.exit_code == code, r
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], r
    assert "Traceback" not in r.stderr
    assert {b: _keys(env["s3"], b) for b in BUCKETS} == before  # nothing written anywhere
    assert not env["dst"].exists()


def _keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
