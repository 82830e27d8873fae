"""Output: redaction of secrets, json mode on stdout only, GitHub Actions outputs and summary."""

import io
import json

import pytest

from pipeline_tools.core.output import Output, markdown_table, redact, register_secret


@pytest.mark.parametrize("raw,hidden", [
    ("key AKIAIOSFODNN7EXAMPLE used", "IOSFODNN7EXAMPLE"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
    ("posting to https://hooks.slack.com/services/T000/B000/XXXXXXXX", "T000/B000"),
    ("https://acme.webhook.office.com/webhookb2/abc-123@def/IncomingWebhook/xyz", "webhookb2/abc"),
    ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnop"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("password=hunter2hunter2", "hunter2hunter2"),
    ("https://user:s3cr3tpass@example.com/x", "s3cr3tpass"),
])
def test_redact_hides_secrets(raw, hidden):
    out = redact(raw)
    assert hidden not in out and "****" in out


def test_redact_leaves_normal_text():
    text = "deployed iris-prod-predict to 123456789012.dkr.ecr.us-east-1.amazonaws.com/iris-model@sha256:abc"
    assert redact(text) == text


def test_registered_runtime_secret_is_masked():
    register_secret("https://example.internal/hook/very-secret-path")
    assert redact("sent to https://example.internal/hook/very-secret-path ok") == "sent to **** ok"


def test_json_mode_prints_one_document_and_logs_to_stderr():
    out, err = io.StringIO(), io.StringIO()
    o = Output("json", stdout=out, stderr=err)
    o.info("working…")
    o.result({"url": "https://hooks.slack.com/services/A/B/C", "n": 1}, "human text")
    assert json.loads(out.getvalue()) == {"url": "https://hooks.slack.com/****", "n": 1}
    assert err.getvalue() == "working…\n"


def test_human_table_plain_when_not_a_tty():
    out = io.StringIO()
    Output("human", stdout=out, stderr=io.StringIO()).table([["predict", 3], ["batch-score", None]],
                                                            ["function", "version"])
    assert out.getvalue().splitlines() == ["function     version", "predict      3", "batch-score"]


def test_github_outputs_and_summary(tmp_path, monkeypatch):
    gh_out, gh_sum = tmp_path / "out", tmp_path / "sum"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh_out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(gh_sum))
    o = Output("human", stdout=io.StringIO(), stderr=io.StringIO())
    o.github_output({"image_uri": "r@sha256:1", "images": ["a", "b"], "multi": "x\ny"})
    o.step_summary(markdown_table([["model", "built"]], ["image", "status"]))
    assert gh_out.read_text() == 'image_uri=r@sha256:1\nimages=["a", "b"]\nmulti<<PT_EOF\nx\ny\nPT_EOF\n'
    assert gh_sum.read_text() == "| image | status |\n|---|---|\n| model | built |\n\n"


def test_github_outputs_are_ignored_outside_actions(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "out"))
    Output().github_output({"a": "b"})
    assert not (tmp_path / "out").exists()
