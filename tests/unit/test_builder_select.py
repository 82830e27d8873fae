"""images/builder.py: which builder runs, what each is asked, what it cannot do (pure; fake CLI probes)."""

from __future__ import annotations

import subprocess

import pytest

from pipeline_tools.core.errors import UsageError
from pipeline_tools.images import builder as b


def fake_run(versions: dict[str, str], buildx: set[str]):
    def run(args, **_kw):
        cli = args[0]
        if args[1:3] == ["buildx", "version"]:
            ok = cli in buildx
            return subprocess.CompletedProcess(args, 0 if ok else 1, "github.com/docker/buildx v0.17.1\n" if ok else "",
                                               "" if ok else "unknown command")
        return subprocess.CompletedProcess(args, 0, versions.get(cli, "") + "\n", "")
    return run


@pytest.fixture
def clis(tmp_path):
    new, old = tmp_path / "docker28", tmp_path / "docker20"
    for p in (new, old):
        p.write_text("#!/bin/sh\n")
    return str(new), str(old)


def detect(wanted, clis, *, buildx=(), path_cli=0, env=None):
    new, old = clis
    run = fake_run({new: "28.2.2", old: "20.10.24+dfsg1"}, set(buildx))
    return b.detect(wanted, env={"PT_DOCKER_CLI": old, **(env or {})}, run=run,
                    which=lambda _n: (new, old)[path_cli])


def test_auto_prefers_buildx_then_classic(clis):
    new, _old = clis
    assert detect("auto", clis, buildx={new}).kind == "buildx"
    assert detect("auto", clis).kind == "classic"      # the daemon's BuildKit is opt-in


def test_buildkit_needs_a_cli_before_23(clis):
    new, old = clis
    got = detect("buildkit", clis)
    assert (got.kind, got.cli) == ("buildkit", old)
    with pytest.raises(UsageError, match="builder buildkit is not available"):
        b.detect("buildkit", env={}, run=fake_run({new: "28.2.2"}, set()), which=lambda _n: new)


def test_forced_buildx_missing_names_what_to_install(clis):
    with pytest.raises(UsageError) as e:
        detect("buildx", clis)
    assert "install docker buildx" in e.value.hint


def test_env_and_unknown_builder(clis):
    assert detect("", clis, env={"PT_BUILDER": "classic"}).kind == "classic"
    with pytest.raises(UsageError, match="unknown builder 'kaniko'"):
        detect("kaniko", clis)


@pytest.mark.parametrize(("kind", "opts", "message"), [
    ("classic", b.BuildOptions(provenance=True), "--provenance need docker buildx"),
    ("buildkit", b.BuildOptions(cache_to=("r/x:cache",), sbom=True), "--cache-to, --sbom need docker buildx"),
    ("classic", b.BuildOptions(cache_from=("r/x:1",)), "--cache-from need BuildKit"),
    ("classic", b.BuildOptions(secrets=("id=pip,src=/tmp/x",)), "--secret need BuildKit"),
])
def test_options_a_builder_cannot_honour_are_refused(kind, opts, message):
    with pytest.raises(UsageError, match=message):
        b.check_options(b.Builder(kind, "/usr/bin/docker"), opts)


def test_buildx_command_line_has_registry_cache_and_attestations():
    args = b.cli_args(b.Builder("buildx", "docker"), tag="r/m:t", dockerfile="Dockerfile",
                      build_args={"B": "2", "A": "1"}, target="prod", platform="linux/amd64", no_cache=False,
                      iidfile="/tmp/iid",
                      options=b.BuildOptions(cache_from=("r/m:cache",), cache_to=("r/m:cache",), provenance=True,
                                             sbom=True, network="host"))
    assert args[:4] == ["docker", "buildx", "build", "--load"] and args[-1] == "-"
    text = " ".join(args)
    assert "--build-arg A=1 --build-arg B=2" in text and "--target prod --platform linux/amd64" in text
    assert "--cache-from type=registry,ref=r/m:cache" in text
    assert "--cache-to type=registry,ref=r/m:cache,mode=max" in text
    assert "--provenance=mode=max" in text and "--sbom=true" in text and "--network host" in text


def test_builtin_buildkit_uses_inline_cache_and_no_attestation_flags():
    args = b.cli_args(b.Builder("buildkit", "/usr/bin/docker"), tag="r/m:t", dockerfile="df", build_args={},
                      target=None, platform=None, no_cache=True, iidfile="/i", options=b.BuildOptions(
                          cache_from=("r/m:old",)))
    assert args[:2] == ["/usr/bin/docker", "build"] and "--no-cache" in args
    assert "--cache-from r/m:old" in " ".join(args) and "BUILDKIT_INLINE_CACHE=1" in args
    assert not any(a.startswith("--provenance") for a in args)
    assert b.cli_env(b.Builder("buildkit", "x"), {})["DOCKER_BUILDKIT"] == "1"



@pytest.mark.parametrize("has_buildx", ["first", "none"])
def test_auto_asks_each_cli_only_for_buildx_and_stops_at_the_first(clis, has_buildx):
    """`auto` never needs the CLI version (a daemon round trip): one probe per CLI, and none after
    the first CLI that has buildx."""
    new, old = clis
    env, which = {"PT_DOCKER_CLI": old}, (lambda _n: new)
    candidates = b._cli_candidates(env, which)
    inner = fake_run({new: "28.2.2", old: "20.10.24+dfsg1"}, {old} if has_buildx == "first" else set())
    calls = []

    def run(args, **kw):
        calls.append(list(args))
        return inner(args, **kw)

    got = b.detect("auto", env=env, run=run, which=which)
    probed = candidates[:1] if has_buildx == "first" else candidates
    assert got.kind == ("buildx" if has_buildx == "first" else "classic")
    assert calls == [[c, "buildx", "version"] for c in probed]
