"""The per-invocation application object handed to commands (config, AWS factory, output)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline_tools.core.output import Output

if TYPE_CHECKING:
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.core.config import Config


@dataclass
class App:
    config_path: str | None = None
    stage: str | None = None
    region: str | None = None
    profile: str | None = None
    output_mode: str = "human"
    verbose: bool = False
    quiet: bool = False
    lean_config: bool = False  # commands that read only project/region/stages/artifacts (config_lean)
    _config: Config | None = field(default=None, repr=False)
    _no_color: bool = field(default=False, repr=False)
    _debug: bool = field(default=False, repr=False)
    _aws: dict = field(default_factory=dict, repr=False)
    _out: Output | None = field(default=None, repr=False)
    _caller: Any = field(default=None, repr=False)

    @property
    def no_color(self) -> bool:
        return self._no_color

    @no_color.setter
    def no_color(self, value: bool) -> None:
        import os

        self._no_color = bool(value)
        if value:
            os.environ["NO_COLOR"] = "1"   # rich and every child process honour it

    @property
    def debug(self) -> bool:
        return self._debug

    @debug.setter
    def debug(self, value: bool) -> None:
        import os

        self._debug = bool(value)
        if value:
            os.environ["PT_DEBUG"] = "1"   # AwsFactory attaches the wire log to each client it makes

    @property
    def out(self) -> Output:
        if self._out is None or self._out.mode != self.output_mode or self._out.quiet != self.quiet:
            self._out = Output(self.output_mode, verbose=self.verbose, quiet=self.quiet)
        return self._out

    def config(self) -> Config:
        if self._config is None:
            if self.lean_config:
                from pipeline_tools.core.config_lean import load_lean

                self._config = load_lean(self.config_path)
            else:
                from pipeline_tools.core.config import load

                self._config = load(self.config_path)
        return self._config

    def require_stage(self) -> str:
        """The --stage value, validated against the config."""
        cfg = self.config()
        cfg.stage(self.stage)
        return self.stage  # type: ignore[return-value]

    def aws(self, stage: str | None = None) -> AwsFactory:
        """Client factory for a stage: its region (or --region, or the config's region) and, in a
        multi-account config, its deploy role when the caller is in another account."""
        region = self.region
        cfg = None
        try:
            cfg = self.config()
        except Exception:
            pass
        if region is None and cfg is not None:
            region = cfg.stage_region(stage) if stage in cfg.stages else cfg.region
        base = self._factory(region)
        if cfg is None or stage not in cfg.stages:
            return base
        from pipeline_tools.core import accounts

        if single_account() or not accounts.multi_account(cfg):
            return base
        return self._factory(region, accounts.stage_role(cfg, stage, self.caller()))

    def ledger_aws(self, stage: str | None = None) -> AwsFactory:
        """Client factory for the ledger table: the tooling account's (`accounts.tooling`), reached
        directly or through `accounts.ledger_role`; without a tooling account, the stage's."""
        from pipeline_tools.core import accounts

        cfg = self.config()
        if single_account() or accounts.ledger_account(cfg) is None:
            return self.aws(stage)
        region = accounts.ledger_region(cfg)
        return self._factory(region, accounts.ledger_role(cfg, self.caller()))

    def ledger_stack(self, stage: str) -> str:
        """The stack that creates the ledger table (named in 'table missing' hints)."""
        from pipeline_tools.core import accounts

        return accounts.ledger_stack(self.config(), stage)

    def check_shared_ledger(self, target: str) -> None:
        """Refuse (exit 2) to read `target`'s promote_from stage's records from a ledger that cannot
        hold them (stages in two accounts, no `accounts.tooling`); see accounts.check_shared_ledger."""
        from pipeline_tools.core import accounts

        cfg = self.config()
        source = cfg.stages[target].promote_from if target in cfg.stages else None
        if source is None or single_account() or accounts.ledger_account(cfg) is not None \
                or cfg.stages[source].account == cfg.stages[target].account:
            return
        accounts.check_shared_ledger(cfg, source, target, self.caller())

    def caller(self):
        """The STS caller (account, partition) of the credentials pt runs with, cached."""
        from pipeline_tools.core import accounts

        if self._caller is None:
            cfg = self.config()
            arn = self._factory(self.region or cfg.region).caller_arn()
            try:
                self._caller = accounts.Caller.parse(arn)
            except ValueError:
                from pipeline_tools.core.errors import AwsError

                raise AwsError(f"STS GetCallerIdentity returned {arn!r}, which names no account",
                               "check the credentials pt runs with (`aws sts get-caller-identity`)") from None
        return self._caller

    def _factory(self, region: str | None, role=None) -> AwsFactory:
        from pipeline_tools.core.aws import AwsFactory

        key = (region or "", role.arn if role is not None else "")
        if key not in self._aws:
            source = self._factory(region) if role is not None else None
            self._aws[key] = AwsFactory(region=region, profile=self.profile, role=role, source=source)
        return self._aws[key]


def single_account() -> bool:
    """`PT_SINGLE_ACCOUNT=1` (set by `pt local up`'s env file: the local stack is one emulated
    account): ignore `accounts:` and stage roles; every client uses the caller's credentials."""
    import os

    return os.environ.get("PT_SINGLE_ACCOUNT") == "1"
