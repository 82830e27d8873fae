"""`pt logs scan` / `pt logs archive` against moto server with seeded log events."""

from __future__ import annotations

import gzip
import hashlib
import json
import time

import pytest
from botocore.stub import Stubber

from pipeline_tools.core.errors import AwsError
from pipeline_tools.ops import logs as ops_logs

from .conftest_ops import load_config, seed_log_group, write_config

GROUP = "/aws/lambda/iris-val-predict"
SECRET_VALUES = ["jane.doe@example.com", "AKIAIOSFODNN7EXAMPLE", "4111 1111 1111 1111", "078-05-1120",
                 "203.0.113.42", "(415) 555-2671"]
SENSITIVE = [
    "START RequestId: 1c2d user jane.doe@example.com signed in",
    "boto: using key AKIAIOSFODNN7EXAMPLE",
    "payment card=4111 1111 1111 1111 ok",
    "applicant ssn 078-05-1120",
    "client 203.0.113.42 connected",
    "callback (415) 555-2671",
]
CLEAN = [
    "INIT_START Runtime Version: python:3.11.v27 Runtime Version ARN: arn:aws:lambda:us-east-1::runtime:abc",
    "model version=1.2.3.4 loaded from 3.11.7 in 1732740000123 ms",
    "REPORT RequestId: 123e4567-e89b-12d3-a456-426614174000 Duration: 12.5 ms at 2026-11-27T22:22:26.123Z",
    "git sha da39a3ee5e6b4b0d3255bfef95601890afd80709",
]


@pytest.fixture
def cfg_path(tmp_path):
    return write_config(tmp_path)


def test_scan_cli_finds_each_kind_redacted_with_location(aws, cfg_path, run_pt):
    seed_log_group(aws, GROUP, CLEAN + SENSITIVE)
    seed_log_group(aws, "/custom/app", ["contact ops@example.org"], stream="s1")
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path, "--log-group", "/custom/app",
               "--output", "json")
    assert r.exit_code == 1, r
    data = r.json()
    kinds = sorted(f["kind"] for f in data["findings"])
    assert kinds == sorted(["email", "email", "aws_access_key_id", "credit_card", "us_ssn", "ipv4", "phone"])
    assert data["groups"][GROUP] == {"status": "scanned", "events": len(CLEAN + SENSITIVE)}
    assert data["groups"]["/aws/lambda/iris-val-batch-score"] == {
        "status": "not scanned", "events": 0, "reason": "log group does not exist"}
    assert data["unscanned"] == [{"source": "cloudwatch", "input": "/aws/lambda/iris-val-batch-score",
                                  "reason": "log group does not exist"}]
    assert data["clean"] is False and data["ok"] is False
    f = next(f for f in data["findings"] if f["kind"] == "us_ssn")
    assert f["group"] == GROUP and f["stream"] == "2026/11/27/[$LATEST]abc" and f["timestamp"] > 0
    assert f["excerpt"] == "applicant ssn [REDACTED:us_ssn]"
    for raw in SECRET_VALUES + ["ops@example.org"]:
        assert raw not in r.stdout and raw not in r.stderr


def test_scan_human_output_and_clean_exit_zero(aws, cfg_path, run_pt):
    seed_log_group(aws, GROUP, CLEAN)
    seed_log_group(aws, "/aws/lambda/iris-val-batch-score", CLEAN)
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path)
    assert r.exit_code == 0, r
    assert "clean: nothing sensitive in 2 log group(s)" in r.stdout
    seed_log_group(aws, GROUP, ["user bob@example.com"])
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path)
    assert r.exit_code == 1
    assert "[REDACTED:email]" in r.stdout and "bob@example.com" not in r.stdout


def test_since_window_excludes_old_events(aws, cfg):
    now = time.time()
    seed_log_group(aws, GROUP, ["old leak old@example.com"], now_ms=int((now - 3 * 86400) * 1000), stream="old")
    seed_log_group(aws, GROUP, ["fresh"], now_ms=int(now * 1000), stream="new")
    logs = aws.client("logs")
    rep = ops_logs.scan(cfg, "val", logs_client=logs, since=86400, clock=lambda: now)
    assert not rep.findings and rep.groups[GROUP]["events"] == 1
    rep = ops_logs.scan(cfg, "val", logs_client=logs, since=ops_logs.parse_since("7d"), clock=lambda: now)
    assert [f.kind for f in rep.findings] == ["email"]


@pytest.fixture
def cfg(tmp_path):
    return load_config(tmp_path)


def test_filter_log_events_is_paginated(aws):
    msgs = [f"line {i}" for i in range(119)] + ["last one has a@b.io"]
    seed_log_group(aws, GROUP, msgs)
    events = list(ops_logs.iter_log_events(aws.client("logs"), GROUP, None, page_size=25))
    assert [e["message"] for e in events] == msgs


def test_local_paths_and_user_patterns(tmp_path, cfg_path, run_pt):
    d = tmp_path / "logs"
    (d / "sub").mkdir(parents=True)
    (d / "app.log").write_text("ok\nuser=carol@example.com\norder ORD-12345678 shipped\n")
    with gzip.open(d / "sub" / "old.log.gz", "wt") as fh:
        fh.write("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n")
    (d / "blob.bin").write_bytes(b"\0\1\2 dave@example.com")  # stray NULs: still text, still scanned
    (d / "link.log").symlink_to(d / "app.log")  # inside the tree: scanned as app.log
    pats = tmp_path / "patterns.yml"
    pats.write_text("- {name: order_id, regex: 'ORD-\\d{8}'}\n")
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path, "--no-cloudwatch", "--path", d,
               "--patterns", pats, "--output", "json")
    assert r.exit_code == 1, r
    data = r.json()
    where = {(f["kind"], f["where"]) for f in data["findings"]}
    assert where == {("email", f"{d}/app.log:2"), ("order_id", f"{d}/app.log:3"), ("jwt", f"{d}/sub/old.log.gz:1"),
                     ("email", f"{d}/blob.bin:1")}
    assert data["files"][str(d / "blob.bin")]["first_nul_line"] == 1
    assert data["files"][str(d / "link.log")]["note"] == f"symlink to {d / 'app.log'}, scanned there"
    assert data["unscanned"] == []
    assert "ORD-12345678" not in r.stdout and "carol@" not in r.stdout and "dave@" not in r.stdout


@pytest.mark.parametrize("content, needle", [
    ("- {name: broken, regex: '([a-z'}\n", "entry 1 (broken): bad regex"),
    ("- {name: empty, regex: 'x*'}\n", "matches the empty string"),
    ("name: x\n", "expected a list"),
    ("- {regex: 'abc'}\n", "needs string fields"),
])
def test_bad_patterns_file_is_one_line_exit_2(tmp_path, cfg_path, run_pt, content, needle):
    pats = tmp_path / "p.yml"
    pats.write_text(content)
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path, "--no-cloudwatch", "--path", pats,
               "--patterns", pats)
    assert r.exit_code == 2, r
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0]


def test_unknown_stage_and_missing_path(tmp_path, cfg_path, run_pt):
    r = run_pt("logs", "scan", "--stage", "nope", "--config", cfg_path)
    assert r.exit_code == 2 and "unknown stage 'nope'" in r.stderr
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path, "--no-cloudwatch", "--path", tmp_path / "x")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = run_pt("logs", "scan", "--stage", "val", "--config", cfg_path, "--no-cloudwatch")
    assert r.exit_code == 2 and "nothing to scan" in r.stderr


def test_access_denied_is_not_scanned_with_the_aws_error(aws, cfg):
    logs = aws.client("logs")
    with Stubber(logs) as stub:
        for _ in range(2):
            stub.add_client_error("filter_log_events", service_error_code="AccessDeniedException",
                                  service_message="User is not authorized to perform: logs:FilterLogEvents",
                                  http_status_code=400)
        rep = ops_logs.scan(cfg, "val", logs_client=logs, since=3600, clock=time.time)
    assert not rep.findings and not rep.clean and not rep.ok
    assert [u["input"] for u in rep.unscanned] == [GROUP, "/aws/lambda/iris-val-batch-score"]
    assert all("AccessDeniedException" in u["reason"] and "FilterLogEvents" in u["reason"] for u in rep.unscanned)


# --- archive -----------------------------------------------------------------------------------


def _objects(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.parametrize("method", ["export", "stream"])
def test_archive_manifest_checksums_and_idempotent(aws, cfg, method):
    s3, logs = aws.client("s3"), aws.client("logs")
    s3.create_bucket(Bucket="audit")
    seed_log_group(aws, GROUP, ["a", "b user x@y.com"])
    now = time.time()
    clock = lambda: now  # noqa: E731
    res = ops_logs.archive(cfg, "val", "s3://audit/runs/val", logs_client=logs, s3=s3, clock=clock,
                           sleep=lambda s: None, method=method)
    assert res.groups[GROUP]["status"] == "exported" and res.groups[GROUP]["method"] == method
    assert res.groups["/aws/lambda/iris-val-batch-score"] == {"status": "missing"}
    assert len(res.new_objects) == 1
    manifest = json.loads(s3.get_object(Bucket="audit", Key="runs/val/manifest.json")["Body"].read())
    (obj,) = manifest["objects"]
    body = s3.get_object(Bucket="audit", Key=obj["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == obj["sha256"] and obj["size"] == len(body)
    text = gzip.decompress(body).decode()
    assert "b user x@y.com" in text
    sums = s3.get_object(Bucket="audit", Key="runs/val/SHA256SUMS")["Body"].read().decode()
    assert sums == f"{obj['sha256']}  {obj['key'][len('runs/val/'):]}\n"
    assert ops_logs.verify_archive(s3, "audit", "runs/val") == []
    before = _objects(s3, "audit", "runs/")

    # re-runs, nothing new (same instant, and 5 s later): no new object, manifest unchanged
    for t in (now, now + 5):
        again = ops_logs.archive(cfg, "val", "s3://audit/runs/val", logs_client=logs, s3=s3, clock=lambda t=t: t,
                                 sleep=lambda s: None, method=method)
        assert again.new_objects == [] and _objects(s3, "audit", "runs/") == before
        assert again.groups[GROUP]["status"] == "up to date"

    # new events later: only those are exported
    later = now + 60
    seed_log_group(aws, GROUP, ["c new"], now_ms=int(later * 1000) - 1)
    third = ops_logs.archive(cfg, "val", "s3://audit/runs/val", logs_client=logs, s3=s3, clock=lambda: later,
                             sleep=lambda s: None, method=method)
    assert len(third.new_objects) == 1 and len(third.objects) == 2
    new_text = gzip.decompress(s3.get_object(Bucket="audit", Key=third.new_objects[0])["Body"].read()).decode()
    assert "c new" in new_text and "b user" not in new_text


def test_archive_detects_tampering(aws, cfg):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="audit")
    seed_log_group(aws, GROUP, ["a"])
    res = ops_logs.archive(cfg, "val", "s3://audit/p", logs_client=aws.client("logs"), s3=s3, clock=time.time,
                           sleep=lambda s: None, method="stream")
    s3.put_object(Bucket="audit", Key=res.new_objects[0], Body=b"changed")
    assert ops_logs.verify_archive(s3, "audit", "p") == res.new_objects


def test_archive_cli_missing_bucket_and_dry_run(aws, cfg_path, run_pt):
    seed_log_group(aws, GROUP, ["a"])
    r = run_pt("logs", "archive", "--stage", "val", "--config", cfg_path, "--to", "s3://no-such-bucket/x")
    assert r.exit_code == 1 and "s3://no-such-bucket does not exist" in r.stderr
    aws.client("s3").create_bucket(Bucket="audit")
    r = run_pt("logs", "archive", "--stage", "val", "--config", cfg_path, "--to", "s3://audit/x", "--dry-run",
               "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["groups"][GROUP]["status"] == "would export"
    assert _objects(aws.client("s3"), "audit") == []
    r = run_pt("logs", "archive", "--stage", "val", "--config", cfg_path, "--to", "s3://audit/x")
    assert r.exit_code == 0, r
    assert "x/manifest.json" in _objects(aws.client("s3"), "audit")
    r = run_pt("logs", "archive", "--stage", "val", "--config", cfg_path, "--to", "s3://iris-val-artifacts/x")
    assert r.exit_code == 2 and "own artifacts bucket" in r.stderr
    r = run_pt("logs", "archive", "--stage", "val", "--config", cfg_path, "--to", "audit/x")
    assert r.exit_code == 2 and "expected s3://" in r.stderr


def test_archive_access_denied_on_bucket(aws, cfg):
    s3 = aws.client("s3")
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", service_error_code="403", service_message="Forbidden",
                              http_status_code=403)
        with pytest.raises(AwsError, match="no access to archive bucket s3://audit"):
            ops_logs.archive(cfg, "val", "s3://audit/p", logs_client=aws.client("logs"), s3=s3, clock=time.time,
                             sleep=lambda s: None)


def _stub_group_exists(stub):
    stub.add_response("describe_log_groups", {"logGroups": [{"logGroupName": GROUP}]})
    stub.add_response("filter_log_events", {"events": [{"logStreamName": "s", "timestamp": 1, "message": "x"}]})


def test_auto_falls_back_to_stream_when_export_is_refused(aws, cfg):
    s3, logs = aws.client("s3"), aws.client("logs")
    s3.create_bucket(Bucket="audit")
    now = time.time()
    with Stubber(logs) as stub:
        _stub_group_exists(stub)
        stub.add_client_error("create_export_task", service_error_code="LimitExceededException",
                              service_message="Resource limit exceeded.", http_status_code=400)
        stub.add_response("filter_log_events", {"events": [
            {"logStreamName": "s", "timestamp": int(now * 1000) - 5, "message": "streamed", "ingestionTime": 1}]})
        res = ops_logs.archive(cfg, "val", "s3://audit/p", logs_client=logs, s3=s3, clock=lambda: now,
                               sleep=lambda s: None, groups=[GROUP])
        stub.assert_no_pending_responses()
    assert res.groups[GROUP]["method"] == "stream"
    body = s3.get_object(Bucket="audit", Key=res.new_objects[0])["Body"].read()
    assert json.loads(gzip.decompress(body))["message"] == "streamed"


def test_export_task_that_never_finishes_times_out(aws, cfg):
    s3, logs = aws.client("s3"), aws.client("logs")
    s3.create_bucket(Bucket="audit")
    t = [1000.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    with Stubber(logs) as stub:
        _stub_group_exists(stub)
        stub.add_response("create_export_task", {"taskId": "task-1"})
        for _ in range(4):
            stub.add_response("describe_export_tasks", {"exportTasks": [
                {"taskId": "task-1", "status": {"code": "RUNNING", "message": "running"}}]})
        with pytest.raises(AwsError, match="did not finish in 5s"):
            ops_logs.archive(cfg, "val", "s3://audit/p", logs_client=logs, s3=s3, clock=lambda: t[0], sleep=sleep,
                             method="export", export_timeout=5, groups=[GROUP])
    assert slept == [2.0, 2.0, 2.0]
    assert "Contents" not in s3.list_objects_v2(Bucket="audit", Prefix="p/")  # no manifest for a failed run
