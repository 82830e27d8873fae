"""Iris classifier as a Lambda handler: a dependency-free softmax regression.

`handler(event, context)` scores one flower, `batch_handler(event, context)` a list of rows.
Weights live in $MODEL_DIR/model.json (default: model/ next to this file).
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class BadInput(ValueError):
    pass


@lru_cache(maxsize=1)
def load_model() -> dict[str, Any]:
    model_dir = Path(os.environ.get("MODEL_DIR", "model"))
    if not model_dir.is_absolute():
        model_dir = HERE / model_dir
    return json.loads((model_dir / "model.json").read_text(encoding="utf-8"))


def _features(row: Any, names: list[str]) -> list[float]:
    if isinstance(row, dict):
        missing = [n for n in names if n not in row]
        if missing:
            raise BadInput(f"missing features: {', '.join(missing)}")
        row = [row[n] for n in names]
    if not isinstance(row, list | tuple) or len(row) != len(names):
        raise BadInput(f"expected {len(names)} features ({', '.join(names)})")
    try:
        values = [float(v) for v in row]
    except (TypeError, ValueError):
        raise BadInput("features must be numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise BadInput("features must be finite numbers")
    return values


def predict(row: Any) -> dict[str, Any]:
    m = load_model()
    x = _features(row, m["features"])
    z = [sum(w * v for w, v in zip(ws, x)) + b for ws, b in zip(m["weights"], m["bias"])]
    top = max(z)
    e = [math.exp(v - top) for v in z]
    total = sum(e)
    probs = [v / total for v in e]
    best = max(range(len(probs)), key=probs.__getitem__)
    return {"class": m["classes"][best],
            "probabilities": {c: round(p, 6) for c, p in zip(m["classes"], probs)},
            "model_version": m["version"]}


def _body(event: Any) -> Any:
    """Direct invoke payload, or an API Gateway / function URL event with a JSON body."""
    if isinstance(event, dict) and isinstance(event.get("body"), str):
        return json.loads(event["body"])
    return event


def _error(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "error": message}


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    try:
        body = _body(event)
        features = body.get("features") if isinstance(body, dict) else body
        return {"statusCode": 200, **predict(features)}
    except (BadInput, json.JSONDecodeError) as e:
        return _error(400, str(e))


def batch_handler(event: Any, context: Any = None) -> dict[str, Any]:
    try:
        body = _body(event)
        rows = body.get("rows") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            raise BadInput("expected {'rows': [[...], ...]}")
        return {"statusCode": 200, "predictions": [predict(r) for r in rows], "count": len(rows)}
    except (BadInput, json.JSONDecodeError) as e:
        return _error(400, str(e))
