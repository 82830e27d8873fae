"""The AWS Lambda Runtime API, served by pt, and `invoke_image`: run a function's image like Lambda.

There is no Lambda emulator on these machines (and moto cannot invoke image functions), so pt
speaks the Runtime API itself (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html):

    GET  /2018-06-01/runtime/invocation/next          -> the event, with Lambda-Runtime-* headers
    POST /2018-06-01/runtime/invocation/{id}/response -> the handler's result       (202)
    POST /2018-06-01/runtime/invocation/{id}/error    -> errorType/errorMessage/stackTrace (202)
    POST /2018-06-01/runtime/init/error               -> the handler could not be loaded (202)

The image's runtime interface client (awslambdaric in docker/model/Dockerfile) polls it through
`AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`; the container runs with the host network, because the
local docker daemon has no bridge network (NOTES.md). One container serves one invocation, then
it is killed and removed (a cold start every time, reported as Init Duration).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"
INIT_TIMEOUT = 30.0  # seconds for the container to start and ask for its first event


@dataclass
class Invocation:
    request_id: str
    event: bytes
    timeout: float
    function_arn: str
    delivered_at: float | None = None  # clock() when the runtime took the event
    finished_at: float | None = None
    outcome: str | None = None  # "response" | "error"
    body: bytes = b""
    error_type: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    delivered: threading.Event = field(default_factory=threading.Event)


class RuntimeApi:
    """A Runtime API endpoint on a loopback port, serving the invocations submitted to it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._pending: queue.Queue[Invocation] = queue.Queue()
        self._by_id: dict[str, Invocation] = {}
        self._stopping = threading.Event()
        self.init_error: dict | None = None
        self.init_error_event = threading.Event()
        self.first_poll_at: float | None = None
        self.first_poll = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet: the container's logs are what matter
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404, b'{"errorMessage":"unknown path","errorType":"InvalidRequest"}')
                    return
                if api.first_poll_at is None:
                    api.first_poll_at = api.clock()
                    api.first_poll.set()
                inv = api._next()
                if inv is None:  # shutting down: the container is about to be killed
                    self._reply(500, b'{"errorMessage":"runtime api stopping","errorType":"Shutdown"}')
                    return
                now = api.clock()
                inv.delivered_at = now
                inv.delivered.set()
                deadline_ms = int((now + inv.timeout) * 1000)
                self._reply(200, inv.event, {
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{int(now):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self) -> None:
                body = self._body()
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = _parse_error(body, self.headers.get("Lambda-Runtime-Function-Error-Type"))
                    api.init_error_event.set()
                    self._reply(202, b'{"status":"OK"}')
                    return
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    inv = api._by_id.get(parts[1])
                    if inv is None or inv.done.is_set():
                        self._reply(400, b'{"errorMessage":"unknown or finished request id",'
                                         b'"errorType":"InvalidRequestID"}')
                        return
                    inv.finished_at = api.clock()
                    inv.outcome = parts[2]
                    inv.body = body
                    inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                    inv.done.set()
                    self._reply(202, b'{"status":"OK"}')
                    return
                self._reply(404, b'{"errorMessage":"unknown path","errorType":"InvalidRequest"}')

        self._server = _QuietServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> RuntimeApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="pt-runtime-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RuntimeApi:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()

    def submit(self, event: bytes, timeout: float, function_arn: str) -> Invocation:
        inv = Invocation(request_id=str(uuid.uuid4()), event=event, timeout=timeout, function_arn=function_arn)
        self._by_id[inv.request_id] = inv
        self._pending.put(inv)
        return inv

    def _next(self) -> Invocation | None:
        while not self._stopping.is_set():
            try:
                return self._pending.get(timeout=0.2)
            except queue.Empty:
                continue
        return None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the runtime's connection dies when its container is killed: expected, not worth a traceback
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _parse_error(body: bytes, header_type: str | None) -> dict:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        data = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(data, dict):
        data = {"errorMessage": str(data)}
    out = {"errorMessage": data.get("errorMessage", ""), "errorType": data.get("errorType") or header_type
           or "Unhandled"}
    if data.get("stackTrace"):
        out["stackTrace"] = data["stackTrace"]
    return out


# --- running an image ------------------------------------------------------------------------


@dataclass
class InvokeResult:
    function: str
    request_id: str
    status: str  # ok | error | timeout | init_error | crashed
    payload: Any = None  # the handler's response (decoded JSON when it is JSON)
    error: dict | None = None  # errorType / errorMessage / stackTrace, like Lambda's response
    logs: str = ""
    duration_ms: float | None = None
    init_ms: float | None = None
    billed_ms: int | None = None
    memory_mb: int | None = None
    image: str = ""
    version: str | None = None  # the version Lambda executed (remote invoke)
    emulator: str = ""          # local invoke: "rie" (AWS Runtime Interface Emulator) or "pt" (pt's Runtime API)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def report_line(self) -> str:
        parts = [f"REPORT RequestId: {self.request_id}"]
        if self.duration_ms is not None:
            parts.append(f"Duration: {self.duration_ms:.2f} ms")
        if self.billed_ms is not None:
            parts.append(f"Billed Duration: {self.billed_ms} ms")
        if self.memory_mb:
            parts.append(f"Memory Size: {self.memory_mb} MB")
        if self.init_ms is not None:
            parts.append(f"Init Duration: {self.init_ms:.2f} ms")
        if self.status == "timeout":
            parts.append("Status: timeout")
        return "\t".join(parts)

    def to_dict(self) -> dict:
        return {"function": self.function, "request_id": self.request_id, "status": self.status,
                "payload": self.payload, "error": self.error, "duration_ms": self.duration_ms,
                "init_ms": self.init_ms, "billed_ms": self.billed_ms, "memory_mb": self.memory_mb,
                "image": self.image, "version": self.version, "emulator": self.emulator or None,
                "logs": self.logs}


def invoke_image(docker, image: str, event: bytes, *, function: str, handler: str | None,
                 timeout: float, memory: int | None = None, environment: dict[str, str] | None = None,
                 function_arn: str | None = None, region: str = "us-east-1",
                 entrypoint: list[str] | None = None, init_timeout: float = INIT_TIMEOUT,
                 clock: Callable[[], float] = time.time) -> InvokeResult:
    """Start `image` with the Runtime API pointed at pt, deliver `event`, collect the outcome.

    `handler` becomes the container command (the image's ENTRYPOINT runs awslambdaric);
    `timeout` is the function's configured timeout in seconds, counted from the moment the
    runtime takes the event; the container is killed when it runs out. `memory` (MB) is the
    container's memory limit, as Lambda's memory setting is.
    """
    arn = function_arn or f"arn:aws:lambda:{region}:000000000000:function:{function}"
    with RuntimeApi(clock=clock) as api:
        env = {
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory or 128),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(timeout)),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "_HANDLER": handler or "",
            **(environment or {}),
        }
        started = clock()
        inv = api.submit(event, timeout, arn)
        limits = {"mem_limit": f"{memory}m", "memswap_limit": f"{memory}m"} if memory else {}
        container = docker.containers.run(
            image, command=[handler] if handler else None, entrypoint=entrypoint, environment=env,
            network_mode="host", detach=True, labels={"pt.invoke": function}, **limits,
        )
        try:
            status = _wait(api, inv, container, started, init_timeout, clock)
        finally:
            logs = _logs_and_remove(container)
    init_ms = (api.first_poll_at - started) * 1000 if api.first_poll_at is not None else None
    result = InvokeResult(function=function, request_id=inv.request_id, status=status, logs=logs,
                          init_ms=init_ms, memory_mb=memory, image=image)
    if inv.delivered_at is not None:
        end = inv.finished_at if inv.finished_at is not None else clock()
        if status == "timeout":
            end = inv.delivered_at + timeout
        result.duration_ms = (end - inv.delivered_at) * 1000
        result.billed_ms = max(1, int(-(-result.duration_ms // 1)))
    if status == "ok":
        result.payload = _decode(inv.body)
    elif status == "error":
        result.error = _parse_error(inv.body, inv.error_type)
    elif status == "init_error":
        result.error = api.init_error
    elif status == "timeout":
        when = "Task timed out" if inv.delivered_at is not None else "Init timed out"
        limit = timeout if inv.delivered_at is not None else init_timeout
        result.error = {"errorType": "Sandbox.Timedout",
                        "errorMessage": f"RequestId: {inv.request_id} Error: {when} after {limit:.2f} seconds"}
    else:
        code = _exit_code(container)
        why = (f"Runtime exited with error: signal: killed (out of memory? the function has {memory} MB)"
               if code == 137 else f"Runtime exited without providing a reason (exit code {code})")
        result.error = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {inv.request_id} Error: {why}"}
    return result


def _wait(api: RuntimeApi, inv: Invocation, container, started: float, init_timeout: float,
          clock: Callable[[], float]) -> str:
    """Block until the invocation ends: ok/error by the runtime, init error, exit, or timeout."""
    while True:
        if inv.done.wait(0.05):
            return "ok" if inv.outcome == "response" else "error"
        if api.init_error_event.is_set():
            return "init_error"
        now = clock()
        if inv.delivered_at is not None:
            if now - inv.delivered_at >= inv.timeout:
                return "timeout"
        elif now - started >= init_timeout:
            return "timeout"
        if _exited(container):
            # the runtime may have posted its result just before exiting
            if inv.done.wait(0.2):
                return "ok" if inv.outcome == "response" else "error"
            return "init_error" if api.init_error_event.is_set() else "crashed"


_last_check: dict[str, float] = {}


def _exited(container) -> bool:
    # container.reload() is an HTTP call to the daemon; at most ~4 per second
    now = time.monotonic()
    if now - _last_check.get(container.id, 0.0) < 0.25:
        return False
    _last_check[container.id] = now
    try:
        container.reload()
    except Exception:
        return True
    return container.status in ("exited", "dead")


def _exit_code(container) -> int | None:
    try:
        return int(container.attrs.get("State", {}).get("ExitCode"))
    except (TypeError, ValueError):
        return None


def _logs_and_remove(container) -> str:
    try:
        container.kill()
    except Exception:
        pass  # already exited
    try:
        logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    except Exception as e:
        logs = f"(container logs unavailable: {e})\n"
    try:
        container.remove(force=True)
    except Exception:
        pass
    _last_check.pop(container.id, None)
    return logs


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


# --- `pt invoke` -----------------------------------------------------------------------------


def resolve_image(cfg, stage: str, function: str, *, docker, aws=None, image_uri: str | None = None,
                  on_info: Callable[[str], None] = lambda _s: None) -> str:
    """The image to run: --image-uri; else what the stage's live alias runs (local AWS only);
    else the image built from the current sources (content tag), when docker or the registry has it."""
    from pipeline_tools.core import names
    from pipeline_tools.core.aws import is_local
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.local import stack as local

    if image_uri:
        return image_uri
    fname = cfg.function_name(stage, function)
    if aws is not None and is_local():
        try:
            from pipeline_tools.targets import lambda_ops

            lc = aws.client("lambda")
            alias = lambda_ops.read_alias(lc, fname)
            # the version's digest as the deploy engine records it (moto answers a qualified
            # get_function with $LATEST's code, so the ImageUri alone is not enough)
            digest = lambda_ops.version_digest(lc, fname, alias.version) if alias.exists else None
            uri = lc.get_function(FunctionName=fname, Qualifier=alias.version)["Code"].get("ImageUri") or ""
            if digest and digest != local.BOOTSTRAP_DIGEST and uri:
                uri = f"{uri.rsplit('@', 1)[0]}@{digest}"
                if alias.weights:
                    on_info(f"{fname}:{names.LIVE_ALIAS} is split {alias.weights}; running its primary version")
                on_info(f"{fname}:{names.LIVE_ALIAS} (version {alias.version}) runs {uri}")
                return uri
        except Exception:
            pass  # not provisioned or not deployed yet: fall back to the sources
    from pipeline_tools.images import images

    image = cfg.functions[function].image
    cfg = local.with_local_base(cfg)
    plan = images.plan_image(cfg, image, docker=docker, registry_host=cfg.registry_for(stage))
    if images._local_image(docker, plan.ref):
        on_info(f"{function}: image {plan.ref} (built from the current sources)")
        return plan.ref
    raise UsageError(f"no image to run for {function}: {plan.ref} is not built and {fname} runs no deployed image",
                     "run `pt build-push` first, or pass --image-uri")


def invoke_local(cfg, stage: str, function: str, event: bytes, *, docker, aws=None, image_uri: str | None = None,
                 timeout: float | None = None, on_info: Callable[[str], None] = lambda _s: None,
                 clock: Callable[[], float] = time.time, emulator: str = "auto") -> InvokeResult:
    """Run FUNCTION's image like Lambda: its handler, memory, timeout and environment from pipeline.yml.

    `emulator`: "rie" (the AWS Runtime Interface Emulator, images/lambda_rie.py), "pt" (pt's own
    Runtime API) or "auto" (the RIE when one is found, else pt's). Against a local stack
    (AWS_ENDPOINT_URL on loopback) the function gets that endpoint and its test credentials, so it
    reads its bucket there; real credentials are never passed into the container."""
    from pipeline_tools.core.errors import UsageError
    from pipeline_tools.images import lambda_rie

    rie = lambda_rie.find_rie() if emulator in ("auto", "rie") else None
    if emulator == "rie" and not rie:
        raise UsageError("no Lambda Runtime Interface Emulator found",
                         "set PT_LAMBDA_RIE to the aws-lambda-rie binary (scripts/services.sh extracts it), "
                         "or pass --emulator pt")
    fcfg = cfg.functions[function]
    image = resolve_image(cfg, stage, function, docker=docker, aws=aws, image_uri=image_uri, on_info=on_info)
    _ensure_pulled(docker, image, on_info)
    region = cfg.stage_region(stage)
    fname = cfg.function_name(stage, function)
    env = {**_local_stack_env(), **dict(fcfg.environment)}
    seconds = timeout if timeout is not None else float(fcfg.timeout)
    if rie:
        on_info(f"{fname}: running under the AWS Lambda RIE ({rie})")
        res = lambda_rie.invoke_image_rie(docker, image, event, rie=rie, function=fname, handler=fcfg.handler,
                                          timeout=seconds, memory=fcfg.memory, environment=env, region=region)
        res.emulator = "rie"
        return res
    res = invoke_image(docker, image, event, function=fname, handler=fcfg.handler, timeout=seconds,
                       memory=fcfg.memory, environment=env, region=region,
                       function_arn=f"arn:aws:lambda:{region}:{cfg.stages[stage].account}:function:{fname}",
                       clock=clock)
    res.emulator = "pt"
    return res


def _local_stack_env() -> dict[str, str]:
    """The local stack's endpoint and its (fake) credentials, only when the endpoint is on loopback."""
    import os
    import urllib.parse

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urllib.parse.urlparse(endpoint).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        return {}
    return {"AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")}


def _ensure_pulled(docker, image: str, on_info: Callable[[str], None]) -> None:
    from pipeline_tools.core.errors import DockerError

    try:
        docker.images.get(image)
        return
    except Exception as e:
        if type(e).__name__ not in ("ImageNotFound", "NotFound"):
            raise
    on_info(f"pulling {image}")
    try:
        docker.images.pull(image)
    except Exception as e:
        raise DockerError(f"cannot pull {image}: {e}", "run `pt build-push`, or check PT_REGISTRY") from None


def invoke_remote(cfg, stage: str, function: str, event: bytes, *, lambda_client) -> InvokeResult:
    """Invoke the deployed function's live alias (RequestResponse, last 4 KB of logs)."""
    import base64

    from pipeline_tools.core import names

    fname = cfg.function_name(stage, function)
    resp = lambda_client.invoke(FunctionName=fname, Qualifier=names.LIVE_ALIAS, Payload=event,
                                InvocationType="RequestResponse", LogType="Tail")
    body = resp["Payload"].read()
    logs = base64.b64decode(resp.get("LogResult") or b"").decode("utf-8", "replace")
    rid = resp.get("ResponseMetadata", {}).get("RequestId", "")
    res = InvokeResult(function=fname, request_id=rid, status="ok", logs=logs,
                       memory_mb=cfg.functions[function].memory, version=resp.get("ExecutedVersion"))
    if resp.get("FunctionError"):
        res.status = "error"
        res.error = _parse_error(body, resp["FunctionError"])
    else:
        res.payload = _decode(body)
    return res
