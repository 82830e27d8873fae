"""Which account each thing lives in and which role reaches it (docs/accounts.md).

The decisions are pure (no I/O); only `check_access` calls AWS, through the factories it is given.

- Single account (no `accounts:` in pipeline.yml and no stage `role:`): every client uses the
  caller's credentials, the ledger is the table the caller's account holds. This is how pt always
  worked and what local mode (one moto account) uses.
- Multi-account (`accounts: {tooling: …}` or a stage `role:`): a stage whose account differs from
  the caller's is reached through its deploy role (`stages.<s>.role`, default
  `<project>-<stage>-deploy` in the stage's account); the ledger lives in the tooling account and
  is reached directly when the caller is there, else through `accounts.ledger_role` (default
  `<project>-ledger` in the tooling account).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import UsageError

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config


@dataclass(frozen=True)
class Caller:
    """The STS caller identity, split into what the decisions need."""

    arn: str
    account: str
    partition: str

    @classmethod
    def parse(cls, arn: str) -> Caller:
        parts = arn.split(":")
        if len(parts) < 6 or parts[0] != "arn" or not re.fullmatch(r"\d{12}", parts[4]):
            raise ValueError(f"not an STS caller ARN: {arn!r}")
        return cls(arn, parts[4], parts[1])

    @property
    def short_name(self) -> str:
        """`alice` of `…:assumed-role/Admin/alice`, `bob` of `…:user/bob`: for role session names."""
        return self.arn.rsplit("/", 1)[-1] if "/" in self.arn else self.arn.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class RoleChoice:
    """A role to assume, with what to tell the user when that fails."""

    arn: str
    account: str
    session_name: str
    field: str  # the pipeline.yml key that sets it
    default: bool  # True: derived from names, not written in pipeline.yml
    created_by: str  # the stack that creates the default role

    def hint(self, caller: str) -> str:
        origin = (f"it is the default for {self.field} (created by the stack {self.created_by})" if self.default
                  else f"it is set by {self.field} in pipeline.yml")
        return (f"{origin}; check that it exists in account {self.account} and that its trust policy allows "
                f"{caller}, or set {self.field} to a role you may assume")


def multi_account(cfg: Config) -> bool:
    return cfg.accounts is not None or any(s.role for s in cfg.stages.values())


def session_name(purpose: str, caller: Caller) -> str:
    """`pt-<purpose>-<caller>`: CloudTrail in the target account shows who acted (≤ 64 chars)."""
    raw = f"pt-{purpose}-{caller.short_name}"
    return re.sub(r"[^\w+=,.@-]", "-", raw)[:64]


def stage_role(cfg: Config, stage: str, caller: Caller) -> RoleChoice | None:
    """The role to assume for `stage`'s clients, or None to use the caller's credentials."""
    st = cfg.stages[stage]
    if not multi_account(cfg) or st.account == caller.account:
        return None
    arn = st.role or names.role_arn(st.account, names.deploy_role(cfg.project, stage), caller.partition)
    return RoleChoice(arn, st.account, session_name(stage, caller), f"stages.{stage}.role", st.role is None,
                      names.stage_stack(cfg.project, stage))


def ledger_account(cfg: Config) -> str | None:
    """The tooling account that holds the shared ledger, or None (single account: the caller's)."""
    return cfg.accounts.tooling if cfg.accounts is not None else None


def ledger_region(cfg: Config) -> str:
    return (cfg.accounts.region if cfg.accounts is not None else None) or cfg.region


def ledger_role(cfg: Config, caller: Caller) -> RoleChoice | None:
    """The role to assume for the ledger client, or None (caller in the tooling account, or no tooling)."""
    tooling = ledger_account(cfg)
    if tooling is None or tooling == caller.account:
        return None
    assert cfg.accounts is not None
    explicit = cfg.accounts.ledger_role
    arn = explicit or names.role_arn(tooling, names.ledger_role(cfg.project), caller.partition)
    return RoleChoice(arn, tooling, session_name("ledger", caller), "accounts.ledger_role", explicit is None,
                      names.ledger_stack(cfg.project))


def ledger_stack(cfg: Config, stage: str) -> str:
    """The stack that creates the ledger table a stage's records are in (for 'table missing' hints)."""
    return names.ledger_stack(cfg.project) if ledger_account(cfg) else names.stage_stack(cfg.project, stage)


def check_shared_ledger(cfg: Config, source: str, target: str, caller: Caller | None) -> None:
    """Refuse a promotion that could not see the source stage's records.

    Without a tooling account each account has its own ledger table. When `source` and `target`
    are in different accounts, the ledger the promotion reads is the target's (stage roles on)
    or the caller's; either way it does not hold the other stage's records: prod would never
    see staging's deploys. (Without stage roles, a caller in neither account is one emulated
    account, as in local mode: one ledger, nothing to refuse.)
    """
    if ledger_account(cfg) is not None or caller is None:
        return
    a, b = cfg.stages[source].account, cfg.stages[target].account
    roles = multi_account(cfg)
    if a == b or (not roles and caller.account not in (a, b)):
        return
    reached = b if roles else caller.account
    unseen = source if reached != a else target
    raise UsageError(
        f"{source} (account {a}) and {target} (account {b}) are in different accounts, but there is no shared "
        f"ledger: the ledger in account {reached} does not hold {unseen}'s records",
        "set `accounts: {tooling: \"<account id>\"}` in pipeline.yml (the ledger then lives in that account; "
        "see docs/accounts.md)")


# --- `pt config accounts`: can pt reach every account it needs? (calls AWS through the factories) ---


def check_access(cfg: Config, stages: list[str], *, stage_factory: Callable[[str], Any],
                 ledger_factory: Callable[[str], Any], ledger_stack_name: Callable[[str], str],
                 same_account: bool = True) -> list[dict]:
    """One row per stage and one for the ledger: where it lives, which role reaches it, and whether
    that works now (STS GetCallerIdentity through the stage's session; DescribeTable on the ledger).
    `same_account`: a stage's session must act in the stage's account (off for PT_SINGLE_ACCOUNT).
    Never raises for an AWS error: the row says what failed (the command exits 1)."""
    from pipeline_tools.core.errors import translate

    rows: list[dict] = []

    def attempt(row: dict, call: Callable[[], str]) -> None:
        try:
            row["acting_as"] = call()
            row["ok"] = True
        except Exception as e:
            err = translate(e)
            if err is None:
                raise
            row["ok"] = False
            row["error"] = err.message + (f" ({err.hint})" if err.hint else "")
        rows.append(row)

    for stage in stages:
        f = stage_factory(stage)
        role = getattr(f, "role", None)
        row = {"what": f"stage {stage}", "account": cfg.stages[stage].account, "region": cfg.stage_region(stage),
               "via": role.arn if role is not None else "caller's credentials"}

        def whoami(f=f, want=cfg.stages[stage].account) -> str:
            arn = f.client("sts").get_caller_identity()["Arn"]
            if same_account and arn.split(":")[4] != want:
                raise UsageError(f"these credentials act in account {arn.split(':')[4]}, not {want}",
                                 "set accounts.tooling (or the stage's role) so pt assumes the stage's deploy role")
            return arn

        attempt(row, whoami)
    lf = ledger_factory(stages[0])
    role = getattr(lf, "role", None)
    row = {"what": f"ledger {cfg.ledger_table()}", "account": ledger_account(cfg) or "each stage's",
           "region": ledger_region(cfg) if ledger_account(cfg) else cfg.stage_region(stages[0]),
           "via": role.arn if role is not None else "caller's credentials"}

    def table() -> str:
        from pipeline_tools.release.ledger import ensure_table

        ensure_table(lf.client("dynamodb"), cfg.ledger_table(), project=cfg.project, stage=stages[0], local=False,
                     stack=ledger_stack_name(stages[0]))
        return lf.client("sts").get_caller_identity()["Arn"]

    attempt(row, table)
    return rows
