"""CodePipeline approval adapter against botocore Stubber (moto lacks these two calls).

Responses follow the GetPipelineState / PutApprovalResult response syntax of the AWS API
reference; Stubber validates them against botocore's service model as well.
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_tools.core.errors import NotFoundError, UsageError
from pipeline_tools.release import codepipeline as cp

TOKEN = "3f0b7a2c-9d41-4c1e-8a55-0c6f3e2b9d10"
T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


@pytest.fixture
def client():
    c = boto3.client("codepipeline", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(c) as stub:
        c.stub = stub
        yield c
        stub.assert_no_pending_responses()


def state(approval_exec: dict | None, pipeline="iris-prod-pipeline") -> dict:
    build = {"actionName": "Deploy", "latestExecution": {
        "actionExecutionId": "a1", "status": "Succeeded", "summary": "pt deploy",
        "lastStatusChange": T0, "externalExecutionId": "iris:build/1",
        "externalExecutionUrl": "https://console.aws.amazon.com/codebuild/x"}}
    approve = {"actionName": "ApproveProd", "entityUrl": "https://console.aws.amazon.com/x"}
    if approval_exec is not None:
        approve["latestExecution"] = approval_exec
    return {
        "pipelineName": pipeline, "pipelineVersion": 3, "created": T0, "updated": T0,
        "stageStates": [
            {"stageName": "Staging", "actionStates": [build],
             "latestExecution": {"pipelineExecutionId": "e-1", "status": "Succeeded"},
             "inboundTransitionState": {"enabled": True}},
            {"stageName": "Approval", "actionStates": [approve],
             "latestExecution": {"pipelineExecutionId": "e-1", "status": "InProgress"},
             "inboundTransitionState": {"enabled": True}},
        ],
    }


PENDING = {"actionExecutionId": "a2", "status": "InProgress", "lastStatusChange": T0, "token": TOKEN}


def test_reads_pending_approval_and_answers_it(client):
    client.stub.add_response("get_pipeline_state", state(PENDING), {"name": "iris-prod-pipeline"})
    client.stub.add_response(
        "put_approval_result", {"approvedAt": T0},
        {"pipelineName": "iris-prod-pipeline", "stageName": "Approval", "actionName": "ApproveProd",
         "result": {"summary": "pt gate staging: PASS", "status": "Approved"}, "token": TOKEN})
    p = cp.pending_approval(client, "iris-prod-pipeline")
    assert (p.stage, p.action, p.status, p.token, p.pipeline_execution_id) == \
        ("Approval", "ApproveProd", "pending", TOKEN, "e-1")
    assert cp.answer(client, p, approve=True, summary="pt gate staging: PASS") == T0.timestamp()


def test_reject_sends_rejected(client):
    client.stub.add_response("get_pipeline_state", state(PENDING), {"name": "iris-prod-pipeline"})
    client.stub.add_response(
        "put_approval_result", {"approvedAt": T0},
        {"pipelineName": "iris-prod-pipeline", "stageName": "Approval", "actionName": "ApproveProd",
         "result": {"summary": "gate FAIL", "status": "Rejected"}, "token": TOKEN})
    cp.answer(client, cp.pending_approval(client, "iris-prod-pipeline"), approve=False, summary="gate FAIL")


def test_answered_approval_reports_approver(client):
    done = {"actionExecutionId": "a2", "status": "Succeeded", "summary": "looks good",
            "lastStatusChange": T0, "lastUpdatedBy": "arn:aws:sts::222222222222:assumed-role/Approver/bob"}
    client.stub.add_response("get_pipeline_state", state(done), {"name": "iris-prod-pipeline"})
    [a] = cp.approval_actions(client, "iris-prod-pipeline")
    assert (a.status, a.approver, a.summary, a.token) == \
        ("approved", "arn:aws:sts::222222222222:assumed-role/Approver/bob", "looks good", None)
    assert a.changed_at == T0.timestamp()


def test_no_pending_when_already_answered(client):
    done = {"actionExecutionId": "a2", "status": "Failed", "summary": "no",
            "lastStatusChange": T0, "lastUpdatedBy": "arn:aws:iam::222222222222:user/carol"}
    client.stub.add_response("get_pipeline_state", state(done), {"name": "iris-prod-pipeline"})
    with pytest.raises(cp.ApprovalAlreadyAnswered, match="rejected by arn:aws:iam::222222222222:user/carol"):
        cp.pending_approval(client, "iris-prod-pipeline")


def test_not_reached_yet(client):
    client.stub.add_response("get_pipeline_state", state(None), {"name": "iris-prod-pipeline"})
    with pytest.raises(NotFoundError, match="no approval action waiting"):
        cp.pending_approval(client, "iris-prod-pipeline")


def test_unknown_pipeline(client):
    client.stub.add_client_error("get_pipeline_state", "PipelineNotFoundException",
                                 "The account with id '123' does not include a pipeline with the name 'nope'",
                                 http_status_code=400, expected_params={"name": "nope"})
    with pytest.raises(NotFoundError, match="pipeline 'nope' not found") as e:
        cp.approval_actions(client, "nope")
    assert "list-pipelines" in e.value.hint


@pytest.mark.parametrize("code", ["ApprovalAlreadyCompletedException", "InvalidApprovalTokenException"])
def test_token_already_answered(client, code):
    client.stub.add_response("get_pipeline_state", state(PENDING), {"name": "iris-prod-pipeline"})
    client.stub.add_client_error("put_approval_result", code, "The approval action has already been approved "
                                 "or rejected", http_status_code=400)
    p = cp.pending_approval(client, "iris-prod-pipeline")
    with pytest.raises(cp.ApprovalAlreadyAnswered, match=code):
        cp.answer(client, p, approve=True, summary="ok")


def test_two_pending_needs_a_choice(client):
    s = state(PENDING)
    s["stageStates"][0]["actionStates"].append(
        {"actionName": "ApproveStaging", "latestExecution": {**PENDING, "token": TOKEN.replace("3", "4")}})
    client.stub.add_response("get_pipeline_state", s, {"name": "iris-prod-pipeline"})
    client.stub.add_response("get_pipeline_state", s, {"name": "iris-prod-pipeline"})
    with pytest.raises(UsageError, match="several approvals"):
        cp.pending_approval(client, "iris-prod-pipeline")
    assert cp.pending_approval(client, "iris-prod-pipeline", stage="Approval").action == "ApproveProd"


def _report(status):
    from pipeline_tools.release.promote import GateReport

    return GateReport("staging", status, "d-1", "sha256:" + "a" * 64, 300.0, 0.0, 400.0, f"{status}: fine")


def test_gate_answers_pending_approval(client):
    from pipeline_tools.release.promote import answer_codepipeline

    assert answer_codepipeline(client, "iris-prod-pipeline", _report("WAIT")) is None  # no call made
    client.stub.add_response("get_pipeline_state", state(PENDING), {"name": "iris-prod-pipeline"})
    client.stub.add_response(
        "put_approval_result", {"approvedAt": T0},
        {"pipelineName": "iris-prod-pipeline", "stageName": "Approval", "actionName": "ApproveProd",
         "result": {"summary": "pt gate staging: FAIL: FAIL: fine", "status": "Rejected"}, "token": TOKEN})
    out = answer_codepipeline(client, "iris-prod-pipeline", _report("FAIL"))
    assert out == {"pipeline": "iris-prod-pipeline", "stage": "Approval", "action": "ApproveProd",
                   "result": "Rejected", "approved_at": "2026-11-26T03:00:00Z"}
