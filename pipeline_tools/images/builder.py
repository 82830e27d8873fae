"""Which builder runs `docker build`: buildx, the daemon's built-in BuildKit, or the classic builder.

- **buildx** (`docker buildx version` works): BuildKit with registry cache import/export
  (`--cache-from/--cache-to type=registry,…`) and `--provenance`/`--sbom` attestations.
- **buildkit**: a docker CLI older than 23 with `DOCKER_BUILDKIT=1` uses the BuildKit built into the
  daemon (18.09+): cache mounts (`RUN --mount=type=cache`), secrets, inline cache
  (`--cache-from IMAGE` with `BUILDKIT_INLINE_CACHE=1`). CLIs from 23 on refuse BuildKit without
  buildx, so they do not count.
- **classic**: docker-py's `/build` API, always available (no cache mounts).

`auto` takes buildx when present, else classic (the daemon's BuildKit without buildx is opt-in:
`--builder buildkit`, because its output and cache semantics differ from what a pipeline saw before).
`PT_BUILDER` or `--builder` forces one; a forced builder that is not available is a usage error
naming what to install. The CLI is `PT_DOCKER_CLI`,
else `docker` on PATH, else `/usr/bin/docker` (Debian's docker.io).
Pure parts (`cli_args`) have no I/O; `detect` takes its `run` and `which`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline_tools.core.errors import UsageError

KINDS = ("auto", "buildx", "buildkit", "classic")


@dataclass(frozen=True)
class Builder:
    kind: str                   # buildx | buildkit | classic
    cli: str | None = None      # the docker CLI that runs it (None: docker-py)
    why: str = ""

    def describe(self) -> str:
        return {"buildx": f"BuildKit via docker buildx ({self.cli})",
                "buildkit": f"the daemon's BuildKit via {self.cli} (DOCKER_BUILDKIT=1)",
                "classic": "docker's classic builder (API)"}[self.kind]


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked of the builder beyond the plan (pt build-push options)."""

    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    provenance: bool = False
    sbom: bool = False
    network: str | None = None            # host when the daemon has no bridge network
    secrets: tuple[str, ...] = field(default=())   # id=NAME,src=FILE (BuildKit only)

    def needs(self) -> list[str]:
        """Options only buildx can honour, by their flag names."""
        return [flag for flag, on in (("--cache-to", bool(self.cache_to)), ("--provenance", self.provenance),
                                      ("--sbom", self.sbom)) if on]


Run = Callable[..., subprocess.CompletedProcess]


def _cli_candidates(env: dict, which: Callable[[str], str | None]) -> list[str]:
    out = []
    for c in (env.get("PT_DOCKER_CLI"), which("docker"), "/usr/bin/docker"):
        if c and c not in out and os.path.exists(c):
            out.append(c)
    return out


def _major(version: str) -> int | None:
    m = re.match(r"\s*(\d+)\.", version or "")
    return int(m[1]) if m else None


def detect(wanted: str = "auto", *, env: dict | None = None, run: Run = subprocess.run,
           which: Callable[[str], str | None] = shutil.which) -> Builder:
    env = dict(os.environ if env is None else env)
    wanted = (wanted or env.get("PT_BUILDER") or "auto").lower()
    if wanted not in KINDS:
        raise UsageError(f"unknown builder {wanted!r}", f"use one of: {', '.join(KINDS)} (--builder or PT_BUILDER)")
    if wanted == "classic":
        return Builder("classic", why="asked for")
    found: dict[str, Builder] = {}
    for cli in _cli_candidates(env, which):
        probe_env = {**env, "DOCKER_CLI_HINTS": "false"}
        try:
            bx = run([cli, "buildx", "version"], capture_output=True, text=True, timeout=20, env=probe_env)
            if bx.returncode == 0 and "buildx" not in found:
                found["buildx"] = Builder("buildx", cli, bx.stdout.strip().splitlines()[0] if bx.stdout else "")
            if wanted in ("auto", "buildx"):  # the CLI version matters only to `buildkit`
                if "buildx" in found:
                    break
                continue
            ver = run([cli, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                      timeout=20, env=probe_env)
        except (OSError, subprocess.TimeoutExpired):
            continue
        major = _major(ver.stdout)
        if major is not None and 18 < major < 23 and "buildkit" not in found:
            found["buildkit"] = Builder("buildkit", cli, f"docker CLI {ver.stdout.strip()}")
    if wanted == "auto":
        return found.get("buildx") or Builder("classic", why="no docker buildx")
    if wanted in found:
        return found[wanted]
    if wanted == "buildkit" and "buildx" in found:
        return found["buildx"]
    raise UsageError(f"builder {wanted} is not available here",
                     "install docker buildx (the docker-buildx package or plugin), or use a docker CLI < 23 "
                     "(set PT_DOCKER_CLI), or pass --builder auto")


def check_options(builder: Builder, options: BuildOptions) -> None:
    """Options the chosen builder cannot honour are refused up front, not silently dropped."""
    missing = options.needs() if builder.kind != "buildx" else []
    if missing:
        raise UsageError(f"{', '.join(missing)} need docker buildx (the builder here is {builder.kind})",
                         "install docker buildx, or leave out " + ", ".join(missing))
    if builder.kind == "classic" and (options.cache_from or options.secrets):
        flags = [f for f, on in (("--cache-from", options.cache_from), ("--secret", options.secrets)) if on]
        raise UsageError(f"{', '.join(flags)} need BuildKit (the builder here is classic)",
                         "pass --builder auto on a machine with buildx or a docker CLI < 23, or leave them out")


def cli_args(builder: Builder, *, tag: str, dockerfile: str, build_args: dict[str, str], target: str | None,
             platform: str | None, no_cache: bool, iidfile: str, options: BuildOptions) -> list[str]:
    """The docker CLI command line that builds from a context tar on stdin (`-`). Pure."""
    assert builder.cli is not None
    head = [builder.cli, "buildx", "build", "--load"] if builder.kind == "buildx" else [builder.cli, "build"]
    args = [*head, "--progress", "plain", "--tag", tag, "--file", dockerfile, "--iidfile", iidfile]
    for k, v in sorted(build_args.items()):
        args += ["--build-arg", f"{k}={v}"]
    if target:
        args += ["--target", target]
    if platform:
        args += ["--platform", platform]
    if no_cache:
        args.append("--no-cache")
    if options.network:
        args += ["--network", options.network]
    for ref in options.cache_from:
        args += ["--cache-from", ref if builder.kind != "buildx" or "=" in ref else f"type=registry,ref={ref}"]
    for ref in options.cache_to:
        args += ["--cache-to", ref if "=" in ref else f"type=registry,ref={ref},mode=max"]
    if builder.kind == "buildkit" and options.cache_from:
        args += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]   # the image carries its cache for the next build
    if builder.kind == "buildx":
        args.append(f"--provenance={'mode=max' if options.provenance else 'false'}")
        if options.sbom:
            args.append("--sbom=true")
    for s in options.secrets:
        args += ["--secret", s]
    args.append("-")
    return args


def cli_env(builder: Builder, env: dict | None = None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    if builder.kind == "buildkit":
        out["DOCKER_BUILDKIT"] = "1"
    out.setdefault("DOCKER_CLI_HINTS", "false")
    return out


_STEP_RE = re.compile(r"^#\d+ \[(?:[\w.-]+ )?\d+/\d+\] ")


def interesting(line: str) -> bool:
    """Lines worth a progress line: the steps themselves, not their output."""
    return bool(_STEP_RE.match(line)) and " DONE " not in line


def error_lines(lines: Sequence[str]) -> list[str]:
    return [ln for ln in lines if ln.startswith(("ERROR", "error:", "failed to", "executor failed"))
            or " ERROR" in ln[:20]]
