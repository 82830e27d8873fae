"""pipeline.yml checks of targets.stepfunctions / targets.batch: one line FILE:LINE, exit 2."""

from __future__ import annotations

import pytest

from pipeline_tools import cli
from pipeline_tools.core.config import load
from pipeline_tools.core.errors import ConfigError

BASE = """\
project: iris
region: us-east-1
images: {model: {}}
functions: {predict: {image: model}}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["iris-staging-*"]}}
targets:
"""
FLOW = '{"StartAt": "Score", "States": {"Score": {"Type": "Task", "Resource": "${Fn}", "End": true}}}\n'


def write(tmp_path, targets: str, definition: str | None = FLOW):
    if definition is not None:
        (tmp_path / "flow.json").write_text(definition)
    p = tmp_path / "pipeline.yml"
    p.write_text(BASE + targets)
    return p


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(path)
    assert e.value.exit_code == 2
    return e.value.problems


SFN = "  stepfunctions:\n    flow:\n      definition: flow.json\n      substitutions: {Fn: \"function:predict\"}\n"


def test_valid_targets_load(tmp_path):
    cfg = load(write(tmp_path, SFN + "  batch:\n    score: {image: model, vcpu: 0.5, memory: 4096, "
                                     "schedule: \"cron(0 3 * * ? *)\"}\n"))
    assert cfg.targets.stepfunctions["flow"].smoke_input is None
    assert cfg.targets.batch["score"].smoke is True


def test_missing_definition_file(tmp_path):
    (p,) = problems(write(tmp_path, SFN, definition=None))
    assert p.startswith(f"{tmp_path / 'pipeline.yml'}:10: targets.stepfunctions.flow.definition: "
                        "flow.json: no such file")


def test_definition_default_name_is_checked_too(tmp_path):
    (p,) = problems(write(tmp_path, "  stepfunctions:\n    flow: {substitutions: {Fn: x}}\n"))
    assert "targets.stepfunctions.flow: step-functions.json: no such file" in p


def test_invalid_json_names_definition_line_and_column(tmp_path):
    (p,) = problems(write(tmp_path, SFN, definition='{\n  "StartAt": "A",\n  "States": {\n}'))
    assert ":10: targets.stepfunctions.flow.definition: flow.json:4:2: invalid JSON" in p


def test_unknown_substitution_names_definition_line(tmp_path):
    text = ('{"StartAt": "A",\n "States": {"A": {"Type": "Task", "Resource": "${Fn}", "Comment": "${Who}", '
            '"End": true}}}')
    (p,) = problems(write(tmp_path, SFN, definition=text))
    assert "flow.json:2:" in p and "unknown substitution ${Who} (targets.stepfunctions.*.substitutions: Fn)" in p


def test_unknown_function_substitution(tmp_path):
    (p,) = problems(write(tmp_path, SFN.replace("function:predict", "function:predikt")))
    assert ":11: targets.stepfunctions.flow.substitutions.Fn: unknown function 'predikt' (functions: predict)" in p


@pytest.mark.parametrize(("job", "needle"), [
    ("{image: model, vcpu: 1, memory: 1024}", "targets.batch.score.memory: Fargate with 1 vCPU takes memory 2048–8192"),
    ("{image: model, vcpu: 3}", "targets.batch.score.vcpu: Fargate has no 3 vCPU size"),
    ("{image: modle}", "targets.batch.score.image: unknown image 'modle' (images: model)"),
    ("{image: model, schedule: \"cron(0 3 * * *)\"}", "targets.batch.score.schedule: schedule 'cron(0 3 * * *)': "
                                                      "cron needs 6 fields"),
    ("{image: model, schedule: \"rate(1 hours)\"}", "write rate(1 hour)"),
])
def test_bad_batch_targets(tmp_path, job, needle):
    (p,) = problems(write(tmp_path, f"  batch:\n    score: {job}\n"))
    assert needle in p and "pipeline.yml:9:" in p


def test_cli_reports_one_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, "  batch:\n    score: {image: model, vcpu: 2, memory: 2048}\n")
    code = cli.main(["config", "validate", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "targets.batch.score.memory: Fargate with 2 vCPU takes memory 4096–16384" in err


def test_cli_definition_problem_is_one_line(tmp_path, capsys):
    path = write(tmp_path, SFN, definition='{"StartAt": "A", "States": {"A": {"Type": "Pass", "Comment": "${X}"}}}')
    code = cli.main(["config", "validate", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if "unknown substitution" in ln]
    assert "pipeline.yml:10: targets.stepfunctions.flow.definition: flow.json:1:" in line


def test_targets_refuse_a_stage_outside_their_stages(tmp_path):
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.targets import TargetEnv
    from pipeline_tools.targets.batch import BatchJobTarget
    from pipeline_tools.targets.stepfunctions import StateMachineTarget

    extra = ("      stages: [prod]\n  batch:\n    score: {image: model, stages: [prod]}\n")
    path = write(tmp_path, SFN + extra)
    (problem,) = problems(path)[:1]
    assert "targets.stepfunctions.flow.stages[0]: unknown stage 'prod' (stages: staging)" in problem
    path.write_text(path.read_text().replace("stages:\n", "stages:\n  prod: {account: \"222222222222\", "
                                             "branch: main, gate: {alarms: [x]}}\n", 1))
    cfg = load(path)
    env = TargetEnv(client=lambda _s: None, clock=lambda: 0.0, sleep=lambda _s: None)
    with pytest.raises(UsageError, match="stage staging has no state machine 'flow'"):
        StateMachineTarget(cfg, "staging", "flow", env)
    with pytest.raises(UsageError, match="stage staging has no batch job 'score'"):
        BatchJobTarget(cfg, "staging", "score", env)
    from pipeline_tools.targets import batch, stepfunctions

    assert batch.names(cfg, "staging") == [] and stepfunctions.names(cfg, "staging") == []
