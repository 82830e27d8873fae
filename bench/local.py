"""Benchmark local mode: `pt invoke --local` vs a bare `docker run`, and `pt local up` warm vs cold.

    source scripts/services.sh && python bench/local.py [--reps 3] [--image IMAGE]

1. invoke: the Lambda-like base image with a one-line handler. Baseline: `docker run --rm IMAGE
   python3 -c "<call the handler>"` (what a user would do without pt: no Runtime API, no event
   delivery, no error/timeout handling). Ratio = pt invoke / docker run, both cold containers.
2. `pt local up` on its own moto port and state dir: cold (empty template cache: CDK synth of
   every stage) vs warm (cache filled, server running, stacks unchanged). Ratio = cold / warm.

The median of --reps runs is printed. Needs Docker, the local base images and node (CDK).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_tools.images.lambda_runtime import invoke_image  # noqa: E402
from pipeline_tools.local import stack as local  # noqa: E402

HANDLER = "def handler(event, context):\n    return {'sum': sum(event['xs'])}\n"


def _image(docker, base: str) -> str:
    tag = "pt-bench/invoke:1"
    try:
        docker.images.get(tag)
        return tag
    except Exception:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("Dockerfile", f"FROM {base}\nCOPY bench_app.py /var/task/bench_app.py\n"
                                          'ENTRYPOINT ["python3", "-m", "awslambdaric"]\n'),
                           ("bench_app.py", HANDLER)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return tag


def _median(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_invoke(reps: int, base: str) -> None:
    import docker as docker_mod

    docker = docker_mod.from_env(timeout=300)
    image = _image(docker, base)
    event = {"xs": [1, 2, 3]}

    def pt() -> None:
        res = invoke_image(docker, image, json.dumps(event).encode(), function="bench", handler="bench_app.handler",
                           timeout=30)
        assert res.ok and res.payload == {"sum": 6}, res.to_dict()

    def bare() -> None:
        out = subprocess.run(["docker", "run", "--rm", "--network", "host", "--entrypoint", "python3", image, "-c",
                              f"import bench_app, json; print(json.dumps(bench_app.handler({event!r}, None)))"],
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == {"sum": 6}

    t_bare = _median(bare, reps)
    t_pt = _median(pt, reps)
    print(f"invoke: pt invoke --local {t_pt:.2f}s, docker run {t_bare:.2f}s, ratio {t_pt / t_bare:.2f}x "
          f"(median of {reps}; both start a cold container)")


def bench_up(reps: int) -> None:
    cfg = ROOT / "examples" / "iris" / "pipeline.yml"
    with tempfile.TemporaryDirectory(prefix="pt-bench-local-") as tmp:
        env = {**os.environ, "PT_LOCAL_DIR": f"{tmp}/state", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
        port = str(local.free_port())
        up = [sys.executable, "-m", "pipeline_tools", "local", "up", "--config", str(cfg), "--port", port]
        try:
            def cold() -> None:
                cache = tempfile.mkdtemp(dir=tmp)
                subprocess.run(up, env={**env, "PT_CACHE_DIR": cache}, check=True, capture_output=True)

            def warm() -> None:
                subprocess.run(up, env={**env, "PT_CACHE_DIR": f"{tmp}/cache"}, check=True, capture_output=True)

            t_cold = _median(cold, reps)
            warm()  # fill the shared cache once
            t_warm = _median(warm, reps)
        finally:
            subprocess.run([sys.executable, "-m", "pipeline_tools", "local", "down"], env=env, capture_output=True)
    print(f"local up: cold (synth every stage) {t_cold:.2f}s, warm {t_warm:.2f}s, ratio {t_cold / t_warm:.1f}x "
          f"(median of {reps})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--base", default=os.environ.get("PT_LAMBDA_BASE_IMAGE", "pt-local/lambda-python:3.11"))
    ap.add_argument("--only", choices=["invoke", "up"], default=None)
    args = ap.parse_args()
    if args.only in (None, "invoke"):
        bench_invoke(args.reps, args.base)
    if args.only in (None, "up"):
        bench_up(args.reps)


if __name__ == "__main__":
    main()
