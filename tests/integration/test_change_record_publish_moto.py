"""`pt change-record --publish` (stage bucket on moto server, console URL to GITHUB_OUTPUT and the step
summary) and change records over several repositories (`change_record.repos`, golden file)."""

from __future__ import annotations

import json

from pipeline_tools.core import config as config_mod
from pipeline_tools.ops import change_record as cr

from .test_change_record_moto import CONFIG, NOW, _git, check_golden, world  # noqa: F401

MULTI = CONFIG + """\
change_record:
  repos:
    - {name: model, path: repo}
    - {name: infra, path: infra}
"""


def make_infra(path) -> list[str]:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _git(path, "remote", "add", "origin", "https://github.com/acme/cr-infra.git")
    shas = []
    # the running prod deploy is from 09:06:40, the staging deploy being promoted from 10:06:40
    for msg, date in (("Base VPC", "2026-11-18 08:00:00 +0000"), ("Raise Lambda memory to 2 GB",
                                                                  "2026-11-18 09:30:00 +0000"),
                      ("Later change", "2026-11-18 10:30:00 +0000")):
        (path / "infra.txt").write_text(msg)
        _git(path, "add", "infra.txt")
        _git(path, "commit", "-q", "-m", msg, date=date)
        shas.append(_git(path, "rev-parse", "HEAD"))
    return shas


def test_several_repositories_one_block_each_golden(world):  # noqa: F811
    infra = make_infra(world["tmp"] / "infra")
    path = world["tmp"] / "multi.yml"
    path.write_text(MULTI)
    cfg = config_mod.load(path)
    repos = [(r.name, cr.git_in(str(cfg.base_dir / r.path))) for r in cfg.change_record.repos]
    doc = cr.build(cfg, "prod", ledger=world["led"], cloudwatch=world["cw"], clock=lambda: NOW, repos=repos)
    model, inf = doc["diffs"]
    assert model["name"] == "model" and model["range_by"] == "revision"
    assert [c["subject"] for c in model["commits"]] == ["Add batch scoring", "Tune threshold to 0.7"]
    assert inf["name"] == "infra" and inf["range_by"] == "time"
    assert [c["sha"] for c in inf["commits"]] == [infra[1]]  # only the commit between the two deploys
    assert inf["commits"][0]["url"] == f"https://github.com/acme/cr-infra/commit/{infra[1]}"
    md = cr.render_md(doc)
    assert md.index("### model") < md.index("### infra")
    check_golden("multi_repo.md", md)


def test_publish_writes_bucket_objects_and_github_outputs(world, run_pt, aws, monkeypatch, tmp_path):  # noqa: F811
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="cr-prod-artifacts")
    out, summary = tmp_path / "gh-output", tmp_path / "gh-summary"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = run_pt("change-record", "--stage", "prod", "--next", "--publish", "--config", str(world["cfg_path"]),
               "--repo", str(world["repo"]), "-o", str(tmp_path / "cr.md"))
    assert r.exit_code == 0, r
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="cr-prod-artifacts")["Contents"])
    assert keys == ["change-records/prod/latest.md", "change-records/prod/next.json", "change-records/prod/next.md"]
    latest = s3.get_object(Bucket="cr-prod-artifacts", Key="change-records/prod/latest.md")["Body"].read().decode()
    assert latest == (tmp_path / "cr.md").read_text() and latest.startswith("# Change record: cr prod")
    doc = json.loads(s3.get_object(Bucket="cr-prod-artifacts", Key="change-records/prod/next.json")["Body"].read())
    assert doc["kind"] == "change-record" and doc["subject"]["type"] == "promotion"
    url = ("https://us-east-1.console.aws.amazon.com/s3/object/cr-prod-artifacts?region=us-east-1"
           "&bucketType=general&prefix=change-records/prod/next.md")
    assert f"change_record_url={url}\n" in out.read_text()
    assert cr.latest_url(world["cfg"], "prod").endswith("prefix=change-records/prod/latest.md")
    assert f"[Change record in S3]({url})" in summary.read_text()


def test_publish_without_the_bucket_is_an_error_not_a_silent_skip(world, run_pt):  # noqa: F811
    r = run_pt("change-record", "--stage", "prod", "--next", "--publish", "--config", str(world["cfg_path"]),
               "--repo", str(world["repo"]), "-o", "/dev/null")
    assert r.exit_code != 0 and "NoSuchBucket" in r.stderr and "Traceback" not in r.stderr
