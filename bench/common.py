"""Shared bench helpers: a moto server that counts the requests it serves, timing, result rows.

Every bench script prints its own detail and, for `bench/run`, one `BENCHROW {json}` line per
case: case, pt, baseline, ratio, goal, met, method and request counts. A ratio is printed only
when both sides did the same work under the same method; otherwise it is left empty.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW_PREFIX = "BENCHROW "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RequestLog(logging.Handler):
    """Counts the requests moto's werkzeug server logs ("METHOD /path HTTP/1.1" status)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "HTTP/1." in msg and "/moto-api" not in msg:
            with self._lock:
                self.lines.append(msg)

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return self.lines[mark:]


class Moto:
    """ThreadedMotoServer on a free port, with its request log counted (and not printed)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from pipeline_tools.local.motoserver import patch_lambda_versions

        patch_lambda_versions()  # as `pt local up` runs moto: AWS's version numbering, per-version code

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = RequestLog()
        wz = logging.getLogger("werkzeug")
        wz.handlers[:] = [self.log]
        wz.setLevel(logging.INFO)
        wz.propagate = False
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self) -> Moto:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        env = {**os.environ, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        return env


class BotoCounter:
    """Counts botocore `before-send` events (one per HTTP request, retries included) in this process."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self._orig = None

    def _on_send(self, request=None, event_name: str = "", **_kw) -> None:
        # event_name is before-send.<service>.<Operation>
        self.ops[".".join(event_name.split(".")[1:]) or "?"] += 1

    def __enter__(self) -> BotoCounter:
        import botocore.session

        self._orig = orig = botocore.session.Session.__init__
        counter = self

        def init(sess, *a, **kw):
            orig(sess, *a, **kw)
            sess.register("before-send", counter._on_send)

        botocore.session.Session.__init__ = init
        return self

    def __exit__(self, *exc) -> None:
        import botocore.session

        botocore.session.Session.__init__ = self._orig

    @property
    def total(self) -> int:
        return sum(self.ops.values())


def run(cmd: list[str], env: dict | None = None, check: bool = True, **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a subprocess (start-up included) and its result; `p.cpu` = its user+sys CPU
    seconds (children's rusage delta: load on the machine stretches wall time, much less CPU time)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p.cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime  # type: ignore[attr-defined]
    if check and p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p


def timeit(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dist(xs: list[float], unit: str = "s", scale: float = 1.0) -> str:
    """median, worst and the count, e.g. 'median 0.41 s, worst 0.52 s (n=5)'."""
    fmt = (lambda x: f"{x * scale:.0f} {unit}") if unit == "ms" else (lambda x: f"{x * scale:.2f} {unit}")
    return f"median {fmt(statistics.median(xs))}, worst {fmt(max(xs))} (n={len(xs)})"


def row(case: str, pt: str, baseline: str, goal: str, met: bool | None, method: str, ratio: str = "",
        requests: str = "") -> None:
    """One result line for bench/run (and a readable line for a human running the script alone)."""
    data = {"case": case, "pt": pt, "baseline": baseline, "ratio": ratio, "goal": goal,
            "met": None if met is None else bool(met), "method": method, "requests": requests}
    print(ROW_PREFIX + json.dumps(data), flush=True)


def pt_cmd() -> list[str]:
    """`pt` run from this checkout (python -m, so PYTHONPATH/cwd picks this worktree's package)."""
    return [sys.executable, "-m", "pipeline_tools"]


def aws_cmd() -> list[str]:
    """The awscli entry script next to this interpreter, run by it, when there (a pyenv shim in
    PATH adds ~0.1 s of bash per process; pt is started without one, so awscli is too); else PATH."""
    import shutil

    cand = os.path.join(os.path.dirname(os.path.realpath(sys.executable)), "aws")
    if os.path.exists(cand):
        return [sys.executable, cand]
    found = shutil.which("aws")
    return [found] if found else []


def pt_env(env: dict) -> dict:
    return {**env, "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")}


def machine() -> dict:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(), "os": f"{platform.system()} {platform.release()}"}
