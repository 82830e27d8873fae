"""Pure pieces of the records commands: GitHub links, JUnit summaries, purpose precedence,
evidence hashing, checklist validation, audit rows — no AWS."""

from __future__ import annotations

import hashlib
import json

import pytest

from pipeline_tools.core.errors import UsageError
from pipeline_tools.ops import change_record as cr
from pipeline_tools.ops import records
from pipeline_tools.ops import runbook as rb
from pipeline_tools.release.ledger import Record


@pytest.mark.parametrize("remote, repo", [
    ("git@github.com:acme/model.git", "https://github.com/acme/model"),
    ("https://github.com/acme/model.git", "https://github.com/acme/model"),
    ("https://github.com/acme/model", "https://github.com/acme/model"),
    ("ssh://git@github.com/acme/model.git", "https://github.com/acme/model"),
    ("https://gitlab.com/acme/model.git", None),
    ("", None),
    (None, None),
])
def test_github_repo(remote, repo):
    assert cr.github_repo(remote) == repo


def test_junit_summary_counts_and_failing_cases(tmp_path):
    f = tmp_path / "j.xml"
    f.write_text('<testsuite tests="3" failures="1" errors="1" skipped="0" time="2">'
                 '<testcase classname="t" name="ok"/><testcase classname="t" name="bad"><failure/></testcase>'
                 '<testcase classname="t" name="boom"><error/></testcase></testsuite>')
    s = cr.junit_summary(str(f))
    assert (s["tests"], s["passed"], s["failures"], s["errors"], s["ok"]) == (3, 1, 1, 1, False)
    assert s["failing"] == ["t::bad", "t::boom"]


@pytest.mark.parametrize("text", ["<html/>", "not xml", ""])
def test_junit_summary_refuses_what_is_not_junit(tmp_path, text):
    f = tmp_path / "j.xml"
    f.write_text(text)
    with pytest.raises(UsageError, match="--junit"):
        cr.junit_summary(str(f))


def test_junit_with_no_tests_is_not_ok(tmp_path):
    f = tmp_path / "j.xml"
    f.write_text('<testsuites><testsuite tests="0"/></testsuites>')
    assert cr.junit_summary(str(f))["ok"] is False


def test_purpose_precedence(tmp_path):
    ev = tmp_path / "e.json"
    ev.write_text(json.dumps({"pull_request": {"title": "PR title", "body": "PR body"}}))
    git = lambda *a: "commit message\n"  # noqa: E731
    env = {"GITHUB_EVENT_PATH": str(ev)}
    assert cr.purpose("  given ", env, git, "abc")["text"] == "given"
    assert cr.purpose(None, env, git, "abc") == {"text": "PR title\n\nPR body", "source": "github-pull-request",
                                                 "url": None}
    push = tmp_path / "push.json"
    push.write_text(json.dumps({"head_commit": {}}))
    assert cr.purpose(None, {"GITHUB_EVENT_PATH": str(push)}, git, "abc")["text"] == "commit message"
    none = cr.purpose(None, {}, lambda *a: None, "abc")
    assert none["text"] is None and "--purpose" in none["note"]


def test_commits_without_revisions_say_why():
    git = lambda *a: None  # noqa: E731
    assert "no git revision recorded" in cr.commits(git, "a" * 40, None)["error"]
    assert "nothing runs yet" in cr.commits(git, None, "b" * 40)["error"]
    assert cr.commits(git, "a" * 40, "a" * 40) == {"from": "a" * 40, "to": "a" * 40, "repository": None,
                                                  "commits": [], "error": None, "compare_url": None}
    assert cr.commits(git, "a" * 40, "b" * 40)["error"].startswith("could not read git history")


def test_alarms_without_patterns_or_matches_are_said_so():
    class CW:
        def describe_alarms(self, **kw):
            return {"MetricAlarms": [], "CompositeAlarms": []}

    assert "names no alarms" in cr.alarms(CW(), [])["error"]
    got = cr.alarms(CW(), ["x-*"])
    assert got["read"] is True and "no alarm matches x-*" in got["error"]


def test_evidence_file_text_and_empty(tmp_path):
    f = tmp_path / "proof.txt"
    f.write_bytes(b"checked\n")
    e = rb.Evidence.from_arg(str(f))
    assert (e.source, e.name, e.sha256, e.size) == ("file", "proof.txt", hashlib.sha256(b"checked\n").hexdigest(), 8)
    t = rb.Evidence.from_arg("looked at it")
    assert t.source == "text" and t.sha256 == hashlib.sha256(b"looked at it").hexdigest()
    assert rb.Evidence.from_arg(None) is None
    with pytest.raises(UsageError, match="--evidence is empty"):
        rb.Evidence.from_arg("  ")


def test_long_evidence_keeps_hash_of_everything_and_an_excerpt():
    data = ("x" * 10_000 + "END").encode()
    e = rb.Evidence.of_bytes("command", data)
    assert e.sha256 == hashlib.sha256(data).hexdigest() and e.size == len(data)
    assert len(e.excerpt) < 4100 and e.excerpt.endswith("END")


def test_command_line_substitutes_and_quotes():
    step = {"id": "s", "run": "pt logs archive --stage {stage} --to 's3://b/{runbook}/logs dir'"}
    assert rb.command_line(step, {"stage": "dev", "runbook": "R1"}) == \
        ["pt", "logs", "archive", "--stage", "dev", "--to", "s3://b/R1/logs dir"]
    with pytest.raises(UsageError, match=r"undefined variable \{runbook\}"):
        rb.command_line(step, {"stage": "dev"})


def test_audit_row_is_schema_1_in_field_order():
    rec = Record("20261118T110640000Z-aaaaaa", "prod", "gate", "pass", 1_795_000_000.0, 1_795_000_001.0,
                 {"name": "alice", "arn": "arn:x"}, "ok", {"digest": "sha256:1", "status": "PASS"},
                 ({"state": "pass", "at": "2026-11-18T11:06:40Z", "ts": 1.0},))
    r = records.row(rec)
    assert tuple(r) == records.FIELDS and r["schema"] == 1
    assert r["created"] == "2026-11-18T11:06:40Z" and r["events"] == [{"state": "pass", "at": "2026-11-18T11:06:40Z"}]
    csv_text = records.render([r], "csv")
    assert csv_text.splitlines()[0] == ",".join(records.FIELDS)
    assert records.id_floor(1_795_000_000.0) == "20261118T110640000"
