"""Translation of AWS/docker errors into one-line PtErrors; the client factory's settings."""

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from pipeline_tools.core.aws import AwsFactory, client_error_code, is_local
from pipeline_tools.core.errors import AwsError, DockerError, translate


def client_error(code, msg="m", op="UpdateFunctionCode"):
    return ClientError({"Error": {"Code": code, "Message": msg}}, op)


@pytest.mark.parametrize("code,hint_word", [("ExpiredToken", "expired"), ("AccessDeniedException", "permission"),
                                            ("ThrottlingException", "throttling"),
                                            ("ResourceNotFoundException", "StageStack")])
def test_client_errors_name_the_call_and_code(code, hint_word):
    err = translate(client_error(code, "details here"))
    assert isinstance(err, AwsError)
    assert err.message == f"AWS UpdateFunctionCode failed: {code}: details here"
    assert hint_word in err.hint
    assert err.exit_code == 1 and err.code == code


def test_credential_region_and_endpoint_errors():
    assert translate(NoCredentialsError()).exit_code == 2
    assert "region" in translate(NoRegionError()).message
    err = translate(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert err.message.startswith("cannot reach AWS endpoint")


def test_docker_errors():
    import docker.errors

    err = translate(docker.errors.DockerException("Error while fetching server API version: "
                                                  "('Connection aborted.', FileNotFoundError(2))"))
    assert isinstance(err, DockerError) and err.message.startswith("cannot reach Docker at ")
    assert "DOCKER_HOST" in err.hint
    assert translate(docker.errors.DockerException("bad thing")).message == "docker: bad thing"


def test_unknown_exceptions_are_not_translated():
    assert translate(RuntimeError("x")) is None
    assert client_error_code(client_error("Foo")) == "Foo" and client_error_code(ValueError()) is None


def test_factory_uses_endpoint_retries_user_agent_and_caches(monkeypatch):
    from pipeline_tools import __version__

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert is_local()
    f = AwsFactory(region="eu-west-1", max_attempts=3)
    c = f.client("lambda")
    assert c is f.client("lambda")
    assert c.meta.endpoint_url == "http://127.0.0.1:4566"
    assert c.meta.region_name == "eu-west-1"
    cfg = c.meta.config
    assert cfg.retries == {"mode": "adaptive", "total_max_attempts": 3}
    assert f"pipeline-tools/{__version__}" in cfg.user_agent_extra
    assert f.client("lambda", region="us-west-2").meta.region_name == "us-west-2"


def test_factory_without_region_is_a_usage_error(monkeypatch):
    for k in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(AwsError) as e:
        AwsFactory().client("sts")
    assert e.value.exit_code == 2 and "region" in e.value.message


def test_caller_arn_against_moto_server(aws):
    assert aws.caller_arn().startswith("arn:aws:sts::123456789012:")


def test_factories_share_botocore_data_but_not_sessions(monkeypatch):
    """A second factory (another region, a stage role) reuses the parsed service data (one
    loader per data path) and keeps its own session (credentials); no boto3 for non-S3 clients."""
    import sys

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    a, b = AwsFactory(region="eu-west-1"), AwsFactory(region="us-west-2")
    ca, cb = a.client("dynamodb"), b.client("dynamodb")
    assert ca.meta.region_name == "eu-west-1" and cb.meta.region_name == "us-west-2"
    assert a._core is not b._core
    assert a._core.get_component("data_loader") is b._core.get_component("data_loader")
    assert a._session is None and b._session is None  # botocore clients: no boto3 Session built
    s3 = a.client("s3")
    assert hasattr(s3, "upload_fileobj") and "boto3" in sys.modules  # S3: boto3's managed transfers
    assert a.session._session is a._core  # the boto3 Session wraps the factory's botocore session
