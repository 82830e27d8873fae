"""`pt invoke --local` through the AWS Lambda Runtime Interface Emulator (RIE), when it is available.

The RIE is the emulator AWS ships (Apache-2.0; the `aws-sam-cli` wheel carries it as
`samcli/local/rapid/aws-lambda-rie-<arch>`, about 9 MB). pt does not depend on SAM: it uses the RIE
binary named by `PT_LAMBDA_RIE`, else the one in an installed `samcli` package, else none, and then
`pipeline_tools.images.lambda_runtime` (pt's own Runtime API) runs the invocation instead.

The binary is bind-mounted read-only into the function's container and becomes its entrypoint,
wrapping the image's own entrypoint (awslambdaric): `aws-lambda-rie --runtime-api-address
127.0.0.1:A --runtime-interface-emulator-address 127.0.0.1:B <image entrypoint> <handler>`. The
container uses the host network (the local daemon has no bridge), so both addresses are free
loopback ports. pt POSTs the event to the RIE's Invoke endpoint and reads the REPORT line the RIE
logs for durations.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline_tools.images.lambda_runtime import InvokeResult, _decode, _logs_and_remove

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
MOUNT = "/opt/pt-rie/aws-lambda-rie"
_REPORT_RE = re.compile(r"REPORT RequestId: (?P<id>\S+)\s+(?:Init Duration: (?P<init>[\d.]+) ms\s+)?"
                        r"Duration: (?P<dur>[\d.]+) ms\s+Billed Duration: (?P<billed>\d+) ms")


def find_rie() -> str | None:
    """Path of an RIE binary for this machine's architecture, or None."""
    env = os.environ.get("PT_LAMBDA_RIE")
    if env:
        return env if os.path.isfile(env) and os.access(env, os.X_OK) else None
    arch = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
    try:
        from importlib.util import find_spec

        spec = find_spec("samcli")
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(base) / "local" / "rapid" / f"aws-lambda-rie-{arch}"
        if candidate.is_file():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke_image_rie(docker, image: str, event: bytes, *, rie: str, function: str, handler: str | None,
                     timeout: float, memory: int | None = None, environment: dict[str, str] | None = None,
                     region: str = "us-east-1", init_timeout: float = 30.0,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> InvokeResult:
    """Run one invocation of `image` under the RIE; same result shape as pt's own Runtime API."""
    config = docker.images.get(image).attrs.get("Config") or {}
    entrypoint = list(config.get("Entrypoint") or [])
    command = [handler] if handler else list(config.get("Cmd") or [])
    api_port, rie_port = _free_port(), _free_port()
    env = {"AWS_LAMBDA_FUNCTION_NAME": function, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory or 128),
           "AWS_LAMBDA_FUNCTION_TIMEOUT": str(max(1, round(timeout))),
           "AWS_REGION": region, "AWS_DEFAULT_REGION": region, **(environment or {})}
    limits = {"mem_limit": f"{memory}m", "memswap_limit": f"{memory}m"} if memory else {}
    container = docker.containers.run(
        image, entrypoint=[MOUNT, "--runtime-api-address", f"127.0.0.1:{api_port}",
                           "--runtime-interface-emulator-address", f"127.0.0.1:{rie_port}", *entrypoint],
        command=command, environment=env, volumes={rie: {"bind": MOUNT, "mode": "ro"}},
        network_mode="host", detach=True, labels={"pt.invoke": function, "pt.emulator": "rie"}, **limits)
    request_id = str(uuid.uuid4())
    status, body, function_error = "crashed", b"", None
    try:
        _wait_listening(rie_port, container, clock() + init_timeout, clock, sleep)
        req = urllib.request.Request(f"http://127.0.0.1:{rie_port}{INVOKE_PATH}", data=event, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout + init_timeout + 5) as resp:
                body = resp.read()
                function_error = resp.headers.get("X-Amz-Function-Error")
                status = "ok"
        except urllib.error.HTTPError as e:
            body = e.read()
            status = "error"
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            status = "crashed"
    except _NotListening:
        status = "crashed"
    finally:
        logs = _logs_and_remove(container)
    result = InvokeResult(function=function, request_id=request_id, status=status, logs=logs, memory_mb=memory,
                          image=image)
    report = _REPORT_RE.search(logs)
    if report:
        result.request_id = report["id"]
        result.duration_ms = float(report["dur"])
        result.billed_ms = int(report["billed"])
        result.init_ms = float(report["init"]) if report["init"] else None
    decoded = _decode(body) if body else None
    if status == "ok" and (function_error or _is_error_document(decoded)):
        result.status = "error"
        result.error = decoded if isinstance(decoded, dict) else {"errorType": "Unknown", "errorMessage": str(decoded)}
        if "timed out" in str(result.error.get("errorMessage", "")).lower():
            result.status = "timeout"
            result.error = {"errorType": "Sandbox.Timedout", **{k: v for k, v in result.error.items()
                                                                 if k != "errorType"}}
    elif status == "ok":
        result.payload = decoded
    elif status == "error":
        result.error = (decoded if isinstance(decoded, dict)
                        else {"errorType": "Runtime.Error", "errorMessage": str(decoded)})
    else:
        result.error = {"errorType": "Runtime.ExitError",
                        "errorMessage": f"RequestId: {request_id} Error: the emulator ended without a response"}
    return result


def _is_error_document(value) -> bool:
    return isinstance(value, dict) and "errorMessage" in value and set(value) <= {
        "errorMessage", "errorType", "stackTrace", "requestId", "cause"}


class _NotListening(Exception):
    pass


def _wait_listening(port: int, container, deadline: float, clock: Callable[[], float],
                    sleep: Callable[[float], None]) -> None:
    while clock() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        container.reload()
        if container.status in ("exited", "dead"):
            raise _NotListening()
        sleep(0.05)
    raise _NotListening()


def describe(rie: str | None) -> str:
    return f"AWS Lambda RIE ({rie})" if rie else "pt's Runtime API"

