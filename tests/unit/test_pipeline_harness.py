"""The harness that executes generated pipelines (tests/e2e/generated.py) fails loudly on what
it cannot resolve, so a workflow change cannot make the end-to-end test pass by skipping a step."""

from __future__ import annotations

import pytest

from ..e2e import generated as g


def _ctx():
    return {"github": {"sha": "abc"}, "env": {"PT_STAGE": "staging"}, "steps": {"stage": {"account": "111"}}}


@pytest.mark.parametrize(("text", "expected"), [
    ("arn:aws:iam::${{ steps.stage.outputs.account }}:role/x", "arn:aws:iam::111:role/x"),
    ("--tag ${{github.sha}} ${{ env.PT_STAGE }}", "--tag abc staging"),
    ("plain $PT_STAGE", "plain $PT_STAGE"),  # shell variables are bash's business
])
def test_substitute(text, expected):
    assert g.substitute(text, _ctx()) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("${{ steps.later.outputs.x }}", "has not run before this one"),
    ("${{ steps.stage.outputs.region }}", "wrote no output 'region'"),
    ("${{ secrets.TOKEN }}", "not supported"),
    ("${{ github.event.head_commit.id }}", "not supported"),
])
def test_substitute_refuses_what_it_cannot_resolve(text, message):
    with pytest.raises(AssertionError, match=message):
        g.substitute(text, _ctx())


def test_github_output_lines_and_heredocs(tmp_path):
    out = tmp_path / "out"
    out.write_text("account=111\nimages<<EOF_1\n{\"a\": 1}\nline2\nEOF_1\nregion=us-east-1\nurl=a=b\n")
    assert g.parse_github_output(out) == {"account": "111", "images": "{\"a\": 1}\nline2", "region": "us-east-1",
                                          "url": "a=b"}


def test_pt_lines_finds_pt_commands_in_multi_line_blocks():
    script = "pt config validate\n  pt config show --stage x > f\necho pt no\nmypt x\n"
    assert g.pt_lines(script) == ["pt config validate", "pt config show --stage x > f"]


def test_resolver_joins_pseudo_parameters_and_names():
    template = {"Resources": {"Topic1": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "p-s-events"}},
                              "B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "bkt"}}}}
    r = g.Resolver(template, account="1", region="eu-west-1")
    assert r({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":iam::", {"Ref": "AWS::AccountId"}, ":x"]]}) \
        == "arn:aws:iam::1:x"
    assert r({"Ref": "Topic1"}) == "arn:aws:sns:eu-west-1:1:p-s-events"
    assert r({"Fn::GetAtt": ["B", "Arn"]}) == "arn:aws:s3:::bkt"
