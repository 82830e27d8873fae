"""AWS's rules for the physical names pt derives (names.py) and for a few config values.

Pure functions: each returns None when AWS would accept the value, else one sentence saying what
is wrong with the limits as numbers. The limits are those of the service APIs (botocore models)
and the S3/Lambda user guides.
"""

from __future__ import annotations

import ipaddress
import re

REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-\d$"
_REGION_RE = re.compile(REGION_PATTERN)

# Lambda: "Defined runtime environment variables" that a function configuration cannot set.
LAMBDA_RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "TZ",
})
LAMBDA_ENV_MAX_BYTES = 4096
_ENV_KEY_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")

_LAMBDA_RE = re.compile(r"[A-Za-z0-9_-]+")
_ECR_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_LOG_GROUP_RE = re.compile(r"[._/#A-Za-z0-9-]+")
_ROLE_RE = re.compile(r"[\w+=,.@-]+", re.ASCII)
_TOPIC_RE = re.compile(r"[A-Za-z0-9_-]+")
_STACK_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_ENDPOINT_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?")

_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def clip(value: object, limit: int = 100, count: bool = True) -> str:
    """repr() of a value for a message, shortened so a huge value is never echoed back whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit - 1]}…'" + (f" ({len(str(value))} characters)" if count else "")


def short(name: str, limit: int = 60) -> str:
    """A key (stage, function, alarm) named in a message, shortened like clip() but unquoted."""
    return name if len(name) <= limit else f"{name[:limit]}… ({len(name)} characters)"


def _length(kind: str, name: str, lo: int, hi: int) -> str | None:
    n = len(name)
    if n < lo or n > hi:
        allowed = f"at most {hi}" if lo <= 1 else f"{lo} to {hi}"
        return f"{kind} {clip(name, count=False)} is {n} characters; AWS allows {allowed}"
    return None


def lambda_function(name: str) -> str | None:
    return _length("Lambda function name", name, 1, 64) or (
        None if _LAMBDA_RE.fullmatch(name) else
        f"Lambda function name {clip(name)} may contain only letters, digits, '-' and '_'")


def ecr_repository(name: str) -> str | None:
    return _length("ECR repository name", name, 2, 256) or (
        None if _ECR_RE.fullmatch(name) else
        f"ECR repository name {clip(name)} must be lowercase letters and digits, separated by "
        "single '.', '_', '__' or dashes (optionally in '/' segments)")


def s3_bucket(name: str) -> str | None:
    kind = "S3 bucket name"
    if problem := _length(kind, name, 3, 63):
        return problem
    if not _BUCKET_RE.fullmatch(name):
        return (f"{kind} {clip(name)} must be lowercase letters, digits, '.' and '-', "
                "beginning and ending with a letter or digit")
    if ".." in name:
        return f"{kind} {clip(name)} must not contain two adjacent periods"
    try:
        ipaddress.IPv4Address(name)
        return f"{kind} {clip(name)} must not be formatted as an IP address"
    except ValueError:
        pass
    for p in _BUCKET_PREFIXES:
        if name.startswith(p):
            return f"{kind} {clip(name)} must not start with '{p}' (reserved by AWS)"
    for s in _BUCKET_SUFFIXES:
        if name.endswith(s):
            return f"{kind} {clip(name)} must not end with '{s}' (reserved by AWS)"
    return None


def log_group(name: str) -> str | None:
    return _length("log group name", name, 1, 512) or (
        None if _LOG_GROUP_RE.fullmatch(name) else
        f"log group name {clip(name)} may contain only letters, digits and . - _ / #")


def alarm(name: str) -> str | None:
    if problem := _length("alarm name", name, 1, 255):
        return problem
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"alarm name {clip(name)} must not contain control characters"
    return None


def iam_role(name: str) -> str | None:
    return _length("IAM role name", name, 1, 64) or (
        None if _ROLE_RE.fullmatch(name) else
        f"IAM role name {clip(name)} may contain only letters, digits and + = , . @ _ -")


_ROLE_ARN_RE = re.compile(r"arn:aws[a-zA-Z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}", re.ASCII)


def iam_role_arn(value: str) -> str | None:
    if _ROLE_ARN_RE.fullmatch(value):
        return None
    return (f"must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME "
            f"(a 12-digit account, a role name of at most 64 characters) (got {clip(value)})")


def sns_topic(name: str) -> str | None:
    return _length("SNS topic name", name, 1, 256) or (
        None if _TOPIC_RE.fullmatch(name) else
        f"SNS topic name {clip(name)} may contain only letters, digits, '-' and '_'")


def stack(name: str) -> str | None:
    return _length("CloudFormation stack name", name, 1, 128) or (
        None if _STACK_RE.fullmatch(name) else
        f"CloudFormation stack name {clip(name)} must start with a letter and contain only letters, "
        "digits and '-'")


def sagemaker_endpoint(name: str) -> str | None:
    return _length("SageMaker endpoint name", name, 1, 63) or (
        None if _ENDPOINT_RE.fullmatch(name) else
        f"SageMaker endpoint name {clip(name)} may contain only letters, digits and '-', "
        "beginning and ending with a letter or digit")


def region(name: str) -> str | None:
    if _REGION_RE.fullmatch(name):
        return None
    return f"{clip(name)} is not an AWS region name (like us-east-1 or eu-central-1)"


def lambda_env_key(key: str) -> str | None:
    if key in LAMBDA_RESERVED_ENV:
        return f"{clip(key)} is reserved by Lambda (the runtime sets it); use another name"
    if not _ENV_KEY_RE.fullmatch(key):
        return (f"environment key {clip(key)} must start with a letter and have at least 2 characters: "
                "letters, digits and '_'")
    return None


def lambda_env_size(env: dict[str, str]) -> str | None:
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in env.items())
    if size > LAMBDA_ENV_MAX_BYTES:
        return f"environment is {size} bytes; Lambda allows at most {LAMBDA_ENV_MAX_BYTES} bytes (keys + values)"
    return None


def registry_host(value: str) -> str | None:
    """A registry given as host[:port] (pt adds https:// and /v2/ itself)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if m:
        bare = value[m.end():].rstrip("/")
        return f"must be a registry host[:port] without a scheme (got {clip(value)}); write {clip(bare)}"
    if not _HOST_RE.fullmatch(value):
        return f"must be a registry host[:port], e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com (got {clip(value)})"
    return None
