"""Benchmark: `pt deploy` (all-at-once, 2 functions) vs the equivalent awscli sequence, and the
alarm → rollback latency. Both against one moto server (real HTTP), in one run.

    python bench/deploy.py [--runs 3] [--poll 1.0]

The awscli baseline is what a hand-written pipeline does per function:
update-function-code, wait function-updated, publish-version, update-alias. `pt deploy`
additionally checks the digest in ECR, takes the stage lock, writes the ledger record at
every transition, reads the gate once and prunes old versions. Targets: ratio ≤ 0.2;
alarm → rollback ≤ poll + 2 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                  PT_ACTOR="bench", PT_COMMIT_AUTHOR="bench@example.com", PT_GIT_SHA="0" * 40,
                  PT_GIT_BRANCH="main")
for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(k, None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll", type=float, default=1.0, help="gate poll interval for the latency test")
    args = ap.parse_args()
    if not shutil.which("aws"):
        print("awscli not found: pip install awscli (it is in the dev extras)", file=sys.stderr)
        return 2
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    from moto.server import ThreadedMotoServer

    from pipeline_tools.aws import AwsFactory
    from tests.conftest import free_port
    from tests.integration.conftest_deploy import digest, make_stage, uri

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
        st = make_stage(AwsFactory(region="us-east-1", endpoint=endpoint), tmp, stages=("staging",),
                        images=(1, 2, 3, 4), strategy="all-at-once", bake="0s")
        env = dict(os.environ)

        def pt_deploy(n: int) -> float:
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pipeline_tools", "deploy", "--config", str(st.config),
                                "--stage", "staging", "--image-uri", uri(n), "--strategy", "all-at-once"],
                               capture_output=True, text=True, env=env)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                raise SystemExit(f"pt deploy failed: {r.stderr}")
            return dt

        def aws(*a: str) -> str:
            r = subprocess.run(["aws", "--endpoint-url", endpoint, "--region", "us-east-1", "--output", "text", *a],
                               capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"aws {' '.join(a)} failed: {r.stderr}")
            return r.stdout.strip()

        def cli_deploy(n: int) -> float:
            t = time.perf_counter()
            for fn in ("predict", "batch-score"):
                name = st.fname(fn)
                aws("lambda", "update-function-code", "--function-name", name, "--image-uri", uri(n),
                    "--query", "FunctionName")
                aws("lambda", "wait", "function-updated", "--function-name", name)
                v = aws("lambda", "publish-version", "--function-name", name, "--description", f"cli {digest(n)}",
                        "--query", "Version")
                aws("lambda", "update-alias", "--function-name", name, "--name", "live", "--function-version", v,
                    "--query", "FunctionVersion")
            return time.perf_counter() - t

        pt_times, cli_times = [], []
        seq = [2, 3, 4, 1] * args.runs
        for i in range(args.runs):
            pt_times.append(pt_deploy(seq[2 * i]))
            cli_times.append(cli_deploy(seq[2 * i + 1]))
        pt_med, cli_med = statistics.median(pt_times), statistics.median(cli_times)
        def fmt(xs: list[float]) -> str:
            return ", ".join(f"{x:.2f}" for x in xs)

        print(f"pt deploy all-at-once, 2 functions: median {pt_med:.2f}s  ({fmt(pt_times)})")
        print(f"awscli sequence (8 commands):       median {cli_med:.2f}s  ({fmt(cli_times)})")
        print(f"ratio pt/awscli: {pt_med / cli_med:.2f}x  (target <= 0.2x)")

        lat = rollback_latency(st, args.poll, args.runs)
        print(f"alarm -> rollback completed (poll {args.poll:g}s): median {statistics.median(lat):.2f}s, "
              f"max {max(lat):.2f}s  (target <= poll + 2s = {args.poll + 2:g}s)")
    finally:
        server.stop()
    return 0


def rollback_latency(st, poll: float, runs: int) -> list[float]:
    from pipeline_tools import deploy as dp
    from pipeline_tools.config import load
    from pipeline_tools.ledger import Ledger, ensure_table
    from tests.integration.conftest_deploy import uri, wait_for

    st.write_config(strategy="all-at-once", bake="30s", poll=f"{poll}s")
    cfg = load(st.config)
    ensure_table(st.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led = Ledger(st.ddb, "rel-ledger")
    out = []
    for _ in range(runs):
        st.set_alarm("OK")
        live = next(iter(st.live_digests()))
        target = next(n for n in (1, 2, 3, 4) if uri(n).endswith(live)) % 4 + 1
        plan = dp.plan_deploy(cfg, "staging", "model", dp.parse_image_uri(uri(target)), st.lam)
        deps = dp.Deps(st.lam, st.cw, led, actor={"name": "bench"}, lease=60)
        flipped: dict = {}

        def flip(deps=deps, flipped=flipped):
            wait_for(lambda: any(t.get("state") == "baking" for r in deps.ledger.query("staging", "deploy", limit=1)
                                 for t in r.transitions), timeout=60)
            time.sleep(poll * 0.5)  # land between two polls
            st.set_alarm("ALARM")
            flipped["at"] = time.time()

        t = threading.Thread(target=flip)
        t.start()
        try:
            dp.deploy(cfg, plan, deps)
        except dp.DeployFailed:
            pass
        t.join()
        rec = led.query("staging", "deploy", limit=1)[0]
        done = next(tr["ts"] for tr in rec.transitions if tr.get("state") == "rolled_back")
        out.append(done - flipped["at"])
    return out


if __name__ == "__main__":
    sys.exit(main())
