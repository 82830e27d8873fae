"""Wiring shared by the deploy-area commands (deploy, rollback, recover, status, history, gate,
promote, runbook, records): the ledger, the actor, engine dependencies, target environments and
notifications. Lives apart so that deploy_cmd and promote_cmd do not import each other."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pipeline_tools.core.context import App


def ledger(app: App, stage: str, *, create: bool = True):
    from pipeline_tools.core import aws
    from pipeline_tools.release import ledger as ledger_mod

    cfg = app.config()
    client = app.ledger_aws(stage).client("dynamodb")
    if create:  # checked by the first call that finds no table (no DescribeTable up front)
        client = ledger_mod.TableGuard(client, cfg.ledger_table(), project=cfg.project, stage=stage,
                                       local=aws.is_local(), stack=app.ledger_stack(stage))
    else:  # readers: a missing table is reported here, so they can go on without the ledger
        ledger_mod.ensure_table(client, cfg.ledger_table(), project=cfg.project, stage=stage, local=False,
                                stack=app.ledger_stack(stage))
    return ledger_mod.Ledger(client, cfg.ledger_table())


def who(app: App, stage: str) -> dict:
    """The STS caller, with PT_ACTOR only where declared identities are accepted (actor.py)."""
    from pipeline_tools.release import actor

    out = actor.identify(app.aws(stage).caller_arn(), allow_declared=actor.declared_ok(app.config(), stage))
    if out.get("declared_ignored"):
        app.out.warn(f"{' and '.join(out['declared_ignored'])} ignored: recorded as the STS caller {out['name']} "
                     "(declared identities need local mode or approvals.allow_declared_actor: true)")
    return out


def begin(app: App, stage: str, plan: Any, window_cfg: Any, override_window: bool, reason: str | None):
    """Before a deploy starts: the deploy window (or its recorded override) and the ledger; then
    the plan is logged. Returns (window decision, ledger)."""
    from pipeline_tools.release import windows

    decision = windows.check(window_cfg, datetime.now(UTC), override=override_window, reason=reason)
    if decision.overridden:
        app.out.warn(f"deploying outside the window ({decision.window}): {decision.reason}")
    led = ledger(app, stage)
    # a dead deploy in the way is found under the lock (Ledger.acquire), with the same message
    for line in plan.lines():
        app.out.log(line)
    return decision, led


def lambda_deps(app: App, stage: str, led=None, actor: dict | None = None):
    """Dependencies of the Lambda-only engine (release/deploy.py)."""
    from pipeline_tools.release.deploy import Deps

    factory = app.aws(stage)
    return Deps(lambda_client=factory.client("lambda"), cloudwatch=factory.client("cloudwatch"),
                ledger=led if led is not None else ledger(app, stage), clock=time.time, sleep=time.sleep,
                log=app.out.log, actor=actor if actor is not None else who(app, stage),
                s3=_report_s3(app, stage))


def _report_s3(app: App, stage: str):
    """An S3 client when the stage's gate has report signals (they read JSON reports from S3)."""
    gate_cfg = getattr(app.config().stages[stage], "gate", None)
    reports = any(getattr(s, "report", None) for s in getattr(gate_cfg, "signals", None) or ())
    return app.aws(stage).client("s3") if reports else None


def engine_deps(app: App, stage: str, led=None, actor: dict | None = None):
    """Dependencies of the target engine (release/engine.py)."""
    from pipeline_tools.release.engine import EngineDeps

    return EngineDeps(cloudwatch=app.aws(stage).client("cloudwatch"),
                      ledger=led if led is not None else ledger(app, stage), clock=time.time, sleep=time.sleep,
                      log=app.out.log, actor=actor if actor is not None else who(app, stage),
                      s3=_report_s3(app, stage))


def target_env(app: App, stage: str):
    from pipeline_tools.core.envvars import env_seconds
    from pipeline_tools.targets import TargetEnv

    factory = app.aws(stage)
    return TargetEnv(client=factory.client, clock=time.time, sleep=time.sleep, log=app.out.log,
                     update_timeout=env_seconds("PT_LAMBDA_UPDATE_TIMEOUT", 300.0, minimum=1, maximum=3600))


def guard(app: App, stage: str, digest: str, break_glass: bool, reason: str | None, dry_run: bool):
    """guard.check_deploy for a stage with promote_from (or --break-glass): (decision, ledger, actor)."""
    from pipeline_tools.release import guard as guard_mod

    cfg = app.config()
    app.check_shared_ledger(stage)
    led = ledger(app, stage)
    src = cfg.stages[stage].promote_from
    actor = who(app, stage)
    decision = guard_mod.check_deploy(cfg, stage, digest, ledger=led,
                                      cloudwatch=app.aws(src or stage).client("cloudwatch"), actor=actor,
                                      clock=time.time, break_glass=break_glass, reason=reason, record=not dry_run)
    return decision, led, actor


def notifier(app: App, actor: dict | None, clock=time.time):
    """notify(kind, stage, info) → NotifyResult (or None); never raises."""
    from pipeline_tools.ops import notify as n

    cfg = app.config()
    actor_ = actor or {}

    def send(kind: str, stage: str, info: dict) -> Any:
        try:
            event = n.Event(kind=kind, project=cfg.project, stage=stage, summary=info.get("summary", kind),
                            digest=info.get("digest"), deploy_id=info.get("deploy_id"),
                            actor=actor_.get("name"), run_url=actor_.get("run_url"), at=clock(),
                            details={k: v for k, v in info.items() if k not in ("summary", "digest", "deploy_id")})
            return n.notify_from_factory(cfg, event, app.aws(stage), warn=app.out.warn)
        except Exception as e:
            app.out.warn(f"notification {kind} not sent: {type(e).__name__}: {e}")
            return None

    return send


def sagemaker_deps(app: App, stage: str, led):
    from pipeline_tools.core.envvars import env_seconds
    from pipeline_tools.release import actor
    from pipeline_tools.targets import sagemaker as sm

    factory = app.aws(stage)
    return sm.Deps(sagemaker=factory.client("sagemaker"), ledger=led, s3=factory.client("s3"),
                   cloudwatch=factory.client("cloudwatch"), clock=time.time, sleep=time.sleep, log=app.out.log,
                   actor=actor.identify(factory.caller_arn()),
                   poll=env_seconds("PT_SAGEMAKER_POLL", 15.0, minimum=0.001, maximum=3600))
