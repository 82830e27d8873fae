"""The generated workflows run pt from the toolkit's GitHub Action pinned by commit: `pt init --toolkit-ref`
writes the pin, `pt upgrade-pipelines` moves it (only lines marked `# pt-toolkit`), and a pt that cannot
name its own commit refuses instead of writing an unpinned install."""

from __future__ import annotations

import json

import pytest

from pipeline_tools import __version__
from pipeline_tools.core.errors import UsageError
from pipeline_tools.infra.toolkit import ToolkitRef, installed_ref, parse_ref, ref_from_direct_url, rewrite_pins

OLD = "acme/pipeline-tools@" + "a" * 40
NEW = "acme/pipeline-tools@" + "b" * 40


@pytest.mark.parametrize("bad", ["acme/pipeline-tools@main", "acme/pipeline-tools@v1.2.3", "acme@" + "a" * 40,
                                 "acme/pipeline-tools@" + "A" * 40, "acme/pipeline-tools@" + "a" * 39, "",
                                 "acme/pipeline-tools"])
def test_parse_ref_accepts_only_a_full_commit_sha(bad):
    with pytest.raises(UsageError) as e:
        parse_ref(bad)
    assert "--toolkit-ref" in e.value.message and "40-hex" in e.value.message
    assert "--toolkit-ref OWNER/REPO@SHA" in e.value.hint


def test_rewrite_touches_only_marked_lines():
    text = ("      - uses: actions/checkout@" + "1" * 40 + "  # v4.2.2\n"
            "      - uses: " + OLD + "  # pt-toolkit v0.0.1\n"
            "        with:\n"
            '          version: "0.0.1"  # pt-toolkit\n'
            '          other: "0.0.1"\n'
            "      - uses: " + OLD + "  # mine, not pt's\n")
    new, n = rewrite_pins(text, ToolkitRef("acme/pipeline-tools", "b" * 40, "2.0.0"))
    assert n == 2
    assert new.splitlines() == [
        "      - uses: actions/checkout@" + "1" * 40 + "  # v4.2.2",
        "      - uses: " + NEW + "  # pt-toolkit v2.0.0",
        "        with:",
        '          version: "2.0.0"  # pt-toolkit',
        '          other: "0.0.1"',
        "      - uses: " + OLD + "  # mine, not pt's"]


@pytest.mark.parametrize(("direct_url", "expected"), [
    ({"url": "https://github.com/acme/pipeline-tools.git",
      "vcs_info": {"vcs": "git", "commit_id": "c" * 40, "requested_revision": "v1.0.0"}},
     "acme/pipeline-tools@" + "c" * 40),
    ({"url": "ssh://git@github.com/acme/pipeline-tools", "vcs_info": {"vcs": "git", "commit_id": "c" * 40}},
     "acme/pipeline-tools@" + "c" * 40),
    ({"url": "https://gitlab.com/acme/pipeline-tools.git", "vcs_info": {"vcs": "git", "commit_id": "c" * 40}}, None),
    ({"url": "https://github.com/acme/pipeline-tools.git", "vcs_info": {"vcs": "git", "commit_id": "c" * 7}}, None),
    ({"url": "file:///work/pipeline-tools", "dir_info": {"editable": True}}, None),
    ({"url": "https://files.pythonhosted.org/x.whl", "archive_info": {}}, None),
])
def test_ref_from_pep610_direct_url(direct_url, expected):
    assert ref_from_direct_url(json.dumps(direct_url)) == expected


def test_a_checkout_names_no_commit_and_init_refuses(run_pt, tmp_path):
    assert installed_ref()[0] is None  # this test suite runs from a checkout, not a release
    r = run_pt("init", "-C", tmp_path, "--project", "demo")
    assert r.exit_code == 2
    assert r.stderr.splitlines()[0].startswith("error: cannot tell which commit of pipeline-tools")
    assert "--toolkit-ref OWNER/REPO@SHA" in r.stderr
    assert not (tmp_path / "pipeline.yml").exists()


def test_release_ref_is_the_default(run_pt, tmp_path, monkeypatch):
    import pipeline_tools

    monkeypatch.setattr(pipeline_tools, "__toolkit_ref__", OLD)
    assert run_pt("init", "-C", tmp_path, "--project", "demo").exit_code == 0
    text = (tmp_path / ".github/workflows/pt-staging.yml").read_text()
    assert f"uses: {OLD}  # pt-toolkit v{__version__}\n" in text


def _init(run_pt, tmp_path, ref=OLD):
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", ref)
    assert r.exit_code == 0, r.stderr


def test_init_pins_the_action_and_never_pip_installs_pt(run_pt, tmp_path):
    _init(run_pt, tmp_path)
    for name in ("pt-staging.yml", "pt-prod.yml"):
        text = (tmp_path / ".github/workflows" / name).read_text()
        assert f"uses: {OLD}  # pt-toolkit v{__version__}\n" in text
        assert f'version: "{__version__}"  # pt-toolkit\n' in text
        assert "pip install" not in text and "PT_INSTALL" not in text


def test_upgrade_dry_run_shows_a_diff_and_writes_nothing(run_pt, tmp_path):
    _init(run_pt, tmp_path)
    before = (tmp_path / ".github/workflows/pt-prod.yml").read_text()
    r = run_pt("upgrade-pipelines", "-C", tmp_path, "--toolkit-ref", NEW, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert f"-        uses: {OLD}  # pt-toolkit v{__version__}" in r.stdout
    assert f"+        uses: {NEW}  # pt-toolkit v{__version__}" in r.stdout
    assert "--- a/.github/workflows/pt-prod.yml" in r.stdout and "would update 2 workflows" in r.stdout
    assert (tmp_path / ".github/workflows/pt-prod.yml").read_text() == before


def test_upgrade_rewrites_then_reports_up_to_date(run_pt, tmp_path):
    _init(run_pt, tmp_path)
    wf = tmp_path / ".github/workflows"
    (wf / "own.yml").write_text("on: push\njobs: {}\n")  # a workflow of the user's: not touched, no error
    r = run_pt("upgrade-pipelines", "-C", tmp_path, "--toolkit-ref", NEW, "--output", "json")
    assert r.exit_code == 0, r.stderr
    assert r.json() == {"toolkit_ref": NEW, "version": __version__, "changed": [
        ".github/workflows/pt-prod.yml", ".github/workflows/pt-staging.yml"], "up_to_date": False, "dry_run": False}
    assert NEW in (wf / "pt-staging.yml").read_text() and OLD not in (wf / "pt-staging.yml").read_text()
    assert (wf / "own.yml").read_text() == "on: push\njobs: {}\n"
    r = run_pt("upgrade-pipelines", "-C", tmp_path, "--toolkit-ref", NEW)
    assert r.exit_code == 0 and r.stdout.startswith("up to date: the workflows already pin") and "---" not in r.stdout


@pytest.mark.parametrize("case", ["no-workflows", "no-marked-lines", "bad-ref"])
def test_upgrade_bad_input_exits_2_with_one_line(run_pt, tmp_path, case):
    ref = NEW
    if case == "no-marked-lines":
        (tmp_path / ".github/workflows").mkdir(parents=True)
        (tmp_path / ".github/workflows/ci.yml").write_text("on: push\njobs: {}\n")
    elif case == "bad-ref":
        _init(run_pt, tmp_path)
        ref = "acme/pipeline-tools@main"
    r = run_pt("upgrade-pipelines", "-C", tmp_path, "--toolkit-ref", ref)
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    assert {"no-workflows": "no workflow files", "no-marked-lines": "no step uses the pt toolkit action",
            "bad-ref": "40-hex"}[case] in r.stderr.splitlines()[0]
