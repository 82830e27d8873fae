"""`pt --debug`: one stderr line per AWS request and one per response, secrets redacted.

Values of parameters whose name says secret (SecretString, Password, Token, …) are never shown;
everything else goes through `output.redact` and is shortened, so a debug log can be pasted into
an issue.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

_SECRET_KEY = re.compile(r"(?i)(secret|password|passwd|token|credential|private|authorization|sessionkey|"
                         r"accesskey|webhook)")
_MAX_VALUE = 120
# keys whose values are data that may be secret whatever they are called (an SSM parameter's value)
_HIDDEN_BY_SERVICE = {"ssm": {"Value"}, "secretsmanager": {"SecretString", "SecretBinary"},
                      "lambda": {"Payload"}, "sqs": {"MessageBody"}, "sns": {"Message"}}


def redact_params(value: Any, key: str = "", service: str = "") -> Any:
    """Parameters as logged: secret-named keys hidden, long values shortened, bytes as sizes."""
    from pipeline_tools.core.output import redact

    if key and (_SECRET_KEY.search(key) or key in _HIDDEN_BY_SERVICE.get(service, ())):
        return "****"
    if isinstance(value, dict):
        return {k: redact_params(v, str(k), service) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return ([redact_params(v, "", service) for v in value[:20]]
                + ([f"… {len(value) - 20} more"] if len(value) > 20 else []))
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if hasattr(value, "read"):
        return "<stream>"
    if isinstance(value, str):
        text = redact(value)
        return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + f"…({len(text)} chars)"
    return value


def attach(client: Any, write: Callable[[str], None] | None = None,
           clock: Callable[[], float] = time.monotonic) -> None:
    """Log `client`'s calls: `aws> s3.PutObject {params}` and `aws< s3.PutObject 200 0.031s req=…`."""
    write = write or (lambda line: (sys.stderr.write(line + "\n"), sys.stderr.flush()))
    service = client.meta.service_model.service_name
    event_id = client.meta.service_model.service_id.hyphenize()
    started: dict[int, float] = {}

    def before(params: dict, model: Any, context: dict, **_kw: Any) -> None:
        started[id(context)] = clock()
        shown = json.dumps(redact_params(params, service=service), default=str, sort_keys=True)
        write(f"aws> {service}.{model.name} {shown}")

    def after(http_response: Any, parsed: dict, model: Any, context: dict, **_kw: Any) -> None:
        t0 = started.pop(id(context), None)
        took = f" {clock() - t0:.3f}s" if t0 is not None else ""
        meta = parsed.get("ResponseMetadata", {}) if isinstance(parsed, dict) else {}
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        status = getattr(http_response, "status_code", meta.get("HTTPStatusCode", "?"))
        write(f"aws< {service}.{model.name} {status}{took}" + (f" {code}" if code else "")
              + (f" req={meta['RequestId']}" if meta.get("RequestId") else "")
              + (f" retries={meta['RetryAttempts']}" if meta.get("RetryAttempts") else ""))

    events = client.meta.events
    # before-parameter-build sees the API parameters (before-call sees the serialized request)
    events.register(f"before-parameter-build.{event_id}", before)
    events.register(f"after-call.{event_id}", after)
