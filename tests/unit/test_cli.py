"""The CLI spine: version, help, lazy commands, one-line errors with exit codes, env options."""

from __future__ import annotations

import json

import pytest

from ..conftest import CONTRACT_CONFIG

TOOLKIT_REF = "acme/pipeline-tools@" + "a" * 40


def test_version(run_pt):
    from pipeline_tools import __version__

    r = run_pt("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"pt {__version__}"


def test_help_lists_registered_commands_with_short_help(run_pt):
    r = run_pt("--help")
    assert r.exit_code == 0
    assert "config" in r.stdout and "Validate pipeline.yml" in r.stdout
    assert "Exit codes: 0 ok, 1 failure, 2 usage/config error, 3 gate WAIT, 4 stage locked." in r.stdout


def test_every_available_command_imports_and_has_help(run_pt):
    from pipeline_tools.cli import available_commands

    for name in available_commands():
        r = run_pt(name, "--help")
        assert r.exit_code == 0, (name, r)
        assert "--config" in r.stdout and "--output" in r.stdout, name


def test_validate_ok(run_pt):
    r = run_pt("config", "validate", "--config", CONTRACT_CONFIG)
    assert r.exit_code == 0
    assert r.stdout.startswith(f"OK {CONTRACT_CONFIG}: project iris")


def test_validate_json(run_pt):
    r = run_pt("--output", "json", "config", "validate", "-c", CONTRACT_CONFIG)
    assert r.exit_code == 0
    assert r.json() == {"valid": True, "file": str(CONTRACT_CONFIG), "project": "iris", "images": ["model"],
                        "functions": ["predict", "batch-score"], "stages": ["staging", "prod"]}


def test_broken_file_prints_file_line_errors_exit_2_no_traceback(run_pt, tmp_path):
    bad = tmp_path / "pipeline.yml"
    bad.write_text(CONTRACT_CONFIG.read_text().replace("strategy: canary", "strategy: canery"))
    r = run_pt("config", "validate", "--config", bad)
    assert r.exit_code == 2
    first = r.stderr.splitlines()[0]
    assert first == (f"{bad}:30: stages.staging.deploy.strategy: must be one of all-at-once, canary, linear "
                     "(got 'canery')")
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert r.stderr.splitlines()[-1].startswith("hint: 1 problem in")


def test_json_mode_error_is_one_document_on_stdout(run_pt, tmp_path):
    r = run_pt("config", "validate", "--output", "json", "--config", tmp_path / "missing.yml")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["error"] == "ConfigError" and doc["exit_code"] == 2
    assert doc["message"] == f"{tmp_path / 'missing.yml'}: no such file"


def test_env_options(run_pt, monkeypatch):
    monkeypatch.setenv("PT_CONFIG", str(CONTRACT_CONFIG))
    monkeypatch.setenv("PT_OUTPUT", "json")
    r = run_pt("config", "validate")
    assert r.exit_code == 0 and r.json()["project"] == "iris"


def test_unknown_command_suggests(run_pt):
    r = run_pt("cofnig")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0] == "error: unknown command 'cofnig' (did you mean 'config'?)"
    assert "Traceback" not in r.stderr


def test_unknown_option_and_bad_choice(run_pt):
    r = run_pt("config", "validate", "--frobnicate")
    assert r.exit_code == 2 and "No such option '--frobnicate'" in r.stderr
    r = run_pt("--output", "yaml", "config", "validate")
    assert r.exit_code == 2 and "'yaml' is not one of 'human', 'json'" in r.stderr


def test_unknown_stage(run_pt):
    r = run_pt("config", "show", "--stage", "prd", "-c", CONTRACT_CONFIG)
    assert r.exit_code == 2
    assert r.stderr.splitlines() == ["error: unknown stage 'prd'", "hint: did you mean 'prod'?"]


def test_show_resolves_names_and_keeps_secret_refs(run_pt):
    r = run_pt("config", "show", "--stage", "prod", "-c", CONTRACT_CONFIG, "--output", "json")
    assert r.exit_code == 0
    data = r.json()
    assert data["stages"]["prod"]["functions"]["batch-score"] == "iris-prod-batch-score"
    assert data["stages"]["prod"]["gate"]["alarms"] == ["iris-prod-*"]
    assert data["notifications"]["slack_webhook"] == "ssm:/iris/slack-webhook"
    assert data["ledger_table"] == "iris-ledger"
    human = run_pt("config", "show", "-c", CONTRACT_CONFIG)
    assert "artifacts_bucket: iris-staging-artifacts" in human.stdout


def test_schema_validates_the_contract_example(run_pt, tmp_path):
    import jsonschema
    import yaml

    r = run_pt("config", "schema")
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    data = yaml.safe_load(CONTRACT_CONFIG.read_text())
    jsonschema.validate(data, schema)
    bad = dict(data, stages={"prod": {**data["stages"]["prod"], "deploy": {"strategy": "canery"}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    out = tmp_path / "s.json"
    assert run_pt("config", "schema", "-o", out).exit_code == 0
    assert json.loads(out.read_text()) == schema


def test_internal_errors_are_one_line_unless_pt_debug(run_pt, monkeypatch):
    import pipeline_tools.commands.config_cmd as cc

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cc, "json_schema", boom, raising=False)
    monkeypatch.setattr("pipeline_tools.core.config.json_schema", boom)
    r = run_pt("config", "schema")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == "error: internal error: RuntimeError: kaboom"
    assert "Traceback" not in r.stderr
    monkeypatch.setenv("PT_DEBUG", "1")
    r = run_pt("config", "schema")
    assert "Traceback" in r.stderr


def test_github_actions_error_annotation(run_pt, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    r = run_pt("config", "validate", "-c", tmp_path / "nope.yml")
    assert r.exit_code == 2
    assert f"::error::{tmp_path / 'nope.yml'}: no such file%0Ahint: " in r.stderr


def test_init_writes_files_and_refuses_to_overwrite(run_pt, tmp_path):
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF)
    assert r.exit_code == 0, r
    cfg_text = (tmp_path / "pipeline.yml").read_text()
    assert "project: demo" in cfg_text and "demo-staging-*" in cfg_text
    assert (tmp_path / "docker/model/Dockerfile").exists()
    assert any((tmp_path / ".github/workflows").iterdir())
    assert run_pt("config", "validate", "-c", tmp_path / "pipeline.yml").exit_code == 0
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF)
    assert r.exit_code == 2 and "already exist" in r.stderr and "--force" in r.stderr
    assert run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF, "--force").exit_code == 0


def test_init_dry_run_writes_nothing_and_rejects_bad_project(run_pt, tmp_path):
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF, "--dry-run",
               "--output", "json")
    assert r.exit_code == 0 and r.json()["dry_run"] is True
    assert not (tmp_path / "pipeline.yml").exists()
    r = run_pt("init", "-C", tmp_path, "--project", "Bad_Name")
    assert r.exit_code == 2 and "--project 'Bad_Name'" in r.stderr
