"""`pt build-push` and `pt test` (library: pipeline_tools.images.images)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from pipeline_tools.clikit import OutputPath, dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import UsageError


@contextlib.contextmanager
def _progress(app: App) -> Iterator:
    """Progress sink: a rich status line in a TTY, plain lines otherwise (stderr in json mode), each
    with a timestamp in CI, where a log is read afterwards."""
    out = app.out
    if not out.is_tty():
        if os.environ.get("CI"):
            import time

            yield lambda text: out.info(f"[{time.strftime('%H:%M:%S')}] {text}")
        else:
            yield out.info
        return
    from rich.console import Console

    console = Console(file=out.stdout, no_color=bool(os.environ.get("NO_COLOR")))
    with console.status("starting") as status:
        def log(text: str) -> None:
            from pipeline_tools.core.output import redact

            text = redact(text)
            status.update(text)
            if ": Step " in text or " skipped" in text or ": built " in text or ": tag " in text:
                console.print(text, style="dim" if ": Step " in text else None, highlight=False)

        yield log


def _parse_build_args(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-arg {v!r}: expected KEY=VALUE")
        out[key] = val
    return out


def _registry(app: App, cfg):
    from pipeline_tools.images.registry import EcrRegistry, Registry, ecr_credentials, ecr_parts

    host = cfg.registry_for(app.stage)
    parts = ecr_parts(host)
    if not parts:
        return Registry(host), None, None
    account, region = parts
    ecr = app.aws(app.stage).client("ecr", region=region)
    creds = ecr_credentials(ecr, account)  # docker push still needs them
    return EcrRegistry(host, ecr, account), creds, ecr


@click.command("build-push")
@click.argument("images", nargs=-1, metavar="[IMAGE]...")
@stage_option(help="Stage whose registry receives the images (default: PT_REGISTRY / config / first stage).")
@click.option("--tag", "-t", "tags", multiple=True, metavar="TAG", help="Extra tag to add, e.g. the git SHA.")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Build argument on top of the config's build_args (part of the content tag).")
@click.option("--platform", default=None, metavar="OS/ARCH", help="Target platform, e.g. linux/amd64.")
@click.option("--no-cache", is_flag=True, help="Build without docker's layer cache (still skips pushed tags).")
@click.option("--builder", type=click.Choice(["auto", "buildx", "buildkit", "classic"]), default=None,
              envvar="PT_BUILDER", help="auto (default): docker buildx when present, else docker's classic builder; "
                                        "buildkit: the daemon's BuildKit through a docker CLI < 23.")
@click.option("--cache-from", multiple=True, metavar="REF",
              help="BuildKit cache source: an image (inline cache) or, with buildx, type=registry,ref=… .")
@click.option("--cache-to", multiple=True, metavar="REF", help="buildx: export the build cache (registry ref).")
@click.option("--provenance", is_flag=True, help="buildx: attach a SLSA provenance attestation (mode=max).")
@click.option("--sbom", is_flag=True, help="buildx: attach an SBOM attestation.")
@click.option("--secret", "secrets", multiple=True, metavar="id=NAME,src=FILE",
              help="BuildKit build secret (a RUN step mounts it with type=secret), never part of the image or its tag.")
@dry_run_option
@output_option
@pass_app
def build_push(app: App, images: tuple[str, ...], tags: tuple[str, ...], build_args: tuple[str, ...],
               platform: str | None, no_cache: bool, builder: str | None, cache_from: tuple[str, ...],
               cache_to: tuple[str, ...], provenance: bool, sbom: bool, secrets: tuple[str, ...],
               dry_run: bool) -> int:
    """Build images with content-addressed tags and push what the registry lacks.

    The tag is a hash of the build inputs (files kept by .dockerignore, Dockerfile, build args,
    target, platform, base image digests). If the registry has it, nothing is built or pushed.
    """
    from pipeline_tools.images.images import build_push as run
    from pipeline_tools.images.images import connect_docker, select_images

    cfg = app.config()
    if app.stage:
        cfg.stage(app.stage)
    select_images(cfg, images)
    extra_args = _parse_build_args(build_args)
    from pipeline_tools.images import builder as bld

    chosen = bld.detect(builder or "auto")
    docker = connect_docker()
    # BuildKit's RUN steps need a network the daemon has; a daemon without `bridge` builds on the host's
    options = bld.BuildOptions(cache_from=cache_from, cache_to=cache_to, provenance=provenance, sbom=sbom,
                               secrets=secrets,
                               network=None if docker.networks.list(names=["bridge"]) else "host")
    bld.check_options(chosen, options)
    registry, creds, ecr = _registry(app, cfg)
    try:
        with _progress(app) as log, app.out.group("pt build-push"):
            log(f"builder: {chosen.describe()}")
            results = run(cfg, images, docker=docker, registry=registry, credentials=creds, ecr=ecr, stage=app.stage,
                          extra_tags=tags, extra_build_args=extra_args, platform=platform, no_cache=no_cache,
                          dry_run=dry_run, log=log, warn=app.out.warn, builder=chosen, build_options=options)
    finally:
        registry.close()
    data = {"images": [r.to_dict() for r in results], "dry_run": dry_run, "builder": chosen.kind}

    def human(o) -> None:
        o.table([[r.name, r.status, r.tag, r.image_uri or "-", f"{r.seconds:.1f}s", _mb(r.bytes_pushed)]
                 for r in results], ["image", "status", "tag", "image_uri", "time", "pushed"])

    app.out.result(data, human)
    if not dry_run:
        outputs: dict[str, object] = {f"image_uri_{r.name}": r.image_uri for r in results}
        if len(results) == 1:
            outputs["image_uri"] = results[0].image_uri
        outputs["images"] = {r.name: r.image_uri for r in results}
        app.out.github_output(outputs)
        from pipeline_tools.core.output import markdown_table

        app.out.step_summary("### pt build-push\n\n" + markdown_table(
            [[r.name, r.status, f"`{r.image_uri}`", f"{r.seconds:.1f}s", _mb(r.bytes_pushed)] for r in results],
            ["image", "status", "image_uri", "time", "pushed"]))
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n else "0"


@click.command("test")
@click.argument("image", required=False)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
@stage_option(help="Stage whose registry names the image (default as build-push).")
@click.option("--junit", "junit", default=None, metavar="PATH", type=OutputPath(parents=True),
              help="Where the JUnit XML goes (default reports/junit-<image>.xml).")
@click.option("--notify", "notify_mode", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Notify Slack/Teams/SNS (notifications: in pipeline.yml) when tests fail: "
                                      "auto = in CI only, always = wherever it runs, never.")
@output_option
@pass_app
def test(app: App, image: str | None, extra: tuple[str, ...], junit: str | None, notify_mode: str) -> int:
    """Run the image's test_command inside the built image (network off); exit code = the tests'.

    Tests are baked into the image (the Dockerfile copies the service directory, tests/ included),
    so what is tested is exactly what ships. Extra pytest arguments go after `--`.
    """
    from pipeline_tools.images.images import connect_docker, run_tests, select_images

    cfg = app.config()
    if image is not None and image not in cfg.images and image.startswith("-"):
        extra, image = (image, *extra), None
    if image is None:
        testable = [n for n, i in cfg.images.items() if i.test_command]
        if len(testable) != 1:
            raise UsageError("which image? " + (f"images with a test_command: {', '.join(testable)}" if testable
                                                 else "no image has a test_command"), "pass IMAGE")
        image = testable[0]
    select_images(cfg, [image])  # an unknown name is a usage error before Docker is reached
    junit_path = junit or os.path.join("reports", f"junit-{image}.xml")
    docker = connect_docker()
    stream = app.out.log if app.out.json else app.out.info
    try:
        registry, creds, _ = _registry(app, cfg)
    except Exception as e:  # no registry access (e.g. no AWS credentials on a laptop): build locally
        app.out.log(f"{image}: registry not used ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
        registry, creds = None, None
    try:
        report = run_tests(cfg, image, docker=docker, registry_host=cfg.registry_for(app.stage),
                           junit_path=junit_path, extra_args=extra, registry=registry, credentials=creds,
                           log=app.out.log, output=stream)
    finally:
        if registry is not None:
            registry.close()
    app.out.result(report.to_dict(), f"{image}: {report.summary} (exit {report.exit_code})"
                   + (f"; JUnit XML: {report.junit}" if report.junit else "; no JUnit XML written"))
    app.out.step_summary(f"### pt test {image}\n\n{report.summary}" + (f" (JUnit: `{report.junit}`)"
                                                                      if report.junit else ""))
    app.out.github_output({"tests_summary": report.summary, "junit": report.junit or ""})
    _notify_tests(app, cfg, image, report, junit_path, notify_mode)
    return report.exit_code


def _notify_tests(app: App, cfg, image: str, report, junit_path: str, mode: str) -> None:
    import time

    from pipeline_tools.ops import testnotify

    if not testnotify.should_notify(mode, report.exit_code, os.environ):
        return
    res = testnotify.notify_failure(cfg, app.stage, image, report.exit_code, report.summary,
                                    report.junit or junit_path, mode=mode, factory=app.aws(app.stage),
                                    env=os.environ, now=time.time(), warn=app.out.warn)
    if res is not None and res.channels:
        app.out.log(f"tests_failed notified: {', '.join(c.channel for c in res.channels if c.ok) or 'no channel'}")
