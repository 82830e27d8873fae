"""Benchmark `pt zoo` with many models: plan time, and apply with bounded parallelism.

    python bench/zoo.py [--models 500] [--parallel 1 8]

A staging stage in a moto server with --models whitelisted models (copy: false, local
artifacts with a manifest). `pt zoo plan` reads what runs for every model; `pt zoo apply`
creates/updates each model's function, publishes a version and moves alias `live`, recording
every model in the ledger. Apply runs once per --parallel value, each with a new image digest
(so every model changes every time). Requests from the server log. Goals: plan ≤ 2 s; apply
scales with N until throttled; the ledger record names every model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Moto, pt_cmd, pt_env, run  # noqa: E402
from common import row as _row  # noqa: E402


def row(case: str, pt: str, baseline: str, goal: str, met: bool | None, method: str, **kw: str) -> None:
    """The bench/run row, and a line for a human: case, pt time, goal, method."""
    verdict = "-" if met is None else ("met" if met else "MISSED")
    print(f"{case} | pt {pt} | goal {goal}: {verdict} | {method}"
          + (f" | requests {kw['requests']}" if kw.get("requests") else ""), flush=True)
    _row(case, pt, baseline, goal, met, method, **kw)

REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/zb-model"


def image(n: int) -> str:
    return f"{REPO}@sha256:" + hashlib.sha256(f"zoo-image-{n}".encode()).hexdigest()


def setup(moto: Moto, work: Path, models: int, images: int) -> Path:
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.ops import manifest as mf

    aws = AwsFactory(region="us-east-1", endpoint=moto.endpoint)
    role = aws.client("iam").create_role(RoleName="zb-fn", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    aws.client("s3").create_bucket(Bucket="zb-staging-artifacts")  # local artifacts are uploaded here
    cw = aws.client("cloudwatch")  # the stage gate fails closed without an alarm
    cw.put_metric_alarm(AlarmName="zb-staging-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    cw.set_alarm_state(AlarmName="zb-staging-errors", StateValue="OK", StateReason="bench")
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="zb-model")
    for n in range(1, images + 1):
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                                          "digest": "sha256:" + f"{n:x}" * 64}, "layers": []})
        ecr.put_image(repositoryName="zb-model", imageManifest=manifest, imageTag=f"t{n}",
                      imageDigest=image(n).split("@")[1])
    art = work / "models" / "shared"
    art.mkdir(parents=True)
    (art / "weights.bin").write_bytes(os.urandom(4096))
    mf.write(mf.build(art), art / mf.MANIFEST_NAME)
    lines = ["project: zb", "region: us-east-1", "images: {model: {context: ., dockerfile: Dockerfile}}",
             "stages:", "  staging:", "    account: '111111111111'", "    branch: main",
             "    deploy: {bake: 0s}", "    gate: {alarms: ['zb-staging-*'], insufficient_data: pass, poll: 0.1s}",
             "zoo:", f"  role: {role}", "  models:"]
    lines += [f"    m{i:04d}: {{copy: false, artifacts: models/shared}}" for i in range(models)]
    cfg = work / "pipeline.yml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=500)
    ap.add_argument("--parallel", type=int, nargs="*", default=[1, 8])
    args = ap.parse_args()
    os.environ.update(PT_ACTOR="bench", PT_GIT_SHA="0" * 40, PT_GIT_BRANCH="main")
    with Moto() as moto:
        env = _with_bytecode(pt_env(moto.env()))
        os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        work = Path(tempfile.mkdtemp(prefix="pt-bench-zoo-"))
        cfg = setup(moto, work, args.models, len(args.parallel) + 1)
        base = [*pt_cmd(), "zoo"]
        common_args = ["--config", str(cfg), "--stage", "staging", "--output", "json"]
        plans, cpus = [], []
        for _ in range(3):
            mark = moto.log.mark()
            dt, p = run([*base, "plan", *common_args, "--image-uri", image(1)], env=env)
            plans.append((dt, len(moto.log.since(mark))))
            cpus.append(p.cpu)
        doc = json.loads(p.stdout)
        changes = sum(1 for st in doc["stages"] for m in st["models"] if m["action"] != "skip")
        pt_plan = statistics.median(t for t, _ in plans)
        print(f"pt zoo plan, {args.models} models: {[round(t, 2) for t, _ in plans]} s; CPU "
              f"{[round(c, 2) for c in cpus]} s; requests {[r for _, r in plans]}; {changes} changes; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        row(f"zoo plan, {args.models} models, first rollout",
            f"{pt_plan:.2f} s (worst {max(t for t, _ in plans):.2f}), CPU {statistics.median(cpus):.2f} s", "-",
            "<= 2 s", pt_plan <= 2.0,
            "`pt zoo plan` process incl. start-up (pt's bytecode compiled ahead, as installed), moto server, "
            "median of 3",
            requests=f"pt {max(r for _, r in plans)}")
        applied = {}
        for i, par in enumerate(args.parallel):
            mark = moto.log.mark()
            extra = ["--parallel", str(par)] if par != 1 or _has_parallel(env) else []
            dt, p = run([*base, "apply", *common_args, "--image-uri", image(i + 1), *extra], env=env, check=False)
            reqs = len(moto.log.since(mark))
            ok = p.returncode == 0
            recorded = _recorded(moto, p.stdout) if ok else 0
            applied[par] = (dt, reqs, ok, recorded)
            print(f"pt zoo apply --parallel {par}: {dt:.1f} s, exit {p.returncode}, {reqs} requests, "
                  f"{recorded} models recorded" + ("" if ok else f"; {p.stderr.strip()[-300:]}"), flush=True)
        last = image(len(args.parallel) + 1)
        samples, cpus = [], []
        for _ in range(3):
            mark = moto.log.mark()
            dt2, p2 = run([*base, "plan", *common_args, "--image-uri", last], env=env)
            samples.append((dt2, len(moto.log.since(mark))))
            cpus.append(p2.cpu)
        reads = json.loads(p2.stdout)["stages"][0].get("reads") or {}
        dt2 = statistics.median(t for t, _ in samples)
        reqs2 = max(r for _, r in samples)
        print(f"pt zoo plan, {args.models} models all deployed: {[round(t, 2) for t, _ in samples]} s, CPU "
              f"{[round(c, 2) for c in cpus]} s, requests {[r for _, r in samples]}; reads {reads}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
        row(f"zoo plan, {args.models} models all deployed",
            f"{dt2:.2f} s (worst {max(t for t, _ in samples):.2f}), CPU {statistics.median(cpus):.2f} s",
            "-", "<= 2 s", dt2 <= 2.0,
            "`pt zoo plan` process incl. start-up after the applies (bytecode compiled ahead), median of 3; "
            "what runs is taken from the "
            f"ledger's zoo records ({reads.get('ledger', '?')} functions from the ledger, {reads.get('aws', '?')} "
            "from Lambda)", requests=f"pt {reqs2}")
        mark = moto.log.mark()
        dt3, p3 = run([*base, "plan", *common_args, "--image-uri", last, "--refresh"], env=env)
        reqs3 = len(moto.log.since(mark))
        row(f"zoo plan --refresh, {args.models} models all deployed", f"{dt3:.2f} s, CPU {p3.cpu:.2f} s", "-", "-",
            None,
            "`pt zoo plan --refresh` process incl. start-up: every model's alias and live version read from "
            "Lambda (what `pt zoo apply` does before acting), one run", requests=f"pt {reqs3}")
        if 1 in applied:
            t1 = applied[1][0]
            for par, (dt, reqs, ok, recorded) in applied.items():
                if par == 1:
                    continue
                both = ok and applied[1][2]
                row(f"zoo apply, {args.models} models, --parallel {par}",
                    f"{dt:.1f} s, {recorded}/{args.models} recorded" + ("" if ok else ", FAILED"),
                    f"--parallel 1 {t1:.1f} s, {applied[1][3]}/{args.models} recorded"
                    + ("" if applied[1][2] else ", FAILED"),
                    f">= {0.7 * min(par, os.cpu_count() or 1):.1f}x (moto shares the {os.cpu_count()} cores), "
                    "every model recorded",
                    both and recorded == applied[1][3] == args.models
                    and t1 / dt >= min(par, os.cpu_count() or 1) * 0.7,
                    "`pt zoo apply` process, moto server on this machine (its CPU is shared with pt: "
                    f"{os.cpu_count()} cores); a new image each run",
                    ratio=f"{t1 / dt:.2f}x speed-up" if both else "",
                    requests=f"pt {reqs}")
    return 0


def _with_bytecode(env: dict) -> dict:
    """pt's modules compiled once, ahead of the runs, into the checkout's __pycache__ (git-ignored),
    as `pip install` leaves a package and as boto3/botocore/click already are in site-packages.
    Where PYTHONDONTWRITEBYTECODE=1 is set and the checkout has no __pycache__, every pt process
    would otherwise compile its own source again (~0.5-0.9 s of CPU for a zoo plan on this machine).
    Python reads existing .pyc files under PYTHONDONTWRITEBYTECODE too; each run still loads every module."""
    import subprocess

    env = {k: v for k, v in env.items() if k != "PYTHONPYCACHEPREFIX"}  # .pyc next to the sources
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "pipeline_tools")], env=env,
                   check=True, capture_output=True)
    return env


def _has_parallel(env: dict) -> bool:
    _, p = run([*pt_cmd(), "zoo", "apply", "--help"], env=env)
    return "--parallel" in p.stdout


def _recorded(moto: Moto, stdout: str) -> int:
    """Models named in the apply's ledger record (read back from the table)."""
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.release.ledger import Ledger

    doc = json.loads(stdout)
    ids = [e.get("apply_id") for e in doc.get("stages", []) if e.get("apply_id")]
    if not ids:
        return 0
    led = Ledger(AwsFactory(region="us-east-1", endpoint=moto.endpoint).client("dynamodb"), "zb-ledger")
    rec = led.get("staging", ids[0])
    return len({m["model"] for m in (rec.data.get("models") or []) if m.get("version")}) if rec else 0


if __name__ == "__main__":
    sys.exit(main())
