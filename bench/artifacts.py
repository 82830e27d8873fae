"""Benchmark `pt artifacts push` vs `aws s3 sync` (default and --size-only), correctness included.

    python bench/artifacts.py [--files 1001] [--reps 3]

Starts its own moto server. The scenario CI meets: a fresh checkout (new mtimes) of a
1,001-file / ~37 MB artifact tree in which 1 file changed (and grew) since the last push.
All three are CLI processes, process start included, against the same server; each side was
first pushed to its own prefix. `aws s3 sync` (default) decides by size+mtime, so a fresh
checkout re-uploads everything; `--size-only` uploads the grown file; pt hashes and uploads it.

Correctness: a same-size content change (a byte flipped). `--size-only` skips it (the remote
object keeps the old bytes); pt uploads it. Checked by reading the objects back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Moto, aws_cmd, dist, pt_cmd, pt_env, row, run  # noqa: E402

CONFIG = """project: bench
region: us-east-1
images: {model: {context: .}}
stages: {ci: {account: "111111111111", branch: main, gate: {alarms: [], allow_no_alarms: true}}}
artifacts: {bucket: "bench-artifacts-{stage}"}
"""
BUCKET = "bench-artifacts-ci"
CHANGED = "shard01/part-00001.bin"
FLIPPED = "shard02/part-00002.bin"


def make_tree(root: Path, n: int) -> int:
    total = 0
    rnd = os.urandom(1 << 20)
    for i in range(n):
        size = 4096 + (i * 7919) % 65536  # 4-68 KiB
        p = root / f"shard{i % 10:02d}" / f"part-{i:05d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(i.to_bytes(4, "big") + rnd[i % 1000: i % 1000 + size])
        total += size + 4
    return total


def fresh_checkout(src: Path, dst: Path, *, grow: bool = True, flip: bool = False) -> None:
    """A copy with new mtimes (copyfile, not copy2); one file grown and/or one flipped in place."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    if grow:
        t = dst / CHANGED
        t.write_bytes(t.read_bytes() + os.urandom(16))
    if flip:
        t = dst / FLIPPED
        data = bytearray(t.read_bytes())
        data[100] ^= 0xFF
        t.write_bytes(bytes(data))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1001)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    aws = aws_cmd()
    if not aws:
        sys.exit("needs the aws CLI: pip install awscli")
    work = Path(tempfile.mkdtemp(prefix="pt-bench-artifacts-"))
    try:
        with Moto() as moto:
            return _bench(moto, aws, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(moto: Moto, aws: list[str], work: Path, args) -> int:
    import boto3

    env = pt_env(moto.env())
    s3 = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="bench",
                      aws_secret_access_key="bench")
    s3.create_bucket(Bucket=BUCKET)
    (work / "pipeline.yml").write_text(CONFIG)
    env.update(PT_CONFIG=str(work / "pipeline.yml"), PT_OUTPUT="human")
    tree = work / "tree"
    total = make_tree(tree, args.files)
    print(f"tree: {args.files} files, {total / 1e6:.1f} MB; moto server {moto.endpoint}; "
          f"load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    pt = [*pt_cmd(), "artifacts", "push"]
    sync = [*aws, "s3", "sync", "--endpoint-url", moto.endpoint, "--only-show-errors"]
    sides = {
        "pt": lambda src: [*pt, str(src), "--stage", "ci", "--prefix", "pt"],
        "aws": lambda src: [*sync, str(src), f"s3://{BUCKET}/aws"],
        "aws-size": lambda src: [*sync, "--size-only", str(src), f"s3://{BUCKET}/size"],
    }
    for name, cmd in sides.items():  # first push of everything, each side to its own prefix
        dt, _ = run(cmd(tree), env=env)
        print(f"first push {name:9} {dt:6.2f} s")

    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    reqs: dict[str, list[int]] = {k: [] for k in sides}
    checkout = work / "checkout"
    for _ in range(args.reps):
        for name, cmd in sides.items():
            fresh_checkout(tree, checkout)
            mark = moto.log.mark()
            dt, p = run(cmd(checkout), env=env)
            wall[name].append(dt)
            cpu[name].append(p.cpu)
            reqs[name].append(len(moto.log.since(mark)))
    med = {k: statistics.median(v) for k, v in wall.items()}
    for name in sides:
        print(f"second push, fresh checkout, 1 grown: {name:9} {dist(wall[name])}; CPU median "
              f"{statistics.median(cpu[name]):.2f} s; requests {sorted(set(reqs[name]))}")
    method = (f"CLI processes incl. start-up, fresh checkout (new mtimes) of {args.files} files, 1 grown; "
              f"median of {args.reps}, same moto server; requests from its log")
    r_def, r_size = med["aws"] / med["pt"], med["aws-size"] / med["pt"]
    row("artifacts push vs aws s3 sync (default)", f"{med['pt']:.2f} s (worst {max(wall['pt']):.2f})",
        f"{med['aws']:.2f} s (worst {max(wall['aws']):.2f})", ">= 10x", r_def >= 10, method,
        ratio=f"{r_def:.1f}x", requests=f"pt {max(reqs['pt'])} / aws {max(reqs['aws'])}")
    row("artifacts push vs aws s3 sync --size-only", f"{med['pt']:.2f} s (worst {max(wall['pt']):.2f})",
        f"{med['aws-size']:.2f} s (worst {max(wall['aws-size']):.2f})", ">= 1.5x", r_size >= 1.5, method,
        ratio=f"{r_size:.1f}x", requests=f"pt {max(reqs['pt'])} / aws {max(reqs['aws-size'])}")

    # correctness: a same-size change
    fresh_checkout(tree, checkout, grow=False, flip=True)
    want = (checkout / FLIPPED).read_bytes()
    run(sides["pt"](checkout), env=env)
    run(sides["aws-size"](checkout), env=env)
    got_pt = s3.get_object(Bucket=BUCKET, Key=f"pt/{FLIPPED}")["Body"].read()
    got_size = s3.get_object(Bucket=BUCKET, Key=f"size/{FLIPPED}")["Body"].read()
    pt_ok, size_ok = got_pt == want, got_size == want
    print(f"same-size change of {FLIPPED}: pt {'uploaded it' if pt_ok else 'MISSED it'}; "
          f"aws s3 sync --size-only {'uploaded it' if size_ok else 'missed it (remote keeps the old bytes)'}")
    row("same-size content change", "caught" if pt_ok else "MISSED", "missed" if not size_ok else "caught",
        "pt catches it", pt_ok, "a byte flipped in one file of a fresh checkout; remote object read back "
        "(baseline: aws s3 sync --size-only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
