"""The account model (pipeline_tools/core/accounts.py): which role reaches which stage and the ledger,
config validation of `accounts:` / `stages.*.role`, and the AssumeRole failure line (Stubber: moto
never denies AssumeRole)."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.stub import Stubber

from pipeline_tools.core import accounts
from pipeline_tools.core.config import parse
from pipeline_tools.core.context import App
from pipeline_tools.core.errors import AwsError, ConfigError, UsageError

A, B, C = "111111111111", "222222222222", "333333333333"


def cfg_text(accounts_block: str = "", staging_role: str = "", prod_role: str = "") -> str:
    return f"""\
project: iris
region: us-east-1
{accounts_block}
images:
  model: {{context: .}}
stages:
  staging:
    account: "{A}"
    branch: integration
    gate: {{alarms: ["iris-staging-*"]}}
{staging_role}
  prod:
    account: "{B}"
    branch: master
    promote_from: staging
    gate: {{alarms: ["iris-prod-*"]}}
{prod_role}
"""


def caller(account: str, partition: str = "aws") -> accounts.Caller:
    return accounts.Caller.parse(f"arn:{partition}:sts::{account}:assumed-role/Admin/alice@example.com")


SINGLE = parse(cfg_text())
MULTI = parse(cfg_text(f'accounts: {{tooling: "{C}"}}'))


def test_single_account_config_never_assumes_a_role():
    for who in (A, B, C):
        assert accounts.stage_role(SINGLE, "prod", caller(who)) is None
        assert accounts.ledger_role(SINGLE, caller(who)) is None
    assert accounts.ledger_account(SINGLE) is None and not accounts.multi_account(SINGLE)
    assert accounts.ledger_stack(SINGLE, "prod") == "iris-prod-stage"


@pytest.mark.parametrize(("who", "stage", "expected"), [
    (C, "staging", f"arn:aws:iam::{A}:role/iris-staging-deploy"),
    (C, "prod", f"arn:aws:iam::{B}:role/iris-prod-deploy"),
    (A, "staging", None),  # already in the stage's account: its own credentials
    (A, "prod", f"arn:aws:iam::{B}:role/iris-prod-deploy"),
    (B, "prod", None),
])
def test_stage_role_when_the_caller_is_elsewhere(who, stage, expected):
    choice = accounts.stage_role(MULTI, stage, caller(who))
    assert (choice.arn if choice else None) == expected
    if choice:
        assert choice.account == MULTI.stages[stage].account and choice.default
        assert choice.session_name == f"pt-{stage}-alice@example.com"


def test_ledger_role_only_from_outside_the_tooling_account():
    assert accounts.ledger_role(MULTI, caller(C)) is None
    choice = accounts.ledger_role(MULTI, caller(A))
    assert choice.arn == f"arn:aws:iam::{C}:role/iris-ledger" and choice.field == "accounts.ledger_role"
    assert accounts.ledger_stack(MULTI, "prod") == "iris-ledger"
    assert accounts.ledger_region(MULTI) == "us-east-1"


def test_explicit_roles_and_partition():
    cfg = parse(cfg_text(f'accounts: {{tooling: "{C}", region: eu-west-1, '
                         f'ledger_role: "arn:aws-cn:iam::{C}:role/shared-ledger"}}',
                         prod_role=f'    role: "arn:aws-cn:iam::{B}:role/custom/prod-deployer"'))
    assert accounts.stage_role(cfg, "prod", caller(C, "aws-cn")).arn == f"arn:aws-cn:iam::{B}:role/custom/prod-deployer"
    # derived names take the caller's partition
    derived = accounts.stage_role(cfg, "staging", caller(C, "aws-cn"))
    assert derived.arn == f"arn:aws-cn:iam::{A}:role/iris-staging-deploy"
    assert accounts.ledger_role(cfg, caller(A, "aws-cn")).arn == f"arn:aws-cn:iam::{C}:role/shared-ledger"
    assert accounts.ledger_region(cfg) == "eu-west-1"
    hint = accounts.stage_role(cfg, "prod", caller(C)).hint("arn:caller")
    assert "set by stages.prod.role in pipeline.yml" in hint and "arn:caller" in hint


def test_a_stage_role_alone_turns_on_role_assumption():
    cfg = parse(cfg_text(prod_role=f'    role: "arn:aws:iam::{B}:role/deployer"'))
    assert accounts.multi_account(cfg) and accounts.ledger_account(cfg) is None
    assert accounts.stage_role(cfg, "prod", caller(A)).arn == f"arn:aws:iam::{B}:role/deployer"
    assert accounts.stage_role(cfg, "staging", caller(B)).arn == f"arn:aws:iam::{A}:role/iris-staging-deploy"


def test_session_name_is_a_valid_role_session_name():
    long = accounts.Caller.parse(f"arn:aws:sts::{A}:assumed-role/R/" + "x y!" * 30)
    name = accounts.session_name("staging", long)
    assert len(name) <= 64 and name.startswith("pt-staging-") and " " not in name and "!" not in name


@pytest.mark.parametrize("bad", ["arn:aws:iam::1:role/x", "not-an-arn", "arn:aws:sts::abc:user/x"])
def test_caller_parse_rejects_non_arns(bad):
    with pytest.raises(ValueError):
        accounts.Caller.parse(bad)


@pytest.mark.parametrize(("who", "refused"), [(A, True), (B, True), ("123456789012", False)])
def test_promotion_across_accounts_without_a_shared_ledger(who, refused):
    if refused:
        with pytest.raises(UsageError) as e:
            accounts.check_shared_ledger(SINGLE, "staging", "prod", caller(who))
        assert "different accounts" in e.value.message and "accounts: {tooling:" in e.value.hint
    else:  # a caller in neither account: one emulated account (local mode), one ledger
        accounts.check_shared_ledger(SINGLE, "staging", "prod", caller(who))
    accounts.check_shared_ledger(MULTI, "staging", "prod", caller(who))  # shared ledger: always fine


def test_stage_roles_without_a_tooling_account_refuse_from_any_caller():
    cfg = parse(cfg_text(prod_role=f'    role: "arn:aws:iam::{B}:role/deployer"'))
    for who in (A, B, C):  # prod's promotion reads prod's ledger (through its role): no staging records
        with pytest.raises(UsageError) as e:
            accounts.check_shared_ledger(cfg, "staging", "prod", caller(who))
        assert f"the ledger in account {B} does not hold staging's records" in e.value.message


@pytest.mark.parametrize(("block", "staging_role", "message"), [
    ('accounts: {tooling: "12345"}', "", 'accounts.tooling: must be a 12-digit AWS account id'),
    ("accounts: {}", "", "accounts.tooling: required key is missing"),
    ('accounts: {tooling: "333333333333", ledger_role: "iris-ledger"}', "",
     "accounts.ledger_role: must be an IAM role ARN"),
    ('accounts: {tooling: "333333333333", ledger_role: "arn:aws:iam::111111111111:role/x"}', "",
     "accounts.ledger_role: role is in account 111111111111, but accounts.tooling is 333333333333"),
    ("", f'    role: "arn:aws:iam::{B}:role/deployer"',
     f"stages.staging.role: role is in account {B}, but stages.staging.account is {A}"),
    ("", '    role: "deployer"', "stages.staging.role: must be an IAM role ARN"),
    ('accounts: {tooling: "333333333333", ledgr: x}', "", "accounts.ledgr: unknown key (did you mean 'ledger_role'?)"),
])
def test_bad_account_config_is_one_line_each(block, staging_role, message):
    with pytest.raises(ConfigError) as e:
        parse(cfg_text(block, staging_role=staging_role), "pipeline.yml")
    assert any(message in p for p in e.value.problems), e.value.problems


def test_contract_example_stays_valid_with_accounts_added():
    from tests.conftest import CONTRACT_CONFIG

    text = CONTRACT_CONFIG.read_text()
    assert accounts.ledger_account(parse(text)) is None
    cfg = parse(text + f'\naccounts:\n  tooling: "{C}"\n')
    assert accounts.ledger_account(cfg) == C


# --- AssumeRole failures: one line, naming the role and the pipeline.yml key ----------------------


def _app(tmp_path, text: str) -> tuple[App, Stubber]:
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    app = App(config_path=str(path))
    stub = Stubber(app.aws().client("sts"))  # the caller's own STS client (no stage: no role)
    stub.add_response("get_caller_identity", {"UserId": "AIDA", "Account": C,
                                              "Arn": f"arn:aws:sts::{C}:assumed-role/ci/run-7"})
    return app, stub


@pytest.mark.parametrize(("prod_role", "field_text"), [
    ("", "default for stages.prod.role (created by the stack iris-prod-stage)"),
    (f'    role: "arn:aws:iam::{B}:role/deployer"', "set by stages.prod.role in pipeline.yml"),
])
def test_access_denied_on_assume_role_is_one_clear_line(tmp_path, prod_role, field_text):
    app, stub = _app(tmp_path, cfg_text(f'accounts: {{tooling: "{C}"}}', prod_role=prod_role))
    role = f"arn:aws:iam::{B}:role/" + ("deployer" if prod_role else "iris-prod-deploy")
    stub.add_client_error("assume_role", service_error_code="AccessDenied", http_status_code=403,
                          service_message=f"User: arn:aws:sts::{C}:assumed-role/ci/run-7 is not authorized to "
                                          f"perform: sts:AssumeRole on resource: {role}",
                          expected_params={"RoleArn": role, "RoleSessionName": "pt-prod-run-7"})
    with stub, pytest.raises(AwsError) as e:
        app.aws("prod").client("lambda")
    err = e.value
    assert err.exit_code == 2 and err.code == "AccessDenied" and "\n" not in err.message
    assert err.message.startswith(f"cannot assume role {role} (account {B}): AccessDenied")
    assert field_text in err.hint and f"arn:aws:sts::{C}:assumed-role/ci/run-7" in err.hint
    stub.assert_no_pending_responses()


def test_assumed_stage_session_uses_the_role_credentials_and_keeps_the_caller(tmp_path):
    app, stub = _app(tmp_path, cfg_text(f'accounts: {{tooling: "{C}"}}'))
    stub.add_response("assume_role", {
        "Credentials": {"AccessKeyId": "ASIAPRODEXAMPLE0001", "SecretAccessKey": "s" * 40, "SessionToken": "tok",
                        "Expiration": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
        "AssumedRoleUser": {"AssumedRoleId": "AROA:pt-prod-run-7",
                            "Arn": f"arn:aws:sts::{B}:assumed-role/iris-prod-deploy/pt-prod-run-7"}},
        expected_params={"RoleArn": f"arn:aws:iam::{B}:role/iris-prod-deploy", "RoleSessionName": "pt-prod-run-7"})
    with stub:
        prod = app.aws("prod")
        creds = prod.session.get_credentials().get_frozen_credentials()
        assert creds.access_key == "ASIAPRODEXAMPLE0001" and creds.token == "tok"
        assert prod.account_id() == B
        assert prod.caller_arn() == f"arn:aws:sts::{C}:assumed-role/ci/run-7"  # approvals name the person
        assert app.aws("prod") is prod  # one session per role, reused
        assert app.ledger_aws("prod") is app.aws()  # caller in the tooling account: ledger direct
    stub.assert_no_pending_responses()


def test_config_show_names_the_roles_and_the_ledger_location():
    data = MULTI.resolved()
    assert data["stages"]["prod"]["deploy_role"] == f"arn:aws:iam::{B}:role/iris-prod-deploy"
    assert data["ledger"] == {"table": "iris-ledger", "account": C, "region": "us-east-1",
                              "role": f"arn:aws:iam::{C}:role/iris-ledger", "stack": "iris-ledger"}
    assert "ledger" not in SINGLE.resolved()


def test_single_account_override_never_calls_sts(tmp_path, monkeypatch):
    """`pt local up` exports PT_SINGLE_ACCOUNT=1: the local stack is one account, whatever the config says."""
    monkeypatch.setenv("PT_SINGLE_ACCOUNT", "1")
    path = tmp_path / "pipeline.yml"
    path.write_text(cfg_text(f'accounts: {{tooling: "{C}"}}'))
    app = App(config_path=str(path))
    base = app.aws()
    with Stubber(base.client("sts")):  # no responses queued: any STS call would raise
        assert app.aws("prod") is base and app.ledger_aws("prod") is base
        app.check_shared_ledger("prod")
    from pipeline_tools.local.stack import env_vars

    assert env_vars({"moto": {"endpoint": "http://127.0.0.1:1"}, "registry": {"host": "h"}})["PT_SINGLE_ACCOUNT"] == "1"
