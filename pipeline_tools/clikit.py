"""Shared click pieces: the App pass decorator and options every command may take.

Commands stay thin: parse options, call one library function, print through `app.out`.
"""

from __future__ import annotations

import click

from .context import App

pass_app = click.make_pass_decorator(App, ensure=True)


def _set(attr: str):
    def callback(ctx: click.Context, _param: click.Parameter, value):
        if value is not None:
            setattr(ctx.ensure_object(App), attr, value)
        return value

    return callback


def stage_option(required: bool = False, help: str = "Stage from pipeline.yml (or PT_STAGE)."):
    """`--stage` on a subcommand; falls back to the group's --stage / PT_STAGE."""

    def deco(f):
        f = click.option("--stage", "-s", "stage_", metavar="STAGE", default=None, expose_value=False,
                         callback=_set("stage"), is_eager=True, allow_from_autoenv=False, help=help)(f)
        if required:
            f = _require_stage(f)
        return f

    return deco


def _require_stage(f):
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        app = ctx.ensure_object(App)
        app.require_stage()
        return f(*args, **kwargs)

    return wrapper


def output_option(f):
    """`--output human|json` on a subcommand (also settable on the group / PT_OUTPUT)."""
    return click.option("--output", "output_", type=click.Choice(["human", "json"]), default=None,
                        expose_value=False, callback=_set("output_mode"), is_eager=True,
                        allow_from_autoenv=False, help="Output format (default human).")(f)


def dry_run_option(f):
    return click.option("--dry-run", is_flag=True, default=False,
                        help="Print the plan and call no mutating API.")(f)


def lean_config(f):
    """The command reads only project/region/stages/artifacts of pipeline.yml: load it through
    config_lean (no pydantic). Outermost under @click.command, so it runs before --stage checks."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        click.get_current_context().ensure_object(App).lean_config = True
        return f(*args, **kwargs)

    return wrapper
