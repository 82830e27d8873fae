"""`pt artifacts` against a moto server: push/pull/verify/copy, resume, tampering, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading

import pytest

from pipeline_tools.core.errors import AwsError, NotFoundError, PtError
from pipeline_tools.ops import artifacts as art
from pipeline_tools.ops import manifest as mf
from tests.conftest import EXAMPLE_CONFIG

STAGING, PROD = "iris-staging-artifacts", "iris-prod-artifacts"


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "pipeline.yml"
    shutil.copy(EXAMPLE_CONFIG, path)
    return str(path)


@pytest.fixture
def s3(aws):
    client = aws.client("s3")
    for b in (STAGING, PROD):
        client.create_bucket(Bucket=b)
        client.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    return client


def make_tree(root, n=10, size=2000):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = root / f"d{i % 3}" / f"f{i:03d}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(hashlib.sha256(str(i).encode()).digest() * (size // 32))
    return root


def keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def test_push_uploads_only_changes_and_writes_manifest_last(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model")
    r = run_pt("artifacts", "push", tree, "--stage", "staging", "--prefix", "iris/v1", "--config", cfg,
               "--output", "json")
    assert r.exit_code == 0, r
    first = r.json()
    assert first["uploaded"] == 10 and first["unchanged"] == 0
    assert keys(s3, STAGING) == sorted([f"iris/v1/{e}" for e in mf.build(tree).by_path]
                                       + ["iris/v1/manifest.json", "iris/v1/SHA256SUMS"])
    remote = mf.Manifest.from_json(s3.get_object(Bucket=STAGING, Key="iris/v1/manifest.json")["Body"].read(), "m")
    assert remote.files == mf.build(tree).files
    head = s3.head_object(Bucket=STAGING, Key="iris/v1/d0/f000.bin", ChecksumMode="ENABLED")
    assert art.b64_to_hex(head["ChecksumSHA256"]) == remote.by_path["d0/f000.bin"].sha256

    # the transfer is in the stage's ledger (pt history --kind artifacts)
    h = run_pt("history", "--stage", "staging", "--config", cfg, "--kind", "artifacts", "--output", "json")
    assert h.exit_code == 0, h
    (rec,) = h.json()["records"]
    assert rec["kind"] == "artifacts" and rec["state"] == "completed"
    assert "push" in rec["what"] and "iris/v1" in rec["what"]

    # nothing changed: nothing uploaded, manifest not rewritten
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-p", "iris/v1", "-c", cfg, "--output", "json")
    assert r.json()["uploaded"] == 0 and r.json()["unchanged"] == 10
    # a fresh copy (new mtimes) with one changed file: one upload
    fresh = tmp_path / "checkout"
    shutil.copytree(tree, fresh)
    (fresh / "d1" / "f001.bin").write_bytes(b"retrained weights")
    r = run_pt("artifacts", "push", fresh, "-s", "staging", "-p", "iris/v1", "-c", cfg, "--output", "json")
    assert (r.json()["uploaded"], r.json()["unchanged"]) == (1, 9)
    assert s3.get_object(Bucket=STAGING, Key="iris/v1/d1/f001.bin")["Body"].read() == b"retrained weights"

    # and the human output says what happened
    r = run_pt("artifacts", "push", fresh, "-s", "staging", "-p", "iris/v1", "-c", cfg)
    assert r.exit_code == 0 and "upload 0" in r.stdout and "unchanged 10" in r.stdout


def test_dry_run_mutates_nothing(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=3)
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg, "--dry-run", "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["plan"]["upload"] == ["d0/f000.bin", "d1/f001.bin", "d2/f002.bin"]
    assert keys(s3, STAGING) == []
    run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg)
    (tree / "d0" / "f000.bin").unlink()
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg, "--delete", "--dry-run",
               "--output", "json")
    assert r.json()["plan"]["delete"] == ["m/d0/f000.bin"]
    assert "m/d0/f000.bin" in keys(s3, STAGING)
    r = run_pt("artifacts", "pull", tmp_path / "out", "-s", "staging", "-p", "m", "-c", cfg, "--dry-run",
               "--output", "json")
    assert r.json()["download"] == 3 and not (tmp_path / "out").exists()
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "--to-stage", "prod", "-p", "m", "-c", cfg,
               "--dry-run", "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["copy"] == 3 and keys(s3, PROD) == []


def test_delete_removes_remote_files_gone_locally_keeping_versions(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=4)
    assert run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg).exit_code == 0
    (tree / "d0" / "f000.bin").unlink()
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg, "--output", "json")
    assert r.json()["delete"] == 0 and "m/d0/f000.bin" in keys(s3, STAGING)  # without --delete it stays
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-p", "m", "-c", cfg, "--delete", "--output", "json")
    assert r.json()["deleted"] == 1
    assert "m/d0/f000.bin" not in keys(s3, STAGING)
    versions = s3.list_object_versions(Bucket=STAGING, Prefix="m/d0/f000.bin")
    assert versions.get("Versions") and versions.get("DeleteMarkers")  # bucket versioning keeps it
    assert "d0/f000.bin" not in json.loads(s3.get_object(Bucket=STAGING, Key="m/manifest.json")["Body"].read())[
        "files"]


class FailAfter:
    """An S3 client whose object uploads fail after `n` successes (a dropped connection)."""

    def __init__(self, client, n: int, exc: BaseException | None = None):
        self._client, self._n, self.uploads, self._exc = client, n, 0, exc
        self._lock = threading.Lock()

    def put_object(self, **kw):
        if not kw["Key"].endswith((mf.MANIFEST_NAME, mf.SUMS_NAME)):
            with self._lock:
                if self.uploads >= self._n:
                    from botocore.exceptions import EndpointConnectionError

                    raise self._exc or EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
                self.uploads += 1
        return self._client.put_object(**kw)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.mark.parametrize("n_files", [40, 6])  # >32 candidates: one LIST; fewer: HEADs
def test_interrupted_push_resumes_with_only_the_rest(s3, tmp_path, n_files):
    tree = make_tree(tmp_path / "model", n=n_files)
    loc = art.Location.of(STAGING, "run-7")
    with pytest.raises(PtError) as e:
        art.push(FailAfter(s3, 4), tree, loc, workers=1)
    assert "cannot reach AWS endpoint" in e.value.message
    assert f"interrupted after 4 of {n_files} uploads" in e.value.hint and "re-run" in e.value.hint
    assert art.get_manifest(s3, loc) is None  # no manifest naming missing objects
    assert len(keys(s3, STAGING, "run-7/")) == 4

    report = art.push(s3, tree, loc, workers=4)
    assert (report["already_uploaded"], report["uploaded"]) == (4, n_files - 4)
    assert art.verify(s3, loc)["ok"]


def test_ctrl_c_during_push_says_how_to_resume(s3, tmp_path):
    tree = make_tree(tmp_path / "model", n=5)
    loc = art.Location.of(STAGING, "cc")
    with pytest.raises(PtError) as e:
        art.push(FailAfter(s3, 2, KeyboardInterrupt()), tree, loc, workers=1)
    assert e.value.exit_code == 130 and "interrupted after 2 of 5 uploads" in e.value.hint
    assert art.push(s3, tree, loc)["uploaded"] == 3


def test_interrupted_update_keeps_the_old_manifest_consistent_for_readers(s3, tmp_path):
    tree = make_tree(tmp_path / "model", n=5)
    loc = art.Location.of(STAGING, "p")
    art.push(s3, tree, loc)
    old = art.get_manifest(s3, loc)
    (tree / "new1.bin").write_bytes(b"one")
    (tree / "new2.bin").write_bytes(b"two")
    with pytest.raises(PtError):
        art.push(FailAfter(s3, 1), tree, loc, workers=1)
    assert art.get_manifest(s3, loc) == old
    assert art.verify(s3, loc)["ok"]
    assert art.push(s3, tree, loc)["uploaded"] == 1


def test_verify_reports_tampered_missing_and_resized_objects(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=5)
    assert run_pt("artifacts", "push", tree, "-s", "staging", "-p", "v", "-c", cfg).exit_code == 0
    r = run_pt("artifacts", "verify", "-s", "staging", "-p", "v", "-c", cfg)
    assert r.exit_code == 0 and "5 files match" in r.stdout
    size = (tree / "d0" / "f000.bin").stat().st_size
    s3.put_object(Bucket=STAGING, Key="v/d0/f000.bin", Body=b"X" * size)  # same size, other bytes
    s3.put_object(Bucket=STAGING, Key="v/d1/f001.bin", Body=b"short")
    s3.delete_object(Bucket=STAGING, Key="v/d2/f002.bin")
    for extra in ([], ["--rehash"]):
        r = run_pt("artifacts", "verify", "-s", "staging", "-p", "v", "-c", cfg, "--output", "json", *extra)
        assert r.exit_code == 1, r
        problems = {p["path"]: p["problem"] for p in r.json()["problems"]}
        assert problems == {"d0/f000.bin": "checksum", "d1/f001.bin": "size", "d2/f002.bin": "missing"}
    r = run_pt("artifacts", "verify", "-s", "staging", "-p", "v", "-c", cfg)
    assert r.exit_code == 1 and "3 of 5 file(s)" in r.stderr and "d0/f000.bin" in r.stdout


def test_pull_downloads_verified_files_and_refuses_tampered_ones(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=6)
    run_pt("artifacts", "push", tree, "-s", "staging", "-p", "x", "-c", cfg)
    out = tmp_path / "pulled"
    r = run_pt("artifacts", "pull", out, "-s", "staging", "-p", "x", "-c", cfg, "--output", "json")
    assert r.exit_code == 0 and r.json()["downloaded"] == 6, r
    assert mf.build(out).files == mf.build(tree).files
    assert art.verify_local(out)["ok"]  # pull leaves manifest.json + SHA256SUMS behind
    r = run_pt("artifacts", "pull", out, "-s", "staging", "-p", "x", "-c", cfg, "--output", "json")
    assert r.json()["download"] == 0 and r.json()["unchanged"] == 6

    s3.put_object(Bucket=STAGING, Key="x/d0/f003.bin", Body=b"evil" * 500)
    (out / "d0" / "f003.bin").unlink()
    r = run_pt("artifacts", "pull", out, "-s", "staging", "-p", "x", "-c", cfg)
    assert r.exit_code == 1 and "did not match the manifest" in r.stderr, r
    assert not (out / "d0" / "f003.bin").exists()
    assert not list(out.rglob("*.pt-part"))


def test_pull_refuses_a_manifest_that_escapes_the_destination(s3, tmp_path):
    doc = {"format": mf.FORMAT, "files": [{"path": "../../etc/cron.d/x", "size": 1, "sha256": "0" * 64}]}
    s3.put_object(Bucket=STAGING, Key="evil/manifest.json", Body=json.dumps(doc).encode())
    with pytest.raises(PtError, match="unsafe path"):
        art.pull(s3, art.Location.of(STAGING, "evil"), tmp_path / "out")


def test_copy_to_another_stage_and_to_a_vendor_bucket(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=5)
    run_pt("artifacts", "push", tree, "-s", "staging", "-p", "iris/v2", "-c", cfg)
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "--to-stage", "prod", "-p", "iris/v2", "-c", cfg,
               "--output", "json")
    assert r.exit_code == 0 and r.json()["copied"] == 5, r
    assert run_pt("artifacts", "verify", "-s", "prod", "-p", "iris/v2", "-c", cfg, "--rehash").exit_code == 0
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "--to-stage", "prod", "-p", "iris/v2", "-c", cfg,
               "--output", "json")
    assert r.json()["copy"] == 0 and r.json()["already_there"] == 5

    s3.create_bucket(Bucket="vendor-drop")
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "-p", "iris/v2", "--to", "s3://vendor-drop/iris/run-9",
               "-c", cfg, "--output", "json")
    assert r.exit_code == 0, r
    assert art.verify(s3, art.parse_s3_url("s3://vendor-drop/iris/run-9"), rehash=True)["ok"]

    # a corrupted source is never handed on
    s3.put_object(Bucket=STAGING, Key="iris/v2/d0/f000.bin", Body=b"Z" * (tree / "d0/f000.bin").stat().st_size)
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "-p", "iris/v2", "--to", "s3://vendor-drop/other",
               "-c", cfg)
    assert r.exit_code == 1 and "does not match its manifest" in r.stderr, r
    assert keys(s3, "vendor-drop", "other/") == []


def test_multipart_upload_asks_s3_to_verify_sha256(s3, tmp_path):
    tree = tmp_path / "big"
    tree.mkdir()
    (tree / "weights.bin").write_bytes(os.urandom(11 << 20))
    (tree / "small.json").write_bytes(b"{}")
    seen: list[tuple[str, dict]] = []
    s3.meta.events.register("before-send.s3.*", lambda request, **kw: seen.append(
        (request.url, dict(request.headers), request.method)))
    loc = art.Location.of(STAGING, "mp")
    art.push(s3, tree, loc, multipart_threshold=5 << 20)
    creates = [h for url, h, m in seen if m == "POST" and url.endswith("?uploads")]
    assert creates and creates[0].get("x-amz-checksum-algorithm") in ("SHA256", b"SHA256")
    small = [h for url, h, m in seen if m == "PUT" and url.endswith("mp/small.json")]
    expected = art.hex_to_b64(hashlib.sha256(b"{}").hexdigest())
    assert small and small[0]["x-amz-checksum-sha256"] in (expected, expected.encode())
    assert "-" in s3.head_object(Bucket=STAGING, Key="mp/weights.bin")["ETag"]  # really multipart
    assert art.verify(s3, loc)["ok"]  # multipart objects are re-hashed, not trusted
    s3.put_object(Bucket=STAGING, Key="mp/weights.bin", Body=os.urandom(11 << 20))
    assert [p["problem"] for p in art.verify(s3, loc)["problems"]] == ["checksum"]


def test_missing_bucket_names_the_stack_that_creates_it(aws, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=1)
    for args in (["push", tree], ["verify"], ["pull", tmp_path / "o"]):
        r = run_pt("artifacts", *args, "-s", "staging", "-c", cfg)
        assert r.exit_code == 1, r
        assert "artifacts bucket iris-staging-artifacts does not exist" in r.stderr
        assert "iris-staging-stage" in r.stderr


def test_unknown_stage_and_bad_arguments_are_usage_errors(aws, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=1)
    r = run_pt("artifacts", "push", tree, "-s", "stagin", "-c", cfg)
    assert r.exit_code == 2 and "unknown stage 'stagin'" in r.stderr and "staging" in r.stderr
    r = run_pt("artifacts", "copy", "--from-stage", "nope", "--to-stage", "prod", "-c", cfg)
    assert r.exit_code == 2 and "unknown stage 'nope'" in r.stderr
    r = run_pt("artifacts", "copy", "--from-stage", "staging", "-c", cfg)
    assert r.exit_code == 2 and "--to-stage or --to" in r.stderr
    r = run_pt("artifacts", "verify", "-c", cfg)
    assert r.exit_code == 2
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-c", cfg, "--delete")
    assert r.exit_code == 2 and "--delete needs --prefix" in r.stderr
    bad = tmp_path / "latin"
    bad.mkdir()
    with open(os.path.join(os.fsencode(bad), b"\xff\xfe.bin"), "wb") as fh:
        fh.write(b"x")
    r = run_pt("artifacts", "push", bad, "-s", "staging", "-c", cfg)
    assert r.exit_code == 2 and "\\xff\\xfe.bin" in r.stderr and "not valid UTF-8" in r.stderr


def test_access_denied_is_reported_with_the_permission_needed(tmp_path):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    tree = make_tree(tmp_path / "model", n=1)
    loc = art.Location.of(STAGING, "p")
    with Stubber(client) as stub:  # push: the manifest GET is its bucket check (no HeadBucket)
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(AwsError, match=r"access denied reading s3://iris-staging-artifacts/p/manifest\.json"):
            art.push(client, tree, loc)
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code="NoSuchBucket", http_status_code=404)
        with pytest.raises(NotFoundError, match="artifacts bucket iris-staging-artifacts does not exist"):
            art.push(client, tree, loc, stack="iris-staging-stage")
    with Stubber(client) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
        with pytest.raises(AwsError, match="access denied to bucket iris-staging-artifacts"):
            art.verify(client, loc)
    with Stubber(client) as stub:
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403,
                              service_message="Access Denied")
        with pytest.raises(AwsError) as e:
            art.push(client, tree, loc)
        assert "access denied writing s3://iris-staging-artifacts/p/d0/f000.bin" in e.value.message
        assert "s3:PutObject" in e.value.hint and "interrupted after 0 of 1" in e.value.hint
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_response("head_bucket", {})
        stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(AwsError, match="access denied reading"):
            art.verify(client, loc)
    with Stubber(client) as stub:
        stub.add_response("head_bucket", {})
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        with pytest.raises(NotFoundError, match="no manifest at s3://iris-staging-artifacts/p"):
            art.verify(client, loc)


def test_special_files_and_symlinks_are_skipped_with_warnings(s3, cfg, tmp_path, run_pt):
    tree = make_tree(tmp_path / "model", n=2)
    os.mkfifo(tree / "events.fifo")
    (tree / "escape").symlink_to("/etc/hostname")
    (tree / "alias.bin").symlink_to("d0/f000.bin")
    r = run_pt("artifacts", "push", tree, "-s", "staging", "-c", cfg, "--output", "json")
    assert r.exit_code == 0, r
    assert "warning: skipped events.fifo: FIFO" in r.stderr and "warning: skipped escape: symlink" in r.stderr
    assert {s["path"] for s in r.json()["skipped"]} == {"events.fifo", "escape"}
    assert keys(s3, STAGING) == sorted(["SHA256SUMS", "alias.bin", "d0/f000.bin", "d1/f001.bin", "manifest.json"])
    # the remote SHA256SUMS checks a pulled tree with the real sha256sum
    out = tmp_path / "pulled"
    assert run_pt("artifacts", "pull", out, "-s", "staging", "-c", cfg).exit_code == 0
    (out / "SHA256SUMS").write_bytes(s3.get_object(Bucket=STAGING, Key="SHA256SUMS")["Body"].read())
    if shutil.which("sha256sum"):
        import subprocess

        ok = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
        assert ok.returncode == 0 and ok.stdout.count(": OK") == 3, ok.stdout + ok.stderr
