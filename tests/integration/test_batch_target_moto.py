"""BatchJobTarget and `pt run-job` against a moto server (Batch, EventBridge Scheduler).

Jobs run through moto's Docker-less Batch (`simple_batch`): SUCCEEDED at once, FAILED with
MOTO_SIMPLE_BATCH_FAIL_AFTER=0. The queue and compute environment stand in for the CDK stack's.
"""

from __future__ import annotations

import json

import pytest

from pipeline_tools.core.errors import DeployFailed, NotFoundError, UsageError
from pipeline_tools.release.target import Placement, Target
from pipeline_tools.targets import batch as batch_mod
from pipeline_tools.targets import target_class
from pipeline_tools.targets.batch import BatchJobTarget

from .conftest_targets import (
    ACCOUNT,
    Env,
    create_batch_queue,
    digest,
    load_config,
    release,
    simple_batch,  # noqa: F401 - fixture
    write_config,
)

DEF = "iris-staging-score"


@pytest.fixture
def env(aws):
    """The stage's queue exists (the stack made it) and a TargetEnv on the moto server."""
    create_batch_queue(aws)
    return Env(aws)


def target(tmp_path, env, **kw) -> BatchJobTarget:
    return BatchJobTarget(load_config(tmp_path, **kw), "staging", "score", env.env)


def deploy(t: BatchJobTarget, n: int):
    p = t.current()
    c = t.prepare(release(n), p)
    t.shift(p, c, 100)
    return p, c


def schedule_target(aws) -> dict:
    return aws.client("scheduler").get_schedule(Name=DEF)["Target"]


def test_registry_builds_it(aws, tmp_path, env):
    t = target_class("batch")(load_config(tmp_path), "staging", "score", env.env)
    assert isinstance(t, Target) and t.id == "batch:score" and t.weighted is False
    assert batch_mod.names(load_config(tmp_path), "staging") == ["score"]
    with pytest.raises(UsageError, match="unknown batch job 'scor'"):
        BatchJobTarget(load_config(tmp_path), "staging", "scor", env.env)


def test_check_and_current_need_the_queue(aws, tmp_path):
    t = BatchJobTarget(load_config(tmp_path), "staging", "score", Env(aws).env)
    for call in (t.check, t.current):
        with pytest.raises(NotFoundError) as e:
            call()
        assert e.value.exit_code == 2 and "job queue iris-staging-batch does not exist" in e.value.message
    create_batch_queue(aws)
    t.check()
    aws.client("batch").update_job_queue(jobQueue="iris-staging-batch", state="DISABLED")
    with pytest.raises(NotFoundError, match="is DISABLED"):
        t.check()


def test_prepare_registers_a_fargate_revision(aws, tmp_path, env):
    t = target(tmp_path, env)
    p = t.current()
    assert p.exists is False and p.resource == DEF
    c = t.prepare(release(1), p)
    assert (c.version, c.digest) == ("1", digest(1))
    (rev,) = aws.client("batch").describe_job_definitions(jobDefinitionName=DEF, status="ACTIVE")["jobDefinitions"]
    props = rev["containerProperties"]
    assert props["image"] == release(1).image_uri
    assert props["command"] == ["python", "score.py"]
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == {"VCPU": "0.5", "MEMORY": "2048"}
    assert props["executionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/iris-staging-batch-exec"
    assert props["jobRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/iris-staging-score-job"
    assert props["environment"] == [{"name": "MODE", "value": "batch"}]
    assert rev["platformCapabilities"] == ["FARGATE"]
    assert rev["retryStrategy"]["attempts"] == 2 and rev["timeout"] == {"attemptDurationSeconds": 600}
    assert rev["tags"]["pt:digest"] == digest(1) and rev["tags"]["pt:deploy"] == "d1"
    assert t.current().exists is True and t.current().version == "1"  # untagged: the newest revision
    # …but the schedule is not there yet: not "unchanged"
    assert t.unchanged(t.current(), release(1)) is False


def test_bad_fargate_size_is_refused_before_any_call(aws, tmp_path, env):
    t = target(tmp_path, env)
    spec = t.spec.model_copy(update={"memory": 1000})
    t.spec = spec
    with pytest.raises(UsageError, match=r"Fargate with 0\.5 vCPU takes memory 1024–4096"):
        t.prepare(release(1), t.current())
    assert aws.client("batch").describe_job_definitions(jobDefinitionName=DEF)["jobDefinitions"] == []


def test_deploy_shift_restore_and_the_schedule(aws, tmp_path, env):
    t = target(tmp_path, env)
    _p0, c1 = deploy(t, 1)
    live1 = t.current()
    assert (live1.version, live1.digest, live1.data["stamp"]) == ("1", digest(1), 1)
    tgt = schedule_target(aws)
    assert tgt["Arn"] == "arn:aws:scheduler:::aws-sdk:batch:submitJob"
    assert tgt["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/iris-staging-scheduler"
    assert json.loads(tgt["Input"]) == {"jobName": "iris-staging-score-scheduled", "jobQueue": "iris-staging-batch",
                                        "jobDefinition": c1.data["arn"]}
    sched = aws.client("scheduler").get_schedule(Name=DEF)
    assert sched["ScheduleExpression"] == "cron(0 3 * * ? *)" and sched["State"] == "ENABLED"
    assert t.unchanged(live1, release(1)) is True
    assert t.unchanged(live1, release(2)) is False
    # a config change with the same image is a deploy of its own
    t_mem = target(tmp_path, env, extra="")
    t_mem.spec = t_mem.spec.model_copy(update={"memory": 4096})
    assert t_mem.unchanged(live1, release(1)) is False

    _, c2 = deploy(t, 2)
    live2 = t.current()
    assert (live2.version, live2.digest) == ("2", digest(2))
    assert json.loads(schedule_target(aws)["Input"])["jobDefinition"] == c2.data["arn"]
    tags1 = aws.client("batch").list_tags_for_resource(resourceArn=c1.data["arn"])["tags"]
    assert "pt:live" not in tags1  # one live revision

    t.restore(Placement.from_dict(json.loads(json.dumps(live1.to_dict()))))
    back = t.current()
    assert (back.version, back.digest) == ("1", digest(1))
    assert json.loads(schedule_target(aws)["Input"])["jobDefinition"] == c1.data["arn"]
    active = aws.client("batch").describe_job_definitions(jobDefinitionName=DEF, status="ACTIVE")["jobDefinitions"]
    assert [r["revision"] for r in active] == [1]  # the new revision was deregistered
    t.restore(live1)  # idempotent
    assert t.current().version == "1"


def test_shift_zero_keeps_the_old_revision(aws, tmp_path, env):
    t = target(tmp_path, env)
    deploy(t, 1)
    live1 = t.current()
    c2 = t.prepare(release(2), live1)
    t.shift(live1, c2, 0)
    assert t.current().version == "1"
    t.shift(live1, c2, 100)
    assert t.current().version == "2"


def test_first_deploy_restore_removes_schedule_and_revisions(aws, tmp_path, env):
    t = target(tmp_path, env)
    p0, _c = deploy(t, 1)
    assert p0.exists is False and p0.data["schedule_exists"] is False
    t.restore(p0)
    assert t.current().exists is False
    with pytest.raises(aws.client("scheduler").exceptions.ResourceNotFoundException):
        aws.client("scheduler").get_schedule(Name=DEF)
    t.restore(p0)


def test_a_schedule_made_by_the_stack_is_kept_on_first_deploy_restore(aws, tmp_path, env):
    aws.client("scheduler").create_schedule(
        Name=DEF, ScheduleExpression="cron(0 3 * * ? *)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": batch_mod.SUBMIT_JOB_TARGET, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/x", "Input": "{}"})
    t = target(tmp_path, env)
    p0, c = deploy(t, 1)
    sched = aws.client("scheduler").get_schedule(Name=DEF)
    assert sched["Target"]["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/x"  # the stack's role is kept
    assert json.loads(sched["Target"]["Input"])["jobDefinition"] == c.data["arn"]
    t.restore(p0)
    assert aws.client("scheduler").get_schedule(Name=DEF)  # still there


def test_the_stacks_initial_revision_counts_as_live(aws, tmp_path, env):
    batch = aws.client("batch")
    batch.register_job_definition(jobDefinitionName=DEF, type="container", platformCapabilities=["FARGATE"],
                                  containerProperties={"image": f"repo@{digest(9)}", "resourceRequirements": [
                                      {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}]})
    t = target(tmp_path, env)
    p = t.current()
    assert (p.exists, p.version, p.digest) == (True, "1", digest(9))
    c = t.prepare(release(1), p)
    t.shift(p, c, 100)
    t.restore(p)
    assert t.current().version == "1" and t.current().digest == digest(9)


def test_finish_keeps_the_newest_revisions(aws, tmp_path, env):
    t = target(tmp_path, env)  # keep_versions: 2
    for n in (1, 2, 3):
        deploy(t, n)
    p, c = deploy(t, 4)
    assert t.finish(p, c) == ["1", "2"]
    active = aws.client("batch").describe_job_definitions(jobDefinitionName=DEF, status="ACTIVE")["jobDefinitions"]
    assert sorted(r["revision"] for r in active) == [3, 4]
    assert t.finish(p, c) == []


def test_smoke_job_succeeds(aws, tmp_path, env, simple_batch):  # noqa: F811
    t = target(tmp_path, env)
    c = t.prepare(release(1), t.current())
    t.smoke(c)
    assert any("smoke job" in line and "SUCCEEDED" in line for line in env.logs)
    (job,) = aws.client("batch").list_jobs(jobQueue="iris-staging-batch", jobStatus="SUCCEEDED")["jobSummaryList"]
    assert job["jobName"] == "iris-staging-score-smoke-1"


def test_smoke_job_failure_fails_the_deploy(aws, tmp_path, env, simple_batch, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    t = target(tmp_path, env)
    p = t.current()
    c = t.prepare(release(1), p)
    with pytest.raises(DeployFailed) as e:
        t.smoke(c)
    assert "smoke job of revision 1 FAILED" in e.value.message and "schedule did not move" in e.value.hint


def test_smoke_can_be_turned_off(aws, tmp_path, env):
    t = BatchJobTarget(load_config(tmp_path, extra=""), "staging", "score", env.env)
    t.spec = t.spec.model_copy(update={"smoke": False})
    t.smoke(t.prepare(release(1), t.current()))
    assert aws.client("batch").list_jobs(jobQueue="iris-staging-batch", jobStatus="SUCCEEDED")["jobSummaryList"] == []


def test_describe(aws, tmp_path, env):
    t = target(tmp_path, env)
    _, c = deploy(t, 1)
    d = t.describe()
    json.dumps(d)
    assert d["revision"] == "1" and d["digest"] == digest(1) and d["schedule_revision_arn"] == c.data["arn"]
    assert t.alarm_dimensions(c) == []


# --- pt run-job ---------------------------------------------------------------------------------


def test_run_job_waits_and_reports(aws, tmp_path, env, simple_batch, run_pt):  # noqa: F811
    path = write_config(tmp_path)
    t = target(tmp_path, env)
    deploy(t, 1)
    r = run_pt("run-job", "--config", path, "--stage", "staging", "--job", "score", "--wait",
               "--command", "python score.py --day '2026-01-01'", "--output", "json")
    assert r.exit_code == 0, r
    assert "score: SUBMITTED" in r.stderr and "score: SUCCEEDED" in r.stderr  # streamed, stdout stays JSON
    out = r.json()
    assert out["status"] == "SUCCEEDED" and out["statuses"][0] == "SUBMITTED" and out["statuses"][-1] == "SUCCEEDED"
    job = aws.client("batch").describe_jobs(jobs=[out["job_id"]])["jobs"][0]
    assert job["jobDefinition"].endswith(f"{DEF}:1")
    assert job["container"]["command"] == ["python", "score.py", "--day", "2026-01-01"]


def test_run_job_failed_is_exit_1(aws, tmp_path, env, simple_batch, run_pt, monkeypatch):  # noqa: F811
    path = write_config(tmp_path)
    deploy(target(tmp_path, env), 1)
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    r = run_pt("run-job", "--config", path, "--stage", "staging", "--job", "score", "--wait")
    assert r.exit_code == 1 and "iris-staging-score-run-" in r.stdout and ": FAILED (" in r.stdout


def test_run_job_without_wait_only_submits(aws, tmp_path, env, simple_batch, run_pt):  # noqa: F811
    path = write_config(tmp_path)
    deploy(target(tmp_path, env), 1)
    r = run_pt("run-job", "--config", path, "--stage", "staging", "--job", "score", "--output", "json")
    assert r.exit_code == 0 and r.json()["waited"] is False and r.json()["statuses"] == ["SUBMITTED"]


def test_run_job_dry_run_submits_nothing(aws, tmp_path, env, simple_batch, run_pt):  # noqa: F811
    path = write_config(tmp_path)
    _p, c = deploy(target(tmp_path, env), 1)
    r = run_pt("run-job", "--config", path, "--stage", "staging", "--job", "score", "--dry-run",
               "--command", "python score.py", "--output", "json")
    assert r.exit_code == 0, r
    req = r.json()["request"]
    assert req["jobDefinition"] == c.data["arn"] and req["containerOverrides"] == {"command": ["python", "score.py"]}
    assert aws.client("batch").list_jobs(jobQueue="iris-staging-batch", jobStatus="SUCCEEDED")["jobSummaryList"] == []


@pytest.mark.parametrize(("args", "needle"), [
    (("--job", "score"), "batch:score has no live revision in stage staging"),
    (("--job", "scor"), "unknown batch job 'scor'"),
    (("--job", "score", "--command", "python 'unclosed"), "--command: No closing quotation"),
    (("--job", "score", "--command", "  "), "--command is empty"),
    (("--job", "score", "--stage", "prod"), "unknown stage 'prod'"),
])
def test_run_job_bad_input_is_exit_2(aws, tmp_path, env, run_pt, args, needle):
    path = write_config(tmp_path)
    r = run_pt("run-job", "--config", path, "--stage", "staging", *args)
    assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.stderr, r
