# ruff: noqa: E501  (the table of bad-config cases reads best one case per line)
"""pipeline.yml loading: the contract example loads; every mistake is one FILE:LINE: PATH: line."""

from __future__ import annotations

import os
import re
import textwrap

import pytest

from pipeline_tools.core.config import format_duration, load, parse, parse_duration
from pipeline_tools.core.errors import ConfigError

from ..conftest import CONTRACT_CONFIG, EXAMPLE_CONFIG

GOOD = textwrap.dedent("""\
    project: iris
    region: us-east-1
    images:
      model:
        context: examples/iris
        dockerfile: docker/model/Dockerfile
        build_args: {MODEL_DIR: model}
    functions:
      predict:
        image: model
        handler: app.handler
        memory: 1024
        timeout: 30
    stages:
      staging:
        account: "111111111111"
        branch: integration
        deploy:
          strategy: canary
          percent: 10
          interval: 60s
          bake: 300s
        gate:
          alarms: ["iris-staging-*"]
          insufficient_data: fail
          poll: 5s
      prod:
        account: "222222222222"
        branch: master
        promote_from: staging
        deploy: {strategy: linear, percent: 25, interval: 120s, bake: 600s}
        approvals:
          required: 2
          two_person_rule: true
        window:
          days: [mon, tue, wed, thu]
          hours: "02:00-05:00"
          timezone: UTC
        gate: {alarms: ["iris-prod-*"]}
    notifications:
      slack_webhook: ssm:/iris/slack-webhook
      teams_webhook: env:TEAMS_WEBHOOK_URL
      sns: true
    artifacts:
      bucket: "{project}-{stage}-artifacts"
      paths: [outputs/]
    """)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse(text, "pipeline.yml")
    assert e.value.exit_code == 2
    return e.value.lines()


def sub(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_good_config_loads_with_defaults_and_derived_names():
    cfg = parse(GOOD)
    assert cfg.stages["staging"].deploy.interval == 60.0
    assert cfg.stages["prod"].deploy.bake == 600.0
    assert cfg.stages["staging"].gate.preexisting_alarm == "block"
    assert cfg.function_name("prod", "predict") == "iris-prod-predict"
    assert cfg.ecr_repository("model") == "iris-model"
    assert cfg.bucket("staging") == "iris-staging-artifacts"
    assert cfg.ledger_table() == "iris-ledger"
    assert cfg.sns_topic("prod") == "iris-prod-events"
    assert cfg.is_protected("prod") and not cfg.is_protected("staging")
    assert cfg.promotion_chain("prod") == ["staging", "prod"]


def test_contract_example_and_demo_example_load():
    assert load(CONTRACT_CONFIG).project == "iris"
    cfg = load(EXAMPLE_CONFIG)
    assert set(cfg.stages) == {"staging", "prod"}
    assert cfg.functions_for_image("model").keys() == {"predict", "batch-score"}


def test_registry_resolution_order(monkeypatch):
    cfg = parse(GOOD)
    monkeypatch.delenv("PT_REGISTRY", raising=False)
    assert cfg.registry_for("prod") == "222222222222.dkr.ecr.us-east-1.amazonaws.com"
    cfg2 = parse(GOOD.replace("region: us-east-1\n", "region: us-east-1\nregistry: 127.0.0.1:5055\n", 1))
    assert cfg2.registry_for("prod") == "127.0.0.1:5055"
    monkeypatch.setenv("PT_REGISTRY", "localhost:9999")
    assert cfg.registry_for("prod") == "localhost:9999"


@pytest.mark.parametrize("text,value", [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400),
                                        ("0s", 0), (45, 45), (1.5, 1.5), ("2.5s", 2.5)])
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["", "5", "5x", "m5", "-5s", True, None, [], "1d"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration():
    assert [format_duration(s) for s in (0, 59, 60, 3600, 5430)] == ["0s", "59s", "1m", "1h", "1h30m30s"]


LINE = re.compile(r"^pipeline\.yml:(\d+): (\S*): (.+)$")

# (mutated text, expected line, expected path, expected message regex)
CASES = [
    ("unknown top-level key", sub("project: iris", "projet: iris"), 1, "projet",
     r"unknown key \(did you mean 'project'\?\)"),
    ("unknown nested key", sub("    memory: 1024", "    memroy: 1024"), 12, "functions.predict.memroy",
     r"unknown key \(did you mean 'memory'\?\)"),
    ("wrong type", sub("timeout: 30", "timeout: thirty"), 13, "functions.predict.timeout",
     r"must be a whole number \(got 'thirty'\)"),
    ("bad literal", sub("strategy: canary", "strategy: canery"), 19, "stages.staging.deploy.strategy",
     r"must be one of all-at-once, canary, linear \(got 'canery'\)"),
    ("bad duration", sub("interval: 60s", "interval: 60x"), 21, "stages.staging.deploy.interval",
     r"must be a duration like 30s, 5m or 1h \(got '60x'\)"),
    ("percent too big", sub("percent: 25", "percent: 250"), 31, "stages.prod.deploy.percent",
     r"must be ≤ 99 \(got 250\)"),
    ("percent zero", sub("percent: 10", "percent: 0"), 20, "stages.staging.deploy.percent",
     r"must be ≥ 1 \(got 0\)"),
    ("canary without percent", sub("      percent: 10\n", ""), 18, "stages.staging.deploy",
     r"strategy canary needs `percent` \(1-99\)"),
    ("bad window hours", sub('hours: "02:00-05:00"', 'hours: "2-5"'), 37, "stages.prod.window.hours",
     r"must be HH:MM-HH:MM, e.g. 02:00-05:00 \(got '2-5'\)"),
    ("window hours out of range", sub('hours: "02:00-05:00"', 'hours: "02:00-25:00"'), 37, "stages.prod.window.hours", r"must be HH:MM-HH:MM"),
    ("empty window", sub('hours: "02:00-05:00"', 'hours: "02:00-02:00"'), 37, "stages.prod.window.hours",
     r"window is empty"),
    ("bad day", sub("days: [mon, tue, wed, thu]", "days: [mon, tuesday]"), 36, "stages.prod.window.days[1]",
     r"must be one of mon, tue, wed, thu, fri, sat, sun \(got 'tuesday'\)"),
    ("bad timezone", sub("timezone: UTC", "timezone: Mars/Olympus"), 38, "stages.prod.window.timezone",
     r"unknown timezone 'Mars/Olympus'"),
    ("unknown image", sub("image: model", "image: modle"), 10, "functions.predict.image",
     r"unknown image 'modle' \(did you mean 'model'\?\)"),
    ("unknown promote_from", sub("promote_from: staging", "promote_from: stagin"), 30, "stages.prod.promote_from", r"unknown stage 'stagin' \(did you mean 'staging'\?\)"),
    ("self promote", sub("promote_from: staging", "promote_from: prod"), 30, "stages.prod.promote_from",
     r"a stage cannot promote from itself"),
    ("cycle", sub("    branch: integration\n", "    branch: integration\n    promote_from: prod\n"),
     None, None, r"promote_from forms a cycle: (staging <- prod <- staging|prod <- staging <- prod)"),
    ("duplicate branch", sub("branch: master", "branch: integration"), 29, "stages.prod.branch",
     r"branch 'integration' is already used by stage staging"),
    ("literal slack url", sub("ssm:/iris/slack-webhook", "https://hooks.slack.com/services/T0/B0/XYZ"), 41, "notifications.slack_webhook", r"looks like a literal secret; store it in SSM"),
    ("literal teams token", sub("env:TEAMS_WEBHOOK_URL", "abcdefabcdefabcdefabcdef12345"), 42, "notifications.teams_webhook", r"looks like a literal secret"),
    ("bad secret ref", sub("env:TEAMS_WEBHOOK_URL", "vault:x"), 42, "notifications.teams_webhook",
     r"must be a reference ssm:NAME or env:NAME \(got 'vault:x'\)"),
    ("account not 12 digits", sub('"222222222222"', '"2222"'), 28, "stages.prod.account",
     r"must be a 12-digit AWS account id"),
    ("bad project name", sub("project: iris", "project: Iris_Service"), 1, "project",
     r"must be lowercase letters, digits and dashes"),
    ("bad region", sub("region: us-east-1", "region: useast"), 2, "region", r"must be an AWS region"),
    ("missing required key", sub("    branch: master\n", ""), 27, "stages.prod.branch",
     r"required key is missing"),
    ("images empty", sub("images:\n  model:\n    context: examples/iris\n    dockerfile: docker/model/Dockerfile\n"
                          "    build_args: {MODEL_DIR: model}\n", "images: {}\n"), None, "images", r"must not be empty"),
    ("stage not a mapping", sub("""  prod:
    account: "222222222222\"""", """  prod: [1, 2]
  prod2:
    account: "222222222222\""""), None, "stages.prod", r"must be a mapping \(got list\)"),
    ("bool for string", sub("handler: app.handler", "handler: [a, b]"), 11, "functions.predict.handler",
     r"must be a string \(got list"),
    ("insufficient_data policy", sub("insufficient_data: fail", "insufficient_data: maybe"), 25, "stages.staging.gate.insufficient_data", r"must be one of fail, pass, wait \(got 'maybe'\)"),
    ("star inside alarm prefix", sub('alarms: ["iris-staging-*"]', 'alarms: ["iris-*-errors"]'), 24, "stages.staging.gate.alarms[0]", r"'\*' is allowed only at the end"),
    ("unknown bucket placeholder", sub('"{project}-{stage}-artifacts"', '"{project}-{env}-artifacts"'), 45, "artifacts.bucket", r"unknown placeholder \{env\}"),
    ("memory too small", sub("memory: 1024", "memory: 64"), 12, "functions.predict.memory",
     r"must be ≥ 128 \(got 64\)"),
    ("duplicate key", sub("    memory: 1024\n", "    memory: 1024\n    memory: 2048\n"), 13, "functions.predict.memory", r"duplicate key 'memory' \(first on line 12\)"),
    ("approvals required zero", sub("required: 2", "required: 0"), 33, "stages.prod.approvals.required",
     r"must be ≥ 1 \(got 0\)"),
    ("bool type", sub("two_person_rule: true", "two_person_rule: perhaps"), 34, "stages.prod.approvals.two_person_rule", r"must be true or false \(got 'perhaps'\)"),
    # a gate with nothing to watch passes anything: a config error unless the stage opts out
    ("empty gate alarms, canary", sub('alarms: ["iris-staging-*"]', "alarms: []"), 24, "stages.staging.gate.alarms",
     r"strategy canary shifts traffic step by step on alarms, but the stage has none to watch; .*"
     r"stages\.staging\.gate\.alarms .*allow_no_alarms: true"),
    ("no gate, linear", sub('    gate: {alarms: ["iris-prod-*"]}\n', ""), 27, "stages.prod",
     r"strategy linear shifts traffic .* none to watch"),
    ("gate without alarms key", sub('gate: {alarms: ["iris-prod-*"]}', "gate: {poll: 5s}"), 39, "stages.prod.gate",
     r"none to watch"),
    ("empty gate, all-at-once", sub("strategy: linear, percent: 25, interval: 120s, ", "").replace(
        'gate: {alarms: ["iris-prod-*"]}', "gate: {alarms: []}"), 39, "stages.prod.gate.alarms",
     r"no alarms to watch: the gate would pass anything"),
    ("allow_no_alarms with alarms", sub('gate: {alarms: ["iris-prod-*"]}',
                                        'gate: {alarms: ["iris-prod-*"], allow_no_alarms: true}'), 39,
     "stages.prod.gate.allow_no_alarms", r"contradicts the alarms listed"),
    ("allow_no_alarms not a bool", sub('gate: {alarms: ["iris-prod-*"]}', "gate: {alarms: [], allow_no_alarms: maybe}"),
     39, "stages.prod.gate.allow_no_alarms", r"must be true or false"),
]


@pytest.mark.parametrize("name,text,line,path,message", CASES, ids=[c[0] for c in CASES])
def test_bad_config_gives_file_line_path_message(name, text, line, path, message):
    lines = problems(text)
    matching = [ln for ln in lines if re.search(message, ln)]
    assert matching, lines
    m = LINE.match(matching[0])
    assert m, f"not FILE:LINE: PATH: MESSAGE: {matching[0]!r}"
    if line is not None:
        assert int(m[1]) == line, matching[0]
    if path is not None:
        assert m[2] == path, matching[0]


def test_all_errors_of_a_file_are_reported_together_sorted_by_line():
    text = sub("strategy: canary", "strategy: canery", sub("image: model", "image: nope", sub(
        "project: iris", "projet: iris")))
    lines = problems(text)
    assert len(lines) >= 3
    nums = [int(LINE.match(ln)[1]) for ln in lines]
    assert nums == sorted(nums)


@pytest.mark.parametrize("text,expected", [
    ("", r"^pipeline\.yml:1: file is empty"),
    ("# only a comment\n\n", r"^pipeline\.yml:1: file is empty"),
    ("- a\n- b\n", r"^pipeline\.yml:1: top level must be a mapping of keys \(got list\)$"),
    ("just a string\n", r"^pipeline\.yml:1: top level must be a mapping of keys \(got string\)$"),
    ("project: iris\n  region: [x\n", r"^pipeline\.yml:2: invalid YAML: .+ \(column \d+\)$"),
    ("project: iris\nimages:\n\tmodel: {}\n", r"^pipeline\.yml:3: tab character in indentation: YAML needs spaces$"),
    ("project: iris\nregion: {a: 1\n", r"^pipeline\.yml:\d+: invalid YAML"),
])
def test_malformed_files(text, expected):
    lines = problems(text)
    assert len(lines) == 1 and re.match(expected, lines[0]), lines


def test_missing_file_directory_unreadable_and_binary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load()
    assert e.value.lines() == ["pipeline.yml: no such file"] and "pt init" in e.value.hint
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(ConfigError) as e:
        load("dir.yml")
    assert e.value.lines() == ["dir.yml: is a directory, expected a YAML file"]
    f = tmp_path / "locked.yml"
    f.write_text(GOOD)
    f.chmod(0)
    if os.geteuid() != 0:  # root reads anything; the message is checked through a stub below
        with pytest.raises(ConfigError, match="permission denied"):
            load(str(f))
    (tmp_path / "bin.yml").write_bytes(b"project: iris\nregion: \xff\xfe\n")
    with pytest.raises(ConfigError) as e:
        load("bin.yml")
    assert e.value.lines() == ["bin.yml:2: not UTF-8 text"]


def test_unreadable_file_message(tmp_path, monkeypatch):
    from pathlib import Path

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(ConfigError) as e:
        load(str(tmp_path / "x.yml"))
    assert e.value.lines() == [f"{tmp_path / 'x.yml'}: permission denied"]


def test_pt_config_env_is_used(tmp_path, monkeypatch):
    (tmp_path / "other.yml").write_text(GOOD)
    monkeypatch.setenv("PT_CONFIG", str(tmp_path / "other.yml"))
    assert load().project == "iris"


def test_resolved_keeps_secret_references_and_expands_templates():
    data = parse(GOOD).resolved("prod")
    assert list(data["stages"]) == ["prod"]
    assert data["stages"]["prod"]["artifacts_bucket"] == "iris-prod-artifacts"
    assert data["stages"]["prod"]["functions"] == {"predict": "iris-prod-predict"}
    assert data["notifications"]["slack_webhook"] == "ssm:/iris/slack-webhook"


def test_empty_gate_is_allowed_only_explicitly_and_then_reaches_the_policy():
    from pipeline_tools.release.gate import GatePolicy

    cfg = parse(sub('gate: {alarms: ["iris-prod-*"]}', "gate: {alarms: [], allow_no_alarms: true}"))
    assert cfg.stages["prod"].gate.allow_no_alarms is True
    assert GatePolicy.from_config(cfg, "prod") == GatePolicy((), "fail", "block", 5.0, True)
    assert GatePolicy.from_config(cfg, "staging").allow_no_alarms is False


def test_pt_config_validate_rejects_an_empty_gate_with_file_line(run_pt, tmp_path):
    f = tmp_path / "pipeline.yml"
    f.write_text(sub('alarms: ["iris-staging-*"]', "alarms: []"))
    r = run_pt("config", "validate", "--config", f)
    assert r.exit_code == 2, r
    assert f"{f}:24: stages.staging.gate.alarms: strategy canary" in r.stderr
    assert "Traceback" not in r.stderr
