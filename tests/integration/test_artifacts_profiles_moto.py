"""`pt artifacts copy --source-profile P --dest-profile Q`: two credential sets, each reaching its own
moto server (so no one credential can read the source and write the destination), objects streamed
through pt and hashed, the destination verified against the manifest."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest

from pipeline_tools.core.errors import PtError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.ops import manifest as mf
from tests.conftest import EXAMPLE_CONFIG, free_port, reset_moto

SRC_BUCKET, DST_BUCKET = "iris-staging-artifacts", "vendor-inbox"


@pytest.fixture(scope="module")
def other_server():
    """A second moto server in its own process: its state is not shared with the main one (moto
    servers in one process share their backends)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("second moto server did not start") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def client(url: str, key: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=key + "-secret")


@pytest.fixture
def two(aws, other_server, tmp_path, monkeypatch):
    """Source set pushed to the main moto server; destination bucket on the other; profiles for each."""
    reset_moto(other_server)
    src_url = aws.endpoint
    src, dst = client(src_url, "AKIASOURCE"), client(other_server, "AKIADEST")
    src.create_bucket(Bucket=SRC_BUCKET)
    dst.create_bucket(Bucket=DST_BUCKET)
    root = tmp_path / "set"
    for i in range(6):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 2}" / f"f{i}.bin").write_bytes(hashlib.sha256(str(i).encode()).digest() * (50 + i))
    art.push(src, root, art.Location(SRC_BUCKET, "run1"))
    cfg_file = tmp_path / "aws-config"
    cfg_file.write_text(f"""[profile src]
region = us-east-1
endpoint_url = {src_url}
aws_access_key_id = AKIASOURCE
aws_secret_access_key = AKIASOURCE-secret

[profile dst]
region = us-east-1
endpoint_url = {other_server}
aws_access_key_id = AKIADEST
aws_secret_access_key = AKIADEST-secret
""")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(cfg_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    for var in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    pipeline = tmp_path / "pipeline.yml"
    shutil.copy(EXAMPLE_CONFIG, pipeline)
    return {"src": src, "dst": dst, "root": root, "config": str(pipeline)}


def test_copy_between_two_credential_sets_streams_and_verifies(two, run_pt):
    r = run_pt("artifacts", "copy", "--config", two["config"], "--from-stage", "staging", "--prefix", "run1",
               "--to", f"s3://{DST_BUCKET}/in", "--source-profile", "src", "--dest-profile", "dst", "--output", "json")
    assert r.exit_code == 0, r
    rep = r.json()
    assert rep["method"] == "stream" and rep["copied"] == 6 and rep["destination_verified"] is True
    local = mf.build(two["root"])
    for e in local.files:
        body = two["dst"].get_object(Bucket=DST_BUCKET, Key=f"in/{e.path}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == e.sha256
    assert art.get_manifest(two["dst"], art.Location(DST_BUCKET, "in")).by_path == local.by_path
    # each credential set saw only its own side
    assert [b["Name"] for b in two["src"].list_buckets()["Buckets"]] == [SRC_BUCKET]
    assert [b["Name"] for b in two["dst"].list_buckets()["Buckets"]] == [DST_BUCKET]
    again = run_pt("artifacts", "copy", "--config", two["config"], "--from-stage", "staging", "--prefix", "run1",
                   "--to", f"s3://{DST_BUCKET}/in", "--source-profile", "src", "--dest-profile", "dst",
                   "--output", "json")
    assert again.exit_code == 0 and again.json()["copied"] == 0 and again.json()["already_there"] == 6


def test_unknown_profile_is_a_usage_error(two, run_pt):
    r = run_pt("artifacts", "copy", "--config", two["config"], "--from-stage", "staging", "--prefix", "run1",
               "--to", f"s3://{DST_BUCKET}/in", "--source-profile", "nope", "--dest-profile", "dst")
    assert r.exit_code == 2 and "nope" in r.stderr


@pytest.mark.parametrize("threshold", [art.MULTIPART_THRESHOLD, 1])  # put_object path and upload_fileobj path
def test_stream_one_refuses_bytes_that_differ_from_the_manifest(two, threshold):
    e = mf.build(two["root"]).files[0]
    src, dst = art.Location(SRC_BUCKET, "run1"), art.Location(DST_BUCKET, "t")
    two["src"].put_object(Bucket=SRC_BUCKET, Key=src.key(e.path), Body=io.BytesIO(b"tampered after the manifest"))
    with pytest.raises(PtError, match="does not match the manifest"):
        art.stream_one(two["src"], src, two["dst"], dst, e, multipart_threshold=threshold)
    assert two["dst"].list_objects_v2(Bucket=DST_BUCKET, Prefix="t/").get("KeyCount", 0) == 0


def test_stream_one_multipart_path_copies_and_hashes(two):
    e = mf.build(two["root"]).files[1]
    src, dst = art.Location(SRC_BUCKET, "run1"), art.Location(DST_BUCKET, "mp")
    art.stream_one(two["src"], src, two["dst"], dst, e, multipart_threshold=1)
    assert art.check_object(two["dst"], dst, e, rehash=True) is None
