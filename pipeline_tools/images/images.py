"""`pt build-push` and `pt test`: content-addressed image builds, registry skips, tests in the image.

Flow per image: scan the context (.dockerignore) → resolve FROM images → content tag → one
HEAD to the registry → skip, or build (docker SDK) → push → digest from the registry.
A tag only ever appears in the registry when its manifest is written, which happens after every
layer is uploaded: an interrupted push leaves no tag, and re-running completes it.
"""

from __future__ import annotations

import difflib
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import DockerError, NotFoundError, PtError, UsageError
from pipeline_tools.images import buildctx
from pipeline_tools.images.registry import Credentials, Registry

BUILD_ERROR_LINES = 30
Log = Callable[[str], None]


class BuildFailed(DockerError):
    """A docker build step failed; carries the step and the tail of its output."""

    def __init__(self, message: str, output: Sequence[str], hint: str | None = None):
        super().__init__(message, hint)
        self.output = list(output)

    def lines(self) -> list[str]:
        return [self.message, *(f"  | {ln}" for ln in self.output)]


# --- docker connection -------------------------------------------------------------------------


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect_docker(timeout: float = 600):
    """A docker client that has answered a ping, or one clear DockerError."""
    try:
        import docker

        client = docker.from_env(timeout=10)  # a blackholed DOCKER_HOST fails fast
        client.ping()
        client.api.timeout = timeout  # builds and pushes may be slow
        return client
    except Exception as e:
        if isinstance(e, PtError):
            raise
        raise DockerError(f"cannot reach Docker at {docker_host()}: start Docker or set DOCKER_HOST",
                          "locally: `source scripts/services.sh`") from None


# --- planning -------------------------------------------------------------------------------------


@dataclass
class ImagePlan:
    name: str
    registry: str  # host[:port]
    repo: str  # repository name in the registry
    tag: str
    context: Path
    dockerfile: Path
    build_args: dict[str, str]
    target: str | None
    platform: str | None
    bases: dict[str, str]
    ctx: buildctx.BuildContext = field(repr=False)
    hash_seconds: float = 0.0

    @property
    def repository(self) -> str:
        return f"{self.registry}/{self.repo}"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass
class ImageResult:
    name: str
    repository: str
    tag: str
    digest: str | None
    image_uri: str | None
    status: str  # built | skipped | would-build | would-skip
    seconds: float
    bytes_pushed: int
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_images(cfg, requested: Iterable[str]) -> list[str]:
    requested = list(requested)
    if not requested:
        return list(cfg.images)
    for name in requested:
        if name not in cfg.images:
            match = difflib.get_close_matches(name, list(cfg.images), n=1, cutoff=0.5)
            hint = f"did you mean '{match[0]}'?" if match else f"images in pipeline.yml: {', '.join(cfg.images)}"
            raise UsageError(f"unknown image '{name}'", hint)
    return list(dict.fromkeys(requested))


def split_reference(ref: str) -> tuple[str, str, str]:
    """docker reference → (registry host, repository, tag), with docker's Docker Hub defaults."""
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "registry-1.docker.io", name if rest else f"library/{name}", tag


def resolve_bases(docker, images: Iterable[str], *, remote: bool = True,
                  timeout: float = 5.0) -> dict[str, str]:
    """FROM image → a content identity.

    The digest pinned in the reference; else the local image ID (what the build will use); else
    the registry's manifest digest (one HEAD, anonymous token if asked); else "unresolved" (the
    tag then follows the name only, and the build pulls the image).
    """
    out: dict[str, str] = {}
    for ref in images:
        if "@sha256:" in ref:
            out[ref] = ref.split("@", 1)[1]
            continue
        try:
            out[ref] = docker.images.get(ref).id
            continue
        except Exception as e:
            if type(e).__name__ not in ("ImageNotFound", "NotFound"):
                raise
        out[ref] = "unresolved"
        if remote:
            host, repo, tag = split_reference(ref)
            reg = Registry(host, timeout=timeout)
            try:
                out[ref] = reg.manifest_digest(repo, tag) or "unresolved"
            except PtError:
                pass
            finally:
                reg.close()
    return out


def plan_image(cfg, name: str, *, docker, registry_host: str, extra_build_args: Mapping[str, str] | None = None,
               platform: str | None = None, progress: buildctx.Progress | None = None,
               clock: Callable[[], float] = time.time) -> ImagePlan:
    img = cfg.images[name]
    base = cfg.base_dir
    context = (base / img.context).resolve() if not Path(img.context).is_absolute() else Path(img.context)
    dockerfile = (base / img.dockerfile) if not Path(img.dockerfile).is_absolute() else Path(img.dockerfile)
    t0 = clock()
    ctx = buildctx.scan(context, dockerfile)
    build_args = {**img.build_args, **(extra_build_args or {})}
    plat = platform or img.platform
    bases = resolve_bases(docker, buildctx.base_images(ctx.dockerfile_bytes.decode("utf-8", "replace"), build_args))
    content = buildctx.content_digest(ctx, progress)
    tag = buildctx.build_tag(content, ctx.dockerfile_bytes, build_args, img.target, plat, bases)
    return ImagePlan(name=name, registry=registry_host, repo=cfg.ecr_repository(name), tag=tag, context=context,
                     dockerfile=dockerfile, build_args=build_args, target=img.target, platform=plat, bases=bases,
                     ctx=ctx, hash_seconds=clock() - t0)


# --- build -----------------------------------------------------------------------------------------


def build_image(docker, plan: ImagePlan, *, log: Log, no_cache: bool = False, builder=None, options=None) -> str:
    """Build `plan` tagged `plan.ref`; return the image ID. Failures raise BuildFailed.
    `builder` (images/builder.py) picks buildx / the daemon's BuildKit through the docker CLI; None or
    classic uses docker-py's API."""
    if builder is not None and builder.kind != "classic":
        return _build_with_cli(plan, builder=builder, options=options, log=log, no_cache=no_cache)
    import docker as docker_mod

    with tempfile.TemporaryFile(prefix="pt-context-") as fh:
        size_mb = plan.ctx.total_bytes / 1e6
        if size_mb > 50:
            log(f"{plan.name}: sending build context ({size_mb:.0f} MB)")
        df_name = buildctx.write_tar(plan.ctx, fh)
        fh.seek(0)
        step = "(before the first step)"
        tail: deque[str] = deque(maxlen=BUILD_ERROR_LINES)
        image_id = None
        try:
            events = docker.api.build(fileobj=fh, custom_context=True, tag=plan.ref, dockerfile=df_name,
                                      buildargs=plan.build_args or None, target=plan.target, platform=plan.platform,
                                      nocache=no_cache, rm=True, forcerm=True, pull=False, decode=True)
            for ev in events:
                if "error" in ev or "errorDetail" in ev:
                    msg = (ev.get("errorDetail") or {}).get("message") or ev.get("error") or "build failed"
                    raise BuildFailed(f"{plan.name}: build failed at {step}: {msg.strip()}", list(tail),
                                      f"fix the Dockerfile step or the context ({plan.dockerfile})")
                if "aux" in ev and isinstance(ev["aux"], dict) and ev["aux"].get("ID"):
                    image_id = ev["aux"]["ID"]
                text = ev.get("stream")
                if not text:
                    continue
                for line in text.rstrip("\n").splitlines():
                    if line.startswith("Step "):
                        step = line.split(" : ", 1)[0].replace("Step ", "step ") + " (" + line.split(" : ", 1)[-1] + ")"
                        tail.clear()
                        log(f"{plan.name}: {line}")
                    elif line.strip():
                        tail.append(line)
                        if line.startswith("Successfully built "):
                            image_id = image_id or line.split()[-1]
        except docker_mod.errors.APIError as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise BuildFailed(f"{plan.name}: docker rejected the build: {explanation}", list(tail),
                              f"check {plan.dockerfile}, its build args and target") from None
    if image_id is None:
        image_id = docker.images.get(plan.ref).id
    return image_id


def _build_with_cli(plan: ImagePlan, *, builder, options, log: Log, no_cache: bool) -> str:
    """`docker [buildx] build -` with the same context tar the API path sends; image ID from --iidfile."""
    import subprocess

    from pipeline_tools.images import builder as b

    options = options or b.BuildOptions()
    tail: deque[str] = deque(maxlen=BUILD_ERROR_LINES)
    with tempfile.TemporaryFile(prefix="pt-context-") as fh, tempfile.TemporaryDirectory(prefix="pt-iid-") as tmp:
        df_name = buildctx.write_tar(plan.ctx, fh)
        fh.seek(0)
        iidfile = os.path.join(tmp, "iid")
        args = b.cli_args(builder, tag=plan.ref, dockerfile=df_name, build_args=plan.build_args, target=plan.target,
                          platform=plan.platform, no_cache=no_cache, iidfile=iidfile, options=options)
        log(f"{plan.name}: building with {builder.describe()}")
        try:
            proc = subprocess.Popen(args, stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=b.cli_env(builder), errors="replace")
        except OSError as e:
            raise BuildFailed(f"{plan.name}: cannot run {builder.cli}: {e.strerror or e}", [],
                              "pass --builder classic, or fix PT_DOCKER_CLI") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            tail.append(line)
            if b.interesting(line):
                log(f"{plan.name}: {line.split(' ', 1)[1]}")
        rc = proc.wait()
        if rc != 0:
            errors = b.error_lines(list(tail))
            why = errors[-1] if errors else f"{builder.cli} exited with {rc}"
            raise BuildFailed(f"{plan.name}: build failed: {why}", list(tail),
                              f"fix the Dockerfile step or the context ({plan.dockerfile})")
        with open(iidfile, encoding="utf-8") as f:
            return f.read().strip()


# --- push --------------------------------------------------------------------------------------------


def push_image(docker, plan: ImagePlan, tag: str, *, credentials: Credentials | None,
               log: Log) -> tuple[str | None, int]:
    """docker push `repository:tag`; return (digest from the push, bytes uploaded)."""
    layers: dict[str, int] = {}
    pushed: set[str] = set()
    digest = None
    last_report = 0.0
    events = docker.api.push(plan.repository, tag=tag, stream=True, decode=True,
                             auth_config=credentials.auth_config() if credentials else None)
    for ev in events:
        if "error" in ev or "errorDetail" in ev:
            msg = (ev.get("errorDetail") or {}).get("message") or ev.get("error")
            hint = "re-run `pt build-push`: layers already uploaded are kept and the tag is only written last"
            if "denied" in str(msg).lower() or "unauthorized" in str(msg).lower():
                hint = "check registry credentials (ECR: ecr:InitiateLayerUpload/PutImage permissions)"
            raise DockerError(f"{plan.name}: push of {plan.repository}:{tag} failed: {msg}", hint)
        status = ev.get("status", "")
        layer = ev.get("id")
        if layer and status == "Pushing":
            cur = (ev.get("progressDetail") or {}).get("current") or 0
            layers[layer] = max(layers.get(layer, 0), cur)
            now = time.monotonic()
            if now - last_report > 2:
                last_report = now
                log(f"{plan.name}: pushing {sum(layers.values()) / 1e6:.1f} MB")
        elif layer and status == "Pushed":
            pushed.add(layer)
        aux = ev.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = aux["Digest"]
    return digest, sum(v for k, v in layers.items() if k in pushed)


# --- the verb -------------------------------------------------------------------------------------


def build_push(cfg, images: Sequence[str], *, docker, registry: Registry, credentials: Credentials | None = None,
               ecr=None, stage: str | None = None, extra_tags: Sequence[str] = (), extra_build_args=None,
               platform: str | None = None, no_cache: bool = False, dry_run: bool = False, log: Log = lambda s: None,
               clock: Callable[[], float] = time.time, warn: Log | None = None, builder=None,
               build_options=None) -> list[ImageResult]:
    """Build and push every image in `images` the registry lacks; skip the rest.
    `warn` gets one line per image whose context holds a `.git` (default: `log`)."""
    results = []
    for name in select_images(cfg, images):
        t0 = clock()
        plan = plan_image(cfg, name, docker=docker, registry_host=registry.host, extra_build_args=extra_build_args,
                          platform=platform, clock=clock, progress=_throttled(log, f"{name}: hashing context", clock))
        leaked = buildctx.git_dirs(plan.ctx)
        if leaked:
            (warn or log)(f"{name}: build context {plan.context} sends {', '.join(leaked)} to docker (history, "
                          "and on CI possibly the checkout token); add `.git` to its .dockerignore")
        log(f"{name}: tag {plan.tag} ({len(plan.ctx.entries)} context entries, "
            f"{plan.ctx.total_bytes / 1e6:.1f} MB hashed in {plan.hash_seconds:.2f}s)")
        digest = registry.manifest_digest(plan.repo, plan.tag)
        if dry_run:
            status = "would-skip" if digest else "would-build"
            results.append(_result(plan, digest, status, clock() - t0, 0, [plan.tag, *extra_tags]))
            continue
        bytes_pushed = 0
        if digest:
            log(f"{name}: {plan.repository}:{plan.tag} is in the registry, skipped")
            status = "skipped"
        else:
            if ecr is not None:
                _check_ecr_repository(ecr, cfg, plan, stage)
            if _local_image(docker, plan.ref) and not no_cache:
                log(f"{name}: {plan.ref} built already, pushing")
            else:
                build_image(docker, plan, log=log, no_cache=no_cache, builder=builder, options=build_options)
            log(f"{name}: pushing {plan.ref}")
            pushed_digest, bytes_pushed = push_image(docker, plan, plan.tag, credentials=credentials, log=log)
            # Confirm with the registry; by digest, so a concurrent push of the same inputs (which
            # may move the tag to its own, equally complete, manifest) cannot change our answer.
            digest = registry.manifest_digest(plan.repo, pushed_digest or plan.tag)
            if digest is None:
                raise DockerError(f"{name}: pushed {plan.ref} but the registry does not list it",
                                  "re-run `pt build-push`; check the registry's storage")
            status = "built"
        for extra in extra_tags:
            existing = registry.manifest_digest(plan.repo, extra)
            if existing != digest:
                registry.retag(plan.repo, digest, extra)
        results.append(_result(plan, digest, status, clock() - t0, bytes_pushed, [plan.tag, *extra_tags]))
        log(f"{name}: {status} {plan.repository}@{digest} in {clock() - t0:.1f}s"
            + (f", {bytes_pushed / 1e6:.1f} MB pushed" if status == "built" else ""))
    return results


def _throttled(log: Log, prefix: str, clock: Callable[[], float], every: float = 2.0) -> buildctx.Progress:
    """Progress for big contexts: one line every `every` seconds, none for small ones."""
    start = clock()
    last = [start]

    def progress(done: int) -> None:
        now = clock()
        if now - last[0] >= every:
            last[0] = now
            log(f"{prefix}: {done / 1e6:.0f} MB ({done / 1e6 / max(now - start, 1e-9):.0f} MB/s)")

    return progress


def _result(plan: ImagePlan, digest: str | None, status: str, seconds: float, bytes_pushed: int,
            tags: list[str]) -> ImageResult:
    return ImageResult(name=plan.name, repository=plan.repository, tag=plan.tag, digest=digest,
                       image_uri=f"{plan.repository}@{digest}" if digest else None, status=status,
                       seconds=round(seconds, 3), bytes_pushed=bytes_pushed, tags=list(dict.fromkeys(tags)))


def _local_image(docker, ref: str) -> bool:
    try:
        docker.images.get(ref)
        return True
    except Exception as e:
        if type(e).__name__ in ("ImageNotFound", "NotFound"):
            return False
        raise


def _check_ecr_repository(ecr, cfg, plan: ImagePlan, stage: str | None) -> None:
    from pipeline_tools.core.aws import client_error_code

    try:
        ecr.describe_repositories(repositoryNames=[plan.repo])
    except Exception as e:
        if client_error_code(e) != "RepositoryNotFoundException":
            raise
        stage = stage or next(iter(cfg.stages))
        stack = names.stage_stack(cfg.project, stage)
        raise NotFoundError(f"ECR repository {plan.repo} does not exist in {plan.registry}",
                            f"the stack {stack} creates it: deploy it first (npx cdk deploy {stack})") from None


# --- pt test ---------------------------------------------------------------------------------------

JUNIT_IN_CONTAINER = "/tmp/pt-test/junit.xml"


@dataclass
class ImageTestReport:
    image: str
    image_ref: str
    exit_code: int
    passed: int
    failed: int
    errors: int
    skipped: int
    junit: str | None
    seconds: float

    @property
    def summary(self) -> str:
        s = f"{self.passed} passed, {self.failed} failed"
        if self.errors:
            s += f", {self.errors} errors"
        if self.skipped:
            s += f", {self.skipped} skipped"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


def container_test_command(cfg, name: str, extra_args: Sequence[str]) -> tuple[list[str], bool]:
    """The command run in the container and whether pt injected --junitxml (pytest commands)."""
    cmd = cfg.images[name].test_command
    if not cmd:
        raise UsageError(f"image '{name}' has no test_command",
                         f"add `test_command: [python, -m, pytest, -q, tests]` under images.{name} in pipeline.yml")
    cmd = [*cmd, *extra_args]
    is_pytest = any(Path(part).name.startswith("pytest") or part == "pytest" for part in cmd[:3])
    if is_pytest and not any(a.startswith("--junitxml") or a.startswith("--junit-xml") for a in cmd):
        return [*cmd, f"--junitxml={JUNIT_IN_CONTAINER}", "-p", "no:cacheprovider"], True
    return cmd, False


def run_tests(cfg, name: str, *, docker, registry_host: str, junit_path: str | os.PathLike,
              extra_args: Sequence[str] = (), registry: Registry | None = None,
              credentials: Credentials | None = None, log: Log = lambda s: None, output: Log = lambda s: None,
              clock: Callable[[], float] = time.time) -> ImageTestReport:
    """Run the image's test_command in the image, network off.

    The image is the content-tagged one: local if present, else pulled when the registry has it
    (a CI job after `pt build-push`), else built here (not pushed).
    """
    (name,) = select_images(cfg, [name])
    t0 = clock()
    cmd, _ = container_test_command(cfg, name, extra_args)
    plan = plan_image(cfg, name, docker=docker, registry_host=registry_host, clock=clock)
    if not _local_image(docker, plan.ref) and not _pull_if_pushed(docker, plan, registry, credentials, log):
        log(f"{name}: {plan.ref} is neither here nor in the registry; building it")
        build_image(docker, plan, log=log)
    log(f"{name}: running {' '.join(cmd)} in {plan.ref} (network off)")
    container = docker.containers.create(plan.ref, entrypoint=cmd[:1], command=cmd[1:], network_mode="none",
                                         environment={"PT_JUNIT_XML": JUNIT_IN_CONTAINER, "CI": "true"},
                                         detach=True)
    try:
        container.start()
        buf = b""
        for chunk in container.logs(stream=True, follow=True):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ln in lines:
                output(ln.decode("utf-8", "replace"))
        if buf:
            output(buf.decode("utf-8", "replace"))
        code = int(container.wait().get("StatusCode", 1))
        junit = _copy_junit(container, Path(junit_path))
    finally:
        container.remove(force=True)
    counts = _junit_counts(junit) if junit else None
    if counts is None:
        passed, failed, errors, skipped = (0, 0 if code == 0 else 1, 0, 0)
    else:
        passed, failed, errors, skipped = counts
    return ImageTestReport(image=name, image_ref=plan.ref, exit_code=code, passed=passed, failed=failed, errors=errors,
                      skipped=skipped, junit=str(junit) if junit else None, seconds=round(clock() - t0, 3))


def _pull_if_pushed(docker, plan: ImagePlan, registry: Registry | None, credentials: Credentials | None,
                    log: Log) -> bool:
    if registry is None:
        return False
    try:
        digest = registry.manifest_digest(plan.repo, plan.tag)
    except PtError as e:
        log(f"{plan.name}: registry check skipped ({e.message})")
        return False
    if not digest:
        return False
    log(f"{plan.name}: pulling {plan.ref} ({digest})")
    docker.api.pull(plan.repository, tag=plan.tag, auth_config=credentials.auth_config() if credentials else None)
    return _local_image(docker, plan.ref)


def _copy_junit(container, dest: Path) -> Path | None:
    import io
    import tarfile

    try:
        stream, _ = container.get_archive(JUNIT_IN_CONTAINER)
    except Exception as e:
        if type(e).__name__ == "NotFound":
            return None
        raise
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        if member is None:
            return None
        extracted = tar.extractfile(member)
        assert extracted is not None
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(extracted.read())
    return dest


def _junit_counts(path: Path) -> tuple[int, int, int, int] | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failures = errors = skipped = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        failures += int(s.get("failures", 0))
        errors += int(s.get("errors", 0))
        skipped += int(s.get("skipped", 0))
    return tests - failures - errors - skipped, failures, errors, skipped
