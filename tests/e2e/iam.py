"""Check recorded AWS calls (tests/e2e/generated.install_recorder) against the policies of a role
in a synthesized template: each call's IAM action must be allowed by a statement of the role,
and that statement's resources must name the resource the call acts on (loosely: the name
appears in one of its resources, or the statement is unscoped). Wildcard actions (`*`,
`service:*`) are reported on their own."""

from __future__ import annotations

import fnmatch
from typing import Any

from .generated import Resolver

# API operation -> IAM action where the names differ (service prefix = botocore service name).
ACTION = {
    "s3:HeadObject": ["s3:GetObject"],
    "s3:HeadBucket": ["s3:ListBucket"],
    "s3:ListObjectsV2": ["s3:ListBucket"],
    "s3:ListObjects": ["s3:ListBucket"],
    "s3:ListObjectVersions": ["s3:ListBucketVersions"],
    "s3:CreateMultipartUpload": ["s3:PutObject"],
    "s3:UploadPart": ["s3:PutObject"],
    "s3:CompleteMultipartUpload": ["s3:PutObject"],
    "s3:AbortMultipartUpload": ["s3:AbortMultipartUpload"],
    "s3:DeleteObjects": ["s3:DeleteObject"],
    "s3:CopyObject": ["s3:GetObject", "s3:PutObject"],
    "lambda:Invoke": ["lambda:InvokeFunction"],
    "lambda:DeleteFunction": ["lambda:DeleteFunction"],
}
# Calls that need no permission.
NO_PERMISSION = {"sts:GetCallerIdentity"}
# Calls pt makes only against a local AWS (AWS_ENDPOINT_URL set): never with the deploy role.
LOCAL_ONLY = {
    "dynamodb:CreateTable": "ledger.ensure_table creates the table only in local mode (the StageStack owns it)",
    "dynamodb:UpdateContinuousBackups": "local provisioning of the ledger table (PITR)",
}
# Which request parameter names the resource, per service.
RESOURCE_PARAM = {"lambda": "FunctionName", "dynamodb": "TableName", "ecr": "repositoryName", "s3": "Bucket",
                  "sns": "TopicArn", "logs": "logGroupName", "codepipeline": ("name", "pipelineName"),
                  "sts": "RoleArn", "ssm": "Name"}


def as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def role_policies(template: dict, role_name: str, info: dict) -> list[dict]:
    """The statements (intrinsics resolved) of every policy attached to the role `role_name`."""
    resolve = Resolver(template, account=info["account"], region=info["region"])
    res = template["Resources"]
    lid = next((k for k, r in res.items() if r["Type"] == "AWS::IAM::Role"
                and r["Properties"].get("RoleName") == role_name), None)
    if lid is None:
        raise AssertionError(f"template has no role {role_name}")
    role = res[lid]["Properties"]
    docs = [p["PolicyDocument"] for p in role.get("Policies", [])]
    managed = {m["Ref"] for m in role.get("ManagedPolicyArns", []) if isinstance(m, dict) and "Ref" in m}
    for k, r in res.items():
        if r["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        attached = any(isinstance(x, dict) and x.get("Ref") == lid for x in r["Properties"].get("Roles", []))
        if attached or k in managed:
            docs.append(r["Properties"]["PolicyDocument"])
    out = []
    for d in docs:
        for s in d["Statement"]:
            s = resolve(s)
            out.append({"Effect": s.get("Effect", "Allow"), "Action": as_list(s.get("Action", [])),
                        "Resource": [str(x) for x in as_list(s.get("Resource", []))], "Sid": s.get("Sid")})
    return out


def wildcard_actions(statements: list[dict]) -> list[str]:
    return [a for s in statements for a in s["Action"] if a == "*" or a.endswith(":*")]


def _names(call: dict) -> list[str]:
    keys = RESOURCE_PARAM.get(call["service"], ())
    out = []
    for key in as_list(keys):
        v = call["resources"].get(key)
        if not isinstance(v, str) or not v:
            continue
        if call["service"] == "lambda":
            v = v.split("function:", 1)[-1].split(":", 1)[0]
        elif call["service"] == "sns":
            v = v.rsplit(":", 1)[-1]
        elif call["service"] == "sts":
            v = v.rsplit("/", 1)[-1]
        out.append(v)
    return out


def allowed(statements: list[dict], action: str, names: list[str]) -> bool:
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in s["Action"]):
            continue
        if "*" in s["Resource"] or not names:
            return True
        if all(any(n in r for r in s["Resource"]) for n in names):
            return True
    return False


def iam_actions(call: dict) -> list[str]:
    op = f"{call['service']}:{call['operation']}"
    if call["operation"] == "TransactWriteItems":
        kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                 "ConditionCheck": "ConditionCheckItem"}
        return sorted({f"dynamodb:{kinds[i['operation']]}" for i in call.get("items", [])})
    return ACTION.get(op, [op])


def check_calls(calls: list[dict], *, deploy: list[dict], caller: list[dict],
                local_only: dict[str, str]) -> list[str]:
    """Problems (empty = every call allowed). `caller` is the role that assumes the deploy role
    (CodeBuild's or GitHub's): it makes the sts:AssumeRole call, the deploy role all others."""
    problems = [f"wildcard action {a} in the deploy role" for a in wildcard_actions(deploy)]
    problems += [f"wildcard action {a} in the caller role" for a in wildcard_actions(caller)]
    seen = set()
    for call in calls:
        op = f"{call['service']}:{call['operation']}"
        if op in NO_PERMISSION or op in local_only:
            continue
        policy = caller if op == "sts:AssumeRole" else deploy
        for action in iam_actions(call):
            key = (action, tuple(_names(call)))
            if key in seen:
                continue
            seen.add(key)
            if not allowed(policy, action, _names(call)):
                who = f", by `pt {' '.join(call['argv'])}`" if call.get("argv") else ""
                problems.append(f"{op} ({action} on {', '.join(_names(call)) or 'no named resource'}{who}) "
                                "is not allowed by the synthesized role policy")
    return problems
