"""Benchmark: `pt deploy` (all-at-once, 2 functions) vs awscli, and the alarm → rollback latency
in the worst case. Everything against one moto server (real HTTP).

    python bench/deploy.py [--runs 3] [--trials 20] [--poll 1.0]

Deploy, two baselines, each run as the processes a pipeline script would start:
- the bare sequence (8 awscli processes for 2 functions): `update-function-code`, `wait
  function-updated`, `publish-version`, `update-alias` per function. It moves traffic and
  nothing else: no lock, no record, no gate, no rollback target.
- the same work as `pt deploy` (19 awscli processes): the caller's identity, the digest in ECR, a
  conditional lock item, the check for an unfinished deploy, the live alias and version of each
  function (the rollback target), the alarms before, a record of the placements, update +
  publish (`--publish`) and `wait published-version-active`, the alias, the alarms after, the
  final record, the lock deleted. (pt's records are also fenced by the lock's token and its first
  alias write is conditional on the RevisionId it read; the script has neither.)
Requests are counted on every side with the moto server's request log; pt's are also counted
in-process (botocore `before-send`, per operation). Goals (issue 20): pt requests ≤ the bare
sequence's; pt wall time ≤ 0.2× the bare sequence's.

Alarm → rollback. `pt deploy`'s engine (release/engine.py with the Lambda target) bakes with a
gate poll of --poll seconds; the alarm is flipped right after a poll read OK (the worst case: the
change waits a whole poll interval to be seen), over --trials deploys. Latency = flip →
`rolled_back` in the ledger. Goal: worst ≤ poll + 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import Moto, aws_cmd, dist, pt_cmd, pt_env, row, run  # noqa: E402

os.environ.update(PT_ACTOR="bench", PT_COMMIT_AUTHOR="bench@example.com", PT_GIT_SHA="0" * 40,
                  PT_GIT_BRANCH="main")


AWSCLI_ALSO = {"lambda.UpdateFunctionCode", "lambda.PublishVersion", "lambda.UpdateAlias",
               "lambda.GetFunctionConfiguration"}
WHY = {"ecr.DescribeImages": "digest exists in ECR", "sts.GetCallerIdentity": "who deploys (ledger actor)",
       "lambda.GetAlias": "what runs (alias, its RevisionId fences the first alias write)",
       "lambda.GetFunction": "the live version's digest and configuration (rollback target, no-op check)",
       "cloudwatch.DescribeAlarms": "gate before/after the shift", "cloudwatch.GetMetricData": "candidate metrics",
       "dynamodb.DescribeTable": "ledger table exists",
       "dynamodb.Query": "no unfinished deploy (under the lock)", "dynamodb.PutItem": "stage lock",
       "dynamodb.TransactWriteItems": "ledger records fenced by the lock: locked+updating, placements and "
                                      "candidates before traffic moves, the last state with the lock's release",
       "dynamodb.GetItem": "ledger read", "dynamodb.DeleteItem": "lock release"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--poll", type=float, default=1.0, help="gate poll interval for the latency test")
    args = ap.parse_args()

    if not aws_cmd():
        print("awscli not found: pip install awscli", file=sys.stderr)
        return 2
    from pipeline_tools.core.aws import AwsFactory
    from tests.integration.conftest_deploy import digest, make_stage, uri

    with Moto() as moto:
        env = pt_env(moto.env())
        os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                               "AWS_DEFAULT_REGION")})
        tmp = Path(tempfile.mkdtemp(prefix="pt-bench-deploy-"))
        st = make_stage(AwsFactory(region="us-east-1", endpoint=moto.endpoint), tmp, stages=("staging",),
                        images=(1, 2, 3, 4), strategy="all-at-once", bake="0s", keep=50)
        from pipeline_tools.release.ledger import ensure_table

        # the ledger table exists, as in any deployed stage (local mode would create it on the first run)
        ensure_table(st.ddb, "rel-ledger", project="rel", stage="staging", local=True)
        deploy_args = ["deploy", "--config", str(st.config), "--stage", "staging", "--strategy", "all-at-once"]

        def pt_deploy(n: int) -> tuple[float, int]:
            mark = moto.log.mark()
            dt, _ = run([*pt_cmd(), *deploy_args, "--image-uri", uri(n)], env=env)
            return dt, len(moto.log.since(mark))

        def aws(*a: str) -> str:
            _, p = run([*aws_cmd(), "--endpoint-url", moto.endpoint, "--region", "us-east-1", "--output", "text", *a],
                       env=env)
            return p.stdout.strip()

        def cli_deploy(n: int) -> tuple[float, int]:
            mark = moto.log.mark()
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
            return time.perf_counter() - t, len(moto.log.since(mark))

        def cli_same_work(n: int) -> tuple[float, int, int]:
            """What `pt deploy` does, as an awscli script (19 processes). Returns (s, requests, processes)."""
            mark = moto.log.mark()
            t = time.perf_counter()
            calls = 0

            def call(*a: str) -> str:
                nonlocal calls
                calls += 1
                return aws(*a)

            def item(**kv: str) -> str:
                return json.dumps({k: {"S": v} for k, v in kv.items()})

            rid = f"CLI#{time.time():.6f}"
            call("sts", "get-caller-identity", "--query", "Arn")
            call("ecr", "describe-images", "--repository-name", "rel-model", "--image-ids",
                 f"imageDigest={digest(n)}", "--query", "imageDetails[0].imageDigest")
            call("dynamodb", "put-item", "--table-name", "rel-ledger", "--condition-expression",
                 "attribute_not_exists(sk)", "--item", item(pk="staging", sk="CLI-LOCK", holder=rid))
            call("dynamodb", "query", "--table-name", "rel-ledger", "--limit", "20", "--no-scan-index-forward",
                 "--key-condition-expression", "pk = :p AND begins_with(sk, :r)", "--expression-attribute-values",
                 json.dumps({":p": {"S": "staging"}, ":r": {"S": "R#"}}), "--query", "Count")
            live = {}
            for fn in ("predict", "batch-score"):
                name = st.fname(fn)
                v = call("lambda", "get-alias", "--function-name", name, "--name", "live", "--query",
                         "FunctionVersion")
                live[name] = (v, call("lambda", "get-function", "--function-name", name, "--qualifier", v,
                                      "--query", "Code.ImageUri"))
            call("cloudwatch", "describe-alarms", "--alarm-name-prefix", "rel-staging-", "--query",
                 "MetricAlarms[].StateValue")
            call("dynamodb", "put-item", "--table-name", "rel-ledger", "--item",
                 item(pk="staging", sk=rid, state="shifting", placements=json.dumps(live)))
            new = {}
            for fn in ("predict", "batch-score"):
                name = st.fname(fn)
                new[name] = call("lambda", "update-function-code", "--function-name", name, "--image-uri", uri(n),
                                 "--publish", "--query", "Version")
                call("lambda", "wait", "published-version-active", "--function-name", name, "--qualifier",
                     new[name])
            for name, v in new.items():
                call("lambda", "update-alias", "--function-name", name, "--name", "live", "--function-version", v,
                     "--query", "FunctionVersion")
            call("cloudwatch", "describe-alarms", "--alarm-name-prefix", "rel-staging-", "--query",
                 "MetricAlarms[].StateValue")
            call("dynamodb", "put-item", "--table-name", "rel-ledger", "--item",
                 item(pk="staging", sk=rid, state="succeeded", placements=json.dumps(live), candidates=json.dumps(new)))
            call("dynamodb", "delete-item", "--table-name", "rel-ledger", "--key", item(pk="staging", sk="CLI-LOCK"))
            return time.perf_counter() - t, len(moto.log.since(mark)), calls

        pt_runs, cli_runs, same_runs = [], [], []
        images = [2, 3, 4, 1]
        for i in range(args.runs):
            pt_runs.append(pt_deploy(images[(3 * i) % 4]))
            cli_runs.append(cli_deploy(images[(3 * i + 1) % 4]))
            same_runs.append(cli_same_work(images[(3 * i + 2) % 4]))
        # one more pt deploy, counted in-process per operation
        out = tmp / "counted.json"
        mark = moto.log.mark()
        run([sys.executable, str(HERE / "counted.py"), str(out), *deploy_args,
             "--image-uri", uri(images[(3 * args.runs) % 4])], env=env)
        counted = json.loads(out.read_text())
        server_seen = len(moto.log.since(mark))
        pt_t = [t for t, _ in pt_runs]
        cli_t = [t for t, _ in cli_runs]
        same_t = [t for t, _, _ in same_runs]
        pt_req = max(n for _, n in pt_runs)
        cli_req = max(n for _, n in cli_runs)
        same_req = max(n for _, n, _ in same_runs)
        same_procs = same_runs[0][2]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(counted["ops"].items()))
        same = sum(v for k, v in counted["ops"].items() if k.startswith("lambda.") and k in AWSCLI_ALSO)
        extra = {k: v for k, v in counted["ops"].items() if k not in AWSCLI_ALSO}
        print(f"pt requests that the bare awscli sequence also makes (Lambda update/publish/alias): {same}; "
              f"the rest are pt's checks and records: "
              + ", ".join(f"{WHY.get(k, k)} {v}" for k, v in sorted(extra.items())))
        print(f"pt deploy all-at-once, 2 functions: {dist(pt_t)}; requests (server log) "
              f"{sorted({n for _, n in pt_runs})}; before-send {counted['total']} (server saw {server_seen}): {ops}")
        print(f"awscli bare sequence (8 processes): {dist(cli_t)}; requests (server log) "
              f"{sorted({n for _, n in cli_runs})}")
        print(f"awscli script doing pt's work ({same_procs} processes): {dist(same_t)}; requests (server log) "
              f"{sorted({n for _, n, _ in same_runs})}")
        pt_med, cli_med, same_med = statistics.median(pt_t), statistics.median(cli_t), statistics.median(same_t)
        ratio = pt_med / cli_med
        print(f"wall ratio pt/awscli bare {ratio:.2f}x (goal <= 0.2x), pt/same-work script {pt_med / same_med:.2f}x; "
              f"requests pt {pt_req} vs bare {cli_req} (goal pt <= bare) vs same-work {same_req}")
        method = ("1 pt process vs 8 aws processes (the bare sequence a pipeline script runs), same moto server; "
                  f"process start counted on both sides; median of {args.runs}; keep_versions 50: no pruning "
                  "(awscli does not prune)")
        row("deploy all-at-once, 2 functions: wall", f"{pt_med:.2f} s (worst {max(pt_t):.2f})",
            f"{cli_med:.2f} s (worst {max(cli_t):.2f})", "<= 0.2x", ratio <= 0.2, method, ratio=f"{ratio:.2f}x",
            requests=f"pt {pt_req} / aws {cli_req}")
        row("deploy all-at-once, 2 functions: AWS requests vs the bare sequence", str(pt_req), str(cli_req),
            "pt <= awscli", pt_req <= cli_req,
            f"moto server request log; pt before-send {counted['total']}: {ops}; {same} of them are the Lambda "
            "writes the bare sequence makes too (update+publish in one call), the rest is what the bare sequence "
            "does not do: " + ", ".join(f"{WHY.get(k, k)} {v}" for k, v in sorted(extra.items())),
            ratio=f"{pt_req / cli_req:.2f}x", requests=f"pt {pt_req} / aws {cli_req}")
        row("deploy all-at-once, 2 functions: vs an awscli script doing the same work",
            f"{pt_med:.2f} s, {pt_req} requests", f"{same_med:.2f} s (worst {max(same_t):.2f}), {same_req} requests",
            "pt <= script (requests)", pt_req <= same_req,
            f"{same_procs} aws processes: identity, ECR digest, conditional lock item, unfinished-deploy query, "
            "alias + live version per function, alarms before, placements record, update --publish + "
            "wait published-version-active, alias, alarms after, final record, lock deleted; "
            f"median of {args.runs}, same moto server", ratio=f"{pt_med / same_med:.2f}x (wall)",
            requests=f"pt {pt_req} / aws {same_req}")

    # Fresh moto state for the latency trials: moto reuses version numbers once versions were
    # pruned (publish then answers an existing number, which pt refuses as "no code change").
    # (moto's backends are per process, so a second server would share them: reset instead.)
    with Moto() as moto:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{moto.endpoint}/moto-api/reset", method="POST", data=b""),
                               timeout=30).read()
        os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
        st = make_stage(AwsFactory(region="us-east-1", endpoint=moto.endpoint), Path(tempfile.mkdtemp()),
                        stages=("staging",), images=(1, 2, 3, 4), strategy="all-at-once", bake="0s")
        failed: list[str] = []
        lat = rollback_latency(st, args.poll, args.trials, failed)
        if not lat:
            row(f"alarm -> rollback, worst case (poll {args.poll:g} s)", "no trial completed", "-",
                f"worst <= {args.poll + 1:g} s", False, "; ".join(failed))
            return 1
        q = sorted(lat)
        print(f"alarm -> rollback (flip right after a poll, poll {args.poll:g}s): {dist(lat)}; "
              f"p10 {q[len(q) // 10]:.2f}s p90 {q[(len(q) * 9) // 10]:.2f}s; all: "
              + " ".join(f"{x:.2f}" for x in lat))
        goal = args.poll + 1
        row(f"alarm -> rollback, worst case (poll {args.poll:g} s)",
            f"worst {max(lat):.2f} s, median {statistics.median(lat):.2f} s", "-", f"worst <= {goal:g} s",
            max(lat) <= goal and not failed, f"alarm flipped right after a gate poll returned OK; {len(lat)} trials"
            f"{f' ({len(failed)} more did not complete: see the detail)' if failed else ''}; "
            "flip -> rolled_back in the ledger")
    return 0


def rollback_latency(st, poll: float, trials: int, failed: list[str]) -> list[float]:
    """Flip the alarm right after a gate poll read OK, while baking; time until rolled_back. The
    engine `pt deploy` runs (release/engine.py, Lambda targets), in this process."""
    from pipeline_tools.core.config import load
    from pipeline_tools.core.errors import DeployFailed
    from pipeline_tools.release import engine
    from pipeline_tools.release.ledger import Ledger, ensure_table
    from pipeline_tools.release.target import Release
    from pipeline_tools.targets import TargetEnv, build_targets
    from tests.integration.conftest_deploy import digest, uri

    # keep 50: moto reuses version numbers after deletes, which breaks publish after a prune
    st.write_config(strategy="all-at-once", bake="60s", poll=f"{poll}s", keep=50)
    cfg = load(st.config)
    ensure_table(st.ddb, "rel-ledger", project="rel", stage="staging", local=True)
    led = Ledger(st.ddb, "rel-ledger")
    env = TargetEnv(client=lambda svc: st.lam, clock=time.time, sleep=time.sleep)
    out = []
    for _ in range(trials):
        st.set_alarm("OK")
        live = next(iter(st.live_digests()))
        target = next(n for n in (1, 2, 3, 4) if uri(n).endswith(live)) % 4 + 1
        targets = build_targets(cfg, "staging", env)  # what `pt deploy` builds: a LambdaTarget per function
        plan = engine.plan(cfg, "staging", targets, Release(uri(target), digest(target), "", "model"))
        flipped: dict = {}
        before = led.query("staging", "deploy", limit=1)
        cw = _FlipAfterPoll(st, led, flipped, before[0].id if before else None)
        deps = engine.EngineDeps(cloudwatch=cw, ledger=led, actor={"name": "bench"}, lease=60)
        why = "deploy succeeded"
        try:
            engine.run(plan, deps)
        except DeployFailed as e:
            why = e.message
        rec = led.query("staging", "deploy", limit=1)[0]
        done = next((tr["ts"] for tr in rec.transitions if tr.get("state") == "rolled_back"), None)
        if done is None or "at" not in flipped:
            failed.append(f"trial {len(out) + len(failed) + 1}: no rollback after a flip ({why})")
            print(failed[-1], flush=True)
            continue
        out.append(done - flipped["at"])
    return out


class _FlipAfterPoll:
    """The CloudWatch client pt polls, which sets the alarm to ALARM right after a poll that read
    OK once the deploy is baking (the worst moment: a whole poll interval before the next read)."""

    def __init__(self, st, ledger, flipped: dict, previous: str | None):
        self._st, self._ledger, self._flipped, self._previous = st, ledger, flipped, previous
        self._cw = st.cw
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._cw, name)

    def describe_alarms(self, **kw):
        resp = self._cw.describe_alarms(**kw)
        with self._lock:
            if "at" not in self._flipped and self._baking():
                self._st.set_alarm("ALARM")
                self._flipped["at"] = time.time()
        return resp

    def _baking(self) -> bool:
        recs = self._ledger.query("staging", "deploy", limit=1)
        return bool(recs) and recs[0].id != self._previous and recs[0].state == "baking"


if __name__ == "__main__":
    sys.exit(main())
