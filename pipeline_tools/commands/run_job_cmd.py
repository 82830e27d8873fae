"""`pt run-job`: submit one Batch job with the live revision (and follow it with --wait)."""

from __future__ import annotations

import click

from pipeline_tools.clikit import dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@click.command("run-job")
@stage_option(required=True)
@click.option("--job", "job", required=True, metavar="NAME", help="Key of targets.batch in pipeline.yml.")
@click.option("--wait", is_flag=True, help="Follow the job until it ends; exit 0 on SUCCEEDED, 1 on FAILED.")
@click.option("--command", "command", metavar="'CMD ARGS…'",
              help="Container command instead of the job's own (split like a shell would).")
@dry_run_option
@output_option
@pass_app
def run_job(app: App, job: str, wait: bool, command: str | None, dry_run: bool) -> int:
    """Submit one job of targets.batch.NAME to the stage's queue with its live revision."""
    import shlex
    import time

    from pipeline_tools.targets import TargetEnv
    from pipeline_tools.targets.batch import BatchJobTarget

    cfg = app.config()
    stage = app.require_stage()
    argv = None
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as e:
            raise UsageError(f"--command: {e}", "quote the command like a shell would, e.g. --command 'python "
                                                "score.py --day 1'") from None
        if not argv:
            raise UsageError("--command is empty", "give the command to run, or leave --command out")
    env = TargetEnv(client=app.aws(stage).client, clock=time.time, sleep=time.sleep, log=app.out.log)
    target = BatchJobTarget(cfg, stage, job, env)
    if dry_run:
        plan = target.plan_run(argv)
        app.out.result({"stage": stage, "job": job, "dry_run": True, "request": plan},
                       f"would submit {plan['jobName']} to {plan['jobQueue']} with {plan['jobDefinition']}"
                       + (f", command {argv}" if argv else ""))
        return 0
    watch = target.run(wait=wait, command=argv, on_change=lambda s: app.out.log(f"{job}: {s}"))
    result = {"stage": stage, "job": job, "queue": target.queue, "waited": wait, **watch.to_dict()}

    def human(out) -> None:
        if not wait:
            out.info(f"submitted {watch.name} ({watch.job_id}) to {target.queue}")
            return
        line = f"{watch.name}: {watch.status}"
        if watch.status != "SUCCEEDED":
            line += f" ({watch.reason or 'no reason given'})"
        out.info(line + (f"; log stream {watch.log_stream}" if watch.log_stream else ""))

    app.out.result(result, human)
    return 1 if wait and watch.status != "SUCCEEDED" else 0
