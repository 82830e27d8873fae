"""Approval rules (pure): who may approve a digest for a stage, and whether enough have.

Rules (config `approvals:`):
- `required` distinct approvers; the same person approving twice counts once;
- `two_person_rule`: no approver may be the commit author of the digest's staging deploy; when
  the author is unknown the rule cannot be checked: refused, or one more approver is required
  (`unknown_author: extra_approver`) — never passed silently;
- approvals bind to the image **digest**: an approval for another digest (an older staging
  deploy) does not count;
- a person's latest decision wins; any standing rejection blocks.

One identity model decides both "same person" questions (counting and the author check):
`same_person`. An identity is a set of names (`names`): the STS caller ARN normalised
(`assumed-role/ROLE/SESSION` → `ROLE/SESSION` and `SESSION`; an IAM user → its name), e-mails
with their local part and GitHub noreply login, plus the person an `approvals.aliases` entry
maps any of them to. Two identities sharing one name are one person. Matching is loose on
purpose: a false match can only count fewer approvers or refuse an approver (fail closed).
An approval whose name was declared in local mode (`PT_ACTOR` against moto, where every caller
is the same fake principal) is identified by that name alone; everywhere else the STS caller
is always part of the identity, so one caller cannot approve as two people.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Union

from pipeline_tools.core.errors import PtError

if TYPE_CHECKING:
    from pipeline_tools.core.config import ApprovalsConfig

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
    declared: str | None = None  # "local" | "config" when the name came from PT_ACTOR, else None

    @property
    def names(self) -> tuple[str | None, ...]:
        """The strings that identify who approved (see the module docstring)."""
        return (self.approver,) if self.declared == "local" else (self.approver, self.arn)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Approval:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def principal(arn: str | None) -> str | None:
    """The person part of an STS caller / IAM ARN: `ROLE/SESSION` for an assumed-role session,
    the name for an IAM or federated user, `root@ACCOUNT` for the root user; None if not an ARN."""
    if not arn or not arn.startswith("arn:"):
        return None
    parts = arn.split(":", 5)
    if len(parts) < 6:
        return None
    account, resource = parts[4], parts[5]
    kind, _, rest = resource.partition("/")
    segs = [p for p in rest.split("/") if p]
    if kind == "assumed-role" and len(segs) >= 2:
        return f"{segs[-2]}/{segs[-1]}"
    if kind in ("user", "federated-user", "role") and segs:
        return segs[-1]
    if resource == "root":
        return f"root@{account}"
    return None


def aliases(identity: str | None) -> set[str]:
    """Normalised names (lowercase) under which one identity string may appear."""
    if not identity or not identity.strip():
        return set()
    s = identity.strip().lower()
    out = {s}
    p = principal(s)
    if p:
        out.add(p)
        s = p
    if "/" in s and not s.startswith("arn:"):  # ROLE/SESSION: the session name is usually the person
        out.add(s.rsplit("/", 1)[1])
    for a in list(out):
        if "@" in a and not a.startswith("root@"):
            local = a.split("@", 1)[0]
            out.add(local)
            m = re.match(r"^\d+\+(.+)$", local)  # 12345+login@users.noreply.github.com
            if m:
                out.add(m[1])
    return {a for a in out if a}


Who = Union[str, "Approval", Iterable[str | None], None]


def _strings(who: Who) -> tuple[str | None, ...]:
    if who is None:
        return ()
    if isinstance(who, str):
        return (who,)
    if isinstance(who, Approval):
        return who.names
    return tuple(who)


def _alias_index(alias_map: Mapping[str, Iterable[str]] | None) -> dict[str, str]:
    index: dict[str, str] = {}
    for person, names in (alias_map or {}).items():
        key = person.strip().lower()
        for n in (person, *names):
            if n and n.strip():
                index[n.strip().lower()] = key
                p = principal(n.strip().lower())
                if p:
                    index[p] = key
    return index


def names(who: Who, alias_map: Mapping[str, Iterable[str]] | None = None) -> frozenset[str]:
    """Every name of an identity (a string, several strings, or an approval), with the
    `approvals.aliases` person it belongs to as `person:<name>`."""
    out: set[str] = set()
    for s in _strings(who):
        out |= aliases(s)
    index = _alias_index(alias_map)
    out |= {f"person:{index[t]}" for t in list(out) if t in index}
    return frozenset(out)


def _alias_map(rule: ApprovalsConfig | None) -> Mapping[str, Iterable[str]]:
    return getattr(rule, "aliases", None) or {}


def same_person(a: Who, b: Who, rule: ApprovalsConfig | None = None) -> bool:
    """THE identity decision: used for counting approvers once and for the commit-author check."""
    m = _alias_map(rule)
    return bool(names(a, m) & names(b, m))


def authors_of(actor: Mapping | None) -> tuple[str, ...]:
    """The commit author's names recorded on a deploy record's actor (e-mail, login, pusher)."""
    actor = actor or {}
    got = [actor.get("author"), *(actor.get("authors") or ())]
    return tuple(dict.fromkeys(a for a in got if a))


def _authors(author: Who) -> tuple[str, ...]:
    return tuple(a for a in _strings(author) if a)


def is_author(approval: Approval, author: Who, rule: ApprovalsConfig | None = None) -> bool:
    return bool(_authors(author)) and same_person(approval, _authors(author), rule)


@dataclass(frozen=True)
class ApprovalStatus:
    stage: str
    digest: str | None
    required: int
    two_person_rule: bool
    author: str | None
    approvers: tuple[str, ...] = ()  # counted, one per person
    rejected_by: tuple[tuple[str, str | None], ...] = ()  # (who, comment)
    ignored: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (who, why)
    author_unknown: bool = False  # two_person_rule on and no author recorded
    unknown_author: str = "refuse"  # the policy applied when author_unknown

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approvers))

    @property
    def blocked_by_unknown_author(self) -> bool:
        return self.author_unknown and self.unknown_author == "refuse"

    @property
    def satisfied(self) -> bool:
        return not self.rejected_by and self.missing == 0 and not self.blocked_by_unknown_author

    def explain(self) -> str:
        if self.rejected_by:
            who, why = self.rejected_by[0]
            return f"rejected by {who}" + (f": {why}" if why else "")
        if self.blocked_by_unknown_author:
            return ("the commit author is unknown, so the two-person rule cannot be checked "
                    "(approvals.unknown_author: refuse)")
        have = f"{len(self.approvers)} of {self.required} approval(s)"
        extra = " (one extra: the commit author is unknown)" if self.author_unknown else ""
        if self.satisfied:
            return (f"{have} ({', '.join(self.approvers)}){extra}" if self.approvers
                    else "no approvals required")
        rule = " from people other than the commit author" + (f" ({self.author})" if self.author else "") \
            if self.two_person_rule and not self.author_unknown else ""
        return f"{have}; {self.missing} more needed{rule}{extra}"

    def to_dict(self) -> dict:
        return {"stage": self.stage, "digest": self.digest, "required": self.required,
                "two_person_rule": self.two_person_rule, "author": self.author,
                "author_unknown": self.author_unknown, "unknown_author": self.unknown_author,
                "approvers": list(self.approvers), "missing": self.missing, "satisfied": self.satisfied,
                "rejected_by": [{"by": w, "comment": c} for w, c in self.rejected_by],
                "ignored": [{"by": w, "why": y} for w, y in self.ignored], "explanation": self.explain()}


def evaluate(approvals: Iterable[Approval], *, stage: str, digest: str | None, rule: ApprovalsConfig | None,
             author: Who) -> ApprovalStatus:
    """Whether the approvals recorded for `stage` satisfy `rule` for `digest`.

    `author` is the commit author: one name or several (e-mail, login, pusher; `authors_of`)."""
    authors = _authors(author)
    required = rule.required if rule else 0
    two_person = bool(rule and rule.two_person_rule)
    unknown = two_person and not authors
    policy = getattr(rule, "unknown_author", "refuse") if rule else "refuse"
    if unknown and policy == "extra_approver":
        required += 1
    ignored: list[tuple[str, str]] = []
    people: list[list[Approval]] = []  # one list per person, in time order
    for a in sorted(approvals, key=lambda a: (a.at, a.id or "")):
        if a.stage != stage:
            continue
        if digest is None or a.digest != digest:
            ignored.append((a.approver, f"for another digest {a.digest[:19]}… (a newer staging deploy replaced it)"))
            continue
        if two_person and a.decision == APPROVE and is_author(a, authors, rule):
            ignored.append((a.approver, "commit author (two_person_rule)"))
            continue
        mine = [p for p in people if any(same_person(a, b, rule) for b in p)]
        merged = sorted((b for p in mine for b in p), key=lambda b: (b.at, b.id or ""))
        if merged and merged[-1].decision == a.decision:
            ignored.append((a.approver, f"same person as {merged[0].approver} (counts once)"))
        people = [p for p in people if p not in mine] + [[*merged, a]]
    people.sort(key=lambda p: (p[0].at, p[0].id or ""))
    approvers = tuple(p[0].approver for p in people if p[-1].decision == APPROVE)  # named as first seen
    rejected = tuple((p[-1].approver, p[-1].comment) for p in people if p[-1].decision == REJECT)
    return ApprovalStatus(stage=stage, digest=digest, required=required, two_person_rule=two_person,
                          author=authors[0] if authors else None, approvers=approvers, rejected_by=rejected,
                          ignored=tuple(ignored), author_unknown=unknown, unknown_author=policy)


def check_new(new: Approval, *, existing: Iterable[Approval], rule: ApprovalsConfig | None,
              author: Who) -> str | None:
    """Validate an approval before it is recorded.

    Raises ApprovalRefused when the rules forbid it; returns a note (not an error) when it
    would not change anything (the same person approving the same digest again), else None.
    """
    if rule is None:
        raise ApprovalRefused(f"stage {new.stage} needs no approvals (no `approvals:` in its config)",
                              f"add `approvals: {{required: 1}}` to stages.{new.stage} to require them")
    if new.decision == APPROVE and rule.two_person_rule and is_author(new, author, rule):
        raise ApprovalRefused(
            f"{new.approver} is the commit author of {new.digest[:19]}… and cannot approve it "
            f"(two_person_rule on stage {new.stage})",
            "ask someone who did not write the change to run `pt approve`")
    for a in sorted(existing, key=lambda a: a.at, reverse=True):
        if a.stage == new.stage and a.digest == new.digest and same_person(a, new, rule):
            if a.decision == new.decision:
                who = new.approver if a.approver == new.approver else f"{new.approver} (same person as {a.approver})"
                return (f"{who} already {'approved' if a.decision == APPROVE else 'rejected'} "
                        f"{new.digest[:19]}…; the same person counts once")
            return None
    return None


def break_glass_status(approvals: Iterable[Approval], *, stage: str, digest: str, actor: Who,
                       rule: ApprovalsConfig | None) -> ApprovalStatus:
    """A break-glass deploy of `digest` needs one approval of it by someone other than `actor`
    (same identity model, the stage's aliases); a standing rejection blocks."""
    from pipeline_tools.core.config import ApprovalsConfig

    bg = ApprovalsConfig(required=1, two_person_rule=True, aliases=dict(_alias_map(rule)))
    return evaluate(approvals, stage=stage, digest=digest, rule=bg, author=actor)
