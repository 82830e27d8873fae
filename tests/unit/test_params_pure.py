"""Pure logic of `pt params`: flattening, rendering, secret detection, the diff, file problems."""

from __future__ import annotations

import pytest

from pipeline_tools.core.errors import UsageError
from pipeline_tools.core.yamlmarks import load_with_lines
from pipeline_tools.ops import params as p

PREFIX = "/pt/scorer/val/"


def build(text: str, **kw) -> dict[str, p.Param]:
    loaded = load_with_lines(text)
    return p.build(loaded.data, loaded.lines, "params.yml", PREFIX, **kw)


def test_flatten_nests_into_paths_and_keeps_lists_as_leaves():
    assert p.flatten({"a": {"b": {"c": 1}, "d": [1, {"x": 2}]}, "e": "s"}) == {
        ("a", "b", "c"): 1, ("a", "d"): [1, {"x": 2}], ("e",): "s"}


@pytest.mark.parametrize(("value", "text"), [("resnet", "resnet"), (0.01, "0.01"), (True, "true"), (3, "3"),
                                              ([1, 2], "[1,2]"), ({"b": 1, "a": 2}, '{"a":2,"b":1}')])
def test_render(value, text):
    assert p.render(value) == text


@pytest.mark.parametrize("key", ["db_password", "db/password", "apiKey", "api_key", "AUTH_TOKEN", "client-secret",
                                 "private_key", "aws_secret_access_key", "credentials", "passwd"])
def test_secret_key_names(key):
    assert p.secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "tokenizer", "key_column", "learning_rate", "secretary_count",
                                 "passes", "keyword"])
def test_not_secret_key_names(key):
    assert not p.secret_key(key)


def test_build_flattens_and_renders():
    out = build("train:\n  lr: 0.01\n  epochs: 3\nmodel: resnet\nlayers: [64, 32]\n")
    assert {k: v.value for k, v in out.items()} == {"train/lr": "0.01", "train/epochs": "3", "model": "resnet",
                                                    "layers": "[64,32]"}
    assert not any(v.secure for v in out.values())


@pytest.mark.parametrize(("text", "where", "words"), [
    ("a: 1\ndb_password: hunter2\n", "params.yml:2", "secret (by its name)"),
    ("a: 1\nnested:\n  api_key: abc\n", "params.yml:3", "secret"),
    ("x: AKIAIOSFODNN7EXAMPLE\n", "params.yml:1", "aws access key id"),
    ("auth: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig\n", "params.yml:1", "jwt"),
])
def test_plain_secrets_are_refused_with_file_line(text, where, words):
    with pytest.raises(UsageError) as e:
        build(text)
    assert e.value.message.startswith(where) and words in e.value.message
    assert "--secure" in e.value.hint and "ssm:" in e.value.hint
    assert "hunter2" not in e.value.message and "abc" not in e.value.message.split("'")[-1]


def test_secure_and_references_are_accepted_and_numbers_are_not_secrets():
    out = build("db_password: hunter2\ntoken_ref: ssm:/shared/token\ntoken_limit: 512\n", secure=["db_password"])
    assert out["db_password"].secure and out["db_password"].type == "SecureString"
    assert out["token_ref"].value == "ssm:/shared/token" and not out["token_ref"].secure
    assert out["token_limit"].value == "512"


@pytest.mark.parametrize(("text", "kw", "words"), [
    ("a: 1\n", {"secure": ["b"]}, "--secure b: no such key"),
    ("a:\n  'bad key': 1\n", {}, "params.yml:2: key 'bad key'"),
    ("a: 1\nb:\n", {}, "params.yml:2: key 'b' has no value"),
    ("a: ''\n", {}, "has no value"),
    ("a: " + "x" * 5000 + "\n", {}, "bytes"),
    ("/".join(["k"] * 1) + ":\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(1, 14)) + "  " * 14 + "v: 1\n", {},
     "levels"),
])
def test_bad_files(text, kw, words):
    with pytest.raises(UsageError) as e:
        build(text, **kw)
    assert words in e.value.message


def test_load_file_problems(tmp_path):
    f = tmp_path / "p.yml"
    f.write_text("a: [1,\n")
    with pytest.raises(UsageError, match=r"p.yml:\d+: invalid YAML"):
        p.load_file(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        p.load_file(f)
    f.write_text("a: 1\na: 2\n")
    with pytest.raises(UsageError, match=r"p\.yml:2: duplicate key"):
        p.load_file(f)
    with pytest.raises(UsageError, match="not found"):
        p.load_file(tmp_path / "missing.yml")
    f.write_text('{"a": {"b": 1}}')  # JSON is YAML
    assert p.load_file(f)[0] == {"a": {"b": 1}}


def test_diff_added_changed_removed_unchanged_and_type_changes():
    want = {"a": p.Param("a", "1"), "b": p.Param("b", "2"), "s": p.Param("s", "x", secure=True),
            "t": p.Param("t", "same")}
    have = {"b": p.Current("b", "3", "String", 4), "s": p.Current("s", "x", "String", 1),
            "t": p.Current("t", "same", "String", 2), "gone": p.Current("gone", "old", "SecureString", 7)}
    d = p.diff(want, have)
    assert [x.key for x in d.added] == ["a"]
    assert [n.key for _o, n in d.changed] == ["b", "s"]
    assert [r.key for r in d.removed] == ["gone"] and d.unchanged == ["t"] and not d.empty
    doc = d.to_dict()
    assert doc["removed"][0]["value"] == p.MASK  # a SecureString is never shown
    assert doc["changed"][1]["new"] == p.MASK and "(String -> SecureString)" in d.lines()[2]
    assert p.diff({"t": p.Param("t", "same")}, {"t": p.Current("t", "same", "String", 2)}).empty
