"""The Lambda Runtime API served by pt, driven over HTTP the way a runtime client drives it."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline_tools.images.lambda_runtime import PREFIX, RuntimeApi, _parse_error


def _call(api: RuntimeApi, method: str, path: str, body: dict | None = None, headers: dict | None = None,
          timeout: float = 10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{api.address}{PREFIX}{path}", data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def api():
    with RuntimeApi(clock=lambda: 1_000.0) as a:
        yield a


def test_next_delivers_event_with_lambda_headers_and_response_completes(api):
    inv = api.submit(b'{"x": 1}', timeout=3, function_arn="arn:aws:lambda:us-east-1:1:function:f")
    status, headers, body = _call(api, "GET", "/invocation/next")
    assert status == 200
    assert json.loads(body) == {"x": 1}
    assert headers["Lambda-Runtime-Aws-Request-Id"] == inv.request_id
    assert headers["Lambda-Runtime-Deadline-Ms"] == str(1_003_000)  # clock 1000 s + timeout 3 s
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:f")
    assert inv.delivered.is_set() and not inv.done.is_set()

    status, _, _ = _call(api, "POST", f"/invocation/{inv.request_id}/response", {"ok": True})
    assert status == 202
    assert inv.done.is_set() and inv.outcome == "response" and json.loads(inv.body) == {"ok": True}
    # a second answer for the same request is refused, like Lambda does
    status, _, body = _call(api, "POST", f"/invocation/{inv.request_id}/response", {"again": True})
    assert status == 400 and b"InvalidRequestID" in body


def test_error_and_init_error_are_parsed_like_lambda(api):
    inv = api.submit(b"{}", timeout=3, function_arn="arn")
    _call(api, "GET", "/invocation/next")
    err = {"errorMessage": "bad input", "errorType": "ValueError", "stackTrace": ["  File app.py, line 3"]}
    status, _, _ = _call(api, "POST", f"/invocation/{inv.request_id}/error", err,
                         {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
    assert status == 202 and inv.outcome == "error"
    assert _parse_error(inv.body, inv.error_type) == err

    init = {"errorMessage": "no module app", "errorType": "Runtime.ImportModuleError"}
    status, _, _ = _call(api, "POST", "/init/error", init)
    assert status == 202 and api.init_error_event.is_set()
    assert api.init_error == init


def test_next_blocks_until_an_event_is_submitted(api):
    got: list = []
    t = threading.Thread(target=lambda: got.append(_call(api, "GET", "/invocation/next")))
    t.start()
    assert api.first_poll.wait(5), "the runtime's first poll was not seen"
    assert not got  # still waiting: no event yet
    inv = api.submit(b'"late"', timeout=1, function_arn="arn")
    t.join(5)
    assert got and got[0][0] == 200 and got[0][2] == b'"late"'
    assert inv.delivered.is_set()


def test_unknown_paths_and_request_ids(api):
    assert _call(api, "GET", "/invocation/other")[0] == 404
    assert _call(api, "POST", "/invocation/nope/response", {})[0] == 400
    assert _call(api, "POST", "/something", {})[0] == 404


def test_parse_error_accepts_non_json_bodies():
    assert _parse_error(b"Traceback: boom", "Unhandled") == {"errorMessage": "Traceback: boom",
                                                            "errorType": "Unhandled"}
    assert _parse_error(b'["x"]', None)["errorType"] == "Unhandled"


def test_invoke_remote_reports_like_local(tmp_path):
    """`pt invoke FUNCTION` without --local calls Lambda's Invoke on the live alias (moto cannot
    invoke image functions, so the responses here are shaped like the AWS API reference)."""
    import base64
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    from pipeline_tools.core import config
    from pipeline_tools.images.lambda_runtime import invoke_remote

    cfg = config.load(Path(__file__).resolve().parents[2] / "examples" / "iris" / "pipeline.yml")
    lc = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")

    def body(data: bytes) -> StreamingBody:
        return StreamingBody(io.BytesIO(data), len(data))

    err = b'{"errorMessage": "bad", "errorType": "ValueError", "stackTrace": ["  File app.py"]}'
    with Stubber(lc) as stub:
        expected = {"FunctionName": "iris-prod-predict", "Qualifier": "live", "Payload": b'{"a": 1}',
                    "InvocationType": "RequestResponse", "LogType": "Tail"}
        stub.add_response("invoke", {"StatusCode": 200, "Payload": body(b'{"class": "setosa"}'),
                                     "LogResult": base64.b64encode(b"START\nhello\nEND\n").decode(),
                                     "ExecutedVersion": "7"}, expected)
        stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(err),
                                     "ExecutedVersion": "7"}, expected)
        ok = invoke_remote(cfg, "prod", "predict", b'{"a": 1}', lambda_client=lc)
        bad = invoke_remote(cfg, "prod", "predict", b'{"a": 1}', lambda_client=lc)
    assert ok.ok and ok.payload == {"class": "setosa"} and "hello" in ok.logs and ok.version == "7"
    assert not bad.ok and bad.status == "error"
    assert bad.error == {"errorMessage": "bad", "errorType": "ValueError", "stackTrace": ["  File app.py"]}
