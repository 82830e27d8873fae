#!/usr/bin/env python3
"""Startup: `pt --help` (process start to exit) and `pt status` against a moto server.

    python bench/startup.py [--runs 20]

`pt --help` is compared with `sam --help` when the SAM CLI is installed, and always with
`python -c pass` (the interpreter's own floor) and `python -c "import boto3"`. Goals: `pt --help`
median ≤ 80 ms and no import of boto3/botocore/docker/aws_cdk/pydantic; `pt status` ≤ 0.5 s
(2 functions, one ledger record, moto server on loopback).
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


def heavy_imports(env: dict) -> list[str]:
    probe = ("import sys\nfrom pipeline_tools import cli\ntry:\n    cli.main(['--help'])\nfinally:\n"
             f"    print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    return eval(p.stderr.strip().splitlines()[-1])  # a list literal we printed ourselves


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    env = pt_env(dict(os.environ))
    pt = samples([*real_pt(), "--help"], args.runs, env)
    bare = samples([sys.executable, "-c", "pass"], args.runs)
    boto = samples([sys.executable, "-c", "import boto3"], max(5, args.runs // 4))
    sam = samples(["sam", "--help"], max(5, args.runs // 4)) if shutil.which("sam") else None
    heavy = heavy_imports(env)
    print(f"pt --help         {dist(pt, 'ms', 1000)}; heavy modules imported: {heavy or 'none'}")
    print(f"python -c pass    {dist(bare, 'ms', 1000)}")
    print(f"import boto3      {dist(boto, 'ms', 1000)}")
    print(f"sam --help        {dist(sam, 'ms', 1000) if sam else 'SAM CLI not installed (90 ms measured elsewhere)'}")
    med = statistics.median(pt)
    base_name, base_t = ("sam --help", statistics.median(sam)) if sam else ("python -c pass", statistics.median(bare))
    row("pt --help", f"{med * 1000:.0f} ms (worst {max(pt) * 1000:.0f})", f"{base_name} {base_t * 1000:.0f} ms",
        "<= 80 ms, no heavy imports", med <= 0.080 and not heavy,
        f"process start to exit, median of {args.runs}; heavy imports: {', '.join(heavy) or 'none'}",
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
        status = [run(cmd, env=menv)[0] for _ in range(max(5, args.runs // 2))]
    print(f"pt status         {dist(status)}; {reqs} requests")
    row("pt status (moto)", f"{statistics.median(status):.2f} s (worst {max(status):.2f})", "-", "<= 0.5 s",
        statistics.median(status) <= 0.5, f"process start to exit against a moto server, median of {len(status)}",
        requests=f"pt {reqs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
