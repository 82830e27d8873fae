"""A fast pipeline.yml view for `pt zoo plan`: config_lean's view plus the `zoo:` section (no pydantic).

Importing pydantic and building `config.Config`'s models costs about half a second of CPU per
process, most of a 500-model plan. This view hands out project/region/stages/functions (through
`config_lean.LeanConfig`, same rules) and `zoo`, whose fields it checks with the rules of
`ZooConfig`/`ZooModelConfig`/`ZooConsumerConfig`; the whole file also passes config's AWS naming
checks (`configcheck`, pure). It accepts only the plain forms of each field (a bool for `copy`, an
int for `memory`, ...). Anything else, a YAML duplicate key or any field it does not check
(`gc_older_than`, `waves`, `wave_bake`, `copy_alongside:` spelt out) sends it to `config.load`, so
every error is the full loader's (file:line, hint); attributes beyond these load and validate the
whole file, as in config_lean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline_tools.core import awsnames, names
from pipeline_tools.core import config_lean as lean

_MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # ZooConfig._names (fullmatch)
_VARIABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")   # ZooConsumerConfig.variable
_ZOO_KEYS = {"models", "consumers", "role", "parallel"}
_MODEL_KEYS = {"copy", "artifacts", "image", "handler", "memory", "timeout", "environment"}
_CONSUMER_KEYS = {"model", "ssm", "function", "variable"}
GC_OLDER_THAN_DEFAULT = 14 * 86400.0  # ZooConfig.gc_older_than's default
PARALLEL_DEFAULT = 8                  # ZooConfig.parallel's default


@dataclass(frozen=True)
class LeanZooModel:
    copy_alongside: bool = False
    artifacts: str = ""
    image: str | None = None
    handler: str | None = None
    memory: int | None = None
    timeout: int | None = None
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LeanZooConsumer:
    model: str
    ssm: str | None = None
    function: str | None = None
    variable: str | None = None


@dataclass(frozen=True)
class LeanZoo:
    models: dict[str, LeanZooModel]
    consumers: list[LeanZooConsumer]
    role: str | None = None
    parallel: int = PARALLEL_DEFAULT
    gc_older_than: float = GC_OLDER_THAN_DEFAULT
    waves: None = None
    wave_bake: None = None


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _model(raw: Any) -> LeanZooModel:
    if not isinstance(raw, dict) or not set(raw) <= _MODEL_KEYS:
        raise lean._Fallback
    copy, art, env = raw.get("copy", False), raw.get("artifacts"), raw.get("environment", {})
    if not isinstance(copy, bool) or not isinstance(art, str) or not art.strip():
        raise lean._Fallback
    if not (_opt_str(raw.get("image")) and _opt_str(raw.get("handler"))):
        raise lean._Fallback
    memory, timeout = raw.get("memory"), raw.get("timeout")
    if (memory is not None and not _int_in(memory, 128, 10240)) or \
            (timeout is not None and not _int_in(timeout, 1, 900)):
        raise lean._Fallback
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise lean._Fallback
    return LeanZooModel(copy, art, raw.get("image"), raw.get("handler"), memory, timeout, dict(env))


def _consumer(raw: Any, models: dict) -> LeanZooConsumer:
    if not isinstance(raw, dict) or not set(raw) <= _CONSUMER_KEYS:
        raise lean._Fallback
    model, ssm, fn, var = raw.get("model"), raw.get("ssm"), raw.get("function"), raw.get("variable")
    if not isinstance(model, str) or model not in models or not (_opt_str(ssm) and _opt_str(fn) and _opt_str(var)):
        raise lean._Fallback
    if (ssm is None) == (fn is None) or (fn is not None and var is None):
        raise lean._Fallback
    if var is not None and not _VARIABLE_RE.match(var):
        raise lean._Fallback
    return LeanZooConsumer(model, ssm, fn, var)


def lean_zoo(raw: Any) -> LeanZoo:
    """The `zoo:` section, or _Fallback when it is not in the plain form checked here."""
    if not isinstance(raw, dict) or not set(raw) <= _ZOO_KEYS:
        raise lean._Fallback
    models_raw, consumers_raw = raw.get("models"), raw.get("consumers", [])
    if not isinstance(models_raw, dict) or not models_raw:
        raise lean._Fallback  # no zoo: the full loader and require_zoo say so
    models = {}
    for name, m in models_raw.items():
        if not isinstance(name, str) or not _MODEL_NAME_RE.fullmatch(name):
            raise lean._Fallback
        models[name] = _model(m)
    if not isinstance(consumers_raw, list):
        raise lean._Fallback
    consumers = [_consumer(c, models) for c in consumers_raw]
    role, parallel = raw.get("role"), raw.get("parallel", PARALLEL_DEFAULT)
    if not _opt_str(role) or not _int_in(parallel, 1, 64):
        raise lean._Fallback
    return LeanZoo(models, consumers, role, parallel)


class ZooLeanConfig(lean.LeanConfig):
    """LeanConfig with a checked `zoo`; everything else as LeanConfig (the full config beyond it)."""

    def __init__(self, data: dict, source: str, path: str | None):
        super().__init__(data, source, path)
        self.zoo = lean_zoo(data.get("zoo"))


def load(path: str | None = None) -> Any:
    """A ZooLeanConfig, or the fully validated Config whenever this view cannot vouch for the file."""
    import yaml

    from pipeline_tools.core import configcheck as cc
    from pipeline_tools.core.yamlmarks import load_with_lines

    try:
        p = lean._find(path)
        loaded = load_with_lines(p.read_bytes().decode("utf-8-sig"))  # the full loader's parser
        data = loaded.data
        if loaded.problems or not isinstance(data, dict) or not set(data) <= lean._TOP:
            raise lean._Fallback
        # config's AWS rules (configcheck; pure): any problem, the full loader reports it. Its duration
        # and derived-name passes import core/config.py (pydantic) for parse_duration/render: instead,
        # the derived names this view hands out (each stage's zoo functions) are checked below.
        if any(True for part in (cc._required_strings, cc._registries, cc._environments) for _ in part(data)):
            raise lean._Fallback
        cfg = ZooLeanConfig(data, str(p), path)
        if any(awsnames.lambda_function(fn) for st in cfg.stages for m in cfg.zoo.models
               for fn in (names.function_name(cfg.project, st, m), names.function_name(cfg.project, st, m) + "_copy")):
            raise lean._Fallback
        return cfg
    except (lean._Fallback, OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError, KeyError,
            AttributeError):
        from pipeline_tools.core.config import load as full_load

        return full_load(path)
