"""`pt build-push` warns when a build context still sends a .git directory to docker (history,
and on CI runners possibly the checkout token in .git/config); a .dockerignore that excludes it
(as the one `pt init` writes) silences the warning. Real daemon and registry, dry run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.docker


def _project(root, base_image: str):
    svc = root / "svc"
    (svc / ".git").mkdir(parents=True)
    (svc / ".git" / "config").write_text('[http "https://github.com/"]\n\textraheader = AUTHORIZATION: basic x\n')
    (svc / "app.py").write_text("print('hi')\n")
    (svc / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /app/\n")
    (root / "pipeline.yml").write_text("""\
project: gitctx
region: us-east-1
images:
  app: {context: svc, dockerfile: svc/Dockerfile}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: [gitctx-staging-]}}
""")
    return root / "pipeline.yml", svc


def test_build_push_warns_about_git_in_the_context_until_dockerignore_excludes_it(
        tmp_path, base_image, registry, run_pt, monkeypatch):
    monkeypatch.setenv("PT_REGISTRY", registry)
    config, svc = _project(tmp_path, base_image)
    r = run_pt("build-push", "--config", config, "--dry-run", "--output", "json")
    assert r.exit_code == 0, r
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert "app: build context" in warnings[0] and "sends .git to docker" in warnings[0]
    assert "add `.git` to its .dockerignore" in warnings[0]
    assert "AUTHORIZATION" not in r.stderr + r.stdout

    from pipeline_tools.infra.scaffold import template_text

    (svc / ".dockerignore").write_text(template_text("dockerignore"))
    r = run_pt("build-push", "--config", config, "--dry-run", "--output", "json")
    assert r.exit_code == 0, r
    assert "warning:" not in r.stderr, r.stderr
