#!/usr/bin/env python3
"""Startup: `pt --help` (process start to exit) and `pt status` against a moto server.

    python bench/startup.py [--runs 20]

`pt --help` is compared with `sam --help` when the SAM CLI is installed, and always with
`python -c pass` (the interpreter's own floor: on a machine whose site-packages has .pth hooks
it alone can take 80-130 ms) and `python -c "import boto3"`. pt and the floor are sampled
alternately, so load changes hit both alike; the absolute figure is printed, and beside it pt's
overhead above the floor (wall and CPU). Goals: `pt --help` median ≤ 80 ms and no import of
boto3/botocore/docker/aws_cdk/pydantic; `pt status` ≤ 0.5 s (2 functions, one ledger record,
moto server on loopback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Moto, dist, pt_env, row, run  # noqa: E402

HEAVY = ("boto3", "botocore", "docker", "aws_cdk", "pydantic")


def byte_compile() -> str:
    """pt as installed: pip byte-compiles a package when it installs it. A checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as in this sandbox) would recompile every pt module in every
    process (~0.05-0.1 s of CPU per pt status), a cost no installed pt pays."""
    import compileall

    compileall.compile_dir(str(HERE.parent / "pipeline_tools"), quiet=1)
    return "pipeline_tools byte-compiled first, as pip install does"


def real_pt() -> list[str]:
    """The `pt` console script next to this interpreter (not a pyenv shim, which adds ~100 ms)."""
    cand = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "pt")
    if os.path.exists(cand):
        return [cand]
    found = shutil.which("pt")
    return [found] if found else [sys.executable, "-m", "pipeline_tools"]


def samples(cmd: list[str], runs: int, env: dict | None = None) -> list[float]:
    subprocess.run(cmd, capture_output=True, env=env)  # warm the page cache
    return [run(cmd, env=env)[0] for _ in range(runs)]


def paired(a: list[str], b: list[str], runs: int, env_a: dict | None = None,
           env_b: dict | None = None) -> tuple[list[float], list[float], list[float], list[float]]:
    """Wall and CPU seconds of `a` and `b`, run alternately (a, b, a, b, …) after one warm-up each."""
    subprocess.run(a, capture_output=True, env=env_a)
    subprocess.run(b, capture_output=True, env=env_b)
    wa, ca, wb, cb = [], [], [], []
    for _ in range(runs):
        t, p = run(a, env=env_a)
        wa.append(t)
        ca.append(p.cpu)
        t, p = run(b, env=env_b)
        wb.append(t)
        cb.append(p.cpu)
    return wa, ca, wb, cb


def heavy_imports(env: dict) -> list[str]:
    probe = ("import sys\nfrom pipeline_tools import cli\ntry:\n    cli.main(['--help'])\nfinally:\n"
             f"    print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    return eval(p.stderr.strip().splitlines()[-1])  # a list literal we printed ourselves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print(byte_compile())
    env = pt_env(dict(os.environ))
    pt, pt_cpu, bare, bare_cpu = paired([*real_pt(), "--help"], [sys.executable, "-c", "pass"], args.runs, env)
    boto = samples([sys.executable, "-c", "import boto3"], max(5, args.runs // 4))
    sam = samples(["sam", "--help"], max(5, args.runs // 4)) if shutil.which("sam") else None
    heavy = heavy_imports(env)
    med, floor = statistics.median(pt), statistics.median(bare)
    over_wall = (med - floor) * 1000
    over_cpu = (statistics.median(pt_cpu) - statistics.median(bare_cpu)) * 1000
    overhead = f"pt's overhead above python -c pass: {over_wall:+.0f} ms wall, {over_cpu:+.0f} ms CPU (medians)"
    print(f"pt --help         {dist(pt, 'ms', 1000)}; CPU {dist(pt_cpu, 'ms', 1000)}; "
          f"heavy modules imported: {heavy or 'none'}")
    print(f"python -c pass    {dist(bare, 'ms', 1000)}; CPU {dist(bare_cpu, 'ms', 1000)} (the interpreter floor)")
    print(f"                  {overhead}")
    print(f"import boto3      {dist(boto, 'ms', 1000)}")
    print(f"sam --help        {dist(sam, 'ms', 1000) if sam else 'SAM CLI not installed (90 ms measured elsewhere)'}")
    base_name, base_t = ("sam --help", statistics.median(sam)) if sam else ("python -c pass", floor)
    row("pt --help", f"{med * 1000:.0f} ms (worst {max(pt) * 1000:.0f}); over the floor {over_wall:+.0f} ms "
        f"wall, {over_cpu:+.0f} ms CPU", f"{base_name} {base_t * 1000:.0f} ms"
        + ("" if not sam else f"; python -c pass {floor * 1000:.0f} ms"),
        "<= 80 ms, no heavy imports", med <= 0.080 and not heavy,
        f"process start to exit, median of {args.runs}, alternating with python -c pass (the floor); "
        f"heavy imports: {', '.join(heavy) or 'none'}",
        ratio=f"{med / base_t:.2f}x" if sam else "")

    from pipeline_tools.core.aws import AwsFactory
    from tests.integration.conftest_deploy import make_stage

    os.environ.update(PT_ACTOR="bench", PT_GIT_SHA="0" * 40, PT_GIT_BRANCH="main")
    with Moto() as moto:
        menv = pt_env(moto.env())
        os.environ.update({k: menv[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                "AWS_DEFAULT_REGION")})
        tmp = Path(tempfile.mkdtemp(prefix="pt-bench-status-"))
        st = make_stage(AwsFactory(region="us-east-1", endpoint=moto.endpoint), tmp, images=(1, 2),
                        strategy="all-at-once", bake="0s")
        from tests.integration.conftest_deploy import uri

        run([*real_pt(), "deploy", "--config", str(st.config), "--stage", "staging", "--image-uri", uri(2)], env=menv)
        cmd = [*real_pt(), "status", "--config", str(st.config), "--stage", "staging", "--output", "json"]
        mark = moto.log.mark()
        _, p = run(cmd, env=menv)
        reqs = len(moto.log.since(mark))
        json.loads(p.stdout)
        status, status_cpu, sfloor, _ = paired(cmd, [sys.executable, "-c", "pass"], max(5, args.runs // 2), menv)
    print(f"pt status         {dist(status)}; CPU {dist(status_cpu)}; {reqs} requests; "
          f"python -c pass {statistics.median(sfloor) * 1000:.0f} ms meanwhile")
    row("pt status (moto)", f"{statistics.median(status):.2f} s (worst {max(status):.2f}), CPU "
        f"{statistics.median(status_cpu):.2f} s", f"python -c pass {statistics.median(sfloor) * 1000:.0f} ms",
        "<= 0.5 s", statistics.median(status) <= 0.5,
        f"process start to exit against a moto server, median of {len(status)}, alternating with python -c pass",
        requests=f"pt {reqs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
