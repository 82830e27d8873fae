"""Promotion: the stage gate over its bake window, approvals stored in the ledger, and
`promote` (same digest, next stage, after gate + approvals + deploy window + free lock).

Everything here takes its clients (a `Ledger`, a CloudWatch client, …) and `clock`/`sleep`,
so the commands stay thin and the tests drive time through an injected clock.

Ledger records written here (kinds): "gate" (final gate verdicts), "approval" (approvals and
rejections, bound to a digest), "window-override" (who overrode a window and why), "promotion"
(one per promote, with every check that was made, linked to the deploy record).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.config import format_duration
from pipeline_tools.core.errors import GateWait, LockedError, NotFoundError, PtError, UsageError
from pipeline_tools.release import approvals as rules
from pipeline_tools.release import gate as gate_mod
from pipeline_tools.release import windows
from pipeline_tools.release.ledger import DEPLOY, Ledger, Record, RecoveryNeeded, iso

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

GATE = "gate"
APPROVAL = "approval"
WINDOW_OVERRIDE = "window-override"
PROMOTION = "promotion"
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class PromotionRefused(PtError):
    """A promotion precondition failed; the message names it, the hint says what to do."""

    def __init__(self, condition: str, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message, hint, exit_code=exit_code)
        self.condition = condition

    def to_dict(self) -> dict:
        return {**super().to_dict(), "condition": self.condition}


# --- what a stage runs ------------------------------------------------------------------------


def succeeded_at(rec: Record) -> float:
    """When a deploy record reached `succeeded` (its transition), else its last update."""
    for t in reversed(rec.transitions):
        if t.get("state") == "succeeded" and t.get("ts") is not None:
            return float(t["ts"])
    return rec.updated


def current_deploy(ledger: Ledger, stage: str, targets: set[str] | None = None) -> Record:
    """The stage's newest deploy record, which must be a succeeded deploy; with `targets`, the
    newest one that changed any of those target ids (`pt gate --target`).

    Raises with a precise reason when nothing was deployed, a deploy is still running, or the
    newest deploy rolled back / failed (then the stage no longer runs what was last pushed).
    """
    if targets:
        from pipeline_tools.release.deploy import _record_targets

        recs = ledger.query(stage, DEPLOY, limit=1, where=lambda r: bool(set(_record_targets(r)) & targets))
        if not recs:
            raise PromotionRefused("deployed", f"no deploy to {stage} changed {', '.join(sorted(targets))}",
                                   f"deploy it first: `pt deploy --stage {stage} --target {sorted(targets)[0]} "
                                   "--image-uri REPO@sha256:…`")
    else:
        recs = ledger.query(stage, DEPLOY, limit=1)
    if not recs:
        raise PromotionRefused("deployed", f"nothing has been deployed to {stage} yet (no deploy in the ledger)",
                               f"deploy an image to {stage} first: "
                               f"`pt deploy --stage {stage} --image-uri REPO@sha256:…`")
    rec = recs[0]
    op = rec.data.get("operation", "deploy")
    if not rec.final:
        raise PromotionRefused("deployed", f"a deploy to {stage} is still in progress ({rec.id}, state {rec.state})",
                               f"wait for it to finish (`pt status --stage {stage}`), or "
                               f"`pt recover --stage {stage}` if it died", exit_code=GateWait.exit_code)
    if rec.state != "succeeded" or op != "deploy":
        if op == "rollback":
            who = (rec.actor or {}).get("name") or "someone"
            what = (f"{stage} was rolled back by {who} ({rec.id}, {rec.state}); it runs "
                    f"{_short(rec.digest)} again, which is not a fresh deploy with its own bake")
        else:
            what = f"the latest {op} to {stage} ({rec.id}, digest {_short(rec.digest)}) " + (
                "rolled back" if rec.state == "rolled_back" else rec.state)
        why = f": {rec.reason}" if rec.reason else ""
        raise PromotionRefused("deployed", what + why,
                               f"deploy a fixed image to {stage} and let it pass its gate before promoting")
    return rec


def _short(digest: str | None) -> str:
    if not digest:
        return "?"
    return digest[:19] + "…" if len(digest) > 19 else digest


# --- gate ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateReport:
    stage: str
    status: str  # PASS | FAIL | WAIT
    deploy_id: str | None
    digest: str | None
    bake: float
    window_start: float | None
    checked_at: float
    explanation: str
    verdict: gate_mod.Verdict | None = None
    recorded_fail: str | None = None  # id of an earlier FAIL verdict for this deploy

    @property
    def decides_at(self) -> float | None:
        return None if self.window_start is None else self.window_start + self.bake

    def to_dict(self) -> dict:
        return {"stage": self.stage, "status": self.status, "deploy_id": self.deploy_id, "digest": self.digest,
                "bake": format_duration(self.bake), "window_start": iso(self.window_start),
                "decides_at": iso(self.decides_at), "checked_at": iso(self.checked_at),
                "explanation": self.explanation, "recorded_fail": self.recorded_fail,
                "alarms": [r.to_dict() for r in self.verdict.reasons] if self.verdict else [],
                "notes": list(self.verdict.notes) if self.verdict else [],
                "history_source": self.verdict.history_source if self.verdict else None,
                **self._read()}

    def _read(self) -> dict:
        """What the verdict was decided from: states at window start, transitions, read errors."""
        v = self.verdict.to_dict() if self.verdict else {}
        return {"snapshot": v.get("snapshot"), "transitions": v.get("transitions", []),
                "errors": v.get("errors", []), "preexisting_alarms": v.get("preexisting_alarms", [])}

    def evidence(self) -> str | None:
        """One line: what the verdict was decided from (window-start snapshot, history, read errors)."""
        v = self.verdict
        if v is None:
            return None
        snap = f"snapshot of {len(v.snapshot.alarms)} alarm(s) at {iso(v.snapshot.at)} ({v.snapshot.source})" \
            if v.snapshot else "no snapshot at window start (state timestamps vs window start)"
        parts = [snap, f"history: {v.history_source}"]
        if v.preexisting:
            parts.append("preexisting: " + ", ".join(v.preexisting))
        if v.errors:
            parts.append("errors: " + "; ".join(str(e) for e in v.errors))
        return "evidence: " + "; ".join(parts)

    def rows(self) -> list[list[Any]]:
        if not self.verdict:
            return []
        return [[r.name, r.status, r.state or "-", gate_mod._iso(r.since) or "-", _threshold(r), r.why]
                for r in self.verdict.reasons]


def _threshold(r: gate_mod.AlarmVerdict) -> str:
    if r.threshold is None:
        return "-"
    return f"{gate_mod._COMPARISONS.get(r.comparison or '', r.comparison or '')} {r.threshold:g}".strip()


def evaluate_gate(cfg: Config, stage: str, *, ledger: Ledger, cloudwatch: Any, clock: Callable[[], float],
                  bake: float | None = None, watches: dict | None = None,
                  sleep: Callable[[float], None] = time.sleep, s3: Any = None,
                  targets: set[str] | None = None) -> GateReport:
    """PASS/FAIL/WAIT for `stage` over its bake window since its last succeeded deploy (of `targets`,
    when given). Fails closed.

    The window starts when the deploy succeeded; the alarm states at that moment come from the
    deploy record (`gate_snapshot`, the deploy's last gate poll), and the alarms already firing
    before the deploy (`preexisting_alarms`) are judged by the stage's `preexisting_alarm` policy.
    `watches` (a dict kept by the caller across polls) reuses one `gate.GateWatch` per deploy,
    so transitions seen by one poll still count at the next. `sleep` paces history retries.
    """
    now = clock()
    bake_s = cfg.stages[stage].deploy.bake if bake is None else bake
    try:
        rec = current_deploy(ledger, stage, targets)
    except PromotionRefused as e:
        status = "WAIT" if e.exit_code == GateWait.exit_code else "FAIL"
        return GateReport(stage, status, None, None, bake_s, None, now, f"{e.message} ({e.hint})")
    start = succeeded_at(rec)
    policy = gate_mod.GatePolicy.from_config(cfg, stage)
    pre = rec.data.get("preexisting_alarms") or ()
    snapshot = gate_mod.Snapshot.from_dict(rec.data.get("gate_snapshot"), f"deploy {rec.id}'s last gate poll")
    try:
        if watches is None:
            v = gate_mod.evaluate(cloudwatch, policy, now, start, preexisting=pre, snapshot=snapshot, sleep=sleep,
                                  s3=s3)
        else:
            w = watches.get(rec.id)
            if w is None:
                w = watches[rec.id] = gate_mod.GateWatch(cloudwatch, policy, start, snapshot=snapshot,
                                                         preexisting=pre, sleep=sleep, s3=s3)
            v = w.poll(now)
    except Exception as e:  # evaluate turns API errors into FAIL/WAIT; anything else also fails closed
        v = gate_mod.verdict(None, (), policy, now, start, error=f"{type(e).__name__}: {e}", snapshot=snapshot)
    # A FAIL recorded earlier for this deploy stands even if the alarm is OK now (moto and
    # accounts without alarm history cannot show us the transition again).
    earlier = ledger.query(stage, GATE, limit=1, where=lambda g: g.data.get("deploy_id") == rec.id
                           and g.data.get("status") == "FAIL")
    elapsed = max(0.0, now - start)
    base = dict(stage=stage, deploy_id=rec.id, digest=rec.digest, bake=bake_s, window_start=start,
                checked_at=now, verdict=v)
    if v.failed:
        return GateReport(status="FAIL", explanation=v.summary(), **base)
    if earlier:
        g = earlier[0]
        return GateReport(status="FAIL", recorded_fail=g.id, **base,
                          explanation=f"FAIL recorded at {iso(g.created)} for this deploy stands: "
                                      f"{g.data.get('explanation', '')}")
    if elapsed < bake_s:
        return GateReport(status="WAIT", **base,
                          explanation=f"baking: {format_duration(elapsed)} of {format_duration(bake_s)} since the "
                                      f"deploy succeeded at {iso(start)}; decides at {iso(start + bake_s)}"
                                      + ("" if v.passed else f"; {v.summary()}"))
    if v.status == "WAIT":
        return GateReport(status="WAIT", explanation=v.summary(), **base)
    return GateReport(status="PASS", **base,
                      explanation=f"PASS: bake {format_duration(bake_s)} elapsed since {iso(start)}; "
                                  + (v.summary().removeprefix("PASS: ") if v.reasons else
                                     "; ".join(v.notes) or "no alarms"))


def wait_gate(cfg: Config, stage: str, *, ledger: Ledger, cloudwatch: Any, clock: Callable[[], float],
              sleep: Callable[[float], None], bake: float | None = None, timeout: float | None = None,
              on_poll: Callable[[GateReport], None] | None = None, s3: Any = None,
              targets: set[str] | None = None) -> GateReport:
    """Poll `evaluate_gate` until PASS/FAIL or the deadline (default: bake end + 10 min)."""
    start = clock()
    watches: dict = {}
    report = evaluate_gate(cfg, stage, ledger=ledger, cloudwatch=cloudwatch, clock=clock, bake=bake, watches=watches,
                           sleep=sleep, s3=s3, targets=targets)
    if timeout is None:
        end = report.decides_at if report.decides_at is not None else start
        deadline = max(end, start) + 600.0
    else:
        deadline = start + timeout
    poll = max(0.5, cfg.stages[stage].gate.poll)
    while report.status == "WAIT":
        if on_poll:
            on_poll(report)
        now = clock()
        if now >= deadline:
            return GateReport(**{**report.__dict__, "explanation":
                                 f"{report.explanation} (still WAIT at the deadline {iso(deadline)})"})
        sleep(min(poll, max(0.0, deadline - now)) or poll)
        report = evaluate_gate(cfg, stage, ledger=ledger, cloudwatch=cloudwatch, clock=clock, bake=bake,
                               watches=watches, sleep=sleep, s3=s3, targets=targets)
    return report


def record_gate(ledger: Ledger, report: GateReport, actor: dict | None) -> Record | None:
    """Keep a decided verdict (PASS/FAIL) in the ledger; WAITs are not recorded."""
    if report.status == "WAIT" or report.deploy_id is None:
        return None
    return ledger.put_record(GATE, report.stage, {k: v for k, v in report.to_dict().items()
                                                  if k not in ("checked_at",)},
                             actor=actor, state=report.status.lower(), reason=report.explanation)


# --- approvals -------------------------------------------------------------------------------------


def approval_source_stage(cfg: Config, stage: str) -> str:
    """Approvals for `stage` are about the digest running in its promote_from stage."""
    src = cfg.stages[stage].promote_from
    if not src:
        raise UsageError(f"stage {stage} has no promote_from: there is no digest waiting to be approved for it",
                         f"approvals apply to promotions; set stages.{stage}.promote_from")
    return src


@dataclass(frozen=True)
class Candidate:
    """The digest waiting for a stage: the source stage's current deploy."""

    stage: str
    source: str
    deploy: Record

    @property
    def digest(self) -> str:
        return self.deploy.digest or ""

    @property
    def author(self) -> str | None:
        return (self.deploy.actor or {}).get("author")

    @property
    def authors(self) -> tuple[str, ...]:
        """The commit author's names recorded on the source deploy (e-mail, login, pusher)."""
        return rules.authors_of(self.deploy.actor)


def candidate(cfg: Config, ledger: Ledger, stage: str, deploy_id: str | None = None) -> Candidate:
    src = approval_source_stage(cfg, stage)
    if deploy_id:
        rec = ledger.get(src, deploy_id)
        if rec is None or rec.kind != DEPLOY:
            raise NotFoundError(f"no deploy {deploy_id} in stage {src}", f"list them with `pt history --stage {src}`")
        latest = current_deploy(ledger, src)
        if latest.digest != rec.digest:
            raise PromotionRefused(
                "approvals", f"deploy {deploy_id} (digest {_short(rec.digest)}) is no longer what {src} runs "
                f"({_short(latest.digest)}): an approval for an old digest would never count",
                f"approve the current one: `pt approve --stage {stage}`")
        return Candidate(stage, src, rec)
    return Candidate(stage, src, current_deploy(ledger, src))


def load_approvals(ledger: Ledger, stage: str) -> list[rules.Approval]:
    out = []
    for rec in ledger.query(stage, APPROVAL):
        a = rules.Approval.from_dict({**rec.data, "id": rec.id})
        out.append(a)
    return out


def approval_status(cfg: Config, ledger: Ledger, cand: Candidate) -> rules.ApprovalStatus:
    return rules.evaluate(load_approvals(ledger, cand.stage), stage=cand.stage, digest=cand.digest,
                          rule=cfg.stages[cand.stage].approvals, author=cand.authors)


@dataclass(frozen=True)
class ApprovalOutcome:
    approval: rules.Approval
    recorded: Record | None
    note: str | None
    status: rules.ApprovalStatus

    def to_dict(self) -> dict:
        return {"approval": self.approval.to_dict(), "recorded": self.recorded.id if self.recorded else None,
                "note": self.note, "status": self.status.to_dict()}


def decide(cfg: Config, ledger: Ledger, stage: str, *, decision: str, actor: dict, clock: Callable[[], float],
           comment: str | None = None, deploy_id: str | None = None,
           digest: str | None = None) -> ApprovalOutcome:
    """Record an approval/rejection by `actor` for the digest waiting for `stage`, or for an
    explicit `digest` (what a `pt deploy --break-glass` of that digest needs)."""
    if digest is not None:
        return _decide_digest(cfg, ledger, stage, digest, decision=decision, actor=actor, clock=clock,
                              comment=comment)
    cand = candidate(cfg, ledger, stage, deploy_id)
    rule = cfg.stages[stage].approvals
    new = _approval(stage, cand.digest, decision, actor, clock, comment, cand.deploy.id)
    existing = load_approvals(ledger, stage)
    note = rules.check_new(new, existing=existing, rule=rule, author=cand.authors)
    rec = None
    if note is None:
        rec = ledger.put_record(APPROVAL, stage, {k: v for k, v in new.to_dict().items() if k != "id"},
                                actor=actor, state="approved" if decision == rules.APPROVE else "rejected",
                                reason=comment)
    return ApprovalOutcome(new, rec, note, approval_status(cfg, ledger, cand))


def _decide_digest(cfg: Config, ledger: Ledger, stage: str, digest: str, *, decision: str, actor: dict,
                   clock: Callable[[], float], comment: str | None) -> ApprovalOutcome:
    """An approval of an explicit digest for `stage` (break-glass): the actor of the deploy is
    the "author" whose own approval does not count (see `guard.break_glass_status`)."""
    from pipeline_tools.core.config import ApprovalsConfig

    if not _DIGEST_RE.match(digest):
        raise UsageError(f"--digest {digest!r} is not an image digest", "pass sha256: followed by 64 hex digits")
    rule = cfg.stages[stage].approvals or ApprovalsConfig(required=1)
    new = _approval(stage, digest, decision, actor, clock, comment, None)
    existing = load_approvals(ledger, stage)
    note = rules.check_new(new, existing=existing, rule=rule, author=None)
    rec = None
    if note is None:
        rec = ledger.put_record(APPROVAL, stage, {**{k: v for k, v in new.to_dict().items() if k != "id"},
                                                  "purpose": "digest"},
                                actor=actor, state="approved" if decision == rules.APPROVE else "rejected",
                                reason=comment)
    status = rules.evaluate(load_approvals(ledger, stage), stage=stage, digest=digest,
                            rule=ApprovalsConfig(required=1, aliases=rule.aliases), author=None)
    return ApprovalOutcome(new, rec, note, status)


def _approval(stage: str, digest: str, decision: str, actor: dict, clock: Callable[[], float],
              comment: str | None, deploy_id: str | None) -> rules.Approval:
    return rules.Approval(stage=stage, digest=digest, approver=actor.get("name") or "unknown",
                          decision=decision, arn=actor.get("arn"), comment=comment, at=clock(),
                          deploy_id=deploy_id, source="pt", declared=actor.get("declared"))


def sync_codepipeline(cfg: Config, ledger: Ledger, stage: str, *, codepipeline: Any, pipeline: str,
                      clock: Callable[[], float], actor: dict | None = None) -> list[dict]:
    """Record answered CodePipeline Manual approvals as approvals of the digest waiting for `stage`.

    Idempotent: each answered action execution is recorded once (keyed by pipeline execution,
    action and time of the answer).
    """
    from pipeline_tools.release import codepipeline as cp

    cand = candidate(cfg, ledger, stage)
    existing = load_approvals(ledger, stage)
    seen = {r.data.get("external_id") for r in ledger.query(stage, APPROVAL) if r.data.get("external_id")}
    out: list[dict] = []
    for a in cp.approval_actions(codepipeline, pipeline):
        if a.status not in ("approved", "rejected") or not a.approver:
            out.append({**a.to_dict(), "recorded": None, "note": f"not answered yet ({a.status})"})
            continue
        ext = f"{pipeline}/{a.pipeline_execution_id}/{a.stage}/{a.action}/{a.changed_at}"
        if ext in seen:
            out.append({**a.to_dict(), "recorded": None, "note": "already recorded"})
            continue
        new = rules.Approval(stage=stage, digest=cand.digest, approver=rules.principal(a.approver) or a.approver,
                             decision=rules.APPROVE if a.status == "approved" else rules.REJECT,
                             arn=a.approver, comment=a.summary, at=a.changed_at or clock(),
                             deploy_id=cand.deploy.id, source="codepipeline")
        note = None
        if new.decision == rules.APPROVE and rules.is_author(new, cand.authors, cfg.stages[stage].approvals) and \
                cfg.stages[stage].approvals and cfg.stages[stage].approvals.two_person_rule:
            note = "approver is the commit author: recorded, but it does not count (two_person_rule)"
        rec = ledger.put_record(APPROVAL, stage, {**{k: v for k, v in new.to_dict().items() if k != "id"},
                                                  "external_id": ext, "pipeline": pipeline},
                                actor=actor or {"name": "codepipeline", "arn": a.approver},
                                state="approved" if new.decision == rules.APPROVE else "rejected",
                                reason=a.summary)
        existing.append(new)
        out.append({**a.to_dict(), "recorded": rec.id, "note": note})
    return out


def answer_codepipeline(codepipeline: Any, pipeline: str, report: GateReport, *, stage: str | None = None,
                        action: str | None = None) -> dict | None:
    """`pt gate --codepipeline-approve`: Approved on PASS, Rejected on FAIL, nothing on WAIT."""
    from pipeline_tools.release import codepipeline as cp

    if report.status == "WAIT":
        return None
    pending = cp.pending_approval(codepipeline, pipeline, stage=stage, action=action)
    ok = report.status == "PASS"
    at = cp.answer(codepipeline, pending, approve=ok,
                   summary=f"pt gate {report.stage}: {report.status}: {report.explanation}")
    return {"pipeline": pipeline, "stage": pending.stage, "action": pending.action,
            "result": "Approved" if ok else "Rejected", "approved_at": iso(at)}


def downstream_needing_approval(cfg: Config, stage: str) -> list[str]:
    """Stages promoted from `stage` that require approvals (notified when its gate passes)."""
    return [s for s, st in cfg.stages.items() if st.promote_from == stage and st.approvals is not None]


# --- promote ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str | None = None

    def to_dict(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True)
class PromotionPlan:
    target: str
    source: str
    digest: str | None
    source_deploy: str | None
    author: str | None
    strategy: str
    checks: tuple[Check, ...]
    window: windows.WindowDecision | None = None
    gate: GateReport | None = None
    approvals: rules.ApprovalStatus | None = None
    refusal: PromotionRefused | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.refusal is None

    def to_dict(self) -> dict:
        return {"target": self.target, "source": self.source, "digest": self.digest,
                "source_deploy": self.source_deploy, "author": self.author, "strategy": self.strategy,
                "ok": self.ok, "checks": [c.to_dict() for c in self.checks],
                "window": self.window.to_dict() if self.window else None,
                "gate": self.gate.to_dict() if self.gate else None,
                "approvals": self.approvals.to_dict() if self.approvals else None,
                "refused": self.refusal.to_dict() if self.refusal else None}


def resolve_source(cfg: Config, target: str, source: str | None) -> str:
    cfg.stage(target)
    pf = cfg.stages[target].promote_from
    if source is not None:
        cfg.stage(source)
    if not pf:
        raise UsageError(f"stage {target} has no promote_from: it is deployed directly, not promoted",
                         f"use `pt deploy --stage {target}`, or set stages.{target}.promote_from")
    if source is not None and source != pf:
        raise UsageError(f"{target} promotes from {pf} (promote_from), not from {source}",
                         f"drop --from, or promote along the chain: {' → '.join(cfg.promotion_chain(target))}")
    return pf


def plan_promotion(cfg: Config, target: str, *, ledger: Ledger, cloudwatch: Any, clock: Callable[[], float],
                   source: str | None = None, override_window: bool = False,
                   reason: str | None = None) -> PromotionPlan:
    """Run every check in order; the first failing one becomes `refusal` (later ones still shown)."""
    src = resolve_source(cfg, target, source)
    if override_window and not (reason and reason.strip()):
        raise UsageError("--override-window needs --reason \"why\" (it is recorded in the ledger)",
                         "e.g. --override-window --reason \"hotfix for incident 1234\"")
    strategy = cfg.stages[target].deploy.strategy
    checks: list[Check] = []
    refusal: PromotionRefused | None = None

    def fail(err: PromotionRefused) -> None:
        nonlocal refusal
        checks.append(Check(err.condition, False, err.message, err.hint))
        if refusal is None:
            refusal = err

    # 0. what the source stage runs
    try:
        rec = current_deploy(ledger, src)
    except PromotionRefused as e:
        fail(e)
        return PromotionPlan(target, src, None, None, None, strategy, tuple(checks), refusal=refusal)
    digest, author = rec.digest, (rec.actor or {}).get("author")
    checks.append(Check("deployed", True, f"{src} runs {_short(digest)} (deploy {rec.id}, succeeded "
                                          f"{iso(succeeded_at(rec))})"))

    # 0b. the promote_from chain: every earlier stage ran this digest successfully
    chain = cfg.promotion_chain(target)
    for earlier in chain[: chain.index(src)]:
        ok = ledger.query(earlier, DEPLOY, state="succeeded", limit=1, where=lambda r: r.digest == digest)
        if not ok:
            fail(PromotionRefused("chain", f"{_short(digest)} never succeeded in {earlier}, which {src} promotes "
                                           f"from ({' → '.join(chain)})",
                                  f"promote it through the chain: `pt promote --to {src}` first"))
    if not any(c.name == "chain" for c in checks):
        checks.append(Check("chain", True, " → ".join(chain)))

    # 1. source gate over its bake time
    report = evaluate_gate(cfg, src, ledger=ledger, cloudwatch=cloudwatch, clock=clock)
    if report.status == "PASS":
        checks.append(Check("gate", True, f"{src} gate {report.explanation}"))
    elif report.status == "WAIT":
        fail(PromotionRefused("gate", f"{src} gate has not passed yet: {report.explanation}",
                              f"wait for the bake time (`pt gate --stage {src} --wait`), then promote",
                              exit_code=GateWait.exit_code))
    else:
        fail(PromotionRefused("gate", f"{src} gate FAIL: {report.explanation}",
                              f"fix the cause and deploy a new image to {src}; `pt gate --stage {src}` "
                              "shows every alarm"))

    # 2. approvals for this digest
    status = None
    if cfg.stages[target].approvals is not None:
        status = approval_status(cfg, ledger, Candidate(target, src, rec))
        if status.satisfied:
            checks.append(Check("approvals", True, status.explain()))
        elif status.blocked_by_unknown_author:
            fail(PromotionRefused("approvals", f"approvals for {target} not satisfied for {_short(digest)}: "
                                               f"{status.explain()}",
                                  f"deploy it to {src} again from CI or a git checkout with history so its author "
                                  "is recorded (locally: PT_COMMIT_AUTHOR=you@example.com), or set "
                                  f"stages.{target}.approvals.unknown_author: extra_approver"))
        else:
            fail(PromotionRefused("approvals", f"approvals for {target} not satisfied for {_short(digest)}: "
                                               f"{status.explain()}",
                                  f"each approver runs `pt approve --stage {target}`; "
                                  f"`pt approvals --stage {target}` shows what is pending"))
    else:
        checks.append(Check("approvals", True, f"stage {target} requires no approvals"))

    # 3. deploy window (or an override with a reason)
    now_dt = datetime.fromtimestamp(clock(), UTC)
    decision = None
    try:
        decision = windows.check(cfg.stages[target].window, now_dt, override=override_window, reason=reason)
        if decision.overridden:
            checks.append(Check("window", True, f"outside {decision.window}, overridden: {decision.reason}"))
        else:
            checks.append(Check("window", True, f"open ({decision.window})" if decision.window else "no window"))
    except windows.WindowClosed as e:
        fail(PromotionRefused("window", e.message, e.hint))

    # 4. target not locked (and no deploy died mid-way)
    lock = ledger.current_lock(target)
    if lock is not None and lock.lease_until > clock():
        fail(PromotionRefused("lock", lock.describe(), f"wait for it (`pt status --stage {target}`)",
                              exit_code=LockedError.exit_code))
    else:
        unfinished = ledger.unfinished(target)
        if unfinished is not None:
            fail(PromotionRefused("lock", f"deploy {unfinished.id} to {target} did not finish "
                                          f"(state {unfinished.state})",
                                  f"run `pt recover --stage {target}` first", exit_code=RecoveryNeeded.exit_code))
        else:
            checks.append(Check("lock", True, f"{target} is free"))
    return PromotionPlan(target, src, digest, rec.id, author, strategy, tuple(checks), decision, report, status,
                         refusal)


DeployFn = Callable[..., Record]


def target_image_uri(cfg: Config, target: str, source_deploy: Record) -> str:
    """The digest the source stage runs, addressed in the target stage's registry."""
    uri = source_deploy.data.get("image_uri") or ""
    image = source_deploy.data.get("image")
    digest = source_deploy.digest
    registry = cfg.registry_for(target)
    if uri.partition("/")[0] == registry or not image:
        return uri
    return f"{registry}/{cfg.ecr_repository(image)}@{digest}"


def engine(cfg: Config, *, lambda_client: Any, cloudwatch: Any, ledger: Ledger, actor: dict,
           clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
           log: Callable[[str], None] = lambda _m: None, ecr: Any = None,
           notify: Callable[[str, str, dict], Any] | None = None) -> DeployFn:
    """Adapter: the deploy engine (`deploy.plan_deploy` + `deploy.deploy`) as `promote` calls it.

    Never rebuilds: it deploys the source record's digest. When the target stage uses another
    registry, the digest must already be there (ECR replication); otherwise it refuses.
    """
    from pipeline_tools.release import deploy as engine_mod

    def run(target: str, digest: str, *, source_deploy: Record, promotion_id: str | None = None,
            window: dict | None = None) -> Record:
        uri = target_image_uri(cfg, target, source_deploy)
        ref = engine_mod.parse_image_uri(uri)
        if ref.digest != digest:
            raise PromotionRefused("image", f"{uri} does not carry digest {digest}")
        if uri != source_deploy.data.get("image_uri"):
            try:
                engine_mod.check_image(ref, ecr=ecr)
            except NotFoundError as e:
                raise PromotionRefused("image", f"{e.message} ({target}'s registry)",
                                       f"replicate the image to {cfg.registry_for(target)} (ECR replication "
                                       f"from the StageStack), then promote again") from None
        image = source_deploy.data.get("image") or next(iter(cfg.images))
        engine_mod.check_startable(ledger, target, clock)
        plan = engine_mod.plan_deploy(cfg, target, image, ref, lambda_client)
        deps = engine_mod.Deps(lambda_client=lambda_client, cloudwatch=cloudwatch, ledger=ledger, clock=clock,
                               sleep=sleep, log=log, actor={**actor, "promotion_id": promotion_id})
        info = {"digest": digest, "strategy": plan.strategy, "promotion": promotion_id}
        result = notified_deploy(lambda: engine_mod.deploy(cfg, plan, deps, window=window), ledger=ledger,
                                 stage=target, digest=digest, strategy=plan.strategy, info=info, notify=notify,
                                 clock=clock, origin=f", promoted from {source_deploy.stage}")
        rec = ledger.get(target, result.deploy_id)
        if rec is None:  # the engine always writes its record; fail closed if it is gone
            raise PromotionRefused("deploy", f"deploy {result.deploy_id} has no ledger record")
        return rec

    return run


def target_engine(cfg: Config, *, targets_for: Callable[[str, str], list], cloudwatch: Any, ledger: Ledger,
                  actor: dict, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                  log: Callable[[str], None] = lambda _m: None, ecr: Any = None,
                  notify: Callable[[str, str, dict], Any] | None = None) -> DeployFn:
    """Adapter: the target engine (release/engine.py) as `promote` calls it. `targets_for(stage,
    image)` gives the stage's targets (commands build them with `targets.build_targets`).
    The same image checks as `engine`: never rebuilt, the digest must be in the target's registry."""
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release import engine as eng
    from pipeline_tools.release.target import Release

    def run(target: str, digest: str, *, source_deploy: Record, promotion_id: str | None = None,
            window: dict | None = None) -> Record:
        uri = target_image_uri(cfg, target, source_deploy)
        ref = dp.parse_image_uri(uri)
        if ref.digest != digest:
            raise PromotionRefused("image", f"{uri} does not carry digest {digest}")
        if uri != source_deploy.data.get("image_uri"):
            try:
                dp.check_image(ref, ecr=ecr)
            except NotFoundError as e:
                raise PromotionRefused("image", f"{e.message} ({target}'s registry)",
                                       f"replicate the image to {cfg.registry_for(target)} (ECR replication "
                                       f"from the StageStack), then promote again") from None
        image = source_deploy.data.get("image") or next(iter(cfg.images))
        dp.check_startable(ledger, target, clock)
        plan = eng.plan(cfg, target, targets_for(target, image), Release(ref.uri, ref.digest, "", image))
        deps = eng.EngineDeps(cloudwatch=cloudwatch, ledger=ledger, clock=clock, sleep=sleep, log=log,
                              actor={**actor, "promotion_id": promotion_id})
        info = {"digest": digest, "strategy": plan.strategy, "promotion": promotion_id}
        result = notified_deploy(lambda: eng.run(plan, deps, window=window), ledger=ledger, stage=target,
                                 digest=digest, strategy=plan.strategy, info=info, notify=notify, clock=clock,
                                 origin=f", promoted from {source_deploy.stage}")
        rec = ledger.get(target, result.deploy_id)
        if rec is None:  # the engine always writes its record; fail closed if it is gone
            raise PromotionRefused("deploy", f"deploy {result.deploy_id} has no ledger record")
        return rec

    return run


def notified_deploy(run: Callable[[], Any], *, ledger: Ledger, stage: str, digest: str, strategy: str,
                    info: dict | None = None, notify: Callable[[str, str, dict], Any] | None = None,
                    clock: Callable[[], float] = time.time, origin: str = "") -> Any:
    """Run a deploy (`run()` → DeployResult) and send deploy started/succeeded/rolled-back/failed
    notifications around it, recording each delivery on the deploy's ledger record.
    Used by `pt deploy` and by `pt promote`; a notification never changes the outcome."""
    info = {"digest": digest, "strategy": strategy, **(info or {})}
    if notify:
        notify("deploy_started", stage, {**info, "summary": f"deploying {_short(digest)} to {stage} "
                                                            f"({strategy}){origin}"})
    try:
        result = run()
    except Exception as e:
        # only this run's own record (the engine names it on the error): a loser of the lock race
        # must not attach its "failed" notice to the winner's record (nor write to it mid-deploy)
        rid = getattr(e, "deploy_id", None)
        try:
            rec = ledger.get(stage, rid) if isinstance(rid, str) and rid else None
        except Exception:  # the deploy's own error is what the caller must see
            rec = None
        if notify:
            kind = "deploy_rolled_back" if rec is not None and rec.state == "rolled_back" else "deploy_failed"
            res = notify(kind, stage, {**info, "summary": getattr(e, "message", str(e)),
                                       "deploy_id": rec.id if rec else None})
            if rec is not None:
                _record_notification(ledger, stage, rec.id, res)
        raise
    if notify:
        res = notify("deploy_succeeded", stage, {**info, "deploy_id": result.deploy_id,
                                                 "summary": f"{stage} runs {_short(digest)} "
                                                            f"({strategy}, gate PASS after bake)"})
        _record_notification(ledger, stage, result.deploy_id, res)
    return result


def promote(cfg: Config, target: str, *, ledger: Ledger, cloudwatch: Any, deploy: DeployFn, actor: dict,
            clock: Callable[[], float] = time.time, source: str | None = None, override_window: bool = False,
            reason: str | None = None, dry_run: bool = False,
            notify: Callable[[str, str, dict], Any] | None = None) -> tuple[PromotionPlan, Record | None]:
    """Check, then deploy the source stage's digest to `target` with `deploy(stage, digest, …)`.

    `deploy` is the deploy engine (see commands.promote_cmd for the wiring); it takes the lock,
    shifts traffic with the target's strategy, bakes, rolls back on failure and returns the final
    deploy record. Refusals are recorded as a "promotion" record in state `refused`.
    """
    plan = plan_promotion(cfg, target, ledger=ledger, cloudwatch=cloudwatch, clock=clock, source=source,
                          override_window=override_window, reason=reason)
    if dry_run:
        if plan.refusal:
            raise plan.refusal
        return plan, None
    base = {"source": plan.source, "digest": plan.digest, "source_deploy": plan.source_deploy,
            "checks": [c.to_dict() for c in plan.checks], "strategy": plan.strategy,
            "approvers": list(plan.approvals.approvers) if plan.approvals else []}
    if plan.refusal:
        refused = ledger.put_record(PROMOTION, target, {**base, "condition": plan.refusal.condition},
                                    actor=actor, state="refused", reason=plan.refusal.message)
        if notify and plan.refusal.condition == "approvals":
            res = notify("approval_needed", target, {"summary": plan.refusal.message, "digest": plan.digest})
            _record_notification(ledger, target, refused.id, res)
        raise plan.refusal
    window = plan.window
    if window and window.overridden:
        ledger.put_record(WINDOW_OVERRIDE, target, {"digest": plan.digest, "window": window.window,
                                                    "next_open": iso(window.next_open.timestamp())
                                                    if window.next_open else None},
                          actor=actor, state="overridden", reason=window.reason)
    prom = ledger.put_record(PROMOTION, target, {**base, "window": window.to_dict() if window else None},
                             actor=actor, state="started",
                             reason=window.reason if window and window.overridden else None)
    try:
        rec = deploy(target, plan.digest, source_deploy=ledger.get(plan.source, plan.source_deploy),
                     promotion_id=prom.id, window=window.to_dict() if window else None)
    except Exception as e:
        msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        ledger.transition(target, prom.id, "failed", reason=msg, actor=actor)
        raise
    final = "succeeded" if rec.state == "succeeded" else "failed"
    ledger.transition(target, prom.id, final, actor=actor, reason=None if final == "succeeded" else
                      f"deploy {rec.id} ended {rec.state}" + (f": {rec.reason}" if rec.reason else ""),
                      data={"deploy_id": rec.id, "deploy_state": rec.state})
    if notify and final == "succeeded":
        res = notify("promoted", target, {"summary": f"{target} now runs {_short(plan.digest)} from {plan.source}",
                                          "digest": plan.digest, "deploy_id": rec.id})
        _record_notification(ledger, target, prom.id, res)
    return plan, rec


def _record_notification(ledger: Ledger, stage: str, record_id: str, result: Any) -> None:
    """Keep what the notification did on the record (never raises: a notification is best effort)."""
    if result is None or not hasattr(result, "to_dict"):
        return
    if getattr(result, "channels", None) == ():  # no channel configured: nothing was sent, nothing to keep
        return
    try:
        ledger.append_event(stage, record_id, "notification", data={"notification": result.to_dict()},
                            reason=None if result.ok else "notification failed (see warnings)")
    except Exception:  # the ledger write of a notification must not fail the promotion
        pass
