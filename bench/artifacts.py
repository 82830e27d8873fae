"""Benchmark `pt artifacts`: second push of a fresh checkout vs `aws s3 sync`; hashing vs sha256sum.

    python bench/artifacts.py [--files 1000] [--big-mib 512] [--reps 3]

Starts its own moto server on a free port. The sync scenario is the one CI meets: a fresh
checkout (new mtimes) of a 1,000-file artifact tree in which 1 file changed since the last push.
`aws s3 sync` decides by size+mtime, so it uploads everything again; `pt artifacts push`
hashes, GETs the remote manifest once and uploads the one changed file.
Both are run as CLI subprocesses (start-up included), the median of --reps runs is reported.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_tools import manifest as mf  # noqa: E402

CONFIG = """project: bench
region: us-east-1
images: {model: {context: .}}
stages: {ci: {account: "111111111111", branch: main, gate: {alarms: [], allow_no_alarms: true}}}
artifacts: {bucket: "bench-artifacts-{stage}"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CPU: list[float] = []  # CPU seconds (user+sys) of the last timed() child


def timed(cmd: list[str], env: dict, **kw) -> float:
    """Wall seconds of a subprocess; its CPU seconds go to CPU[-1] (load-independent)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall


def make_tree(root: Path, n: int) -> int:
    total = 0
    rnd = os.urandom(1 << 20)
    for i in range(n):
        size = 4096 + (i * 7919) % 65536  # 4-68 KiB, ~36 MB for 1,000 files
        p = root / f"shard{i % 10:02d}" / f"part-{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(i.to_bytes(4, "big") + rnd[i % 1000: i % 1000 + size])
        total += size + 4
    return total


def fresh_checkout(src: Path, dst: Path) -> None:
    """A copy with new mtimes (copyfile, not copy2), and one file changed."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    target = dst / "shard01" / "part-00001.bin"
    target.write_bytes(target.read_bytes() + os.urandom(16))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--big-mib", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    aws = shutil.which("aws")
    if not aws:
        sys.exit("needs the aws CLI: pip install awscli")

    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "PT_OUTPUT": "human"}
    env.pop("AWS_PROFILE", None)
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    os.environ.pop("AWS_PROFILE", None)
    work = Path(tempfile.mkdtemp(prefix="pt-bench-artifacts-"))
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench-artifacts-ci")
        (work / "pipeline.yml").write_text(CONFIG)
        env["PT_CONFIG"] = str(work / "pipeline.yml")
        tree = work / "tree"
        total = make_tree(tree, args.files)
        print(f"tree: {args.files} files, {total / 1e6:.1f} MB; moto server {endpoint}")

        pt = [sys.executable, "-m", "pipeline_tools", "artifacts", "push"]
        sync = [aws, "s3", "sync", "--endpoint-url", endpoint, "--only-show-errors"]
        t_pt_first = timed([*pt, str(tree), "--stage", "ci", "--prefix", "pt"], env)
        t_aws_first = timed([*sync, str(tree), "s3://bench-artifacts-ci/aws"], env)
        print(f"first push (everything):   pt {t_pt_first:6.2f}s   aws s3 sync {t_aws_first:6.2f}s")

        pt_times, aws_times, pt_cpu, aws_cpu = [], [], [], []
        for _ in range(args.reps):
            fresh_checkout(tree, work / "checkout")
            pt_times.append(timed([*pt, str(work / "checkout"), "--stage", "ci", "--prefix", "pt"], env))
            pt_cpu.append(CPU[-1])
            fresh_checkout(tree, work / "checkout")
            aws_times.append(timed([*sync, str(work / "checkout"), "s3://bench-artifacts-ci/aws"], env))
            aws_cpu.append(CPU[-1])
        t_pt, t_aws = statistics.median(pt_times), statistics.median(aws_times)
        c_pt, c_aws = statistics.median(pt_cpu), statistics.median(aws_cpu)
        print(f"second push, fresh checkout, 1 changed (median of {args.reps}; load average {os.getloadavg()[0]:.1f}):")
        print(f"  wall: pt artifacts push {t_pt:6.2f}s  aws s3 sync {t_aws:6.2f}s  -> pt is {t_aws / t_pt:5.1f}x faster"
              f" (target >= 10x)")
        print(f"  client CPU: pt {c_pt:6.2f}s   aws {c_aws:6.2f}s   -> {c_aws / c_pt:5.1f}x"
              " (moto server CPU not counted)")

        # the same push as a library call: what pt itself costs, without interpreter/boto3/pydantic start-up
        from pipeline_tools import artifacts as art
        from pipeline_tools.aws import AwsFactory

        s3 = art.s3_client(AwsFactory(region="us-east-1", endpoint=endpoint))
        lib_times = []
        for _ in range(args.reps):
            fresh_checkout(tree, work / "checkout")
            lib_times.append(_t(lambda: art.push(s3, work / "checkout", art.Location.of("bench-artifacts-ci", "pt"))))
        t_lib_push = statistics.median(lib_times)
        print(f"  in-process art.push() {t_lib_push:6.2f}s   -> {t_aws / t_lib_push:5.1f}x faster than aws s3 sync")

        # hashing: one large file
        big = work / "big.bin"
        with open(big, "wb") as fh:
            chunk = os.urandom(1 << 20)
            for _ in range(args.big_mib):
                fh.write(chunk)
        subprocess.run(["cat", str(big)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        t_sum = min(timed(["sha256sum", str(big)], env) for _ in range(2))
        t_lib = min(_t(lambda: mf.hash_file(big)) for _ in range(2))
        mib = args.big_mib
        print(f"hash one {mib} MiB file: sha256sum {mib / t_sum:7.0f} MiB/s   pt {mib / t_lib:7.0f} MiB/s"
              f"   -> {t_sum / t_lib * 100:5.0f}% of sha256sum throughput (target >= 80%)")
        one = work / "one"
        one.mkdir()
        os.link(big, one / "big.bin")
        t_cli = timed([sys.executable, "-m", "pipeline_tools", "artifacts", "manifest", str(one),
                       "-o", str(work / "one.json")], env)
        print(f"  `pt artifacts manifest` on it, start-up included: {t_cli:5.2f}s vs sha256sum {t_sum:5.2f}s")
        big.unlink()
        (one / "big.bin").unlink()

        # hashing: many small files (the tree), sha256sum in one process vs pt in parallel
        files = sorted(str(p) for p in tree.rglob("*") if p.is_file())
        t_sum_many = min(timed(["sha256sum", *files], env) for _ in range(2))
        t_pt_many = min(_t(lambda: mf.build(tree)) for _ in range(2))
        print(f"hash {len(files)} small files: sha256sum {t_sum_many:5.3f}s   pt (threads) {t_pt_many:5.3f}s"
              f"   -> {t_sum_many / t_pt_many:4.1f}x")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _t(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    raise SystemExit(main())
