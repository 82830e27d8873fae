"""User-facing errors: one clear line (what, where), a hint (how to fix), an exit code.

Exit codes (ARCHITECTURE.md): 0 ok; 1 failure; 2 usage/config error; 3 gate WAIT; 4 locked.
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_WAIT = 3
EXIT_LOCKED = 4


class PtError(Exception):
    """An error a user can act on. Never shown with a traceback (unless PT_DEBUG=1)."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def lines(self) -> list[str]:
        return [self.message]

    def to_dict(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": "\n".join(self.lines()),
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class UsageError(PtError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """One or more problems in pipeline.yml, each as `file:line: path: message`."""

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = problems
        super().__init__(problems[0] if problems else "invalid configuration", hint)

    def lines(self) -> list[str]:
        return list(self.problems)


class NotFoundError(PtError):
    """Something the command needs does not exist (stack not deployed, function missing, …)."""


class AwsError(PtError):
    """An AWS API call failed; the message names the call and the AWS error code."""

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None,
                 operation: str | None = None, exit_code: int | None = None):
        super().__init__(message, hint, exit_code=exit_code)
        self.code = code
        self.operation = operation


class DockerError(PtError):
    pass


class DeployFailed(PtError):
    pass


class GateWait(PtError):
    exit_code = EXIT_WAIT


class LockedError(PtError):
    exit_code = EXIT_LOCKED


# --- translation of third-party exceptions -------------------------------------------------

_AWS_HINTS = {
    "ExpiredToken": "your AWS session expired: refresh credentials (aws sso login, or re-run OIDC step)",
    "ExpiredTokenException": "your AWS session expired: refresh credentials (aws sso login, or re-run OIDC step)",
    "RequestExpired": "your AWS session expired or the clock is skewed: refresh credentials",
    "InvalidClientTokenId": "the AWS access key is not valid: check AWS_PROFILE / credentials",
    "UnrecognizedClientException": "the AWS access key is not valid: check AWS_PROFILE / credentials",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key: check credentials",
    "AccessDenied": "the role lacks this permission: deploy the StageStack's deploy role or use it",
    "AccessDeniedException": "the role lacks this permission: deploy the StageStack's deploy role or use it",
    "ThrottlingException": "AWS is throttling this account: retry later or lower concurrency",
    "TooManyRequestsException": "AWS is throttling this account: retry later or lower concurrency",
    "ResourceNotFoundException": "create it first (deploy the StageStack with `npx cdk deploy`)",
    "NoSuchBucket": "create the bucket first (deploy the StageStack with `npx cdk deploy`)",
    "RepositoryNotFoundException": "create the repository first (deploy the StageStack with `npx cdk deploy`)",
}


def translate(exc: BaseException) -> PtError | None:
    """Map a botocore/docker/OS exception to a PtError, or None if it is not one we know.

    Imports nothing heavy: a botocore exception can only exist if botocore is loaded.
    """
    if isinstance(exc, PtError):
        return exc
    bexc = sys.modules.get("botocore.exceptions")
    if bexc is not None:
        if isinstance(exc, bexc.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            msg = str(err.get("Message", "")).strip()
            op = getattr(exc, "operation_name", "call")
            text = f"AWS {op} failed: {code}" + (f": {msg}" if msg else "")
            return AwsError(text, _AWS_HINTS.get(code), code=code, operation=op)
        if isinstance(exc, bexc.NoCredentialsError):
            return AwsError(
                "no AWS credentials found",
                "set AWS_PROFILE, run `aws sso login`, or use OIDC in CI "
                "(local mode: source the env file from `pt local up`)",
                exit_code=EXIT_USAGE,
            )
        if isinstance(exc, bexc.NoRegionError):
            return AwsError("no AWS region configured",
                            "set `region:` in pipeline.yml, pass --region or set AWS_REGION",
                            exit_code=EXIT_USAGE)
        if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError):
            return AwsError(f"cannot reach AWS endpoint: {exc}",
                            "check network access, or AWS_ENDPOINT_URL if you use a local stack")
        if isinstance(exc, bexc.ProfileNotFound):
            return AwsError(str(exc), "list profiles with `aws configure list-profiles`",
                            exit_code=EXIT_USAGE)
        if isinstance(exc, bexc.BotoCoreError):
            return AwsError(f"AWS client error: {exc}")
    dexc = sys.modules.get("docker.errors")
    if dexc is not None and isinstance(exc, dexc.DockerException):
        text = str(exc)
        if "Connection" in text or "connect" in text.lower() or "FileNotFoundError" in text:
            import os

            host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            return DockerError(f"cannot reach Docker at {host}",
                               "start Docker or set DOCKER_HOST (tests: bash scripts/services.sh)")
        return DockerError(f"docker: {text}")
    if isinstance(exc, OSError) and exc.filename is not None:
        return os_error(exc)
    if isinstance(exc, EOFError):
        return PtError(f"unexpected end of data: {exc or 'the input ended early'}",
                       "a file pt read was cut short (a truncated .gz or an interrupted download): "
                       "re-create or re-download it")
    return None


def os_error(exc: OSError) -> PtError:
    """A file-system error as one line naming the path and what is wrong with it."""
    import errno

    path = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    what = {
        errno.ENOENT: ("no such file or directory (or its parent directory is missing)",
                       "check the path; create missing directories first"),
        errno.ENOTDIR: ("a parent of this path is a file, not a directory", "check the path"),
        errno.EISDIR: ("is a directory, expected a file", "give a file path"),
        errno.EACCES: ("permission denied", "check the file's permissions"),
        errno.EPERM: ("operation not permitted", "check the file's permissions"),
        errno.ENOSPC: ("no space left on device", "free disk space"),
        errno.EROFS: ("read-only file system", "write somewhere else"),
    }.get(exc.errno or 0, (exc.strerror or "cannot access", None))
    return PtError(f"{path}: {what[0]}", what[1])
