"""`pt init` writes a .dockerignore that keeps .git and secrets out of images; build contexts
that still hold a .git are found (buildctx.git_dirs, warned about by `pt build-push`);
`pt promote` takes --stage like every other command."""

from __future__ import annotations

from pipeline_tools.images import buildctx

from ..conftest import CONTRACT_CONFIG

TOOLKIT_REF = "acme/pipeline-tools@" + "a" * 40


def _tree(root, files):
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x\n")


SECRETS = [".git/config", ".git/HEAD", ".env", ".env.production", "deploy.pem", ".aws/credentials",
           "sub/__pycache__/m.cpython-311.pyc", ".pytest_cache/v/cache", ".venv/bin/python", "reports/junit.xml"]
KEPT = ["app.py", "requirements.txt", "model/model.json", "tests/test_app.py", "pipeline.yml"]


def test_init_dockerignore_keeps_git_secrets_and_caches_out_of_the_context(run_pt, tmp_path):
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF, "--output", "json")
    assert r.exit_code == 0, r
    assert ".dockerignore" in r.json()["written"]
    _tree(tmp_path, SECRETS + KEPT)
    ctx = buildctx.scan(tmp_path, tmp_path / "docker" / "model" / "Dockerfile")
    files = {e.path for e in ctx.entries if e.kind == "f"}
    assert files >= set(KEPT)
    assert files.isdisjoint(SECRETS)
    assert buildctx.git_dirs(ctx) == []


def test_init_keeps_an_existing_dockerignore_unless_forced(run_pt, tmp_path):
    (tmp_path / ".dockerignore").write_text("mine\n")
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF, "--output", "json")
    assert r.exit_code == 0, r  # an existing .dockerignore does not block init
    assert ".dockerignore" not in r.json()["written"] and r.json()["kept"] == [".dockerignore"]
    assert (tmp_path / ".dockerignore").read_text() == "mine\n"
    r = run_pt("init", "-C", tmp_path, "--project", "demo", "--toolkit-ref", TOOLKIT_REF, "--force", "--output", "json")
    assert r.exit_code == 0 and ".dockerignore" in r.json()["written"]
    assert ".git\n" in (tmp_path / ".dockerignore").read_text()


def test_git_dirs_finds_git_kept_by_the_context(tmp_path):
    _tree(tmp_path, [".git/config", "lib/vendored/.git/HEAD", "app.py", "Dockerfile"])
    ctx = buildctx.scan(tmp_path, tmp_path / "Dockerfile")
    assert buildctx.git_dirs(ctx) == [".git", "lib/vendored/.git"]
    (tmp_path / ".dockerignore").write_text("**/.git\n")
    assert buildctx.git_dirs(buildctx.scan(tmp_path, tmp_path / "Dockerfile")) == []
    (tmp_path / ".dockerignore").write_text(".git/config\n")  # the directory itself still goes in
    assert buildctx.git_dirs(buildctx.scan(tmp_path, tmp_path / "Dockerfile")) == [".git", "lib/vendored/.git"]


def test_promote_accepts_stage_as_the_name_of_to(run_pt):
    # an unknown stage is reported as such (the option parsed), for --stage, -s and --to alike
    for opt in ("--stage", "-s", "--to"):
        r = run_pt("promote", opt, "nope", "--config", CONTRACT_CONFIG, "--dry-run")
        assert r.exit_code == 2, r
        assert "nope" in r.stderr and "no such option" not in r.stderr.lower(), r
    r = run_pt("promote", "--config", CONTRACT_CONFIG)
    assert r.exit_code == 2 and "--to" in r.stderr and "--stage" in r.stderr
