"""`pt teardown`: delete what a stage owns, in a safe order, and keep evidence of it.

Order (each step is idempotent, so a re-run after a partial failure finishes the job):

  1. stop traffic: reserved concurrency 0 on every function (invocations are throttled at once);
     then the EC2 instances, AMIs and snapshots of `teardown.ec2` (ops/teardown_ec2.py)
  2. archive the stage's log groups (only with --archive-to; if it fails, log groups are kept)
  2b. the services' resources and the Step Functions / Batch schedule / SageMaker targets, in
     their own dependency order (API, schedules, state machines, SageMaker, access-policy
     attachments, service buckets, service stacks, parameters): see `ops/teardown_services.py`
  3. empty the artifacts bucket: every object version and delete marker
  4. delete ECR images (only when the repositories are not shared, see below)
  5. delete the CloudFormation stage stack when it exists, and wait for it
  6. sweep what is left by name: functions (aliases, versions, function), the bucket, log groups,
     alarms `<project>-<stage>-*`, the events topic
  7. ledger records of the stage (only with --purge-ledger; the table is shared by all stages)
  8. ECR repositories, last
  9. a final listing of everything again: the evidence shows nothing remains

ECR repositories are named per image (`<project>-<image>`), not per stage, so they are shared by
every stage that deploys to the same account and region. They are deleted only when no other
stage in the config uses this stage's account and region; otherwise they are kept and the
evidence says which stages share them. Likewise anything else another stage derives too (an
artifacts bucket template without `{stage}`, colliding function or topic names; see
`shared_resources`) is kept, never emptied, with the reason in the evidence.

Library code: clients come in through `Clients`; time through `clock`/`sleep`; nothing prints.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.aws import client_error_code
from pipeline_tools.core.errors import PtError, UsageError, translate
from pipeline_tools.ops import teardown_services as services_td

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

_ABSENT = {"ResourceNotFoundException", "NoSuchBucket", "404", "NotFound", "RepositoryNotFoundException",
           "ImageNotFoundException", "NoSuchKey", "InvalidInstanceID.NotFound", "InvalidAMIID.NotFound",
           "InvalidAMIID.Unavailable", "InvalidSnapshot.NotFound"}


@dataclass
class Clients:
    lambda_client: Any
    s3: Any
    ecr: Any
    logs: Any
    cloudformation: Any
    dynamodb: Any | None = None
    cloudwatch: Any | None = None
    sns: Any | None = None
    # the services' resources (ops/teardown_services.py); a missing one is reported "not checked"
    apigateway: Any | None = None
    stepfunctions: Any | None = None
    scheduler: Any | None = None
    sagemaker: Any | None = None
    iam: Any | None = None
    ssm: Any | None = None
    ec2: Any | None = None  # only for stages whose config has teardown.ec2


@dataclass
class Action:
    step: str
    resource_type: str
    resource: str
    action: str
    result: str        # done | absent | kept | skipped | failed | planned
    at: str
    detail: str = ""


@dataclass
class Evidence:
    project: str
    stage: str
    account: str
    region: str
    dry_run: bool
    started_at: str
    finished_at: str = ""
    found: list[dict] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    remaining: list[dict] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)
    archive: dict | None = None
    files: list[str] = field(default_factory=list)
    ledger_record: str | None = None   # id of the `teardown` ledger record, or why none was written

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.result == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.remaining

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["failed"] = len(self.failed)
        return d

    def markdown(self) -> str:
        from pipeline_tools.core.output import markdown_table

        status = "DRY RUN (nothing deleted)" if self.dry_run else ("complete" if self.ok else "INCOMPLETE")
        lines = [f"# Teardown of {self.project} stage `{self.stage}`: {status}", "",
                 f"- account {self.account}, region {self.region}",
                 f"- started {self.started_at}, finished {self.finished_at}", ""]
        if self.archive:
            lines += [f"- logs archived to s3://{self.archive.get('bucket')}/{self.archive.get('manifest_key')}", ""]
        lines += ["## Found", "", markdown_table([(f["type"], f["name"], f.get("detail", "")) for f in self.found],
                                                  ["type", "name", "detail"]), ""]
        lines += ["## Actions", "", markdown_table([(a.at, a.step, a.resource_type, a.resource, a.action, a.result,
                                                     a.detail) for a in self.actions],
                                                    ["at", "step", "type", "resource", "action", "result", "detail"]),
                  ""]
        if self.kept:
            lines += ["## Kept on purpose", "", markdown_table([(k["type"], k["name"], k["why"]) for k in self.kept],
                                                               ["type", "name", "why"]), ""]
        lines += ["## Final listing", ""]
        if self.remaining:
            lines += [markdown_table([(r["type"], r["name"]) for r in self.remaining], ["type", "name"])]
        else:
            lines += ["Nothing owned by the stage remains" + (" (dry run: listing before deletion)" if self.dry_run
                                                               else "") + "."]
        return "\n".join(lines) + "\n"


# --- discovery (read-only) ---------------------------------------------------------------------


@dataclass
class Inventory:
    functions: dict[str, dict] = field(default_factory=dict)   # name -> {aliases: [...], versions: [...]}
    bucket: str | None = None
    object_versions: list[dict] = field(default_factory=list)  # {Key, VersionId, marker}
    repositories: dict[str, list[str]] = field(default_factory=dict)  # repo -> image digests
    log_groups: list[str] = field(default_factory=list)
    stack: dict | None = None
    alarms: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)            # ARNs
    ledger_items: int | None = None
    ec2: Any = None                                            # teardown_ec2.Ec2Inventory (teardown.ec2)

    def listing(self) -> list[dict]:
        out = []
        if self.stack:
            out.append({"type": "cloudformation:stack", "name": self.stack["StackName"],
                        "detail": self.stack.get("StackStatus", "")})
        for fn, info in self.functions.items():
            detail = f"aliases {','.join(info['aliases']) or '-'}; versions {','.join(info['versions']) or '-'}"
            out.append({"type": "lambda:function", "name": fn, "detail": detail})
        if self.bucket:
            markers = sum(1 for o in self.object_versions if o["marker"])
            out.append({"type": "s3:bucket", "name": self.bucket,
                        "detail": f"{len(self.object_versions) - markers} object versions, {markers} delete markers"})
        for repo, digests in self.repositories.items():
            out.append({"type": "ecr:repository", "name": repo, "detail": f"{len(digests)} images"})
        for g in self.log_groups:
            out.append({"type": "logs:group", "name": g})
        for a in self.alarms:
            out.append({"type": "cloudwatch:alarm", "name": a})
        for t in self.topics:
            out.append({"type": "sns:topic", "name": t})
        if self.ledger_items:
            out.append({"type": "dynamodb:items", "name": "ledger", "detail": f"{self.ledger_items} items"})
        if self.ec2 is not None:
            out += self.ec2.listing()
        return out


def _prefix_excluding_others(cfg: Config, stage: str) -> tuple[str, list[str]]:
    """Name prefix of the stage's resources, and longer prefixes that belong to other stages
    (stage `staging` must not sweep `iris-staging-eu-predict` of stage `staging-eu`)."""
    mine = f"{cfg.project}-{stage}-"
    others = [f"{cfg.project}-{s}-" for s in cfg.stages if s != stage and f"{cfg.project}-{s}-".startswith(mine)]
    return mine, others


def _owned(name: str, prefix: str, others: list[str]) -> bool:
    return name.startswith(prefix) and not any(name.startswith(o) for o in others)


def shared_with(cfg: Config, stage: str) -> list[str]:
    """Other stages in the same account and region (they share the ECR repositories)."""
    st = cfg.stages[stage]
    return [s for s, o in cfg.stages.items()
            if s != stage and o.account == st.account and cfg.stage_region(s) == cfg.stage_region(stage)]


def _same_place(cfg: Config, a: str, b: str) -> bool:
    return cfg.stages[a].account == cfg.stages[b].account and cfg.stage_region(a) == cfg.stage_region(b)


def shared_resources(cfg: Config, stage: str) -> dict[tuple[str, str], str]:
    """(resource type, name) -> why, for everything this stage derives that another stage derives
    too (pure). Such a resource is never deleted or emptied by one stage's teardown:

    - the artifacts bucket, when another stage renders the same bucket name (a template without
      `{stage}`); bucket names are global, so the accounts do not matter;
    - functions (and their log groups and alarms) and the events topic whose derived name equals
      another stage's in the same account and region (e.g. stage `val` + function `eu-predict` and
      stage `val-eu` + function `predict` are both `<project>-val-eu-predict`).
    ECR repositories are handled by `shared_with` (shared by design within an account/region)."""
    out: dict[tuple[str, str], str] = {}
    mine_bucket = cfg.bucket(stage)
    same_bucket = [s for s in cfg.stages if s != stage and cfg.bucket(s) == mine_bucket]
    if same_bucket:
        why = (f"shared with stage(s) {', '.join(same_bucket)}: artifacts.bucket {cfg.artifacts.bucket!r} "
               f"renders the same name for them" + ("" if "{stage}" in cfg.artifacts.bucket else
                                                   " (it has no {stage})"))
        out[("s3:bucket", mine_bucket)] = why
    for other in cfg.stages:
        if other == stage or not _same_place(cfg, stage, other):
            continue
        theirs = {cfg.function_name(other, f) for f in cfg.functions}
        place = f"account {cfg.stages[stage].account}/{cfg.stage_region(stage)}"
        for fn in sorted(theirs & {cfg.function_name(stage, f) for f in cfg.functions}):
            why = f"also the function of stage {other} in {place} (the derived names collide)"
            out.setdefault(("lambda:function", fn), why)
            out.setdefault(("logs:group", f"/aws/lambda/{fn}"), why)
            out.setdefault(("alarm-prefix", f"{fn}-"), why)
        if cfg.sns_topic(other) == cfg.sns_topic(stage):
            out.setdefault(("sns:topic", cfg.sns_topic(stage)), f"also the events topic of stage {other} in {place}")
    return out


def _keep_shared(inv: Inventory, shared: dict[tuple[str, str], str]) -> list[dict]:
    """Take shared resources out of the inventory (nothing below will touch them); the kept list."""
    kept: list[dict] = []
    if inv.bucket and ("s3:bucket", inv.bucket) in shared:
        kept.append({"type": "s3:bucket", "name": inv.bucket, "why": shared[("s3:bucket", inv.bucket)]})
        inv.bucket, inv.object_versions = None, []
    for fn in list(inv.functions):
        if ("lambda:function", fn) in shared:
            kept.append({"type": "lambda:function", "name": fn, "why": shared[("lambda:function", fn)]})
            del inv.functions[fn]
    for g in list(inv.log_groups):
        if ("logs:group", g) in shared:
            kept.append({"type": "logs:group", "name": g, "why": shared[("logs:group", g)]})
            inv.log_groups.remove(g)
    prefixes = {name: why for (t, name), why in shared.items() if t == "alarm-prefix"}
    for a in list(inv.alarms):
        why = next((w for p, w in prefixes.items() if a.startswith(p)), None)
        if why:
            kept.append({"type": "cloudwatch:alarm", "name": a, "why": why})
            inv.alarms.remove(a)
    for arn in list(inv.topics):
        name = arn.rsplit(":", 1)[-1]
        if ("sns:topic", name) in shared:
            kept.append({"type": "sns:topic", "name": arn, "why": shared[("sns:topic", name)]})
            inv.topics.remove(arn)
    return kept


def _stack_owns_shared(cfn, stack: str, shared: dict[tuple[str, str], str]) -> tuple[str, str] | None:
    """(physical id, why) of a shared resource that the stage stack itself manages, or None.
    Deleting that stack would delete it (whatever teardown keeps by name), so the stack is kept."""
    names = {name: why for (t, name), why in shared.items() if t != "alarm-prefix"}
    if not names:
        return None
    for r in _paginate(cfn, "list_stack_resources", "StackResourceSummaries", StackName=stack):
        pid = r.get("PhysicalResourceId") or ""
        key = pid.rsplit(":", 1)[-1] if pid.startswith("arn:") else pid
        if key in names:
            return pid, names[key]
    return None


def _paginate(client, op: str, key: str, **kw) -> list:
    out: list = []
    for page in client.get_paginator(op).paginate(**kw):
        out += page.get(key, [])
    return out


def discover(cfg: Config, stage: str, c: Clients, *, purge_ledger: bool = False) -> Inventory:
    inv = Inventory()
    prefix, others = _prefix_excluding_others(cfg, stage)
    # stack
    try:
        stacks = c.cloudformation.describe_stacks(StackName=names.stage_stack(cfg.project, stage))["Stacks"]
        if stacks and stacks[0].get("StackStatus") != "DELETE_COMPLETE":
            inv.stack = {"StackName": stacks[0]["StackName"], "StackStatus": stacks[0].get("StackStatus")}
    except Exception as e:
        if not (client_error_code(e) == "ValidationError" and "does not exist" in str(e)):
            raise
    # functions: from config, plus leftovers by prefix
    wanted = {cfg.function_name(stage, fn) for fn in cfg.functions}
    for f in _paginate(c.lambda_client, "list_functions", "Functions"):
        if _owned(f["FunctionName"], prefix, others):
            wanted.add(f["FunctionName"])
    for fn in sorted(wanted):
        try:
            aliases = [a["Name"] for a in _paginate(c.lambda_client, "list_aliases", "Aliases", FunctionName=fn)]
            versions = [v["Version"] for v in _paginate(c.lambda_client, "list_versions_by_function", "Versions",
                                                         FunctionName=fn) if v["Version"] != "$LATEST"]
        except Exception as e:
            if client_error_code(e) in _ABSENT:
                continue
            raise
        inv.functions[fn] = {"aliases": aliases, "versions": versions}
    # bucket
    bucket = cfg.bucket(stage)
    try:
        c.s3.head_bucket(Bucket=bucket)
        inv.bucket = bucket
        inv.object_versions = list_object_versions(c.s3, bucket)
    except Exception as e:
        if client_error_code(e) not in _ABSENT:
            raise
    # ECR
    for image in cfg.images:
        repo = cfg.ecr_repository(image)
        try:
            c.ecr.describe_repositories(repositoryNames=[repo])
        except Exception as e:
            if client_error_code(e) in _ABSENT:
                continue
            raise
        ids = _paginate(c.ecr, "list_images", "imageIds", repositoryName=repo)
        inv.repositories[repo] = sorted({i["imageDigest"] for i in ids if i.get("imageDigest")})
    # log groups: the functions' groups, plus leftovers by prefix
    lg_prefix = f"/aws/lambda/{prefix}"
    other_lg = [f"/aws/lambda/{o}" for o in others]
    for g in _paginate(c.logs, "describe_log_groups", "logGroups", logGroupNamePrefix=lg_prefix):
        if _owned(g["logGroupName"], lg_prefix, other_lg):
            inv.log_groups.append(g["logGroupName"])
    # alarms and the events topic (made by the stage stack; swept when the stack is gone)
    if c.cloudwatch is not None:
        for a in _paginate(c.cloudwatch, "describe_alarms", "MetricAlarms", AlarmNamePrefix=prefix):
            if _owned(a["AlarmName"], prefix, others):
                inv.alarms.append(a["AlarmName"])
    if c.sns is not None:
        topic = cfg.sns_topic(stage)
        inv.topics = [t["TopicArn"] for t in _paginate(c.sns, "list_topics", "Topics")
                      if t["TopicArn"].rsplit(":", 1)[-1] == topic]
    if purge_ledger and c.dynamodb is not None:
        inv.ledger_items = len(ledger_keys(c.dynamodb, cfg, stage))
    spec = ec2_spec(cfg, stage)
    if spec is not None:
        from pipeline_tools.ops import teardown_ec2

        if c.ec2 is None:
            raise UsageError(f"stage {stage} names EC2 resources (teardown.ec2) but no EC2 client was given")
        inv.ec2 = teardown_ec2.discover(c.ec2, spec, cfg.project, stage)
    return inv


def ec2_spec(cfg: Config, stage: str) -> Any:
    """The stage's `teardown.ec2`, or None."""
    td = getattr(cfg.stages[stage], "teardown", None)
    return getattr(td, "ec2", None)


def list_object_versions(s3, bucket: str) -> list[dict]:
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            out.append({"Key": v["Key"], "VersionId": v.get("VersionId") or "null", "marker": False})
        for m in page.get("DeleteMarkers", []):
            out.append({"Key": m["Key"], "VersionId": m.get("VersionId") or "null", "marker": True})
    return out


# --- ledger ------------------------------------------------------------------------------------


def ledger_keys(dynamodb, cfg: Config, stage: str) -> list[dict]:
    """Keys of the ledger items of `stage` (records and lock). The ledger's partition key is the
    stage name (pipeline_tools/release/ledger.py), so this is one paginated Query. Table missing → []."""
    table = cfg.ledger_table()
    try:
        schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    except Exception as e:
        if client_error_code(e) in _ABSENT:
            return []
        raise
    key_names = [k["AttributeName"] for k in schema]
    pk = next(k["AttributeName"] for k in schema if k["KeyType"] == "HASH")
    out = []
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="#pk = :stage", ExpressionAttributeNames={"#pk": pk},
        ExpressionAttributeValues={":stage": {"S": stage}})
    for page in pages:
        out += [{k: item[k] for k in key_names} for item in page.get("Items", [])]
    return out


def check_not_locked(dynamodb, cfg: Config, stage: str, now: float) -> None:
    """Refuse (exit 4) while a deploy holds the stage's ledger lock with a live lease."""
    from pipeline_tools.core.errors import LockedError
    from pipeline_tools.release.ledger import Ledger

    try:
        lock = Ledger(dynamodb, cfg.ledger_table()).current_lock(stage)
    except Exception as e:
        if client_error_code(e) in _ABSENT:
            return
        raise
    if lock is not None and lock.lease_until > now:
        raise LockedError(lock.describe(),
                          "wait for the deploy to finish (or `pt recover`), then re-run teardown")


def purge_ledger_items(dynamodb, cfg: Config, stage: str) -> int:
    """Delete the stage's ledger items (records and lock). ledger.py has no delete API (it is an
    append-only log by design), so teardown deletes by key here, with --purge-ledger only."""
    keys = ledger_keys(dynamodb, cfg, stage)
    for k in keys:
        dynamodb.delete_item(TableName=cfg.ledger_table(), Key=k)
    return len(keys)


# --- execution ---------------------------------------------------------------------------------


class _Run:
    def __init__(self, ev: Evidence, clock: Callable[[], float], dry_run: bool):
        self.ev, self.clock, self.dry_run = ev, clock, dry_run

    def now(self) -> str:
        return _iso(self.clock())

    def record(self, step: str, rtype: str, name: str, action: str, result: str, detail: str = "") -> Action:
        a = Action(step, rtype, name, action, result, self.now(), detail)
        self.ev.actions.append(a)
        return a

    def do(self, step: str, rtype: str, name: str, action: str, fn: Callable[[], Any],
           detail: str = "") -> bool:
        """Run one mutating call (or plan it in a dry run); record the result. True on success."""
        if self.dry_run:
            self.record(step, rtype, name, action, "planned", detail)
            return True
        try:
            extra = fn()
        except Exception as e:
            if client_error_code(e) in _ABSENT:
                self.record(step, rtype, name, action, "absent", "already gone")
                return True
            err = translate(e) or PtError(f"{type(e).__name__}: {e}")
            self.record(step, rtype, name, action, "failed", err.message)
            return False
        text = "; ".join(t for t in (detail, extra if isinstance(extra, str) else "") if t)
        self.record(step, rtype, name, action, "done", text)
        return True


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def check_allowed(cfg: Config, stage: str) -> None:
    cfg.stage(stage)
    if cfg.is_protected(stage):
        raise UsageError(f"stage '{stage}' is protected: teardown refused",
                         f"set `protected: false` under stages.{stage} in pipeline.yml if you really mean it")


def teardown(cfg: Config, stage: str, c: Clients, *, clock: Callable[[], float], sleep: Callable[[float], None],
             dry_run: bool = False, purge_ledger: bool = False, archive_to: str | None = None,
             evidence_dir: str | Path = "reports", stack_timeout: float = 1800.0,
             ledger_purge: Callable[[Any, Config, str], int] | None = None, actor: dict | None = None) -> Evidence:
    """Tear the stage down (see the module doc for the order). Returns the evidence, also written
    as JSON + markdown to `evidence_dir` and, with `archive_to`, next to the archived logs."""
    from pipeline_tools.ops import logs as ops_logs

    check_allowed(cfg, stage)
    if archive_to:
        arch_bucket, _ = ops_logs.parse_s3_url(archive_to, "--archive-to")
        if arch_bucket == cfg.bucket(stage):
            raise UsageError(f"--archive-to s3://{arch_bucket} is the stage's own artifacts bucket, which "
                             "teardown deletes", "archive to a bucket that outlives the stage")
        ops_logs.check_bucket(c.s3, arch_bucket)  # before anything is deleted
    if c.dynamodb is not None:
        check_not_locked(c.dynamodb, cfg, stage, clock())
    ev = Evidence(cfg.project, stage, cfg.stages[stage].account, cfg.stage_region(stage), dry_run, _iso(clock()))
    run = _Run(ev, clock, dry_run)
    inv = discover(cfg, stage, c, purge_ledger=purge_ledger)
    svc_inv = services_td.discover(cfg, stage, c)
    ev.found = svc_inv.listing() + inv.listing()
    for k in svc_inv.kept:
        ev.kept.append(k)
        run.record("scope", k["type"], k["name"], "none (shared)", "kept", k["why"])
    shared = shared_resources(cfg, stage)
    for k in _keep_shared(inv, shared):
        ev.kept.append(k)
        run.record("scope", k["type"], k["name"], "none (shared)", "kept", k["why"])
    if inv.stack and shared:
        owned = _stack_owns_shared(c.cloudformation, inv.stack["StackName"], shared)
        if owned:
            why = (f"the stack manages {owned[0]}, which is shared ({owned[1]}): deleting the stack would delete "
                   "it; fix the names in pipeline.yml, or delete the stack by hand")
            ev.kept.append({"type": "cloudformation:stack", "name": inv.stack["StackName"], "why": why})
            run.record("scope", "cloudformation:stack", inv.stack["StackName"], "none (shared)", "kept", why)
            inv.stack = None
    sharing = shared_with(cfg, stage)
    ecr_mine = not sharing
    if not ecr_mine:
        for repo in inv.repositories:
            ev.kept.append({"type": "ecr:repository", "name": repo,
                            "why": f"shared with stage(s) {', '.join(sharing)} in account "
                                   f"{ev.account}/{ev.region}"})
    if not purge_ledger:
        ev.kept.append({"type": "dynamodb:table", "name": cfg.ledger_table(),
                        "why": "ledger kept (shared by all stages); pass --purge-ledger to delete this stage's items"})

    # 1. stop traffic
    for fn in inv.functions:
        run.do("stop-traffic", "lambda:function", fn, "set reserved concurrency 0",
               lambda fn=fn: c.lambda_client.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=0))

    # 1b. EC2: instances (terminated, waited for), then their AMIs, then the AMIs' snapshots
    if inv.ec2 is not None:
        _teardown_ec2(run, c.ec2, inv.ec2, ev, clock, sleep)

    # 2. archive logs (after traffic stopped, so the archive is complete)
    logs_archived = True
    if archive_to and inv.log_groups:
        if dry_run:
            run.record("archive-logs", "logs:group", ", ".join(inv.log_groups), "archive", "planned", archive_to)
        else:
            try:
                res = ops_logs.archive(cfg, stage, archive_to, logs_client=c.logs, s3=c.s3, clock=clock,
                                       sleep=sleep, groups=inv.log_groups)
                ev.archive = {"bucket": res.bucket, "prefix": res.prefix, "manifest_key": res.manifest_key,
                              "new_objects": res.new_objects}
                run.record("archive-logs", "logs:group", ", ".join(inv.log_groups), "archive", "done",
                           f"s3://{res.bucket}/{res.manifest_key}")
            except Exception as e:
                logs_archived = False
                err = translate(e) or PtError(str(e))
                run.record("archive-logs", "logs:group", ", ".join(inv.log_groups), "archive", "failed", err.message)

    # 2b. the services (their own order; before the stage bucket, stack and ECR they may use)
    services_td.run_steps(svc_inv, c, run, delete_versions=_delete_versions,
                          delete_stack=lambda cfn, name: _delete_stack(cfn, name, clock, sleep, stack_timeout))

    # 3. empty the bucket (all versions and delete markers)
    if inv.bucket:
        _empty_bucket(run, c.s3, inv.bucket, inv.object_versions)

    # 4. ECR images
    if ecr_mine:
        for repo, digests in inv.repositories.items():
            for i in range(0, len(digests), 100):
                batch = digests[i:i + 100]
                run.do("delete-images", "ecr:image", f"{repo} ({len(batch)} images)", "batch_delete_image",
                       lambda repo=repo, batch=batch: _ecr_delete(c.ecr, repo, batch))

    # 5. the stage stack
    if inv.stack:
        run.do("delete-stack", "cloudformation:stack", inv.stack["StackName"], "delete_stack + wait",
               lambda: _delete_stack(c.cloudformation, inv.stack["StackName"], clock, sleep, stack_timeout))

    # 6. sweep by name: functions, bucket, log groups
    for fn, info in inv.functions.items():
        for alias in info["aliases"]:
            run.do("delete-functions", "lambda:alias", f"{fn}:{alias}", "delete_alias",
                   lambda fn=fn, alias=alias: c.lambda_client.delete_alias(FunctionName=fn, Name=alias))
        for v in info["versions"]:
            run.do("delete-functions", "lambda:version", f"{fn}:{v}", "delete_function(version)",
                   lambda fn=fn, v=v: c.lambda_client.delete_function(FunctionName=fn, Qualifier=v))
        run.do("delete-functions", "lambda:function", fn, "delete_function",
               lambda fn=fn: c.lambda_client.delete_function(FunctionName=fn))
    if inv.bucket:
        run.do("delete-bucket", "s3:bucket", inv.bucket, "delete_bucket",
               lambda: _delete_bucket(run, c.s3, inv.bucket))
    for g in inv.log_groups:
        if archive_to and not logs_archived:
            run.record("delete-log-groups", "logs:group", g, "delete_log_group", "skipped",
                       "archive failed; log group kept")
            continue
        run.do("delete-log-groups", "logs:group", g, "delete_log_group",
               lambda g=g: c.logs.delete_log_group(logGroupName=g))

    for i in range(0, len(inv.alarms), 100):
        batch = inv.alarms[i:i + 100]
        run.do("delete-alarms", "cloudwatch:alarm", ", ".join(batch), "delete_alarms",
               lambda batch=batch: c.cloudwatch.delete_alarms(AlarmNames=batch))
    for arn in inv.topics:
        run.do("delete-topic", "sns:topic", arn, "delete_topic", lambda arn=arn: c.sns.delete_topic(TopicArn=arn))

    # 7. ledger
    if purge_ledger and c.dynamodb is not None and inv.ledger_items:
        purge = ledger_purge or purge_ledger_items
        run.do("purge-ledger", "dynamodb:items", f"{cfg.ledger_table()} (stage {stage})", "delete items",
               lambda: f"{purge(c.dynamodb, cfg, stage)} items deleted",
               detail=f"{inv.ledger_items or 0} items")

    # 8. ECR repositories last
    if ecr_mine:
        for repo in inv.repositories:
            run.do("delete-repositories", "ecr:repository", repo, "delete_repository",
                   lambda repo=repo: c.ecr.delete_repository(repositoryName=repo))

    # 9. final listing
    if not dry_run:
        after = discover(cfg, stage, c, purge_ledger=purge_ledger)
        after_svc = services_td.discover(cfg, stage, c)
        kept_names = {k["name"] for k in ev.kept}
        ev.remaining = [r for r in after_svc.listing() + after.listing() if r["name"] not in kept_names]
        # fail closed: what could not be checked is not "gone"
        ev.remaining += [{"type": n, "name": "not checked (no client)"} for n in after_svc.unchecked]
    ev.finished_at = _iso(clock())
    write_evidence(ev, evidence_dir, c.s3 if (archive_to and not dry_run) else None, archive_to)
    if c.dynamodb is not None and not dry_run and not purge_ledger:
        ev.ledger_record = _ledger_record(c.dynamodb, cfg, stage, ev, actor, clock)
    return ev


def _ledger_record(dynamodb: Any, cfg: Config, stage: str, ev: Evidence, actor: dict | None,
                   clock: Callable[[], float]) -> str:
    """A `teardown` record in the ledger (`pt history --kind teardown`); its failure is noted, never
    fatal: the evidence files are the record of the teardown itself."""
    from pipeline_tools.release.ledger import Ledger

    data = {"operation": "teardown", "ok": ev.ok, "failed": len(ev.failed), "bucket": cfg.bucket(stage),
            "found": len(ev.found), "remaining": len(ev.remaining), "kept": [k["name"] for k in ev.kept],
            "evidence": ev.files}
    try:
        rec = Ledger(dynamodb, cfg.ledger_table(), clock).put_record(
            "teardown", stage, data, actor=actor, state="completed" if ev.ok else "incomplete")
    except Exception as e:
        err = translate(e)
        return f"not written: {err.message if err else f'{type(e).__name__}: {e}'}"
    return rec.id


def _teardown_ec2(run: _Run, ec2: Any, inv: Any, ev: Evidence, clock, sleep) -> None:
    from pipeline_tools.ops import teardown_ec2 as te

    for ref in inv.not_found:
        run.record("scope", "ec2", ref, "none", "absent", "named in teardown.ec2; nothing (left) to delete")
    ids = sorted(inv.instances)
    if ids:
        run.do("terminate-instances", "ec2:instance", ", ".join(ids), "terminate_instances + wait",
               lambda: te.terminate_and_wait(ec2, ids, clock, sleep))
    deregistered: set[str] = set()
    for ami in sorted(inv.amis):
        if run.do("deregister-amis", "ec2:image", ami, "deregister_image",
                  lambda ami=ami: ec2.deregister_image(ImageId=ami)):
            deregistered.add(ami)
    snaps = [(s, ami) for ami in sorted(inv.amis) for s in inv.amis[ami]["snapshots"]]
    in_use = te.snapshots_in_use(ec2, [s for s, _ in snaps], set(inv.amis))
    for snap, ami in snaps:
        if snap in in_use:
            why = f"still used by AMI {in_use[snap]}, which teardown.ec2 does not name"
            ev.kept.append({"type": "ec2:snapshot", "name": snap, "why": why})
            run.record("delete-snapshots", "ec2:snapshot", snap, "none (in use)", "kept", why)
        elif ami not in deregistered:
            run.record("delete-snapshots", "ec2:snapshot", snap, "delete_snapshot", "skipped",
                       f"AMI {ami} was not deregistered")
        else:
            run.do("delete-snapshots", "ec2:snapshot", snap, "delete_snapshot",
                   lambda snap=snap: ec2.delete_snapshot(SnapshotId=snap), detail=f"of {ami}")


S3_BATCH = 1000  # delete_objects takes at most 1,000 keys


def _empty_bucket(run: _Run, s3, bucket: str, versions: list[dict]) -> bool:
    ok = True
    for i in range(0, len(versions), S3_BATCH):
        batch = versions[i:i + S3_BATCH]
        markers = sum(1 for v in batch if v["marker"])
        ok &= run.do("empty-bucket", "s3:object-versions", f"{bucket} ({len(batch)})", "delete_objects",
                     lambda batch=batch: _delete_versions(s3, bucket, batch),
                     detail=f"{len(batch) - markers} versions, {markers} delete markers")
    return ok


def _delete_versions(s3, bucket: str, batch: list[dict]) -> str:
    resp = s3.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in batch], "Quiet": True})
    errors = resp.get("Errors", [])
    if errors:
        e = errors[0]
        raise PtError(f"{len(errors)} of {len(batch)} deletions failed, first {e.get('Key')}: "
                      f"{e.get('Code')} {e.get('Message', '')}".strip())
    return f"{len(batch)} deleted"


def _delete_bucket(run: _Run, s3, bucket: str) -> str:
    late = list_object_versions(s3, bucket)  # written since discovery
    if late:
        resp_detail = _delete_versions(s3, bucket, late[:S3_BATCH])
        if len(late) > S3_BATCH:
            raise PtError(f"bucket {bucket} still has {len(late)} object versions; re-run teardown")
        run.record("delete-bucket", "s3:object-versions", f"{bucket} ({len(late)})", "delete_objects", "done",
                   f"written after discovery: {resp_detail}")
    s3.delete_bucket(Bucket=bucket)
    return ""


def _ecr_delete(ecr, repo: str, digests: list[str]) -> str:
    resp = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": d} for d in digests])
    failures = [f for f in resp.get("failures", []) if f.get("failureCode") != "ImageNotFound"]
    if failures:
        f = failures[0]
        raise PtError(f"{len(failures)} image deletions failed, first {f.get('imageId', {}).get('imageDigest')}: "
                      f"{f.get('failureCode')} {f.get('failureReason', '')}".strip())
    return f"{len(digests) - len(failures)} deleted"


def _delete_stack(cfn, name: str, clock, sleep, timeout: float) -> str:
    cfn.delete_stack(StackName=name)
    deadline = clock() + timeout
    while True:
        try:
            st = cfn.describe_stacks(StackName=name)["Stacks"][0]
        except Exception as e:
            if client_error_code(e) == "ValidationError":
                return "deleted"
            raise
        status = st.get("StackStatus", "")
        if status == "DELETE_COMPLETE":
            return "deleted"
        if status == "DELETE_FAILED":
            raise PtError(f"stack {name} DELETE_FAILED: {st.get('StackStatusReason', '')}")
        if clock() > deadline:
            raise PtError(f"stack {name} still {status} after {timeout:.0f}s")
        sleep(5.0)


def write_evidence(ev: Evidence, evidence_dir: str | Path, s3=None, archive_to: str | None = None) -> list[str]:
    from pipeline_tools.ops import logs as ops_logs

    stamp = ev.started_at.replace(":", "").replace("-", "").split(".")[0] + "Z"
    base = f"teardown-{ev.project}-{ev.stage}-{stamp}" + ("-dry-run" if ev.dry_run else "")
    d = Path(evidence_dir)
    d.mkdir(parents=True, exist_ok=True)
    ev.files = [str(d / f"{base}.json"), str(d / f"{base}.md")]
    if s3 is not None and archive_to:
        bucket, prefix = ops_logs.parse_s3_url(archive_to, "--archive-to")
        ev.files += [f"s3://{bucket}/{ops_logs.join_key(prefix, 'evidence', base)}.{x}" for x in ("json", "md")]
    body_json = json.dumps(ev.to_dict(), indent=2)
    body_md = ev.markdown()
    (d / f"{base}.json").write_text(body_json, encoding="utf-8")
    (d / f"{base}.md").write_text(body_md, encoding="utf-8")
    if s3 is not None and archive_to:
        for ext, body, ctype in (("json", body_json, "application/json"), ("md", body_md, "text/markdown")):
            s3.put_object(Bucket=bucket, Key=f"{ops_logs.join_key(prefix, 'evidence', base)}.{ext}",
                          Body=body.encode(), ContentType=ctype)
    return ev.files
