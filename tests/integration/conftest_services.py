"""Config and seeding for the service-ops tests (access, params, scenarios, service teardown)."""

from __future__ import annotations

import json
from pathlib import Path

SERVICES_CONFIG = """\
project: iris
region: us-east-1
images: {{model: {{context: .}}}}
functions: {{predict: {{image: model}}}}
targets:
  stepfunctions: {{flow: {{}}}}
  batch: {{score: {{image: model}}}}
stages:
  val: {{account: "123456789012", branch: val, gate: {{alarms: ["iris-val-*"]}}}}
  prod: {{account: "222222222222", branch: master, gate: {{alarms: ["iris-prod-*"]}}}}
services:
  scorer:
    function: predict
    state_machine: flow
    batch: [score]
    parameters: params.yml
    access: {{identity_pool_id: "us-east-1:12345678-1234-1234-1234-123456789012", user_pool_id: {pool}}}
{extra}"""


def write_services_config(tmp_path: Path, pool: str = "us-east-1_Nope1", extra: str = "") -> Path:
    p = tmp_path / "pipeline.yml"
    p.write_text(SERVICES_CONFIG.format(pool=pool, extra=extra))
    # the state machine's definition (targets.stepfunctions.flow.definition, default step-functions.json)
    (tmp_path / "step-functions.json").write_text(json.dumps(
        {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))
    return p


def _trust() -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": "cognito-identity.amazonaws.com"},
        "Action": "sts:AssumeRoleWithWebIdentity"}]})


def seed_access(aws, groups: dict[str, bool], service: str = "scorer", stage: str = "val",
                policy: bool = True) -> str:
    """A user pool with `groups` (name -> has a role), the access policy, the stage bucket. Returns the pool id."""
    idp = aws.client("cognito-idp")
    iam = aws.client("iam")
    pool = idp.create_user_pool(PoolName="users")["UserPool"]["Id"]
    for g, with_role in groups.items():
        kw = {}
        if with_role:
            kw["RoleArn"] = iam.create_role(RoleName=f"cognito-{g}", AssumeRolePolicyDocument=_trust())["Role"]["Arn"]
        idp.create_group(GroupName=g, UserPoolId=pool, **kw)
    if policy:
        iam.create_policy(PolicyName=f"iris-{stage}-{service}-access", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                    "Resource": f"arn:aws:s3:::iris-{service}-{stage}/*"}]}))
    aws.client("s3").create_bucket(Bucket=f"iris-{stage}-artifacts")
    return pool


def attached_policies(aws, role: str) -> list[str]:
    return [p["PolicyName"] for p in aws.client("iam").list_attached_role_policies(RoleName=role)["AttachedPolicies"]]


def access_record(aws, stage: str = "val") -> dict:
    body = aws.client("s3").get_object(Bucket=f"iris-{stage}-artifacts",
                                       Key="access/cognito_group_access.json")["Body"].read()
    return json.loads(body)
