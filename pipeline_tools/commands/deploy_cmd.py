"""`pt deploy`, `pt rollback`, `pt recover`, `pt status`, `pt history`: thin wrappers over deploy.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from pipeline_tools.clikit import dry_run_option, lean_config, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


def _ledger(app: App, stage: str, *, create: bool = True):
    from pipeline_tools.core import aws
    from pipeline_tools.release import ledger

    cfg = app.config()
    client = app.ledger_aws(stage).client("dynamodb")
    ledger.ensure_table(client, cfg.ledger_table(), project=cfg.project, stage=stage, local=aws.is_local() and create,
                        stack=app.ledger_stack(stage))
    return ledger.Ledger(client, cfg.ledger_table())


def _begin(app: App, stage: str, plan: Any, window_cfg: Any, override_window: bool, reason: str | None):
    """Before a deploy starts: the deploy window (or its recorded override), the ledger, and no
    dead deploy in the way; then the plan is logged. Returns (window decision, ledger)."""
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release import windows

    decision = windows.check(window_cfg, datetime.now(UTC), override=override_window, reason=reason)
    if decision.overridden:
        app.out.warn(f"deploying outside the window ({decision.window}): {decision.reason}")
    led = _ledger(app, stage)
    dp.check_startable(led, stage, time.time)
    for line in plan.lines():
        app.out.log(line)
    return decision, led


def _who(app: App, stage: str) -> dict:
    """The STS caller, with PT_ACTOR only where declared identities are accepted (actor.py)."""
    from pipeline_tools.release import actor

    who = actor.identify(app.aws(stage).caller_arn(), allow_declared=actor.declared_ok(app.config(), stage))
    if who.get("declared_ignored"):
        app.out.warn(f"{' and '.join(who['declared_ignored'])} ignored: recorded as the STS caller {who['name']} "
                     "(declared identities need local mode or approvals.allow_declared_actor: true)")
    return who


def _deps(app: App, stage: str, led=None, who: dict | None = None):
    from pipeline_tools.release.deploy import Deps

    factory = app.aws(stage)
    gate_cfg = getattr(app.config().stages[stage], "gate", None)
    reports = any(getattr(s, "report", None) for s in getattr(gate_cfg, "signals", None) or ())
    return Deps(lambda_client=factory.client("lambda"), cloudwatch=factory.client("cloudwatch"),
                ledger=led if led is not None else _ledger(app, stage), clock=time.time, sleep=time.sleep,
                log=app.out.log, actor=who if who is not None else _who(app, stage),
                s3=factory.client("s3") if reports else None)


def _guard(app: App, stage: str, digest: str, break_glass: bool, reason: str | None, dry_run: bool):
    """guard.check_deploy for a stage with promote_from (or --break-glass): (decision, ledger, actor)."""
    from pipeline_tools.release import guard

    cfg = app.config()
    app.check_shared_ledger(stage)
    led = _ledger(app, stage)
    src = cfg.stages[stage].promote_from
    who = _who(app, stage)
    decision = guard.check_deploy(cfg, stage, digest, ledger=led, cloudwatch=app.aws(src or stage).client("cloudwatch"),
                                  actor=who, clock=time.time, break_glass=break_glass, reason=reason,
                                  record=not dry_run)
    return decision, led, who


@click.command()
@stage_option(required=True)
@click.option("--image-uri", metavar="REPO@sha256:…", help="Image to deploy, by digest.")
@click.option("--from-build", "from_build", metavar="FILE", type=click.Path(dir_okay=False),
              help="JSON printed by `pt build-push --output json`.")
@click.option("--image", "image_name", metavar="NAME", help="Which image of pipeline.yml (default: inferred).")
@click.option("--strategy", type=click.Choice(["all-at-once", "canary", "linear"]),
              help="Override the stage's deploy strategy (env PT_DEPLOY_STRATEGY).")
@click.option("--override-window", is_flag=True, help="Deploy outside the stage's deploy window.")
@click.option("--break-glass", "break_glass", is_flag=True,
              help="Stage with promote_from: deploy a digest that was not promoted (emergency). Needs --reason "
                   "and one approval of the digest by someone else (`pt approve --stage S --digest D`); "
                   "recorded in the ledger and notified.")
@click.option("--reason", metavar="TEXT",
              help="Why the window is overridden / the glass is broken (recorded in the ledger).")
@click.option("--target", type=click.Choice(["lambda", "sagemaker"]), default="lambda", show_default=True,
              help="What to deploy to: the stage's Lambdas, or its SageMaker endpoint (as a shadow variant).")
@dry_run_option
@output_option
@pass_app
def deploy(app: App, image_uri: str | None, from_build: str | None, image_name: str | None,
           strategy: str | None, override_window: bool, reason: str | None, dry_run: bool,
           target: str = "lambda", break_glass: bool = False) -> int:
    """Deploy an image digest to a stage's Lambdas (canary/linear/all-at-once) with rollback.

    A stage with promote_from (prod) only takes the digest its source stage runs after it passed
    the gate there and got the stage's approvals (what `pt promote --to STAGE` checks), unless
    --break-glass --reason "…" with a second person's approval of the digest.

    \b
    Exit codes: 0 deployed (or nothing to deploy), 1 failed and rolled back or refused
    (not promoted, break-glass without approval), 2 usage error, 3 source gate still baking,
    4 stage locked or a dead deploy needs `pt recover`.
    """
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release import windows

    if target == "sagemaker":
        if break_glass:
            raise UsageError("--break-glass applies to Lambda deploys",
                             "a SageMaker shadow reaches production through `pt promote --shadow`")
        return _deploy_sagemaker(app, image_uri, from_build, override_window, reason, dry_run)
    cfg, stage, out = app.config(), app.stage, app.out
    build = dp.load_build_output(from_build) if from_build else None
    image, ref = dp.choose_image(cfg, image_uri=image_uri, build=build, image=image_name)
    factory = app.aws(stage)
    if override_window and not (reason and reason.strip()):
        windows.check(None, datetime.now(UTC), override=True, reason=reason)  # raises the UsageError
    region = dp.ecr_region(ref)
    dp.check_image(ref, ecr=factory.client("ecr", region=region) if region else None)
    plan = dp.plan_deploy(cfg, stage, image, ref, factory.client("lambda"), strategy=strategy)
    if plan.noop:
        data = {"state": "noop", "stage": stage, "digest": ref.digest, "image_uri": ref.uri,
                "message": "nothing to deploy", "plan": plan.to_dict()}
        out.result(data, f"nothing to deploy: every function of {stage} already runs {ref.digest[:19]}… at 100%")
        out.github_output({"deploy_state": "noop", "digest": ref.digest})
        return 0
    window_cfg = cfg.stages[stage].window
    guarded = led = who = None
    if break_glass or cfg.stages[stage].promote_from:
        guarded, led, who = _guard(app, stage, plan.digest, break_glass, reason, dry_run)
    if dry_run:
        try:
            win = windows.check(window_cfg, datetime.now(UTC), override=override_window, reason=reason).to_dict()
        except windows.WindowClosed as e:
            win = {"open": False, "overridden": False, "message": e.message}
        data = {"dry_run": True, "plan": plan.to_dict(), "window": win,
                "guard": guarded.to_dict() if guarded else None}

        def human(o):
            for line in plan.lines():
                o.info(line)
            if guarded and guarded.mode == "break-glass":
                o.info(f"break-glass: approved by {', '.join(guarded.approvals.approvers)}"
                       + (f"; bypasses: {guarded.bypassed}" if guarded.bypassed else ""))
            if win.get("message"):
                o.info(f"note: a real deploy would be refused now: {win['message']}")
            o.info("dry run: nothing changed")

        out.result(data, human)
        return 0
    decision, led = _begin(app, stage, plan, window_cfg, override_window, reason)
    deps = _deps(app, stage, led, who)
    from pipeline_tools.commands.promote_cmd import _notifier
    from pipeline_tools.release.promote import notified_deploy

    notify = _notifier(app, deps.actor)
    def run_for(d):
        return dp.deploy(cfg, plan, d, window=decision.to_dict() if window_cfg else None)

    if guarded is not None and guarded.mode == "break-glass":
        result = _break_glass_deploy(app, guarded, deps, run_for, notify, plan)
    else:
        result = notified_deploy(lambda: run_for(deps), ledger=led, stage=stage, digest=plan.digest,
                                 strategy=plan.strategy, notify=notify)
    data = result.to_dict()
    out.github_output({"deploy_id": result.deploy_id, "deploy_state": result.state, "digest": plan.digest,
                       "image_uri": plan.image_uri})
    from pipeline_tools.core.output import markdown_table

    out.step_summary(f"### pt deploy {stage}: {result.state}\n\n" + markdown_table(
        [(f["name"], f["previous_version"], f["version"]) for f in data["functions"]],
        ["function", "previous", "live"]))
    versions = ", ".join(f"{f['function']} v{f['version']}" for f in data["functions"])
    out.result(data, f"deployed {plan.image} {plan.digest[:19]}… to {stage}: {versions} "
                     f"({plan.strategy}, {data['duration_s']:.1f}s, deploy {result.deploy_id})")
    return 0


def _break_glass_deploy(app: App, guarded, deps, run_for, notify, plan):
    """Record the break-glass, notify it, deploy (actor tagged with the record), close the record."""
    from dataclasses import replace

    from pipeline_tools.release import guard
    from pipeline_tools.release.promote import _record_notification, notified_deploy

    led, stage = deps.ledger, guarded.stage
    bg = guard.start_break_glass(led, guarded, deps.actor)
    app.out.warn(f"BREAK-GLASS deploy of {plan.digest} to {stage} by {deps.actor.get('name')} "
                 f"(approved by {', '.join(guarded.approvals.approvers)}): {guarded.reason}")
    res = notify("break_glass", stage, {
        "digest": plan.digest, "summary": f"break-glass deploy of {plan.digest[:19]}… to {stage} by "
        f"{deps.actor.get('name')}: {guarded.reason}", "approvers": list(guarded.approvals.approvers),
        "bypassed": guarded.bypassed, "record": bg.id})
    _record_notification(led, stage, bg.id, res)
    deps = replace(deps, actor={**deps.actor, "break_glass": bg.id})
    try:
        result = notified_deploy(lambda: run_for(deps), ledger=led, stage=stage, digest=plan.digest,
                                 strategy=plan.strategy, info={"break_glass": bg.id}, notify=notify)
    except Exception as e:
        last = led.query(stage, "deploy", limit=1)
        guard.finish_break_glass(led, stage, bg.id, deploy_id=last[0].id if last else None,
                                 deploy_state=last[0].state if last else "failed", actor=deps.actor,
                                 error=getattr(e, "message", None) or f"{type(e).__name__}: {e}")
        raise
    guard.finish_break_glass(led, stage, bg.id, deploy_id=result.deploy_id, deploy_state=result.state,
                             actor=deps.actor)
    return result


@click.command()
@stage_option(required=True)
@click.option("--to", "to", metavar="DEPLOY_ID", help="Roll back to this succeeded deploy (default: the previous one).")
@click.option("--target", type=click.Choice(["lambda", "sagemaker"]), default="lambda", show_default=True,
              help="sagemaker: drop the shadow / restore the endpoint's previous config.")
@dry_run_option
@output_option
@pass_app
def rollback(app: App, to: str | None, dry_run: bool, target: str = "lambda") -> int:
    """Point a stage back to its previous succeeded deploy (every function, recorded)."""
    from pipeline_tools.release import deploy as dp

    if target == "sagemaker":
        return _rollback_sagemaker(app, dry_run)
    stage = app.stage
    led = _ledger(app, stage)
    deps = _deps(app, stage, led)
    data = dp.rollback(app.config(), stage, deps, to=to, dry_run=dry_run)

    def human(o):
        verb = "would roll back" if dry_run else "rolled back"
        o.info(f"{verb} {stage} to deploy {data['target']} ({(data.get('digest') or '?')[:19]}…)")
        for m in data["functions"]:
            o.info(f"  {m['name']}: v{m['from_version']} → v{m['to_version']}")

    app.out.result(data, human)
    return 0


@click.command()
@stage_option(required=True)
@click.option("--force", is_flag=True, help="Take the lock even if its lease has not expired (holder is dead).")
@click.option("--target", type=click.Choice(["lambda", "sagemaker"]), default=None,
              help="What died (default: whatever holds the stage lock).")
@dry_run_option
@output_option
@pass_app
def recover(app: App, force: bool, dry_run: bool, target: str | None = None) -> int:
    """Finish or roll back a deploy that died mid-way (recorded in the ledger)."""
    from pipeline_tools.release import deploy as dp

    stage = app.stage
    led = _ledger(app, stage)
    if target == "sagemaker" or (target is None and _lock_kind(led, stage) == "sagemaker"):
        return _recover_sagemaker(app, led, force, dry_run)
    data = dp.recover(app.config(), stage, _deps(app, stage, led), force=force, dry_run=dry_run)
    msgs = {"nothing-to-recover": f"nothing to recover on {stage}",
            "released-stale-lock": f"released a stale lock on {stage} (deploy {data.get('deploy_id')})",
            "remove-damaged-lock": f"would remove the damaged lock item of {stage}",
            "removed-damaged-lock": f"removed the damaged lock item of {stage}"}
    if data["action"] in msgs:
        app.out.result(data, msgs[data["action"]])
        return 0
    what = {"roll-back": "roll back", "roll-forward": "roll forward", "finish-rollback": "finish"}
    verb = "would" if dry_run else "did"
    app.out.result(data, f"{verb} {what.get(data['action'], data['action'])} {data.get('operation', 'deploy')} "
                         f"{data['deploy_id']} on {stage} (it stopped in state {data['died_in']})")
    return 0


@click.command()
@stage_option(required=False, help="Stage (default: every stage).")
@output_option
@lean_config
@pass_app
def status(app: App) -> int:
    """Show what runs where: live version, digest, weights, last deploy, lock."""
    from pipeline_tools.core.errors import NotFoundError
    from pipeline_tools.release import deploy as dp

    cfg = app.config()
    stages = [app.stage] if app.stage else list(cfg.stages)
    if app.stage:
        cfg.stage(app.stage)
    result: list[dict[str, Any]] = []
    for st in stages:
        try:
            led = _ledger(app, st, create=False)
        except NotFoundError as e:
            app.out.warn(f"{st}: {e.message}")
            led = None
        result.append(dp.status(cfg, st, app.aws(st).client("lambda"), led, time.time))
        for w in result[-1].get("warnings", ()):
            app.out.warn(f"{st}: {w}")
        tgt = cfg.targets.sagemaker
        if tgt is not None and (tgt.stages is None or st in tgt.stages):
            from pipeline_tools.targets import sagemaker as sm

            result[-1]["sagemaker"] = sm.status(cfg, st, app.aws(st).client("sagemaker"), led)

    def human(o):
        rows = []
        for s in result:
            last = s.get("last_deploy") or {}
            for f in s["functions"]:
                weights = ", ".join(f"v{v}:{w:.0%}" for v, w in (f.get("weights") or {}).items())
                live = f.get("version") or f.get("note") or ("error: " + f["error"] if f.get("error") else "-")
                rows.append((s["stage"], f["name"], live, (f.get("digest") or "")[:19],
                             weights or ("100%" if f.get("version") else "-"), last.get("state") or "-",
                             last.get("actor") or "-", _age(last.get("age_s"))))
        o.table(rows, ["stage", "function", "live", "digest", "weights", "last deploy", "actor", "age"])
        for s in result:
            e = s.get("sagemaker")
            if e:
                shadow = f", shadow {e['shadow']['digest'][:19]}… since {e['shadow']['since']}" if e.get("shadow") \
                    else ""
                o.info(f"{s['stage']}: endpoint {e['endpoint']}: {e.get('status') or 'not created'}"
                       + (f" on {e['endpoint_config']}" if e.get("endpoint_config") else "") + shadow
                       + (f" (error: {e['error']})" if e.get("error") else ""))
            if s.get("split"):
                for image, fns in s["split"].items():
                    parts = ", ".join(f"{n} {str(v)[:19] if isinstance(v, str) else v}" for n, v in fns.items())
                    o.info(f"{s['stage']}: image {image} is split across digests ({parts})")
            if s.get("unfinished"):
                u = s["unfinished"]
                o.info(f"{s['stage']}: {u['operation']} {u['id']} did not finish (state {u['state']}); "
                       f"`pt recover --stage {s['stage']}` finishes or undoes it")
            if s.get("lock", {}) and s["lock"].get("damaged"):
                o.info(f"{s['stage']}: lock item damaged; `pt recover --stage {s['stage']} --force` removes it")
            elif s.get("lock"):
                lk = s["lock"]
                o.info(f"{s['stage']}: locked by {lk['actor']} (deploy {lk['deploy_id']}, since {lk['since']})"
                       + (" — stale, run `pt recover`" if lk["stale"] else ""))

    app.out.result({"stages": result}, human)
    return 0


def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    from pipeline_tools.core.config import format_duration

    return format_duration(seconds)


@click.command()
@lean_config
@stage_option(required=True)
@click.option("-n", "limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="How many deploys.")
@click.option("--before", metavar="DEPLOY_ID", default=None,
              help="Start after this deploy (the `next` cursor printed with the previous page).")
@click.option("--kind", "kinds", multiple=True, metavar="KIND",
              help="Records of this kind (repeatable; `all` = every kind): deploy, gate, approval, promotion, "
                   "window-override, break-glass, sagemaker, zoo, runbook, artifacts, teardown, …")
@click.option("--since", metavar="DURATION|DATE", default=None, help="Records created since: 30d, 12h, 2026-11-01.")
@click.option("--until", metavar="DURATION|DATE", default=None, help="Records created until: 1d, 2026-11-30.")
@click.option("--next", "next_token", metavar="TOKEN", default=None,
              help="The next page of a --kind/--since/--until listing (the `next` token it printed).")
@output_option
@pass_app
def history(app: App, limit: int, before: str | None, kinds: tuple[str, ...] = (), since: str | None = None,
            until: str | None = None, next_token: str | None = None) -> int:
    """List a stage's deploys from the ledger, newest first, one page at a time; with --kind,
    --since, --until or --next, records of every kind (approvals, gates, break-glass, …)."""
    from pipeline_tools.release import deploy as dp

    if kinds or since or until or next_token:
        from pipeline_tools.commands.records_cmd import history_records

        if before:
            raise UsageError("--before pages the deploy listing; with --kind/--since/--until use --next TOKEN")
        led = _ledger(app, app.stage, create=False)
        return history_records(app, app.stage, kinds=kinds, since=since, until=until, limit=limit,
                               next_token=next_token, client=led.client, table=led.table)

    rows, cursor = dp.history_page(_ledger(app, app.stage, create=False), app.stage, limit, before,
                                   warn=app.out.warn)

    def human(o):
        o.table([(r["id"], r["operation"], r["state"], (r["digest"] or "")[:19], r["strategy"], r["actor"],
                  r["started"], f"{r['duration_s']}s", (r["reason"] or "")[:60]) for r in rows],
                ["deploy", "op", "state", "digest", "strategy", "actor", "started", "took", "reason"])
        if cursor:
            o.info(f"more: pt history --stage {app.stage} -n {limit} --before {cursor}")

    app.out.result({"stage": app.stage, "deploys": rows, "next": cursor}, human)
    return 0


# --- SageMaker endpoint target (pipeline_tools/targets/sagemaker.py) ------------------------------------


def sagemaker_deps(app: App, stage: str, led):
    from pipeline_tools.core.envvars import env_seconds
    from pipeline_tools.release import actor
    from pipeline_tools.targets import sagemaker as sm

    factory = app.aws(stage)
    return sm.Deps(sagemaker=factory.client("sagemaker"), ledger=led, s3=factory.client("s3"),
                   cloudwatch=factory.client("cloudwatch"), clock=time.time, sleep=time.sleep, log=app.out.log,
                   actor=actor.identify(factory.caller_arn()),
                   poll=env_seconds("PT_SAGEMAKER_POLL", 15.0, minimum=0.001, maximum=3600))


def _sagemaker_image(cfg, image: str, image_uri: str | None, from_build: str | None):
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.release import deploy as dp

    if (image_uri is None) == (from_build is None):
        raise UsageError("pass exactly one of --image-uri REPO@sha256:… or --from-build FILE")
    if from_build:
        found = [b for b in dp.load_build_output(from_build) if b.get("name") == image]
        if not found:
            raise UsageError(f"--from-build {from_build} has no image '{image}' (targets.sagemaker.image)",
                             "build it with `pt build-push`")
        b = found[0]
        image_uri = b.get("image_uri") or (f"{b.get('repository')}@{b.get('digest')}" if b.get("digest") else "")
    return dp.parse_image_uri(image_uri or "")


def _deploy_sagemaker(app: App, image_uri, from_build, override_window: bool, reason, dry_run: bool) -> int:
    from pipeline_tools.core import names
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release import ledger as ledger_mod
    from pipeline_tools.release import windows
    from pipeline_tools.targets import sagemaker as sm

    cfg, stage, out = app.config(), app.stage, app.out
    tgt = sm.target(cfg, stage)
    ref = _sagemaker_image(cfg, tgt.image, image_uri, from_build)
    if override_window and not (reason and reason.strip()):
        windows.check(None, datetime.now(UTC), override=True, reason=reason)  # raises the UsageError
    factory = app.aws(stage)
    region = dp.ecr_region(ref)
    dp.check_image(ref, ecr=factory.client("ecr", region=region) if region else None)
    client = factory.client("sagemaker")
    plan = sm.plan_deploy(cfg, stage, ref.uri, ref.digest, client, record_id=ledger_mod.new_id(time.time()))
    if plan.noop:
        out.result({"target": "sagemaker", "state": "noop", "stage": stage, "digest": ref.digest,
                    "plan": plan.to_dict()},
                   f"nothing to deploy: endpoint {plan.endpoint} already runs {ref.digest[:19]}… in production")
        out.github_output({"deploy_state": "noop", "digest": ref.digest})
        return 0
    verified = sm.verify_artifacts(factory.client("s3"), sm.artifacts_location(cfg, stage),
                                   stack=names.stage_stack(cfg.project, stage))
    window_cfg = cfg.stages[stage].window
    if dry_run:
        try:
            win = windows.check(window_cfg, datetime.now(UTC), override=override_window, reason=reason).to_dict()
        except windows.WindowClosed as e:
            win = {"open": False, "overridden": False, "message": e.message}

        def human(o):
            for line in plan.lines():
                o.info(line)
            o.info(f"  artifacts verified: {verified['files']} files match {plan.artifacts}/manifest")
            if win.get("message"):
                o.info(f"note: a real deploy would be refused now: {win['message']}")
            o.info("dry run: nothing changed")

        out.result({"dry_run": True, "plan": plan.to_dict(), "artifacts": verified, "window": win}, human)
        return 0
    decision, led = _begin(app, stage, plan, window_cfg, override_window, reason)
    rec = sm.deploy(cfg, plan, sagemaker_deps(app, stage, led), window=decision.to_dict() if window_cfg else None)
    data = {**rec.to_dict(), "artifacts": verified}
    out.github_output({"deploy_id": rec.id, "deploy_state": rec.state, "digest": plan.digest,
                       "endpoint_config": plan.endpoint_config})
    what = "shadow variant" if plan.action == "shadow" else "production variant of a new endpoint"
    out.step_summary(f"### pt deploy {stage} (sagemaker): {rec.state}\n\n`{plan.endpoint}` runs `{plan.digest}` "
                     f"as the {what} (config `{plan.endpoint_config}`)")
    out.result(data, f"deployed {plan.digest[:19]}… to endpoint {plan.endpoint} as the {what} "
                     f"(config {plan.endpoint_config}, deploy {rec.id})")
    return 0


def _rollback_sagemaker(app: App, dry_run: bool) -> int:
    from pipeline_tools.targets import sagemaker as sm

    cfg, stage = app.config(), app.stage
    sm.target(cfg, stage)
    led = _ledger(app, stage)
    data = sm.rollback(cfg, stage, sagemaker_deps(app, stage, led), dry_run=dry_run)
    verb = "would roll back" if dry_run else "rolled back"
    app.out.result(data, f"{verb} endpoint {data['endpoint']}: {data['operation']} {data['undo']} undone, "
                         f"config {data['from_endpoint_config']} → {data['to_endpoint_config']}")
    return 0


def _lock_kind(led, stage: str) -> str | None:
    from pipeline_tools.release.ledger import CorruptItem

    try:
        lock = led.current_lock(stage)
    except CorruptItem:
        return None  # the Lambda recover reports (or with --force removes) the damaged lock
    rec = led.get(stage, lock.deploy_id) if lock is not None else None
    return rec.kind if rec is not None else None


def _recover_sagemaker(app: App, led, force: bool, dry_run: bool) -> int:
    from pipeline_tools.targets import sagemaker as sm

    cfg, stage = app.config(), app.stage
    data = sm.recover(cfg, stage, sagemaker_deps(app, stage, led), force=force, dry_run=dry_run)
    if data["action"] == "nothing-to-recover":
        app.out.result(data, f"nothing to recover on {stage} (sagemaker)")
        return 0
    verb = "would restore" if dry_run else "restored"
    app.out.result(data, f"{verb} endpoint {data['endpoint']} after {data['operation']} {data['deploy_id']} died in "
                         f"{data['died_in']}" + (f": {data['restore']}" if data.get("restore") else ""))
    return 0
