"""pt --debug: a wire log of AWS calls with secrets redacted (moto server)."""

from __future__ import annotations

import pytest

from pipeline_tools.core import wirelog


def test_wire_log_names_calls_status_and_hides_secret_values(aws):
    lines: list[str] = []
    ssm = aws.client("ssm")
    wirelog.attach(ssm, lines.append)
    ssm.put_parameter(Name="/iris/token", Value="hunter2-very-secret", Type="SecureString")
    with pytest.raises(ssm.exceptions.ParameterNotFound):
        ssm.get_parameter(Name="/iris/missing")
    text = "\n".join(lines)
    assert "aws> ssm.PutParameter" in text and "aws< ssm.PutParameter 200" in text
    assert "aws< ssm.GetParameter 400" in text and "ParameterNotFound" in text
    assert "hunter2" not in text and '"Value": "hunter2' not in text


def test_secret_named_keys_and_patterns_are_redacted():
    shown = wirelog.redact_params({"SecretString": "x" * 30, "Name": "n",
                                   "Environment": {"Variables": {"DB_PASSWORD": "pw123456", "URL":
                                                                 "https://hooks.slack.com/services/T0/B0/abc"}},
                                   "ZipFile": b"\0" * 10})
    assert shown["SecretString"] == "****" and shown["Name"] == "n"
    assert shown["Environment"]["Variables"]["DB_PASSWORD"] == "****"
    assert "abc" not in shown["Environment"]["Variables"]["URL"]
    assert shown["ZipFile"] == "<10 bytes>"


def test_debug_option_turns_the_wire_log_on(aws, tmp_path, monkeypatch):
    import subprocess
    import sys

    cfg = tmp_path / "pipeline.yml"
    cfg.write_text('project: iris\nregion: us-east-1\nimages: {model: {}}\nstages:\n'
                   '  dev: {account: "123456789012", branch: dev, gate: {alarms: ["iris-dev-*"]}}\n')
    monkeypatch.delenv("PT_DEBUG", raising=False)
    r = subprocess.run([sys.executable, "-m", "pipeline_tools.cli", "--debug", "history", "--stage", "dev",
                        "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert "aws> " in r.stderr and "aws< " in r.stderr, r.stderr
    quiet = subprocess.run([sys.executable, "-m", "pipeline_tools.cli", "history", "--stage", "dev",
                            "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert "aws> " not in quiet.stderr
