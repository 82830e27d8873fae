"""Run every benchmark and print one table (used by `bash bench/run`).

    python bench/report.py [--quick] [--write-docs] [--only NAME ...]

Each bench script prints its detail lines and one `BENCHROW {json}` line per case; this
collects the rows into one table: case, pt, baseline, ratio, goal, result, method, requests.
With --write-docs the table and the machine it ran on replace the block between the markers
in docs/performance.md. Scripts that cannot run here (no Docker, no awscli) are listed as
skipped, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from common import ROW_PREFIX, machine  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def plan(quick: bool) -> list[tuple[str, list[str], str | None]]:
    """(name, argv, reason it cannot run here or None)."""
    docker = bool(os.environ.get("DOCKER_HOST")) or Path("/var/run/docker.sock").exists()
    aws = shutil.which("aws") is not None
    q = quick
    return [
        ("startup", ["startup.py", "--runs", "10" if q else "20"], None),
        ("deploy", ["deploy.py", "--runs", "2" if q else "3", "--trials", "5" if q else "20"],
         None if aws else "awscli not installed (pip install awscli)"),
        ("artifacts", ["artifacts.py", "--reps", "2" if q else "3"], None if aws else "awscli not installed"),
        ("scale", ["scale.py", "--files", "20000" if q else "100000", "--records", "2000" if q else "10000"], None),
        ("zoo", ["zoo.py", "--models", "100" if q else "500"], None),
        ("build", ["build_push.py"], None if docker else "no Docker (source scripts/services.sh)"),
    ]


def run_one(name: str, argv: list[str], log) -> tuple[list[dict], float, int]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.Popen([sys.executable, str(HERE / argv[0]), *argv[1:]], cwd=ROOT, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rows = []
    assert p.stdout is not None
    for line in p.stdout:
        log.write(line)
        if line.startswith(ROW_PREFIX):
            rows.append(json.loads(line[len(ROW_PREFIX):]))
        else:
            print(f"  [{name}] {line.rstrip()}", flush=True)
    rc = p.wait()
    return rows, time.perf_counter() - t0, rc


def table(rows: list[dict]) -> str:
    head = ["case", "pt", "baseline", "ratio", "goal", "result", "requests (AWS)", "method"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        result = {True: "met", False: "**MISSED**", None: "-"}[r.get("met")]
        cells = [r["case"], r["pt"], r["baseline"], r.get("ratio") or "-", r["goal"], result,
                 r.get("requests") or "-", r["method"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and smaller trees (a smoke run)")
    ap.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    ap.add_argument("--only", nargs="*", default=None, help="bench names: startup deploy artifacts scale zoo build")
    args = ap.parse_args()
    before = machine()
    t0 = time.perf_counter()
    rows: list[dict] = []
    notes: list[str] = []
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "pt-bench.log"
    with open(log_path, "w") as log:
        for name, argv, why_not in plan(args.quick):
            if args.only and name not in args.only:
                continue
            if why_not:
                notes.append(f"{name}: skipped: {why_not}")
                print(f"== {name}: skipped ({why_not})", flush=True)
                continue
            if not (HERE / argv[0]).exists():
                notes.append(f"{name}: no bench script")
                continue
            print(f"== {name}: {' '.join(argv)}", flush=True)
            got, secs, rc = run_one(name, argv, log)
            rows += got
            notes.append(f"{name}: {secs:.0f} s" + ("" if rc == 0 else f", exit {rc} (see {log_path})"))
    total = time.perf_counter() - t0
    after = machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"Ran {when} with `bash bench/run{' --quick' if args.quick else ''}` in {total / 60:.1f} min on "
              f"{before['nproc']} × {before['cpu']}, Python {before['python']}, {before['os']}; "
              f"load average (1/5/15 min) before {before['load']}, after {after['load']}.")
    out = "\n".join([header, "", table(rows), "", "Per bench: " + "; ".join(notes) + "."])
    print()
    print(out)
    if args.write_docs:
        doc = ROOT / "docs" / "performance.md"
        text = doc.read_text()
        if BEGIN not in text or END not in text:
            print(f"{doc}: markers {BEGIN} / {END} missing; not written", file=sys.stderr)
            return 1
        pre, rest = text.split(BEGIN, 1)
        _, post = rest.split(END, 1)
        doc.write_text(f"{pre}{BEGIN}\n{out}\n{END}{post}")
        print(f"\nwrote {doc}")
    missed = [r["case"] for r in rows if r.get("met") is False]
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
