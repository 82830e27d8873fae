"""`pt build-push` / `pt test` inputs that fail before any build: one line, the right exit code."""

from __future__ import annotations

import textwrap

import pytest

from pipeline_tools.images import images

CONFIG = """\
project: demo
region: us-east-1
images:
  model:
    context: svc
    dockerfile: svc/Dockerfile
    test_command: ["python", "-m", "pytest", "-q", "tests"]
  batch:
    context: svc
    dockerfile: svc/Dockerfile
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: [], allow_no_alarms: true}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "pipeline.yml").write_text(CONFIG)
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PT_REGISTRY", "127.0.0.1:9")
    return tmp_path


def test_unknown_image_suggests_the_right_one(project, run_pt):
    r = run_pt("build-push", "modle")
    assert r.exit_code == 2
    assert "unknown image 'modle'" in r.stderr and "did you mean 'model'?" in r.stderr


def test_docker_unreachable_is_one_line(project, run_pt, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/pt-docker.sock")
    r = run_pt("build-push", "model")
    assert r.exit_code == 1, r
    first = r.stderr.splitlines()[0]
    assert first == ("error: cannot reach Docker at unix:///nonexistent/pt-docker.sock: "
                     "start Docker or set DOCKER_HOST")
    assert "Traceback" not in r.stderr


def test_docker_unreachable_tcp(project, run_pt, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    r = run_pt("test", "model")
    assert r.exit_code == 1
    assert "cannot reach Docker at tcp://127.0.0.1:9: start Docker or set DOCKER_HOST" in r.stderr


def test_bad_build_arg(project, run_pt):
    r = run_pt("build-push", "--build-arg", "NOEQUALS")
    assert r.exit_code == 2 and "expected KEY=VALUE" in r.stderr


def test_missing_dockerfile_and_context(project):
    from pipeline_tools.core.config import load
    from pipeline_tools.core.errors import UsageError

    (project / "svc" / "Dockerfile").unlink()
    cfg = load(project / "pipeline.yml")
    with pytest.raises(UsageError, match=r"Dockerfile .*svc/Dockerfile not found"):
        images.plan_image(cfg, "model", docker=None, registry_host="r")
    (project / "svc").rmdir()
    with pytest.raises(UsageError, match=r"build context .*svc does not exist"):
        images.plan_image(cfg, "model", docker=None, registry_host="r")


def test_pytest_gets_junit_injected(project):
    from pipeline_tools.core.config import load

    cfg = load(project / "pipeline.yml")
    cmd, injected = images.container_test_command(cfg, "model", ["-k", "fast"])
    assert injected
    assert cmd[:7] == ["python", "-m", "pytest", "-q", "tests", "-k", "fast"]
    assert f"--junitxml={images.JUNIT_IN_CONTAINER}" in cmd
    cmd, injected = images.container_test_command(cfg, "model", ["--junitxml=/x.xml"])
    assert not injected and cmd[-1] == "--junitxml=/x.xml"
    from pipeline_tools.core.errors import UsageError

    with pytest.raises(UsageError, match="no test_command"):
        images.container_test_command(cfg, "batch", [])


def test_junit_counts(tmp_path):
    p = tmp_path / "j.xml"
    p.write_text(textwrap.dedent("""\
        <?xml version="1.0" encoding="utf-8"?>
        <testsuites><testsuite name="pytest" errors="1" failures="2" skipped="1" tests="9"></testsuite>
        </testsuites>"""))
    assert images._junit_counts(p) == (5, 2, 1, 1)
    p.write_text('<testsuite tests="3" failures="0" errors="0" skipped="0"/>')
    assert images._junit_counts(p) == (3, 0, 0, 0)
    p.write_text("not xml")
    assert images._junit_counts(p) is None
    rep = images.ImageTestReport("m", "r", 1, 5, 2, 1, 1, str(p), 1.0)
    assert rep.summary == "5 passed, 2 failed, 1 errors, 1 skipped"


def test_ecr_registry_gets_token_from_ecr(project, aws, monkeypatch):
    """No PT_REGISTRY: the stage's ECR, asked through the ECR API; docker push gets basic-auth
    credentials from GetAuthorizationToken (moto)."""
    from pipeline_tools.commands.images_cmd import _registry
    from pipeline_tools.core.config import load
    from pipeline_tools.core.context import App
    from pipeline_tools.images.registry import EcrRegistry

    monkeypatch.delenv("PT_REGISTRY")
    app = App(stage="staging")
    app._config = load(project / "pipeline.yml")
    reg, creds, ecr = _registry(app, app.config())
    assert isinstance(reg, EcrRegistry) and reg.host == "111111111111.dkr.ecr.us-east-1.amazonaws.com"
    assert reg.account == "111111111111" and reg.ecr is ecr
    assert creds.username == "AWS" and creds.password
    assert ecr.meta.endpoint_url == aws.endpoint


def test_pt_test_unknown_image_is_a_usage_error_before_docker(project, run_pt, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    r = run_pt("test", "modle")
    assert r.exit_code == 2
    assert "unknown image 'modle'" in r.stderr and "did you mean 'model'?" in r.stderr
    assert "cannot reach Docker" not in r.stderr


def test_progress_lines_are_timestamped_in_ci_only(monkeypatch):
    import io
    import re

    from pipeline_tools.commands.images_cmd import _progress
    from pipeline_tools.core.context import App
    from pipeline_tools.core.output import Output

    app = App()
    app._out = Output("human", stdout=io.StringIO(), stderr=io.StringIO())
    monkeypatch.setenv("CI", "true")
    with _progress(app) as log:
        log("model: pushing")
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] model: pushing\n", app._out.stdout.getvalue())
    monkeypatch.delenv("CI")
    app._out = Output("human", stdout=io.StringIO(), stderr=io.StringIO())
    with _progress(app) as log:
        log("model: pushing")
    assert app._out.stdout.getvalue() == "model: pushing\n"
