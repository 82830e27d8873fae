"""Retries live in one place: botocore's adaptive mode for throttling/5xx; ours only for conflicts."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline_tools.core.aws import AwsFactory
from pipeline_tools.targets.lambda_ops import retrying


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "UpdateAlias")


@pytest.mark.parametrize("code", ["ThrottlingException", "TooManyRequestsException", "ServiceException"])
def test_our_loop_does_not_retry_what_botocore_already_retried(code):
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        raise _error(code)

    with pytest.raises(ClientError):
        retrying(fn, sleeps.append)
    assert len(calls) == 1 and sleeps == []


def test_conflicts_are_retried_with_backoff():
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise _error("ResourceConflictException")
        return "ok"

    assert retrying(fn, sleeps.append) == "ok"
    assert len(calls) == 3 and sleeps == [0.2, 0.4]


def test_clients_use_botocore_adaptive_mode_once():
    cfg = AwsFactory(region="us-east-1", endpoint="http://127.0.0.1:1").client_config()
    assert cfg.retries["mode"] == "adaptive" and cfg.retries["total_max_attempts"] >= 1
