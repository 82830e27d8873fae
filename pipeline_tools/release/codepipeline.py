"""CodePipeline Manual approval actions: read them (get_pipeline_state), answer them
(put_approval_result).

An action that is waiting for approval shows `latestExecution.status == "InProgress"` with a
`token`; once answered it is `Succeeded` (approved) or `Failed` (rejected), with the approver in
`lastUpdatedBy` and the comment in `summary`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pipeline_tools.core.errors import NotFoundError, PtError, UsageError

# What get_pipeline_state says about an approval action → our decision.
_STATUS = {"InProgress": "pending", "Succeeded": "approved", "Failed": "rejected", "Abandoned": "abandoned"}


class ApprovalAlreadyAnswered(PtError):
    """The approval token was answered already (or expired)."""


@dataclass(frozen=True)
class PipelineApproval:
    pipeline: str
    stage: str
    action: str
    status: str  # pending | approved | rejected | abandoned
    token: str | None = None
    approver: str | None = None  # lastUpdatedBy (an IAM/STS ARN)
    summary: str | None = None
    changed_at: float | None = None
    pipeline_execution_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _ts(v: Any) -> float | None:
    if isinstance(v, datetime):
        return v.timestamp()
    if isinstance(v, int | float):
        return float(v)
    return None


def _call(fn, pipeline: str, **kwargs):
    try:
        return fn(**kwargs)
    except Exception as e:
        code = getattr(e, "response", {}).get("Error", {}).get("Code") if hasattr(e, "response") else None
        if code == "PipelineNotFoundException":
            raise NotFoundError(f"CodePipeline pipeline '{pipeline}' not found",
                                "check --pipeline (aws codepipeline list-pipelines) and the region") from None
        if code in ("ApprovalAlreadyCompletedException", "InvalidApprovalTokenException"):
            raise ApprovalAlreadyAnswered(
                f"the approval in pipeline '{pipeline}' was already answered or has expired ({code})",
                "run `pt approvals sync-codepipeline --pipeline " + pipeline + "` to see its result") from None
        if code in ("StageNotFoundException", "ActionNotFoundException"):
            raise NotFoundError(f"CodePipeline {pipeline}: {code}",
                                "the pipeline changed since its state was read; re-run the command") from None
        raise


def approval_actions(codepipeline, pipeline: str) -> list[PipelineApproval]:
    """All actions of `pipeline` that are or were approval requests (have a token or a verdict)."""
    state = _call(codepipeline.get_pipeline_state, pipeline, name=pipeline)
    out: list[PipelineApproval] = []
    for st in state.get("stageStates", []):
        exec_id = (st.get("latestExecution") or {}).get("pipelineExecutionId")
        for act in st.get("actionStates", []):
            le = act.get("latestExecution") or {}
            status = le.get("status")
            # Only approval actions carry a token while in progress; a finished approval keeps
            # lastUpdatedBy (who answered). Other actions (builds) have neither.
            if not (le.get("token") or (status in ("Succeeded", "Failed") and le.get("lastUpdatedBy")
                                        and not le.get("externalExecutionId"))):
                continue
            out.append(PipelineApproval(
                pipeline=pipeline, stage=st["stageName"], action=act["actionName"],
                status=_STATUS.get(status or "", (status or "unknown").lower()),
                token=le.get("token"), approver=le.get("lastUpdatedBy"), summary=le.get("summary"),
                changed_at=_ts(le.get("lastStatusChange")), pipeline_execution_id=exec_id))
    return out


def pending_approval(codepipeline, pipeline: str, *, stage: str | None = None,
                     action: str | None = None) -> PipelineApproval:
    """The one approval action waiting for an answer (narrowed by stage/action names)."""
    found = [a for a in approval_actions(codepipeline, pipeline)
             if (stage is None or a.stage == stage) and (action is None or a.action == action)]
    pending = [a for a in found if a.status == "pending" and a.token]
    if not pending:
        where = f" (stage {stage})" if stage else ""
        answered = [a for a in found if a.status != "pending"]
        if answered:
            last = answered[-1]
            raise ApprovalAlreadyAnswered(
                f"no pending approval in pipeline '{pipeline}'{where}: {last.stage}/{last.action} is {last.status}"
                + (f" by {last.approver}" if last.approver else ""),
                "nothing to answer; the pipeline has moved on")
        raise NotFoundError(f"no approval action waiting in pipeline '{pipeline}'{where}",
                            "the pipeline has not reached its Manual approval action yet")
    if len(pending) > 1:
        names = ", ".join(f"{a.stage}/{a.action}" for a in pending)
        raise UsageError(f"several approvals are waiting in pipeline '{pipeline}': {names}",
                         "pass --approval-stage and --approval-action to pick one")
    return pending[0]


def answer(codepipeline, approval: PipelineApproval, *, approve: bool, summary: str) -> float | None:
    """put_approval_result for a pending approval; returns approvedAt (epoch seconds)."""
    if not approval.token:
        raise ApprovalAlreadyAnswered(f"{approval.pipeline}/{approval.stage}/{approval.action} has no pending token",
                                      "nothing to answer")
    resp = _call(codepipeline.put_approval_result, approval.pipeline,
                 pipelineName=approval.pipeline, stageName=approval.stage, actionName=approval.action,
                 result={"summary": summary[:512], "status": "Approved" if approve else "Rejected"},
                 token=approval.token)
    return _ts(resp.get("approvedAt"))
