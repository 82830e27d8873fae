"""`pt --help` / `pt --version` are printed without click (cli.fast_path); what they print is
exactly what the click group prints, at every terminal width."""

import inspect
import json
import subprocess
import sys

import pytest

from pipeline_tools import __version__, cli

WIDTHS = [1, 30, 50, 51, 52, 60, 72, 79, 80, 81, 90, 99, 100, 101, 102, 120, 300]


def _click_output(args, capsys) -> str:
    import click

    from pipeline_tools.cligroup import cli as group

    capsys.readouterr()
    try:
        rv = group.main(args=args, prog_name="pt", standalone_mode=False, auto_envvar_prefix="PT")
    except click.exceptions.Exit as e:
        rv = e.exit_code
    assert rv == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_fast_help_is_what_click_prints(flag, width, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", str(width))
    expected = _click_output([flag], capsys)
    assert cli.main([flag]) == 0
    assert capsys.readouterr().out == expected
    assert "Commands:" in expected and "Exit codes: 0 ok" in expected


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_fast_version_is_what_click_prints(flag, capsys):
    expected = _click_output([flag], capsys)
    assert cli.main([flag]) == 0
    assert capsys.readouterr().out == expected == f"pt {__version__}\n"


def test_fast_help_tables_are_the_groups_own():
    """HELP_OPTIONS and GROUP_HELP are what click makes of the group's decorators."""
    import click

    from pipeline_tools.cligroup import cli as group

    ctx = click.Context(group, info_name="pt")
    records = tuple(r for r in (p.get_help_record(ctx) for p in group.get_params(ctx)) if r)
    assert records == cli.HELP_OPTIONS
    assert group.help == cli.GROUP_HELP == inspect.cleandoc(cli.GROUP_HELP)


def test_fast_help_lists_every_available_command_once(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [ln.split()[0] for ln in out.split("Commands:\n", 1)[1].splitlines() if ln.startswith("  ") and
              not ln.startswith("   ")]
    assert listed == list(cli.available_commands())


def test_anything_else_goes_through_click():
    assert cli.fast_path(["--help", "x"]) is None
    assert cli.fast_path(["status", "--help"]) is None
    assert cli.fast_path([]) is None
    assert cli.fast_path(["--helpx"]) is None


def test_completion_is_left_to_click(monkeypatch):
    monkeypatch.setenv("_PT_COMPLETE", "bash_source")
    assert cli.fast_path(["--help"]) is None


PROBE = """
import json, sys
from pipeline_tools import cli
try:
    cli.main({args!r})
finally:
    sys.stderr.write('MODULES=' + json.dumps(sorted(sys.modules)) + '\\n')
"""


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"]])
def test_help_and_version_import_neither_click_nor_pt_internals(args):
    """The fast path: no click, no App/Output/config modules, nothing from AWS or docker."""
    r = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("MODULES="))
    mods = set(json.loads(line[len("MODULES="):]))
    tops = {m.split(".")[0] for m in mods}
    assert not tops & {"click", "boto3", "botocore", "docker", "aws_cdk", "pydantic", "rich", "yaml", "jsii"}
    ours = {m for m in mods if m.startswith("pipeline_tools")}
    assert ours == {"pipeline_tools", "pipeline_tools.cli", "pipeline_tools._helpfmt", "pipeline_tools.commands"} \
        or (args == ["--version"] and ours == {"pipeline_tools", "pipeline_tools.cli"})


def test_usage_errors_still_go_through_click(run_pt):
    r = run_pt("statuss")
    assert r.exit_code == 2
    assert "unknown command 'statuss' (did you mean 'status'?)" in r.stderr


def test_fast_help_on_a_full_stdout_is_one_error_line_not_a_traceback(monkeypatch, capsys):
    class Full:
        def write(self, _s):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Full())
    assert cli.main(["--help"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err and "Traceback" not in err
