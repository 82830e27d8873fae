"""S3 key builder (pipeline_tools/core/keys.py): refusals table and the "no key escapes its prefix"
invariant (hypothesis)."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_tools.core import keys
from pipeline_tools.core.errors import UsageError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.ops import logs as ops_logs

# (prefix as typed, normalized or None when refused, expected words in the message)
PREFIXES = [
    ("", "", None),
    ("models/iris/v3", "models/iris/v3", None),
    ("models/iris/v3/", "models/iris/v3", None),
    ("v1.2/a..b/.hidden", "v1.2/a..b/.hidden", None),  # dots inside a segment are fine
    ("../other", None, "has a '..' segment"),
    ("a/../../b", None, "has a '..' segment"),
    ("a/..", None, "has a '..' segment"),
    ("./a", None, "has a '.' segment"),
    ("a/./b", None, "has a '.' segment"),
    ("/abs", None, "starts with '/'"),
    ("a//b", None, "has an empty segment"),
    ("a//", None, "has an empty segment"),
    ("a\\..\\b", None, "contains a backslash"),
    ("a\x00b", None, "contains control character"),
    ("a\nb", None, "contains control character"),
    ("x" * 1025, None, "longer than 1024 bytes"),
]


@pytest.mark.parametrize("raw, norm, needle", PREFIXES, ids=[repr(r[0])[:30] for r in PREFIXES])
def test_prefix_table(raw, norm, needle):
    if norm is not None:
        assert keys.prefix(raw) == norm
        assert art.Location.of("b", raw).prefix == norm
        return
    with pytest.raises(UsageError) as ei:
        art.Location.of("b", raw, "--to-prefix")
    assert ei.value.exit_code == 2
    msg = ei.value.message
    assert msg.startswith("--to-prefix ") and needle in msg and "\n" not in msg and len(msg) < 300
    assert "no '.', '..' or empty segments" in ei.value.hint


@pytest.mark.parametrize("url, needle", [
    ("s3://bkt/../..", "--to s3://bkt/…: prefix '../..': has a '..' segment"),
    ("s3://bucket-a/x/../../etc", "has a '..' segment"),
    ("s3://bucket-a//x", "starts with '/'"),
    ("s3://bucket-a/x//y", "has an empty segment"),
    ("s3://bucket-a/./x", "has a '.' segment"),
    ("s3://..", "is not a valid S3 bucket name"),
    ("s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
    ("bucket/x", "expected s3://BUCKET[/PREFIX]"),
    ("s3://", "expected s3://BUCKET[/PREFIX]"),
    ("s3:///x", "is not a valid S3 bucket name"),
])
def test_s3_url_table(url, needle):
    for parse in (lambda u: art.parse_s3_url(u, "--to"), ops_logs.parse_s3_url):
        with pytest.raises(UsageError) as ei:
            parse(url)
        assert needle in ei.value.message and ei.value.exit_code == 2


def test_join_refuses_bad_parts():
    assert keys.join("p", "a/b.bin") == "p/a/b.bin"
    assert keys.join("", "a") == "a"
    for bad in ("../x", "a/../b", "/a", "a//b", "", "a/"):
        with pytest.raises(UsageError):
            keys.join("p", bad)
    with pytest.raises(UsageError):
        art.Location("b", "p").key("../escape")
    with pytest.raises(UsageError):
        ops_logs.join_key("p", "..", "x")


def test_log_group_slug_is_never_a_dot_segment():
    for group in ("/..", "..", "/.", "/aws/lambda/.."):
        slug = ops_logs._slug(group)
        assert ops_logs.join_key("arch", "logs", slug).startswith("arch/logs/")


_SEG = st.one_of(st.sampled_from(["", ".", "..", "a", "b.c", "..d", "/", "//", "\\", "x\x00"]),
                 st.text(alphabet="ab./\\", max_size=6))
_PATH = st.lists(_SEG, max_size=6).map("/".join)


@settings(max_examples=500)
@given(prefix=_PATH, parts=st.lists(_PATH, min_size=1, max_size=4))
def test_no_key_escapes_its_prefix(prefix, parts):
    """Whatever the input: either refused (UsageError) or a key that is the prefix + '/' + a path
    with no '.', '..' or empty segment — resolving it as a path changes nothing."""
    try:
        p = keys.prefix(prefix)
        key = keys.join(p, *parts)
    except UsageError:
        return
    assert posixpath.normpath(key) == key and not key.startswith("/")
    if p:
        assert key.startswith(p + "/") and len(key) > len(p) + 1
    assert all(seg not in ("", ".", "..") for seg in key.split("/"))


@settings(max_examples=300)
@given(prefix=_PATH)
def test_prefix_is_idempotent_and_canonical(prefix):
    try:
        p = keys.prefix(prefix)
    except UsageError:
        return
    assert keys.prefix(p) == p
    assert p == "" or posixpath.normpath(p) == p


@pytest.mark.parametrize("artifacts, needle", [
    ("models/../../{stage}", "sagemaker model_artifacts of stage staging 'models/../../staging': has a '..' segment"),
    ("s3://other-bucket/../x", "sagemaker model_artifacts of stage staging s3://other-bucket/…: prefix '../x'"),
    ("/models/{stage}", "sagemaker model_artifacts of stage staging '/models/staging': starts with '/'"),
])
def test_config_artifact_locations_are_checked_too(tmp_path, artifacts, needle):
    from pipeline_tools.core.config import load
    from pipeline_tools.targets import sagemaker

    p = tmp_path / "pipeline.yml"
    p.write_text(f"""\
project: cv
region: us-east-1
images:
  model: {{context: .}}
stages:
  staging: {{account: "111111111111", branch: integration, gate: {{alarms: ["cv-staging-*"]}}}}
targets:
  sagemaker: {{endpoint: vision, image: model, model_artifacts: "{artifacts}"}}
""")
    with pytest.raises(UsageError) as ei:
        sagemaker.artifacts_location(load(p), "staging")
    assert needle in ei.value.message and ei.value.exit_code == 2
