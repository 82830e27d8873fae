#!/usr/bin/env python3
"""Startup speed: median of 20 runs of `pt --help` vs `python -c "import boto3"`.

Claim (issue 3): `pt --help` ≤ 150 ms and it imports neither boto3, docker nor aws_cdk.
Run: python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def real_pt() -> list[str]:
    """The `pt` console script next to this interpreter (not a pyenv shim, which adds ~100 ms)."""
    cand = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "pt")
    if os.path.exists(cand):
        return [cand]
    found = shutil.which("pt")
    return [found] if found else [sys.executable, "-m", "pipeline_tools"]


def median_ms(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    pt = median_ms([*real_pt(), "--help"], args.runs)
    version = median_ms([*real_pt(), "--version"], args.runs)
    boto = median_ms([sys.executable, "-c", "import boto3"], args.runs)
    bare = median_ms([sys.executable, "-c", "pass"], args.runs)
    print(f"runs per command            : {args.runs} (median)")
    print(f"python -c pass              : {bare:7.1f} ms")
    print(f"pt --version                : {version:7.1f} ms")
    print(f"pt --help                   : {pt:7.1f} ms   (target ≤ 150 ms: {'OK' if pt <= 150 else 'MISSED'})")
    print(f"python -c 'import boto3'    : {boto:7.1f} ms")
    print(f"ratio pt --help / import boto3: {pt / boto:.2f}x")
    return 0 if pt <= 150 else 1


if __name__ == "__main__":
    sys.exit(main())
