"""`pt runbook` end to end on moto server with the example vendor-validation checklist:
run steps executed by pt (output + exit code = evidence), manual steps with evidence and actor,
state shared through the ledger, report with SHA-256 per step; refusals exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline_tools.ops import runbook as rb
from pipeline_tools.release.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "runbooks" / "vendor-validation.yml"
CONFIG = """\
project: val
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict: {image: model}
stages:
  dev: {account: "111111111111", branch: dev, gate: {alarms: ["val-dev-*"]}}
"""


@pytest.fixture
def world(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "alice")
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    for d, files in (("synthetic", {"a.csv": "x,y\n1,2\n"}), ("outputs", {"scores.csv": "id,score\n1,0.9\n"})):
        (tmp_path / d).mkdir()
        for name, text in files.items():
            (tmp_path / d / name).write_text(text)
    aws.client("s3").create_bucket(Bucket="val-archive")
    logs = aws.client("logs")
    logs.create_log_group(logGroupName="/aws/lambda/val-dev-predict")
    monkeypatch.chdir(tmp_path)
    return {"cfg": cfg, "tmp": tmp_path, "aws": aws}


def _pt(run_pt, world, *args):
    return run_pt(*args, "--config", world["cfg"])


def test_vendor_validation_end_to_end(world, run_pt, monkeypatch):
    r = _pt(run_pt, world, "runbook", "start", EXAMPLE, "--stage", "dev", "--var", "inputs=synthetic",
            "--var", "outputs=outputs", "--var", "archive=s3://val-archive/validation", "--output", "json")
    assert r.exit_code == 0, r
    rid = r.json()["runbook"]
    assert r.json()["next"]["id"] == "inputs-copied"

    # refusals: out of order, manual without evidence, unknown runbook: one line each, exit 2
    r = _pt(run_pt, world, "runbook", "done", rid, "input-checksums", "--stage", "dev")
    assert r.exit_code == 2 and "out of order: step inputs-copied" in r.stderr, r
    r = _pt(run_pt, world, "runbook", "done", rid, "inputs-copied", "--stage", "dev")
    assert r.exit_code == 2 and "manual step: it needs evidence" in r.stderr, r
    r = _pt(run_pt, world, "runbook", "status", "20260101T000000000Z-nope", "--stage", "dev")
    assert r.exit_code == 2 and "no runbook 20260101T000000000Z-nope in stage dev" in r.stderr, r
    assert all("Traceback" not in x for x in (r.stderr, r.stdout))

    evidence_file = world["tmp"] / "copy-receipt.txt"
    evidence_file.write_text("copied 1 synthetic file, no production data\n")
    steps = rb.load_checklist(str(EXAMPLE)).steps
    for step in steps:
        r = _pt(run_pt, world, "runbook", "next", rid, "--stage", "dev", "--output", "json")
        assert r.json()["next"]["id"] == step.id, r
        if step.id == "sign-off":
            monkeypatch.setenv("PT_ACTOR", "carol")  # a second person signs off
        args = ["--evidence", str(evidence_file)] if step.id == "inputs-copied" else \
            ["--evidence", "reviewed the scores: all within tolerance"] if step.manual else []
        r = _pt(run_pt, world, "runbook", "done", rid, step.id, "--stage", "dev", *args, "--output", "json")
        assert r.exit_code == 0, (step.id, r)
    assert r.json()["state"] == "completed"

    # the run steps really ran: their side effects exist
    assert (world["tmp"] / "synthetic" / "manifest.json").exists()
    assert (world["tmp"] / "outputs" / "manifest.json").exists()
    led = Ledger(world["aws"].client("dynamodb"), "val-ledger")
    rec = led.get("dev", rid)
    res = rec.data["results"]
    assert res["input-checksums"]["exit_code"] == 0 and "manifest.json" in res["input-checksums"]["evidence"]["excerpt"]
    assert res["teardown-plan"]["command"].startswith("pt teardown --stage dev --dry-run")
    assert res["inputs-copied"]["evidence"]["sha256"] == hashlib.sha256(evidence_file.read_bytes()).hexdigest()
    assert res["inputs-copied"]["actor"] == "alice" and res["sign-off"]["actor"] == "carol"

    r = _pt(run_pt, world, "runbook", "report", rid, "--stage", "dev", "--format", "json")
    rep = json.loads(r.stdout)
    assert rep["state"] == "completed" and [s["id"] for s in rep["steps"]] == [s.id for s in steps]
    assert all(s["status"] == "done" and len(s["evidence_sha256"]) == 64 and s["actor"] and s["at"]
               for s in rep["steps"])
    out = world["tmp"] / "report.md"
    r = _pt(run_pt, world, "runbook", "report", rid, "--stage", "dev", "-o", out)
    md = out.read_text()
    assert r.exit_code == 0 and "state **completed** (8/8 steps)" in md
    assert res["sign-off"]["evidence"]["sha256"] in md

    r = _pt(run_pt, world, "runbook", "done", rid, "sign-off", "--stage", "dev", "--evidence", "again")
    assert r.exit_code == 2 and "already done" in r.stderr


def test_failed_run_step_is_recorded_and_not_done(world, run_pt, tmp_path):
    cl = tmp_path / "fail.yml"
    cl.write_text("name: f\nsteps:\n  - {id: scan, title: scan, run: 'pt logs scan --stage {stage} "
                  "--no-cloudwatch --path leaks'}\n")
    (tmp_path / "leaks").mkdir()
    (tmp_path / "leaks" / "app.log").write_text("user mail jane.doe@example.com\n")
    rid = _pt(run_pt, world, "runbook", "start", cl, "--stage", "dev", "--output", "json").json()["runbook"]
    r = _pt(run_pt, world, "runbook", "done", rid, "scan", "--stage", "dev")
    assert r.exit_code == 1 and "step scan failed" in r.stderr and "exited 1" in r.stderr, r
    rec = Ledger(world["aws"].client("dynamodb"), "val-ledger").get("dev", rid)
    assert rec.data["results"] == {} and rec.data["failed"]["scan"]["exit_code"] == 1
    assert rb.next_step(rec)["id"] == "scan"


@pytest.mark.parametrize("text, needle", [
    ("name: x\nsteps: []\n", "steps: required: a non-empty list"),
    ("name: x\nsteps:\n  - {id: a, title: t}\n", "needs exactly one of"),
    ("name: x\nsteps:\n  - {id: a, run: 'rm -rf /'}\n", "only pt commands run from a checklist"),
    ("name: x\nsteps:\n  - {id: a, manual: true}\n  - {id: a, manual: true}\n", "duplicate step id 'a'"),
    ("steps: [{id: a, manual: true}]\n", "name: required"),
])
def test_bad_checklist_one_line_exit_2(world, run_pt, tmp_path, text, needle):
    f = tmp_path / "bad.yml"
    f.write_text(text)
    r = _pt(run_pt, world, "runbook", "start", f, "--stage", "dev")
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.stderr, r


def test_step_completed_meanwhile_by_someone_else_is_not_overwritten(world, tmp_path):
    cl = tmp_path / "one.yml"
    cl.write_text("name: one\nsteps:\n  - {id: a, title: A, run: 'pt config validate'}\n")
    led = Ledger(world["aws"].client("dynamodb"), "val-ledger")
    from pipeline_tools.release.ledger import ensure_table

    ensure_table(led.client, "val-ledger", project="val", stage="dev", local=True)
    rec = rb.start(led, rb.load_checklist(str(cl)), "dev", actor={"name": "alice"})

    def bob_runs(argv):
        return 0, "bob's run"

    def alice_runs(argv):  # while alice's command runs, bob completes the same step
        rb.done(led, "dev", rec.id, "a", actor={"name": "bob"}, clock=lambda: 2.0, runner=bob_runs)
        return 0, "alice's run"

    with pytest.raises(rb.UsageError, match="was completed meanwhile by bob"):
        rb.done(led, "dev", rec.id, "a", actor={"name": "alice"}, clock=lambda: 1.0, runner=alice_runs)
    got = led.get("dev", rec.id)
    assert got.data["results"]["a"]["actor"] == "bob" and "bob's run" in got.data["results"]["a"]["evidence"]["excerpt"]
    assert got.state == "completed"


def test_undefined_variable_is_refused_at_start(world, run_pt, tmp_path):
    f = tmp_path / "vars.yml"
    f.write_text("name: v\nvars: {a: x}\nsteps:\n  - {id: s, run: 'pt artifacts manifest {a}/{missing}'}\n")
    r = _pt(run_pt, world, "runbook", "start", f, "--stage", "dev")
    assert r.exit_code == 2 and "undefined variable {missing}" in r.stderr and "--var missing=VALUE" in r.stderr, r
    ddb = world["aws"].client("dynamodb")  # refused before the ledger was touched: no table, or no record
    assert ("val-ledger" not in ddb.list_tables()["TableNames"]
            or Ledger(ddb, "val-ledger").query("dev", "runbook") == [])
