"""The per-invocation application object handed to commands (config, AWS factory, output)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .output import Output

if TYPE_CHECKING:
    from .aws import AwsFactory
    from .config import Config


@dataclass
class App:
    config_path: str | None = None
    stage: str | None = None
    region: str | None = None
    profile: str | None = None
    output_mode: str = "human"
    verbose: bool = False
    lean_config: bool = False  # commands that read only project/region/stages/artifacts (config_lean)
    _config: Config | None = field(default=None, repr=False)
    _aws: dict = field(default_factory=dict, repr=False)
    _out: Output | None = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        if self._out is None or self._out.mode != self.output_mode:
            self._out = Output(self.output_mode, verbose=self.verbose)
        return self._out

    def config(self) -> Config:
        if self._config is None:
            if self.lean_config:
                from .config_lean import load_lean

                self._config = load_lean(self.config_path)
            else:
                from .config import load

                self._config = load(self.config_path)
        return self._config

    def require_stage(self) -> str:
        """The --stage value, validated against the config."""
        cfg = self.config()
        cfg.stage(self.stage)
        return self.stage  # type: ignore[return-value]

    def aws(self, stage: str | None = None) -> AwsFactory:
        """Client factory for a stage's region (or --region, or the config's region)."""
        from .aws import AwsFactory

        region = self.region
        if region is None:
            try:
                cfg = self.config()
                region = cfg.stage_region(stage) if stage in cfg.stages else cfg.region
            except Exception:
                region = None
        key = region or ""
        if key not in self._aws:
            self._aws[key] = AwsFactory(region=region, profile=self.profile)
        return self._aws[key]
