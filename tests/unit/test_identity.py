"""The identity model (issue 14 item 4): STS ARN normalisation, `same_person` (the ONE function
for counting and the author check), aliases, declared identities, unknown authors, break-glass
approvals, and where the commit author comes from (GitHub event, CodeBuild, git)."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.core.config import ApprovalsConfig
from pipeline_tools.release import actor
from pipeline_tools.release.approvals import (
    APPROVE,
    REJECT,
    Approval,
    ApprovalRefused,
    authors_of,
    break_glass_status,
    check_new,
    evaluate,
    names,
    principal,
    same_person,
)

D1 = "sha256:" + "1" * 64
ACCT = "123456789012"
CI_ARN = f"arn:aws:sts::{ACCT}:assumed-role/pt-deploy/GitHubActions"
TWO = ApprovalsConfig(required=2, two_person_rule=True)
CAROL = ApprovalsConfig(required=2, two_person_rule=True,
                        aliases={"carol": ["cjones", "c.jones@corp.example", f"arn:aws:iam::{ACCT}:user/cj-laptop"]})


def ap(who, arn=None, at=1.0, decision=APPROVE, declared=None, digest=D1):
    return Approval(stage="prod", digest=digest, approver=who, decision=decision, arn=arn, at=at, declared=declared)


# --- principal: STS caller / IAM ARNs → the person part ------------------------------------------

@pytest.mark.parametrize("arn,expected", [
    (f"arn:aws:sts::{ACCT}:assumed-role/Deployer/alice", "Deployer/alice"),
    (f"arn:aws:sts::{ACCT}:assumed-role/AWSReservedSSO_Admin_0a1b/alice@corp.example",
     "AWSReservedSSO_Admin_0a1b/alice@corp.example"),
    (f"arn:aws-cn:sts::{ACCT}:assumed-role/Ops/bob", "Ops/bob"),
    (f"arn:aws-us-gov:sts::{ACCT}:assumed-role/Ops/bob", "Ops/bob"),
    (f"arn:aws:iam::{ACCT}:user/alice", "alice"),
    (f"arn:aws:iam::{ACCT}:user/team/ops/alice", "alice"),
    (f"arn:aws:sts::{ACCT}:federated-user/alice", "alice"),
    (f"arn:aws:iam::{ACCT}:role/service-role/Deployer", "Deployer"),
    (f"arn:aws:iam::{ACCT}:root", f"root@{ACCT}"),
    (f"arn:aws:sts::{ACCT}:assumed-role/OnlyRole", None),  # no session: not a caller ARN
    ("arn:aws:sts", None),
    ("alice@example.com", None),
    ("", None),
    (None, None),
])
def test_principal(arn, expected):
    assert principal(arn) == expected


# --- same_person: one decision for counting and for the author check ----------------------------

@pytest.mark.parametrize("a,b,rule,same", [
    ("carol", "carol@example.com", None, True),  # e-mail local part
    ("Carol", "CAROL", None, True),  # case
    ("alice", "12345+alice@users.noreply.github.com", None, True),  # GitHub noreply login
    (f"arn:aws:sts::{ACCT}:assumed-role/Deployer/alice", "alice@corp.example", None, True),  # session name
    (f"arn:aws:sts::{ACCT}:assumed-role/Deployer/alice", f"arn:aws:sts::{ACCT}:assumed-role/Admin/alice", None, True),
    (f"arn:aws:sts::{ACCT}:assumed-role/SSO/alice@corp.example", "alice@corp.example", None, True),
    (f"arn:aws:iam::{ACCT}:user/ops/alice", "alice", None, True),
    ("Deployer/alice", f"arn:aws:sts::{ACCT}:assumed-role/Deployer/alice", None, True),  # stored name vs ARN
    ("bob", "alice@example.com", None, False),
    ("bob", "bobby", None, False),
    (f"arn:aws:sts::{ACCT}:assumed-role/Deployer/alice", f"arn:aws:sts::{ACCT}:assumed-role/Deployer/bob", None,
     False),
    (f"arn:aws:iam::{ACCT}:root", "root", None, False),
    (None, "alice", None, False),
    ("", "", None, False),
    ((), ("alice",), None, False),
    # approvals.aliases: ARNs, e-mails and logins that are one person
    ("cjones", "carol@example.com", None, False),
    ("cjones", "carol@example.com", CAROL, True),
    ("c.jones@corp.example", "carol", CAROL, True),
    (f"arn:aws:iam::{ACCT}:user/cj-laptop", "cjones", CAROL, True),
    (f"arn:aws:iam::{ACCT}:user/cj-laptop", "dave", CAROL, False),
    (("dave", CI_ARN), ("erin", CI_ARN), None, True),  # one STS caller, two declared names
])
def test_same_person_table(a, b, rule, same):
    assert same_person(a, b, rule) is same
    assert same_person(b, a, rule) is same  # symmetric


def test_names_carry_the_alias_person():
    assert "person:carol" in names("cjones", CAROL.aliases)
    assert "person:carol" in names(f"arn:aws:iam::{ACCT}:user/cj-laptop", CAROL.aliases)
    assert not any(n.startswith("person:") for n in names("dave", CAROL.aliases))


@pytest.mark.parametrize("declared,expected", [(None, ("dave", CI_ARN)), ("config", ("dave", CI_ARN)),
                                               ("local", ("dave",))])
def test_approval_identity_includes_the_caller_unless_declared_locally(declared, expected):
    assert ap("dave", arn=CI_ARN, declared=declared).names == expected


# --- counting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("approvals,rule,counted", [
    ([ap("carol", at=1), ap("carol@example.com", at=2)], TWO, ("carol",)),
    ([ap("carol", at=1), ap("cjones", at=2)], TWO, ("carol", "cjones")),  # no alias configured: two people
    ([ap("carol", at=1), ap("cjones", at=2)], CAROL, ("carol",)),
    # one STS caller approving under two names (CI role, GITHUB_ACTOR / declared PT_ACTOR)
    ([ap("alice", arn=CI_ARN, at=1), ap("bob", arn=CI_ARN, at=2)], TWO, ("alice",)),
    ([ap("alice", arn=CI_ARN, at=1, declared="config"), ap("bob", arn=CI_ARN, at=2, declared="config")], TWO,
     ("alice",)),
    # local mode: moto has one fake caller for everyone, the declared name is the identity
    ([ap("alice", arn=CI_ARN, at=1, declared="local"), ap("bob", arn=CI_ARN, at=2, declared="local")], TWO,
     ("alice", "bob")),
    # transitive: a shares a name with b, b with c → one person
    ([ap("dave", at=1), ap("dave@a.example", at=2), ap("Ops/dave", at=3)], TWO, ("dave",)),
    ([ap("Ops/bob", arn=f"arn:aws:sts::{ACCT}:assumed-role/Ops/bob", at=1),
      ap("Ops/erin", arn=f"arn:aws:sts::{ACCT}:assumed-role/Ops/erin", at=2)], TWO, ("Ops/bob", "Ops/erin")),
])
def test_counting_table(approvals, rule, counted):
    st = evaluate(approvals, stage="prod", digest=D1, rule=rule, author="zed@example.com")
    assert st.approvers == counted
    assert st.satisfied is (len(counted) >= 2)


def test_latest_decision_of_a_person_wins_across_aliases():
    recs = [ap("carol", at=1), ap("bob", at=2), ap("cjones", at=3, decision=REJECT)]
    st = evaluate(recs, stage="prod", digest=D1, rule=CAROL, author="zed")
    assert st.rejected_by == (("cjones", None),) and not st.satisfied
    assert evaluate([*recs, ap("c.jones@corp.example", at=4)], stage="prod", digest=D1, rule=CAROL,
                    author="zed").satisfied


def test_duplicate_note_uses_the_same_function():
    note = check_new(ap("carol@example.com", at=2), existing=[ap("carol", at=1)], rule=TWO, author="zed")
    assert "same person as carol" in note and "counts once" in note
    assert check_new(ap("bob", arn=CI_ARN, at=2), existing=[ap("alice", arn=CI_ARN, at=1)], rule=TWO,
                     author="zed") is not None
    assert check_new(ap("cjones", at=2), existing=[ap("carol", at=1)], rule=TWO, author="zed") is None
    assert check_new(ap("cjones", at=2), existing=[ap("carol", at=1)], rule=CAROL, author="zed") is not None


# --- the author check: the same function, with aliases and every recorded author name -----------

@pytest.mark.parametrize("approval,author,rule", [
    (ap("cjones"), "carol@example.com", CAROL),
    (ap("x", arn=f"arn:aws:iam::{ACCT}:user/cj-laptop"), "c.jones@corp.example", CAROL),
    (ap("alice", arn=CI_ARN, declared="config"), ("octo@example.com", "alice"), TWO),  # GitHub login
    (ap("Ops/pusher", arn=f"arn:aws:sts::{ACCT}:assumed-role/Ops/pusher"), ("dev@example.com", "pusher"), TWO),
])
def test_author_refused_and_ignored(approval, author, rule):
    with pytest.raises(ApprovalRefused, match="commit author"):
        check_new(approval, existing=[], rule=rule, author=author)
    st = evaluate([approval], stage="prod", digest=D1, rule=rule, author=author)
    assert st.approvers == () and "commit author" in st.ignored[0][1]


def test_authors_of_a_deploy_record():
    assert authors_of({"author": "a@x.io", "authors": ["a@x.io", "octo", "pusher"]}) == ("a@x.io", "octo", "pusher")
    assert authors_of({"author": "a@x.io"}) == ("a@x.io",)
    assert authors_of({"author": None, "authors": []}) == ()
    assert authors_of(None) == ()


# --- unknown author: never a silent pass ----------------------------------------------------------

@pytest.mark.parametrize("policy,n_approvers,required,satisfied", [
    ("refuse", 2, 2, False), ("refuse", 5, 2, False),
    ("extra_approver", 2, 3, False), ("extra_approver", 3, 3, True),
])
def test_unknown_author_policy(policy, n_approvers, required, satisfied):
    rule = ApprovalsConfig(required=2, two_person_rule=True, unknown_author=policy)
    recs = [ap(n, at=i) for i, n in enumerate(["bob", "carol", "dave", "erin", "frank"][:n_approvers])]
    for author in (None, "", ()):
        st = evaluate(recs, stage="prod", digest=D1, rule=rule, author=author)
        assert st.author_unknown and st.required == required and st.satisfied is satisfied
    if policy == "refuse":
        assert "commit author is unknown" in st.explain() and "unknown_author: refuse" in st.explain()
    else:
        assert "the commit author is unknown" in st.explain()


def test_unknown_author_irrelevant_without_two_person_rule():
    rule = ApprovalsConfig(required=1, two_person_rule=False)
    st = evaluate([ap("bob")], stage="prod", digest=D1, rule=rule, author=None)
    assert st.satisfied and not st.author_unknown


# --- break-glass: one approval by someone other than the actor -------------------------------------

@pytest.mark.parametrize("approvals,actor_names,rule,satisfied", [
    ([], ("alice",), None, False),
    ([ap("alice")], ("alice",), None, False),  # own approval
    ([ap("alice@example.com")], ("alice",), None, False),  # own approval under another spelling
    ([ap("cjones")], ("carol",), CAROL, False),  # own approval under an alias
    ([ap("bob", arn=CI_ARN)], ("alice", CI_ARN), None, False),  # same STS caller
    ([ap("bob")], ("alice",), None, True),
    ([ap("bob", at=1), ap("dave", at=2, decision=REJECT)], ("alice",), None, False),  # a rejection blocks
    ([ap("bob", digest="sha256:" + "2" * 64)], ("alice",), None, False),  # bound to the digest
])
def test_break_glass_status(approvals, actor_names, rule, satisfied):
    st = break_glass_status(approvals, stage="prod", digest=D1, actor=actor_names, rule=rule)
    assert st.satisfied is satisfied and st.required == 1


# --- actor.identify: STS caller first, declared identities only where allowed ----------------------

ENV = {"PT_ACTOR": "alice", "PT_COMMIT_AUTHOR": "alice@example.com", "GITHUB_ACTOR": "octo"}
NO_GIT = lambda *a: None  # noqa: E731


@pytest.mark.parametrize("local,allow,name,declared,author", [
    (True, False, "alice", "local", "alice@example.com"),
    (False, True, "alice", "config", "alice@example.com"),
    (False, False, "Deployer/bob", None, None),  # PT_ACTOR / PT_COMMIT_AUTHOR ignored
])
def test_identify_declared_only_where_allowed(local, allow, name, declared, author):
    who = actor.identify(f"arn:aws:sts::{ACCT}:assumed-role/Deployer/bob", env=ENV, git=NO_GIT, local=local,
                         allow_declared=allow)
    assert (who["name"], who["declared"], who["author"]) == (name, declared, author)
    assert who.get("declared_ignored", []) == ([] if declared else ["PT_ACTOR", "PT_COMMIT_AUTHOR"])


def test_identify_without_pt_actor_is_the_caller_not_the_ci_user():
    who = actor.identify(CI_ARN, env={"GITHUB_ACTOR": "octo", "CODEBUILD_INITIATOR": "x"}, git=NO_GIT, local=False)
    assert who["name"] == "pt-deploy/GitHubActions" and who["declared"] is None
    assert actor.names(who) == ("pt-deploy/GitHubActions", CI_ARN)
    assert actor.names({"name": "alice", "arn": CI_ARN, "declared": "local"}) == ("alice",)
    assert actor.identify(None, env={}, git=NO_GIT, local=False)["name"] == "unknown"


def test_declared_ok_by_mode_and_config(tmp_path):
    from pipeline_tools.core import config as config_mod

    path = tmp_path / "pipeline.yml"
    path.write_text("""\
project: rel
region: us-east-1
images: {model: {context: ., dockerfile: Dockerfile}}
functions: {predict: {image: model}}
stages:
  dev: {account: "111111111111", branch: dev, gate: {alarms: ["t-dev-*"]}}
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["t-staging-*"]}}
  prod:
    account: "222222222222"
    branch: master
    promote_from: staging
    approvals: {required: 1, allow_declared_actor: true}
    gate: {alarms: ["t-prod-*"]}
""")
    cfg = config_mod.load(path)
    assert actor.declared_ok(cfg, "dev", local=True)
    assert not actor.declared_ok(cfg, "dev", local=False)
    assert actor.declared_ok(cfg, "prod", local=False)
    assert actor.declared_ok(cfg, "staging", local=False)  # its deploy records are read by prod's rules
    assert not actor.declared_ok(None, None, local=False)


# --- the commit author from the CI context ---------------------------------------------------------

class Git:
    def __init__(self, out=None):
        self.out, self.calls = out, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.out if args[0] == "log" else None


def _event(tmp_path, payload) -> str:
    p = tmp_path / "event.json"
    p.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return str(p)


PUSH = {"head_commit": {"id": "a" * 40, "author": {"name": "Alice A", "email": "alice@example.com",
                                                   "username": "alice-gh"}},
        "pusher": {"name": "bob-gh", "email": "bob@example.com"}}


def test_author_from_github_event_payload(tmp_path):
    git = Git("someone@else.example")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": _event(tmp_path, PUSH)}
    assert actor.commit_author(env, git) == (["alice@example.com", "alice-gh", "bob@example.com", "bob-gh"],
                                             "github-event")
    assert git.calls == []  # the payload wins over the checkout


@pytest.mark.parametrize("payload", ["{not json", json.dumps({"action": "opened"}), "[]", json.dumps(
    {"head_commit": None})])
def test_github_event_without_head_commit_falls_back_to_git(tmp_path, payload):
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": _event(tmp_path, payload)}
    assert actor.commit_author(env, Git("dev@example.com")) == (["dev@example.com"], "git")
    assert actor.commit_author(env, Git(None)) == ([], None)
    assert actor.commit_author({**env, "GITHUB_EVENT_PATH": str(tmp_path / "missing.json")}, Git(None)) == ([], None)


def test_author_from_codebuild_resolved_source_version():
    sha = "b" * 40
    git = Git("carol@example.com")
    env = {"CODEBUILD_BUILD_ID": "p:1", "CODEBUILD_RESOLVED_SOURCE_VERSION": sha}
    assert actor.commit_author(env, git) == (["carol@example.com"], "codebuild-git")
    assert git.calls == [("log", "-1", "--format=%ae", sha)]


@pytest.mark.parametrize("version", ["", "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", None])
def test_codebuild_source_zip_or_s3_version_is_unknown(version):
    git = Git(None)  # a CodePipeline source zip has no .git
    env = {"CODEBUILD_BUILD_ID": "p:1", **({"CODEBUILD_RESOLVED_SOURCE_VERSION": version} if version else {})}
    assert actor.commit_author(env, git) == ([], None)
    env["CODEBUILD_RESOLVED_SOURCE_VERSION"] = "c" * 40
    assert actor.commit_author(env, git) == ([], None)


def test_author_from_git_checkout_and_declared_only_when_ok():
    assert actor.commit_author({}, Git("dev@example.com")) == (["dev@example.com"], "git")
    assert actor.commit_author({}, Git("not-an-email")) == ([], None)
    env = {"PT_COMMIT_AUTHOR": "me@example.com"}
    assert actor.commit_author(env, Git(None)) == ([], None)
    assert actor.commit_author(env, Git(None), declared_ok=True) == (["me@example.com"], "declared")


def test_ci_context_records_author_names_and_source(tmp_path):
    env = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_PATH": _event(tmp_path, PUSH), "GITHUB_SHA": "a" * 40,
           "GITHUB_ACTOR": "bob-gh"}
    ctx = actor.ci_context(env, Git(None))
    assert ctx["author"] == "alice@example.com" and ctx["author_source"] == "github-event"
    assert authors_of(ctx) == ("alice@example.com", "alice-gh", "bob@example.com", "bob-gh")
