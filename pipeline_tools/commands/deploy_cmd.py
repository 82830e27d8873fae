"""`pt deploy`, `pt rollback`, `pt recover`, `pt status`, `pt history`: thin wrappers over the release
engine (release/engine.py, targets from pipeline_tools.targets) and, for records it did not write,
release/deploy.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from pipeline_tools.clikit import dry_run_option, lean_config, output_option, pass_app, stage_option
from pipeline_tools.commands import _deploy_common as common
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError

_ledger = common.ledger
_who = common.who
_deps = common.lambda_deps
_begin = common.begin
_guard = common.guard
sagemaker_deps = common.sagemaker_deps


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
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="What to release, repeatable: a target id (lambda:predict, stepfunctions:flow, batch:score) "
                   "or a kind (lambda = all of the stage's functions). `sagemaker` alone: the endpoint's step-by-step "
                   "shadow walk (then pt gate/promote --shadow); sagemaker:<endpoint>: through the engine. "
                   "Default: every target of the stage, in stages.<s>.targets order.")
@dry_run_option
@output_option
@pass_app
def deploy(app: App, image_uri: str | None, from_build: str | None, image_name: str | None,
           strategy: str | None, override_window: bool, reason: str | None, dry_run: bool,
           targets: tuple[str, ...] = (), break_glass: bool = False) -> int:
    """Deploy an image digest to a stage's targets (canary/linear/all-at-once) with rollback.

    Targets are released in the stage's order (stages.<s>.targets, default every target); a
    failure after traffic moved puts every target already changed back, in reverse order.

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

    if _legacy_sagemaker(targets):
        if break_glass:
            raise UsageError("--break-glass applies to Lambda deploys",
                             "a SageMaker shadow reaches production through `pt promote --shadow`")
        return _deploy_sagemaker(app, image_uri, from_build, override_window, reason, dry_run)
    cfg, stage = app.config(), app.stage
    build = dp.load_build_output(from_build) if from_build else None
    image, ref = dp.choose_image(cfg, image_uri=image_uri, build=build, image=image_name)
    factory = app.aws(stage)
    if override_window and not (reason and reason.strip()):
        windows.check(None, datetime.now(UTC), override=True, reason=reason)  # raises the UsageError
    from pipeline_tools.targets import select_ids

    ids = select_ids(cfg, stage, list(targets))  # bad --target: one line + hint, exit 2, before any call
    region = dp.ecr_region(ref)
    dp.check_image(ref, ecr=factory.client("ecr", region=region) if region else None)
    return _deploy_targets(app, ids, image, ref, strategy, override_window, reason, dry_run, break_glass)


def _legacy_sagemaker(targets: tuple[str, ...]) -> bool:
    """`--target sagemaker` alone keeps its old meaning: the endpoint's step-by-step shadow walk
    (targets/sagemaker.py: deploy shadow, `pt gate --shadow`, `pt promote --shadow`, rollback).
    `--target sagemaker:<endpoint>` (or no --target) releases the endpoint through the engine."""
    return tuple(targets) == ("sagemaker",)


def _deploy_targets(app: App, ids: list[str], image: str, ref, strategy: str | None, override_window: bool,
                    reason: str | None, dry_run: bool, break_glass: bool) -> int:
    """`pt deploy` through the target engine (release/engine.py)."""
    from pipeline_tools.release import engine, windows
    from pipeline_tools.release.promote import notified_deploy
    from pipeline_tools.release.target import Release
    from pipeline_tools.targets import build_targets

    cfg, stage, out = app.config(), app.stage, app.out
    chosen = [t for t in build_targets(cfg, stage, common.target_env(app, stage), ids)
              if getattr(t, "image", None) in (None, image)]
    if not chosen:
        raise UsageError(f"no selected target of stage {stage} runs image '{image}'",
                         f"targets: {', '.join(ids) or 'none'}; pick others with --target")
    plan = engine.plan(cfg, stage, chosen, Release(ref.uri, ref.digest, "", image), strategy=strategy)
    if plan.noop:
        out.result({"state": "noop", "stage": stage, "digest": ref.digest, "image_uri": ref.uri,
                    "message": "nothing to deploy", "plan": _plan_with_functions(plan)},
                   f"nothing to deploy: every target of {stage} already runs {ref.digest[:19]}…")
        out.github_output({"deploy_state": "noop", "digest": ref.digest})
        return 0
    window_cfg = cfg.stages[stage].window
    guarded = who = None
    if break_glass or cfg.stages[stage].promote_from:
        guarded, _led, who = _guard(app, stage, plan.digest, break_glass, reason, dry_run)
    if dry_run:
        try:
            win = windows.check(window_cfg, datetime.now(UTC), override=override_window, reason=reason).to_dict()
        except windows.WindowClosed as e:
            win = {"open": False, "overridden": False, "message": e.message}

        def human(o):
            for line in plan.lines():
                o.info(line)
            if guarded and guarded.mode == "break-glass":
                o.info(f"break-glass: approved by {', '.join(guarded.approvals.approvers)}"
                       + (f"; bypasses: {guarded.bypassed}" if guarded.bypassed else ""))
            if win.get("message"):
                o.info(f"note: a real deploy would be refused now: {win['message']}")
            o.info("dry run: nothing changed")

        out.result({"dry_run": True, "plan": _plan_with_functions(plan), "window": win,
                    "guard": guarded.to_dict() if guarded else None}, human)
        return 0
    decision, led = _begin(app, stage, plan, window_cfg, override_window, reason)
    deps = common.engine_deps(app, stage, led, who)
    notify = common.notifier(app, deps.actor)

    def run_for(d):
        return engine.run(plan, d, window=decision.to_dict() if window_cfg else None)

    if guarded is not None and guarded.mode == "break-glass":
        result = _break_glass_deploy(app, guarded, deps, run_for, notify, plan)
    else:
        result = notified_deploy(lambda: run_for(deps), ledger=led, stage=stage, digest=plan.digest,
                                 strategy=plan.strategy, notify=notify)
    data = _with_functions(result.to_dict(), plan, result)
    out.github_output({"deploy_id": result.deploy_id, "deploy_state": result.state, "digest": plan.digest,
                       "image_uri": ref.uri})
    from pipeline_tools.core.output import markdown_table

    out.step_summary(f"### pt deploy {stage}: {result.state}\n\n" + markdown_table(
        [(t["name"], t["previous_version"], t["version"]) for t in data["targets"]], ["target", "previous", "live"]))
    live = ", ".join(f"{t['target']} {t['version']}" for t in data["targets"])
    out.result(data, f"deployed {image} {plan.digest[:19]}… to {stage}: {live} "
                     f"({plan.strategy}, {data['duration_s']:.1f}s, deploy {result.deploy_id})")
    return 0


def _lambda_rows(plan) -> list[tuple[str, str, object]]:
    return [(t.id, t.id.split(":", 1)[1], plan.placements[t.id]) for t in plan.targets if t.id.startswith("lambda:")]


def _plan_with_functions(plan) -> dict:
    """The engine's plan, plus the `functions` view `pt deploy --output json` has always printed."""
    changing = {t.id for t in plan.changing()}
    return {**plan.to_dict(), "functions": [
        {"function": fn, "name": p.resource, "alias_exists": p.exists, "previous_version": p.version,
         "previous_digest": p.digest, "routing": p.weights, "changes": tid in changing}
        for tid, fn, p in _lambda_rows(plan)]}


def _with_functions(data: dict, plan, result) -> dict:
    """The engine's result, plus the `functions` and `pruned` views of the Lambda targets."""
    fns = [{"function": fn, "name": p.resource, "previous_version": p.version,
            "version": result.candidates[tid].version if tid in result.candidates else p.version}
           for tid, fn, p in _lambda_rows(plan)]
    pruned = {p.resource: result.cleaned[tid] for tid, _fn, p in _lambda_rows(plan) if result.cleaned.get(tid)}
    return {**data, "functions": fns, "pruned": pruned}


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
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="Roll back only these targets, repeatable: an id (lambda:predict) or a kind (lambda). "
                   "`--target sagemaker` alone: drop the shadow / restore the endpoint's previous config.")
@dry_run_option
@output_option
@pass_app
def rollback(app: App, to: str | None, dry_run: bool, targets: tuple[str, ...] = ()) -> int:
    """Point a stage back to its previous succeeded deploy (every target it changed, recorded)."""
    if _legacy_sagemaker(targets):
        return _rollback_sagemaker(app, dry_run)
    stage = app.stage
    only = None
    if targets:
        from pipeline_tools.targets import select_ids

        only = select_ids(app.config(), stage, list(targets))
    led = _ledger(app, stage)
    data = _rollback_targets(app, led, to, dry_run, only)

    def human(o):
        verb = "would roll back" if dry_run else "rolled back"
        o.info(f"{verb} {stage} to deploy {data['target']} ({(data.get('digest') or '?')[:19]}…)")
        for m in data.get("functions", ()):
            o.info(f"  {m['name']}: v{m['from_version']} → v{m['to_version']}")
        for t in data.get("targets", ()):
            o.info(f"  {t['target']}: {t['from_version']} → {t['to_version']}")

    app.out.result(data, human)
    return 0


@click.command()
@stage_option(required=True)
@click.option("--force", is_flag=True, help="Take the lock even if its lease has not expired (holder is dead).")
@click.option("--target", type=click.Choice(["lambda", "sagemaker"]), default=None,
              help="What died (default: whatever holds the stage lock; a target-engine deploy is recovered "
                   "for every target its record names).")
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
    data = _recover_targets(app, led, force, dry_run)
    if data is None:
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
@lean_config
@stage_option(required=False, help="Stage (default: every stage).")
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="Show only these targets, repeatable: an id (lambda:predict) or a kind (lambda); needs --stage.")
@click.option("--open", "open_", is_flag=True,
              help="Print each stage's CloudWatch dashboard URL (and open it in a browser when run in a terminal).")
@output_option
@pass_app
def status(app: App, targets: tuple[str, ...] = (), open_: bool = False) -> int:
    """Show what runs where: live version, digest, weights, last deploy, lock."""
    from pipeline_tools.core.errors import NotFoundError
    from pipeline_tools.release import deploy as dp

    cfg = app.config()
    stages = [app.stage] if app.stage else list(cfg.stages)
    if app.stage:
        cfg.stage(app.stage)
    only: set[str] | None = None
    if targets:
        if not app.stage:
            raise UsageError("--target needs --stage (target ids differ per stage)", "add --stage STAGE")
        from pipeline_tools.targets import select_ids

        only = set(select_ids(cfg, app.stage, list(targets)))
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
        if only is not None:
            result[-1]["functions"] = [f for f in result[-1]["functions"] if f"lambda:{f['function']}" in only]
        others = [i for i in _stage_ids(cfg, st) if i.split(":", 1)[0] not in ("lambda", "sagemaker")
                  and (only is None or i in only)] if _has_other_targets(cfg, st) else []
        if others:  # state machines, Batch jobs: their own describe()
            from pipeline_tools.release import engine
            from pipeline_tools.targets import build_targets

            result[-1]["targets"] = engine.describe(build_targets(cfg, st, common.target_env(app, st), others))
        tgt = cfg.targets.sagemaker
        if tgt is not None and (tgt.stages is None or st in tgt.stages):
            from pipeline_tools.targets import sagemaker as sm

            result[-1]["sagemaker"] = sm.status(cfg, st, app.aws(st).client("sagemaker"), led)
        if open_:
            from pipeline_tools.ops.dashboard import dashboard_url

            result[-1]["dashboard_url"] = dashboard_url(cfg, st)

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
            if s.get("dashboard_url"):
                o.info(f"{s['stage']}: dashboard {s['dashboard_url']}")
            e = s.get("sagemaker")
            if e:
                shadow = f", shadow {e['shadow']['digest'][:19]}… since {e['shadow']['since']}" if e.get("shadow") \
                    else ""
                o.info(f"{s['stage']}: endpoint {e['endpoint']}: {e.get('status') or 'not created'}"
                       + (f" on {e['endpoint_config']}" if e.get("endpoint_config") else "") + shadow
                       + (f" (error: {e['error']})" if e.get("error") else ""))
            for t in s.get("targets", ()):
                o.info(f"{s['stage']}: {t['target']}: " + (f"error: {t['error']}" if t.get("error") else
                       f"version {t.get('version') or '-'} {(t.get('digest') or '')[:19]}"))
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
    if open_ and app.out.is_tty():
        import webbrowser

        for s in result:
            webbrowser.open(s["dashboard_url"])
    return 0


def _has_other_targets(cfg, stage: str) -> bool:
    """Whether the stage may have targets besides its Lambdas and the SageMaker endpoint (state
    machines, Batch jobs): a `stages.<s>.targets` list, or a `targets.<kind>` section of another
    kind. Without either, status imports none of those kinds' modules (or the full config)."""
    from pipeline_tools.targets import KINDS

    return bool(cfg.stage(stage).targets) or any(getattr(cfg.targets, k, None)
                                                 for k in KINDS if k not in ("lambda", "sagemaker"))


def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    from pipeline_tools.core.config_lean import format_duration

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
@click.option("--target", "targets", metavar="ID|KIND", multiple=True,
              help="Only deploys that changed one of these targets, repeatable: an id (lambda:predict) or a kind.")
@output_option
@pass_app
def history(app: App, limit: int, before: str | None, kinds: tuple[str, ...] = (), since: str | None = None,
            until: str | None = None, next_token: str | None = None, targets: tuple[str, ...] = ()) -> int:
    """List a stage's deploys from the ledger, newest first, one page at a time; with --kind,
    --since, --until or --next, records of every kind (approvals, gates, break-glass, …)."""
    from pipeline_tools.release import deploy as dp

    if kinds or since or until or next_token:
        from pipeline_tools.commands.records_cmd import history_records

        if before:
            raise UsageError("--before pages the deploy listing; with --kind/--since/--until use --next TOKEN")
        if targets:
            raise UsageError("--target filters the deploy listing; leave out --kind/--since/--until/--next with it")
        led = _ledger(app, app.stage, create=False)
        return history_records(app, app.stage, kinds=kinds, since=since, until=until, limit=limit,
                               next_token=next_token, client=led.client, table=led.table)

    only = None
    if targets:
        from pipeline_tools.core.config import load
        from pipeline_tools.targets import select_ids

        # the full config: target ids need functions:/targets:, which the lean loader skips
        only = set(select_ids(load(app.config_path), app.stage, list(targets)))
    rows, cursor = dp.history_page(_ledger(app, app.stage, create=False), app.stage, limit, before,
                                   warn=app.out.warn)
    if only is not None:  # filtered within the page: the cursor still walks every deploy
        rows = [r for r in rows if only & set(r.get("targets") or ())]

    def human(o):
        o.table([(r["id"], r["operation"], r["state"], (r["digest"] or "")[:19], r["strategy"], r["actor"],
                  r["started"], f"{r['duration_s']}s", (r["reason"] or "")[:60]) for r in rows],
                ["deploy", "op", "state", "digest", "strategy", "actor", "started", "took", "reason"])
        if cursor:
            o.info(f"more: pt history --stage {app.stage} -n {limit} --before {cursor}")

    app.out.result({"stage": app.stage, "deploys": rows, "next": cursor}, human)
    return 0


# --- SageMaker endpoint target (pipeline_tools/targets/sagemaker.py) ------------------------------------


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


def _rollback_targets(app: App, led, to: str | None, dry_run: bool, only: list[str] | None = None) -> dict:
    """`pt rollback` through the target engine: back to what an earlier succeeded deploy left live."""
    from pipeline_tools.release import deploy as dp
    from pipeline_tools.release import engine
    from pipeline_tools.targets import build_targets

    cfg, stage = app.config(), app.stage
    known = set(_stage_ids(cfg, stage))
    env = common.target_env(app, stage)

    def build(ids: list[str]) -> list:
        missing = [i for i in ids if i not in known]
        if missing:
            raise UsageError(f"the deploy to undo changed targets stage {stage} no longer has: {', '.join(missing)}",
                             "restore them in pipeline.yml, or deploy the earlier digest with `pt deploy`")
        return build_targets(cfg, stage, env, ids)

    if not dry_run:
        dp.check_startable(led, stage, time.time)
    return engine.rollback(cfg, stage, common.engine_deps(app, stage, led), build, to=to, dry_run=dry_run,
                           only=only, recorded=dp.recorded_versions)


def _recover_targets(app: App, led, force: bool, dry_run: bool) -> dict | None:
    """Recover a release of the target engine from its record, or None when the unfinished
    deploy (if any) was not made by it."""
    from pipeline_tools.release import engine
    from pipeline_tools.targets import build_targets

    cfg, stage = app.config(), app.stage
    rec = led.unfinished(stage)
    if rec is None or not engine.is_engine_record(rec):
        return None
    order = list(rec.data.get("order") or [])
    known = set(_stage_ids(cfg, stage))
    targets = build_targets(cfg, stage, common.target_env(app, stage), [i for i in order if i in known])
    return engine.recover(stage, common.engine_deps(app, stage, led), {t.id: t for t in targets},
                          force=force, dry_run=dry_run)


def _stage_ids(cfg, stage: str) -> list[str]:
    from pipeline_tools.targets import stage_ids

    return stage_ids(cfg, stage)


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
