"""Distribution: the version comes from the release tag, and the wheel built from the repository works on
its own (entry point, version, package data) when installed into a clean virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SET_VERSION = ROOT / "scripts" / "set_version.py"


def _set_version(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(cwd / "scripts" / "set_version.py"), *args],
                          capture_output=True, text=True, timeout=60)


def _source_copy(dst: Path) -> Path:
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    shutil.copytree(ROOT / "pipeline_tools", dst / "pipeline_tools",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dst / "scripts").mkdir()
    shutil.copy2(SET_VERSION, dst / "scripts" / "set_version.py")
    return dst


@pytest.mark.parametrize("tag", ["v0.1", "1.2.3", "v1.2.3-dev", "v01.2.3", "", "v1.2.3 extra"])
def test_set_version_refuses_tags_that_are_not_releases(tmp_path, tag):
    src = _source_copy(tmp_path)
    before = (src / "pipeline_tools" / "__init__.py").read_text()
    proc = _set_version(tag, cwd=src)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "is not a release tag" in proc.stderr
    assert (src / "pipeline_tools" / "__init__.py").read_text() == before


def test_set_version_writes_the_tag_and_check_compares(tmp_path):
    src = _source_copy(tmp_path)
    assert _set_version("--check", "v9.8.7rc1", cwd=src).returncode == 1
    proc = _set_version("v9.8.7rc1", cwd=src)
    assert (proc.returncode, proc.stdout) == (0, "9.8.7rc1\n"), proc.stderr
    assert '__version__ = "9.8.7rc1"' in (src / "pipeline_tools" / "__init__.py").read_text()
    assert _set_version("--check", "v9.8.7rc1", cwd=src).returncode == 0


def test_set_version_source_records_the_release_commit(tmp_path):
    src = _source_copy(tmp_path)
    bad = _set_version("--source", "acme/pipeline-tools@main", "v1.0.0", cwd=src)
    assert bad.returncode == 2 and "--source 'acme/pipeline-tools@main'" in bad.stderr
    assert '__version__ = "1.0.0"' not in (src / "pipeline_tools" / "__init__.py").read_text()  # nothing written
    assert _set_version("--source", "acme/pipeline-tools@" + "d" * 40, "v1.0.0", cwd=src).returncode == 0
    text = (src / "pipeline_tools" / "__init__.py").read_text()
    assert '__version__ = "1.0.0"' in text and f'__toolkit_ref__ = "acme/pipeline-tools@{"d" * 40}"' in text


def test_repository_version_is_a_release_version():
    from pipeline_tools import __version__

    assert _set_version("--check", f"v{__version__}").returncode == 0


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_with_version_and_templates(tmp_path):
    (tmp_path / "src").mkdir()
    src = _source_copy(tmp_path / "src")
    release_ref = "acme/pipeline-tools@" + "e" * 40
    assert _set_version("--source", release_ref, "v9.8.7", cwd=src).returncode == 0
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(dist), "-q"],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    wheels = list(dist.glob("pipeline_tools-9.8.7-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())

    # The dependencies (click, boto3, …) come from this interpreter's site-packages so that no network is
    # needed; the package itself must come from the wheel, not from this checkout or an editable install.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=True).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    inst = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           str(wheels[0])], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    where = subprocess.run([str(bindir / "python"), "-c", "import pipeline_tools; print(pipeline_tools.__file__)"],
                           capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(env_dir), where.stdout + where.stderr

    ver = subprocess.run([str(bindir / "pt"), "--version"], capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path)
    assert (ver.returncode, ver.stdout.strip()) == (0, "pt 9.8.7"), ver.stderr

    repo = tmp_path / "newrepo"
    repo.mkdir()
    init = subprocess.run([str(bindir / "pt"), "init", "--project", "iris"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=repo)
    assert init.returncode == 0, init.stdout + init.stderr
    for path in ("pipeline.yml", "docker/model/Dockerfile", ".dockerignore",
                 ".github/workflows/pt-staging.yml", ".github/workflows/pt-prod.yml"):
        assert (repo / path).is_file(), path
    # no --toolkit-ref: the release's own commit (written by set_version.py --source) is the pin
    staging = (repo / ".github/workflows/pt-staging.yml").read_text()
    assert "iris-staging-github" in staging
    assert f"uses: {release_ref}  # pt-toolkit v9.8.7\n" in staging and 'version: "9.8.7"  # pt-toolkit' in staging


def _action_copy(dst: Path) -> Path:
    """The action's checkout as the runner has it: the repository at one commit (here: this worktree's files)."""
    dst.mkdir()
    _source_copy(dst)
    shutil.copy2(ROOT / "action.yml", dst / "action.yml")
    return dst


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.slow
def test_action_installs_pt_from_its_own_checkout_and_puts_it_on_path(tmp_path):
    from pipeline_tools import __version__
    from tests.composite import run_composite_action

    action = _action_copy(tmp_path / "action")
    env = _clean_env()
    run = run_composite_action(action, {"version": f"v{__version__}", "python": sys.executable},
                               runner_temp=tmp_path / "runner-temp", env=env, cwd=tmp_path)
    assert [p.returncode for p in run.procs] == [0], run.procs[-1].stdout + run.procs[-1].stderr
    assert run.outputs == {"install.version": __version__}
    assert run.path == [str(tmp_path / "runner-temp" / "pt-venv" / "bin")]
    # a later step of the job: `pt` resolves through the GITHUB_PATH entry, not this checkout
    later = run.env_with_path(env)
    ver = subprocess.run(["pt", "--version"], capture_output=True, text=True, env=later, cwd=tmp_path, timeout=60)
    assert (ver.returncode, ver.stdout.strip()) == (0, f"pt {__version__}"), ver.stderr
    assert shutil.which("pt", path=later["PATH"]) == str(tmp_path / "runner-temp" / "pt-venv" / "bin" / "pt")


@pytest.mark.slow
def test_action_fails_when_the_pinned_commit_is_not_the_expected_version(tmp_path):
    from tests.composite import run_composite_action

    action = _action_copy(tmp_path / "action")
    run = run_composite_action(action, {"version": "v99.0.0", "python": sys.executable},
                               runner_temp=tmp_path / "runner-temp", env=_clean_env(), cwd=tmp_path)
    proc = run.procs[-1]
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error title=pt version mismatch::the referenced commit is pt ")
    assert "upgrade-pipelines" in proc.stdout
    assert run.path == []  # nothing on PATH, the job stops here
