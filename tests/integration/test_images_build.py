"""`pt build-push` / `pt test` against the real dockerd and local registry (and moto for ECR).

Builds are tiny (a scratch-made local base plus a few files) because vfs storage makes every
layer a full copy; images and registry state are shared through module fixtures.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline_tools.core.config import load
from pipeline_tools.core.errors import NotFoundError
from pipeline_tools.images import images
from pipeline_tools.images.registry import Registry, ecr_credentials

pytestmark = pytest.mark.docker

RUN = uuid.uuid4().hex[:8]  # fresh repositories per run: the registry outlives the tests


@pytest.fixture(scope="module", autouse=True)
def _remove_images_of_this_run(docker_client):
    """vfs keeps a full copy per layer: drop what this run built (the registry keeps its copies)."""
    yield
    for img in docker_client.images.list():
        for ref in img.tags:
            if RUN in ref:
                try:
                    docker_client.images.remove(ref, force=True)
                except Exception:
                    pass


@pytest.fixture(scope="module")
def tiny_base(docker_client) -> str:
    """A local base image with one file, made with `docker import` (no Docker Hub)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = f"pt tiny base {RUN}\n".encode()
        info = tarfile.TarInfo("etc/pt-base")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    ref = f"pt-test/tiny-base:{RUN}"
    docker_client.api.import_image_from_data(buf.getvalue(), repository="pt-test/tiny-base", tag=RUN)
    yield ref
    docker_client.images.remove(ref, force=True)


def write_project(root: Path, project: str, dockerfile: str, files: dict[str, bytes], extra_image: str = "") -> Path:
    svc = root / "svc"
    svc.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        p = svc / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (svc / "Dockerfile").write_text(dockerfile)
    (root / "pipeline.yml").write_text(f"""\
project: {project}
region: us-east-1
images:
  app:
    context: svc
    dockerfile: svc/Dockerfile
{extra_image}stages:
  staging: {{account: "111111111111", branch: integration, gate: {{alarms: ["{project}-staging-*"]}}}}
""")
    return root / "pipeline.yml"


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, tiny_base, registry, docker_client):
    """A project whose image was pushed once by `pt build-push` (the first run of the flow)."""
    root = tmp_path_factory.mktemp("proj")
    config = write_project(root, f"ptimg{RUN}", f"FROM {tiny_base}\nCOPY weights.bin /w.bin\nCOPY app.txt /app.txt\n",
                           {"weights.bin": os.urandom(2_000_000), "app.txt": b"v1\n"})
    return {"root": root, "config": config, "repo": f"ptimg{RUN}-app"}


def pt_json(run_pt, config, *args):
    r = run_pt("build-push", "--config", config, "--output", "json", *args)
    assert r.exit_code == 0, r
    return r.json()["images"]


def test_first_push_then_skip_then_extra_tag(pushed, run_pt, registry, monkeypatch, tmp_path):
    monkeypatch.setenv("PT_REGISTRY", registry)
    reg = Registry(registry)
    (dry,) = pt_json(run_pt, pushed["config"], "--dry-run")
    assert dry["status"] == "would-build" and reg.manifest_digest(pushed["repo"], dry["tag"]) is None

    (first,) = pt_json(run_pt, pushed["config"])
    assert first["status"] == "built" and first["tag"] == dry["tag"]
    assert first["repository"] == f"{registry}/{pushed['repo']}"
    assert first["digest"] == reg.manifest_digest(pushed["repo"], first["tag"])
    assert first["image_uri"] == f"{registry}/{pushed['repo']}@{first['digest']}"
    assert first["bytes_pushed"] > 1_900_000  # the random weights do not compress

    gh_out = tmp_path / "gh_output"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(gh_out))
    (second,) = pt_json(run_pt, pushed["config"], "--tag", f"sha-{RUN}")
    assert second["status"] == "skipped" and second["bytes_pushed"] == 0
    assert second["digest"] == first["digest"]
    assert second["seconds"] < 3
    assert reg.manifest_digest(pushed["repo"], f"sha-{RUN}") == first["digest"]
    assert f"image_uri={first['image_uri']}" in gh_out.read_text()
    pushed["first"] = first


def test_one_changed_file_pushes_only_its_layer(pushed, run_pt, registry, monkeypatch):
    if "first" not in pushed:
        pytest.skip("needs test_first_push_then_skip_then_extra_tag")
    monkeypatch.setenv("PT_REGISTRY", registry)
    (pushed["root"] / "svc" / "app.txt").write_bytes(b"v2\n")
    (third,) = pt_json(run_pt, pushed["config"])
    assert third["status"] == "built" and third["tag"] != pushed["first"]["tag"]
    assert 0 < third["bytes_pushed"] < 50_000  # the 2 MB weights layer is already there


def test_build_error_names_the_step_and_pushes_nothing(tmp_path, tiny_base, registry, run_pt, monkeypatch):
    monkeypatch.setenv("PT_REGISTRY", registry)
    config = write_project(tmp_path, f"pterr{RUN}", f"FROM {tiny_base}\nCOPY app.txt /\nCOPY missing.txt /\n",
                           {"app.txt": b"x"})
    r = run_pt("build-push", "--config", config)
    assert r.exit_code == 1, r
    first = r.stderr.splitlines()[0]
    assert "build failed at step 3/3 (COPY missing.txt /)" in first, r.stderr
    assert "Traceback" not in r.stderr
    tag = images.plan_image(load(config), "app", docker=images.connect_docker(), registry_host=registry).tag
    assert Registry(registry).manifest_digest(f"pterr{RUN}-app", tag) is None


def test_dockerignore_excluding_the_dockerfile(tmp_path, tiny_base, registry, docker_client, monkeypatch, run_pt):
    import docker

    monkeypatch.setenv("PT_REGISTRY", registry)
    config = write_project(tmp_path, f"ptign{RUN}", f"FROM {tiny_base}\nCOPY . /ctx/\n",
                           {"app.txt": b"x", ".dockerignore": b"Dockerfile\n.dockerignore\n"})
    (res,) = pt_json(run_pt, config)
    assert res["status"] == "built"
    c = docker_client.containers.create(f"{registry}/ptign{RUN}-app:{res['tag']}", command=["none"])
    try:
        stream, _ = c.get_archive("/ctx/app.txt")
        assert b"".join(stream)
        for hidden in ("/ctx/Dockerfile", "/ctx/.dockerignore"):
            with pytest.raises(docker.errors.NotFound):
                c.get_archive(hidden)
    finally:
        c.remove(force=True)


def test_registry_unreachable(pushed, run_pt, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("PT_REGISTRY", f"127.0.0.1:{free_port()}")
    r = run_pt("build-push", "--config", pushed["config"])
    assert r.exit_code == 1
    assert "cannot reach registry http://127.0.0.1:" in r.stderr.splitlines()[0]


def test_registry_auth_failure(pushed, run_pt, monkeypatch):
    class Deny(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PT_REGISTRY", f"127.0.0.1:{server.server_address[1]}")
        r = run_pt("build-push", "--config", pushed["config"])
    finally:
        server.shutdown()
        server.server_close()
    assert r.exit_code == 1
    assert "authentication failed for repository" in r.stderr.splitlines()[0]


def test_interrupted_push_is_completed_by_rerun(tmp_path, tiny_base, registry, docker_client):
    """Built but never pushed (the state after an interrupted push): no tag exists; a re-run pushes it."""
    config = write_project(tmp_path, f"ptint{RUN}", f"FROM {tiny_base}\nCOPY app.txt /\n", {"app.txt": b"int"})
    cfg = load(config)
    plan = images.plan_image(cfg, "app", docker=docker_client, registry_host=registry)
    images.build_image(docker_client, plan, log=lambda s: None)
    reg = Registry(registry)
    assert reg.manifest_digest(plan.repo, plan.tag) is None  # the tag never points at a partial image
    lines: list[str] = []
    (res,) = images.build_push(cfg, [], docker=docker_client, registry=reg, log=lines.append)
    assert res.status == "built" and res.digest == reg.manifest_digest(plan.repo, plan.tag)
    assert any("built already, pushing" in ln for ln in lines)


def test_ecr_auth_and_repository_check_with_moto(aws, tmp_path, tiny_base, registry, docker_client):
    """ECR: token + repository check against moto; the bytes go to the local registry."""
    project = f"ptecr{RUN}"
    config = write_project(tmp_path, project, f"FROM {tiny_base}\nCOPY app.txt /\n", {"app.txt": b"ecr"})
    cfg = load(config)
    ecr = aws.client("ecr")
    creds = ecr_credentials(ecr, "111111111111")
    assert creds.username == "AWS" and creds.password
    reg = Registry(registry, creds)
    with pytest.raises(NotFoundError) as e:
        images.build_push(cfg, ["app"], docker=docker_client, registry=reg, credentials=creds, ecr=ecr,
                          stage="staging")
    assert f"ECR repository {project}-app does not exist" in e.value.message
    assert f"{project}-staging-stage" in e.value.hint
    ecr.create_repository(repositoryName=f"{project}-app")
    (res,) = images.build_push(cfg, ["app"], docker=docker_client, registry=reg, credentials=creds, ecr=ecr,
                               stage="staging")
    assert res.status == "built" and res.digest.startswith("sha256:")


@pytest.fixture(scope="module")
def lambda_base(lambda_base_image) -> str:
    return lambda_base_image


def test_pt_test_runs_in_the_image_without_network(tmp_path, lambda_base, registry, run_pt, monkeypatch,
                                                   docker_client):
    monkeypatch.setenv("PT_REGISTRY", registry)
    tests = (b"import os\n\n"
             b"def test_network_is_off():\n    assert sorted(os.listdir('/sys/class/net')) == ['lo']\n\n"
             b"def test_fails():\n    assert 1 == 2\n")
    # one step: the lambda base has WORKDIR /var/task already (every vfs step copies the whole base)
    config = write_project(tmp_path, f"pttest{RUN}", f"FROM {lambda_base}\nCOPY . /var/task/\n",
                           {"tests/test_x.py": tests},
                           extra_image='    test_command: ["python3", "-m", "pytest", "-q", "tests"]\n')
    # the CI flow: build-push, then `pt test` elsewhere pulls the pushed image (only its own layer)
    (pushed_img,) = pt_json(run_pt, config)
    ref = f"{pushed_img['repository']}:{pushed_img['tag']}"
    docker_client.images.remove(ref)
    junit = tmp_path / "out" / "junit.xml"
    r = run_pt("test", "app", "--config", config, "--junit", junit, "--output", "json")
    assert r.exit_code == 1, r
    assert f"pulling {ref}" in r.stderr
    rep = r.json()
    assert rep["summary"] == "1 passed, 1 failed"
    assert rep["exit_code"] == 1 and junit.exists() and "test_fails" in junit.read_text()
    assert "assert 1 == 2" in r.stderr  # the test output streamed (stderr in json mode)


def test_dockerignore_matches_the_docker_cli(tmp_path, tiny_base, docker_client):
    """Oracle test: the files `docker build` (CLI) sends equal the files pt hashes and sends."""
    import subprocess

    from pipeline_tools.images.buildctx import scan

    files = {"app.py": b"a", "README.md": b"r", "CHANGES.md": b"c", "docs/keep.txt": b"k", "docs/drop.txt": b"d",
             "pkg/__pycache__/m.pyc": b"p", "pkg/m.py": b"m", "pkg/deep/x.log": b"l", "x.log": b"l",
             "data/raw/a.csv": b"1", "data/clean/b.csv": b"2", "file1.txt": b"1", "fileA.txt": b"A",
             "sp ace.txt": b"s", "Dockerfile": f"FROM {tiny_base}\nCOPY . /ctx/\n".encode()}
    for rel, data in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (tmp_path / ".dockerignore").write_text(
        "# comment\n*.md\n!README.md\ndocs\n!docs/keep.txt\n**/__pycache__\n**/*.log\n!pkg/deep/*.log\n"
        "data/*/b.csv\nfile[0-9].txt\n/sp?ace.txt\n")
    ref = f"pt-test/oracle:{RUN}"
    subprocess.run(["docker", "build", "-q", "-t", ref, str(tmp_path)], check=True, capture_output=True)
    c = docker_client.containers.create(ref, command=["none"])
    try:
        stream, _ = c.get_archive("/ctx")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            in_image = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    finally:
        c.remove(force=True)
        docker_client.images.remove(ref, force=True)
    ours = {e.path for e in scan(tmp_path, tmp_path / "Dockerfile").entries if e.kind == "f"}
    assert in_image == ours
    assert "pkg/deep/x.log" in ours and "x.log" not in ours and "docs/keep.txt" in ours


# --- BuildKit (the daemon's, through a docker CLI < 23; buildx where installed) -----------------------


def test_buildkit_builder_builds_cache_mounts_pushes_and_skips(tmp_path, base_image, registry, run_pt, monkeypatch):
    """`RUN --mount=type=cache` exists only in BuildKit: the classic builder refuses the same file."""
    monkeypatch.setenv("PT_REGISTRY", registry)
    dockerfile = (f"FROM {base_image}\nRUN --mount=type=cache,target=/root/.cache echo built > /built.txt\n"
                  "COPY app.txt /app.txt\n")
    config = write_project(tmp_path, f"ptbk{RUN}", dockerfile, {"app.txt": b"bk\n"})
    r = run_pt("build-push", "--config", config, "--builder", "buildkit", "--output", "json")
    assert r.exit_code == 0, r
    out = r.json()
    (img,) = out["images"]
    assert out["builder"] == "buildkit" and img["status"] == "built"
    assert Registry(registry).manifest_digest(f"ptbk{RUN}-app", img["tag"]) == img["digest"]
    again = run_pt("build-push", "--config", config, "--builder", "buildkit", "--output", "json")
    assert again.exit_code == 0 and again.json()["images"][0]["status"] == "skipped"
    (tmp_path / "svc" / "app.txt").write_bytes(b"classic\n")   # a new tag: the classic builder must build
    classic = run_pt("build-push", "--config", config, "--builder", "classic")
    assert classic.exit_code == 1 and "--mount" in classic.stderr and "Traceback" not in classic.stderr


def test_buildkit_build_error_is_one_line_and_pushes_nothing(tmp_path, base_image, registry, run_pt, monkeypatch):
    monkeypatch.setenv("PT_REGISTRY", registry)
    config = write_project(tmp_path, f"ptbkerr{RUN}", f"FROM {base_image}\nCOPY missing.txt /\n", {"app.txt": b"x"})
    r = run_pt("build-push", "--config", config, "--builder", "buildkit")
    assert r.exit_code == 1, r
    assert r.stderr.splitlines()[0].startswith("error: app: build failed: ") and "missing.txt" in r.stderr
    assert "Traceback" not in r.stderr
