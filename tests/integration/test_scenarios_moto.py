"""`pt artifacts push --scenario` against moto server: base first, hash-based sync, refusals."""

from __future__ import annotations

import pytest

from .conftest_services import write_services_config

TWO_SERVICES = """\
  ranker:
    function: predict
    api: null
"""


def _scenario(tmp_path, name: str, files: dict[str, str]) -> None:
    d = tmp_path / "scenarios" / name
    d.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)


def _keys(aws, bucket: str = "iris-scorer-val") -> set[str]:
    return {o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_base_first_then_others_and_unchanged_files_skip(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path)
    aws.client("s3").create_bucket(Bucket="iris-scorer-val")
    _scenario(tmp_path, "base", {"input.csv": "a,b\n1,2\n", "cfg/run.json": "{}"})
    _scenario(tmp_path, "holiday", {"input.csv": "a,b\n3,4\n"})

    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "holiday", "--config", cfg)
    assert r.exit_code == 2, r
    assert "no 'base' scenario yet" in r.stderr.splitlines()[0] and "--scenario base" in r.stderr
    assert _keys(aws) == set()

    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "holiday", "--scenario", "base",
               "--config", cfg, "--output", "json")
    assert r.exit_code == 0, r
    assert [s["scenario"] for s in r.json()["scenarios"]] == ["base", "holiday"]  # base first
    assert _keys(aws) == {"base/input.csv", "base/cfg/run.json", "base/manifest.json", "base/SHA256SUMS",
                          "holiday/input.csv", "holiday/manifest.json", "holiday/SHA256SUMS"}

    _scenario(tmp_path, "holiday", {"extra.txt": "x"})
    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "holiday", "--config", cfg, "--output", "json")
    assert r.exit_code == 0, r
    (rep,) = r.json()["scenarios"]
    assert rep["upload"] == 1 and rep["unchanged"] == 1
    assert "holiday/extra.txt" in _keys(aws)


def test_dry_run_uploads_nothing(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path)
    aws.client("s3").create_bucket(Bucket="iris-scorer-val")
    _scenario(tmp_path, "base", {"a.txt": "1"})
    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "base", "--config", cfg, "--dry-run")
    assert r.exit_code == 0 and "plan scenario base" in r.stdout
    assert _keys(aws) == set()


@pytest.mark.parametrize(("args", "words"), [
    (["--scenario", "nope"], "scenario 'nope' not found"),
    (["--scenario", "../base"], "one folder name"),
    (["--scenario", "base", "{tmp}/somepath"], "--scenario takes no PATH"),
    (["--scenario", "base", "--service", "other"], "unknown service 'other'"),
])
def test_bad_input_exit_2(aws, tmp_path, run_pt, args, words):
    cfg = write_services_config(tmp_path)
    aws.client("s3").create_bucket(Bucket="iris-scorer-val")
    _scenario(tmp_path, "base", {"a.txt": "1"})
    (tmp_path / "somepath").mkdir()
    r = run_pt("artifacts", "push", "--stage", "val", "--config", cfg, *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r
    assert words in r.stderr and "Traceback" not in r.stderr
    assert _keys(aws) == set()


def test_several_services_need_service_and_missing_bucket_names_the_stack(aws, tmp_path, run_pt):
    cfg = write_services_config(tmp_path, extra=TWO_SERVICES)
    _scenario(tmp_path, "base", {"a.txt": "1"})
    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "base", "--config", cfg)
    assert r.exit_code == 2 and "pass --service (scorer | ranker)" in r.stderr
    r = run_pt("artifacts", "push", "--stage", "val", "--scenario", "base", "--service", "ranker", "--config", cfg)
    assert r.exit_code == 1 and "iris-ranker-val-service" in r.stderr
