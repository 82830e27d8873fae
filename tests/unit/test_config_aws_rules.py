# ruff: noqa: E501  (one case per line reads best)
"""`pt config validate` rejects what AWS would reject: one exact FILE:LINE: PATH: MESSAGE per case."""

from __future__ import annotations

import pytest

from pipeline_tools.core import awsnames
from pipeline_tools.core.config import parse

from .test_config import GOOD, problems, sub

P60 = "p" * 60
TWO_FUNCTIONS = sub("    timeout: 30\n", "    timeout: 30\n  b-predict:\n    image: model\n")
SAME_ACCOUNT = sub('"222222222222"', '"111111111111"', TWO_FUNCTIONS)

# (case, mutated pipeline.yml, the exact problem line expected among those reported)
CASES = [
    ("function name over 64", sub("  predict:\n", f"  {P60}:\n"),
     f"pipeline.yml:9: functions.{P60}: Lambda function name 'iris-staging-{P60}' is 73 characters; AWS allows at most 64 (stage staging, function {P60})"),
    ("ECR repository uppercase", sub("  model:\n", "  Model:\n", sub("image: model", "image: Model")),
     "pipeline.yml:4: images.Model: ECR repository name 'iris-Model' must be lowercase letters and digits, separated by single '.', '_', '__' or dashes (optionally in '/' segments) (image Model)"),
    ("bucket uppercase from template", sub('"{project}-{stage}-artifacts"', '"{project}-{stage}-Artifacts"'),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name 'iris-staging-Artifacts' must be lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit (stage staging)"),
    ("bucket too long", sub('"{project}-{stage}-artifacts"', '"{project}-{stage}-' + "a" * 51 + '"'),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name 'iris-staging-" + "a" * 51 + "' is 64 characters; AWS allows 3 to 63 (stage staging)"),
    ("bucket with adjacent dots", sub('"{project}-{stage}-artifacts"', '"{project}..{stage}"'),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name 'iris..staging' must not contain two adjacent periods (stage staging)"),
    ("bucket shaped like an IP address", sub('"{project}-{stage}-artifacts"', '"10.0.0.1"'),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name '10.0.0.1' must not be formatted as an IP address (stage staging)"),
    ("bucket shared by two stages", sub('"{project}-{stage}-artifacts"', '"{project}-artifacts"'),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name 'iris-artifacts' (stage prod) is also derived for stage staging (S3 bucket names are global: put {stage} in artifacts.bucket); rename one of them"),
    ("default bucket of a stage name with '_'", sub("  prod:\n", "  prod_eu:\n"),
     "pipeline.yml:45: artifacts.bucket: S3 bucket name 'iris-prod_eu-artifacts' must be lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit (stage prod_eu)"),
    ("stack name of a stage name with '_'", sub("  prod:\n", "  prod_eu:\n"),
     "pipeline.yml:27: stages.prod_eu: CloudFormation stack name 'iris-prod_eu-stage' must start with a letter and contain only letters, digits and '-' (stage prod_eu)"),
    ("role name over 64", sub("  prod:\n", f"  {P60}:\n"),
     f"pipeline.yml:27: stages.{P60}: IAM role name 'iris-{P60}-deploy' is 72 characters; AWS allows at most 64 (stage {P60})"),
    ("user alarm name over 255", sub("    timeout: 30\n", "    timeout: 30\n    alarms: [{name: " + "a" * 240 + ", metric: Errors, threshold: 1}]\n"),
     "pipeline.yml:14: functions.predict.alarms[0].name: alarm name 'iris-staging-predict-" + "a" * 77 + "…' is 261 characters; AWS allows at most 255 (stage staging, function predict, alarm " + "a" * 60 + "… (240 characters))"),
    ("user alarm named like a generated one", sub("    timeout: 30\n", "    timeout: 30\n    alarms: [{name: errors, metric: Errors, threshold: 1}]\n"),
     "pipeline.yml:14: functions.predict.alarms[0].name: alarm name 'iris-staging-predict-errors' (stage staging, function predict, alarm errors) is also derived for stage staging, function predict, generated alarm errors (in the same account and region); rename one of them"),
    ("two functions derive one name in one account", sub("  prod:\n", "  staging-b:\n", SAME_ACCOUNT),
     "pipeline.yml:9: functions.predict: Lambda function name 'iris-staging-b-predict' (stage staging-b, function predict) is also derived for stage staging, function b-predict (in the same account and region); rename one of them"),
    ("stage region not a region", sub("    branch: master\n", "    branch: master\n    region: europe\n"),
     "pipeline.yml:30: stages.prod.region: must be an AWS region like us-east-1 (got 'europe')"),
    ("reserved Lambda environment key", sub("    timeout: 30\n", "    timeout: 30\n    environment: {AWS_REGION: eu-west-1}\n"),
     "pipeline.yml:14: functions.predict.environment.AWS_REGION: 'AWS_REGION' is reserved by Lambda (the runtime sets it); use another name"),
    ("reserved _HANDLER", sub("    timeout: 30\n", "    timeout: 30\n    environment:\n      _HANDLER: x\n"),
     "pipeline.yml:15: functions.predict.environment._HANDLER: '_HANDLER' is reserved by Lambda (the runtime sets it); use another name"),
    ("environment key with a dash", sub("    timeout: 30\n", "    timeout: 30\n    environment: {MODEL-DIR: x}\n"),
     "pipeline.yml:14: functions.predict.environment.MODEL-DIR: environment key 'MODEL-DIR' must start with a letter and have at least 2 characters: letters, digits and '_'"),
    ("environment over 4 KB", sub("    timeout: 30\n", "    timeout: 30\n    environment: {BIG: " + "x" * 4100 + "}\n"),
     "pipeline.yml:14: functions.predict.environment: environment is 4103 bytes; Lambda allows at most 4096 bytes (keys + values)"),
    ("registry with a scheme", sub("region: us-east-1\n", "region: us-east-1\nregistry: https://ghcr.io/\n"),
     "pipeline.yml:3: registry: must be a registry host[:port] without a scheme (got 'https://ghcr.io/'); write 'ghcr.io'"),
    ("stage registry with a path", sub("    branch: master\n", "    branch: master\n    registry: host:5000/x y\n"),
     "pipeline.yml:30: stages.prod.registry: must be a registry host[:port], e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com (got 'host:5000/x y')"),
    ("zoo role not an ARN", GOOD + "zoo:\n  role: my-role\n",
     "pipeline.yml:48: zoo.role: must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME (a 12-digit account, a role name of at most 64 characters) (got 'my-role')"),
    ("gate poll zero", sub("poll: 5s", "poll: 0s"),
     "pipeline.yml:26: stages.staging.gate.poll: must be more than 0s (the gate would poll without pause)"),
    ("interval zero", sub("interval: 60s", "interval: 0"),
     "pipeline.yml:21: stages.staging.deploy.interval: must be more than 0s (traffic steps need time to be watched)"),
    ("bake negative", sub("bake: 300s", "bake: -5"),
     "pipeline.yml:22: stages.staging.deploy.bake: must not be negative (got -5)"),
    ("alarm period CloudWatch rejects", sub("    timeout: 30\n", "    timeout: 30\n    alarms: [{name: e, metric: Errors, threshold: 1, period: 45s}]\n"),
     "pipeline.yml:14: functions.predict.alarms[0].period: CloudWatch alarm periods are 10s, 30s or a multiple of 60s (got 45s)"),
    ("empty branch", sub("branch: master", 'branch: ""'),
     "pipeline.yml:29: stages.prod.branch: must not be empty: give the git branch that deploys this stage"),
    ("blank alarm prefix", sub('alarms: ["iris-staging-*"]', 'alarms: ["  "]'),
     "pipeline.yml:24: stages.staging.gate.alarms[0]: must not be empty: an empty alarm prefix would match every alarm in the account"),
    ("empty dockerfile", sub("dockerfile: docker/model/Dockerfile", 'dockerfile: ""'),
     "pipeline.yml:6: images.model.dockerfile: must not be empty"),
    ("empty handler", sub("handler: app.handler", "handler: ''"),
     "pipeline.yml:11: functions.predict.handler: must not be empty"),
    ("a 100 KB value is not echoed back", sub("region: us-east-1", "region: " + "x" * 100_000),
     "pipeline.yml:2: region: must be an AWS region like us-east-1 (got '" + "x" * 100 + "…' (100000 characters))"),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_config_aws_would_reject_is_rejected(name, text, expected):
    lines = problems(text)
    assert expected in lines, lines


def test_limits_accept_the_boundary():
    """The longest names AWS accepts pass; one character more is rejected."""
    assert awsnames.lambda_function("a" * 64) is None and awsnames.lambda_function("a" * 65)
    assert awsnames.iam_role("a" * 64) is None and awsnames.iam_role("a" * 65)
    assert awsnames.s3_bucket("a" * 63) is None and awsnames.s3_bucket("a" * 64)
    assert awsnames.s3_bucket("abc") is None and awsnames.s3_bucket("ab")
    assert awsnames.alarm("a" * 255) is None and awsnames.alarm("a" * 256)
    assert awsnames.ecr_repository("ab") is None and awsnames.ecr_repository("a")
    assert awsnames.log_group("/aws/lambda/" + "a" * 500) is None and awsnames.log_group("/" + "a" * 512)


@pytest.mark.parametrize("name,ok", [
    ("iris-staging-artifacts", True), ("my.bucket.name", True), ("a-b", True),
    ("-abc", False), ("abc-", False), ("ab_c", False), ("xn--abc", False), ("sthree-x", False),
    ("amzn-s3-demo-x", False), ("abc-s3alias", False), ("abc--ol-s3", False), ("abc.mrap", False),
    ("abc--x-s3", False), ("abc--table-s3", False), ("192.168.5.4", False), ("1.2.3", True),
])
def test_bucket_rules(name, ok):
    assert (awsnames.s3_bucket(name) is None) is ok, awsnames.s3_bucket(name)


@pytest.mark.parametrize("key,ok", [
    ("MODEL_DIR", True), ("Ab", True), ("A", False), ("_X", False), ("1X", False), ("X-Y", False),
    ("AWS_LAMBDA_EXEC_WRAPPER", True), ("PATH", True),
    *[(k, False) for k in sorted(awsnames.LAMBDA_RESERVED_ENV)],
])
def test_lambda_environment_keys(key, ok):
    assert (awsnames.lambda_env_key(key) is None) is ok


@pytest.mark.parametrize("value,ok", [
    ("127.0.0.1:5055", True), ("123456789012.dkr.ecr.us-east-1.amazonaws.com", True), ("ghcr.io", True),
    ("http://127.0.0.1:5055", False), ("ghcr.io/", False), ("host with space", False), ("", False),
])
def test_registry_hosts(value, ok):
    assert (awsnames.registry_host(value) is None) is ok


@pytest.mark.parametrize("value,ok", [
    ("arn:aws:iam::123456789012:role/iris-zoo", True), ("arn:aws-cn:iam::123456789012:role/path/x", True),
    ("arn:aws:iam::123456789012:role/" + "r" * 64, True), ("arn:aws:iam::123456789012:role/" + "r" * 65, False),
    ("arn:aws:iam::1234:role/x", False), ("arn:aws:iam::123456789012:user/x", False), ("iris-zoo", False),
])
def test_role_arns(value, ok):
    assert (awsnames.iam_role_arn(value) is None) is ok


def test_pt_registry_with_a_scheme_is_a_usage_error(monkeypatch):
    from pipeline_tools.core.errors import UsageError

    monkeypatch.setenv("PT_REGISTRY", "https://127.0.0.1:5055")
    with pytest.raises(UsageError, match=r"^PT_REGISTRY must be a registry host\[:port\] without a scheme") as e:
        parse(GOOD).registry_for("prod")
    assert e.value.exit_code == 2


def test_derived_role_names_match_the_stacks_and_sagemaker():
    """configcheck derives the roles the stacks create; keep the two in step."""
    from pipeline_tools.core import configcheck
    from pipeline_tools.targets import sagemaker

    assert configcheck.sagemaker_role("p", "s") == sagemaker.role_name("p", "s")
    stage_stack = pytest.importorskip("pipeline_tools.infra.stacks.stage_stack")
    assert configcheck.codebuild_role("p", "s") == stage_stack.codebuild_role_name("p", "s")


def test_contract_names_stay_valid():
    """The example configs derive only names AWS accepts (no false positives)."""
    from pipeline_tools.core.config import load

    from ..conftest import CONTRACT_CONFIG, EXAMPLE_CONFIG

    for path in (CONTRACT_CONFIG, EXAMPLE_CONFIG):
        assert load(path).project == "iris"
    assert parse(GOOD).project == "iris"


# --- no input makes validation crash --------------------------------------------------------

def _mutations():
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**13), st.floats(allow_nan=False),
                        st.text(max_size=80), st.sampled_from(["", " ", "0s", "-1", "x" * 300, "AWS_REGION",
                                                               "https://h/", "{stage}", "..", "1.2.3.4"]))
    values = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=20), st.integers()), inner,
                                                     max_size=3)), max_leaves=8)
    paths = st.sampled_from([
        ("project",), ("region",), ("registry",), ("images",), ("images", "model"), ("images", "model", "context"),
        ("functions",), ("functions", "predict"), ("functions", "predict", "environment"),
        ("functions", "predict", "alarms"), ("functions", "x" * 70), ("stages",), ("stages", "staging"),
        ("stages", "staging", "region"), ("stages", "staging", "gate"), ("stages", "staging", "gate", "poll"),
        ("stages", "staging", "deploy", "interval"), ("stages", "prod", "registry"), ("stages", "Prod_2"),
        ("artifacts",), ("artifacts", "bucket"), ("artifacts", "paths"), ("targets",), ("targets", "sagemaker"),
        ("zoo",), ("zoo", "models"), ("zoo", "consumers"),
    ])
    return st.lists(st.tuples(paths, values), min_size=1, max_size=4)


def _apply(data: dict, path: tuple, value) -> None:
    cur = data
    for key in path[:-1]:
        if not isinstance(cur.get(key), dict):
            cur[key] = {}
        cur = cur[key]
    cur[path[-1]] = value


def test_any_mutation_of_a_good_config_is_valid_or_a_config_error():
    """Validation (pydantic + cross checks + AWS rules) never raises anything but ConfigError."""
    import yaml
    from hypothesis import HealthCheck, given, settings

    from pipeline_tools.core.errors import ConfigError

    base = yaml.safe_load(GOOD)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutations())
    def run(mutations):
        import copy

        data = copy.deepcopy(base)
        for path, value in mutations:
            _apply(data, path, value)
        try:
            text = yaml.safe_dump(data)
        except yaml.YAMLError:
            return
        try:
            parse(text)
        except ConfigError as e:
            assert e.lines() and all(ln.startswith("pipeline.yml:") for ln in e.lines()), e.lines()
            assert all(len(ln) < 2000 for ln in e.lines())

    run()


@pytest.mark.parametrize("text,expected", [
    (sub("    memory: 1024", "    memory: 10\x0024"),
     "pipeline.yml:12: control character U+0000 (column 15): YAML allows only printable characters, tabs and newlines"),
    (sub("branch: master", "branch: mas\x07ter"),
     "pipeline.yml:29: control character U+0007 (column 16): YAML allows only printable characters, tabs and newlines"),
    (GOOD + "\x00", "pipeline.yml:47: control character U+0000 (column 1): YAML allows only printable characters, tabs and newlines"),
])
def test_a_control_character_is_reported_on_its_own_line(text, expected):
    assert problems(text) == [expected]


def test_one_mistake_is_one_line():
    """A derived name is not re-reported for a mistake another check already names."""
    assert problems(sub('"{project}-{stage}-artifacts"', '"{project}-{env}-artifacts"')) == [
        "pipeline.yml:45: artifacts.bucket: unknown placeholder {env}; use {project} and {stage}"]
    two = sub("  prod:\n", "  staging-b:\n", SAME_ACCOUNT)
    dup = [ln for ln in problems(two) if "is also derived" in ln]
    assert len(dup) == 1 and "Lambda function name 'iris-staging-b-predict'" in dup[0]
