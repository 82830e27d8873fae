"""`pt invoke --local` under the AWS Lambda Runtime Interface Emulator (the binary scripts/services.sh
extracts from the aws-sam-cli wheel), with pt's own Runtime API as the fallback."""

from __future__ import annotations

import os

import pytest

from pipeline_tools.images.lambda_rie import find_rie, invoke_image_rie
from tests.integration.test_invoke_local import CONFIG, _leftover_containers, handler_image  # noqa: F401

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rie() -> str:
    path = find_rie()
    if not path:
        pytest.skip("no Lambda RIE: set PT_LAMBDA_RIE (scripts/services.sh extracts it)")
    return path


def test_rie_runs_the_handler_with_lambda_context_and_reports(docker_client, handler_image, rie):  # noqa: F811
    res = invoke_image_rie(docker_client, handler_image, b'{"name": "iris"}', rie=rie, function="r-ok",
                           handler="handlers.ok", timeout=30, memory=256)
    assert res.status == "ok", res.to_dict()
    assert res.payload == {"echo": {"name": "iris"}, "function": "r-ok", "remaining_ok": True}
    assert "hello from ok iris" in res.logs
    assert res.duration_ms is not None and res.billed_ms is not None and res.billed_ms >= 1
    assert not _leftover_containers(docker_client, "r-ok")


def test_rie_handler_error_is_reported_like_lambda(docker_client, handler_image, rie):  # noqa: F811
    res = invoke_image_rie(docker_client, handler_image, b'{"name": "setosa"}', rie=rie, function="r-boom",
                           handler="handlers.boom", timeout=30)
    assert res.status == "error", res.to_dict()
    assert res.error["errorType"] == "ValueError" and res.error["errorMessage"] == "bad input: setosa"
    assert not _leftover_containers(docker_client, "r-boom")


def test_cli_uses_the_rie_when_present_and_says_so(run_pt, docker_client, handler_image, rie, tmp_path,  # noqa: F811
                                                   monkeypatch):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG.format(slow_timeout=30))
    monkeypatch.setenv("PT_LAMBDA_RIE", rie)
    r = run_pt("invoke", "ok", "--local", "-c", cfg, "--image-uri", handler_image, "--event", '{"name": "x"}',
               "--output", "json")
    assert r.exit_code == 0, r
    out = r.json()
    assert out["status"] == "ok" and out["emulator"] == "rie" and out["payload"]["echo"] == {"name": "x"}
    r = run_pt("invoke", "ok", "--local", "-c", cfg, "--image-uri", handler_image, "--event", '{"name": "y"}',
               "--emulator", "pt", "--output", "json")
    assert r.exit_code == 0 and r.json()["emulator"] == "pt", r


def test_emulator_rie_without_a_binary_is_one_clear_line(run_pt, tmp_path, monkeypatch):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG.format(slow_timeout=30))
    monkeypatch.setenv("PT_LAMBDA_RIE", str(tmp_path / "missing-rie"))
    r = run_pt("invoke", "ok", "--local", "-c", cfg, "--emulator", "rie")
    assert r.exit_code == 2 and "no Lambda Runtime Interface Emulator" in r.stderr and "PT_LAMBDA_RIE" in r.stderr
    assert os.environ.get("PT_LAMBDA_RIE") == str(tmp_path / "missing-rie")
