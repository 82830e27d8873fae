"""Approval rules (pure): who may approve a digest for a stage, and whether enough have.

Rules (config `approvals:`):
- `required` distinct approvers; the same identity approving twice counts once;
- `two_person_rule`: no approver may be the commit author of the digest's staging deploy;
- approvals bind to the image **digest**: an approval for another digest (an older staging
  deploy) does not count;
- a person's latest decision wins; any standing rejection blocks.

Identities are compared loosely on purpose (fail closed for the two-person rule): an e-mail,
its local part, a GitHub noreply address, a login and an STS session name all name a person.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from .errors import PtError

if TYPE_CHECKING:
    from .config import ApprovalsConfig

APPROVE = "approve"
REJECT = "reject"


class ApprovalRefused(PtError):
    """An approval that the rules do not accept (e.g. the commit author under two_person_rule)."""


@dataclass(frozen=True)
class Approval:
    stage: str
    digest: str
    approver: str  # the person (PT_ACTOR / CI user / STS caller)
    decision: str = APPROVE  # approve | reject
    arn: str | None = None  # STS caller ARN
    comment: str | None = None
    at: float = 0.0
    deploy_id: str | None = None  # the staging deploy the approval refers to
    source: str = "pt"  # pt | codepipeline
    id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Approval:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def aliases(identity: str | None) -> set[str]:
    """Normalised names under which an identity may appear (lowercase)."""
    if not identity:
        return set()
    s = identity.strip().lower()
    out = {s}
    if s.startswith("arn:"):
        # arn:aws:sts::123:assumed-role/Role/session  or  arn:aws:iam::123:user/path/name
        tail = s.split(":", 5)[-1]
        parts = tail.split("/")
        if (parts[0] == "assumed-role" and len(parts) >= 3) or (
                parts[0] in ("user", "federated-user") and len(parts) >= 2):
            out.add(parts[-1])
    for a in list(out):
        if "@" in a:
            local = a.split("@", 1)[0]
            out.add(local)
            m = re.match(r"^\d+\+(.+)$", local)  # 12345+login@users.noreply.github.com
            if m:
                out.add(m[1])
    return {a for a in out if a}


def same_person(a: str | None, b: str | None) -> bool:
    return bool(aliases(a) & aliases(b))


def identity_key(approval: Approval) -> str:
    """Key under which approvals are counted once per person."""
    return approval.approver.strip().lower()


def is_author(approval: Approval, author: str | None) -> bool:
    return bool(author) and (same_person(approval.approver, author) or same_person(approval.arn, author))


@dataclass(frozen=True)
class ApprovalStatus:
    stage: str
    digest: str | None
    required: int
    two_person_rule: bool
    author: str | None
    approvers: tuple[str, ...] = ()  # counted, distinct
    rejected_by: tuple[tuple[str, str | None], ...] = ()  # (who, comment)
    ignored: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (who, why)

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approvers))

    @property
    def satisfied(self) -> bool:
        return not self.rejected_by and self.missing == 0

    def explain(self) -> str:
        if self.rejected_by:
            who, why = self.rejected_by[0]
            return f"rejected by {who}" + (f": {why}" if why else "")
        have = f"{len(self.approvers)} of {self.required} approval(s)"
        if self.satisfied:
            return f"{have} ({', '.join(self.approvers)})" if self.approvers else "no approvals required"
        rule = " from people other than the commit author" + (f" ({self.author})" if self.author else "") \
            if self.two_person_rule else ""
        return f"{have}; {self.missing} more needed{rule}"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "digest": self.digest, "required": self.required,
                "two_person_rule": self.two_person_rule, "author": self.author,
                "approvers": list(self.approvers), "missing": self.missing, "satisfied": self.satisfied,
                "rejected_by": [{"by": w, "comment": c} for w, c in self.rejected_by],
                "ignored": [{"by": w, "why": y} for w, y in self.ignored], "explanation": self.explain()}


def evaluate(approvals: Iterable[Approval], *, stage: str, digest: str | None, rule: ApprovalsConfig | None,
             author: str | None) -> ApprovalStatus:
    """Whether the approvals recorded for `stage` satisfy `rule` for `digest`."""
    required = rule.required if rule else 0
    two_person = bool(rule and rule.two_person_rule)
    ignored: list[tuple[str, str]] = []
    latest: dict[str, Approval] = {}
    for a in sorted(approvals, key=lambda a: (a.at, a.id or "")):
        if a.stage != stage:
            continue
        if digest is None or a.digest != digest:
            ignored.append((a.approver, f"for another digest {a.digest[:19]}… (a newer staging deploy replaced it)"))
            continue
        if two_person and a.decision == APPROVE and is_author(a, author):
            ignored.append((a.approver, "commit author (two_person_rule)"))
            continue
        key = identity_key(a)
        if key in latest and latest[key].decision == a.decision:
            ignored.append((a.approver, "same person again (counts once)"))
        latest[key] = a
    approvers = tuple(a.approver for a in latest.values() if a.decision == APPROVE)
    rejected = tuple((a.approver, a.comment) for a in latest.values() if a.decision == REJECT)
    return ApprovalStatus(stage=stage, digest=digest, required=required, two_person_rule=two_person,
                          author=author, approvers=approvers, rejected_by=rejected, ignored=tuple(ignored))


def check_new(new: Approval, *, existing: Iterable[Approval], rule: ApprovalsConfig | None,
              author: str | None) -> str | None:
    """Validate an approval before it is recorded.

    Raises ApprovalRefused when the rules forbid it; returns a note (not an error) when it
    would not change anything (the same person approving the same digest again), else None.
    """
    if rule is None:
        raise ApprovalRefused(f"stage {new.stage} needs no approvals (no `approvals:` in its config)",
                              f"add `approvals: {{required: 1}}` to stages.{new.stage} to require them")
    if new.decision == APPROVE and rule.two_person_rule and is_author(new, author):
        raise ApprovalRefused(
            f"{new.approver} is the commit author of {new.digest[:19]}… and cannot approve it "
            f"(two_person_rule on stage {new.stage})",
            "ask someone who did not write the change to run `pt approve`")
    for a in sorted(existing, key=lambda a: a.at, reverse=True):
        if a.stage == new.stage and a.digest == new.digest and identity_key(a) == identity_key(new):
            if a.decision == new.decision:
                return (f"{new.approver} already {'approved' if a.decision == APPROVE else 'rejected'} "
                        f"{new.digest[:19]}…; the same person counts once")
            return None
    return None
