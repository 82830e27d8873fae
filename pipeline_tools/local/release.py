"""`pt release --local`: the whole pipeline a CI system runs, step by step, on the local stack.

    local stack → build-push → test in image → deploy <first stage> (its strategy) → gate →
    approvals → promote to the next stage (deploy window overridden with a recorded reason) → status

Each step calls the library the matching `pt` command calls (images, deploy, promote, ledger),
against the embedded AWS of `pt local up` (`AWS_ENDPOINT_URL`) and the local registry
(`PT_REGISTRY`): the same code path as in the cloud. Timings (canary interval, bake, gate poll)
come from pipeline.yml; there is no local-only branch in the steps.

`inject_failure=True` sets one of the first stage's alarms to ALARM while the canary runs
(moto never evaluates alarms from metrics): the deploy engine sees the transition, rolls back,
and the promotion is refused. The alarm is set back to OK afterwards, as an operator would
after fixing the cause, so the next release starts clean.

Public API: `plan(cfg, inject_failure) -> list[Step]`, `run(cfg, steps, …) -> summary dict`,
`Progress(out)`, `print_summary(out, summary)`.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline_tools.core.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PtError, UsageError

DEFAULT_REASON = "local release (pt release --local): no production traffic"
RELEASE_ACTOR = "pt-release"


@dataclass(frozen=True)
class Step:
    key: str
    title: str

    def to_dict(self) -> dict:
        return {"step": self.key, "title": self.title}


def chain(cfg) -> list[str]:
    """Stages in promotion order: the root (no promote_from), then each stage promoting from it."""
    roots = [s for s, st in cfg.stages.items() if not st.promote_from]
    if not roots:
        raise UsageError("no stage without promote_from: nothing to deploy first")
    out = [roots[0]]
    while True:
        nxt = [s for s, st in cfg.stages.items() if st.promote_from == out[-1]]
        if not nxt:
            return out
        out.append(nxt[0])


def _deployable_images(cfg) -> list[str]:
    return [i for i in cfg.images if cfg.functions_for_image(i)]


def check_approvers(cfg, approvers: list[str]) -> None:
    """Usage error (exit 2, before anything runs) when fewer distinct approvers than a stage needs."""
    needed = max([st.approvals.required for st in cfg.stages.values() if st.approvals] or [0])
    have = len(set(approvers))
    if have < needed:
        raise UsageError(f"pt release needs {needed} distinct approvers for the promotion, got {have}",
                         "pass --approver NAME once per person, or PT_APPROVERS=alice@example.com,bob@example.com "
                         "(neither may be the commit author)")


def plan(cfg, *, inject_failure: bool = False) -> list[Step]:
    stages = chain(cfg)
    imgs = _deployable_images(cfg)
    if len(imgs) != 1:
        raise UsageError(f"pt release deploys one image; {len(imgs)} images have functions ({', '.join(imgs)})",
                         "use pt build-push / pt deploy --image NAME per image")
    first = stages[0]
    d = cfg.stages[first].deploy
    how = d.strategy + (f" {d.percent}%" if d.percent else "")
    steps = [Step("local", "local stack: moto server, registry, docker; provision stages"),
             Step("build", f"build-push {', '.join(cfg.images)}"),
             Step("test", "test in image"),
             Step(f"deploy:{first}", f"deploy {first} ({how}"
                  + ((", alarm injected during the canary)" if d.strategy != "all-at-once" else
                      ", alarm injected during the bake)") if inject_failure else ")")),
             Step(f"gate:{first}", f"gate {first}")]
    for prev, nxt in itertools.pairwise(stages):
        st = cfg.stages[nxt]
        if st.approvals:
            steps.append(Step(f"approvals:{nxt}", f"approvals for {nxt} ({st.approvals.required} required)"))
        steps.append(Step(f"promote:{nxt}", f"promote {prev} → {nxt} ({st.deploy.strategy})"))
        if nxt != stages[-1]:  # the next promotion needs this stage's gate to have passed its bake
            steps.append(Step(f"gate:{nxt}", f"gate {nxt}"))
    steps.append(Step("status", "status"))
    return steps


class Progress:
    """`[3/9] deploy staging (canary 10%) … ok 8.1s` lines; details indented under each step."""

    def __init__(self, out, total: int = 0, clock: Callable[[], float] = time.time):
        self.out, self.total, self.clock = out, total, clock
        self.n = 0
        self.t0: float | None = None
        self.lock = threading.Lock()

    def start(self, step: Step, index: int | None = None) -> None:
        self.n = index if index is not None else self.n + 1
        self.t0 = self.clock()
        self._line(f"[{self.n}/{self.total}] {step.title}")

    def skip(self, step: Step, index: int, why: str) -> None:
        self._line(f"[{index}/{self.total}] {step.title}")
        self._line(f"      → not run: {why}")

    def note(self, text: str) -> None:
        self._line(f"      {text}")

    def end(self, status: str, detail: str = "") -> float:
        took = self.clock() - (self.t0 or self.clock())
        mark = {"ok": "ok", "skipped": "skipped", "failed": "FAILED", "blocked": "BLOCKED"}.get(status, status)
        self._line(f"      → {mark} ({took:.1f}s){': ' + detail if detail else ''}")
        return took

    def _line(self, text: str) -> None:
        with self.lock:
            (self.out.log if self.out.json else self.out.info)(text)


class _StepFailed(Exception):
    def __init__(self, status: str, detail: str, exit_code: int = EXIT_FAILURE):
        super().__init__(detail)
        self.status, self.detail, self.exit_code = status, detail, exit_code


def run(cfg, steps: list[Step], *, approvers: list[str], reason: str | None = None, port: int | None = None,
        progress: Progress, inject_failure: bool = False, directory: Path | None = None,
        clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Run `steps`; never raises for a failed step: the summary carries status and exit code."""
    progress.total = len(steps)
    r = _Release(cfg, approvers=approvers, reason=reason or DEFAULT_REASON, port=port, progress=progress,
                 inject_failure=inject_failure, directory=directory, clock=clock, sleep=sleep)
    summary: dict[str, Any] = {"project": cfg.project, "inject_failure": inject_failure, "steps": [],
                               "exit_code": EXIT_OK, "result": "released"}
    failed = False
    for index, step in enumerate(steps, 1):
        if failed and (not step.key.startswith(("promote:", "status")) or r.env_file is None):
            progress.skip(step, index, "an earlier step failed")
            summary["steps"].append({"step": step.key, "title": step.title, "status": "not run"})
            continue
        progress.start(step, index)
        code = EXIT_FAILURE
        try:
            if failed and step.key.startswith("promote:"):
                status, detail, data = r.blocked_promotion(step.key.split(":", 1)[1])
            else:
                status, detail, data = getattr(r, "step_" + step.key.split(":", 1)[0])(
                    *step.key.split(":", 1)[1:])
        except _StepFailed as e:
            status, detail, data, code = e.status, e.detail, {}, e.exit_code
        except PtError as e:
            status, detail, data, code = "failed", e.message + (f" (hint: {e.hint})" if e.hint else ""), {}, \
                e.exit_code
        except Exception as e:  # translate botocore/docker errors into the one-line form
            from pipeline_tools.core.errors import translate

            err = translate(e)
            if err is None:
                raise
            status, detail, data, code = "failed", err.message, {}, err.exit_code
        took = progress.end(status, detail)
        summary["steps"].append({"step": step.key, "title": step.title, "status": status, "detail": detail,
                                 "seconds": round(took, 2), **({"data": data} if data else {})})
        if status in ("failed", "blocked") and not failed:  # the first failure decides the exit code
            failed = True
            summary["exit_code"] = code
            summary["result"] = "rolled back" if r.rolled_back else "failed"
    r.finish()
    summary.update(digest=r.digest, image_uri=r.image_uri, status=r.status_rows, env_file=r.env_file)
    return summary


class _Release:
    def __init__(self, cfg, *, approvers, reason, port, progress, inject_failure, directory, clock, sleep):
        from pipeline_tools.local import stack as local

        self.source_cfg = cfg
        self.cfg = local.with_local_base(cfg)
        self.approvers, self.reason, self.port, self.p = approvers, reason, port, progress
        self.inject_failure, self.directory, self.clock, self.sleep = inject_failure, directory, clock, sleep
        self.stages = chain(cfg)
        self.image = _deployable_images(cfg)[0]
        self.digest: str | None = None
        self.image_uri: str | None = None
        self.rolled_back = False
        self.status_rows: list[dict] = []
        self.env_file: str | None = None
        self.injected: str | None = None
        self._provision: threading.Thread | None = None
        self._provision_error: BaseException | None = None
        self._aws = None
        self._ledger = None
        self._docker = None

    # --- clients -------------------------------------------------------------------------
    def aws(self):
        if self._aws is None:
            from pipeline_tools.core.aws import AwsFactory

            self._aws = AwsFactory(region=self.cfg.region)
        return self._aws

    def ledger(self):
        if self._ledger is None:
            from pipeline_tools.release import ledger

            self.wait_provisioned()  # the StageStack creates the table
            ddb = self.aws().client("dynamodb")
            ledger.ensure_table(ddb, self.cfg.ledger_table(), project=self.cfg.project, stage=self.stages[0],
                                local=True)
            self._ledger = ledger.Ledger(ddb, self.cfg.ledger_table(), clock=self.clock)
        return self._ledger

    def docker(self):
        if self._docker is None:
            from pipeline_tools.images.images import connect_docker

            self._docker = connect_docker()
        return self._docker

    def actor(self, name: str | None = None) -> dict:
        from pipeline_tools.release.actor import identify

        env = dict(os.environ)
        env["PT_ACTOR"] = name or env.get("PT_ACTOR") or RELEASE_ACTOR
        try:
            arn = self.aws().caller_arn()
        except Exception:
            arn = None
        return identify(arn, env)

    # --- steps ---------------------------------------------------------------------------
    def step_local(self) -> tuple[str, str, dict]:
        from pipeline_tools.local import stack as local

        res = local.start(self.source_cfg, port=self.port, directory=self.directory, on_step=lambda s: None,
                          clock=self.clock, sleep=self.sleep)
        local.apply_env(res["env"])
        self.env_file = res["env_file"]
        self.p.note(f"moto {res['moto']['endpoint']} ({'reused' if res['moto'].get('reused') else 'started'}), "
                    f"registry {res['registry']['host']}, docker {res['docker'].get('version')}")

        # Provisioning (CDK synth + moto CloudFormation) overlaps the image build: neither needs the other.
        def provision() -> None:
            try:
                self._provisioned = local.provision_all(self.source_cfg, res, clock=self.clock, sleep=self.sleep)
            except BaseException as e:
                self._provision_error = e

        self._provision = threading.Thread(target=provision, name="pt-provision", daemon=True)
        self._provision.start()
        return "ok", f"env {res['env_file']}; provisioning the stages in the background", {
            "moto": res["moto"]["endpoint"], "registry": res["registry"]["host"]}

    def wait_provisioned(self) -> None:
        if self._provision is None:
            return
        t0 = self.clock()
        self._provision.join()
        self._provision = None
        if self._provision_error is not None:
            raise self._provision_error
        waited = self.clock() - t0
        reps = getattr(self, "_provisioned", [])
        how = ", ".join(f"{r.stage}: {'stack ' + ('created' if r.cfn else 'unchanged') if r.stack else 'boto3'}"
                        f" + {len(r.boto3)} boto3 gap fills" for r in reps)
        self.p.note(f"stages provisioned ({how}){f'; waited {waited:.1f}s for it' if waited > 0.5 else ''}")

    def step_build(self) -> tuple[str, str, dict]:
        from pipeline_tools.images import images
        from pipeline_tools.images.registry import Registry

        host = self.cfg.registry_for(self.stages[0])
        registry = Registry(host)
        try:
            results = images.build_push(self.cfg, list(self.cfg.images), docker=self.docker(), registry=registry,
                                        log=self._build_log)
        finally:
            registry.close()
        mine = next(r for r in results if r.name == self.image)
        self.digest, self.image_uri = mine.digest, mine.image_uri
        status = "skipped" if all(r.status == "skipped" for r in results) else "ok"
        detail = "; ".join(f"{r.name} {r.status} {r.image_uri}" for r in results)
        return status, detail, {"images": [r.to_dict() for r in results]}

    def _build_log(self, text: str) -> None:
        if ": Step " in text:
            self.p.out.debug(text)  # every docker step with -v
            if ": Step 1/" in text:
                self.p.note(text.split(": Step ", 1)[0] + ": building (" + text.split("/", 1)[1].split(" ", 1)[0]
                            + " steps; -v shows them)")
        elif " skipped" in text or ": built " in text or ("pushing " in text and "MB" not in text):
            self.p.note(text)

    def step_test(self) -> tuple[str, str, dict]:
        from pipeline_tools.images import images
        from pipeline_tools.local import stack as local

        out_dir = Path(self.env_file).parent / "reports" if self.env_file else Path(local.state_dir()) / "reports"
        reports = []
        for name, img in self.cfg.images.items():
            if not img.test_command:
                continue
            rep = images.run_tests(self.cfg, name, docker=self.docker(), registry_host=self.cfg.registry_for(
                self.stages[0]), junit_path=out_dir / f"junit-{name}.xml", log=lambda s: None,
                output=lambda s: None)
            reports.append(rep)
            if rep.exit_code != 0:
                raise _StepFailed("failed", f"{name}: {rep.summary} (exit {rep.exit_code}); JUnit {rep.junit}")
        if not reports:
            return "skipped", "no image has a test_command", {}
        return "ok", "; ".join(f"{r.image}: {r.summary} in {r.seconds:.1f}s" for r in reports), {
            "tests": [r.to_dict() for r in reports]}

    def _deploy(self, stage: str, *, window: dict | None = None, sleep: Callable[[float], None] | None = None):
        """plan + deploy with the deploy engine; returns (plan, result or None when nothing changes)."""
        from pipeline_tools.release import deploy

        self.wait_provisioned()
        lc = self.aws().client("lambda")
        ref = deploy.parse_image_uri(self.image_uri or "")
        deploy.check_startable(self.ledger(), stage, self.clock)
        plan = deploy.plan_deploy(self.cfg, stage, self.image, ref, lc)
        if plan.noop:
            from pipeline_tools.release.ledger import DEPLOY

            last = self.ledger().query(stage, DEPLOY, limit=1)
            if last and last[0].state == "succeeded" and last[0].digest == plan.digest:
                return plan, None
            # It runs this digest, but its newest deploy record is not a succeeded deploy of it (a
            # later deploy rolled back): promotion needs a deploy record with its own bake, so deploy
            # again; no traffic moves, the gate watches the bake.
            self.p.note(f"{stage} already runs {_short(plan.digest)}, but its latest deploy "
                        + (f"({last[0].id}) is {last[0].state} for {_short(last[0].digest)}" if last else "is missing")
                        + ": deploying again for a fresh bake (no traffic moves)")
        deps = deploy.Deps(lambda_client=lc, cloudwatch=self.aws().client("cloudwatch"), ledger=self.ledger(),
                           clock=self.clock, sleep=sleep or self.sleep, log=self.p.note, actor=self.actor())
        from pipeline_tools.release.promote import notified_deploy

        # as `pt deploy` does: deploy started/succeeded/rolled-back notifications around the engine
        return plan, notified_deploy(lambda: deploy.deploy(self.cfg, plan, deps, window=window), ledger=self.ledger(),
                                     stage=stage, digest=plan.digest, strategy=plan.strategy,
                                     notify=self._notifier(deps.actor), clock=self.clock)

    def step_deploy(self, stage: str) -> tuple[str, str, dict]:
        from pipeline_tools.core.errors import DeployFailed

        sleep = None
        if self.inject_failure:
            self._require_change(stage)
            sleep = self._injecting_sleep(stage)
        try:
            _plan, res = self._deploy(stage, sleep=sleep)
        except DeployFailed as e:
            self.rolled_back = "rolled back" in e.message
            raise _StepFailed("failed", e.message) from None
        if self.inject_failure and self.injected is None:
            raise _StepFailed("failed", f"--inject-failure found no moment to inject: the deploy to {stage} has no "
                              "canary interval and no bake in pipeline.yml", EXIT_USAGE)
        if res is None:
            return "skipped", f"{stage} already runs {_short(self.digest)}", {"noop": True}
        fns = res.to_dict()["functions"]
        moved = [f"{f['name']} v{f['previous_version']} → v{f['version']}" for f in fns
                 if f["version"] != f["previous_version"]]
        return "ok", f"deploy {res.deploy_id} {res.state}: " + (", ".join(moved) or "baked again, no traffic moved"), \
            res.to_dict()

    def _require_change(self, stage: str) -> None:
        from pipeline_tools.release import deploy

        self.wait_provisioned()
        ref = deploy.parse_image_uri(self.image_uri or "")
        plan = deploy.plan_deploy(self.cfg, stage, self.image, ref, self.aws().client("lambda"))
        if plan.noop:
            raise _StepFailed("failed", f"{stage} already runs {_short(self.digest)}: there is no canary to inject a "
                              "failure into. Change the service (e.g. bump the version in model/model.json) "
                              "and run again, as scripts/demo does", EXIT_USAGE)

    def _injecting_sleep(self, stage: str) -> Callable[[float], None]:
        """The deploy's sleep: once the new version gets traffic (the canary split, or 100 % during
        the bake for all-at-once), set the first function's `errors` alarm to ALARM."""
        from pipeline_tools.core import names

        fn = next(iter(self.cfg.functions_for_image(self.image)))  # the first in pipeline.yml
        fname = self.cfg.function_name(stage, fn)
        alarm = names.alarm_name(self.cfg.project, stage, fn, "errors")
        lc = self.aws().client("lambda")
        before = lc.get_alias(FunctionName=fname, Name=names.LIVE_ALIAS)["FunctionVersion"]

        def sleep(seconds: float) -> None:
            if self.injected is None:
                alias = lc.get_alias(FunctionName=fname, Name=names.LIVE_ALIAS)
                weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                if weights or alias["FunctionVersion"] != before:
                    self.aws().client("cloudwatch").set_alarm_state(
                        AlarmName=alarm, StateValue="ALARM",
                        StateReason="pt release --inject-failure: simulated error spike on the new version")
                    self.injected = alarm
                    serving = (", ".join(f"v{v} {w * 100:g}%" for v, w in weights.items()) if weights
                               else f"v{alias['FunctionVersion']} 100%")
                    self.p.note(f"injected: {alarm} → ALARM while {fname} serves {serving}")
            self.sleep(seconds)

        return sleep

    def step_gate(self, stage: str) -> tuple[str, str, dict]:
        from pipeline_tools.release import promote

        cw = self.aws().client("cloudwatch")
        rep = promote.wait_gate(self.cfg, stage, ledger=self.ledger(), cloudwatch=cw, clock=self.clock,
                                sleep=self.sleep, timeout=max(60.0, self.cfg.stages[stage].deploy.bake * 3),
                                on_poll=lambda g: None)
        promote.record_gate(self.ledger(), rep, self.actor())
        if rep.status == "PASS":
            return "ok", rep.explanation, rep.to_dict()
        from pipeline_tools.core.errors import EXIT_WAIT

        raise _StepFailed("failed", f"gate {rep.status}: {rep.explanation}",
                          EXIT_WAIT if rep.status == "WAIT" else EXIT_FAILURE)

    def step_approvals(self, stage: str) -> tuple[str, str, dict]:
        from pipeline_tools.release import promote

        outcomes = []
        for name in dict.fromkeys(self.approvers):
            o = promote.decide(self.cfg, self.ledger(), stage, decision="approve", actor=self.actor(name),
                               clock=self.clock, comment="approved in pt release --local")
            outcomes.append(o)
            self.p.note(f"{name}: " + (o.note or f"approved {_short(o.approval.digest)}"))
            if o.status.satisfied:
                break
        st = outcomes[-1].status if outcomes else None
        if st is None or not st.satisfied:
            raise _StepFailed("blocked", st.explain() if st else "no approvers given")
        return "ok", st.explain(), {"approvals": [o.to_dict() for o in outcomes]}

    def step_promote(self, stage: str) -> tuple[str, str, dict]:
        from pipeline_tools.core.errors import DeployFailed
        from pipeline_tools.release import promote, windows

        self.wait_provisioned()
        from pipeline_tools.core.names import LIVE_ALIAS
        from pipeline_tools.release import deploy

        lc = self.aws().client("lambda")
        ref = deploy.parse_image_uri(self.image_uri or "")
        if deploy.plan_deploy(self.cfg, stage, self.image, ref, lc).noop:
            return "skipped", f"{stage} already runs {_short(self.digest)} on {LIVE_ALIAS}", {"noop": True}
        window = self.cfg.stages[stage].window
        now = datetime.fromtimestamp(self.clock(), UTC)
        override = window is not None and not windows.is_open(window, now)
        if override:
            self.p.note(f"outside the deploy window ({windows.describe(window)}): override, reason recorded: "
                        f"{self.reason!r}")

        actor = self.actor()
        deploy_fn = promote.engine(self.cfg, lambda_client=lc, cloudwatch=self.aws().client("cloudwatch"),
                                   ledger=self.ledger(), actor=actor, clock=self.clock, sleep=self.sleep,
                                   log=self.p.note, ecr=self.aws().client("ecr"), notify=self._notifier(actor))
        try:
            plan, rec = promote.promote(self.cfg, stage, ledger=self.ledger(), cloudwatch=self.aws().client(
                "cloudwatch"), deploy=deploy_fn, actor=actor, clock=self.clock, override_window=override,
                reason=self.reason if override else None, notify=self._notifier(actor))
        except promote.PromotionRefused as e:
            raise _StepFailed("blocked", f"{e.condition}: {e.message}", e.exit_code) from None
        except DeployFailed as e:
            self.rolled_back = "rolled back" in e.message
            raise _StepFailed("failed", e.message) from None
        return "ok", f"{stage} runs {_short(plan.digest)} (deploy {rec.id if rec else '-'} "\
                     f"{rec.state if rec else ''})", plan.to_dict()

    def _notifier(self, actor: dict) -> Callable[[str, str, dict], Any]:
        """Notifications as `pt promote` sends them (Slack/Teams/SNS from pipeline.yml); never raises."""
        from pipeline_tools.ops import notify as n

        def send(kind: str, stage: str, info: dict) -> Any:
            try:
                event = n.Event(kind=kind, project=self.cfg.project, stage=stage,
                                summary=info.get("summary", kind), digest=info.get("digest"),
                                deploy_id=info.get("deploy_id"), actor=actor.get("name"),
                                run_url=actor.get("run_url"), at=self.clock(),
                                details={k: v for k, v in info.items() if k not in ("summary", "digest", "deploy_id")})
                res = n.notify_from_factory(self.cfg, event, self.aws(), warn=self.p.note)
                if res is not None and getattr(res, "ok", True):
                    self.p.note(f"notified: {kind}")
                return res
            except Exception as e:
                self.p.note(f"notification {kind} not sent: {type(e).__name__}: {e}")
                return None

        return send

    def blocked_promotion(self, stage: str) -> tuple[str, str, dict]:
        """After a failed earlier step: ask for the promotion anyway, so the refusal (and its reason)
        is shown and recorded in the ledger as a refused promotion."""
        from pipeline_tools.release import promote

        if self.image_uri is None or self._ledger is None:
            return "not run", "nothing was deployed", {}

        def never(*_a: Any, **_kw: Any):
            raise PtError("not promoting: an earlier step of this release failed")

        try:
            plan, _rec = promote.promote(self.cfg, stage, ledger=self.ledger(),
                                         cloudwatch=self.aws().client("cloudwatch"), deploy=never,
                                         actor=self.actor(), clock=self.clock, override_window=True,
                                         reason=self.reason)
        except promote.PromotionRefused as e:
            return "blocked", f"{e.condition}: {e.message}", {"condition": e.condition}
        return "blocked", "an earlier step failed; not promoting", plan.to_dict()

    def step_status(self) -> tuple[str, str, dict]:
        from pipeline_tools.release import deploy

        self.wait_provisioned()
        lc = self.aws().client("lambda")
        rows = []
        for stage in self.stages:
            st = deploy.status(self.cfg, stage, lc, self.ledger(), self.clock)
            for f in st["functions"]:
                rows.append({"stage": stage, "function": f["name"], "version": f.get("version"),
                             "weights": f.get("weights") or {}, "digest": f.get("digest"),
                             "last_deploy": (st.get("last_deploy") or {}).get("state"),
                             "deploy_id": (st.get("last_deploy") or {}).get("id")})
        self.status_rows = rows
        return "ok", "", {}

    def finish(self) -> None:
        if self._provision is not None:
            try:
                self.wait_provisioned()
            except BaseException:  # reported by the step that needed it
                pass
        if self.injected:
            # The simulated error spike is over: back to OK, so the next release starts clean.
            self.aws().client("cloudwatch").set_alarm_state(
                AlarmName=self.injected, StateValue="OK", StateReason="pt release --inject-failure: injection ended")
            self.p.note(f"{self.injected} set back to OK (the injected failure is over)")


def _short(digest: str | None) -> str:
    return (digest or "?")[:19] + "…" if digest else "?"


def print_summary(o, summary: dict) -> None:
    rows = summary.get("status") or []
    if rows:
        o.info("")
        o.table([[r["stage"], r["function"], r["version"] or "-",
                  ", ".join(f"v{v} {w * 100:g}%" for v, w in r["weights"].items()) or "100%",
                  _short(r["digest"]), r["last_deploy"] or "-"] for r in rows],
                ["stage", "function", "live", "traffic", "digest", "last deploy"])
    o.info("")
    took = summary.get("seconds")
    o.info(f"release {summary['result']} in {took}s (exit {summary['exit_code']})" if took is not None else
           f"release {summary['result']} (exit {summary['exit_code']})")
    if summary.get("env_file"):
        o.info(f"inspect: source {summary['env_file']}; pt history --stage {rows[0]['stage'] if rows else 'staging'}")
