"""`pt gate`, `pt approve`, `pt reject`, `pt approvals [list|sync-codepipeline]`, `pt promote`."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.config import format_duration, parse_duration
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import EXIT_FAILURE, EXIT_OK, EXIT_WAIT, UsageError


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = _Duration()


# --- wiring (clients, ledger, actor, notifications) --------------------------------------------


def _ledger(app: App, stage: str, clock=time.time):
    from pipeline_tools.core.aws import is_local
    from pipeline_tools.release.ledger import Ledger, ensure_table

    cfg = app.config()
    client = app.ledger_aws(stage).client("dynamodb")
    ensure_table(client, cfg.ledger_table(), project=cfg.project, stage=stage, local=is_local(),
                 stack=app.ledger_stack(stage))
    return Ledger(client, cfg.ledger_table(), clock=clock)


def _actor(app: App, stage: str) -> dict:
    """The STS caller (PT_ACTOR only where declared identities are accepted; see actor.py)."""
    from pipeline_tools.release.actor import declared_ok, identify

    try:
        arn = app.aws(stage).caller_arn()
    except Exception as e:  # no identity → no approvals/records in someone else's name
        from pipeline_tools.core.errors import translate

        raise translate(e) or e from None
    who = identify(arn, allow_declared=declared_ok(app.config(), stage))
    if who.get("declared_ignored"):
        app.out.warn(f"{' and '.join(who['declared_ignored'])} ignored: acting as the STS caller {who['name']} "
                     f"(declared identities need local mode or stages.{stage}.approvals.allow_declared_actor: true)")
    return who


def _notifier(app: App, actor: dict | None, clock=time.time):
    from pipeline_tools.commands._deploy_common import notifier

    return notifier(app, actor, clock)


def _summary_md(title: str, rows: list[list[Any]], columns: list[str], lines: list[str]) -> str:
    from pipeline_tools.core.output import markdown_table

    parts = [f"### {title}", *lines]
    if rows:
        parts.append(markdown_table(rows, columns))
    return "\n\n".join(parts)


# --- pt gate ---------------------------------------------------------------------------------------

GATE_COLUMNS = ["alarm", "status", "state", "since", "threshold", "why"]


@click.command()
@stage_option(required=True)
@click.option("--bake", type=DURATION, default=None, help="Bake window instead of the stage's deploy.bake (e.g. 10m).")
@click.option("--wait", "wait_", is_flag=True, help="Poll until PASS or FAIL (or --timeout).")
@click.option("--timeout", type=DURATION, default=None, help="With --wait: give up (WAIT, exit 3) after this long.")
@click.option("--codepipeline-approve", "cp_approve", is_flag=True,
              help="Answer the pipeline's pending Manual approval: Approved on PASS, Rejected on FAIL.")
@click.option("--pipeline", metavar="NAME", default=None,
              help="CodePipeline name for --codepipeline-approve (default: from CODEBUILD_INITIATOR).")
@click.option("--approval-stage", default=None, help="Pipeline stage of the approval action (if several wait).")
@click.option("--approval-action", default=None, help="Name of the approval action (if several wait).")
@click.option("--shadow", is_flag=True, help="SageMaker target: compare the shadow variant with production "
              "(latency p50/p99, 5XX rate, user metric) plus the stage alarms.")
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="Judge the newest deploy that changed these targets (repeatable: lambda:predict, or a kind).")
@output_option
@pass_app
def gate(app: App, bake, wait_, timeout, cp_approve, pipeline, approval_stage, approval_action,
         shadow: bool = False, targets: tuple[str, ...] = ()) -> int:
    """Decide PASS/FAIL/WAIT for a stage from its CloudWatch alarms over the bake window.

    The window starts when the stage's last deploy succeeded (ledger), from the alarm states
    that deploy recorded. Exit 0 PASS, 1 FAIL, 3 WAIT. Fails closed: a missing alarm, an API
    error, no deploy, or an alarm that changed while its history cannot be read is a FAIL
    (or a WAIT where a later check may succeed).
    """
    from pipeline_tools.release import promote as p

    if shadow:
        return _gate_shadow(app, wait_, timeout, bake)
    cfg = app.config()
    stage = app.stage
    only = None
    if targets:
        from pipeline_tools.targets import select_ids

        only = set(select_ids(cfg, stage, list(targets)))   # bad id/kind: one line, exit 2
    if cp_approve:
        pipeline = pipeline or _pipeline_from_env()
    ledger = None
    try:
        ledger = _ledger(app, stage)
        cw = app.aws(stage).client("cloudwatch")
        s3 = app.aws(stage).client("s3") if any(s.report for s in cfg.stages[stage].gate.signals) else None
        if wait_:
            report = p.wait_gate(cfg, stage, ledger=ledger, cloudwatch=cw, clock=time.time, sleep=time.sleep,
                                 bake=bake, timeout=timeout,
                                 on_poll=lambda r: app.out.log(f"gate {stage}: {r.explanation}"), s3=s3,
                                 targets=only)
        else:
            report = p.evaluate_gate(cfg, stage, ledger=ledger, cloudwatch=cw, clock=time.time, bake=bake, s3=s3,
                                     targets=only)
    except Exception as e:  # fail closed: any error is a FAIL verdict, printed like one
        from pipeline_tools.core.errors import translate

        err = translate(e)
        if isinstance(err, UsageError):
            raise
        text = (err.message + (f" ({err.hint})" if err.hint else "")) if err else f"{type(e).__name__}: {e}"
        report = p.GateReport(stage, "FAIL", None, None, bake if bake is not None else cfg.stages[stage].deploy.bake,
                              None, time.time(), f"cannot evaluate the gate: {text} (the gate fails closed)")
        ledger = None
    if report.status != "WAIT":
        try:
            actor = _actor(app, stage)
        except Exception:
            actor = {"name": os.environ.get("PT_ACTOR") or "unknown"}
        first_pass = ledger is not None and report.status == "PASS" and not ledger.query(
            stage, p.GATE, limit=1, where=lambda g: g.data.get("deploy_id") == report.deploy_id
            and g.data.get("status") == "PASS")
        rec = p.record_gate(ledger, report, actor) if ledger is not None else None
        if report.status == "FAIL":
            res = _notifier(app, actor)("gate_failed", stage, {"summary": report.explanation, "digest": report.digest,
                                                               "deploy_id": report.deploy_id})
            if rec is not None:
                p._record_notification(ledger, stage, rec.id, res)
        elif first_pass and rec is not None:
            for nxt in p.downstream_needing_approval(cfg, stage):
                res = _notifier(app, actor)("approval_needed", nxt, {
                    "summary": f"{report.digest} passed the {stage} gate and waits for approvals for {nxt} "
                               f"(`pt approve --stage {nxt}`)", "digest": report.digest,
                    "deploy_id": report.deploy_id})
                p._record_notification(ledger, stage, rec.id, res)
    answered = None
    if cp_approve:
        answered = p.answer_codepipeline(app.aws(stage).client("codepipeline"), pipeline, report,
                                         stage=approval_stage, action=approval_action)
    data = {**report.to_dict(), **({"codepipeline": answered} if answered else {})}

    def human(out) -> None:
        out.info(f"gate {stage}: {report.status}: {report.explanation}")
        if report.rows():
            out.table(report.rows(), GATE_COLUMNS)
        if report.evidence():
            out.info(report.evidence())
        if answered:
            out.info(f"CodePipeline {answered['pipeline']}: {answered['stage']}/{answered['action']} "
                     f"answered {answered['result']}")

    app.out.result(data, human)
    app.out.github_output({"gate": report.status, "digest": report.digest or ""})
    app.out.step_summary(_summary_md(f"Gate {stage}: {report.status}", report.rows(), GATE_COLUMNS,
                                     [report.explanation]))
    return {"PASS": EXIT_OK, "WAIT": EXIT_WAIT}.get(report.status, EXIT_FAILURE)


def _pipeline_from_env() -> str:
    initiator = os.environ.get("CODEBUILD_INITIATOR", "")
    if initiator.startswith("codepipeline/"):
        return initiator.split("/", 1)[1]
    raise UsageError("--codepipeline-approve needs the pipeline name",
                     "pass --pipeline NAME (inside CodePipeline it is read from CODEBUILD_INITIATOR)")


# --- approvals ------------------------------------------------------------------------------------


def _decide(app: App, decision: str, deploy_id: str | None, comment: str | None, digest: str | None = None) -> int:
    from pipeline_tools.release import promote as p

    cfg = app.config()
    stage = app.stage
    app.check_shared_ledger(stage)
    ledger = _ledger(app, stage)
    actor = _actor(app, stage)
    if digest is not None and deploy_id is not None:
        raise UsageError("pass --deploy or --digest, not both",
                         "--digest approves a digest for `pt deploy --break-glass`; --deploy a staging deploy")
    outcome = p.decide(cfg, ledger, stage, decision=decision, actor=actor, clock=time.time, comment=comment,
                       deploy_id=deploy_id, digest=digest)
    st = outcome.status

    def human(out) -> None:
        verb = "approved" if decision == "approve" else "rejected"
        if outcome.note:
            out.info(f"{outcome.note} (nothing recorded)")
        else:
            out.info(f"{outcome.approval.approver} {verb} {outcome.approval.digest} for {stage} "
                     f"(record {outcome.recorded.id})")
        out.info(f"{stage}: {st.explain()}")

    app.out.result(outcome.to_dict(), human)
    return EXIT_OK


@click.command()
@stage_option(required=True, help="Stage the digest is waiting for (e.g. prod).")
@click.option("--deploy", "deploy_id", metavar="ID", default=None,
              help="Deploy record of the source stage to approve (default: what it runs now).")
@click.option("--digest", "digest", metavar="sha256:…", default=None,
              help="Approve this digest instead: the second person's approval a `pt deploy --break-glass` of it needs.")
@click.option("--comment", "-m", default=None, help="Why (kept in the ledger).")
@click.option("--shadow", is_flag=True, help="Approve the SageMaker shadow running in this stage for production.")
@output_option
@pass_app
def approve(app: App, deploy_id, comment, shadow: bool = False, digest: str | None = None) -> int:
    """Approve the digest waiting for a stage (the one its promote_from stage runs).

    The approver is the STS caller (see docs/promote.md, identity model); the same person
    approving twice, under any alias, counts once.
    """
    if shadow:
        return _decide_shadow(app, "approve", comment)
    return _decide(app, "approve", deploy_id, comment, digest)


@click.command()
@stage_option(required=True, help="Stage the digest is waiting for (e.g. prod).")
@click.option("--deploy", "deploy_id", metavar="ID", default=None,
              help="Deploy record of the source stage to reject (default: what it runs now).")
@click.option("--digest", "digest", metavar="sha256:…", default=None,
              help="Reject this digest instead (blocks a `pt deploy --break-glass` of it).")
@click.option("--comment", "-m", required=True, help="Why it is rejected (kept in the ledger).")
@click.option("--shadow", is_flag=True, help="Reject the SageMaker shadow running in this stage.")
@output_option
@pass_app
def reject(app: App, deploy_id, comment, shadow: bool = False, digest: str | None = None) -> int:
    """Reject the digest waiting for a stage; a rejection blocks promotion until withdrawn by an approval."""
    if shadow:
        return _decide_shadow(app, "reject", comment)
    return _decide(app, "reject", deploy_id, comment, digest)


APPROVAL_COLUMNS = ["approver", "decision", "digest", "at", "counts", "comment"]


@click.group(invoke_without_command=True)
@stage_option(help="Stage the digest is waiting for (e.g. prod).")
@output_option
@click.pass_context
def approvals(ctx: click.Context) -> int | None:
    """List approvals for a stage (default), or sync CodePipeline approvals."""
    if ctx.invoked_subcommand is None:
        return ctx.invoke(list_)
    return None


@approvals.command("list")
@stage_option(required=True, help="Stage the digest is waiting for (e.g. prod).")
@output_option
@pass_app
def list_(app: App) -> int:
    """What the stage's waiting digest has: approvals, rejections, what is still missing."""
    from pipeline_tools.release import promote as p
    from pipeline_tools.release.ledger import iso

    app.require_stage()
    cfg = app.config()
    stage = app.stage
    app.check_shared_ledger(stage)
    ledger = _ledger(app, stage)
    cand = p.candidate(cfg, ledger, stage)
    st = p.approval_status(cfg, ledger, cand)
    counted = {a.lower() for a in st.approvers}
    recs = p.load_approvals(ledger, stage)
    rows = []
    for a in recs:
        counts = "yes" if a.digest == cand.digest and a.approver.lower() in counted and a.decision == "approve" \
            else ("blocks" if a.digest == cand.digest and a.decision == "reject" else "no")
        rows.append([a.approver, a.decision, a.digest[:19] + "…", iso(a.at), counts, a.comment or ""])
    data = {**st.to_dict(), "source": cand.source, "source_deploy": cand.deploy.id,
            "approvals": [a.to_dict() for a in recs]}

    def human(out) -> None:
        out.info(f"{stage} waits for {cand.digest} ({cand.source} deploy {cand.deploy.id}, "
                 f"author {', '.join(cand.authors) or 'unknown'})")
        out.info(f"{'satisfied' if st.satisfied else 'pending'}: {st.explain()}")
        if rows:
            out.table(rows, APPROVAL_COLUMNS)
        for who, why in st.ignored:
            out.info(f"  not counted: {who}: {why}")

    app.out.result(data, human)
    return EXIT_OK


@approvals.command("sync-codepipeline")
@stage_option(required=True, help="Stage the approvals are for (e.g. prod).")
@click.option("--pipeline", required=True, metavar="NAME", help="CodePipeline pipeline name.")
@output_option
@pass_app
def sync_codepipeline(app: App, pipeline: str) -> int:
    """Record answered Manual approval actions of a CodePipeline (approver from lastUpdatedBy)."""
    from pipeline_tools.release import promote as p

    cfg = app.config()
    stage = app.stage
    app.check_shared_ledger(stage)
    ledger = _ledger(app, stage)
    client = app.aws(stage).client("codepipeline")
    actor = _actor(app, stage)
    rows = p.sync_codepipeline(cfg, ledger, stage, codepipeline=client, pipeline=pipeline, clock=time.time,
                               actor=actor)
    cand = p.candidate(cfg, ledger, stage)
    st = p.approval_status(cfg, ledger, cand)

    def human(out) -> None:
        out.table([[r["stage"], r["action"], r["status"], r.get("approver") or "", r.get("recorded") or "",
                    r.get("note") or ""] for r in rows], ["stage", "action", "status", "approver", "recorded", "note"])
        out.info(f"{stage}: {st.explain()}")

    app.out.result({"pipeline": pipeline, "actions": rows, "status": st.to_dict()}, human)
    return EXIT_OK


# --- pt promote ------------------------------------------------------------------------------------


def deploy_engine(app: App, stage: str, actor: dict, ledger, *, clock=time.time, sleep=time.sleep,
                  wanted: tuple[str, ...] = ()):
    """The release engine (pipeline_tools.release.engine) for `stage`, as promote() calls it;
    `wanted`: the --target values (default every target of the stage)."""
    from pipeline_tools.commands._deploy_common import target_env
    from pipeline_tools.release import promote as p
    from pipeline_tools.targets import build_targets, select_ids

    cfg = app.config()
    ids = select_ids(cfg, stage, list(wanted))  # a bad --target fails here, before any check runs

    def targets_for(st: str, image: str) -> list:
        built = build_targets(cfg, st, target_env(app, st), ids)
        return [t for t in built if getattr(t, "image", None) in (None, image)]

    factory = app.aws(stage)
    return p.target_engine(cfg, targets_for=targets_for, cloudwatch=factory.client("cloudwatch"), ledger=ledger,
                           actor=actor, clock=clock, sleep=sleep, log=app.out.log, ecr=factory.client("ecr"),
                           notify=_notifier(app, actor))


@click.command()
@click.option("--to", "--stage", "-s", "target", required=True, metavar="STAGE",
              help="Stage to promote to (e.g. prod); --stage is the same option, as in the other commands.")
@click.option("--from", "source", metavar="STAGE", default=None, help="Source stage (default: promote_from).")
@click.option("--override-window", is_flag=True, help="Deploy outside the deploy window (needs --reason).")
@click.option("--reason", default=None, help="Why the window is overridden (recorded in the ledger).")
@click.option("--shadow", is_flag=True, help="SageMaker target: make the shadow variant running in --to the "
              "production variant (after its gate, approvals and window).")
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="Release only these targets of --to, repeatable: an id (lambda:predict) or a kind (lambda). "
                   "Default: every target of the stage.")
@dry_run_option
@output_option
@pass_app
def promote(app: App, target: str, source: str | None, override_window: bool, reason: str | None,
            dry_run: bool, shadow: bool = False, targets: tuple[str, ...] = ()) -> int:
    """Promote the digest that passed the previous stage: same image, never rebuilt.

    Checks in order: source gate PASS over its bake time, approvals, deploy window (or
    --override-window --reason), target not locked. Then deploys with the target's strategy.
    """
    from pipeline_tools.release import promote as p

    if shadow:
        return _promote_shadow(app, target, override_window, reason, dry_run)
    cfg = app.config()
    cfg.stage(target)
    if targets:
        from pipeline_tools.targets import select_ids

        select_ids(cfg, target, list(targets))  # bad --target: exit 2 before any check
    src = p.resolve_source(cfg, target, source)
    app.check_shared_ledger(target)
    ledger = _ledger(app, target)  # the shared ledger (tooling account) when accounts.tooling is set
    cw = app.aws(src).client("cloudwatch")  # the source's alarms, with the source stage's role
    if dry_run:
        plan, _ = p.promote(cfg, target, ledger=ledger, cloudwatch=cw, deploy=_no_deploy, actor={},
                            clock=time.time, source=source, override_window=override_window, reason=reason,
                            dry_run=True)
        _print_plan(app, plan, None, dry_run=True)
        return EXIT_OK
    actor = _actor(app, target)
    engine = deploy_engine(app, target, actor, ledger, wanted=targets)
    plan, rec = p.promote(cfg, target, ledger=ledger, cloudwatch=cw, deploy=engine, actor=actor, clock=time.time,
                          source=source, override_window=override_window, reason=reason,
                          notify=_notifier(app, actor))
    _print_plan(app, plan, rec, dry_run=False)
    return EXIT_OK if rec is not None and rec.state == "succeeded" else EXIT_FAILURE


def _no_deploy(*_a, **_k):
    raise AssertionError("dry run must not deploy")


def _print_plan(app: App, plan, rec, *, dry_run: bool) -> None:
    data = {**plan.to_dict(), "dry_run": dry_run, "deploy": rec.to_dict() if rec is not None else None}
    rows = [[c.name, "ok" if c.ok else "FAIL", c.detail] for c in plan.checks]

    def human(out) -> None:
        head = "would promote" if dry_run else "promoted" if rec is not None and rec.state == "succeeded" \
            else "promotion failed:"
        out.info(f"{head} {plan.digest} {plan.source} → {plan.target} ({plan.strategy})")
        out.table(rows, ["check", "result", "detail"])
        if rec is not None:
            out.info(f"deploy {rec.id}: {rec.state}" + (f" ({rec.reason})" if rec.reason else ""))

    app.out.result(data, human)
    app.out.github_output({"promoted": "false" if dry_run or rec is None else str(rec.state == "succeeded").lower(),
                           "digest": plan.digest or ""})
    app.out.step_summary(_summary_md(f"Promote {plan.source} → {plan.target}" + (" (dry run)" if dry_run else ""),
                                     rows, ["check", "result", "detail"], [f"digest `{plan.digest}`"]))


# --- SageMaker shadow (pipeline_tools/targets/sagemaker.py) -----------------------------------------------

SHADOW_COLUMNS = ["check", "status", "shadow", "production", "limit", "why"]


def _gate_shadow(app: App, wait_: bool, timeout: float | None, bake: float | None = None) -> int:
    from pipeline_tools.targets import sagemaker as sm

    cfg, stage = app.config(), app.stage
    t = sm.target(cfg, stage)
    factory = app.aws(stage)
    ledger = _ledger(app, stage)
    cw, client = factory.client("cloudwatch"), factory.client("sagemaker")
    deadline = time.time() + (timeout if timeout is not None else 600.0)
    while True:
        report = sm.gate_shadow(cfg, stage, ledger=ledger, cloudwatch=cw, sagemaker=client, clock=time.time,
                                bake=bake)
        if not wait_ or report.status != "WAIT" or time.time() >= deadline:
            break
        app.out.log(f"gate {stage} (shadow): {report.explanation}")
        time.sleep(min(cfg.stages[stage].gate.poll, max(0.0, deadline - time.time())))
    if report.status != "WAIT":
        try:
            actor = _actor(app, stage)
        except Exception:
            actor = {"name": os.environ.get("PT_ACTOR") or "unknown"}
        sm.record_gate(ledger, report, actor)
        if report.status == "FAIL":
            _notifier(app, actor)("gate_failed", stage, {"summary": f"shadow of {t.endpoint}: {report.explanation}",
                                                         "digest": report.digest, "deploy_id": report.shadow_id})

    def human(out) -> None:
        out.info(f"gate {stage} (shadow on {report.endpoint}): {report.status}: {report.explanation}")
        if report.rows():
            out.table(report.rows(), SHADOW_COLUMNS)

    app.out.result(report.to_dict(), human)
    app.out.github_output({"gate": report.status, "digest": report.digest or ""})
    app.out.step_summary(_summary_md(f"Shadow gate {stage}: {report.status}", report.rows(), SHADOW_COLUMNS,
                                     [report.explanation]))
    return {"PASS": EXIT_OK, "WAIT": EXIT_WAIT}.get(report.status, EXIT_FAILURE)


def _decide_shadow(app: App, decision: str, comment: str | None) -> int:
    from pipeline_tools.targets import sagemaker as sm

    cfg, stage = app.config(), app.stage
    ledger = _ledger(app, stage)
    actor = _actor(app, stage)
    new, rec, note = sm.approve_shadow(cfg, ledger, stage, decision=decision, actor=actor, clock=time.time,
                                       comment=comment)
    st = sm.shadow_approvals(cfg, ledger, stage, sm.active_shadow(ledger, stage))
    data = {"approval": new.to_dict(), "recorded": rec.id if rec else None, "note": note, "status": st.to_dict()}
    verb = "approved" if decision == "approve" else "rejected"
    app.out.result(data, (f"{note} (nothing recorded)" if note else
                          f"{new.approver} {verb} shadow {new.digest} for production in {stage}")
                   + f"; {st.explain()}")
    return EXIT_OK


def _promote_shadow(app: App, stage: str, override_window: bool, reason: str | None, dry_run: bool) -> int:
    from pipeline_tools.commands._deploy_common import sagemaker_deps
    from pipeline_tools.targets import sagemaker as sm

    cfg = app.config()
    app.stage = stage
    sm.target(cfg, stage)
    ledger = _ledger(app, stage)
    deps = sagemaker_deps(app, stage, ledger)
    data = sm.promote_shadow(cfg, stage, deps, override_window=override_window, reason=reason, dry_run=dry_run)
    rows = [[c["check"], "ok" if c["ok"] else "FAIL", c["detail"]] for c in data["checks"]]

    def human(out) -> None:
        head = "would promote" if dry_run else "promoted"
        out.info(f"{head} shadow {data['digest']} to production on {data['endpoint']} "
                 f"(config {data['previous_endpoint_config']} → {data['endpoint_config']})")
        out.table(rows, ["check", "result", "detail"])

    app.out.result(data, human)
    app.out.github_output({"promoted": "false" if dry_run else "true", "digest": data["digest"] or ""})
    return EXIT_OK


__all__ = ["approvals", "approve", "format_duration", "gate", "promote", "reject"]
