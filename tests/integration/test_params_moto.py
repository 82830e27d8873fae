"""`pt params push|diff|show` against moto server's SSM."""

from __future__ import annotations

import pytest

from .conftest_services import write_services_config

PARAMS = "train:\n  lr: 0.01\n  epochs: 3\nmodel: resnet\nlayers: [64, 32]\n"


def _ssm(aws) -> dict:
    out = {}
    for page in aws.client("ssm").get_paginator("get_parameters_by_path").paginate(
            Path="/pt/scorer/val", Recursive=True, WithDecryption=True):
        for prm in page["Parameters"]:
            out[prm["Name"]] = (prm["Value"], prm["Type"], prm["Version"])
    return out


def test_push_diff_show_versions_and_prune(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path)
    (tmp_path / "params.yml").write_text(PARAMS)
    d = run_pt("params", "diff", "--stage", "val", "--config", cfg, "--output", "json")
    assert d.exit_code == 1 and len(d.json()["added"]) == 4

    dry = run_pt("params", "push", "--stage", "val", "--config", cfg, "--dry-run")
    assert dry.exit_code == 0 and "4 added" in dry.stdout and _ssm(aws) == {}

    r = run_pt("params", "push", "--stage", "val", "--config", cfg, "--output", "json")
    assert r.exit_code == 0, r
    assert _ssm(aws) == {"/pt/scorer/val/train/lr": ("0.01", "String", 1),
                         "/pt/scorer/val/train/epochs": ("3", "String", 1),
                         "/pt/scorer/val/model": ("resnet", "String", 1),
                         "/pt/scorer/val/layers": ("[64,32]", "String", 1)}
    assert run_pt("params", "diff", "--stage", "val", "--config", cfg).exit_code == 0

    again = run_pt("params", "push", "--stage", "val", "--config", cfg, "--output", "json")
    assert again.json()["written"] == []  # nothing differs: nothing written, no new versions

    (tmp_path / "params.yml").write_text("train:\n  lr: 0.02\n  epochs: 3\nmodel: resnet\n"
                                         "db_password: hunter2\n")
    d = run_pt("params", "diff", "--stage", "val", "--config", cfg, "--secure", "db_password")
    assert d.exit_code == 1
    assert "~ train/lr: 0.01 -> 0.02" in d.stdout and "- layers" in d.stdout
    assert "+ db_password = " in d.stdout and "hunter2" not in d.stdout

    r = run_pt("params", "push", "--stage", "val", "--config", cfg, "--secure", "db_password")
    assert r.exit_code == 0, r
    assert "pass --prune" in r.stdout and "hunter2" not in r.stdout
    ssm = _ssm(aws)
    assert ssm["/pt/scorer/val/train/lr"] == ("0.02", "String", 2)
    assert ssm["/pt/scorer/val/db_password"] == ("hunter2", "SecureString", 1)
    assert "/pt/scorer/val/layers" in ssm  # kept without --prune

    r = run_pt("params", "push", "--stage", "val", "--config", cfg, "--secure", "db_password", "--prune",
               "--output", "json")
    assert r.json()["deleted"] == ["layers"] and "/pt/scorer/val/layers" not in _ssm(aws)

    s = run_pt("params", "show", "--stage", "val", "--config", cfg)
    assert s.exit_code == 0 and "(secure)" in s.stdout and "hunter2" not in s.stdout
    assert "0.02" in s.stdout


def test_many_parameters_are_read_in_pages(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path)
    (tmp_path / "params.yml").write_text("".join(f"k{i}: {i}\n" for i in range(23)))
    assert run_pt("params", "push", "--stage", "val", "--config", cfg).exit_code == 0
    assert len(_ssm(aws)) == 23
    assert run_pt("params", "diff", "--stage", "val", "--config", cfg).exit_code == 0


@pytest.mark.parametrize(("text", "args", "words"), [
    ("a: 1\ndb_password: hunter2\n", [], "params.yml:2: 'db_password' looks like a secret"),
    ("aws_key: AKIAIOSFODNN7EXAMPLE\n", [], "aws access key id"),
    ("a: [1,\n", [], "invalid YAML"),
    ("a: 1\n", ["--secure", "nope"], "--secure nope: no such key"),
    ("a: 1\n", ["--service", "other"], "unknown service 'other'"),
])
def test_bad_input_exit_2_one_line_nothing_written(aws, tmp_path, run_pt, text, args, words):
    cfg = write_services_config(tmp_path)
    (tmp_path / "params.yml").write_text(text)
    r = run_pt("params", "push", "--stage", "val", "--config", cfg, *args)
    assert r.exit_code == 2, r
    assert words in r.stderr.splitlines()[0] and "Traceback" not in r.stderr
    assert "hunter2" not in r.stderr and "AKIAIOSFODNN7EXAMPLE" not in r.stderr
    assert _ssm(aws) == {}


def test_missing_file_and_missing_setting(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path)
    r = run_pt("params", "push", "--stage", "val", "--config", cfg)
    assert r.exit_code == 2 and "not found" in r.stderr
    r = run_pt("params", "diff", "--stage", "val", "--config", cfg, "--file", tmp_path / "nope.yml")
    assert r.exit_code == 2 and "nope.yml" in r.stderr
