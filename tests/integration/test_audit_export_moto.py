"""`pt audit export` against a moto-server ledger: every kind, schema 1, pagination, --since,
--kind, damaged items skipped with a warning (exit 1), bad input (exit 2)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from pipeline_tools.ops import records
from pipeline_tools.release.ledger import Ledger, ensure_table

CONFIG = """\
project: aud
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict: {image: model}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["aud-staging-*"]}}
  prod: {account: "111111111111", branch: master, promote_from: staging, gate: {alarms: ["aud-prod-*"]}}
"""
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
FIRST = "20261118T110640000Z-000000"


@pytest.fixture
def world(aws, tmp_path, monkeypatch):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "aud-ledger", project="aud", stage="staging", local=True)
    now = {"t": T0}
    led = Ledger(ddb, "aud-ledger", clock=lambda: now["t"])
    actor = {"name": "alice", "arn": "arn:aws:iam::111111111111:user/alice", "author": "bob@example.com",
             "git_sha": "a" * 40, "ci": None, "run_url": None, "declared": None}
    kinds = ["deploy", "gate", "approval", "promotion", "window-override", "runbook", "teardown"]
    for i, kind in enumerate(kinds):
        now["t"] = T0 + i * 86400
        led.put_record(kind, "staging" if i % 2 == 0 else "prod", {"digest": f"sha256:{i:064d}", "n": i},
                       actor=actor, state="done", reason=f"r{i}", record_id=f"{records.id_floor(now['t'])}Z-{i:06d}")
    led.append_event("staging", FIRST, "notification", reason="sent")
    return {"cfg": cfg, "ddb": ddb, "led": led, "kinds": kinds}


def test_every_kind_in_schema_1_paginated(world):
    exp = records.collect(world["ddb"], "aud-ledger", ["staging", "prod"], page_size=2)
    assert sorted(r["kind"] for r in exp.rows) == sorted(world["kinds"])
    assert exp.pages >= 4  # 4 staging items at 2 a page + prod: really paged
    assert all(list(r) == list(records.FIELDS) and r["schema"] == 1 for r in exp.rows)
    first = exp.rows[0]
    assert first["id"] == FIRST and first["actor"] == "alice"
    assert first["author"] == "bob@example.com" and first["digest"] == "sha256:" + "0" * 64
    assert [e.get("event") or e.get("state") for e in first["events"]] == ["done", "notification"]
    assert not exp.skipped


def test_cli_csv_and_jsonl_round_trip(world, run_pt, tmp_path):
    out = tmp_path / "audit.csv"
    r = run_pt("audit", "export", "--all", "--format", "csv", "-o", out, "--config", world["cfg"])
    assert r.exit_code == 0, r
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0]) == records.FIELDS and len(rows) == 7
    assert json.loads(rows[0]["data"])["n"] == 0
    r = run_pt("audit", "export", "--stage", "prod", "--kind", "gate", "--kind", "promotion",
               "--config", world["cfg"])
    assert r.exit_code == 0, r
    lines = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [ln["kind"] for ln in lines] == ["gate", "promotion"]


def test_since_bounds_the_read(world):
    exp = records.collect(world["ddb"], "aud-ledger", ["staging", "prod"], since=T0 + 4 * 86400)
    assert sorted(r["kind"] for r in exp.rows) == ["runbook", "teardown", "window-override"]


def test_markdown_is_a_table(world, run_pt):
    r = run_pt("audit", "export", "--stage", "staging", "--format", "md", "--config", world["cfg"])
    assert r.exit_code == 0, r
    assert r.stdout.startswith("# Ledger audit export (schema 1)") and "| created | stage | kind |" in r.stdout
    assert r.stdout.count("| staging |") == 4


def test_damaged_item_is_skipped_with_a_warning(world, run_pt):
    world["ddb"].put_item(TableName="aud-ledger", Item={
        "pk": {"S": "staging"}, "sk": {"S": "R#20261120T000000000Z-bad"}, "id": {"S": "20261120T000000000Z-bad"},
        "kind": {"S": "deploy"}, "created": {"N": "1"}, "updated": {"N": "1"}, "body": {"S": "{not json"}})
    r = run_pt("audit", "export", "--stage", "staging", "--config", world["cfg"])
    assert r.exit_code == 1, r
    assert ("ledger item pk=staging sk=R#20261120T000000000Z-bad in table aud-ledger is damaged: "
            "body is not JSON") in r.stderr
    assert len(r.stdout.splitlines()) == 4  # the good ones are all still there


@pytest.mark.parametrize("args, needle", [
    ((), "needs --stage STAGE or --all"),
    (("--all", "--stage", "prod"), "either --stage or --all"),
    (("--all", "--since", "last tuesday"), "--since 'last tuesday' is neither a duration nor a date"),
    (("--stage", "nope"), "nope"),
])
def test_bad_input_one_line_exit_2(world, run_pt, args, needle):
    r = run_pt("audit", "export", *args, "--config", world["cfg"])
    assert r.exit_code == 2, r
    assert needle in r.stderr and "Traceback" not in r.stderr
