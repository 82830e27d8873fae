"""Benchmark: `pt build-push` vs `docker build && docker push` on the example image (examples/iris).

  (a) first run (cold docker cache for both: --no-cache), (b) second run with no change
      (target: pt <= 1 s and <= 0.3x docker, 0 bytes pushed), (c) one source file changed
      (only the changed layer is pushed).

Needs the services: `source scripts/services.sh` (DOCKER_HOST, PT_TEST_REGISTRY, the lambda base).
Run: python bench/build_push.py [--keep]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = os.environ.get("PT_TEST_REGISTRY", "127.0.0.1:5055")
BASE = os.environ.get("PT_LAMBDA_BASE_IMAGE", "pt-local/lambda-python:3.11")


def sh(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return dt, p


def main() -> None:
    run = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    svc = work / "iris"
    shutil.copytree(ROOT / "examples" / "iris", svc, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    dockerfile = ROOT / "docker" / "model" / "Dockerfile"
    text = (svc / "pipeline.yml").read_text()
    text = re.sub(r"^project: \S+", f"project: bench{run}", text, flags=re.M)
    text = text.replace("../../docker/model/Dockerfile", str(dockerfile))
    (svc / "pipeline.yml").write_text(text)
    env = {**os.environ, "PT_REGISTRY": REGISTRY}
    pt = [sys.executable, "-m", "pipeline_tools", "build-push", "--config", str(svc / "pipeline.yml"),
          "--output", "json"]
    docker_ref = f"{REGISTRY}/bench{run}-docker:latest"
    docker_build = ["docker", "build", "-q", "-f", str(dockerfile), "--build-arg", "MODEL_DIR=model",
                    "--build-arg", f"BASE_IMAGE={BASE}", "-t", docker_ref, str(svc)]
    docker_push = ["docker", "push", "-q", docker_ref]

    def pt_run(*extra: str) -> tuple[float, dict]:
        dt, p = sh([*pt, *extra], env=env)
        return dt, json.loads(p.stdout)["images"][0]

    def docker_run(*extra: str) -> float:
        d1, _ = sh([*docker_build[:2], *extra, *docker_build[2:]])
        d2, _ = sh(docker_push)
        return d1 + d2

    rows = []
    print(f"bench: example image, registry {REGISTRY}, base {BASE}, workdir {work}", flush=True)
    # (a) first run, cold layer cache for both
    d_a = docker_run("--no-cache")
    p_a, res_a = pt_run("--no-cache")
    rows.append(("a first run (--no-cache)", p_a, d_a, res_a))
    # (b) nothing changed
    d_b = docker_run()
    p_b, res_b = pt_run()
    rows.append(("b no change", p_b, d_b, res_b))
    # (c) one source file changed
    with open(svc / "app.py", "a") as fh:
        fh.write(f"\n# bench change {run}\n")
    d_c = docker_run()
    p_c, res_c = pt_run()
    rows.append(("c one file changed", p_c, d_c, res_c))

    size = json.loads(sh(["docker", "image", "inspect", f"{res_c['repository']}:{res_c['tag']}"])[1].stdout)[0]["Size"]
    print(f"{'case':28} {'pt s':>8} {'docker s':>9} {'ratio':>6}  status   pushed")
    for name, p, d, res in rows:
        print(f"{name:28} {p:8.2f} {d:9.2f} {p / d:6.2f}  {res['status']:8} {res['bytes_pushed'] / 1e6:.2f} MB")
    print(f"image size {size / 1e6:.1f} MB; (c) pushed {res_c['bytes_pushed'] / 1e3:.1f} kB "
          f"= {res_c['bytes_pushed'] / size:.4f} of the image")
    ok_b = p_b <= 1.0 and p_b <= 0.3 * d_b and res_b["bytes_pushed"] == 0 and res_b["status"] == "skipped"
    print(f"(b) target <= 1 s and <= 0.3x docker, 0 bytes: {'MET' if ok_b else 'NOT MET'}")
    hash_bench(work)
    if "--keep" not in sys.argv:
        shutil.rmtree(work, ignore_errors=True)
        refs = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                              text=True).stdout.split()
        mine = [r for r in refs if f"/bench{run}-" in r and not r.endswith(":<none>")]
        subprocess.run(["docker", "rmi", "-f", *mine], capture_output=True)


def hash_bench(work: Path) -> None:
    """(d) context hashing throughput vs `sha256sum` over the same files (200 MB + 1,000 small)."""
    from pipeline_tools.buildctx import content_digest, scan

    d = work / "hash"
    (d / "small").mkdir(parents=True)
    with open(d / "big.bin", "wb") as fh:
        for _ in range(200):
            fh.write(os.urandom(1 << 20))
    for i in range(1000):
        (d / "small" / f"f{i}.txt").write_bytes(os.urandom(32_000))
    (d / "Dockerfile").write_text("FROM scratch\n")
    best_pt = best_sum = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        ctx = scan(d, d / "Dockerfile")
        content_digest(ctx)
        best_pt = min(best_pt, time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run(f"find {d} -type f -print0 | xargs -0 sha256sum >/dev/null", shell=True, check=True)
        best_sum = min(best_sum, time.perf_counter() - t0)
    print(f"d context hash {ctx.total_bytes / 1e6:.0f} MB / {len(ctx.entries)} entries: pt {best_pt:.2f}s, "
          f"sha256sum {best_sum:.2f}s, ratio {best_pt / best_sum:.2f}")


if __name__ == "__main__":
    main()
