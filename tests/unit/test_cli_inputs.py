# ruff: noqa: E501  (one case per line reads best)
"""Bad inputs through the real CLI: one clear line, the right exit code, never a traceback or a
Python exception name. One row per case: command line, environment, exit code, message fragment.

`{tmp}` in a row is a scratch directory holding `file` (a file), `dir` (a directory), `log.txt`
(a clean log) and `pii.txt` (a log with an email address); `{cfg}` is the contract pipeline.yml.
"""

from __future__ import annotations

import json
import re

import pytest

from ..conftest import CONTRACT_CONFIG

UNREACHABLE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # a usage error must come before any AWS call
GHA = {"GITHUB_ACTIONS": "true"}

# (case, argv, env, exit code, fragment of stderr)
CASES = [
    # output paths whose parent is missing or a file, or that are directories
    ("schema -o: parent missing", "config schema -o {tmp}/missing/s.json", {}, 2,
     "Invalid value for '--out' / '-o': directory {tmp}/missing does not exist (create it first: mkdir -p {tmp}/missing)"),
    ("schema -o: parent is a file", "config schema -o {tmp}/file/s.json", {}, 2,
     "{tmp}/file is a file, so {tmp}/file/s.json cannot be created under it"),
    ("schema -o: a directory", "config schema -o {tmp}/dir", {}, 2, "{tmp}/dir is a directory, expected a file path"),
    ("manifest -o: parent missing", "artifacts manifest {tmp}/dir -o {tmp}/missing/m.json", {}, 2,
     "directory {tmp}/missing does not exist"),
    ("teardown --evidence-dir under a file", "-c {cfg} teardown -s staging --dry-run --evidence-dir {tmp}/file/ev", UNREACHABLE, 2,
     "Invalid value for '--evidence-dir': {tmp}/file is a file, so directory {tmp}/file/ev cannot be created under it"),
    ("teardown --evidence-dir is a file", "-c {cfg} teardown -s staging --dry-run --evidence-dir {tmp}/file", UNREACHABLE, 2,
     "{tmp}/file is a file, expected a directory"),
    ("artifacts pull into a file", "-c {cfg} artifacts pull {tmp}/file -s staging", UNREACHABLE, 2,
     "{tmp}/file is a file, expected a directory"),
    ("test --junit under a file", "-c {cfg} test model --junit {tmp}/file/sub/j.xml", {"DOCKER_HOST": "unix:///nonexistent"}, 2,
     "Invalid value for '--junit': {tmp}/file is a file, so directory {tmp}/file/sub cannot be created under it"),
    ("$GITHUB_OUTPUT parent missing: warn, keep the exit code", "-c {cfg} logs scan -s staging --no-cloudwatch --path {tmp}/log.txt",
     {**GHA, "GITHUB_OUTPUT": "{tmp}/missing/out"}, 0,
     "warning: cannot write $GITHUB_OUTPUT: {tmp}/missing/out: no such file or directory (or its parent directory is missing)"),
    ("$GITHUB_STEP_SUMMARY is a directory", "-c {cfg} logs scan -s staging --no-cloudwatch --path {tmp}/pii.txt",
     {**GHA, "GITHUB_STEP_SUMMARY": "{tmp}/dir"}, 1, "warning: cannot write $GITHUB_STEP_SUMMARY: {tmp}/dir: is a directory, expected a file"),
    ("$GITHUB_OUTPUT under a file", "-c {cfg} logs scan -s staging --no-cloudwatch --path {tmp}/log.txt",
     {**GHA, "GITHUB_OUTPUT": "{tmp}/file/out"}, 0, "cannot write $GITHUB_OUTPUT: {tmp}/file/out: a parent of this path is a file, not a directory"),
    # directories where files are expected
    ("config is a directory", "config validate -c {tmp}/dir", {}, 2, "{tmp}/dir: is a directory, expected a YAML file"),
    ("PT_CONFIG is a directory", "config validate", {"PT_CONFIG": "{tmp}/dir"}, 2, "{tmp}/dir: is a directory, expected a YAML file"),
    ("empty --config", "--config= config validate", {}, 2, "--config: the path is empty"),
    ("--from-build is a directory", "-c {cfg} deploy -s staging --from-build {tmp}/dir", UNREACHABLE, 2, "is a directory"),
    ("--patterns is a directory", "-c {cfg} logs scan -s staging --no-cloudwatch --path {tmp}/log.txt --patterns {tmp}/dir", {}, 2, "is a directory"),
    ("invoke --event is a directory", "-c {cfg} invoke predict -s staging --local --event {tmp}/dir", {}, 2, "event file {tmp}/dir is a directory"),
    # environment values of the wrong type
    ("PT_AWS_MAX_ATTEMPTS not a number", "-c {cfg} status -s staging", {"PT_AWS_MAX_ATTEMPTS": "abc"}, 2,
     "PT_AWS_MAX_ATTEMPTS='abc' is not a whole number from 1 to 20"),
    ("PT_AWS_MAX_ATTEMPTS zero", "-c {cfg} history -s staging", {"PT_AWS_MAX_ATTEMPTS": "0"}, 2,
     "PT_AWS_MAX_ATTEMPTS='0' is not a whole number from 1 to 20"),
    ("PT_AWS_MAX_ATTEMPTS 100 KB", "-c {cfg} status -s staging", {"PT_AWS_MAX_ATTEMPTS": "9" * 100_000}, 2,
     "PT_AWS_MAX_ATTEMPTS='" + "9" * 40 + "…' (100000 characters) is not a whole number"),
    ("AWS_ENDPOINT_URL not a URL", "-c {cfg} status -s staging", {"AWS_ENDPOINT_URL": "not a url"}, 2,
     "AWS_ENDPOINT_URL='not a url' is not an http(s) URL"),
    ("AWS_ENDPOINT_URL bad port", "-c {cfg} history -s staging", {"AWS_ENDPOINT_URL": "http://127.0.0.1:port"}, 2,
     "AWS_ENDPOINT_URL='http://127.0.0.1:port' is not an http(s) URL"),
    ("AWS_ENDPOINT_URL without scheme", "-c {cfg} history -s staging", {"AWS_ENDPOINT_URL": "127.0.0.1:5000"}, 2,
     "is not an http(s) URL"),
    ("PT_REGISTRY with a scheme", "-c {cfg} config show -s staging", {"PT_REGISTRY": "https://127.0.0.1:5055"}, 2,
     "PT_REGISTRY must be a registry host[:port] without a scheme (got 'https://127.0.0.1:5055'); write '127.0.0.1:5055'"),
    # usage errors are exit 2
    ("negative count", "-c {cfg} history -s staging -n -5", UNREACHABLE, 2, "Invalid value for '-n': -5 is not in the range 1<=x<=1000"),
    ("zero count", "-c {cfg} history -s staging -n 0", UNREACHABLE, 2, "Invalid value for '-n': 0 is not in the range 1<=x<=1000"),
    ("bad --region on the group", "-c {cfg} --region nowhere status -s staging", {}, 2,
     "Invalid value for '--region': 'nowhere' is not an AWS region name (like us-east-1 or eu-central-1)"),
    ("bad --region on a command", "-c {cfg} status -s staging --region US-EAST-1", {}, 2, "'US-EAST-1' is not an AWS region name"),
    ("bad PT_REGION", "-c {cfg} status -s staging", {"PT_REGION": "mars-1"}, 2, "'mars-1' is not an AWS region name"),
    ("bad --region of init", "init -C {tmp}/dir --region eu_west_1", {}, 2, "'eu_west_1' is not an AWS region name"),
    ("empty --stage on a command", "-c {cfg} status --stage=", UNREACHABLE, 2, "Invalid value for '--stage' / '-s': must not be empty"),
    ("empty --stage on the group", "-c {cfg} --stage= status", UNREACHABLE, 2, "Invalid value for '--stage' / '-s': must not be empty"),
    ("100 KB stage name", "-c {cfg} status -s " + "x" * 100_000, {}, 2, "error: unknown stage '" + "x" * 99 + "…(100002 characters)"),
    ("100 KB command name", "x" * 100_000, {}, 2, "error: unknown command '" + "x" * 99 + "…(100002 characters)"),
    ("100 KB choice", "-c {cfg} deploy -s staging --strategy " + "y" * 100_000, {}, 2, "Invalid value for '--strategy': '" + "y" * 99 + "…(100002 characters)"),
    ("unknown stage", "-c {cfg} status -s stagin", {}, 2, "unknown stage 'stagin'"),
    # report/export files are checked before any AWS call, like every other output path
    ("audit export -o parent missing", "-c {cfg} audit export --stage staging --format jsonl -o {tmp}/missing/a.jsonl",
     UNREACHABLE, 2, "Invalid value for '-o' / '--out': directory {tmp}/missing does not exist"),
    ("change-record -o under a file", "-c {cfg} change-record --stage staging -o {tmp}/file/cr.md", UNREACHABLE, 2,
     "Invalid value for '-o' / '--out': {tmp}/file is a file, so {tmp}/file/cr.md cannot be created under it"),
    # a scan over no time would read nothing and report clean
    ("logs scan --since 0s", "-c {cfg} logs scan -s staging --since 0s", UNREACHABLE, 2,
     "--since must be longer than 0s (got '0s'): a window of no time reads no log events"),
    ("logs archive --since 0", "-c {cfg} logs archive -s staging --to s3://b/p --since 0", UNREACHABLE, 2,
     "--since must be longer than 0s (got '0')"),
    # corrupt local state: missing is "not started", corrupt says so
    ("local state not JSON", "local status --dir {tmp}/state-bad", {}, 1,
     "{tmp}/state-bad/state.json is corrupt: not JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("local state not an object", "local status --dir {tmp}/state-list", {}, 1,
     "{tmp}/state-list/state.json is corrupt: expected a JSON object, got an array"),
    ("local state lacks fields", "local status --dir {tmp}/state-fields", {}, 1,
     "{tmp}/state-fields/state.json is corrupt: `moto` lacks a `endpoint` string"),
    ("local state is a directory", "local status --dir {tmp}/state-dir", {}, 1,
     "{tmp}/state-dir/state.json is a directory, expected pt's local state file"),
    ("local state not UTF-8", "local status --dir {tmp}/state-bin", {}, 1, "{tmp}/state-bin/state.json is corrupt: not UTF-8 text"),
]

# Python exception class names that must never reach a user.
EXCEPTION_NAMES = re.compile(r"\b(Traceback|[A-Z][A-Za-z]*(Error|Exception)|KeyError|StopIteration)\b")


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    (tmp_path / "log.txt").write_text("GET /predict 200 12ms\n")
    (tmp_path / "pii.txt").write_text("user alice@example.com logged in\n")
    for name, body in {"state-bad": b"{not json", "state-list": b"[]", "state-fields": b'{"moto": {"pid": 1}}',
                       "state-bin": b"\xff\xfe{"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.json").write_bytes(body)
    (tmp_path / "state-dir" / "state.json").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("name,argv,env,code,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(run_pt, monkeypatch, scratch, name, argv, env, code, fragment):
    def fill(s: str) -> str:
        return s.replace("{tmp}", str(scratch)).replace("{cfg}", str(CONTRACT_CONFIG))

    for var in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "PT_REGION", "PT_REGISTRY", "PT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, fill(v))
    r = run_pt(*fill(argv).split())
    assert r.exit_code == code, r
    assert fill(fragment) in r.stderr, r.stderr
    assert not EXCEPTION_NAMES.search(r.stderr + r.stdout), r.stderr
    assert "internal error" not in r.stderr
    assert len(r.stderr) < 2000, "a long value was echoed back"


def test_json_mode_error_for_a_bad_env_value_is_one_document(run_pt, monkeypatch):
    monkeypatch.setenv("PT_AWS_MAX_ATTEMPTS", "many")
    r = run_pt("--output", "json", "-c", CONTRACT_CONFIG, "status", "-s", "staging")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 2 and doc["message"].startswith("PT_AWS_MAX_ATTEMPTS='many'")


def test_env_values_are_read_when_used_not_at_import(pt_subprocess):
    """A bad PT_AWS_MAX_ATTEMPTS does not break commands that never build an AWS client."""
    r = pt_subprocess("config", "validate", "-c", CONTRACT_CONFIG,
                      env={"PT_AWS_MAX_ATTEMPTS": "abc", "AWS_ENDPOINT_URL": "not a url"})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_an_unexpected_file_error_is_translated_not_internal():
    """The safety net: any OSError with a path becomes one line naming it (exit 1)."""
    from pipeline_tools.core.errors import translate

    err = translate(NotADirectoryError(20, "Not a directory", "/tmp/f/x"))
    assert err is not None and err.message == "/tmp/f/x: a parent of this path is a file, not a directory"
    err = translate(PermissionError(13, "Permission denied", "/etc/shadow"))
    assert err.message == "/etc/shadow: permission denied" and err.exit_code == 1


@pytest.mark.parametrize("argv,env", [
    (["--output", "json", "-c", str(CONTRACT_CONFIG), "history", "-s", "staging", "-n", "-1"], {}),
    (["-c", str(CONTRACT_CONFIG), "history", "-s", "staging", "-n", "-1", "--output", "json"], {}),
    (["-c", str(CONTRACT_CONFIG), "--region", "nowhere", "status"], {"PT_OUTPUT": "json"}),
])
def test_json_mode_usage_error_is_one_document_on_stdout(run_pt, monkeypatch, argv, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r = run_pt(*argv)
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["error"] == "UsageError" and doc["exit_code"] == 2 and doc["message"].startswith("Invalid value for")
    assert r.stderr.startswith("error: Invalid value for")


def test_end_of_data_is_a_read_failure_not_aborted(capsys):
    """click re-raises an EOFError (e.g. from a truncated gzip) as Abort: pt reports a read error, exit 1."""
    import gzip

    import click

    from pipeline_tools import cli

    data = gzip.compress(b"line\n" * 1000)
    try:
        gzip.decompress(data[: len(data) // 2])
    except EOFError as eof:
        abort = click.exceptions.Abort()
        abort.__cause__ = eof
    assert cli._abort(abort, debug=False) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected end of data: Compressed file ended before the end-of-stream marker")
    assert "aborted" not in err and not EXCEPTION_NAMES.search(err)
    assert cli._abort(click.exceptions.Abort(), debug=False) == 130  # Ctrl-C/Ctrl-D at a prompt
    assert capsys.readouterr().err == "aborted\n"
