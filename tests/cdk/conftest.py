"""Fixtures for the CDK tests: each app is synthesized ONCE per session (jsii start-up and synth
cost seconds), and the tests read the resulting templates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "tests" / "data" / "pipeline.example.yml"
REPOSITORY = "acme/iris-service"
CONNECTION = "arn:aws:codestar-connections:us-east-1:111111111111:connection/0c5e6f1a-1111-2222-3333-444455556666"
DIGEST = "sha256:" + "ab" * 32

from pipeline_tools.infra.stacks import silence_node_warnings  # noqa: E402

silence_node_warnings()
if os.environ.get("CI") == "true":
    import aws_cdk  # noqa: F401  (CI must not pass by skipping: the [cdk] extra is required there)
else:
    pytest.importorskip("aws_cdk", reason="needs the [cdk] extra (aws-cdk-lib, constructs, cdk-nag)")


def base_config() -> dict:
    """The contract example plus what the stacks read: a user-defined alarm and the cdk: section."""
    data = yaml.safe_load(CONTRACT.read_text())
    data["functions"]["predict"]["alarms"] = [
        {"name": "latency-p90", "metric": "Duration", "statistic": "p90", "threshold": 2000, "comparison": "gt",
         "period": "1m", "evaluation_periods": 3},
    ]
    data["cdk"] = {"github_repository": REPOSITORY, "connection_arn": CONNECTION}
    return data


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Synth:
    outdir: Path
    templates: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0
    report: dict | None = None
    acknowledgments: dict[str, dict[str, str]] = field(default_factory=dict)  # construct path -> {rule: reason}

    def template(self, name: str) -> dict:
        return self.templates[name]


def synth_app(cfg_path: Path, outdir: Path, *, nag: bool, image_digests: dict | None = None) -> Synth:
    from pipeline_tools.infra.stacks import FEATURE_FLAGS, build_app, silence_node_warnings

    silence_node_warnings()
    import aws_cdk as cdk

    from pipeline_tools.core.config import load

    start = time.monotonic()
    cfg = load(cfg_path)
    app = cdk.App(context=FEATURE_FLAGS, outdir=str(outdir), analytics_reporting=False)
    if nag:
        from cdk_nag import AwsSolutionsChecks

        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stacks = build_app(app, cfg, image_digests=image_digests)
    assembly = app.synth()
    out = Synth(outdir=outdir, seconds=time.monotonic() - start)
    for name in stacks:
        out.templates[name] = assembly.get_stack_by_name(name).template
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    for node in app.node.find_all():
        for entry in node.node.metadata:
            if entry.type == key and isinstance(entry.data, dict):
                out.acknowledgments.setdefault(node.node.path, {}).update(entry.data)
    report = outdir / "validation-report.json"
    out.report = json.loads(report.read_text()) if report.exists() else None
    return out


@pytest.fixture(scope="session")
def cdk_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("cdkcfg") / "pipeline.yml", base_config())


@pytest.fixture(scope="session")
def synthesized(cdk_config, tmp_path_factory) -> Synth:
    """Every stack of the base config, with cdk-nag AwsSolutions as a validation plugin."""
    s = synth_app(cdk_config, tmp_path_factory.mktemp("cdk.out"), nag=True, image_digests={"model": DIGEST})
    print(f"\n[cdk] synth of {len(s.templates)} stacks with cdk-nag: {s.seconds:.1f}s")
    return s


def cfn_lint(*templates: Path | str) -> list[str]:
    """cfn-lint's findings on the templates (as the CLI's `--ignore-checks W3005`), one string each.

    Run in this process through cfnlint's API: importing cfn-lint and loading its rules and schemas costs
    ~3 s of CPU, paid once per session here instead of once per check in a `python -m cfnlint` subprocess.
    The same rules, the same default regions, the same findings (tests/cdk/test_cdk_checks.py shows a
    finding comes back)."""
    from cfnlint.api import ManualArgs, lint_by_config

    return [str(m) for m in lint_by_config(ManualArgs(templates=[str(t) for t in templates],
                                                      ignore_checks=["W3005"]))]


def need_node() -> str:
    npx = shutil.which("npx")
    if not npx or not (ROOT / "node_modules" / "aws-cdk").is_dir():
        pytest.fail("node_modules missing: run `npm ci` in the repository root (CI does it in .ci/run)")
    return npx


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
