"""Benchmark: `pt build-push` of an unchanged source tree on a fresh runner (empty local cache).

    source scripts/services.sh && python bench/build_push.py

The example image (examples/iris) is built and pushed once. Then a "fresh runner": the built
image is removed from the local Docker cache and pt's cache dir is a new empty one, and
`pt build-push` runs again: it hashes the context, finds the content tag in the registry and
pushes nothing. Baseline: `docker build` + `docker push` of the same tree with docker's layer
cache WARM (docker's best case; a real fresh runner has an empty cache: `--cold-baseline` runs
`docker build --no-cache`, which took 228 s here under load, too slow for bench/run).
Goal: pt pushes 0 bytes and finishes in ≤ 1 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from common import pt_cmd, pt_env, row, run  # noqa: E402

REGISTRY = os.environ.get("PT_TEST_REGISTRY", "127.0.0.1:5055")
BASE = os.environ.get("PT_LAMBDA_BASE_IMAGE", "pt-local/lambda-python:3.11")


def main() -> int:
    cold = "--cold-baseline" in sys.argv
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        print("needs Docker: source scripts/services.sh", file=sys.stderr)
        return 2
    from startup import byte_compile

    print(byte_compile(), flush=True)
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="pt-bench-build-"))
    made: list[str] = []
    try:
        svc = work / "iris"
        shutil.copytree(ROOT / "examples" / "iris", svc, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        dockerfile = ROOT / "docker" / "model" / "Dockerfile"
        text = (svc / "pipeline.yml").read_text()
        text = re.sub(r"^project: \S+", f"project: bench{tag}", text, flags=re.M)
        text = text.replace("../../docker/model/Dockerfile", str(dockerfile))
        (svc / "pipeline.yml").write_text(text)
        env = pt_env({**os.environ, "PT_REGISTRY": REGISTRY, "PT_CACHE_DIR": str(work / "cache-1")})
        pt = [*pt_cmd(), "build-push", "--config", str(svc / "pipeline.yml"), "--output", "json"]

        first_t, p = run(pt, env=env)
        first = json.loads(p.stdout)["images"]
        made += [f"{i['repository']}:{i['tag']}" for i in first]
        print(f"first pt build-push: {first_t:.2f} s, {[i['status'] for i in first]}", flush=True)

        ref = f"{REGISTRY}/bench{tag}-docker:latest"
        made.append(ref)
        build = ["docker", "build", "-q", "-f", str(dockerfile), "--build-arg", "MODEL_DIR=model",
                 "--build-arg", f"BASE_IMAGE={BASE}", "-t", ref, str(svc)]
        if not cold:
            run(build)  # fill docker's layer cache
        b_t, _ = run([*build[:3], *(["--no-cache"] if cold else []), *build[3:]])
        p_t, _ = run(["docker", "push", "-q", ref])
        what = "docker build --no-cache" if cold else "docker build (warm cache)"
        print(f"{what} {b_t:.2f} s + docker push {p_t:.2f} s = {b_t + p_t:.2f} s", flush=True)
        # a fresh runner: no local image, empty pt cache
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)  # docker's image too
        env["PT_CACHE_DIR"] = str(work / "cache-2")
        fresh_t, p = run(pt, env=env)
        fresh = json.loads(p.stdout)["images"]
        pushed = sum(i["bytes_pushed"] for i in fresh)
        statuses = [i["status"] for i in fresh]
        print(f"fresh runner, unchanged tree: pt {fresh_t:.2f} s (CPU {p.cpu:.2f} s), status {statuses}, "
              f"pushed {pushed} bytes", flush=True)

        ok = pushed == 0 and fresh_t <= 1.0 and all(s == "skipped" for s in statuses)
        row("build-push, unchanged tree, fresh runner", f"{fresh_t:.2f} s (CPU {p.cpu:.2f} s), {pushed} B pushed",
            f"{b_t + p_t:.2f} s ({what} + push)", "0 B pushed, <= 1 s", ok,
            "CLI process incl. start-up; local image removed and an empty PT_CACHE_DIR before the pt run; "
            f"local registry {REGISTRY}", ratio=f"{fresh_t / (b_t + p_t):.2f}x")
    finally:
        if made:
            subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
