"""`pt access grant|revoke|show`: Cognito groups' use of a service, and the shared record of it.

A grant attaches the service's managed access policy (`names.access_policy`, created by the
service stack) to the IAM role of a Cognito group (read with cognito-idp GetGroup from
`services.<m>.access.user_pool_id`); a revoke detaches it. Both then update the stage's record
`s3://<stage artifacts bucket>/access/cognito_group_access.json`:

    {"schema": 1, "project": "iris", "stage": "staging",
     "grants": {"<group>": {"<service>": {"policy_arn": …, "role_arn": …, "at": …, "by": …}}}}

The record is shared by every admin, so it is written with a conditional PUT: `If-Match: <ETag
read>` (or `If-None-Match: *` when it does not exist yet). A 412 (someone wrote in between) or 409
(a concurrent conditional write) re-reads, re-applies the change and tries again, so two admins
granting at once both land. Why the stage artifacts bucket: it exists before any service stack,
outlives them, and the deploy role can already write it; the service buckets are per service.

Library code: clients, clock and sleep come in as arguments; nothing prints.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.aws import client_error_code
from pipeline_tools.core.errors import NotFoundError, PtError, UsageError
from pipeline_tools.ops.services import partition

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

ACCESS_KEY = "access/cognito_group_access.json"
SCHEMA = 1
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING = {"NoSuchKey", "404"}


@dataclass(frozen=True)
class Target:
    """What a grant/revoke acts on (all derived from config; pure)."""

    stage: str
    service: str
    group: str
    user_pool_id: str
    policy_arn: str
    bucket: str
    stack: str = ""

    @property
    def document_url(self) -> str:
        return f"s3://{self.bucket}/{ACCESS_KEY}"


def policy_arn(cfg: Config, service: str, stage: str) -> str:
    region = cfg.stage_region(stage)
    return (f"arn:{partition(region)}:iam::{cfg.stages[stage].account}:policy/"
            f"{names.access_policy(cfg.project, service, stage)}")


def target(cfg: Config, stage: str, service: str, group: str) -> Target:
    svc = cfg.services[service]
    if svc.access is None:
        raise UsageError(f"services.{service} has no `access:` section",
                         f"add services.{service}.access (identity_pool_id, user_pool_id) to pipeline.yml")
    if not svc.access.user_pool_id:
        raise UsageError(f"services.{service}.access.user_pool_id is not set: pt cannot read Cognito groups",
                         f"set services.{service}.access.user_pool_id (REGION_ID) in pipeline.yml")
    if not group.strip():
        raise UsageError("--group is empty", "pass the Cognito group name, e.g. --group data-science")
    return Target(stage, service, group, svc.access.user_pool_id, policy_arn(cfg, service, stage), cfg.bucket(stage),
                  names.service_stack(cfg.project, service, stage))


def user_pool_region(user_pool_id: str) -> str:
    return user_pool_id.split("_", 1)[0]


def group_role(cognito, t: Target) -> str:
    """The group's IAM role ARN; a missing pool or group, or a group without a role, is exit 2."""
    try:
        group = cognito.get_group(GroupName=t.group, UserPoolId=t.user_pool_id)["Group"]
    except Exception as e:
        if client_error_code(e) == "ResourceNotFoundException":
            if "pool" in str(e).lower() and "group" not in str(e).lower():
                raise UsageError(f"Cognito user pool {t.user_pool_id} does not exist",
                                 f"fix services.{t.service}.access.user_pool_id in pipeline.yml") from None
            raise UsageError(f"Cognito group '{t.group}' does not exist in user pool {t.user_pool_id}",
                             f"list the groups: aws cognito-idp list-groups --user-pool-id {t.user_pool_id}") from None
        if client_error_code(e) in ("InvalidParameterException", "ValidationException"):
            raise UsageError(f"Cognito rejected group '{t.group}' / user pool {t.user_pool_id}: "
                             f"{str(e).split(': ', 1)[-1]}",
                             "check --group and services.*.access.user_pool_id") from None
        raise
    role = group.get("RoleArn")
    if not role:
        raise UsageError(f"Cognito group '{t.group}' has no IAM role to attach the access policy to",
                         f"give it one: aws cognito-idp update-group --user-pool-id {t.user_pool_id} "
                         f"--group-name {t.group} --role-arn ROLE_ARN")
    return role


def role_name(role_arn: str) -> str:
    return role_arn.rsplit("/", 1)[-1]


def check_policy(iam, t: Target) -> None:
    try:
        iam.get_policy(PolicyArn=t.policy_arn)
    except Exception as e:
        if client_error_code(e) == "NoSuchEntity":
            raise NotFoundError(f"access policy {t.policy_arn} does not exist",
                                f"the service stack creates it: deploy it (`npx cdk deploy {t.stack}`)") from None
        raise


def attached(iam, role: str, arn: str) -> bool:
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        if any(p["PolicyArn"] == arn for p in page.get("AttachedPolicies", [])):
            return True
    return False


# --- the shared record ----------------------------------------------------------------------


def empty_document(project: str, stage: str) -> dict:
    return {"schema": SCHEMA, "project": project, "stage": stage, "grants": {}}


def parse_document(body: bytes, where: str) -> dict:
    """The record, checked (fail closed: a record pt cannot read is never treated as empty)."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise PtError(f"{where} is not valid JSON ({e})", "fix or delete it, then re-run") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("grants"), dict)
            and all(isinstance(v, dict) for v in doc["grants"].values())):
        raise PtError(f"{where} is not a pt access record (expected {{\"grants\": {{group: {{service: …}}}}}})",
                      "fix or delete it, then re-run")
    if doc.get("schema", SCHEMA) > SCHEMA:
        raise PtError(f"{where} has schema {doc['schema']}, newer than this pt understands ({SCHEMA})",
                      "upgrade pt")
    return doc


def read_document(s3, bucket: str, key: str = ACCESS_KEY) -> tuple[dict | None, str | None]:
    """(record, ETag), or (None, None) when there is none yet."""
    try:
        resp = s3.get_object(Bucket=bucket, Key=key)
    except Exception as e:
        if client_error_code(e) in _MISSING:
            return None, None
        if client_error_code(e) == "NoSuchBucket":
            raise NotFoundError(f"bucket {bucket} (which holds {key}) does not exist",
                                "deploy the stage stack first (`npx cdk deploy`)") from None
        raise
    return parse_document(resp["Body"].read(), f"s3://{bucket}/{key}"), resp["ETag"]


def update_document(s3, bucket: str, mutate: Callable[[dict], dict], *, empty: dict,
                    sleep: Callable[[float], None], key: str = ACCESS_KEY, attempts: int = 10,
                    rng: Callable[[], float] = random.random,
                    after_read: Callable[[int], None] | None = None) -> tuple[dict, int, bool]:
    """Read-modify-write with a conditional PUT, retried on conflict. `mutate` gets a copy of the
    current record and returns the new one; it runs again after each conflict, on a fresh read.
    Returns (record, conflicts retried, written). `after_read` is a test seam between read and write."""
    for attempt in range(attempts):
        current, etag = read_document(s3, bucket, key)
        new = mutate(copy.deepcopy(current if current is not None else empty))
        if after_read is not None:
            after_read(attempt)
        if new == (current if current is not None else empty):
            return new, attempt, False  # nothing to change (a revoke with no record writes none)
        body = (json.dumps(new, indent=2, sort_keys=True) + "\n").encode()
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **cond)
        except Exception as e:
            if client_error_code(e) in _CONFLICT:
                sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + rng()))
                continue
            raise
        return new, attempt, True
    raise PtError(f"s3://{bucket}/{key} kept changing under {attempts} attempts to update it",
                  "other admins are writing it right now: re-run the command")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_grant(doc: dict, t: Target, role_arn: str, at: str, by: str) -> dict:
    doc.setdefault("grants", {}).setdefault(t.group, {})[t.service] = {
        "policy_arn": t.policy_arn, "role_arn": role_arn, "at": at, "by": by}
    return doc


def without_grant(doc: dict, t: Target) -> dict:
    services = doc.get("grants", {}).get(t.group)
    if services is not None:
        services.pop(t.service, None)
        if not services:
            del doc["grants"][t.group]
    return doc


# --- grant / revoke / show ------------------------------------------------------------------


def change(cfg: Config, t: Target, *, grant: bool, cognito, iam, s3, clock: Callable[[], float],
           sleep: Callable[[float], None], actor: str = "", dry_run: bool = False,
           after_read: Callable[[int], None] | None = None) -> dict:
    """Attach (grant) or detach (revoke) the access policy, then record it. Idempotent."""
    role_arn = group_role(cognito, t)
    role = role_name(role_arn)
    if grant:
        check_policy(iam, t)
    is_attached = attached(iam, role, t.policy_arn)
    verb = "grant" if grant else "revoke"
    report: dict[str, Any] = {"action": verb, "stage": t.stage, "service": t.service, "group": t.group,
                              "role_arn": role_arn, "policy_arn": t.policy_arn, "document": t.document_url,
                              "dry_run": dry_run, "was_attached": is_attached}
    needs_iam = is_attached != grant
    if dry_run:
        report["plan"] = ([f"{'attach' if grant else 'detach'} {t.policy_arn} {'to' if grant else 'from'} {role}"]
                          if needs_iam else []) + [f"record the {verb} in {t.document_url}"]
        return report
    if needs_iam:
        try:
            if grant:
                iam.attach_role_policy(RoleName=role, PolicyArn=t.policy_arn)
            else:
                iam.detach_role_policy(RoleName=role, PolicyArn=t.policy_arn)
        except Exception as e:
            if grant or client_error_code(e) != "NoSuchEntity":
                raise
    at = _iso(clock())

    def mutate(doc: dict) -> dict:
        if grant:
            prev = doc.get("grants", {}).get(t.group, {}).get(t.service)
            if prev and prev.get("role_arn") == role_arn and prev.get("policy_arn") == t.policy_arn:
                return doc  # already recorded: no write
            return with_grant(doc, t, role_arn, at, actor)
        return without_grant(doc, t)

    _doc, retries, written = update_document(s3, t.bucket, mutate, empty=empty_document(cfg.project, t.stage),
                                             sleep=sleep, after_read=after_read)
    report.update(iam_changed=needs_iam, record_written=written, conflicts_retried=retries)
    return report


def show(cfg: Config, stage: str, s3, *, service: str | None = None, group: str | None = None,
         iam=None) -> dict:
    """The record as a groups × services table (filtered by service/group when given). With `iam`,
    every recorded grant is checked against the role's attached policies: `drift` lists the
    grants whose policy is no longer attached (an IAM read error raises: never "no drift")."""
    bucket = cfg.bucket(stage)
    doc, _etag = read_document(s3, bucket)
    grants = (doc or {}).get("grants", {})
    services = sorted({s for g in grants.values() for s in g} | set(cfg.services_for(stage)))
    if service:
        services = [service]
    rows = []
    for g in sorted(grants):
        if group and g != group:
            continue
        rows.append({"group": g, "services": {s: grants[g].get(s) for s in services}})
    report = {"stage": stage, "document": f"s3://{bucket}/{ACCESS_KEY}", "exists": doc is not None,
              "services": services, "groups": rows}
    if iam is not None:
        drift = []
        for row in rows:
            for svc, grant in row["services"].items():
                if grant and not attached(iam, role_name(grant["role_arn"]), grant["policy_arn"]):
                    drift.append({"group": row["group"], "service": svc, "role_arn": grant["role_arn"],
                                  "policy_arn": grant["policy_arn"]})
        report["drift"] = drift
    return report
