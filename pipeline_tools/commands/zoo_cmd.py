"""`pt zoo plan|apply|revert|gc|approve`: thin wrappers over zoo.py."""

from __future__ import annotations

import time
from typing import Any

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App


def _deps(app: App, stage: str, parallel: int = 1, *, records: bool = True):
    """`records=False` for verbs that write no ledger record (`plan`): no actor, so no STS client
    or GetCallerIdentity request."""
    from pipeline_tools.core import aws
    from pipeline_tools.ops.artifacts import s3_client
    from pipeline_tools.release import actor, ledger
    from pipeline_tools.targets.zoo import ZooDeps

    cfg = app.config()
    factory = app.aws(stage)
    ddb = app.ledger_aws(stage).client("dynamodb")
    ledger.ensure_table(ddb, cfg.ledger_table(), project=cfg.project, stage=stage, local=aws.is_local(),
                        stack=app.ledger_stack(stage))
    return ZooDeps(lambda_client=factory.client("lambda"), ssm=_Lazy(lambda: factory.client("ssm")),
                   ledger=ledger.Ledger(ddb, cfg.ledger_table()),
                   cloudwatch=_Lazy(lambda: factory.client("cloudwatch")), s3=_Lazy(lambda: s3_client(factory)),
                   clock=time.time, sleep=time.sleep, log=app.out.log,
                   actor=actor.identify(factory.caller_arn()) if records else {}, parallel=parallel)


def _deps_for(app: App, parallel: int = 1, *, records: bool = True):
    """`stage -> ZooDeps`, built once per stage for this command."""
    cache: dict[str, Any] = {}

    def get(stage: str):
        if stage not in cache:
            cache[stage] = _deps(app, stage, parallel, records=records)
        return cache[stage]

    return get


class _Lazy:
    """A client built on first use (building a botocore client costs ~50 ms; most verbs need few)."""

    def __init__(self, make: Any):
        self._make, self._client = make, None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)


def _image_uri(app: App, image_uri: str | None, from_build: str | None, models: tuple[str, ...]) -> str | None:
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.release.deploy import load_build_output, parse_image_uri
    from pipeline_tools.targets.zoo import require_zoo, select

    if image_uri and from_build:
        raise UsageError("pass at most one of --image-uri and --from-build")
    if image_uri:
        return _checked(app, parse_image_uri(image_uri))
    if not from_build:
        return None
    cfg = app.config()
    zoo = require_zoo(cfg)
    wanted = {zoo.models[m].image or (next(iter(cfg.images)) if len(cfg.images) == 1 else None)
              for m in select(zoo.models, models)}
    cands = [b for b in load_build_output(from_build) if b.get("name") in wanted]
    if len(cands) != 1:
        raise UsageError(f"--from-build lists {len(cands)} images the selected models use",
                         "set zoo.models.NAME.image, select models with --model, or pass --image-uri")
    b = cands[0]
    return _checked(app, parse_image_uri(b.get("image_uri") or f"{b.get('repository')}@{b.get('digest')}"))


def _checked(app: App, ref) -> str:
    """The digest must exist in its registry (ECR API, else the registry HTTP API), as for `pt deploy`."""
    from pipeline_tools.release.deploy import check_image, ecr_region

    region = ecr_region(ref)
    check_image(ref, ecr=app.aws(app.stage).client("ecr", region=region) if region else None)
    return ref.uri


def _lean_config(app: App) -> None:
    """`pt zoo plan` loads pipeline.yml through targets/zoo_config.py (no pydantic; the full loader
    whenever that view cannot vouch for the file). Done before anything else reads the config."""
    if app._config is None:
        from pipeline_tools.targets.zoo_config import load

        app._config = load(app.config_path)


def _stages(app: App) -> list[str]:
    from pipeline_tools.targets.zoo import stage_order

    cfg = app.config()
    if app.stage:
        cfg.stage(app.stage)
        return [app.stage]
    return stage_order(cfg)


def _print_plan(o, plan: dict) -> None:
    c = plan["counts"]
    o.info(f"{plan['stage']}: {c['new-version']} new version(s), {c['copy']} copy(ies), {c['skip']} skipped "
           f"(set {plan['set_digest'][:19]}…)")
    r = plan.get("reads") or {}
    if r.get("cached"):
        o.info(f"  what runs: {r['ledger']} function(s) from the ledger, {r['aws']} read from Lambda "
               "(--refresh reads Lambda for all)")
    o.table([[m["model"], m["action"], m["function"], (m["artifacts"] or "")[:19], m["reason"]]
             for m in plan["models"]], ["model", "action", "function", "artifacts", "reason"])


_model_opt = click.option("--model", "models", multiple=True, metavar="NAME",
                          help="Only these whitelisted models (repeatable; default: all of zoo.models).")
_image_opt = click.option("--image-uri", metavar="REPO@sha256:…",
                          help="Image for the models (default: the image each model runs).")
_parallel_opt = click.option(
    "--parallel", type=click.IntRange(1, 64), default=None, metavar="N",
    help="Models read (plan) or rolled out (apply), and consumers re-pointed inside a wave, at once "
         "[default: zoo.parallel, 8]. Throttling is retried adaptively (botocore adaptive mode shares one "
         "rate limiter across the N workers); lower N if it persists.")
_build_opt = click.option("--from-build", "from_build", metavar="FILE", type=click.Path(dir_okay=False),
                          help="JSON printed by `pt build-push --output json`.")


@click.group()
def zoo() -> None:
    """Roll out a model zoo: each whitelisted model is a Lambda; copy or new version.

    \b
    copy: true   deploys <project>-<stage>-<model>_copy next to the running model
    copy: false  publishes a new version of <project>-<stage>-<model>, re-points consumers
    A model whose artifacts manifest hash (and image) equals what runs is skipped.
    """


@zoo.command()
@stage_option(required=False, help="Stage (default: every stage in promotion order).")
@_model_opt
@_image_opt
@_build_opt
@_parallel_opt
@click.option("--refresh", is_flag=True,
              help="Read every model's alias from Lambda instead of taking what pt left running from the ledger "
                   "(catches aliases moved by hand; one or two requests per model).")
@output_option
@pass_app
def plan(app: App, models: tuple[str, ...], image_uri: str | None, from_build: str | None,
         parallel: int | None, refresh: bool) -> int:
    """Show per model: skip / copy / new-version, with the reason. Changes nothing.

    What runs comes from the ledger where pt's own records tell it (fast at hundreds of models),
    else from Lambda; `--refresh` reads Lambda for every model. `pt zoo apply` always reads Lambda.
    """
    from pipeline_tools.targets import zoo as z

    _lean_config(app)
    cfg = app.config()
    z.require_zoo(cfg)
    uri = _image_uri(app, image_uri, from_build, models)
    deps = _deps_for(app, parallel or cfg.zoo.parallel, records=False)
    plans = [z.plan_stage(cfg, st, deps=deps(st), models=models or None, image_uri=uri, cached=not refresh).to_dict()
             for st in _stages(app)]

    def human(o):
        for p in plans:
            _print_plan(o, p)

    app.out.result({"stages": plans}, human)
    app.out.github_output({"zoo_changes": sum(1 for p in plans for m in p["models"] if m["action"] != "skip")})
    return 0


@zoo.command()
@stage_option(required=False, help="One stage (default: every stage in promotion order, gate between them).")
@_model_opt
@_image_opt
@_build_opt
@click.option("--override-window", is_flag=True, help="Apply outside the stage's deploy window.")
@click.option("--reason", metavar="TEXT", help="Why the window is overridden (recorded in the ledger).")
@_parallel_opt
@dry_run_option
@output_option
@pass_app
def apply(app: App, models: tuple[str, ...], image_uri: str | None, from_build: str | None,
          override_window: bool, reason: str | None, parallel: int | None,
          dry_run: bool) -> int:
    """Roll the zoo out: staging, its gate over the bake, then prod (approvals, window, lock).

    Consumers move in the waves of zoo.waves (the stage's gate between waves); a failure
    anywhere undoes every wave and the whole apply of that stage.

    \b
    Exit codes: 0 applied (or nothing to do), 1 failed (rolled back) or gate FAIL,
    2 usage/config error (unknown model, bad image), 3 gate WAIT, 4 stage locked.
    """
    from pipeline_tools.release.windows import check
    from pipeline_tools.targets import zoo as z

    cfg = app.config()
    z.require_zoo(cfg)
    if override_window and not (reason and reason.strip()):
        from datetime import UTC, datetime

        check(None, datetime.now(UTC), override=True, reason=reason)  # raises the usage error
    uri = _image_uri(app, image_uri, from_build, models)
    result = z.rollout(cfg, _deps_for(app, parallel or cfg.zoo.parallel), stages=_stages(app), models=models or None,
                       image_uri=uri, dry_run=dry_run, override_window=override_window, reason=reason, log=app.out.log)

    def human(o):
        for e in result["stages"]:
            _print_plan(o, e["plan"])
            for c in e.get("checks") or []:
                o.info(f"  check {c['check']}: {'ok' if c['ok'] else 'REFUSED'}: {c['detail']}")
            if "state" in e:
                o.info(f"  {e['stage']}: {e['state']}" + (f" (zoo apply {e['apply_id']})" if e.get("apply_id") else ""))
            for w in e.get("waves") or []:
                gate = f"; gate {w['gate']['status']}" if w.get("gate") else ""
                o.info(f"  wave {w['wave']}: {len(w['consumers'])} consumer(s){gate}")
            if e.get("gate"):
                o.info(f"  gate {e['gate']['status']}: {e['gate']['explanation']}")
        if dry_run:
            o.info("dry run: nothing changed")

    app.out.result(result, human)
    app.out.github_output({"zoo_set": result.get("set_digest", "")})
    return 0


@zoo.command()
@stage_option(required=True)
@click.option("--force", is_flag=True, help="Revert even if aliases/consumers changed since the apply.")
@dry_run_option
@output_option
@pass_app
def revert(app: App, force: bool, dry_run: bool) -> int:
    """Re-point every consumer and alias back to the previous versions, in one recorded step."""
    from pipeline_tools.targets import zoo as z

    data = z.revert(app.config(), app.stage, _deps(app, app.stage), dry_run=dry_run, force=force)

    def human(o):
        verb = "would revert" if dry_run else "reverted"
        o.info(f"{verb} zoo apply {data['reverts']} on {app.stage}")
        for m in data["models"]:
            to = "function deleted" if m["delete_function"] else (f"v{m['to_version']}" if m["to_version"]
                                                                  else "alias removed")
            o.info(f"  {m['function']}: v{m['from_version']} → {to}")
        for c in data["consumers"]:
            o.info(f"  {c['consumer']}: {c['previous']} → {c['value'] or '(removed)'}")

    app.out.result(data, human)
    return 0


@zoo.command()
@stage_option(required=True)
@click.option("--older-than", "older_than", metavar="AGE", help="e.g. 14d, 36h (default: zoo.gc_older_than).")
@_model_opt
@dry_run_option
@output_option
@pass_app
def gc(app: App, older_than: str | None, models: tuple[str, ...], dry_run: bool) -> int:
    """Delete model versions older than AGE that no alias, consumer or pending revert uses."""
    from pipeline_tools.core.config import parse_age
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.targets import zoo as z

    cfg = app.config()
    zoo_cfg = z.require_zoo(cfg)
    try:
        age = parse_age(older_than) if older_than is not None else zoo_cfg.gc_older_than
    except ValueError as e:
        raise UsageError(f"--older-than: {e}", "e.g. --older-than 14d") from None
    data = z.gc(cfg, app.stage, _deps(app, app.stage), older_than=age, dry_run=dry_run, models=models or None)

    def human(o):
        verb = "would delete" if dry_run else "deleted"
        items = data["delete"] if dry_run else data["deleted"]
        o.info(f"{verb} {len(items)} version(s) on {app.stage}")
        for p in items:
            o.info(f"  {p['function']}:{p['version']}")

    app.out.result(data, human)
    return 0


@zoo.command()
@stage_option(required=True)
@click.option("-m", "--comment", metavar="TEXT", help="Why (recorded).")
@click.option("--reject", is_flag=True, help="Record a rejection instead.")
@dry_run_option
@output_option
@pass_app
def approve(app: App, comment: str | None, reject: bool, dry_run: bool) -> int:
    """Approve (or reject), for this stage, the zoo set its promote_from stage runs."""
    from pipeline_tools.release.approvals import APPROVE, REJECT
    from pipeline_tools.targets import zoo as z

    stage = app.stage
    data: dict[str, Any] = z.approve(app.config(), stage, _deps(app, stage), decision=REJECT if reject else APPROVE,
                                     comment=comment, dry_run=dry_run)
    verb = ("would reject" if reject else "would approve") if dry_run else ("rejected" if reject else "approved")
    app.out.result(data, data["note"] or f"{verb} zoo set {data['digest'][:19]}… (zoo apply {data['source_apply']}) "
                                         f"for {stage}: {data['status']['explanation']}")
    return 0


@zoo.command()
@stage_option(required=True)
@click.option("--force", is_flag=True, help="Take the lock even if its lease has not expired (holder is dead).")
@dry_run_option
@output_option
@pass_app
def recover(app: App, force: bool, dry_run: bool) -> int:
    """Undo a zoo apply (or finish a revert) that died mid-way; recorded in the ledger."""
    from pipeline_tools.targets import zoo as z

    data = z.recover(app.config(), app.stage, _deps(app, app.stage), force=force, dry_run=dry_run)
    if data["action"] == "nothing-to-recover":
        app.out.result(data, f"nothing to recover on {app.stage}")
        return 0
    verb = "would" if dry_run else "did"
    app.out.result(data, f"{verb} {data['action']} for zoo {data['operation']} {data['record']} on {app.stage} "
                         f"(it died in state {data['died_in']})")
    return 0
