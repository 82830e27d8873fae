"""`pt access grant|revoke|show` against moto server: IAM attachments, the shared record, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pipeline_tools.core.config import load
from pipeline_tools.core.errors import PtError
from pipeline_tools.ops import access as ops

from .conftest_services import access_record, attached_policies, seed_access, write_services_config


def test_grant_show_revoke_round_trip(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True})
    cfg = write_services_config(tmp_path, pool)
    r = run_pt("access", "grant", "--stage", "val", "--group", "analysts", "--config", cfg, "--output", "json")
    assert r.exit_code == 0, r
    assert r.json()["iam_changed"] and r.json()["record_written"]
    assert attached_policies(aws, "cognito-analysts") == ["iris-val-scorer-access"]
    rec = access_record(aws)
    assert rec["grants"]["analysts"]["scorer"]["policy_arn"].endswith(":policy/iris-val-scorer-access")
    assert rec["grants"]["analysts"]["scorer"]["by"].startswith("arn:aws:")

    again = run_pt("access", "grant", "--stage", "val", "--group", "analysts", "--config", cfg, "--output", "json")
    assert again.exit_code == 0 and not again.json()["iam_changed"] and not again.json()["record_written"]

    shown = run_pt("access", "show", "--stage", "val", "--config", cfg)
    assert shown.exit_code == 0, shown
    assert "analysts" in shown.stdout and "yes" in shown.stdout and "SCORER" in shown.stdout

    r = run_pt("access", "revoke", "--stage", "val", "--group", "analysts", "--config", cfg)
    assert r.exit_code == 0, r
    assert "revoked" in r.stdout
    assert attached_policies(aws, "cognito-analysts") == []
    assert access_record(aws)["grants"] == {}


def test_dry_run_changes_nothing(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True})
    cfg = write_services_config(tmp_path, pool)
    r = run_pt("access", "grant", "--stage", "val", "--group", "analysts", "--config", cfg, "--dry-run",
               "--output", "json")
    assert r.exit_code == 0, r
    assert any("attach" in line for line in r.json()["plan"])
    assert attached_policies(aws, "cognito-analysts") == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket="iris-val-artifacts")


@pytest.mark.parametrize("case", ["no-group", "no-role", "bad-pool-shape", "missing-pool"])
def test_bad_input_is_one_line_exit_2_nothing_changed(aws, tmp_path, run_pt, case):
    pool = seed_access(aws, {"analysts": True, "roleless": False})
    group = {"no-group": "nobody", "no-role": "roleless"}.get(case, "analysts")
    pool_id = {"bad-pool-shape": "us-east-1-oops", "missing-pool": "us-east-1_Missing9"}.get(case, pool)
    cfg = write_services_config(tmp_path, pool_id)
    r = run_pt("access", "grant", "--stage", "val", "--group", group, "--config", cfg)
    assert r.exit_code == 2, r
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert {"no-group": "group 'nobody' does not exist", "no-role": "has no IAM role",
            "bad-pool-shape": "pipeline.yml:", "missing-pool": "does not exist"}[case] in first
    if case == "bad-pool-shape":
        assert "user_pool_id" in first
    assert attached_policies(aws, "cognito-analysts") == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket="iris-val-artifacts")


def test_missing_policy_names_the_service_stack(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True}, policy=False)
    r = run_pt("access", "grant", "--stage", "val", "--group", "analysts", "--config",
               write_services_config(tmp_path, pool))
    assert r.exit_code == 1, r
    assert "iris-scorer-val-service" in r.stderr


def test_a_conflicting_write_is_retried_and_both_changes_land(aws, tmp_path):
    pool = seed_access(aws, {"a": True, "b": True})
    cfg = load(write_services_config(tmp_path, pool))
    s3, iam, idp = aws.client("s3"), aws.client("iam"), aws.client("cognito-idp")
    sleeps: list[float] = []

    def other_admin(attempt: int) -> None:
        if attempt == 0:  # between our read and our write, someone else grants b
            ops.change(cfg, ops.target(cfg, "val", "scorer", "b"), grant=True, cognito=idp, iam=iam, s3=s3,
                       clock=time.time, sleep=sleeps.append, actor="other")

    report = ops.change(cfg, ops.target(cfg, "val", "scorer", "a"), grant=True, cognito=idp, iam=iam, s3=s3,
                        clock=time.time, sleep=sleeps.append, actor="me", after_read=other_admin)
    assert report["conflicts_retried"] == 1 and len(sleeps) == 1
    assert set(access_record(aws)["grants"]) == {"a", "b"}


def test_create_is_conditional_too(aws, tmp_path):
    """Two admins creating the record at once: the second If-None-Match: * write fails and retries."""
    pool = seed_access(aws, {"a": True, "b": True})
    cfg = load(write_services_config(tmp_path, pool))
    s3, iam, idp = aws.client("s3"), aws.client("iam"), aws.client("cognito-idp")

    def other_admin(attempt: int) -> None:
        if attempt == 0:
            ops.change(cfg, ops.target(cfg, "val", "scorer", "b"), grant=True, cognito=idp, iam=iam, s3=s3,
                       clock=time.time, sleep=lambda s: None)

    report = ops.change(cfg, ops.target(cfg, "val", "scorer", "a"), grant=True, cognito=idp, iam=iam, s3=s3,
                        clock=time.time, sleep=lambda s: None, after_read=other_admin)
    assert report["conflicts_retried"] == 1
    assert set(access_record(aws)["grants"]) == {"a", "b"}


def test_two_processes_granting_at_once_both_land(aws, tmp_path, moto_server):
    groups = [f"team{i}" for i in range(6)]
    pool = seed_access(aws, dict.fromkeys(groups, True))
    cfg = write_services_config(tmp_path, pool)
    env = {**os.environ, "AWS_ENDPOINT_URL": moto_server, "PYTHONPATH": os.getcwd()}
    go = tmp_path / "go"
    # Each process grants three groups in a row, both start on the same signal: their
    # read-modify-write cycles overlap, and every grant must survive.
    script = ("import os, sys, time\n"
              "from pipeline_tools import cli\n"
              "deadline = time.monotonic() + 60\n"
              f"while not os.path.exists({str(go)!r}):\n"
              "    assert time.monotonic() < deadline, 'no start signal'\n"
              "    time.sleep(0.005)\n"
              "for g in sys.argv[1:]:\n"
              f"    rc = cli.main(['access', 'grant', '--stage', 'val', '--group', g, '--config', {str(cfg)!r}])\n"
              "    assert rc == 0, rc\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, *groups[i::2]], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    go.write_text("")
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rec = access_record(aws)
    assert set(rec["grants"]) == set(groups)
    for g in groups:
        assert attached_policies(aws, f"cognito-{g}") == ["iris-val-scorer-access"]


def test_unreadable_record_fails_closed(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True})
    aws.client("s3").put_object(Bucket="iris-val-artifacts", Key="access/cognito_group_access.json", Body=b"{oops")
    cfg = write_services_config(tmp_path, pool)
    r = run_pt("access", "show", "--stage", "val", "--config", cfg)
    assert r.exit_code == 1 and "not valid JSON" in r.stderr
    with pytest.raises(PtError):
        ops.parse_document(json.dumps({"grants": []}).encode(), "x")


def test_show_check_finds_drift(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True})
    cfg = write_services_config(tmp_path, pool)
    assert run_pt("access", "grant", "--stage", "val", "--group", "analysts", "--config", cfg).exit_code == 0
    ok = run_pt("access", "show", "--stage", "val", "--config", cfg, "--check")
    assert ok.exit_code == 0 and "every recorded grant is attached" in ok.stdout
    aws.client("iam").detach_role_policy(RoleName="cognito-analysts",
                                         PolicyArn="arn:aws:iam::123456789012:policy/iris-val-scorer-access")
    r = run_pt("access", "show", "--stage", "val", "--config", cfg, "--check", "--output", "json")
    assert r.exit_code == 1, r
    assert [d["group"] for d in r.json()["drift"]] == ["analysts"]
