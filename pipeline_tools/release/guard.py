"""A stage with `promote_from` runs only what was promoted to it: the check `pt deploy` makes
before deploying there, and the recorded break-glass path around it.

- `check_deploy` is what `pt deploy` calls. Without `--break-glass` the digest must be what the
  source stage runs, succeeded there, passed its gate and have the target's approvals: the very
  checks of `pt promote` (`promote.plan_promotion`), so the two commands cannot disagree.
- With `--break-glass --reason`, one approval of that digest (`pt approve --stage S --digest D`)
  by someone other than the actor is required (same identity model as every approval,
  `approvals.same_person`); the deploy is recorded as a `break-glass` ledger record and notified.

Ledger records written here (kinds): "break-glass" (started → succeeded | failed, with the
reason, the approvers and why promotion was bypassed), "promotion" in state `refused` with
`via: pt deploy` for a refused direct deploy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.errors import GateWait, UsageError
from pipeline_tools.release import actor as actor_mod
from pipeline_tools.release import approvals as rules
from pipeline_tools.release.ledger import Ledger, Record
from pipeline_tools.release.promote import (
    PROMOTION,
    PromotionPlan,
    PromotionRefused,
    _short,
    load_approvals,
    plan_promotion,
)

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

BREAK_GLASS = "break-glass"
SOURCE_CHECKS = ("deployed", "chain", "gate", "approvals")


def require_promoted(cfg: Config, stage: str, digest: str, *, ledger: Ledger, cloudwatch: Any,
                     clock: Callable[[], float]) -> PromotionPlan:
    """Refuse unless `digest` may run in `stage` as a promotion from its `promote_from` stage."""
    plan = plan_promotion(cfg, stage, ledger=ledger, cloudwatch=cloudwatch, clock=clock)
    src = plan.source
    head = f"{stage} only runs digests promoted from {src}"
    hint = (f"promote what {src} runs with `pt promote --to {stage}`; in an emergency "
            f"`pt deploy --stage {stage} --break-glass --reason \"…\"`")
    if plan.digest is not None and plan.digest != digest:
        raise PromotionRefused("digest", f"{head}: {_short(digest)} is not what {src} runs "
                                         f"({_short(plan.digest)}, deploy {plan.source_deploy})", hint)
    for c in plan.checks:
        if c.name in SOURCE_CHECKS and not c.ok:
            wait = (plan.refusal is not None and plan.refusal.condition == c.name
                    and plan.refusal.exit_code == GateWait.exit_code)
            raise PromotionRefused(c.name, f"{head}: {c.detail}",
                                   hint + (f" (first: {c.hint})" if c.hint else ""),
                                   exit_code=GateWait.exit_code if wait else None)
    return plan


def break_glass_status(cfg: Config, stage: str, digest: str, *, ledger: Ledger, actor: dict) -> rules.ApprovalStatus:
    """One approval of `digest` for `stage` by someone other than `actor` (a rejection blocks)."""
    return rules.break_glass_status(load_approvals(ledger, stage), stage=stage, digest=digest,
                                    actor=actor_mod.names(actor), rule=cfg.stages[stage].approvals)


@dataclass(frozen=True)
class Decision:
    """What `check_deploy` decided: how the deploy is allowed (`promoted` | `break-glass` | `direct`)."""

    stage: str
    digest: str
    mode: str
    plan: PromotionPlan | None = None
    approvals: rules.ApprovalStatus | None = None
    bypassed: str | None = None  # break-glass: why a promotion would have been refused
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"stage": self.stage, "digest": self.digest, "mode": self.mode, "reason": self.reason,
                "bypassed": self.bypassed, "approvals": self.approvals.to_dict() if self.approvals else None,
                "checks": [c.to_dict() for c in self.plan.checks] if self.plan else []}


def check_deploy(cfg: Config, stage: str, digest: str, *, ledger: Ledger, cloudwatch: Any, actor: dict,
                 clock: Callable[[], float], break_glass: bool = False, reason: str | None = None,
                 record: bool = True) -> Decision:
    """Whether `pt deploy` may put `digest` on `stage`; raises PromotionRefused (recorded unless
    `record` is False, e.g. a dry run) when not."""
    src = cfg.stages[stage].promote_from
    if break_glass:
        if not (reason and reason.strip()):
            raise UsageError("--break-glass needs --reason \"why\" (it is recorded in the ledger and notified)",
                             "e.g. --break-glass --reason \"INC-1234: prod down, hotfix\"")
        if not src:
            raise UsageError(f"stage {stage} has no promote_from: it is deployed directly, --break-glass is not "
                             "needed", f"drop --break-glass: `pt deploy --stage {stage} …`")
        status = break_glass_status(cfg, stage, digest, ledger=ledger, actor=actor)
        if not status.satisfied:
            who = actor.get("name") or "the actor"
            if status.rejected_by:
                by, why = status.rejected_by[0]
                msg = (f"break-glass deploy of {_short(digest)} to {stage} is rejected by {by}"
                       + (f": {why}" if why else ""))
                fix = f"{by} withdraws it with `pt approve --stage {stage} --digest {digest}`"
            else:
                mine = [w for w, y in status.ignored if "commit author" in y]
                msg = (f"break-glass deploy of {_short(digest)} to {stage} needs one approval of that digest by "
                       f"someone other than {who}" + (f" (your own approval does not count: {mine[0]})"
                                                      if mine else ""))
                fix = f"a second person runs `pt approve --stage {stage} --digest {digest} -m \"why\"`"
            raise _refused(ledger, stage, digest, actor, PromotionRefused("break-glass", msg, fix), record)
        try:
            require_promoted(cfg, stage, digest, ledger=ledger, cloudwatch=cloudwatch, clock=clock)
            bypassed = None
        except PromotionRefused as e:
            bypassed = e.message
        return Decision(stage, digest, "break-glass", approvals=status, bypassed=bypassed, reason=reason.strip())
    if not src:
        return Decision(stage, digest, "direct")
    try:
        plan = require_promoted(cfg, stage, digest, ledger=ledger, cloudwatch=cloudwatch, clock=clock)
    except PromotionRefused as e:
        raise _refused(ledger, stage, digest, actor, e, record) from None
    return Decision(stage, digest, "promoted", plan=plan, approvals=plan.approvals)


def _refused(ledger: Ledger, stage: str, digest: str, actor: dict, err: PromotionRefused,
             record: bool) -> PromotionRefused:
    if record:
        ledger.put_record(PROMOTION, stage, {"via": "pt deploy", "digest": digest, "condition": err.condition},
                          actor=actor, state="refused", reason=err.message)
    return err


def start_break_glass(ledger: Ledger, decision: Decision, actor: dict) -> Record:
    """The ledger record of a break-glass deploy, written before anything changes."""
    st = decision.approvals
    return ledger.put_record(BREAK_GLASS, decision.stage, {
        "digest": decision.digest, "approvers": list(st.approvers) if st else [],
        "bypassed": decision.bypassed}, actor=actor, state="started", reason=decision.reason)


def finish_break_glass(ledger: Ledger, stage: str, record_id: str, *, deploy_id: str | None, deploy_state: str,
                       actor: dict, error: str | None = None) -> Record:
    final = "succeeded" if deploy_state == "succeeded" else "failed"
    return ledger.transition(stage, record_id, final, actor=actor,
                             reason=error or (None if final == "succeeded" else f"deploy ended {deploy_state}"),
                             data={"deploy_id": deploy_id, "deploy_state": deploy_state})
