"""Bad input around promotion that is caught before any AWS call: malformed windows in
pipeline.yml (file:line errors), bad durations and missing options on the CLI."""

from __future__ import annotations

import pytest

from pipeline_tools.core import config as config_mod
from pipeline_tools.core.errors import ConfigError

BASE = """\
project: iris
region: us-east-1
images: {{model: {{context: .}}}}
stages:
  staging: {{account: "111111111111", branch: integration, gate: {{alarms: ["iris-staging-*"]}}}}
  prod:
    account: "222222222222"
    branch: master
    promote_from: staging
    window: {window}
    gate: {{alarms: ["iris-prod-*"]}}
"""


@pytest.mark.parametrize("window,msg", [
    ('{days: [mon], hours: "25:00-03:00"}', "must be HH:MM-HH:MM"),
    ('{days: [mon], hours: "02:00-02:00"}', "window is empty"),
    ('{days: [monday], hours: "02:00-05:00"}', "must be one of"),
    ('{days: [], hours: "02:00-05:00"}', "must not be empty"),
    ('{days: [mon], hours: "02:00-05:00", timezone: Mars/Olympus}', "unknown timezone"),
])
def test_malformed_window_is_a_config_error_with_line(window, msg):
    with pytest.raises(ConfigError) as e:
        config_mod.parse(BASE.format(window=window), "pipeline.yml")
    assert any(line.startswith("pipeline.yml:10: stages.prod.window") and msg in line for line in e.value.lines()), \
        e.value.lines()


def test_cli_rejects_bad_duration_and_missing_options(run_pt, tmp_path):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(BASE.format(window='{days: [mon], hours: "02:00-05:00"}'))
    r = run_pt("gate", "--config", cfg, "--stage", "staging", "--bake", "ten minutes")
    assert r.exit_code == 2 and "duration" in r.stderr
    r = run_pt("promote", "--config", cfg)
    assert r.exit_code == 2 and "--to" in r.stderr
    r = run_pt("gate", "--config", cfg, "--stage", "nope")
    assert r.exit_code == 2 and "unknown stage 'nope'" in r.stderr
    r = run_pt("approvals", "sync-codepipeline", "--config", cfg, "--stage", "prod")
    assert r.exit_code == 2 and "--pipeline" in r.stderr
    r = run_pt("gate", "--config", cfg, "--stage", "staging", "--codepipeline-approve")
    assert r.exit_code == 2 and "CODEBUILD_INITIATOR" in r.stderr


def test_gate_fails_closed_when_aws_is_unreachable(run_pt, tmp_path, monkeypatch):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(BASE.format(window='{days: [mon], hours: "02:00-05:00"}'))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PT_AWS_MAX_ATTEMPTS", "1")
    out = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    r = run_pt("gate", "--config", cfg, "--stage", "staging", "--output", "json")
    assert r.exit_code == 1, r
    data = r.json()
    assert data["status"] == "FAIL" and "cannot evaluate the gate" in data["explanation"]
    assert "fails closed" in data["explanation"] and "gate=FAIL" in out.read_text()
