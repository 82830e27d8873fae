"""Bad service inputs are caught when the config loads (before any synth): one line with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline_tools.core.config import load
from pipeline_tools.core.errors import ConfigError

BASE = {
    "project": "iris", "region": "us-east-1", "images": {"model": {}},
    "functions": {"predict": {"image": "model"}},
    "stages": {"staging": {"account": "111111111111", "branch": "main",
                           "gate": {"alarms": ["iris-staging-*"]}}},
}


def _write(tmp_path: Path, targets: dict) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump({**BASE, "targets": targets}, sort_keys=False))
    return path


def test_existing_definition_and_valid_schedule_load(tmp_path):
    (tmp_path / "flow.json").write_text("{}")
    cfg = load(_write(tmp_path, {"stepfunctions": {"flow": {"definition": "flow.json"}},
                                 "batch": {"nightly": {"image": "model", "schedule": "cron(0 3 * * ? *)"}}}))
    assert cfg.targets.batch["nightly"].schedule == "cron(0 3 * * ? *)"


def test_missing_definition_is_one_line_with_file_and_line(tmp_path):
    path = _write(tmp_path, {"stepfunctions": {"flow": {"definition": "nope/flow.json"}}})
    with pytest.raises(ConfigError) as e:
        load(path)
    lines = e.value.lines()
    assert len(lines) == 1 and e.value.exit_code == 2
    line_no = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "definition:" in ln)
    assert lines[0].startswith(f"{path}:{line_no}: targets.stepfunctions.flow.definition: definition file "
                               "nope/flow.json does not exist")


def test_default_definition_missing_is_reported_on_the_target(tmp_path):
    path = _write(tmp_path, {"stepfunctions": {"flow": {"type": "EXPRESS"}}})
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "targets.stepfunctions.flow: definition file step-functions.json does not exist" in e.value.lines()[0]


def test_definition_that_is_a_directory_is_refused(tmp_path):
    (tmp_path / "flows").mkdir()
    with pytest.raises(ConfigError) as e:
        load(_write(tmp_path, {"stepfunctions": {"flow": {"definition": "flows"}}}))
    assert "flows is a directory" in e.value.lines()[0]


def test_schedule_aws_rejects_is_one_line(tmp_path):
    path = _write(tmp_path, {"batch": {"nightly": {"image": "model", "schedule": "cron(0 3 * * *)"}}})
    with pytest.raises(ConfigError) as e:
        load(path)
    (line,) = e.value.lines()
    assert line.startswith(f"{path}:") and "targets.batch.nightly.schedule: cron(0 3 * * *): needs 6 fields" in line
