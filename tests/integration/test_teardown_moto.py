"""`pt teardown` against moto server: ordered deletion, evidence, refusals, partial failure + re-run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from pipeline_tools.core.errors import AwsError, LockedError, UsageError
from pipeline_tools.ops import teardown as td
from pipeline_tools.release.ledger import Ledger, ensure_table

from .conftest_ops import (
    load_config,
    seed_bucket,
    seed_function,
    seed_log_group,
    seed_repository,
    write_config,
)


def clients(aws) -> td.Clients:
    return td.Clients(lambda_client=aws.client("lambda"), s3=aws.client("s3"), ecr=aws.client("ecr"),
                      logs=aws.client("logs"), cloudformation=aws.client("cloudformation"),
                      dynamodb=aws.client("dynamodb"), cloudwatch=aws.client("cloudwatch"), sns=aws.client("sns"))


def seed_val(aws) -> dict:
    """Everything stage `val` owns, plus neighbours that must survive."""
    for fn, n in (("iris-val-predict", 2), ("iris-val-batch-score", 1), ("iris-val-retired", 1),
                  ("iris-val-eu-predict", 1)):
        seed_function(aws, fn, versions=n)
    entries = seed_bucket(aws, "iris-val-artifacts", keys=3, versions_per_key=4, markers=2)
    digests = {r: seed_repository(aws, r, images=2) for r in ("iris-model", "iris-tools")}
    seed_log_group(aws, "/aws/lambda/iris-val-predict", ["hello", "user a@b.io"])
    seed_log_group(aws, "/aws/lambda/iris-val-retired", ["old"])
    seed_log_group(aws, "/aws/lambda/iris-val-eu-predict", ["neighbour"])
    cw = aws.client("cloudwatch")
    for name in ("iris-val-predict-errors", "iris-val-eu-predict-errors"):
        cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                            Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    aws.client("sns").create_topic(Name="iris-val-events")
    aws.client("s3").create_bucket(Bucket="audit")
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "iris-ledger", project="iris", stage="val", local=True, sleep=lambda s: None)
    led = Ledger(ddb, "iris-ledger")
    for stage in ("val", "val", "staging"):
        led.put_record("deploy", stage, {"digest": "sha256:" + "b" * 64}, state="succeeded")
    return {"entries": entries, "digests": digests}


def _functions(aws) -> set[str]:
    return {f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]}


def test_full_teardown_cli_with_archive_purge_and_evidence(aws, tmp_path, run_pt):
    cfg_path = write_config(tmp_path)
    seed_val(aws)
    evidence_dir = tmp_path / "evidence"
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--yes", "--purge-ledger",
               "--archive-to", "s3://audit/teardown/val", "--evidence-dir", evidence_dir, "--output", "json")
    assert r.exit_code == 0, r
    ev = r.json()
    assert ev["ok"] and ev["remaining"] == [] and ev["failed"] == 0

    # what is gone, what survives
    assert _functions(aws) == {"iris-val-eu-predict"}
    s3 = aws.client("s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {"audit"}
    assert aws.client("ecr").describe_repositories()["repositories"] == []
    groups = [g["logGroupName"] for g in aws.client("logs").describe_log_groups()["logGroups"]]
    assert groups == ["/aws/lambda/iris-val-eu-predict"]
    alarms = [a["AlarmName"] for a in aws.client("cloudwatch").describe_alarms()["MetricAlarms"]]
    assert alarms == ["iris-val-eu-predict-errors"]
    assert aws.client("sns").list_topics()["Topics"] == []
    led = Ledger(aws.client("dynamodb"), "iris-ledger")
    assert led.query("val") == [] and len(led.query("staging")) == 1

    # order: stop traffic → archive → empty bucket → images → functions → … → repositories last
    steps = [a["step"] for a in ev["actions"]]
    first = {s: steps.index(s) for s in dict.fromkeys(steps)}
    assert first["stop-traffic"] < first["archive-logs"] < first["empty-bucket"] < first["delete-images"] \
        < first["delete-functions"] < first["delete-bucket"] < first["delete-log-groups"] < first["purge-ledger"] \
        < first["delete-repositories"]
    assert steps[-1] == "delete-repositories"
    versions = [a for a in ev["actions"] if a["resource_type"] == "lambda:version"]
    assert {a["resource"] for a in versions} >= {"iris-val-predict:1", "iris-val-predict:2"}
    assert all(a["at"].endswith("Z") for a in ev["actions"])
    found = {(f["type"], f["name"]) for f in ev["found"]}
    assert ("lambda:function", "iris-val-retired") in found and ("s3:bucket", "iris-val-artifacts") in found
    assert ("lambda:function", "iris-val-eu-predict") not in found

    # the archive and the evidence next to it, and locally
    manifest = json.loads(s3.get_object(Bucket="audit", Key="teardown/val/manifest.json")["Body"].read())
    assert {o["group"] for o in manifest["objects"]} == {"/aws/lambda/iris-val-predict", "/aws/lambda/iris-val-retired"}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="audit", Prefix="teardown/val/evidence/")["Contents"]]
    assert len(keys) == 2 and {Path(k).suffix for k in keys} == {".json", ".md"}
    local = sorted(evidence_dir.iterdir())
    assert [p.suffix for p in local] == [".json", ".md"]
    md = local[1].read_text()
    assert "complete" in md and "Nothing owned by the stage remains." in md and "iris-val-artifacts" in md
    assert json.loads(local[0].read_text())["ok"] is True


def test_dry_run_plans_and_changes_nothing(aws, tmp_path, run_pt):
    cfg_path = write_config(tmp_path)
    seed_function(aws, "iris-val-predict", versions=1)
    seed_log_group(aws, "/aws/lambda/iris-val-predict", ["x"])
    entries = seed_bucket(aws, "iris-val-artifacts", keys=2, versions_per_key=2, markers=1)
    aws.client("s3").create_bucket(Bucket="audit")
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--dry-run", "--evidence-dir", tmp_path / "ev",
               "--archive-to", "s3://audit/x")
    assert r.exit_code == 0, r
    assert "plan (dry run)" in r.stdout and "dry run: nothing deleted" in r.stdout
    assert "iris-val-predict" in _functions(aws)
    s3 = aws.client("s3")
    assert len(td.list_object_versions(s3, "iris-val-artifacts")) == entries
    assert "Contents" not in s3.list_objects_v2(Bucket="audit")
    assert all(p.name.endswith(("-dry-run.json", "-dry-run.md")) for p in (tmp_path / "ev").iterdir())


def test_refusals(aws, tmp_path, run_pt):
    cfg_path = write_config(tmp_path)
    r = run_pt("teardown", "--stage", "prod", "--config", cfg_path, "--yes")
    assert r.exit_code == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: stage 'prod' is protected: teardown refused"]
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path)  # stdin is not a TTY under pytest
    assert r.exit_code == 2 and "without --yes" in r.stderr
    r = run_pt("teardown", "--stage", "nope", "--config", cfg_path, "--yes")
    assert r.exit_code == 2 and "unknown stage 'nope'" in r.stderr
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--yes", "--archive-to", "s3://iris-val-artifacts/x")
    assert r.exit_code == 2 and "own artifacts bucket" in r.stderr
    seed_function(aws, "iris-val-predict", versions=1)
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--yes", "--archive-to", "s3://no-such-audit/x")
    assert r.exit_code == 1 and "s3://no-such-audit does not exist" in r.stderr
    assert "iris-val-predict" in _functions(aws)


def test_protected_flag_in_config_wins(tmp_path):
    from pipeline_tools.core.config import parse

    text = (tmp_path / "x").parent.joinpath("pipeline.yml")
    write_config(tmp_path)
    body = text.read_text().replace('branch: val\n', 'branch: val\n    protected: true\n', 1)
    body = body.replace("branch: master\n", "branch: master\n    protected: false\n")
    cfg = parse(body)
    with pytest.raises(UsageError, match="'val' is protected"):
        td.check_allowed(cfg, "val")
    td.check_allowed(cfg, "prod")


def test_shared_account_keeps_ecr(aws, tmp_path):
    cfg = load_config(tmp_path)
    seed_function(aws, "iris-staging-predict", versions=1)
    digests = seed_repository(aws, "iris-model", images=2)
    ev = td.teardown(cfg, "staging", clients(aws), clock=time.time, sleep=lambda s: None,
                     evidence_dir=tmp_path / "ev")
    assert ev.ok, ev.actions
    assert "iris-staging-predict" not in _functions(aws)
    ids = aws.client("ecr").list_images(repositoryName="iris-model")["imageIds"]
    assert sorted(i["imageDigest"] for i in ids) == sorted(digests)
    (kept,) = [k for k in ev.kept if k["type"] == "ecr:repository"]
    assert kept["name"] == "iris-model" and "qa" in kept["why"]
    assert not any(a.step.startswith("delete-im") or a.step == "delete-repositories" for a in ev.actions)


class FlakyS3:
    """The real S3 client, except that delete_bucket is denied the first `fail` times."""

    def __init__(self, real, fail: int = 1):
        self._real, self.fail = real, fail

    def delete_bucket(self, **kw):
        if self.fail:
            self.fail -= 1
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "DeleteBucket")
        return self._real.delete_bucket(**kw)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_partial_failure_is_in_the_evidence_and_rerun_finishes(aws, tmp_path, monkeypatch):
    cfg = load_config(tmp_path)
    seed_val(aws)
    monkeypatch.setattr(td, "S3_BATCH", 5)  # 14 entries → 3 delete_objects batches
    c = clients(aws)
    c.s3 = FlakyS3(c.s3)
    ev = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert not ev.ok
    (failed,) = ev.failed
    assert failed.step == "delete-bucket" and "AccessDenied" in failed.detail
    assert [r["name"] for r in ev.remaining] == ["iris-val-artifacts"]
    assert len([a for a in ev.actions if a.step == "empty-bucket"]) == 3
    saved = json.loads(Path(ev.files[0]).read_text())
    assert saved["ok"] is False and saved["failed"] == 1
    assert "INCOMPLETE" in Path(ev.files[1]).read_text()
    # everything else already went; the re-run finishes and records the rest as found/done
    assert _functions(aws) == {"iris-val-eu-predict"}
    again = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert again.ok and again.remaining == []
    assert [(a.step, a.result) for a in again.actions] == [("delete-bucket", "done")]


def test_access_denied_during_discovery_deletes_nothing(aws, tmp_path):
    cfg = load_config(tmp_path)
    seed_function(aws, "iris-val-predict", versions=1)
    c = clients(aws)
    with Stubber(c.lambda_client) as stub:
        stub.add_client_error("list_functions", service_error_code="AccessDeniedException",
                              service_message="not authorized to perform lambda:ListFunctions", http_status_code=403)
        with pytest.raises(ClientError) as ei:
            td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    from pipeline_tools.core.errors import translate

    err = translate(ei.value)
    assert isinstance(err, AwsError) and err.code == "AccessDeniedException"
    assert "iris-val-predict" in _functions(aws)


def test_missing_bucket_and_no_resources_is_clean(aws, tmp_path):
    cfg = load_config(tmp_path)
    ev = td.teardown(cfg, "val", clients(aws), clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert ev.ok and ev.found == [] and ev.actions == []


def test_stack_is_deleted_then_leftovers_swept(aws, tmp_path):
    cfg = load_config(tmp_path)
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "iris-val-events"}}}}
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="iris-val-stage", TemplateBody=json.dumps(template))
    seed_function(aws, "iris-val-predict", versions=1)
    seed_bucket(aws, "iris-val-artifacts", keys=1, versions_per_key=2, markers=1)
    ev = td.teardown(cfg, "val", clients(aws), clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert ev.ok, [a for a in ev.actions if a.result == "failed"]
    steps = [a.step for a in ev.actions]
    assert steps.index("empty-bucket") < steps.index("delete-stack") < steps.index("delete-functions")
    stacks = [s for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert stacks == []
    assert _functions(aws) == set()


def test_locked_stage_is_refused(aws, tmp_path):
    cfg = load_config(tmp_path)
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "iris-ledger", project="iris", stage="val", local=True, sleep=lambda s: None)
    Ledger(ddb, "iris-ledger").acquire("val", "d-1", {"name": "alice"}, lease=600)
    seed_function(aws, "iris-val-predict", versions=1)
    with pytest.raises(LockedError, match="locked by alice"):
        td.teardown(cfg, "val", clients(aws), clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert "iris-val-predict" in _functions(aws)


class FakeTTY:
    def __init__(self, text: str):
        import io

        self._buf = io.StringIO(text)

    def isatty(self) -> bool:
        return True

    def readline(self, *a):
        return self._buf.readline(*a)

    def read(self, *a):
        return self._buf.read(*a)


def test_tty_confirmation_needs_the_stage_name(aws, tmp_path, run_pt, monkeypatch):
    cfg_path = write_config(tmp_path)
    seed_function(aws, "iris-val-predict", versions=1)
    monkeypatch.setattr("sys.stdin", FakeTTY("staging\n"))
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--evidence-dir", tmp_path / "ev")
    assert r.exit_code == 2 and "not confirmed" in r.stderr
    assert "iris-val-predict" in _functions(aws)
    monkeypatch.setattr("sys.stdin", FakeTTY("val\n"))
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--evidence-dir", tmp_path / "ev")
    assert r.exit_code == 0, r
    assert "done: nothing the stage owned remains" in r.stdout
    assert _functions(aws) == set()


class DenyGetObject(FlakyS3):
    def get_object(self, **kw):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")


def test_failed_archive_keeps_log_groups(aws, tmp_path):
    cfg = load_config(tmp_path)
    seed_function(aws, "iris-val-predict", versions=1)
    seed_log_group(aws, "/aws/lambda/iris-val-predict", ["x"])
    aws.client("s3").create_bucket(Bucket="audit")
    c = clients(aws)
    c.s3 = DenyGetObject(c.s3)
    ev = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev",
                     archive_to="s3://audit/a")
    results = {a.step: (a.result, a.detail) for a in ev.actions}
    assert results["archive-logs"][0] == "failed" and "AccessDenied" in results["archive-logs"][1]
    assert results["delete-log-groups"] == ("skipped", "archive failed; log group kept")
    assert [r["name"] for r in ev.remaining] == ["/aws/lambda/iris-val-predict"]
    c.s3 = c.s3._real
    again = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev",
                        archive_to="s3://audit/a")
    assert again.ok and [a.step for a in again.actions] == ["archive-logs", "delete-log-groups"]


def test_github_actions_outputs_and_summary(aws, tmp_path, run_pt, monkeypatch):
    cfg_path = write_config(tmp_path)
    gh_out, summary = tmp_path / "out", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh_out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    seed_function(aws, "iris-val-predict", versions=1)
    r = run_pt("teardown", "--stage", "val", "--config", cfg_path, "--yes", "--evidence-dir", tmp_path / "ev")
    assert r.exit_code == 0, r
    assert "teardown_ok=true" in gh_out.read_text()
    assert "# Teardown of iris stage `val`: complete" in summary.read_text()
