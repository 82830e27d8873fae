"""Approval rules: distinct approvers, two-person rule, digest binding, rejections."""

from __future__ import annotations

import pytest

from pipeline_tools.core.config import ApprovalsConfig
from pipeline_tools.release.approvals import (
    APPROVE,
    REJECT,
    Approval,
    ApprovalRefused,
    aliases,
    check_new,
    evaluate,
    same_person,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
TWO = ApprovalsConfig(required=2, two_person_rule=True)


def ap(who, digest=D1, at=1.0, decision=APPROVE, arn=None, comment=None):
    return Approval(stage="prod", digest=digest, approver=who, decision=decision, arn=arn, at=at, comment=comment)


def test_two_distinct_approvers_satisfy():
    st = evaluate([ap("bob", at=1), ap("carol", at=2)], stage="prod", digest=D1, rule=TWO, author="alice@x.io")
    assert st.satisfied and st.approvers == ("bob", "carol") and st.missing == 0


def test_same_identity_twice_counts_once_case_insensitive():
    st = evaluate([ap("bob", at=1), ap("Bob", at=2)], stage="prod", digest=D1, rule=TWO, author="alice")
    assert not st.satisfied and st.missing == 1
    assert any("counts once" in why for _, why in st.ignored)
    assert "1 more needed" in st.explain()


def test_author_approval_ignored_under_two_person_rule():
    st = evaluate([ap("alice", at=1), ap("bob", at=2)], stage="prod", digest=D1, rule=TWO,
                  author="alice@example.com")
    assert st.approvers == ("bob",) and not st.satisfied
    assert ("alice", "commit author (two_person_rule)") in st.ignored


def test_author_counts_without_two_person_rule():
    rule = ApprovalsConfig(required=1, two_person_rule=False)
    st = evaluate([ap("alice")], stage="prod", digest=D1, rule=rule, author="alice")
    assert st.satisfied


def test_approvals_for_an_older_digest_do_not_count():
    st = evaluate([ap("bob", digest=D1), ap("carol", digest=D1), ap("dave", digest=D2, at=3)],
                  stage="prod", digest=D2, rule=TWO, author="alice")
    assert st.approvers == ("dave",) and not st.satisfied
    assert sum("another digest" in why for _, why in st.ignored) == 2


def test_rejection_blocks_and_latest_decision_wins():
    recs = [ap("bob", at=1), ap("carol", at=2), ap("bob", at=3, decision=REJECT, comment="latency regressed")]
    st = evaluate(recs, stage="prod", digest=D1, rule=TWO, author="alice")
    assert not st.satisfied and st.explain() == "rejected by bob: latency regressed"
    st2 = evaluate([*recs, ap("bob", at=4)], stage="prod", digest=D1, rule=TWO, author="alice")
    assert st2.satisfied


def test_other_stage_records_ignored_and_no_digest_means_nothing_counts():
    other = Approval(stage="staging", digest=D1, approver="bob", at=1)
    st = evaluate([other, ap("carol")], stage="prod", digest=D1, rule=TWO, author=None)
    assert st.approvers == ("carol",)
    assert not evaluate([ap("bob"), ap("carol")], stage="prod", digest=None, rule=TWO, author=None).satisfied


def test_no_rule_is_satisfied():
    st = evaluate([], stage="prod", digest=D1, rule=None, author=None)
    assert st.satisfied and st.required == 0


@pytest.mark.parametrize("approver,arn,author", [
    ("alice", None, "alice@example.com"),
    ("ALICE@example.com", None, "alice@example.com"),
    ("alice", None, "12345+alice@users.noreply.github.com"),
    ("ci", "arn:aws:sts::123456789012:assumed-role/Deployer/alice", "alice@corp.example"),
    ("someone", "arn:aws:iam::123456789012:user/ops/alice", "alice"),
])
def test_author_refused_under_all_spellings(approver, arn, author):
    with pytest.raises(ApprovalRefused, match="commit author"):
        check_new(ap(approver, arn=arn), existing=[], rule=TWO, author=author)


def test_check_new_duplicate_note_and_change_of_mind():
    assert "counts once" in check_new(ap("bob", at=2), existing=[ap("bob", at=1)], rule=TWO, author="alice")
    assert check_new(ap("bob", at=2, decision=REJECT), existing=[ap("bob", at=1)], rule=TWO, author="alice") is None
    assert check_new(ap("bob", digest=D2), existing=[ap("bob", digest=D1)], rule=TWO, author="alice") is None


def test_check_new_refuses_stage_without_rule():
    with pytest.raises(ApprovalRefused, match="needs no approvals"):
        check_new(ap("bob"), existing=[], rule=None, author=None)


def test_aliases_and_same_person():
    assert "alice" in aliases("arn:aws:sts::1:assumed-role/R/alice")
    assert not same_person("bob", "alice@example.com")
    assert not same_person(None, "alice")
    assert Approval.from_dict({**ap("bob").to_dict(), "extra": 1}) == ap("bob")
