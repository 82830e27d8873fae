"""The real CDK CLI (`npx cdk synth`, pinned in package.json) and cdk/app.py's error path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import CONNECTION, ROOT, need_node

pytestmark = pytest.mark.cdk


def cdk_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PT_CONFIG", None)
    env.update({"CDK_DISABLE_CLI_TELEMETRY": "true", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20,21,22,23"})
    return env


@pytest.mark.slow
def test_npx_cdk_synth_from_the_repository_root(tmp_path):
    npx = need_node()
    out = tmp_path / "cdk.out"
    start = time.monotonic()
    proc = subprocess.run(
        [npx, "--no-install", "cdk", "synth", "--quiet", "--no-notices", "--no-version-reporting",
         "--output", str(out), "-c", "github_repository=acme/iris", "-c", f"connection_arn={CONNECTION}",
         "-c", "stages=prod"],
        cwd=ROOT, env=cdk_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"\n[cdk] npx cdk synth (prod stacks of examples/iris/pipeline.yml): {elapsed:.1f}s")
    manifest = json.loads((out / "manifest.json").read_text())
    stacks = sorted(k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack")
    # cdk.json's default_config is examples/iris/pipeline.yml; `-c stages=prod` keeps this test to the
    # prod stage's stacks (the in-process fixture synthesizes all of them).
    assert stacks == ["iris-github-oidc-222222222222", "iris-prod-dashboard", "iris-prod-pipeline", "iris-prod-stage"]
    template = json.loads((out / "iris-prod-stage.template.json").read_text())
    fns = sorted(r["Properties"]["FunctionName"] for r in template["Resources"].values()
                 if r["Type"] == "AWS::Lambda::Function")
    assert fns == ["iris-prod-batch-score", "iris-prod-predict"]
    assert "CheckBootstrapVersion" in template["Rules"]  # the real (bootstrapped) synthesizer
    env = manifest["artifacts"]["iris-prod-stage"]["environment"]
    assert env == "aws://222222222222/us-east-1"
    assert "Traceback" not in proc.stderr
    # No validation findings (cdk/app.py adds cdk-nag as a validation plugin; a finding fails the synth).
    report = json.loads((out / "validation-report.json").read_text())
    assert [v for r in report["pluginReports"] for v in r.get("violations", [])] == []


def run_app(tmp_path, config_text: str | None, *args: str, name: str = "pipeline.yml"):
    if config_text is not None:
        (tmp_path / name).write_text(config_text)
    env = cdk_env()
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    return subprocess.run([sys.executable, str(ROOT / "cdk" / "app.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


BAD = """\
project: Iris
region: us-east-1
images:
  model: {context: .}
functions:
  predict: {image: modle, memory: 64}
stages:
  staging: {account: "1234", branch: integration}
"""


def test_bad_config_gives_one_line_errors_and_exit_2(tmp_path):
    proc = run_app(tmp_path, BAD)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("b'", "!!"))]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert errors and all(ln.startswith("error: pipeline.yml:") for ln in errors)
    text = "\n".join(errors)
    assert "pipeline.yml:1: project:" in text
    assert "pipeline.yml:6: functions.predict.image: unknown image 'modle' (did you mean 'model'?)" in text
    assert "pipeline.yml:8: stages.staging.account:" in text
    assert any(ln.startswith("hint: ") for ln in lines)
    assert "Traceback" not in proc.stderr and "jsii" not in proc.stderr.lower()


def test_missing_config_and_unknown_stage_are_usage_errors(tmp_path):
    proc = run_app(tmp_path, None)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "error: pipeline.yml: no such file"
    (tmp_path / "pipeline.yml").write_text((ROOT / "tests" / "data" / "pipeline.example.yml").read_text())
    # The CDK CLI hands `-c` context to the app in CDK_CONTEXT_JSON; do the same here.
    env_proc = subprocess.run([sys.executable, str(ROOT / "cdk" / "app.py")], cwd=tmp_path,
                              env={**cdk_env(), "CDK_OUTDIR": str(tmp_path / "out"),
                                   "CDK_CONTEXT_JSON": json.dumps({"stages": "stagin"})},
                              capture_output=True, text=True, timeout=120)
    assert env_proc.returncode == 2, env_proc.stderr
    assert "error: unknown stage 'stagin'" in env_proc.stderr
    assert "did you mean 'staging'?" in env_proc.stderr
    assert "Traceback" not in env_proc.stderr


def test_cdk_section_is_validated_like_the_rest_of_the_config():
    from pipeline_tools.core.config import parse
    from pipeline_tools.core.errors import ConfigError

    text = (ROOT / "tests" / "data" / "pipeline.example.yml").read_text()
    bad = text + "\ncdk:\n  github_repository: not-a-repo\n  connection_arn: arn:aws:s3:::bucket\n  colour: red\n"
    with pytest.raises(ConfigError) as exc:
        parse(bad, "pipeline.yml")
    problems = exc.value.problems
    n = text.count("\n")
    assert any(p.startswith(f"pipeline.yml:{n + 3}: cdk.github_repository: must be of pattern") for p in problems)
    assert any(p.startswith(f"pipeline.yml:{n + 4}: cdk.connection_arn:") for p in problems)
    assert any(p.startswith(f"pipeline.yml:{n + 5}: cdk.colour: unknown key") for p in problems)
