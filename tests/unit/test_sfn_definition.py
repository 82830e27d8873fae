"""targets/sfn_definition.py: load, validate, substitute and hash a state-machine definition (pure)."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.targets import sfn_definition as sfn

GOOD = """{
  "Comment": "score",
  "StartAt": "Score",
  "States": {
    "Score": {"Type": "Task", "Resource": "${ModelFunctionArn}", "TimeoutSeconds": ${Timeout}, "End": true}
  }
}
"""


def test_placeholders_have_line_and_column():
    ps = sfn.placeholders(GOOD)
    assert [(p.name, p.line) for p in ps] == [("ModelFunctionArn", 5), ("Timeout", 5)]
    assert GOOD.splitlines()[4][ps[0].col - 1:].startswith("${ModelFunctionArn}")


def test_render_substitutes_and_canonicalizes():
    r = sfn.render(GOOD, {"ModelFunctionArn": "arn:aws:lambda:us-east-1:1:function:f:live", "Timeout": "30"}, "f.json")
    doc = json.loads(r.definition)
    assert doc["States"]["Score"]["Resource"].endswith(":function:f:live")
    assert doc["States"]["Score"]["TimeoutSeconds"] == 30
    assert r.definition == sfn.canonical(doc) and r.digest.startswith("sha256:") and len(r.digest) == 71


def test_digest_ignores_formatting_and_key_order_but_not_content():
    a = sfn.render('{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}', {}, "a")
    b = sfn.render('{\n "States": {"A": {"End": true, "Type": "Pass"}},\n "StartAt": "A"\n}\n', {}, "b")
    c = sfn.render('{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}', {}, "c")
    assert a.digest == b.digest != c.digest
    assert sfn.digest_of(b.definition) == a.digest


def test_unknown_substitution_names_file_line_and_column():
    with pytest.raises(sfn.DefinitionError) as e:
        sfn.render(GOOD, {"ModelFunctionArn": "x"}, "flow.json")
    assert str(e.value).startswith("flow.json:5:") and "unknown substitution ${Timeout}" in str(e.value)


def test_invalid_json_reports_line_and_column():
    with pytest.raises(sfn.DefinitionError) as e:
        sfn.parse_json('{\n  "StartAt": "A",\n  "States": {,}\n}', "bad.json")
    assert str(e.value).startswith("bad.json:3:14: invalid JSON")


@pytest.mark.parametrize(("text", "needle"), [
    ("[]", "top level must be a JSON object"),
    ('{"StartAt": "A"}', "non-empty `States`"),
    ('{"StartAt": "B", "States": {"A": {"Type": "Pass", "End": true}}}', "`StartAt` must name one of the states (A)"),
])
def test_asl_shape(text, needle):
    with pytest.raises(sfn.DefinitionError, match=None) as e:
        sfn.render(text, {}, "d.json")
    assert needle in str(e.value) and str(e.value).startswith("d.json:1:")


def test_value_that_breaks_json_is_reported():
    with pytest.raises(sfn.DefinitionError) as e:
        sfn.render('{"StartAt": "A", "States": {"A": {"Type": "Pass", "Comment": "${C}", "End": true}}}',
                   {"C": 'say "hi"'}, "d.json")
    assert "invalid JSON after substitution" in str(e.value)


def test_check_collects_every_problem_one_line_each():
    text = ('{\n "StartAt": "A",\n "States": {"A": {"Type": "Task", "Resource": "${Fn}", "End": true}},\n'
            ' "X": ${Nope}\n}')
    problems = sfn.check(text, "flow.json", {"Fn": "function:predict"})
    assert problems == ["flow.json:4:7: unknown substitution ${Nope} (targets.stepfunctions.*.substitutions: Fn)"]
    # a bare placeholder (number position) is valid JSON for the check, as CloudFormation allows
    assert sfn.check(GOOD, "f", {"ModelFunctionArn": "a", "Timeout": "3"}) == []
    assert all("\n" not in p for p in sfn.check("{oops", "f", {}))
    assert sfn.check("{oops", "f", {})[0].startswith("f:1:2: invalid JSON")


def test_resolve_function_values():
    vals = sfn.resolve({"Fn": "function:predict", "Bucket": "b"}, lambda k: f"ARN({k})")
    assert vals == {"Fn": "ARN(predict)", "Bucket": "b"}


def test_read_errors(tmp_path):
    with pytest.raises(sfn.DefinitionError, match=r"flow\.json: no such file"):
        sfn.read(tmp_path / "flow.json", "flow.json")
    with pytest.raises(sfn.DefinitionError, match="is a directory"):
        sfn.read(tmp_path, "dir")
    (tmp_path / "latin.json").write_bytes(b'{\n"a": "\xe9"}')
    with pytest.raises(sfn.DefinitionError, match=r"latin\.json:2: not UTF-8"):
        sfn.read(tmp_path / "latin.json", "latin.json")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf{}")
    assert sfn.read(tmp_path / "bom.json", "bom.json") == "{}"
