"""`pt artifacts manifest|push|pull|verify|copy`: thin wrappers over pipeline_tools.ops.artifacts."""

from __future__ import annotations

import click

from pipeline_tools.clikit import OutputPath, dry_run_option, output_option, pass_app, stage_option
from pipeline_tools.core.context import App

_prefix = click.option("--prefix", "-p", default="", metavar="PREFIX",
                       help="Key prefix in the bucket, e.g. models/iris/v3 (default: bucket root).")
_workers = click.option("--workers", "-j", type=click.IntRange(1, 64), default=None,
                        help="Parallel hashing/transfer threads (default 8 for S3, 2×CPUs for hashing).")
_jobs = click.option("--jobs", type=click.IntRange(0, 256), default=None, metavar="N",
                     help="Hash in N processes (0 = one per CPU). Trees of many small files are bound by "
                          "per-file work that threads share one core for; processes use all cores.")


def _n_jobs(jobs: int | None) -> int | None:
    import os

    return (os.cpu_count() or 1) if jobs == 0 else jobs


@click.group()
@pass_app
def artifacts(app: App) -> None:
    """SHA-256 manifests and content-addressed sync of model artifacts.

    \b
    Remote layout: s3://BUCKET/PREFIX/<relative path> for every file, then
    SHA256SUMS and manifest.json, written last (the commit point of a push).
    These commands check the parts of pipeline.yml they read (project, region,
    stages, artifacts); `pt config validate` checks the whole file.
    """
    app.lean_config = True  # skip pydantic: ~0.2 s of a 0.4 s incremental push


def _stage_target(app: App, prefix: str):
    from pipeline_tools.core.names import stage_stack
    from pipeline_tools.ops.artifacts import Location, lean_s3_client

    cfg = app.config()
    stage = app.require_stage()
    return (cfg, stage, Location.of(cfg.bucket(stage), prefix), stage_stack(cfg.project, stage),
            lambda workers: lean_s3_client(app.aws(stage), workers))


def _problems_table(out, problems: list[dict]) -> None:
    out.table([(p["path"], p["problem"], p.get("expected", ""), p.get("actual", "")) for p in problems],
              ["PATH", "PROBLEM", "EXPECTED", "ACTUAL"])


@artifacts.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", "out_file", type=OutputPath(), default=None,
              help="manifest.json to write (default PATH/manifest.json); SHA256SUMS goes next to it.")
@_workers
@_jobs
@output_option
@pass_app
def manifest(app: App, path: str, out_file: str | None, workers: int | None, jobs: int | None) -> int:
    """Hash every file under PATH; write manifest.json and SHA256SUMS (`sha256sum -c` format)."""
    from pathlib import Path

    from pipeline_tools.ops import manifest as mf

    m = mf.build(path, workers=workers, jobs=_n_jobs(jobs), progress=app.out.log, warn=app.out.warn)
    target = Path(out_file) if out_file else Path(path) / mf.MANIFEST_NAME
    man_path, sums_path = mf.write(m, target)
    data = {"root": path, "manifest": str(man_path), "sha256sums": str(sums_path),
            "files": len(m.files), "bytes": m.total_bytes, "skipped": [s.to_dict() for s in m.skipped]}
    app.out.result(data, f"{len(m.files)} files, {mf.human_bytes(m.total_bytes)} -> {man_path}, {sums_path}"
                         f"{f' ({len(m.skipped)} skipped)' if m.skipped else ''}")
    return 0


@artifacts.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
@stage_option(required=True)
@_prefix
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="Push <services.<m>.scenarios>/NAME/ to the service bucket under NAME/ instead of PATH "
                   "(repeatable; a service's first scenario must be `base`).")
@click.option("--service", "-m", metavar="SERVICE", default=None,
              help="Service whose scenarios to push (needed when the stage runs several).")
@click.option("--delete", is_flag=True,
              help="Delete remote files that are gone locally (bucket versioning keeps them).")
@click.option("--multipart-threshold", type=click.IntRange(5, None), default=64, show_default=True, metavar="MiB",
              help="Files at least this big go up multipart.")
@_workers
@_jobs
@dry_run_option
@output_option
@pass_app
def push(app: App, path: str | None, prefix: str, scenarios: tuple[str, ...], service: str | None, delete: bool,
         multipart_threshold: int, workers: int | None, jobs: int | None, dry_run: bool) -> int:
    """Upload what changed under PATH to the stage's artifacts bucket, then the manifest.

    With --scenario NAME: upload a service's scenario folder to its service bucket instead.
    """
    from concurrent.futures import ThreadPoolExecutor

    from pipeline_tools.ops import artifacts as art
    from pipeline_tools.ops import manifest as mf

    if scenarios:
        if path or prefix:
            raise click.UsageError("--scenario takes no PATH or --prefix (the scenario names both)")
        return _push_scenarios(app, list(scenarios), service, delete, multipart_threshold, workers, dry_run)
    if service:
        raise click.UsageError("--service goes with --scenario")
    if not path:
        raise click.UsageError("give PATH (a directory to push) or --scenario NAME")
    _cfg, _stage, loc, stack, client = _stage_target(app, prefix)
    workers = workers or art.DEFAULT_WORKERS
    with ThreadPoolExecutor(max_workers=1) as bg:  # hash while boto3 loads and the client is built
        local = bg.submit(mf.build, path, jobs=_n_jobs(jobs), progress=app.out.log, warn=app.out.warn)
        report = art.push(client(workers), path, loc, delete=delete, dry_run=dry_run, workers=workers,
                          multipart_threshold=multipart_threshold << 20, stack=stack, local=local)

    def human(out) -> None:
        head = "plan" if dry_run else "pushed"
        out.info(f"{head} {path} -> {loc.url}: upload {report['upload']} "
                 f"({art.human_bytes(report['upload_bytes'])}), unchanged {report['unchanged']}, "
                 f"already uploaded {report['already_uploaded']}, delete {report['delete']}"
                 + ("" if dry_run else f" in {report['seconds']:.2f}s"))
        for line in art.plan_lines("push", report):
            out.info(line)

    app.out.result(report, human)
    app.out.github_output({"artifacts_manifest": f"{loc.url}/manifest.json"} if not dry_run else {})
    if not dry_run:
        _record(app, _stage, {"operation": "push", "destination": loc.url, "uploaded": report.get("upload"),
                              "upload_bytes": report.get("upload_bytes"), "unchanged": report.get("unchanged"),
                              "deleted": report.get("delete"), "manifest": f"{loc.url}/manifest.json"})
    return 0


def _record(app: App, stage: str, data: dict) -> None:
    """An `artifacts` record in the stage's ledger (`pt history --kind artifacts`). Never fatal: the
    manifest in S3 is the evidence of the transfer itself; a record that cannot be written is a warning."""
    try:
        from pipeline_tools.commands import _deploy_common as common
        from pipeline_tools.core.aws import lean_client

        # the ledger's DynamoDB client and the STS caller's client as botocore clients on the
        # push's own botocore session (no boto3 import, no second session): what common.ledger
        # and common.who then get from factory.client()
        lean_client(app.ledger_aws(stage), "dynamodb")
        lean_client(app.aws(stage), "sts")
        led = common.ledger(app, stage)
        led.put_record("artifacts", stage, data, actor=common.who(app, stage), state="completed")
    except Exception as e:
        from pipeline_tools.core.errors import translate

        err = translate(e)
        app.out.warn(f"artifacts record not written to the {stage} ledger: "
                     f"{err.message if err else f'{type(e).__name__}: {e}'}")


def _push_scenarios(app: App, names: list[str], service: str | None, delete: bool, multipart_threshold: int,
                    workers: int | None, dry_run: bool) -> int:
    from pipeline_tools.ops import artifacts as art
    from pipeline_tools.ops import scenarios as ops
    from pipeline_tools.ops.services import pick_service

    cfg = app.config()
    stage = app.require_stage()
    service = pick_service(cfg, stage, service)
    workers = workers or art.DEFAULT_WORKERS
    report = ops.push(art.s3_client(app.aws(stage), workers), cfg, stage, service, names, dry_run=dry_run,
                      workers=workers, progress=app.out.log, warn=app.out.warn, delete=delete,
                      multipart_threshold=multipart_threshold << 20)

    def human(out) -> None:
        for r in report["scenarios"]:
            out.info(f"{'plan' if dry_run else 'pushed'} scenario {r['scenario']} -> {r['destination']}: "
                     f"upload {r['upload']} ({art.human_bytes(r['upload_bytes'])}), unchanged {r['unchanged']}, "
                     f"delete {r['delete']}")

    app.out.result(report, human)
    return 0


@artifacts.command()
@click.argument("dest", type=OutputPath(directory=True))
@stage_option(required=True)
@_prefix
@_workers
@dry_run_option
@output_option
@pass_app
def pull(app: App, dest: str, prefix: str, workers: int | None, dry_run: bool) -> int:
    """Download the set named by the remote manifest into DEST, verifying every file."""
    from pipeline_tools.ops import artifacts as art

    _cfg, _stage, loc, stack, client = _stage_target(app, prefix)
    workers = workers or art.DEFAULT_WORKERS
    report = art.pull(client(workers), loc, dest, dry_run=dry_run, workers=workers, stack=stack,
                      progress=app.out.log)

    def human(out) -> None:
        out.info(f"{'plan' if dry_run else 'pulled'} {loc.url} -> {dest}: download {report['download']} "
                 f"({art.human_bytes(report['download_bytes'])}), unchanged {report['unchanged']}")
        for line in art.plan_lines("pull", report):
            out.info(line)
        if report.get("problems"):
            _problems_table(out, report["problems"])

    app.out.result(report, human)
    if report.get("problems"):
        app.out.error([f"{len(report['problems'])} file(s) did not match the manifest; they were not written"],
                      "re-push the artifacts, then pull again")
        return 1
    return 0


@artifacts.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
@stage_option()
@_prefix
@click.option("--rehash", is_flag=True, help="Download and re-hash every object instead of trusting S3 checksums.")
@_workers
@output_option
@pass_app
def verify(app: App, path: str | None, prefix: str, rehash: bool, workers: int | None) -> int:
    """Check the stage's remote set against its manifest (or a local PATH against PATH/manifest.json).

    Exit 1 when anything is missing or does not match.
    """
    from pipeline_tools.ops import artifacts as art

    if app.stage:
        _cfg, _stage, loc, stack, client = _stage_target(app, prefix)
        workers = workers or art.DEFAULT_WORKERS
        report = art.verify(client(workers), loc, rehash=rehash, workers=workers, stack=stack, progress=app.out.log)
    elif path:
        report = art.verify_local(path, workers=workers, progress=app.out.log, warn=app.out.warn)
    else:
        raise click.UsageError("give --stage (verify the remote set) or PATH (verify a local tree)")

    def human(out) -> None:
        if report["ok"]:
            out.info(f"OK {report['location']}: {report['files']} files match the manifest")
        else:
            _problems_table(out, report["problems"])

    app.out.result(report, human)
    if not report["ok"]:
        app.out.error([f"{len(report['problems'])} of {report['files']} file(s) at {report['location']} "
                       "do not match the manifest"], "re-push from a good copy (`pt artifacts push`)")
        return 1
    return 0


@artifacts.command()
@click.option("--from-stage", "from_stage", required=True, metavar="STAGE", help="Source stage.")
@_prefix
@click.option("--to-stage", "to_stage", default=None, metavar="STAGE", help="Destination stage (its artifacts bucket).")
@click.option("--to", "to_url", default=None, metavar="S3URL",
              help="Destination s3://bucket/prefix instead of a stage (vendor or persistent bucket).")
@click.option("--to-prefix", default=None, metavar="PREFIX",
              help="Destination prefix with --to-stage (default: --prefix).")
@click.option("--delete", is_flag=True, help="Delete destination files that are not in the set.")
@click.option("--source-profile", default=None, metavar="PROFILE",
              help="AWS profile that reads the source (default: the source stage's credentials).")
@click.option("--dest-profile", default=None, metavar="PROFILE",
              help="AWS profile that writes the destination. With either profile, objects are streamed "
                   "through pt and hashed (no credential needs access to both buckets).")
@_workers
@dry_run_option
@output_option
@pass_app
def copy(app: App, from_stage: str, prefix: str, to_stage: str | None, to_url: str | None, to_prefix: str | None,
         delete: bool, workers: int | None, dry_run: bool, source_profile: str | None = None,
         dest_profile: str | None = None) -> int:
    """Copy a verified set to another stage's bucket or an s3:// URL, then write its manifest."""
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.core.names import stage_stack
    from pipeline_tools.ops import artifacts as art

    if bool(to_stage) == bool(to_url):
        raise click.UsageError("give exactly one of --to-stage or --to s3://bucket/prefix")
    cfg = app.config()
    cfg.stage(from_stage)
    workers = workers or art.DEFAULT_WORKERS
    stream = bool(source_profile or dest_profile)
    src = art.Location.of(cfg.bucket(from_stage), prefix)
    src_factory = app.aws(from_stage)
    if source_profile:
        src_factory = AwsFactory(region=src_factory.region, profile=source_profile)
    src_s3 = art.s3_client(src_factory, workers)
    if to_stage:
        cfg.stage(to_stage)
        dst = (art.Location.of(cfg.bucket(to_stage), prefix) if to_prefix is None
               else art.Location.of(cfg.bucket(to_stage), to_prefix, "--to-prefix"))
        dst_factory = app.aws(to_stage)
        dst_stack = stage_stack(cfg.project, to_stage)
    else:
        dst = art.parse_s3_url(to_url or "", "--to")
        dst_factory, dst_stack = src_factory, None
    if dest_profile:
        dst_factory = AwsFactory(region=dst_factory.region, profile=dest_profile)
    dst_s3 = src_s3 if dst_factory is src_factory else art.s3_client(dst_factory, workers)
    report = art.copy(src_s3, src, dst_s3, dst, dry_run=dry_run, delete=delete, workers=workers,
                      src_stack=stage_stack(cfg.project, from_stage), dst_stack=dst_stack, progress=app.out.log,
                      stream=stream)

    def human(out) -> None:
        out.info(f"{'plan' if dry_run else 'copied'} {src.url} -> {dst.url}: copy {report['copy']} "
                 f"({art.human_bytes(report['copy_bytes'])}), already there {report['already_there']}, "
                 f"delete {report['delete']}")
        for line in art.plan_lines("copy", report):
            out.info(line)

    app.out.result(report, human)
    if not dry_run:
        _record(app, from_stage, {"operation": "copy", "source": src.url, "destination": dst.url,
                                  "copied": report.get("copy"), "copy_bytes": report.get("copy_bytes"),
                                  "deleted": report.get("delete"),
                                  "profiles": {"source": source_profile, "destination": dest_profile}})
    return 0
