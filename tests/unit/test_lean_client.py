"""core/aws.py lean_client: botocore clients on one session per plain factory, left in the
factory's cache; factories with an assumed role keep their boto3 session; a bad profile is one
clear usage error. No request is made by building a client."""

from __future__ import annotations

import pytest

from pipeline_tools.core.aws import AwsFactory, lean_client, lean_session
from pipeline_tools.core.errors import UsageError


@pytest.fixture(autouse=True)
def creds(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_clients_share_one_session_and_fill_the_factory_cache():
    f = AwsFactory(region="eu-west-1", endpoint="http://127.0.0.1:9")
    ddb = lean_client(f, "dynamodb")
    sts = lean_client(f, "sts")
    assert f.client("dynamodb") is ddb and f.client("sts") is sts  # what the ledger / caller_arn get
    assert ddb.meta.region_name == "eu-west-1" and ddb.meta.endpoint_url == "http://127.0.0.1:9"
    assert f._session is None  # no boto3 session was built
    sess = lean_session(f)
    assert sess is lean_session(f)
    assert sess.get_credentials().access_key == sts._request_signer._credentials.access_key == "testing"
    # the factory's retry and user-agent settings, plus a caller's config merged in
    from botocore.config import Config

    s3 = lean_client(f, "s3", Config(max_pool_connections=33))
    assert s3.meta.config.max_pool_connections == 33
    assert s3.meta.config.retries["total_max_attempts"] == f.max_attempts
    assert "pipeline-tools/" in s3.meta.config.user_agent_extra
    assert f._clients.get(("s3", None)) is not s3  # a client with its own config is not the cached one


def test_the_lean_loader_still_refuses_an_unknown_service():
    from botocore.exceptions import UnknownServiceError

    f = AwsFactory(region="us-east-1")
    with pytest.raises(UnknownServiceError):
        lean_client(f, "no-such-service")


def test_a_missing_profile_is_a_usage_error():
    f = AwsFactory(region="us-east-1", profile="pt-no-such-profile")
    with pytest.raises(UsageError, match="pt-no-such-profile") as e:
        lean_client(f, "s3")
    assert "aws configure list-profiles" in e.value.hint


def test_a_factory_with_a_role_keeps_its_own_session():
    class Role:
        arn, account, session_name = "arn:aws:iam::222222222222:role/deploy", "222222222222", "pt"

    source = AwsFactory(region="us-east-1", endpoint="http://127.0.0.1:9")
    f = AwsFactory(region="us-east-1", endpoint="http://127.0.0.1:9", role=Role(), source=source)
    assert lean_session(f) is None
    sentinel = object()
    f._clients[("sts", None)] = sentinel  # factory.client's cache is what it hands back
    assert lean_client(f, "sts") is sentinel
