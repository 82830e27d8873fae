"""The shared ledger in the tooling account (`accounts.tooling` in pipeline.yml; docs/accounts.md).

LedgerStack `<project>-ledger`, in the tooling account and `accounts.region`:
  - the ledger table `<project>-ledger` (keys as pipeline_tools/release/ledger.py), which no StageStack
    creates any more once a tooling account is configured;
  - the role `<project>-ledger` (unless `accounts.ledger_role` names another) that `pt` assumes
    when it runs in a stage account: trusted for the stages' deploy and GitHub roles, allowed
    only the ledger calls on that table.

Helpers the StageStack's deploy role uses (pure functions of the config):
  - `ledger_statements(stack)`: how the deploy role reaches the ledger (the local table; or the
    tooling table directly when the stage lives in the tooling account; or AssumeRole on the
    ledger role), plus AssumeRole on the source stage's deploy role when that stage is in another
    account (`pt promote` reads the source's alarms with the source's role);
    (and reads its artifacts bucket: `pt artifacts copy --from-stage S --to-stage T` copies server-side);
  - `add_cross_account_trust(role, stack)`: who in other accounts may assume a stage's deploy role:
    the deploy roles of stages that promote from it, and the CI roles of the tooling account; and
    a bucket policy letting those promoting deploy roles read this stage's artifacts.
Without `accounts:` nothing here changes a template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import acknowledge_wildcards, arn
from pipeline_tools.infra.stacks.github_oidc_stack import github_role_name
from pipeline_tools.release.ledger import PK, SK

if TYPE_CHECKING:
    from pipeline_tools.infra.stacks.stage_stack import StageStack

SOURCE_ARTIFACT_ACTIONS = ["s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes",
                           "s3:GetObjectTagging"]
LEDGER_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                  "dynamodb:Query", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable"]


def ledger_table(scope: Construct, cfg: Config, *, local: bool, removal: RemovalPolicy) -> dynamodb.Table:
    return dynamodb.Table(
        scope, "Ledger",
        table_name=cfg.ledger_table(),
        partition_key=dynamodb.Attribute(name=PK, type=dynamodb.AttributeType.STRING),
        sort_key=dynamodb.Attribute(name=SK, type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        deletion_protection=not local,
        removal_policy=removal,
    )


def _partition(scope: Construct) -> str:
    return Stack.of(scope).partition


def _role(scope: Construct, account: str, name: str) -> str:
    return f"arn:{_partition(scope)}:iam::{account}:role/{name}"


def ledger_role_arn(scope: Construct, cfg: Config) -> str:
    assert cfg.accounts is not None
    return cfg.accounts.ledger_role or _role(scope, cfg.accounts.tooling, names.ledger_role(cfg.project))


def _ledger_region(cfg: Config) -> str:
    return (cfg.accounts.region if cfg.accounts else None) or cfg.region


class LedgerStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, local: bool = False, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        assert cfg.accounts is not None
        removal = RemovalPolicy.DESTROY if local else RemovalPolicy.RETAIN
        self.table = ledger_table(self, cfg, local=local, removal=removal)
        self.role: iam.Role | None = None
        if cfg.accounts.ledger_role:
            return  # the user brings the role; its trust and policy are theirs
        outside = {}
        for stage, st in cfg.stages.items():
            if st.account != cfg.accounts.tooling:
                outside.setdefault(st.account, []).append(stage)
        if not outside:
            return  # every stage is in the tooling account: deploy roles reach the table directly
        principals = [_role(self, a, names.deploy_role(cfg.project, s)) for a, ss in outside.items() for s in ss]
        principals += [_role(self, a, github_role_name(cfg.project, s)) for a, ss in outside.items() for s in ss]
        accounts = list(outside)
        self.role = iam.Role(
            self, "Role", role_name=names.ledger_role(cfg.project),
            # Account principals plus a PrincipalArn condition: the stage roles may not exist yet
            # when this stack is deployed (a role ARN principal must exist).
            assumed_by=iam.AccountPrincipal(accounts[0]).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": principals}}),
            description=f"assumed by pt from the stage accounts to read and write the {cfg.project} ledger")
        if len(accounts) > 1:
            self.role.assume_role_policy.add_statements(iam.PolicyStatement(  # type: ignore[union-attr]
                actions=["sts:AssumeRole"], principals=[iam.AccountPrincipal(a) for a in accounts[1:]],
                conditions={"ArnEquals": {"aws:PrincipalArn": principals}}))
        self.role.add_to_policy(iam.PolicyStatement(sid="Ledger", actions=LEDGER_ACTIONS,
                                                    resources=[self.table.table_arn]))


def ledger_statements(st: StageStack) -> list[iam.PolicyStatement]:
    cfg, stage = st.cfg, st.stage_name
    account = cfg.stages[stage].account
    if cfg.accounts is None:
        return [iam.PolicyStatement(sid="Ledger", actions=LEDGER_ACTIONS,
                                    resources=[arn(st, "dynamodb", f"table/{cfg.ledger_table()}")])]
    out = []
    if account == cfg.accounts.tooling:
        out.append(iam.PolicyStatement(sid="Ledger", actions=LEDGER_ACTIONS, resources=[
            f"arn:{st.partition}:dynamodb:{_ledger_region(cfg)}:{account}:table/{cfg.ledger_table()}"]))
    else:
        out.append(iam.PolicyStatement(sid="LedgerRole", actions=["sts:AssumeRole"],
                                       resources=[ledger_role_arn(st, cfg)]))
    src = cfg.stages[stage].promote_from
    if src and cfg.stages[src].account != account:
        source = cfg.stages[src]
        out.append(iam.PolicyStatement(sid="SourceStageRole", actions=["sts:AssumeRole"], resources=[
            source.role or _role(st, source.account, names.deploy_role(cfg.project, src))]))
        # `pt artifacts copy --to-stage` copies server-side with this role: it reads the source bucket
        # (which grants it in its bucket policy, see `add_cross_account_trust`).
        bucket = f"arn:{st.partition}:s3:::{cfg.bucket(src)}"
        out.append(iam.PolicyStatement(sid="SourceArtifacts", actions=SOURCE_ARTIFACT_ACTIONS,
                                       resources=[bucket, f"{bucket}/*"]))
        acknowledge_wildcards(st, "objects of the promote_from stage's artifacts bucket, read by `pt artifacts "
                                  "copy --to-stage` (server-side copy into this stage's bucket)",
                              [f"Resource::arn:<AWS::Partition>:s3:::{cfg.bucket(src)}/*"])
    return out


def add_cross_account_trust(role: iam.Role, st: StageStack) -> None:
    from pipeline_tools.infra.stacks.stage_stack import codebuild_role_name

    cfg, stage = st.cfg, st.stage_name
    if cfg.accounts is None:
        return
    account = cfg.stages[stage].account
    allowed: dict[str, list[str]] = {}
    for other, ost in cfg.stages.items():
        if ost.promote_from == stage and ost.account != account:
            allowed.setdefault(ost.account, []).append(_role(st, ost.account, names.deploy_role(cfg.project, other)))
    tooling = cfg.accounts.tooling
    if tooling != account:
        readers = [stage] + [o for o, ost in cfg.stages.items() if ost.promote_from == stage]
        allowed.setdefault(tooling, []).extend(
            [_role(st, tooling, github_role_name(cfg.project, s)) for s in readers]
            + [_role(st, tooling, codebuild_role_name(cfg.project, s)) for s in readers])
    readers = {other: ost.account for other, ost in cfg.stages.items()
               if ost.promote_from == stage and ost.account != account}
    if readers:  # the promoting stages' deploy roles copy this stage's artifacts server-side
        bucket = st.artifacts.bucket
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="PromoteRead", actions=SOURCE_ARTIFACT_ACTIONS,
            principals=[iam.AccountPrincipal(a) for a in dict.fromkeys(readers.values())],
            resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
            conditions={"ArnEquals": {"aws:PrincipalArn": [
                _role(st, a, names.deploy_role(cfg.project, other)) for other, a in readers.items()]}}))
    if not allowed:
        return
    role.assume_role_policy.add_statements(iam.PolicyStatement(  # type: ignore[union-attr]
        sid="OtherAccounts", actions=["sts:AssumeRole"],
        principals=[iam.AccountPrincipal(a) for a in allowed],
        conditions={"ArnEquals": {"aws:PrincipalArn": [p for ps in allowed.values() for p in ps]}}))
