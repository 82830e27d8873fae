"""AWS Batch target: a Fargate job released as a job-definition revision (`weighted=False`).

The queue, compute environment, roles and the first schedule come from the CDK stacks
(`names.batch_job_queue`, `batch_execution_role`, `batch_job_role`, `scheduler_role`,
`batch_schedule`); a deploy only registers revisions of `names.batch_job_definition` and moves the
"live" pointer:

- The live revision is the ACTIVE revision carrying the highest `pt:live` tag (a counter): moving
  it is one TagResource, so a crash between tagging the new one and untagging the old one still
  leaves exactly one winner. With no tagged revision (nothing deployed by pt yet), the schedule's
  revision, else the newest ACTIVE one.
- `prepare`: registers a revision (image by digest, vCPU/memory checked against the Fargate sizes,
  timeout, retry, environment, execution and job roles by name) tagged with the digest and a hash
  of the rest of its configuration; `smoke`: submits the smoke job to the queue, waits for
  SUCCEEDED (FAILED or the deadline fails the deploy); `shift(100)`: the schedule (universal
  target `aws-sdk:batch:submitJob`) and the `pt:live` tag to the new revision; `restore`: both
  back, the revisions registered after the restored one deregistered; `finish`: deregisters
  revisions older than the newest `deploy.keep_versions`.

`run_job` submits one job with the live revision (`pt run-job`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import batchspec
from pipeline_tools.core import names as naming
from pipeline_tools.core.errors import DeployFailed, NotFoundError, PtError, UsageError
from pipeline_tools.release.target import Candidate, Placement, Release, target_id
from pipeline_tools.targets.lambda_ops import DIGEST_IN_TEXT

if TYPE_CHECKING:
    from pipeline_tools.core.config import BatchTargetConfig, Config
    from pipeline_tools.targets import TargetEnv

KIND = "batch"
LIVE_TAG, DIGEST_TAG, CONFIG_TAG, DEPLOY_TAG = "pt:live", "pt:digest", "pt:config", "pt:deploy"
SUBMIT_JOB_TARGET = "arn:aws:scheduler:::aws-sdk:batch:submitJob"
DONE = ("SUCCEEDED", "FAILED")


def names(cfg: Config, stage: str) -> list[str]:
    """The Batch jobs of `stage`, in config order."""
    return [n for n, t in cfg.targets.batch.items() if t.stages is None or stage in t.stages]


def _code(e: BaseException) -> str | None:
    resp = getattr(e, "response", None)
    return resp.get("Error", {}).get("Code") if isinstance(resp, dict) else None


# --- pure parts --------------------------------------------------------------------------------


def role_arn(account: str, region: str, name: str) -> str:
    part = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return naming.role_arn(account, name, part)


def container_properties(spec: BatchTargetConfig, image_uri: str, execution_role: str, job_role: str) -> dict:
    """containerProperties of a Fargate job definition (RegisterJobDefinition API reference)."""
    props: dict[str, Any] = {
        "image": image_uri,
        "resourceRequirements": [{"type": "VCPU", "value": f"{spec.vcpu:g}"},
                                 {"type": "MEMORY", "value": str(spec.memory)}],
        "executionRoleArn": execution_role,
        "jobRoleArn": job_role,
        "environment": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
    }
    if spec.command:
        props["command"] = list(spec.command)
    return props


def config_hash(spec: BatchTargetConfig, execution_role: str, job_role: str) -> str:
    """Hash of everything a revision carries besides the image: a change is a deploy of its own."""
    body = container_properties(spec, "", execution_role, job_role)
    body.update(timeout=spec.timeout, retry=spec.retry)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def registration(spec: BatchTargetConfig, definition: str, release: Release, execution_role: str,
                 job_role: str) -> dict:
    """The RegisterJobDefinition request for `release` (pure). Raises UsageError on a bad size."""
    if problem := batchspec.fargate_problem(spec.vcpu, spec.memory):
        raise UsageError(problem, "fix vcpu/memory of the job in pipeline.yml (docs/targets.md lists the sizes)")
    return {
        "jobDefinitionName": definition,
        "type": "container",
        "platformCapabilities": ["FARGATE"],
        "containerProperties": container_properties(spec, release.image_uri, execution_role, job_role),
        "retryStrategy": {"attempts": spec.retry},
        "timeout": {"attemptDurationSeconds": spec.timeout},
        "propagateTags": True,
        "tags": {DIGEST_TAG: release.digest, CONFIG_TAG: config_hash(spec, execution_role, job_role),
                 DEPLOY_TAG: release.deploy_id},
    }


def live_stamp(revision: dict) -> int | None:
    v = (revision.get("tags") or {}).get(LIVE_TAG)
    return int(v) if isinstance(v, str) and v.isdigit() else None


def pick_live(revisions: list[dict], schedule_arn: str | None) -> dict | None:
    """The live revision among ACTIVE `revisions` (see the module docstring; pure)."""
    active = [r for r in revisions if r.get("status", "ACTIVE") == "ACTIVE"]
    tagged = [r for r in active if live_stamp(r) is not None]
    if tagged:
        return max(tagged, key=lambda r: (live_stamp(r), r["revision"]))
    by_schedule = [r for r in active if schedule_arn and r["jobDefinitionArn"] == schedule_arn]
    if by_schedule:
        return by_schedule[0]
    return max(active, key=lambda r: r["revision"]) if active else None


def schedule_input(job_name: str, queue: str, definition_arn: str) -> str:
    """Input of the universal target `aws-sdk:batch:submitJob` (SubmitJob request parameters)."""
    return json.dumps({"jobName": job_name, "jobQueue": queue, "jobDefinition": definition_arn}, sort_keys=True)


# What UpdateSchedule takes besides Name/Target/ScheduleExpression (it replaces the whole schedule,
# so everything the stack set — group, timezone, window, state, dates, KMS key — is sent back).
_SCHEDULE_KEEP = ("GroupName", "Description", "ScheduleExpressionTimezone", "FlexibleTimeWindow", "State",
                  "StartDate", "EndDate", "KmsKeyArn", "ActionAfterCompletion")
_TARGET_KEEP = ("RoleArn", "RetryPolicy", "DeadLetterConfig")


def schedule_request(existing: dict | None, name: str, expression: str, role: str, input_: str) -> dict:
    """The CreateSchedule / UpdateSchedule request that points a schedule at a revision (pure).

    An existing schedule keeps what the stack set (its role, retry policy, dead-letter queue, a
    DISABLED state); the expression comes from pipeline.yml, the target is `aws-sdk:batch:submitJob`."""
    req: dict[str, Any] = {"Name": name, "ScheduleExpression": expression,
                           "FlexibleTimeWindow": {"Mode": "OFF"}, "State": "ENABLED"}
    target: dict[str, Any] = {"RoleArn": role}
    if existing:
        req.update({k: existing[k] for k in _SCHEDULE_KEEP if existing.get(k) is not None})
        old = existing.get("Target") or {}
        target.update({k: old[k] for k in _TARGET_KEEP if old.get(k) is not None})
    req["Target"] = {**target, "Arn": SUBMIT_JOB_TARGET, "Input": input_}
    return req


def schedule_revision_arn(schedule: dict | None) -> str | None:
    if not schedule:
        return None
    try:
        return json.loads((schedule.get("Target") or {}).get("Input") or "{}").get("jobDefinition")
    except (ValueError, AttributeError):
        return None


def job_name(base: str, suffix: str) -> str:
    """A SubmitJob name: letters, digits, - and _, ≤ 128, starting with a letter or digit."""
    clean = "".join(c if c.isalnum() or c in "-_" else "-" for c in f"{base}-{suffix}")
    return clean[:128]


def image_digest(revision: dict) -> str | None:
    m = DIGEST_IN_TEXT.search((revision.get("containerProperties") or {}).get("image") or "")
    return m.group(0) if m else (revision.get("tags") or {}).get(DIGEST_TAG)


@dataclass
class JobWatch:
    """Status changes of one job as it runs (for `pt run-job` and the smoke job)."""

    job_id: str
    name: str
    statuses: list[str] = field(default_factory=list)
    status: str = "SUBMITTED"
    reason: str | None = None
    exit_code: int | None = None
    log_stream: str | None = None

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "name": self.name, "status": self.status, "statuses": self.statuses,
                "reason": self.reason, "exit_code": self.exit_code, "log_stream": self.log_stream}


def watch_job(batch: Any, watch: JobWatch, clock: Callable[[], float], sleep: Callable[[float], None],
              timeout: float, on_change: Callable[[str], None] = lambda _s: None) -> JobWatch:
    """Poll DescribeJobs until SUCCEEDED or FAILED; each new status goes to on_change. Raises
    DeployFailed when the deadline passes (the job is then terminated)."""
    deadline = clock() + timeout
    delay = 0.5
    while True:
        jobs = batch.describe_jobs(jobs=[watch.job_id]).get("jobs") or []
        if not jobs:
            raise DeployFailed(f"Batch job {watch.job_id} ({watch.name}) is not known to DescribeJobs",
                               "check the job queue in the Batch console")
        job = jobs[0]
        status = job.get("status", "UNKNOWN")
        if not watch.statuses or watch.statuses[-1] != status:
            watch.statuses.append(status)
            on_change(status)
        watch.status = status
        container = job.get("container") or {}
        watch.reason = job.get("statusReason") or container.get("reason") or watch.reason
        watch.exit_code = container.get("exitCode", watch.exit_code)
        watch.log_stream = container.get("logStreamName") or watch.log_stream
        if status in DONE:
            return watch
        if clock() >= deadline:
            try:
                batch.terminate_job(jobId=watch.job_id, reason="pt: deadline passed")
            except Exception as e:  # the deadline is what to report
                on_change(f"could not terminate: {type(e).__name__}")
            raise DeployFailed(f"Batch job {watch.name} still {status} after {timeout:.0f}s (terminated)",
                               "raise the timeout or check the queue's compute environment")
        sleep(delay)
        delay = min(delay * 2, 10.0)


# --- the target ----------------------------------------------------------------------------------


class BatchJobTarget:
    weighted = False

    def __init__(self, cfg: Config, stage: str, name: str, env: TargetEnv):
        cfg.stage(stage)
        if name not in cfg.targets.batch:
            raise UsageError(f"unknown batch job '{name}' (targets.batch: {', '.join(cfg.targets.batch) or 'none'})",
                             "pass a key of targets.batch in pipeline.yml")
        self.cfg, self.stage, self.name, self.env = cfg, stage, name, env
        self.spec: BatchTargetConfig = cfg.targets.batch[name]
        if self.spec.stages is not None and stage not in self.spec.stages:
            raise UsageError(f"stage {stage} has no batch job '{name}' (targets.batch.{name}.stages: "
                             f"{', '.join(self.spec.stages)})", "pass one of those stages, or add it to the list")
        self.id = target_id(KIND, name)
        self.region = cfg.stage_region(stage)
        account = cfg.stages[stage].account
        self.definition = naming.batch_job_definition(cfg.project, stage, name)
        self.queue = naming.batch_job_queue(cfg.project, stage)
        self.schedule_name = naming.batch_schedule(cfg.project, stage, name)
        self.execution_role = role_arn(account, self.region, naming.batch_execution_role(cfg.project, stage))
        self.job_role = role_arn(account, self.region, naming.batch_job_role(cfg.project, stage, name))
        self.scheduler_role = role_arn(account, self.region, naming.scheduler_role(cfg.project, stage))

    @property
    def batch(self) -> Any:
        return self.env.client("batch")

    @property
    def scheduler(self) -> Any:
        return self.env.client("scheduler")

    # --- reads --------------------------------------------------------------------------------

    def revisions(self) -> list[dict]:
        out: list[dict] = []
        token = None
        for _ in range(1000):
            resp = self.batch.describe_job_definitions(jobDefinitionName=self.definition, status="ACTIVE",
                                                       **({"nextToken": token} if token else {}))
            out += [r for r in resp.get("jobDefinitions", []) if r.get("status", "ACTIVE") == "ACTIVE"]
            token = resp.get("nextToken")
            if not token:
                break
        return sorted(out, key=lambda r: r["revision"])

    def get_schedule(self) -> dict | None:
        if not self.spec.schedule:
            return None
        try:
            return self.scheduler.get_schedule(Name=self.schedule_name)
        except Exception as e:
            if _code(e) == "ResourceNotFoundException":
                return None
            raise

    def check(self) -> None:
        """The queue exists and takes jobs (the stacks create it); the size is a Fargate size."""
        if problem := batchspec.fargate_problem(self.spec.vcpu, self.spec.memory):
            raise UsageError(problem, "fix vcpu/memory of the job in pipeline.yml")
        self._check_queue()

    def _check_queue(self) -> None:
        queues = self.batch.describe_job_queues(jobQueues=[self.queue]).get("jobQueues") or []
        if not queues:
            raise NotFoundError(f"Batch job queue {self.queue} does not exist ({self.id}, stage {self.stage})",
                                "deploy the stack with the stage's Batch resources (`npx cdk deploy`)", exit_code=2)
        q = queues[0]
        if q.get("state") != "ENABLED":
            raise NotFoundError(f"Batch job queue {self.queue} is {q.get('state')} ({self.id})",
                                "enable the queue (aws batch update-job-queue --state ENABLED)", exit_code=2)

    def current(self) -> Placement:
        self._check_queue()  # without the stage's Batch resources there is nothing to release to
        revisions = self.revisions()
        schedule = self.get_schedule()
        sched_arn = schedule_revision_arn(schedule)
        live = pick_live(revisions, sched_arn)
        data: dict[str, Any] = {"definition": self.definition, "schedule_exists": schedule is not None,
                                "schedule_revision_arn": sched_arn}
        if live is None:
            return Placement(self.id, self.definition, False, data=data)
        tags = live.get("tags") or {}
        data.update(arn=live["jobDefinitionArn"], config_hash=tags.get(CONFIG_TAG), stamp=live_stamp(live))
        return Placement(self.id, self.definition, True, str(live["revision"]), image_digest(live), {}, data)

    def unchanged(self, placement: Placement, release: Release) -> bool:
        """The live revision runs this digest with this configuration, and the schedule points at it."""
        if not placement.serves(release.digest):
            return False
        if placement.data.get("config_hash") != config_hash(self.spec, self.execution_role, self.job_role):
            return False
        return not self.spec.schedule or placement.data.get("schedule_revision_arn") == placement.data.get("arn")

    # --- changes ------------------------------------------------------------------------------

    def prepare(self, release: Release, placement: Placement) -> Candidate:
        req = registration(self.spec, self.definition, release, self.execution_role, self.job_role)
        resp = self.batch.register_job_definition(**req)
        self.env.log(f"{self.id}: registered {self.definition}:{resp['revision']}")
        return Candidate(self.id, str(resp["revision"]), release.digest,
                         {"arn": resp["jobDefinitionArn"], "config_hash": req["tags"][CONFIG_TAG]})

    def smoke(self, candidate: Candidate) -> None:
        if not self.spec.smoke:
            return
        overrides = {"command": list(self.spec.smoke_command)} if self.spec.smoke_command else {}
        name = job_name(f"{self.definition}-smoke", candidate.version)
        resp = self.batch.submit_job(jobName=name, jobQueue=self.queue, jobDefinition=candidate.data["arn"],
                                     **({"containerOverrides": overrides} if overrides else {}))
        watch = watch_job(self.batch, JobWatch(resp["jobId"], name), self.env.clock, self.env.sleep,
                          self.spec.smoke_timeout, lambda s: self.env.log(f"{self.id}: smoke job {name}: {s}"))
        if watch.status != "SUCCEEDED":
            why = watch.reason or "no reason given"
            raise DeployFailed(f"{self.id}: smoke job of revision {candidate.version} FAILED: {why}"[:500],
                               f"see the job's log stream {watch.log_stream or '(none)'}; the schedule did not move")

    def _point_schedule(self, arn: str) -> None:
        if not self.spec.schedule:
            return
        existing = self.get_schedule()
        req = schedule_request(existing, self.schedule_name, self.spec.schedule, self.scheduler_role,
                               schedule_input(job_name(self.definition, "scheduled"), self.queue, arn))
        if existing is None:
            self.scheduler.create_schedule(**req)
        else:
            self.scheduler.update_schedule(**req)

    def _mark_live(self, arn: str) -> None:
        """Tag `arn` with a stamp above every other, then untag the others (see module docstring)."""
        revisions = self.revisions()
        top = max((live_stamp(r) or 0 for r in revisions), default=0)
        self.batch.tag_resource(resourceArn=arn, tags={LIVE_TAG: str(top + 1)})
        for r in revisions:
            if r["jobDefinitionArn"] != arn and live_stamp(r) is not None:
                self.batch.untag_resource(resourceArn=r["jobDefinitionArn"], tagKeys=[LIVE_TAG])

    def shift(self, placement: Placement, candidate: Candidate, percent: int) -> None:
        if percent >= 100:
            self._point_schedule(candidate.data["arn"])
            self._mark_live(candidate.data["arn"])
        elif placement.exists:  # 0 %: the old revision stays (or becomes again) the live one
            self._point_schedule(placement.data["arn"])
            self._mark_live(placement.data["arn"])

    def restore(self, placement: Placement) -> None:
        newer: list[dict]
        if placement.exists:
            self._point_schedule(placement.data["arn"])
            self._mark_live(placement.data["arn"])
            newer = [r for r in self.revisions() if r["revision"] > int(placement.version or 0)]
        else:
            if self.spec.schedule and not placement.data.get("schedule_exists"):
                try:
                    self.scheduler.delete_schedule(Name=self.schedule_name)
                except Exception as e:
                    if _code(e) != "ResourceNotFoundException":
                        raise
            newer = self.revisions()
        for r in newer:
            self.batch.deregister_job_definition(jobDefinition=r["jobDefinitionArn"])
            self.env.log(f"{self.id}: deregistered {self.definition}:{r['revision']}")

    def finish(self, placement: Placement, candidate: Candidate) -> list[str]:
        keep = self.cfg.stages[self.stage].deploy.keep_versions
        try:
            revisions = sorted(self.revisions(), key=lambda r: r["revision"], reverse=True)
            gone = []
            for r in revisions[keep:]:
                if r["jobDefinitionArn"] == candidate.data.get("arn"):
                    continue
                self.batch.deregister_job_definition(jobDefinition=r["jobDefinitionArn"])
                gone.append(str(r["revision"]))
            return sorted(gone, key=int)
        except Exception as e:  # housekeeping never fails a deploy
            err = (e.message if isinstance(e, PtError) else f"{type(e).__name__}: {e}")[:200]
            self.env.log(f"{self.id}: old revisions not deregistered: {err}")
            return []

    def describe(self) -> dict:
        p = self.current()
        return {"target": self.id, "job_definition": self.definition, "queue": self.queue,
                "exists": p.exists, "revision": p.version, "digest": p.digest, "arn": p.data.get("arn"),
                "schedule": self.spec.schedule, "schedule_revision_arn": p.data.get("schedule_revision_arn")}

    def alarm_dimensions(self, candidate: Candidate) -> list[dict[str, str]]:
        # Batch publishes no per-revision CloudWatch metrics; the smoke job is this target's check.
        return []

    # --- pt run-job ---------------------------------------------------------------------------

    def plan_run(self, command: list[str] | None = None) -> dict:
        """The SubmitJob request `run` would send (the live revision); nothing is submitted."""
        placement = self.current()
        if not placement.exists:
            raise NotFoundError(f"{self.id} has no live revision in stage {self.stage}",
                                f"deploy it first: pt deploy --stage {self.stage} --target {self.id}", exit_code=2)
        req: dict[str, Any] = {"jobName": job_name(self.definition, f"run-{int(self.env.clock())}"),
                               "jobQueue": self.queue, "jobDefinition": placement.data["arn"]}
        if command:
            req["containerOverrides"] = {"command": list(command)}
        return req

    def run(self, *, wait: bool, command: list[str] | None = None, timeout: float | None = None,
            on_change: Callable[[str], None] = lambda _s: None) -> JobWatch:
        """Submit one job with the live revision; with `wait`, follow it until SUCCEEDED/FAILED."""
        req = self.plan_run(command)
        name = req["jobName"]
        resp = self.batch.submit_job(**req)
        watch = JobWatch(resp["jobId"], name)
        watch.statuses.append("SUBMITTED")
        on_change("SUBMITTED")
        if wait:
            watch_job(self.batch, watch, self.env.clock, self.env.sleep,
                      timeout if timeout is not None else self.spec.timeout * self.spec.retry + 3600, on_change)
        return watch
