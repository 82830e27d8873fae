"""Small constructs the stacks share: a hardened S3 bucket, the nag acknowledgment helper,
ARN builders for names from the naming contract."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct


def acknowledge(scope: IConstruct, **reasons: str) -> None:
    """Acknowledge cdk-nag rules on `scope` (and its children), each with its reason.

    Keys are rule ids with `_` for `-`: acknowledge(x, AwsSolutions_IAM5="why").
    """
    from aws_cdk import Acknowledgment

    for rule, reason in reasons.items():
        Validations.of(scope).acknowledge(Acknowledgment(id=rule.replace("_", "-"), reason=reason))


def acknowledge_wildcards(scope: IConstruct, reason: str, findings: list[str]) -> None:
    """Acknowledge cdk-nag AwsSolutions-IAM5 findings one wildcard at a time (cdk-nag 3 reports
    each wildcard as `AwsSolutions-IAM5[Resource::…]` / `[Action::…]`; a bare rule id does not
    cover them), so a new wildcard still fails the check until someone gives its reason."""
    from aws_cdk import Acknowledgment

    for finding in findings:
        Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))


def ref(construct: IConstruct, attr: str | None = "Arn") -> str:
    """How cdk-nag prints a token of `construct`'s resource: <LogicalId.Attr>, or <LogicalId> for a Ref."""
    cfn = construct.node.default_child or construct
    logical_id = Stack.of(construct).get_logical_id(cfn)  # type: ignore[arg-type]
    return f"<{logical_id}.{attr}>" if attr else f"<{logical_id}>"


def nag_arn(stack: Stack, service: str, resource: str, *, region: bool = True) -> str:
    """An `arn()` as cdk-nag prints it (partition as <AWS::Partition>)."""
    return f"arn:<AWS::Partition>:{service}:{stack.region if region else ''}:{stack.account}:{resource}"


class SecureBucket(Construct):
    """A private, versioned, encrypted, SSL-only bucket whose server access logs go to a
    sibling log bucket. `kms=True` encrypts with a customer-managed key (rotated)."""

    def __init__(self, scope: Construct, id: str, *, bucket_name: str | None = None, kms_key: bool = False,
                 noncurrent_days: int = 90, removal_policy: RemovalPolicy = RemovalPolicy.RETAIN) -> None:
        super().__init__(scope, id)
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=removal_policy,
        )
        acknowledge(self.access_logs,
                    AwsSolutions_S1="this is the server-access-log bucket; logging it to itself would loop")
        self.key: kms.Key | None = None
        if kms_key:
            self.key = kms.Key(self, "Key", enable_key_rotation=True, removal_policy=removal_policy,
                               description=f"encrypts {bucket_name or id}")
        self.bucket = s3.Bucket(
            self, "Bucket",
            bucket_name=bucket_name,
            versioned=True,
            encryption=s3.BucketEncryption.KMS if self.key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key,
            bucket_key_enabled=bool(self.key),
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="s3-access/",
            lifecycle_rules=[s3.LifecycleRule(
                noncurrent_version_expiration=Duration.days(noncurrent_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
            )],
            removal_policy=removal_policy,
        )


def arn(stack: Stack, service: str, resource: str, *, region: bool = True) -> str:
    """arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE for a resource known only by its name
    (names come from the naming contract, so policies never depend on another resource's token)."""
    return f"arn:{stack.partition}:{service}:{stack.region if region else ''}:{stack.account}:{resource}"


def logical(name: str) -> str:
    """'batch-score' -> 'BatchScore' (CloudFormation logical ids are alphanumeric)."""
    import re

    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)
