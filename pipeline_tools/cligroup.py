"""The `pt` click group: global options, the lazy command registry, options every command shares.

Imported by `pipeline_tools.cli` only when a command runs (or its help is shown): `pt --help` and
`pt --version` are printed by cli.py without importing click (see cli.fast_path).
"""

from __future__ import annotations

import importlib

import click

from pipeline_tools import __version__
from pipeline_tools.cli import COMMANDS, GROUP_HELP, MAX_CONTENT_WIDTH, _state, available_commands
from pipeline_tools.clikit import Region, non_empty
from pipeline_tools.core.context import App

__all__ = ["COMMANDS", "LazyGroup", "cli", "with_common_options"]


def _setter(attr: str):
    def callback(ctx: click.Context, _param: click.Parameter, value):
        if value is not None and value is not False:
            setattr(ctx.ensure_object(App), attr, value)
        return value

    return callback


# Group options that every subcommand also accepts, so `pt config validate --config F` works.
_COMMON = [
    (("--config", "-c"), "config_path", {"metavar": "FILE", "help": "pipeline.yml to use (env PT_CONFIG)."}),
    (("--output",), "output_mode", {"type": click.Choice(["human", "json"]), "help": "Output format."}),
    (("--region",), "region", {"metavar": "REGION", "type": Region(), "help": "AWS region."}),
    (("--profile",), "profile", {"metavar": "NAME", "help": "AWS profile."}),
    (("--verbose", "-v"), "verbose", {"is_flag": True, "default": None, "help": "More detail on stderr."}),
    (("--quiet", "-q"), "quiet", {"is_flag": True, "default": None, "help": "Results and errors only."}),
    (("--no-color",), "no_color", {"is_flag": True, "default": None, "help": "No colour (also NO_COLOR=1)."}),
    (("--debug",), "debug", {"is_flag": True, "default": None,
                             "help": "Log every AWS request (secrets redacted) and show tracebacks."}),
]


def with_common_options(cmd: click.Command) -> click.Command:
    """Add the group's common options to a command (and its subcommands), once."""
    if getattr(cmd, "_pt_common", False):
        return cmd
    cmd._pt_common = True  # type: ignore[attr-defined]
    taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for decls, attr, kw in _COMMON:
        decls = tuple(d for d in decls if d not in taken)
        if not decls or decls[0] != _COMMON_FIRST[attr]:
            continue
        cmd.params.append(click.Option([*decls, f"_common_{attr}"], expose_value=False, is_eager=True,
                                       allow_from_autoenv=False, callback=_setter(attr), **kw))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            with_common_options(sub)
    return cmd


_COMMON_FIRST = {attr: decls[0] for decls, attr, _ in _COMMON}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(available_commands())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = available_commands().get(name)
        if entry is None:
            return None
        module, attr = entry[0].split(":")
        return with_common_options(getattr(importlib.import_module(module), attr))

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            match = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.5)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise click.UsageError(f"unknown command '{name}'{hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in available_commands().items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, help=GROUP_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": MAX_CONTENT_WIDTH})
@click.version_option(__version__, "--version", "-V", prog_name="pt", message="%(prog)s %(version)s")
@click.option("--config", "-c", "config_path", metavar="FILE", envvar="PT_CONFIG",
              help="pipeline.yml to use (default ./pipeline.yml; env PT_CONFIG).")
@click.option("--stage", "-s", metavar="STAGE", envvar="PT_STAGE", callback=non_empty,
              help="Stage to act on (env PT_STAGE).")
@click.option("--region", metavar="REGION", type=Region(), envvar="PT_REGION",
              help="AWS region (default: stage, then config).")
@click.option("--profile", metavar="NAME", envvar="PT_PROFILE", help="AWS profile (env PT_PROFILE or AWS_PROFILE).")
@click.option("--output", "output_mode", type=click.Choice(["human", "json"]), default="human", envvar="PT_OUTPUT",
              show_default=True, help="Output format; json prints one document on stdout.")
@click.option("--verbose", "-v", is_flag=True, envvar="PT_VERBOSE", help="More detail on stderr.")
@click.option("--quiet", "-q", is_flag=True, envvar="PT_QUIET", help="Results and errors only (no progress lines).")
@click.option("--no-color", "no_color", is_flag=True, help="No colour in output (also NO_COLOR=1).")
@click.option("--debug", is_flag=True, envvar="PT_DEBUG",
              help="Log every AWS request and response status on stderr (secrets redacted); tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, config_path, stage, region, profile, output_mode, verbose, quiet, no_color,
        debug) -> None:
    app = ctx.ensure_object(App)
    app.config_path = config_path
    app.stage = stage
    app.region = region
    app.profile = profile
    app.output_mode = output_mode
    app.verbose = verbose
    app.quiet = app.quiet or quiet
    app.no_color = app.no_color or no_color
    app.debug = app.debug or debug
    _state["app"] = app
