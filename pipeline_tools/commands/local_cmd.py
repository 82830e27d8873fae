"""`pt local up|down|status`, `pt release --local`, `pt invoke [--local]`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import EXIT_FAILURE, UsageError

# --- pt local ------------------------------------------------------------------------------


@click.group()
def local() -> None:
    """Start/stop the embedded local stack (moto server + registry + docker).

    \b
      pt local up        start or reuse it, provision every stage, write .pt/local/env
      source .pt/local/env
      pt release --local
      pt local down      stop what `up` started
    """


def _dir_option(f):
    return click.option("--dir", "directory", type=click.Path(file_okay=False), envvar="PT_LOCAL_DIR",
                        default=None, help="State directory (default <repo>/.pt/local; env PT_LOCAL_DIR).")(f)


@local.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="moto server port (default 4566, or a free one if that is taken).")
@click.option("--no-provision", is_flag=True, help="Start the services only; do not create stage resources.")
@_dir_option
@dry_run_option
@output_option
@pass_app
def up(app: App, port: int | None, no_provision: bool, directory: str | None, dry_run: bool) -> int:
    """Start (or reuse) moto + registry, check docker, provision every stage. Idempotent."""
    from pipeline_tools.local import stack as lib

    cfg = app.config()
    where = Path(directory).resolve() if directory else lib.state_dir()
    if dry_run:
        plan = {"state_dir": str(where), "moto_port": port or lib.DEFAULT_MOTO_PORT, "registry": lib.DEFAULT_REGISTRY,
                "provision": [] if no_provision else list(cfg.stages),
                "provisioning": "cdk+boto3" if lib.synth_available() else "boto3"}
        app.out.result(plan, lambda o: o.info(
            f"would start/reuse moto on 127.0.0.1:{plan['moto_port']}, a registry, check docker, and provision "
            f"{', '.join(plan['provision']) or 'nothing'} ({plan['provisioning']}); state in {where}"))
        return 0
    res = lib.up(cfg, port=port, directory=where, provision=not no_provision,
                 on_step=lambda s: app.out.log(f"· {s}"))
    app.out.result(res, lambda o: _print_up(o, res))
    return 0


def _print_up(o, res: dict) -> None:
    m, r, d = res["moto"], res["registry"], res["docker"]
    o.info(f"moto server  {m['endpoint']}  ({'reused' if m.get('reused') else 'started'}"
           f"{', pid ' + str(m['pid']) if m.get('pid') else ''}{'' if m.get('started_by_pt') else ', not ours'})")
    o.info(f"registry     {r['host']}  ({'reused' if r.get('reused') else 'started'}"
           f"{', pid ' + str(r['pid']) if r.get('pid') else ''}{'' if r.get('started_by_pt') else ', not ours'})")
    o.info(f"docker       {d['host']}  (daemon {d.get('version')})")
    for st in res["stages"]:
        if st["stack"]:
            how = (f"stack {st['stack']} created in moto CloudFormation ({len(st['cfn'])} resources)" if st["cfn"]
                   else f"stack {st['stack']} unchanged")
        else:
            how = "provisioned with boto3 from pipeline.yml (no CDK module in this build)"
        o.info(f"stage {st['stage']}: {how}")
        if st["boto3"]:
            label = "boto3 added what moto's CloudFormation skips" if st["stack"] else "boto3"
            o.info(f"  {label}: {_summarize(st['boto3'])}")
    o.info(f"ready in {res['seconds']:.1f}s. Point your shell at it:\n\n    source {res['env_file']}\n\n"
           f"then e.g. `pt release --local`, `pt status --stage staging`, `pt local down`.")


_GAP_PREFIXES = {"alias ": "live aliases", "alarm ": "alarms", "bucket policy ": "bucket policies"}
_GAP_SUFFIXES = {": versioning": "bucket versioning", ": public access block": "public access blocks",
                 ": scan on push": "ECR scan-on-push", ": point-in-time recovery": "DynamoDB PITR"}


def _summarize(items: list[str]) -> str:
    """'alias a:live -> version 1', 'alarm x', … → '2 aliases, 6 alarms, …' (details in --output json)."""
    kinds: dict[str, int] = {}
    for it in items:
        k = next((v for p, v in _GAP_PREFIXES.items() if it.startswith(p)), None) \
            or next((v for sfx, v in _GAP_SUFFIXES.items() if it.endswith(sfx)), "other")
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(f"{k} ×{n}" for k, n in kinds.items())


@local.command()
@_dir_option
@dry_run_option
@output_option
@pass_app
def down(app: App, directory: str | None, dry_run: bool) -> int:
    """Stop what `pt local up` started (nothing else) and remove its env file."""
    from pipeline_tools.local import stack as lib

    where = Path(directory).resolve() if directory else lib.state_dir()
    res = lib.down(where, dry_run=dry_run)
    verb = "would stop" if dry_run else "stopped"

    def human(o) -> None:
        for s in res["stopped"]:
            o.info(f"{verb} {s}")
        for s in res["left"]:
            o.info(f"left {s}")
        for s in res["refused"]:
            o.warn(f"refused {s}")
        if not (res["stopped"] or res["left"] or res["refused"]):
            o.info("would stop: nothing" if dry_run else "nothing to stop")

    app.out.result(res, human)
    if res["refused"]:
        app.out.error([f"pt local down refused to signal {len(res['refused'])} process(es) it cannot prove it "
                       f"started; state kept in {where / 'state.json'}"],
                      "stop them yourself if they are yours (kill PID), then delete the state file")
        return EXIT_FAILURE
    return 0


@local.command()
@_dir_option
@output_option
@pass_app
def status(app: App, directory: str | None) -> int:
    """Show what runs: moto server, registry, docker, provisioned stages (exit 1 if down)."""
    from pipeline_tools.local import stack as lib

    where = Path(directory).resolve() if directory else lib.state_dir()
    res = lib.status(where)

    def human(o) -> None:
        if not res["services"]:
            o.info(f"local stack not started (no state in {res['state_dir']}); run `pt local up`")
            return
        o.table([[s["service"], s["where"], s["pid"] or "", "yes" if s["started_by_pt"] else "no",
                  "up" if s["up"] else "DOWN"] for s in res["services"]],
                ["service", "where", "pid", "ours", "state"])
        o.info(f"stages provisioned: {', '.join(res['stages']) or 'none'}")
        if res["env_file"]:
            o.info(f"env: source {res['env_file']}")

    app.out.result(res, human)
    return 0 if res["running"] else EXIT_FAILURE


# --- pt invoke -----------------------------------------------------------------------------


def _read_event(event: str | None) -> bytes:
    from pipeline_tools.core.awsnames import clip

    if event is None:
        return b"{}"
    if event == "-":
        data = sys.stdin.buffer.read()
    elif event.lstrip()[:1] in ("{", "[") and not Path(event).is_file():
        data = event.encode()  # inline JSON: --event '{"features": [5.1, 3.5, 1.4, 0.2]}'
    else:
        p = Path(event)
        if p.is_dir():
            raise UsageError(f"event file {event} is a directory", "pass --event FILE (JSON), inline JSON, or -")
        if not p.is_file():
            raise UsageError(f"event file {clip(event)} not found",
                             "pass --event FILE (JSON), inline JSON, or - for stdin")
        data = p.read_bytes()
    try:
        json.loads(data or b"null")
    except ValueError as e:
        shown = "from stdin" if event == "-" else clip(event)
        raise UsageError(f"event {shown} is not JSON: {e}", "Lambda events are JSON documents") from None
    return data or b"{}"


@click.command()
@click.argument("function")
@click.option("--local", "local_", is_flag=True, help="Run the function's image with docker (Runtime API in pt).")
@click.option("--event", "-e", metavar="FILE|-|JSON", default=None,
              help="JSON event: a file, - for stdin, or inline JSON (default {}).")
@click.option("--image-uri", default=None, help="Image to run (default: what the stage's live alias runs, "
                                                  "else the image built from the current sources).")
@click.option("--timeout", type=click.FloatRange(0.1, 900), default=None,
              help="Seconds (default: the function's timeout in pipeline.yml).")
@click.option("--emulator", type=click.Choice(["auto", "rie", "pt"]), default="auto", show_default=True,
              help="--local: rie = the AWS Lambda Runtime Interface Emulator (PT_LAMBDA_RIE, or an installed "
                   "aws-sam-cli), pt = pt's own Runtime API, auto = rie when found.")
@stage_option()
@output_option
@pass_app
def invoke(app: App, function: str, local_: bool, event: str | None, image_uri: str | None,
           timeout: float | None, emulator: str) -> int:
    """Invoke FUNCTION (a name from pipeline.yml) like Lambda does; print result, logs, duration.

    Exit 1 when the handler raised, timed out or the runtime crashed.
    """
    from pipeline_tools.images import lambda_runtime as lib

    cfg = app.config()
    if function not in cfg.functions:
        from pipeline_tools.core.config import _did_you_mean

        raise UsageError(f"unknown function '{function}'",
                         _did_you_mean(function, cfg.functions) or f"functions are: {', '.join(cfg.functions)}")
    stage = app.stage or next(iter(cfg.stages))
    cfg.stage(stage)
    payload = _read_event(event)
    if local_:
        import docker

        res = lib.invoke_local(cfg, stage, function, payload, docker=docker.from_env(timeout=300),
                               aws=app.aws(stage), image_uri=image_uri, timeout=timeout,
                               on_info=app.out.log, emulator=emulator)
    else:
        res = lib.invoke_remote(cfg, stage, function, payload, lambda_client=app.aws(stage).client("lambda"))
    app.out.result(res.to_dict(), lambda o: _print_invoke(o, res))
    return 0 if res.ok else EXIT_FAILURE


def _print_invoke(o, res) -> None:
    o.log(f"START RequestId: {res.request_id} Version: $LATEST")
    for line in res.logs.rstrip("\n").splitlines():
        o.log(line)
    o.log(f"END RequestId: {res.request_id}")
    o.log(res.report_line())
    if res.ok:
        o.info(json.dumps(res.payload, indent=2) if not isinstance(res.payload, str) else res.payload)
    else:
        o.info(json.dumps(res.error, indent=2))


# --- pt release ----------------------------------------------------------------------------


@click.command()
@click.option("--local", "local_", is_flag=True,
              help="Against the embedded local stack (starts it if needed: `pt local up`).")
@click.option("--inject-failure", is_flag=True,
              help="Set a staging alarm to ALARM during the canary: shows rollback and a blocked promotion.")
@click.option("--approver", "approvers", multiple=True, metavar="NAME",
              help="Approver identity (repeat; default PT_APPROVERS, comma-separated).")
@click.option("--reason", default=None, help="Reason recorded when the prod deploy window is overridden.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="moto port for `pt local up`.")
@dry_run_option
@output_option
@pass_app
def release(app: App, local_: bool, inject_failure: bool, approvers: tuple[str, ...], reason: str | None,
            port: int | None, dry_run: bool) -> int:
    """Run the whole pipeline: build-push → test → staging canary → gate → approvals → prod.

    Exit codes: 0 released; 1 a step failed (tests, deploy rolled back, gate FAIL, promotion
    blocked); 2 usage/config; 3 gate WAIT; 4 stage locked.
    """
    from pipeline_tools.local import release as lib

    if not local_:
        raise UsageError("`pt release` without --local is what your CI pipeline runs, step by step",
                         "use the generated workflows (`pt init`), or run `pt release --local`")
    cfg = app.config()
    import os

    names = list(approvers) or [a.strip() for a in os.environ.get("PT_APPROVERS", "").split(",") if a.strip()]
    plan = lib.plan(cfg, inject_failure=inject_failure)
    lib.check_approvers(cfg, names)
    if dry_run:
        app.out.result({"steps": [s.to_dict() for s in plan]},
                       lambda o: [o.info(f"{i + 1}. {s.title}") for i, s in enumerate(plan)])
        return 0
    t0 = time.time()
    progress = lib.Progress(app.out)
    summary = lib.run(cfg, plan, approvers=names, reason=reason, port=port, progress=progress,
                      inject_failure=inject_failure)
    summary["seconds"] = round(time.time() - t0, 1)
    app.out.result(summary, lambda o: lib.print_summary(o, summary))
    app.out.github_output({"release_result": summary["result"], "digest": summary.get("digest") or "",
                           "image_uri": summary.get("image_uri") or ""})
    from pipeline_tools.core.output import markdown_table

    app.out.step_summary(f"### pt release --local: {summary['result']}\n\n" + markdown_table(
        [[s.get("title", s["step"]), s["status"], s.get("detail", ""), f"{s.get('seconds', 0):.1f}s"]
         for s in summary["steps"]], ["step", "status", "detail", "time"]))
    return summary["exit_code"]
