"""Shared click pieces: the App pass decorator and options every command may take.

Commands stay thin: parse options, call one library function, print through `app.out`.
"""

from __future__ import annotations

import click

from pipeline_tools.core.context import App

pass_app = click.make_pass_decorator(App, ensure=True)


def _set(attr: str):
    def callback(ctx: click.Context, param: click.Parameter, value):
        if value is not None:
            setattr(ctx.ensure_object(App), attr, non_empty(ctx, param, value))
        return value

    return callback


def non_empty(ctx: click.Context, param: click.Parameter, value):
    """Option callback: an empty --stage '' is a usage error, not 'no stage' (which may mean all)."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


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


def output_path_problem(value: str, directory: bool = False, parents: bool = False) -> str | None:
    """Why pt could not write `value` (a file, or a directory it creates with its parents), else None.
    `parents`: a file whose missing directories pt creates (reports, like pytest's --junitxml).

    Checked before any work starts, so a bad -o/--evidence-dir is a usage error (exit 2), not a
    failure after the deploy or teardown it was meant to record.
    """
    import os
    from pathlib import Path

    if not value.strip():
        return "must not be empty"
    p = Path(value)
    if p.exists():
        if directory and not p.is_dir():
            return f"{value} is a file, expected a directory"
        if not directory and p.is_dir():
            return f"{value} is a directory, expected a file path"
        if not os.access(p, os.W_OK):
            return f"{value} is not writable"
        return None
    parent = p.parent
    if not directory and parents and not parent.exists():
        problem = output_path_problem(str(parent), directory=True)
        return None if problem is None else f"{problem} (for {value})"
    if not directory:
        if not parent.exists():
            nearest = next((a for a in parent.parents if a.exists()), None)
            if nearest is not None and not nearest.is_dir():
                return f"{nearest} is a file, so {value} cannot be created under it"
            return f"directory {parent} does not exist (create it first: mkdir -p {parent})"
        if not parent.is_dir():
            return f"{parent} is a file, so {value} cannot be created under it"
        return None if os.access(parent, os.W_OK) else f"directory {parent} is not writable"
    nearest = next((a for a in p.parents if a.exists()), Path("."))
    if not nearest.is_dir():
        return f"{nearest} is a file, so directory {value} cannot be created under it"
    return None if os.access(nearest, os.W_OK) else f"directory {nearest} is not writable"


class OutputPath(click.ParamType):
    """A path pt writes: a file whose directory exists (or that pt creates, parents=True), or a
    directory it may create (directory=True)."""

    name = "path"

    def __init__(self, directory: bool = False, parents: bool = False):
        self.directory = directory
        self.parents = parents

    def convert(self, value, param, ctx):
        problem = output_path_problem(str(value), self.directory, self.parents)
        if problem:
            self.fail(problem, param, ctx)
        return str(value)


class Region(click.ParamType):
    """An AWS region name (us-east-1): checked before any client is built, so a typo is exit 2."""

    name = "region"

    def convert(self, value, param, ctx):
        from pipeline_tools.core.awsnames import region

        problem = region(str(value))
        if problem:
            self.fail(problem, param, ctx)
        return str(value)


def lean_config(f):
    """The command reads only project/region/stages/artifacts of pipeline.yml: load it through
    config_lean (no pydantic). Outermost under @click.command, so it runs before --stage checks."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        click.get_current_context().ensure_object(App).lean_config = True
        return f(*args, **kwargs)

    return wrapper
