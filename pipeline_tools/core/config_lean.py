"""A fast pipeline.yml view for commands that read only project, region, stages and artifacts
(and, for `pt status`, the function names and their images).

`pt artifacts push|pull|verify|copy`, `pt history` and `pt status` need a few names from
pipeline.yml; validating the whole file with pydantic costs about 0.2 s of imports and model
building per process, which is most of an incremental push. `load_lean` reads the YAML
(libyaml when present) and checks exactly the fields it hands out, with the same rules as
`config.Config`. Whenever one of them is missing or wrong it defers to `config.load`, so the
error (file:line, hint) is the full loader's. Anything it is asked for beyond those fields
also loads and validates the whole file, so a caller can never read an unvalidated value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline_tools.core import names

_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_TEMPLATE_RE = re.compile(r"\{([^{}]*)\}")
_FUNCTION_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")  # stricter than the full model: else it decides
# Every top-level key Config accepts; an unknown one sends us to the full loader (it names the typo).
_TOP = {"project", "region", "registry", "images", "functions", "stages", "notifications", "artifacts", "cdk",
        "targets", "zoo", "change_record"}


class _Fallback(Exception):
    """The lean view cannot vouch for the file: use the full loader."""


class LeanStage:
    def __init__(self, owner: LeanConfig, name: str, raw: dict):
        self._owner, self._name = owner, name
        account = raw.get("account")
        if isinstance(account, int) and not isinstance(account, bool):
            account = str(account).zfill(12)
        if not isinstance(account, str) or not _ACCOUNT_RE.match(account):
            raise _Fallback
        region = raw.get("region")
        if region is not None and (not isinstance(region, str) or not _REGION_RE.match(region)):
            raise _Fallback
        if not isinstance(raw.get("branch"), str) or "role" in raw:  # a role: the full loader checks its ARN
            raise _Fallback
        self.account: str = account
        self.region: str | None = region
        self.role: str | None = None
        if "targets" not in raw:  # the full model's default; a list is checked there (via __getattr__)
            self.targets: list[str] | None = None

    def __getattr__(self, attr: str) -> Any:  # any other field: from the validated full config
        return getattr(self._owner.full().stages[self._name], attr)


class LeanFunction:
    def __init__(self, owner: LeanConfig, name: str, image: str):
        self._owner, self._name = owner, name
        self.image = image

    def __getattr__(self, attr: str) -> Any:  # any other field: from the validated full config
        return getattr(self._owner.full().functions[self._name], attr)


class LeanConfig:
    """Duck-types `config.Config` for project/region/stages/bucket; everything else via `full()`."""

    def __init__(self, data: dict, source: str, path: str | None):
        self._path, self._full = path, None
        self.source = source
        self.accounts = None  # `accounts:` is not in _TOP: a file that has it takes the full loader
        project, region = data.get("project"), data.get("region")
        if not (isinstance(project, str) and _PROJECT_RE.match(project)):
            raise _Fallback
        if not (isinstance(region, str) and _REGION_RE.match(region)):
            raise _Fallback
        if not isinstance(data.get("images"), dict) or not data["images"]:
            raise _Fallback
        stages = data.get("stages")
        if not isinstance(stages, dict) or not stages or not all(isinstance(k, str) for k in stages):
            raise _Fallback
        artifacts = data.get("artifacts", {})
        if artifacts is None or not isinstance(artifacts, dict):
            raise _Fallback
        bucket = artifacts.get("bucket", names.default_bucket_template())
        if not isinstance(bucket, str) or any(m[1] not in ("project", "stage") for m in _TEMPLATE_RE.finditer(bucket)):
            raise _Fallback
        self._images = set(data["images"])
        self.project: str = project
        self.region: str = region
        self.stages: dict[str, LeanStage] = {}
        for name, raw in stages.items():
            if not isinstance(raw, dict):
                raise _Fallback
            self.stages[name] = LeanStage(self, name, raw)
        self._bucket = bucket
        self._functions_raw = data.get("functions", {})
        self._functions: dict[str, LeanFunction] | None = None
        self._has_targets = "targets" in data

    @property
    def functions(self) -> dict[str, LeanFunction]:
        """Names and images only (what `pt status` reads); any other field via the full config."""
        if self._functions is None:
            raw, images = self._functions_raw, self.full_images()
            if raw is None or not isinstance(raw, dict) or not all(
                    isinstance(k, str) and _FUNCTION_RE.match(k) and isinstance(v, dict)
                    and isinstance(v.get("image"), str) and v["image"] in images for k, v in raw.items()):
                return self.full().functions
            self._functions = {k: LeanFunction(self, k, v["image"]) for k, v in raw.items()}
        return self._functions

    def full_images(self) -> set[str]:
        return set(self._images)

    @property
    def targets(self) -> Any:
        """No `targets:` section: none configured (the full model's defaults); else the full config."""
        if self._has_targets:
            return self.full().targets
        from types import SimpleNamespace

        return SimpleNamespace(sagemaker=None, stepfunctions={}, batch={})

    def function_name(self, stage: str, function: str) -> str:
        return names.function_name(self.project, stage, function)

    def full(self):
        if self._full is None:
            from pipeline_tools.core.config import load

            self._full = load(self._path)
        return self._full

    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent

    def stage(self, name: str | None) -> LeanStage:
        if not name or name not in self.stages:
            return self.full().stage(name)  # raises the usual UsageError with its hint
        return self.stages[name]

    def stage_region(self, stage: str) -> str:
        return self.stages[stage].region or self.region

    def bucket(self, stage: str) -> str:
        return _TEMPLATE_RE.sub(lambda m: {"project": self.project, "stage": stage}.get(m[1], m[0]), self._bucket)

    def ledger_table(self) -> str:
        return names.ledger_table(self.project)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.full(), attr)


format_duration = names.format_duration  # 1h2m3s, without importing the pydantic models


def _find(path: str | None) -> Path:
    import os

    return Path(path or os.environ.get("PT_CONFIG") or "pipeline.yml")


def load_lean(path: str | None = None):
    """A LeanConfig, or the fully validated Config when the lean view cannot vouch for the file."""
    import yaml

    p = _find(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(text, Loader=loader)
        if not isinstance(data, dict) or not set(data) <= _TOP:
            raise _Fallback
        return LeanConfig(data, str(p), path)
    except (_Fallback, OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError):
        from pipeline_tools.core.config import load

        return load(path)
