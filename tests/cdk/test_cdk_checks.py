"""cdk-nag AwsSolutions and cfn-lint on every synthesized stack."""

from __future__ import annotations

import json

import pytest

from .conftest import cfn_lint

pytestmark = pytest.mark.cdk


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(synthesized):
    # A failing plugin makes app.synth() raise; the report must also be empty.
    assert synthesized.report is not None, "cdk-nag plugin did not run"
    findings = [(v["ruleName"], [c.get("constructPath") for c in v.get("violatingConstructs", [])])
                for rep in synthesized.report["pluginReports"] for v in rep.get("violations", [])]
    assert findings == []


def test_cdk_nag_acknowledgments_all_carry_a_reason(synthesized):
    acks = synthesized.acknowledgments
    assert acks, "no acknowledgments recorded"
    rules = {rule for per_path in acks.values() for rule in per_path}
    assert any("AwsSolutions-IAM5[" in r for r in rules)
    assert "Annotation::AwsSolutions-CB3" in rules or "AwsSolutions-CB3" in rules  # privileged docker build
    # No blanket acknowledgment of the wildcard rule: IAM5 is acknowledged per finding.
    assert not {r for r in rules if r.endswith("AwsSolutions-IAM5")}
    for path, per_path in acks.items():
        for rule, reason in per_path.items():
            assert isinstance(reason, str) and len(reason) >= 30, (path, rule, reason)


def test_cfn_lint_is_clean_on_every_template(synthesized):
    files = sorted(str(p) for p in synthesized.outdir.glob("*.template.json"))
    assert len(files) == len(synthesized.templates) == 8  # + a DashboardStack per stage
    # W3005: CDK itself writes DependsOn next to GetAtt for IAM policies (harmless; not our code).
    assert cfn_lint(*files) == []


def test_cfn_lint_helper_reports_findings(tmp_path):
    """The in-process cfn-lint (conftest.cfn_lint) is not a no-op: a bad property and a bad reference
    come back as findings, and the clean version of the same template has none."""
    good = {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "pt-lint-check"}}}}
    bad = {"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"Nope": 1}},
                         "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Missing"}}}}}
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert cfn_lint(tmp_path / "good.json") == []
    findings = cfn_lint(tmp_path / "good.json", tmp_path / "bad.json")
    assert any("E3002" in f and "Nope" in f for f in findings), findings
    assert any("E1020" in f and "Missing" in f for f in findings), findings
    assert all("bad.json" in f for f in findings), findings
