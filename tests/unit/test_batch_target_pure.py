"""targets/batch.py pure parts: the live revision, the request, the schedule input, job watching."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import DeployFailed, UsageError
from pipeline_tools.release.target import Release
from pipeline_tools.targets import batch as b

CFG = parse("""\
project: iris
region: us-east-1
images: {model: {}}
stages: {staging: {account: "111111111111", branch: main, gate: {alarms: [x]}}}
targets:
  batch:
    score: {image: model, vcpu: 1, memory: 4096, environment: {B: "2", A: "1"}, command: [run]}
""")
SPEC = CFG.targets.batch["score"]
REL = Release("repo@sha256:" + "a" * 64, "sha256:" + "a" * 64, "d1", "model")


def rev(n: int, stamp: int | None = None, status: str = "ACTIVE", arn: str | None = None) -> dict:
    tags = {b.LIVE_TAG: str(stamp)} if stamp is not None else {}
    return {"revision": n, "status": status, "jobDefinitionArn": arn or f"arn:def:{n}", "tags": tags}


@pytest.mark.parametrize(("revisions", "schedule", "expected"), [
    ([], None, None),
    ([rev(1), rev(2)], None, 2),                                   # untouched by pt: the newest
    ([rev(1), rev(2)], "arn:def:1", 1),                            # the schedule's revision
    ([rev(1), rev(2)], "arn:def:9", 2),                            # schedule at a gone revision: newest
    ([rev(1, 1), rev(2)], "arn:def:2", 1),                         # a tag beats the schedule
    ([rev(1, 3), rev(2, 2), rev(3)], None, 1),                     # highest stamp, not highest revision
    ([rev(1, 2), rev(2, 2)], None, 2),                             # equal stamps: the newer revision
    ([rev(1, 5, status="INACTIVE"), rev(2, 1)], None, 2),           # a deregistered revision is never live
    ([rev(1, status="INACTIVE")], None, None),
    ([{**rev(1), "tags": {b.LIVE_TAG: "x"}}, rev(2)], None, 2),     # a garbled tag is no stamp
])
def test_pick_live(revisions, schedule, expected):
    live = b.pick_live(revisions, schedule)
    assert (live["revision"] if live else None) == expected


def test_registration_is_the_fargate_request():
    req = b.registration(SPEC, "iris-staging-score", REL, "arn:exec", "arn:job")
    props = req["containerProperties"]
    assert req["platformCapabilities"] == ["FARGATE"] and req["type"] == "container"
    assert props["image"] == REL.image_uri and props["command"] == ["run"]
    assert props["resourceRequirements"] == [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "4096"}]
    assert props["environment"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert (props["executionRoleArn"], props["jobRoleArn"]) == ("arn:exec", "arn:job")
    assert req["retryStrategy"] == {"attempts": 1} and req["timeout"] == {"attemptDurationSeconds": 3600}
    assert req["tags"][b.DIGEST_TAG] == REL.digest and req["tags"][b.DEPLOY_TAG] == "d1"
    assert "command" not in b.container_properties(SPEC.model_copy(update={"command": None}), "i", "e", "j")


def test_registration_refuses_a_size_fargate_lacks():
    with pytest.raises(UsageError, match="Fargate with 1 vCPU takes memory"):
        b.registration(SPEC.model_copy(update={"memory": 1024}), "d", REL, "e", "j")


@pytest.mark.parametrize("change", [{"memory": 8192}, {"vcpu": 2.0}, {"timeout": 60}, {"retry": 3},
                                    {"environment": {}}, {"command": ["other"]}])
def test_config_hash_changes_with_every_setting(change):
    assert b.config_hash(SPEC, "e", "j") != b.config_hash(SPEC.model_copy(update=change), "e", "j")
    assert b.config_hash(SPEC, "e", "j") != b.config_hash(SPEC, "e2", "j")


def test_config_hash_ignores_the_image():
    assert b.config_hash(SPEC, "e", "j") == b.config_hash(SPEC.model_copy(), "e", "j")


def test_schedule_input_round_trip():
    text = b.schedule_input("n", "q", "arn:def:3")
    assert json.loads(text) == {"jobName": "n", "jobQueue": "q", "jobDefinition": "arn:def:3"}
    assert b.schedule_revision_arn({"Target": {"Input": text}}) == "arn:def:3"
    assert b.schedule_revision_arn(None) is None
    assert b.schedule_revision_arn({"Target": {"Input": "not json"}}) is None
    assert b.schedule_revision_arn({"Target": {}}) is None


def test_job_names_are_valid():
    assert b.job_name("iris-staging-score", "run 1:2") == "iris-staging-score-run-1-2"
    assert len(b.job_name("x" * 200, "y")) == 128


def test_image_digest_from_image_or_tag():
    assert b.image_digest({"containerProperties": {"image": "r@sha256:" + "b" * 64}}) == "sha256:" + "b" * 64
    assert b.image_digest({"containerProperties": {"image": "r:latest"}, "tags": {b.DIGEST_TAG: "sha256:x"}}) == \
        "sha256:x"
    assert b.image_digest({}) is None


# --- watch_job with Stubber (DescribeJobs / TerminateJob shaped like the API reference) ------------


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def client():
    c = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return c, Stubber(c)


def job(status: str, **kw) -> dict:
    return {"jobs": [{"jobName": "n", "jobId": "j-1", "jobQueue": "q", "status": status, "startedAt": 1,
                      "jobDefinition": "arn:def:1", **kw}]}


def test_watch_reports_each_status_change_once():
    c, stub = client()
    for s in ("RUNNABLE", "RUNNABLE", "STARTING", "RUNNING", "RUNNING"):
        stub.add_response("describe_jobs", job(s), {"jobs": ["j-1"]})
    stub.add_response("describe_jobs", job("SUCCEEDED", container={"exitCode": 0, "logStreamName": "s/1"}))
    seen: list[str] = []
    clock = Clock()
    with stub:
        w = b.watch_job(c, b.JobWatch("j-1", "n"), clock, clock.sleep, 600, seen.append)
    assert seen == ["RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED"] == w.statuses
    assert (w.status, w.exit_code, w.log_stream) == ("SUCCEEDED", 0, "s/1")


def test_watch_failed_keeps_the_reason():
    c, stub = client()
    stub.add_response("describe_jobs", job("FAILED", statusReason="Essential container in task exited",
                                           container={"exitCode": 3, "reason": "OOM"}))
    clock = Clock()
    with stub:
        w = b.watch_job(c, b.JobWatch("j-1", "n"), clock, clock.sleep, 600)
    assert (w.status, w.reason, w.exit_code) == ("FAILED", "Essential container in task exited", 3)


def test_watch_deadline_terminates_and_fails():
    c, stub = client()
    for _ in range(8):
        stub.add_response("describe_jobs", job("RUNNING"))
    stub.add_response("terminate_job", {}, {"jobId": "j-1", "reason": "pt: deadline passed"})
    clock = Clock()
    with stub, pytest.raises(DeployFailed, match="still RUNNING after 30s"):
        b.watch_job(c, b.JobWatch("j-1", "n"), clock, clock.sleep, 30)
    stub.assert_no_pending_responses()


def test_watch_unknown_job_fails_closed():
    c, stub = client()
    stub.add_response("describe_jobs", {"jobs": []})
    clock = Clock()
    with stub, pytest.raises(DeployFailed, match="not known to DescribeJobs"):
        b.watch_job(c, b.JobWatch("j-1", "n"), clock, clock.sleep, 30)


def test_watch_api_error_propagates():
    c, stub = client()
    stub.add_client_error("describe_jobs", "ClientException", "boom")
    clock = Clock()
    with stub, pytest.raises(c.exceptions.ClientException):
        b.watch_job(c, b.JobWatch("j-1", "n"), clock, clock.sleep, 30)


def test_schedule_request_new_schedule():
    req = b.schedule_request(None, "s", "rate(1 day)", "arn:role", "{}")
    assert req == {"Name": "s", "ScheduleExpression": "rate(1 day)", "FlexibleTimeWindow": {"Mode": "OFF"},
                   "State": "ENABLED", "Target": {"RoleArn": "arn:role", "Arn": b.SUBMIT_JOB_TARGET, "Input": "{}"}}


def test_schedule_request_keeps_what_the_stack_set():
    existing = {"Name": "s", "GroupName": "g", "ScheduleExpression": "rate(2 days)", "State": "DISABLED",
                "ScheduleExpressionTimezone": "Europe/Berlin", "FlexibleTimeWindow": {"Mode": "FLEXIBLE",
                                                                                      "MaximumWindowInMinutes": 5},
                "Description": None, "KmsKeyArn": None,
                "Target": {"Arn": "arn:old", "RoleArn": "arn:stack-role", "Input": "{}",
                           "RetryPolicy": {"MaximumRetryAttempts": 3}, "DeadLetterConfig": {"Arn": "arn:dlq"}}}
    req = b.schedule_request(existing, "s", "cron(0 3 * * ? *)", "arn:role", '{"x": 1}')
    assert req["ScheduleExpression"] == "cron(0 3 * * ? *)"  # pipeline.yml decides the expression
    assert (req["State"], req["GroupName"], req["ScheduleExpressionTimezone"]) == ("DISABLED", "g", "Europe/Berlin")
    assert req["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}
    assert "Description" not in req and "KmsKeyArn" not in req
    assert req["Target"] == {"RoleArn": "arn:stack-role", "RetryPolicy": {"MaximumRetryAttempts": 3},
                             "DeadLetterConfig": {"Arn": "arn:dlq"}, "Arn": b.SUBMIT_JOB_TARGET, "Input": '{"x": 1}'}
