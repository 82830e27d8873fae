"""`pt invoke --local`: real containers with awslambdaric talking to pt's Runtime API.

The test image is the Lambda-like local base (docker/base/lambda.Dockerfile: awslambdaric from
wheels) plus one file of handlers; it is tagged by the file's hash, so it is built once.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from pipeline_tools.images.lambda_runtime import invoke_image

pytestmark = pytest.mark.docker

HANDLERS = '''\
import time


def ok(event, context):
    print("hello from ok", event.get("name"))
    return {"echo": event, "function": context.function_name,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 30000}


def boom(event, context):
    raise ValueError("bad input: " + str(event.get("name")))


def slow(event, context):
    print("starting slow work")
    time.sleep(60)
    return "too late"


def hog(event, context):
    blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]  # 1 GiB, touched
    return len(blocks)
'''

CONFIG = '''\
project: invk
region: us-east-1
images:
  fn: {{context: ., dockerfile: Dockerfile}}
functions:
  ok: {{image: fn, handler: handlers.ok, timeout: 30, memory: 256}}
  boom: {{image: fn, handler: handlers.boom, timeout: 30}}
  slow: {{image: fn, handler: handlers.slow, timeout: {slow_timeout}}}
stages:
  dev: {{account: "111111111111", branch: main, gate: {{alarms: [], allow_no_alarms: true}}}}
'''


@pytest.fixture(scope="module")
def handler_image(docker_client, lambda_base_image) -> str:
    base = lambda_base_image
    # ENTRYPOINT as docker/model/Dockerfile sets it; `pt invoke` passes the handler as the command
    dockerfile = (f"FROM {base}\nCOPY handlers.py /var/task/handlers.py\n"
                  'ENTRYPOINT ["python3", "-m", "awslambdaric"]\n')
    tag = "pt-test/invoke:" + hashlib.sha256((dockerfile + HANDLERS).encode()).hexdigest()[:16]
    try:
        docker_client.images.get(tag)
        return tag
    except Exception:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("handlers.py", HANDLERS)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    docker_client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False)
    return tag


def _leftover_containers(docker_client, function: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"pt.invoke={function}"})


def test_handler_response_logs_and_report(docker_client, handler_image):
    res = invoke_image(docker_client, handler_image, b'{"name": "iris"}', function="t-ok", handler="handlers.ok",
                       timeout=30, memory=256)
    assert res.status == "ok", res.to_dict()
    assert res.payload == {"echo": {"name": "iris"}, "function": "t-ok", "remaining_ok": True}
    assert "hello from ok iris" in res.logs
    assert res.duration_ms is not None and 0 < res.duration_ms < 5000
    assert res.init_ms is not None and res.init_ms > 0
    assert res.report_line().startswith(f"REPORT RequestId: {res.request_id}\tDuration: ")
    assert "Memory Size: 256 MB" in res.report_line()
    assert not _leftover_containers(docker_client, "t-ok")


def test_missing_handler_is_an_init_error(docker_client, handler_image):
    res = invoke_image(docker_client, handler_image, b"{}", function="t-init", handler="handlers.nope",
                       timeout=30)
    assert res.status == "init_error"
    assert res.error["errorType"] == "Runtime.HandlerNotFound"
    assert "nope" in res.error["errorMessage"]
    assert not _leftover_containers(docker_client, "t-init")


def test_memory_limit_is_enforced_like_lambda(docker_client, handler_image):
    res = invoke_image(docker_client, handler_image, b"{}", function="t-hog", handler="handlers.hog",
                       timeout=60, memory=128)
    assert res.status == "crashed", res.to_dict()
    assert res.error["errorType"] == "Runtime.ExitError"
    assert "signal: killed (out of memory? the function has 128 MB)" in res.error["errorMessage"]
    assert not _leftover_containers(docker_client, "t-hog")


@pytest.fixture
def invoke_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG.format(slow_timeout=30))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    return cfg


def test_cli_handler_error_is_reported_like_lambda(run_pt, docker_client, handler_image, invoke_config, tmp_path):
    image = handler_image
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"name": "setosa"}))
    r = run_pt("invoke", "boom", "--local", "-c", invoke_config, "--image-uri", image, "--event", event,
               "--output", "json", "--emulator", "pt")
    assert r.exit_code == 1, r
    out = r.json()
    assert out["status"] == "error" and out["function"] == "invk-dev-boom"
    assert out["error"]["errorType"] == "ValueError"
    assert out["error"]["errorMessage"] == "bad input: setosa"
    assert any("handlers.py" in frame for frame in out["error"]["stackTrace"])
    assert "[ERROR] ValueError: bad input: setosa" in out["logs"]


def test_cli_timeout_override_kills_the_container(run_pt, docker_client, handler_image, invoke_config):
    t0 = time.monotonic()
    # the config says 30 s; --timeout overrides it, as the Lambda console's test timeout would not
    r = run_pt("invoke", "slow", "--local", "-c", invoke_config, "--image-uri", handler_image, "--timeout", "2",
               "--event", '{"name": "inline"}', "--emulator", "pt")
    took = time.monotonic() - t0
    assert r.exit_code == 1, r
    assert "Task timed out after 2.00 seconds" in r.stdout
    assert "Sandbox.Timedout" in r.stdout
    assert "starting slow work" in r.stderr  # the container's output is shown as the function's logs
    assert "Status: timeout" in r.stderr and "Duration: 2000.00 ms" in r.stderr
    assert took < 45, f"timeout took {took:.0f}s (container start + 2 s + kill expected)"
    assert not _leftover_containers(docker_client, "invk-dev-slow")


def test_cli_rejects_unknown_function_and_bad_event(run_pt, invoke_config, tmp_path):
    r = run_pt("invoke", "okk", "--local", "-c", invoke_config)
    assert r.exit_code == 2 and "unknown function 'okk'" in r.stderr and "did you mean 'ok'" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run_pt("invoke", "ok", "--local", "-c", invoke_config, "--event", bad)
    assert r.exit_code == 2 and "is not JSON" in r.stderr
    r = run_pt("invoke", "ok", "--local", "-c", invoke_config, "--event", "{broken")
    assert r.exit_code == 2 and "is not JSON" in r.stderr
    r = run_pt("invoke", "ok", "--local", "-c", invoke_config, "--event", tmp_path / "missing.json")
    assert r.exit_code == 2 and "not found" in r.stderr
