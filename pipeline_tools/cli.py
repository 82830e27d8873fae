"""`pt`: the entry point, the command registry and the one top-level error handler.

Commands live in `pipeline_tools.commands.*` and are imported only when invoked; the click group
(cligroup.py) is imported only when a command runs. `pt --help` and `pt --version` are printed
here from the registry without importing click (fast_path), laid out exactly as click lays out
the group's help (tests/unit/test_fast_help.py compares the two at many widths).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from pipeline_tools import __version__

if TYPE_CHECKING:
    import click

    from pipeline_tools.core.context import App

# name -> ("module:attribute", one-line help shown by `pt --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("pipeline_tools.commands.config_cmd:config", "Validate pipeline.yml, show it resolved, export its JSON Schema."),
    "init": ("pipeline_tools.commands.init_cmd:init", "Start a repository: pipeline.yml, Dockerfile, GitHub workflows."),
    "upgrade-pipelines": ("pipeline_tools.commands.upgrade_cmd:upgrade_pipelines",
                          "Move the toolkit pin (OWNER/REPO@SHA) in the workflows pt init wrote."),
    "build-push": ("pipeline_tools.commands.images_cmd:build_push", "Build images (content-addressed tags) and push what the registry lacks."),
    "test": ("pipeline_tools.commands.images_cmd:test", "Run an image's test command inside the built image."),
    "deploy": ("pipeline_tools.commands.deploy_cmd:deploy", "Deploy an image digest to a stage's Lambdas (canary/linear/all-at-once)."),
    "rollback": ("pipeline_tools.commands.deploy_cmd:rollback", "Point a stage back to its previous succeeded deploy."),
    "recover": ("pipeline_tools.commands.deploy_cmd:recover", "Finish or roll back a deploy that died mid-way."),
    "status": ("pipeline_tools.commands.deploy_cmd:status", "Show what runs where: versions, digests, weights, last deploy."),
    "history": ("pipeline_tools.commands.deploy_cmd:history", "List a stage's deploys (or, with --kind, every record kind) from the ledger."),
    "gate": ("pipeline_tools.commands.promote_cmd:gate", "Decide PASS/FAIL/WAIT for a stage from its CloudWatch alarms."),
    "approve": ("pipeline_tools.commands.promote_cmd:approve", "Approve the digest waiting for a stage."),
    "reject": ("pipeline_tools.commands.promote_cmd:reject", "Reject the digest waiting for a stage."),
    "approvals": ("pipeline_tools.commands.promote_cmd:approvals", "List approvals for a stage; sync CodePipeline approvals."),
    "promote": ("pipeline_tools.commands.promote_cmd:promote", "Promote the digest that passed the previous stage."),
    "artifacts": ("pipeline_tools.commands.artifacts_cmd:artifacts", "SHA-256 manifests and content-addressed sync of model artifacts."),
    "logs": ("pipeline_tools.commands.logs_cmd:logs", "Scan logs for sensitive identifiers; follow them redacted; archive them to S3."),
    "teardown": ("pipeline_tools.commands.teardown_cmd:teardown", "Delete what a stage owns, in order, with an evidence report."),
    "access": ("pipeline_tools.commands.access_cmd:access",
               "Give Cognito groups access to a service (grant/revoke/show), recorded in a shared file."),
    "params": ("pipeline_tools.commands.params_cmd:params",
               "Keep a service's hyperparameters in SSM Parameter Store (push/diff/show)."),
    "local": ("pipeline_tools.commands.local_cmd:local", "Start/stop the embedded local stack (moto server + registry)."),
    "release": ("pipeline_tools.commands.local_cmd:release", "Run the whole release pipeline (locally with --local)."),
    "invoke": ("pipeline_tools.commands.local_cmd:invoke", "Invoke a function's image locally like Lambda does."),
    "zoo": ("pipeline_tools.commands.zoo_cmd:zoo", "Roll out a model zoo: copies or new versions, plan/apply/revert/gc."),
    "change-record": ("pipeline_tools.commands.records_cmd:change_record",
                      "Write the change record of a deploy or of the next promotion (md/json)."),
    "audit": ("pipeline_tools.commands.audit_cmd:audit", "Export every ledger record in a stable schema (jsonl/csv/md)."),
    "run-job": ("pipeline_tools.commands.run_job_cmd:run_job",
                "Submit one Batch job with its live revision; --wait follows it to the end."),
    "runbook": ("pipeline_tools.commands.runbook_cmd:runbook",
                "Run a checklist whose every step leaves evidence in the ledger."),
}


def available_commands() -> dict[str, tuple[str, str]]:
    """Registered commands whose module is part of this build."""
    from importlib.util import find_spec

    out = {}
    for name, (target, help_) in COMMANDS.items():
        module = target.split(":")[0]
        try:
            if find_spec(module) is not None:
                out[name] = (target, help_)
        except ModuleNotFoundError:
            pass
    return out



# The group's help text (already clean: click's inspect.cleandoc leaves it as it is).
GROUP_HELP = """pt: build, test, deploy, gate and promote ML model services on AWS.

One pipeline.yml describes the service and its stages; every command reads it.
Every option can also be set from the environment with a PT_ prefix
(PT_STAGE, PT_OUTPUT, PT_DEPLOY_STRATEGY, …).

\b
Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 gate WAIT, 4 stage locked.
Shell completion:  eval "$(_PT_COMPLETE=bash_source pt)"   (zsh_source, fish_source)"""
MAX_CONTENT_WIDTH = 100
# The help records of the group's options (cligroup.cli), in click's order; a test checks they are
# what click makes of the decorators, so the fast help cannot drift from the real group.
HELP_OPTIONS: tuple[tuple[str, str], ...] = (
    ("-V, --version", "Show the version and exit."),
    ("-c, --config FILE", "pipeline.yml to use (default ./pipeline.yml; env PT_CONFIG)."),
    ("-s, --stage STAGE", "Stage to act on (env PT_STAGE)."),
    ("--region REGION", "AWS region (default: stage, then config)."),
    ("--profile NAME", "AWS profile (env PT_PROFILE or AWS_PROFILE)."),
    ("--output [human|json]", "Output format; json prints one document on stdout.  [default: human]"),
    ("-v, --verbose", "More detail on stderr."),
    ("-q, --quiet", "Results and errors only (no progress lines)."),
    ("--no-color", "No colour in output (also NO_COLOR=1)."),
    ("--debug", "Log every AWS request and response status on stderr (secrets redacted); tracebacks on errors."),
    ("-h, --help", "Show this message and exit."),
)
VERSION_MESSAGE = f"pt {__version__}"


def __getattr__(name: str) -> Any:
    """`cli.cli`, `cli.LazyGroup`, `cli.with_common_options`: from cligroup, imported on first use."""
    if name in ("cli", "LazyGroup", "with_common_options"):
        from pipeline_tools import cligroup

        return getattr(cligroup, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fast_path(argv: list[str]) -> str | None:
    """The text `pt --help` / `pt -h` / `pt --version` / `pt -V` prints, without click; None for
    anything else (shell completion included), which click handles."""
    if len(argv) != 1 or "_PT_COMPLETE" in os.environ:
        return None
    if argv[0] in ("--version", "-V"):
        return VERSION_MESSAGE
    if argv[0] in ("--help", "-h"):
        return group_help()
    return None


def group_help(width: int | None = None) -> str:
    """The group's help page as click's HelpFormatter writes it (no trailing newline)."""
    from pipeline_tools import _helpfmt

    if width is None:
        import shutil

        width = max(min(shutil.get_terminal_size().columns, MAX_CONTENT_WIDTH) - 2, 50)
    commands = [(name, help_) for name, (_, help_) in available_commands().items()]
    return _helpfmt.page(width, "pt", "[OPTIONS] COMMAND [ARGS]...", GROUP_HELP,
                         [("Options", list(HELP_OPTIONS)), ("Commands", commands)])


_state: dict[str, App] = {}  # the invocation's App (cligroup.cli sets it)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pt` console script: one clear error line, never a traceback."""
    debug = os.environ.get("PT_DEBUG") == "1"
    fast = fast_path(list(sys.argv[1:] if argv is None else argv))
    if fast is not None:
        try:
            sys.stdout.write(fast + "\n")
            sys.stdout.flush()
        except Exception as e:  # a closed or full stdout: one line, as for any command
            return _report(e, debug)
        return 0
    import click

    from pipeline_tools.cligroup import cli
    from pipeline_tools.core.errors import EXIT_USAGE

    try:
        rv = cli.main(args=argv, prog_name="pt", standalone_mode=False, auto_envvar_prefix="PT")
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        return _abort(e, debug)
    except click.ClickException as e:
        from pipeline_tools.core.output import shorten

        msg = shorten(e.format_message())
        ctx = getattr(e, "ctx", None)
        where = f" ({ctx.command_path})" if ctx is not None and ctx.command_path != "pt" else ""
        sys.stderr.write(f"error: {msg}{where}\n")
        hint = f"see `{ctx.command_path} --help`" if isinstance(e, click.UsageError) and ctx is not None else None
        if hint:
            sys.stderr.write(f"hint: {hint}\n")
        code = e.exit_code if e.exit_code else EXIT_USAGE
        if _json_requested(argv):
            import json

            sys.stdout.write(json.dumps({"error": "UsageError", "message": msg + where, "hint": hint,
                                         "exit_code": code}, indent=2) + "\n")
        return code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as e:
        return _report(e, debug)
    if isinstance(rv, int):
        return rv
    return 0


def _abort(e: click.exceptions.Abort, debug: bool) -> int:
    """click turns any EOFError into Abort; only a user's Ctrl-C/Ctrl-D at a prompt is 'aborted' (130).
    An EOFError from reading data (a truncated .gz, say) is a read failure (exit 1)."""
    if isinstance(e.__cause__, EOFError):
        return _report(e.__cause__, debug)
    sys.stderr.write("aborted\n")
    return 130


def _json_requested(argv: list[str] | None) -> bool:
    """--output json given (on the group or a command) or PT_OUTPUT=json, even if parsing failed."""
    app = _state.get("app")
    if app is not None and app.output_mode == "json":
        return True
    args = list(sys.argv[1:] if argv is None else argv)
    pairs = zip(args, args[1:] + [""])
    return (os.environ.get("PT_OUTPUT") == "json" or "--output=json" in args
            or any(a == "--output" and b == "json" for a, b in pairs))


def _report(e: BaseException, debug: bool) -> int:
    from pipeline_tools.core.errors import EXIT_FAILURE, translate
    from pipeline_tools.core.output import Output

    app = _state.get("app")
    out = app.out if app else Output()
    err = translate(e)
    if debug or (app is not None and app.debug):
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    if err is None:
        out.error([f"internal error: {type(e).__name__}: {e}"],
                  "this is a bug in pt; re-run with PT_DEBUG=1 and report the traceback")
        return EXIT_FAILURE
    from pipeline_tools.core.errors import ConfigError

    out.error(err.lines(), err.hint, prefix=not isinstance(err, ConfigError))
    if out.json:
        from pipeline_tools.core.output import shorten

        doc = err.to_dict()
        out.result({**doc, "message": shorten(doc["message"]), "hint": shorten(doc["hint"]) if doc["hint"] else None})
    return err.exit_code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
