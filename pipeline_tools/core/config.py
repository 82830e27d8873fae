"""pipeline.yml: typed models, loading with file:line:path errors, JSON Schema export.

The example file in the architecture docs is the contract: fields may be added, never renamed.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from pipeline_tools.core import names
from pipeline_tools.core.errors import ConfigError

DEFAULT_CONFIG = "pipeline.yml"

# --- scalar types -----------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(value: Any) -> float:
    """'90s', '5m', '1h30m', '0s' or a number of seconds → seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 30s, 5m or 1h (got {value!r})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if value.strip() and m and any(m.groups()):
            h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
            return h * 3600 + mnt * 60 + s
    raise ValueError(f"must be a duration like 30s, 5m or 1h (got {value!r})")


format_duration = names.format_duration  # 1h2m3s; pure, shared with the lean views


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$"},
                              {"type": "number", "minimum": 0}],
                    "description": "duration: 30s, 5m, 1h30m or seconds"}),
]

ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]+$"

_SECRET_RE = re.compile(r"^(ssm|env):(\S+)$")


def _check_secret_ref(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if _SECRET_RE.match(value):
        return value
    if re.match(r"^[a-z]+://", value) or len(value) > 20:
        raise ValueError(
            "looks like a literal secret; store it in SSM (write ssm:/name) or an environment "
            "variable (write env:NAME) instead"
        )
    raise ValueError(f"must be a reference ssm:NAME or env:NAME (got {value!r})")


SecretRef = Annotated[
    str,
    BeforeValidator(_check_secret_ref),
    WithJsonSchema({"type": "string", "pattern": r"^(ssm|env):\S+$",
                    "description": "secret reference: ssm:/parameter/name or env:VARIABLE"}),
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections -------------------------------------------------------------------------------

class ImageConfig(_Strict):
    context: str = Field(".", description="build context directory, relative to the config file")
    dockerfile: str = Field("Dockerfile", description="Dockerfile path, relative to the config file")
    build_args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None
    platform: str | None = Field(None, description="e.g. linux/amd64")
    test_command: list[str] | None = Field(None, description="what `pt test` runs in the image")

    @field_validator("build_args", mode="before")
    @classmethod
    def _stringify_args(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: (str(x).lower() if isinstance(x, bool) else str(x)) if isinstance(x, int | float | bool)
                    else x for k, x in v.items()}
        return v


class AlarmConfig(_Strict):
    """A user-defined alarm on a function metric (the StageStack creates it)."""

    name: str = Field(description="suffix: alarm is <project>-<stage>-<function>-<name>")
    metric: str = Field(description="metric name in namespace, e.g. Errors")
    namespace: str = "AWS/Lambda"
    statistic: str = "Sum"
    threshold: float
    comparison: Literal["gt", "ge", "lt", "le"] = "ge"
    period: Duration = 60.0
    evaluation_periods: int = Field(1, ge=1)


class SmokeConfig(_Strict):
    """A smoke invoke of the new version before any traffic moves (`pt deploy`)."""

    payload: dict[str, Any] = Field(default_factory=dict, description="event the new version is invoked with")
    expect_status: int | None = Field(None, description="statusCode the response must carry (e.g. 200)")
    expect_keys: list[str] = Field(default_factory=list, description="keys the response (or its JSON body) must have")


class FunctionConfig(_Strict):
    image: str
    handler: str | None = Field(None, description="image CMD override, e.g. app.handler")
    memory: int = Field(512, ge=128, le=10240)
    timeout: int = Field(30, ge=1, le=900)
    environment: dict[str, str] = Field(default_factory=dict)
    alarms: list[AlarmConfig] = Field(default_factory=list)
    ephemeral_storage: int = Field(512, ge=512, le=10240, description="/tmp size in MB (512–10,240)")
    reserved_concurrency: int | None = Field(
        None, ge=0, description="reserved concurrent executions; pt deploy sets it with the release. Absent: pt "
        "leaves the function's setting alone; an explicit null removes it")
    smoke: SmokeConfig | None = Field(None, description="invoke the new version before traffic moves; "
                                                        "a failure ends the deploy at the old version")


class DeployConfig(_Strict):
    strategy: Literal["all-at-once", "canary", "linear"] = "all-at-once"
    percent: int | None = Field(None, ge=1, le=99, description="canary: first step; linear: step size")
    interval: Duration = Field(60.0, description="time between traffic steps")
    bake: Duration = Field(0.0, description="watch alarms this long after 100 %")
    keep_versions: int = Field(5, ge=1, description="old versions kept; older unreferenced ones are deleted")

    @model_validator(mode="after")
    def _percent_needed(self) -> DeployConfig:
        if self.strategy in ("canary", "linear") and self.percent is None:
            raise ValueError(f"strategy {self.strategy} needs `percent` (1-99)")
        return self


class SignalMetric(_Strict):
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1, description="metric name, e.g. Errors")
    dimensions: dict[str, str] = Field(default_factory=dict, description="{project} and {stage} are substituted")
    stat: str = Field("Average", description="Sum, Average, Maximum, p99, …")


class GateSignal(_Strict):
    """One more thing the gate judges besides alarms (docs/deploy.md, "Gate signals")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    metric: SignalMetric | None = Field(None, description="one CloudWatch metric")
    metric_math: str | None = Field(None, description="a metric-math expression over `metrics` (their keys are ids)")
    metrics: dict[str, SignalMetric] = Field(default_factory=dict)
    report: str | None = Field(None, pattern=r"^s3://[^/]+/.+",
                               description="s3://bucket/key of a JSON report, e.g. Model Monitor's "
                                           "constraint_violations.json; {project} and {stage} are substituted")
    field: str | None = Field(None, description="dotted path in the report; a list counts its items "
                                                "(e.g. violations)")
    threshold: float
    comparison: Literal[">", ">=", "<", "<="] = Field(">=", description="the gate fails when VALUE <comparison> "
                                                                         "threshold")
    period: Duration = Field(300.0, description="metric signals: the value is the last this-long window")
    missing: Literal["fail", "pass", "wait"] = Field("fail", description="no datapoints / no report yet")

    @model_validator(mode="after")
    def _one_source(self) -> GateSignal:
        given = [k for k in ("metric", "metric_math", "report") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of metric, metric_math or report"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.metric_math is not None:
            if not self.metrics:
                raise ValueError("metric_math needs `metrics: {id: {namespace, name, dimensions, stat}}`")
            bad = [k for k in self.metrics if not re.fullmatch(r"[a-z][a-zA-Z0-9_]*", k)]
            if bad:
                raise ValueError(f"metric ids must start with a lower-case letter (letters, digits, _): {bad[0]!r}")
        if self.report is not None and not self.field:
            raise ValueError("a report signal needs `field` (dotted path of the number, or of a list to count)")
        if self.period < 60 or self.period % 60:
            raise ValueError("period must be a multiple of 60 seconds")
        return self


class GateConfig(_Strict):
    alarms: list[str] = Field(default_factory=list, description="alarm names or prefixes (trailing *)")
    signals: list[GateSignal] = Field(default_factory=list, description="metric-math and report signals, judged "
                                                                        "with the alarms")
    insufficient_data: Literal["fail", "pass", "wait"] = "fail"
    preexisting_alarm: Literal["block", "ignore"] = "block"
    poll: Duration = 5.0
    allow_no_alarms: bool = Field(False, description="true: this stage has no alarms to watch and its gate "
                                                     "passes on the bake time alone (needs alarms: [])")


class ApprovalsConfig(_Strict):
    required: int = Field(1, ge=1, le=10, description="distinct approvers")
    two_person_rule: bool = Field(False, description="approvers must differ from the commit author")
    aliases: dict[str, list[str]] = Field(
        default_factory=dict, description="person → the STS ARNs, role/session names, e-mails and logins that are them")
    allow_declared_actor: bool = Field(
        False, description="accept PT_ACTOR / PT_COMMIT_AUTHOR outside local mode (recorded as declared)")
    unknown_author: Literal["refuse", "extra_approver"] = Field(
        "refuse", description="two_person_rule when the commit author is unknown: refuse, or require one more approver")


class WindowConfig(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    hours: str = Field(description="HH:MM-HH:MM in the window's timezone")
    timezone: str = "UTC"

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        m = _HOURS_RE.match(v.strip())
        if not m:
            raise ValueError(f"must be HH:MM-HH:MM, e.g. 02:00-05:00 (got {v!r})")
        start = int(m[1]) * 60 + int(m[2])
        end = int(m[3]) * 60 + int(m[4])
        if end > 24 * 60:
            raise ValueError(f"end time is after 24:00 (got {v!r})")
        if start == end:
            raise ValueError(f"window is empty: start equals end (got {v!r})")
        return v.strip()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {v!r} (use an IANA name like Europe/Berlin)") from None
        return v


class TeardownEc2Config(_Strict):
    instances: list[str] = Field(default_factory=list, description="instance ids (i-…) or Name tag values")
    amis: list[str] = Field(default_factory=list, description="AMI ids (ami-…) or AMI names (own AMIs only)")
    tags: dict[str, str] = Field(default_factory=dict, description="also every instance and own AMI with all of "
                                                                   "these tags ({project}/{stage} substituted)")


class StageTeardownConfig(_Strict):
    ec2: TeardownEc2Config | None = Field(None, description="EC2 instances and AMIs (with their snapshots) "
                                                            "`pt teardown` deletes too")


class OpenSearchShippingConfig(_Strict):
    domain_arn: str = Field(pattern=r"^arn:aws[a-z-]*:es:[a-z0-9-]+:\d{12}:domain/[a-z][a-z0-9-]{2,27}$",
                            description="arn:aws:es:REGION:ACCOUNT:domain/NAME (the forwarder may post to it)")
    endpoint: str = Field(pattern=r"^https://[A-Za-z0-9.-]+$", description="https://… domain endpoint")
    groups: list[str] = Field(default_factory=list, description="log groups to ship (default: the stage's "
                                                                "function log groups)")
    index: str = Field("{project}-{stage}-logs", pattern=r"^[a-z0-9{][a-z0-9_{}.-]*$",
                       description="index prefix; a -YYYY.MM.DD suffix is added per day")
    filter_pattern: str = Field("", description="CloudWatch Logs filter pattern (default: every event)")


class StageLogsConfig(_Strict):
    opensearch: OpenSearchShippingConfig | None = None


class StageConfig(_Strict):
    account: str = Field(pattern=r"^\d{12}$", description="12-digit AWS account id")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="defaults to the top-level region")
    branch: str
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    promote_from: str | None = None
    approvals: ApprovalsConfig | None = None
    window: WindowConfig | None = None
    protected: bool | None = Field(None, description="refuse teardown; defaults to true for prod")
    registry: str | None = Field(None, description="registry host instead of the stage's ECR")
    targets: list[str] | None = Field(None, description="target ids `pt deploy` releases, in this order "
                                                        "(lambda:<fn>, sagemaker:<endpoint>, stepfunctions:<name>, "
                                                        "batch:<name>); default: every target of the stage")
    role: str | None = Field(None, pattern=ROLE_ARN_PATTERN,
                             description="role ARN pt assumes for this stage when the caller is in another account "
                                         "(default: <project>-<stage>-deploy in the stage's account; docs/accounts.md)")
    teardown: StageTeardownConfig | None = Field(None, description="more that `pt teardown` deletes (docs/ops.md)")
    logs: StageLogsConfig | None = Field(None, description="log shipping (docs/ops.md, \"Log shipping\")")

    @field_validator("account", mode="before")
    @classmethod
    def _account_str(cls, v: Any) -> Any:
        return str(v).zfill(12) if isinstance(v, int) and not isinstance(v, bool) else v


class AccountsConfig(_Strict):
    """Where the shared ledger lives (docs/accounts.md). Setting it turns on per-stage role assumption."""

    tooling: str = Field(pattern=r"^\d{12}$",
                         description="12-digit id of the tooling account (the ledger table and pipelines live there)")
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$",
                               description="region of the ledger table (default: the top-level region)")
    ledger_role: str | None = Field(None, pattern=ROLE_ARN_PATTERN,
                                    description="role ARN pt assumes to reach the ledger from outside the tooling "
                                                "account (default: <project>-ledger in the tooling account)")

    @field_validator("tooling", mode="before")
    @classmethod
    def _account_str(cls, v: Any) -> Any:
        return str(v).zfill(12) if isinstance(v, int) and not isinstance(v, bool) else v


class NotificationsConfig(_Strict):
    slack_webhook: SecretRef | None = None
    teams_webhook: SecretRef | None = None
    sns: bool = False


class ChangeRecordRepo(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="shown as the repository's block heading")
    path: str = Field(min_length=1, description="git checkout, relative to pipeline.yml's directory")


class ChangeRecordConfig(_Strict):
    repos: list[ChangeRecordRepo] = Field(
        default_factory=list, description="repositories whose commits a change record lists, one block each; the "
                                          "first is the one whose revision deploys record (default: --repo)")


class ArtifactsConfig(_Strict):
    bucket: str = names.default_bucket_template()
    paths: list[str] = Field(default_factory=list)


class CdkConfig(_Strict):
    """Settings only the CDK stacks read (cdk/app.py); context values of the same name override them."""

    github_repository: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                          description="OWNER/NAME of the GitHub repository (pipeline source, OIDC)")
    connection_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):",
                                       description="CodeStar/CodeConnections connection ARN for the pipeline source")
    pt_install: str = Field(default_factory=lambda: _pinned_default(),
                            description="pinned pip requirement of the toolkit CodeBuild runs (default: this pt's "
                                        "exact version, pipeline-tools==X.Y.Z)")
    toolkit_image: str | None = Field(None, pattern=r"^[a-z0-9.-]+(:\d+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$",
                                      description="toolkit image by digest (REGISTRY/REPO@sha256:…) for the CodeBuild "
                                                  "steps that run no docker; default: an image asset built from "
                                                  "pt_install and pushed to the pipeline account's CDK asset ECR")

    @field_validator("pt_install")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if problem := requirement_problem(v):
            raise ValueError(problem)
        return v.strip()
    log_retention_days: int = Field(30, ge=1, description="Lambda log group retention")
    untagged_images_kept: int = Field(10, ge=1, description="ECR lifecycle: untagged images kept per repository")


_PINNED_REQUIREMENT = [
    re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,-]+\])?\s*===?\s*[0-9][0-9A-Za-z.+!-]*$"),   # name==1.2.3
    re.compile(r"^(\S+\s*@\s*)?git\+https://\S+@[0-9a-f]{40}(#\S*)?$"),                         # git@<sha>
    re.compile(r"^(\S+\s*@\s*)?https://\S+#sha256=[0-9a-f]{64}$"),                              # url#sha256
]


def _pinned_default() -> str:
    from pipeline_tools import __version__

    return f"pipeline-tools=={__version__}"


def requirement_problem(req: str) -> str | None:
    """None when `req` names exactly one build of the toolkit; else why not (a moving name or range)."""
    if any(p.match(req.strip()) for p in _PINNED_REQUIREMENT):
        return None
    return (f"{req!r} is not pinned: CodeBuild would install whatever it resolves to on the day of the build; "
            "use NAME==X.Y.Z, git+https://github.com/OWNER/pipeline-tools@<40-hex commit>, or a wheel URL "
            "ending in #sha256=<hash>")


class UserMetricConfig(_Strict):
    """A CloudWatch metric the model publishes per variant (dimensions EndpointName, VariantName)."""

    namespace: str
    name: str
    statistic: Literal["Average", "Sum", "Minimum", "Maximum", "SampleCount"] = "Average"
    better: Literal["higher", "lower"] = Field("higher", description="which direction is an improvement")
    tolerance: float = Field(0.05, ge=0, description="allowed relative regression of shadow vs production")


class ShadowThresholdsConfig(_Strict):
    """Shadow-vs-production limits `pt gate --shadow` checks (SageMaker target)."""

    min_invocations: int = Field(100, ge=0, description="shadow requests needed before deciding (else WAIT)")
    latency_p50_ratio: float = Field(1.2, gt=0, description="shadow ModelLatency p50 ≤ ratio × production")
    latency_p99_ratio: float = Field(1.5, gt=0, description="shadow ModelLatency p99 ≤ ratio × production")
    error_rate_increase: float = Field(0.5, ge=0, description="shadow 5XX rate − production rate, percentage points")
    user_metric: UserMetricConfig | None = None


class SageMakerTargetConfig(_Strict):
    """A SageMaker real-time endpoint deployed with a shadow variant (`pt deploy --target sagemaker`)."""

    endpoint: str = Field(pattern=r"^[a-z][a-z0-9-]{0,20}$", description="endpoint is <project>-<stage>-<endpoint>")
    image: str = Field(description="image of `images:` the model container runs")
    model_artifacts: str = Field(description="S3 prefix in the stage bucket (or s3://bucket/prefix); "
                                             "{stage}/{project} allowed; must hold a pt artifacts manifest")
    instance_type: str = Field("ml.m5.large", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    instance_count: int = Field(1, ge=1, le=100)
    shadow_sampling: int = Field(100, ge=1, le=100, description="% of production requests copied to the shadow")
    data_capture: int = Field(20, ge=0, le=100, description="% of requests whose model output is captured (outputs "
                                                            "only, to s3://<stage bucket>/datacapture/<endpoint>/); "
                                                            "0 = off")
    execution_role: str | None = Field(None, description="role ARN (default: the StageStack's SageMaker role)")
    wait: Duration = Field(1800.0, description="deadline for an endpoint update")
    shadow_bake: Duration | None = Field(None, description="shadow time before the gate may PASS "
                                                           "(default: the stage's deploy.bake)")
    stages: list[str] | None = Field(None, description="stages with this endpoint (default: all)")
    latency_alarm_ms: int = Field(1000, ge=1, description="StageStack alarm: production ModelLatency p99 above this")
    thresholds: ShadowThresholdsConfig = Field(default_factory=ShadowThresholdsConfig)
    mode: Literal["weighted", "shadow"] = Field("weighted", description="release engine (`--target sagemaker`): "
                                                "`weighted` shifts production variant weights by the stage's "
                                                "schedule; `shadow` runs the candidate as a shadow variant, "
                                                "compares it, then promotes it")
    production_variant: str | None = Field(None, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                                           description="the endpoint's production variant name (default "
                                                       "`production`; e.g. `AllTraffic` for an endpoint the "
                                                       "SageMaker SDK made); the StageStack alarms watch it")
    shadow_wait: Duration = Field(3600.0, description="mode shadow: after shadow_bake, how long a release waits "
                                                      "for the comparison to decide before it fails")


class StepFunctionsTargetConfig(_Strict):
    """A state machine from the repository's definition, released as a version behind alias `live`."""

    definition: str = Field("step-functions.json", description="Amazon States Language JSON, relative to the config "
                                                               "file; ${Name} placeholders are substituted")
    type: Literal["STANDARD", "EXPRESS"] = "STANDARD"
    substitutions: dict[str, str] = Field(default_factory=dict, description="${Name} -> value; `function:<key>` is "
                                                                            "that function's `live` alias ARN")
    stages: list[str] | None = Field(None, description="stages with this state machine (default: all)")
    smoke_input: dict[str, Any] | None = Field(None, description="input of a smoke execution of the new version; "
                                                                 "it must SUCCEED before traffic moves")
    smoke_timeout: Duration = Field(300.0, description="deadline of the smoke execution")


class BatchTargetConfig(_Strict):
    """An AWS Batch job (Fargate) from an image: each deploy registers a job-definition revision."""

    image: str = Field(description="image of `images:` the job runs")
    command: list[str] | None = Field(None, description="container command (default: the image's CMD)")
    vcpu: float = Field(1.0, description="Fargate vCPU: 0.25, 0.5, 1, 2, 4, 8 or 16")
    memory: int = Field(2048, description="MiB, a Fargate size valid for the vCPU")
    timeout: int = Field(3600, ge=60, description="seconds before Batch stops a job attempt")
    retry: int = Field(1, ge=1, le=10, description="attempts per job")
    environment: dict[str, str] = Field(default_factory=dict)
    schedule: str | None = Field(None, description="EventBridge Scheduler expression, e.g. cron(0 3 * * ? *)")
    smoke_command: list[str] | None = Field(None, description="command of the smoke job that gates a deploy "
                                                              "(default: `command`)")
    stages: list[str] | None = Field(None, description="stages with this job (default: all)")
    smoke: bool = Field(True, description="run a smoke job on the new revision before the schedule moves")
    smoke_timeout: Duration = Field(1800.0, description="deadline of the smoke job")


class TargetsConfig(_Strict):
    """Deploy targets besides the Lambda functions (`functions:` are the `lambda:<key>` targets)."""

    sagemaker: SageMakerTargetConfig | None = None
    stepfunctions: dict[str, StepFunctionsTargetConfig] = Field(default_factory=dict)
    batch: dict[str, BatchTargetConfig] = Field(default_factory=dict)



class ApiConfig(_Strict):
    """The service's REST API: POST /run starts the state machine, GET /executions/{id} reads it."""

    throttle_rate: float = Field(50.0, gt=0, description="steady requests per second")
    throttle_burst: int = Field(100, ge=1, description="burst requests")


_IDENTITY_POOL_RE = r"^[a-z]{2}(-[a-z]+)+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_USER_POOL_RE = r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]{1,}$"


class AccessConfig(_Strict):
    """Cognito-group access to a service: a role per service assumed through the identity pool."""

    identity_pool_id: str = Field(pattern=_IDENTITY_POOL_RE, description="REGION:UUID of the Cognito identity pool")
    user_pool_id: str | None = Field(None, pattern=_USER_POOL_RE,
                                     description="REGION_ID of the user pool whose groups get access")
    groups: list[str] = Field(default_factory=list, description="Cognito groups given access when the stack deploys")
    prefixes: list[str] = Field(default_factory=lambda: ["*"],
                                description="bucket prefixes the groups may read and write (default: all)")


class ServiceConfig(_Strict):
    """A model service (one stack per service and stage): API → state machine → Lambda, bucket, access."""

    function: str = Field(description="key of `functions:`: the model Lambda")
    state_machine: str | None = Field(None, description="key of `targets.stepfunctions` the API starts")
    batch: list[str] = Field(default_factory=list, description="keys of `targets.batch` that belong to the service")
    bucket: str = Field("{project}-{service}-{stage}", description="the service bucket ({project}/{service}/{stage})")
    api: ApiConfig | None = Field(default_factory=ApiConfig, description="null: no API")
    access: AccessConfig | None = None
    parameters: str | None = Field(None, description="hyperparameter file (YAML/JSON) kept in SSM under "
                                                     "/pt/<service>/<stage>/")
    scenarios: str = Field("scenarios", description="directory of scenario folders (one folder per scenario)")
    stages: list[str] | None = Field(None, description="stages with this service (default: all)")


def parse_age(value: Any) -> float:
    """'14d', '36h', '90m' or seconds → seconds (a duration that may also be given in days)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?d\s*", value):
        return float(value.strip()[:-1]) * 86400
    return parse_duration(value)


_AGE_PATTERN = r"^\d+(\.\d+)?d$|^(\d+(\.\d+)?h)?(\d+(\.\d+)?m)?(\d+(\.\d+)?s)?$"
Age = Annotated[float, BeforeValidator(parse_age),
                WithJsonSchema({"anyOf": [{"type": "string", "pattern": _AGE_PATTERN},
                                          {"type": "number", "minimum": 0}],
                                "description": "age: 14d, 36h, 90m or seconds"})]


class ZooModelConfig(_Strict):
    """One whitelisted model of the zoo: a Lambda `<project>-<stage>-<model>` (and `…_copy`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    copy_alongside: bool = Field(False, alias="copy", description="true: deploy <model>_copy next to the running "
                                                                   "one (no consumer re-pointed); false: new version")
    artifacts: str = Field(description="s3://BUCKET/prefix ({bucket} = the stage bucket; {project}, {stage}) or a "
                                       "local directory (relative to pipeline.yml); must hold a pt artifacts manifest")
    image: str | None = Field(None, description="image of `images:` (default: the only image)")
    handler: str | None = Field(None, description="image CMD override")
    memory: int | None = Field(None, ge=128, le=10240)
    timeout: int | None = Field(None, ge=1, le=900)
    environment: dict[str, str] = Field(default_factory=dict)


class ZooConsumerConfig(_Strict):
    """Where a model's qualified function name (`name:version`) is read from by its users."""

    model: str
    ssm: str | None = Field(None, description="SSM parameter name ({project}/{stage} allowed)")
    function: str | None = Field(None, description="Lambda whose environment holds it: a key of `functions:` "
                                                   "or a name ({project}/{stage} allowed)")
    variable: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]*$", description="environment variable")

    @model_validator(mode="after")
    def _one_kind(self) -> ZooConsumerConfig:
        if (self.ssm is None) == (self.function is None):
            raise ValueError("give either `ssm: PARAMETER` or `function:` + `variable:`")
        if self.function is not None and self.variable is None:
            raise ValueError("`function:` needs `variable:` (the environment variable to set)")
        return self


class ZooConfig(_Strict):
    """Model-zoo rollouts (`pt zoo plan|apply|revert|gc`)."""

    models: dict[str, ZooModelConfig] = Field(default_factory=dict, description="the whitelist")
    consumers: list[ZooConsumerConfig] = Field(default_factory=list)
    gc_older_than: Age = Field(14 * 86400.0, description="`pt zoo gc` default age")
    role: str | None = Field(None, description="execution role ARN for model functions pt creates "
                                               "(default: the role of the running <model> function)")
    waves: list[int | str] | None = Field(
        None, description="re-point consumers in waves, the stage's gate between them: counts, percentages "
                          "and \"rest\" (last), e.g. [1, \"10%\", \"rest\"]; default: all at once")
    wave_bake: Duration | None = Field(None, description="gate time between waves (default: the stage's deploy.bake)")
    parallel: int = Field(8, ge=1, le=64, description="models / consumers rolled out at once (`--parallel`)")

    @field_validator("waves")
    @classmethod
    def _waves(cls, v: list[int | str] | None, info: ValidationInfo) -> list[int | str] | None:
        if v is None:
            return v
        from pipeline_tools.targets.zoo_plan import check_coverage

        n = len(info.data.get("consumers") or [])
        try:
            check_coverage(v, n)
        except ValueError as e:
            raise ValueError(f"{e} ({n} in zoo.consumers)" if "place" in str(e) else str(e)) from None
        return v

    @model_validator(mode="after")
    def _names(self) -> ZooConfig:
        for name in self.models:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", name):
                raise ValueError(f"model name {name!r}: lowercase letters, digits and dashes (≤ 40)")
        for c in self.consumers:
            if c.model not in self.models:
                dym = _did_you_mean(c.model, self.models)
                raise ValueError(f"consumer of unknown model '{c.model}'" + (f" ({dym})" if dym else
                                 f" (models: {', '.join(self.models) or 'none'})"))
        return self

class Config(_Strict):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$",
                         description="service name; lowercase, prefixes every resource")
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    registry: str | None = Field(None, description="registry host for all stages (else ECR)")
    images: dict[str, ImageConfig] = Field(min_length=1)
    functions: dict[str, FunctionConfig] = Field(default_factory=dict)
    stages: dict[str, StageConfig] = Field(min_length=1)
    notifications: NotificationsConfig = Field(default_factory=NotificationsConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    change_record: ChangeRecordConfig = Field(default_factory=ChangeRecordConfig)
    cdk: CdkConfig = Field(default_factory=CdkConfig)
    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    zoo: ZooConfig | None = None
    services: dict[str, ServiceConfig] = Field(default_factory=dict,
                                               description="model services: one stack per service and stage")
    accounts: AccountsConfig | None = Field(None, description="tooling account with the shared ledger; stages in "
                                                              "other accounts are reached through their deploy role")

    # Set by load(): where the file lives (paths in it are relative to its directory).
    source: str | None = Field(None, exclude=True, json_schema_extra={"readOnly": True})

    # --- derived names (the naming contract) ---
    @property
    def base_dir(self) -> Path:
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    def stage(self, name: str | None) -> StageConfig:
        from pipeline_tools.core.errors import UsageError

        if not name:
            raise UsageError("no stage given", f"pass --stage ({', '.join(self.stages)}) or set PT_STAGE")
        if name not in self.stages:
            hint = _did_you_mean(name, self.stages) or f"stages are: {', '.join(self.stages)}"
            raise UsageError(f"unknown stage '{name}'", hint)
        return self.stages[name]

    def stage_region(self, stage: str) -> str:
        return self.stages[stage].region or self.region

    def function_name(self, stage: str, function: str) -> str:
        return names.function_name(self.project, stage, function)

    def functions_for_image(self, image: str) -> dict[str, FunctionConfig]:
        return {k: f for k, f in self.functions.items() if f.image == image}

    def ecr_repository(self, image: str) -> str:
        return names.ecr_repository(self.project, image)

    def registry_for(self, stage: str | None) -> str:
        """Registry host: PT_REGISTRY, else stage/config `registry:`, else the stage's ECR."""
        env = os.environ.get("PT_REGISTRY")
        if env:
            from pipeline_tools.core.awsnames import registry_host
            from pipeline_tools.core.errors import UsageError

            if problem := registry_host(env):
                raise UsageError(f"PT_REGISTRY {problem}", "set PT_REGISTRY to a host[:port], or unset it")
            return env
        st = self.stages.get(stage) if stage else None
        if st and st.registry:
            return st.registry
        if self.registry:
            return self.registry
        if st is None:
            st = next(iter(self.stages.values()))
            stage = next(iter(self.stages))
        return names.ecr_registry(st.account, self.stage_region(stage))

    def bucket(self, stage: str) -> str:
        return render(self.artifacts.bucket, project=self.project, stage=stage)

    def services_for(self, stage: str) -> dict[str, ServiceConfig]:
        return {k: s for k, s in self.services.items() if s.stages is None or stage in s.stages}

    def service_bucket(self, service: str, stage: str) -> str:
        return render(self.services[service].bucket, project=self.project, service=service, stage=stage)

    def params_path(self, service: str, stage: str) -> str:
        return names.params_path(service, stage)

    def gate_patterns(self, stage: str) -> list[str]:
        return [render(p, project=self.project, stage=stage) for p in self.stages[stage].gate.alarms]

    def ledger_table(self) -> str:
        return names.ledger_table(self.project)

    def sns_topic(self, stage: str) -> str:
        return names.sns_topic(self.project, stage)

    def is_protected(self, stage: str) -> bool:
        st = self.stages[stage]
        return st.protected if st.protected is not None else stage == "prod"

    def promotion_chain(self, stage: str) -> list[str]:
        """[first, …, stage] following promote_from backwards (validated acyclic on load)."""
        chain = [stage]
        while self.stages[chain[0]].promote_from:
            chain.insert(0, self.stages[chain[0]].promote_from)
        return chain

    def resolved(self, stage: str | None = None) -> dict:
        """Config as data with templates expanded; secrets stay references."""
        data = self.model_dump(mode="json", by_alias=True)
        stages = [stage] if stage else list(self.stages)
        for s in list(data["stages"]):
            if s not in stages:
                del data["stages"][s]
        for s in stages:
            d = data["stages"][s]
            d["region"] = self.stage_region(s)
            d["protected"] = self.is_protected(s)
            d["registry"] = self.registry_for(s)
            d["artifacts_bucket"] = self.bucket(s)
            d["gate"]["alarms"] = self.gate_patterns(s)
            d["sns_topic"] = self.sns_topic(s)
            d["functions"] = {f: self.function_name(s, f) for f in self.functions}
            d["deploy_role"] = self.stages[s].role or names.role_arn(self.stages[s].account,
                                                                      names.deploy_role(self.project, s))
        data["ledger_table"] = self.ledger_table()
        if self.accounts is not None:
            data["ledger"] = {"table": self.ledger_table(), "account": self.accounts.tooling,
                              "region": self.accounts.region or self.region,
                              "role": self.accounts.ledger_role or names.role_arn(
                                  self.accounts.tooling, names.ledger_role(self.project)),
                              "stack": names.ledger_stack(self.project)}
        data["repositories"] = {i: self.ecr_repository(i) for i in self.images}
        return data


_TEMPLATE_RE = re.compile(r"\{([^{}]*)\}")


render = names.render  # pure (core/names.py): importable without pydantic


def _did_you_mean(word: str, choices) -> str | None:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


# --- loading --------------------------------------------------------------------------------


def find_config(path: str | os.PathLike | None = None) -> Path:
    """--config / PT_CONFIG, else ./pipeline.yml."""
    return Path(path or os.environ.get("PT_CONFIG") or DEFAULT_CONFIG)


def load(path: str | os.PathLike | None = None) -> Config:
    if path is not None and not str(path).strip():
        raise ConfigError(["--config: the path is empty"], "pass --config FILE, or leave it out to use ./pipeline.yml")
    p = find_config(path)
    shown = str(path or os.environ.get("PT_CONFIG") or DEFAULT_CONFIG)
    text = _read(p, shown)
    return parse(text, shown, source=str(p))


def _read(p: Path, shown: str) -> str:
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{shown}: no such file"],
                          "run `pt init` to create one, or pass --config PATH / set PT_CONFIG") from None
    except IsADirectoryError:
        raise ConfigError([f"{shown}: is a directory, expected a YAML file"],
                          f"pass the file, e.g. --config {Path(shown) / DEFAULT_CONFIG}") from None
    except PermissionError:
        raise ConfigError([f"{shown}: permission denied"], "make the file readable (chmod +r)") from None
    except OSError as e:
        raise ConfigError([f"{shown}: cannot read: {e.strerror or e}"]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([f"{shown}:{line}: not UTF-8 text"], "save the file as UTF-8") from None


def parse(text: str, shown: str = DEFAULT_CONFIG, source: str | None = None) -> Config:
    import yaml

    from pipeline_tools.core.yamlmarks import line_for, load_with_lines

    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise ConfigError([f"{shown}:1: file is empty: expected a mapping with project, region, images, stages"],
                          "run `pt init` for a commented example")
    try:
        loaded = load_with_lines(text)
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_error(e, shown, text)], "fix the YAML syntax (indent with spaces)") from None
    problems: list[tuple[int, str]] = [(p.line, f"{shown}:{p.line}: {_dotted(p.path)}: {p.message}")
                                       for p in loaded.problems]
    data = loaded.data
    if not isinstance(data, dict):
        raise ConfigError([f"{shown}:1: top level must be a mapping of keys (got {_type_name(data)})"],
                          "start with `project: NAME` (run `pt init` for an example)")
    lines = loaded.lines

    def add(path: tuple, message: str) -> None:
        message = _shorten_values(message)
        line = line_for(lines, path)
        text_ = f"{shown}:{line}: {_dotted(path) or '(top level)'}: {message}"
        if all(t != text_ for _, t in problems):
            problems.append((line, text_))

    cfg: Config | None = None
    try:
        cfg = Config.model_validate({**data, "source": source})
    except ValidationError as e:
        for err in e.errors():
            path, message = _describe(err, data)
            add(path, message)
    from pipeline_tools.core.configcheck import checks as aws_checks
    from pipeline_tools.core.configcheck_targets import checks as target_checks

    # Files named in the config (a state machine's definition) are checked only when it came from
    # a file: they are relative to it.
    base_dir = Path(source).resolve().parent if source else None
    for path, message in _cross_checks(data) + aws_checks(data) + target_checks(data, base_dir):
        add(path, message)
    if problems:
        problems.sort(key=lambda t: t[0])
        n = len(problems)
        hint = f"{n} problem{'s' if n > 1 else ''} in {shown}; `pt config schema` gives a JSON Schema for editors"
        raise ConfigError([t for _, t in problems], hint)
    assert cfg is not None
    return cfg


def _yaml_error(e: Exception, shown: str, text: str) -> str:
    position = getattr(e, "position", None)
    if getattr(e, "character", None) is not None and isinstance(position, int):
        # yaml's ReaderError (a NUL or other control character) has no mark: find its line here.
        before = text[:position]
        line, col = before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)  # type: ignore[attr-defined]
        return (f"{shown}:{line}: control character U+{code:04X} (column {col}): "
                "YAML allows only printable characters, tabs and newlines")
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 if mark else 1
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    src_line = text.splitlines()[line - 1] if mark and line - 1 < len(text.splitlines()) else ""
    if "\t" in src_line or "'\\t'" in str(problem):
        return f"{shown}:{line}: tab character in indentation: YAML needs spaces"
    col = f" (column {mark.column + 1})" if mark else ""
    return f"{shown}:{line}: invalid YAML: {problem}{col}"


_LONG_QUOTED_RE = re.compile(r"'([^'\n]{100})[^'\n]+'")


def _shorten_values(message: str) -> str:
    """A quoted value of 100 KB is never echoed back whole: keep its start and its length."""
    return _LONG_QUOTED_RE.sub(lambda m: f"'{m[1]}…' ({len(m[0]) - 2} characters)", message)


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _type_name(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "integer", float: "number",
            bool: "boolean", type(None): "nothing"}.get(type(v), type(v).__name__)


def _get(data: Any, path: tuple) -> Any:
    for p in path:
        if (isinstance(data, dict) and p in data) or (isinstance(data, list) and isinstance(p, int) and p < len(data)):
            data = data[p]
        else:
            return None
    return data


def _model_at(path: tuple) -> type[BaseModel] | None:
    """The model class that owns the mapping at `path` (for 'did you mean' on unknown keys)."""
    model: Any = Config
    i = 0
    while i < len(path):
        field = model.model_fields.get(path[i]) if isinstance(path[i], str) else None
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        if getattr(ann, "__origin__", None) is dict:
            model = args[1]
            i += 2
        elif getattr(ann, "__origin__", None) is list:
            model = args[0]
            i += 2
        else:
            model = next((a for a in (args or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            i += 1
        if model is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def _describe(err: dict, data: dict) -> tuple[tuple, str]:
    loc = tuple(p for p in err["loc"] if p not in ("function-after", "function-before"))
    # pydantic puts union/tagged members into loc; drop type names it inserts.
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "float", "int"})))
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = loc[-1]
        model = _model_at(loc[:-1])
        known = list(model.model_fields) if model else []
        known = [k for k in known if k != "source"]
        dym = _did_you_mean(key, known)
        return loc, "unknown key" + (f" ({dym})" if dym else (f" (known: {', '.join(known)})" if known else ""))
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        return loc, f"must be one of {', '.join(choices)} (got {got!r})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return loc, f"must be a whole number (got {got!r})"
    if kind in ("float_type", "float_parsing"):
        return loc, f"must be a number (got {got!r})"
    if kind in ("bool_type", "bool_parsing"):
        return loc, f"must be true or false (got {got!r})"
    if kind == "string_type":
        return loc, f"must be a string (got {_type_name(got)} {got!r})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"must be a mapping (got {_type_name(got)})"
    if kind == "list_type":
        return loc, f"must be a list (got {_type_name(got)})"
    if kind == "string_pattern_mismatch":
        field = loc[-1] if loc else ""
        hints = {"account": "a 12-digit AWS account id in quotes, e.g. \"111111111111\"",
                 "tooling": "a 12-digit AWS account id in quotes, e.g. \"333333333333\"",
                 "role": "an IAM role ARN like arn:aws:iam::111111111111:role/NAME",
                 "ledger_role": "an IAM role ARN like arn:aws:iam::333333333333:role/NAME",
                 "project": "lowercase letters, digits and dashes, starting with a letter",
                 "region": "an AWS region like us-east-1"}
        return loc, f"must be {hints.get(field, 'of pattern ' + ctx.get('pattern', ''))} (got {got!r})"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        op = {"greater_than_equal": "≥", "less_than_equal": "≤", "greater_than": ">", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "")
        return loc, f"must be {op} {bound} (got {got!r})"
    if kind == "too_short":
        return loc, "must not be empty"
    if kind == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        return loc, msg
    return loc, err["msg"][0].lower() + err["msg"][1:] + (f" (got {got!r})" if not isinstance(got, dict) else "")


def _service_checks(data: dict, functions: dict, stages: dict) -> list[tuple[tuple, str]]:
    """services.*: the function, state machine, batch jobs and stages it names exist."""
    out: list[tuple[tuple, str]] = []
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    targets = data.get("targets") if isinstance(data.get("targets"), dict) else {}
    machines = targets.get("stepfunctions") if isinstance(targets.get("stepfunctions"), dict) else {}
    jobs = targets.get("batch") if isinstance(targets.get("batch"), dict) else {}

    def unknown(path: tuple, what: str, value: str, choices: dict, where: str) -> None:
        dym = _did_you_mean(value, choices)
        out.append((path, f"unknown {what} '{value}'" + (f" ({dym})" if dym else
                                                          f" ({where}: {', '.join(choices) or 'none'})")))

    for name, svc in services.items():
        if not isinstance(svc, dict):
            continue
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,29}", str(name)):
            out.append((("services", name), "service name: lowercase letters, digits and dashes, ≤ 30, "
                                            "starting with a letter"))
        fn = svc.get("function")
        if isinstance(fn, str) and fn not in functions:
            unknown(("services", name, "function"), "function", fn, functions, "functions")
        sm = svc.get("state_machine")
        if isinstance(sm, str) and sm not in machines:
            unknown(("services", name, "state_machine"), "state machine", sm, machines, "targets.stepfunctions")
        for i, job in enumerate(svc.get("batch") or [] if isinstance(svc.get("batch"), list) else []):
            if isinstance(job, str) and job not in jobs:
                unknown(("services", name, "batch", i), "batch job", job, jobs, "targets.batch")
        for i, st in enumerate(svc.get("stages") or [] if isinstance(svc.get("stages"), list) else []):
            if isinstance(st, str) and st not in stages:
                unknown(("services", name, "stages", i), "stage", st, stages, "stages")
    return out


def _cross_checks(data: dict) -> list[tuple[tuple, str]]:
    """Checks across sections, on raw data so they run even when other fields are wrong."""
    out: list[tuple[tuple, str]] = []
    images = data.get("images") if isinstance(data.get("images"), dict) else {}
    functions = data.get("functions") if isinstance(data.get("functions"), dict) else {}
    stages = data.get("stages") if isinstance(data.get("stages"), dict) else {}
    for fname, f in functions.items():
        if isinstance(f, dict) and isinstance(f.get("image"), str) and images and f["image"] not in images:
            dym = _did_you_mean(f["image"], images)
            out.append((("functions", fname, "image"),
                        f"unknown image '{f['image']}'" + (f" ({dym})" if dym else f" (images: {', '.join(images)})")))
    branches: dict[str, str] = {}
    for sname, s in stages.items():
        if not isinstance(s, dict):
            continue
        pf = s.get("promote_from")
        if isinstance(pf, str):
            if pf not in stages:
                dym = _did_you_mean(pf, stages)
                out.append(((("stages", sname, "promote_from")),
                            f"unknown stage '{pf}'" + (f" ({dym})" if dym else f" (stages: {', '.join(stages)})")))
            elif pf == sname:
                out.append((("stages", sname, "promote_from"), "a stage cannot promote from itself"))
        br = s.get("branch")
        if isinstance(br, str):
            if br in branches:
                out.append((("stages", sname, "branch"),
                            f"branch '{br}' is already used by stage {branches[br]}; each branch deploys one stage"))
            else:
                branches[br] = sname
        for key in ("alarms",):
            gate = s.get("gate")
            if isinstance(gate, dict) and isinstance(gate.get(key), list):
                for i, pat in enumerate(gate[key]):
                    if isinstance(pat, str) and "*" in pat.rstrip("*"):
                        out.append((("stages", sname, "gate", key, i),
                                    f"'*' is allowed only at the end of an alarm prefix (got {pat!r})"))
    out += _gate_checks(stages)
    out += _service_checks(data, functions, stages)
    # cycles in promote_from
    seen_cycle: set[str] = set()
    for start in stages:
        path, cur = [], start
        while isinstance(cur, str) and cur in stages and cur not in path:
            path.append(cur)
            nxt = stages[cur].get("promote_from") if isinstance(stages[cur], dict) else None
            cur = nxt
        if isinstance(cur, str) and cur in path and cur != path[-1] and cur not in seen_cycle:
            cycle = path[path.index(cur):] + [cur]
            seen_cycle.update(cycle)
            out.append((("stages", cur, "promote_from"), f"promote_from forms a cycle: {' <- '.join(cycle)}"))
    out += _account_checks(data, stages)
    bucket = _get(data, ("artifacts", "bucket"))
    if isinstance(bucket, str):
        for m in _TEMPLATE_RE.finditer(bucket):
            if m[1] not in ("project", "stage"):
                out.append((("artifacts", "bucket"), f"unknown placeholder {{{m[1]}}}; use {{project}} and {{stage}}"))
    return out


def _account_checks(data: dict, stages: dict) -> list[tuple[tuple, str]]:
    """A role ARN must belong to the account it is used for (a typo here sends a deploy elsewhere)."""
    out: list[tuple[tuple, str]] = []

    def check(path: tuple, role: Any, account: Any, owner: str) -> None:
        if isinstance(role, str) and isinstance(account, str) and re.match(ROLE_ARN_PATTERN, role):
            in_arn = role.split(":")[4]
            if in_arn != account:
                out.append((path, f"role is in account {in_arn}, but {owner} is {account}; "
                                  "use a role of that account (or drop the key for the default role)"))

    for sname, s in stages.items():
        if isinstance(s, dict):
            check(("stages", sname, "role"), s.get("role"), s.get("account"), f"stages.{sname}.account")
    acc = data.get("accounts")
    if isinstance(acc, dict):
        check(("accounts", "ledger_role"), acc.get("ledger_role"), acc.get("tooling"), "accounts.tooling")
    return out


def _gate_checks(stages: dict) -> list[tuple[tuple, str]]:
    """A gate with nothing to watch passes everything: an error unless the stage opts out explicitly."""
    out: list[tuple[tuple, str]] = []
    for sname, s in stages.items():
        if not isinstance(s, dict):
            continue
        gate = s.get("gate")
        alarms = gate.get("alarms") if isinstance(gate, dict) else None
        if isinstance(gate, dict) and "alarms" in gate and not isinstance(alarms, list):
            continue  # the type error is reported by the model
        allow = isinstance(gate, dict) and gate.get("allow_no_alarms") is True
        if alarms and allow:
            out.append((("stages", sname, "gate", "allow_no_alarms"),
                        "allow_no_alarms: true contradicts the alarms listed in gate.alarms; remove one of them"))
        if alarms or allow:
            continue
        deploy = s.get("deploy")
        strategy = deploy.get("strategy") if isinstance(deploy, dict) else None
        what = (f"strategy {strategy} shifts traffic step by step on alarms, but the stage has none to watch"
                if strategy in ("canary", "linear") else "no alarms to watch: the gate would pass anything")
        path = ("stages", sname, "gate", "alarms") if isinstance(gate, dict) and "alarms" in gate else \
            ("stages", sname, "gate") if isinstance(gate, dict) else ("stages", sname)
        out.append((path, f"{what}; list alarm names or prefixes in stages.{sname}.gate.alarms "
                          f"(e.g. [\"{{project}}-{sname}-*\"]), or opt out explicitly with "
                          "`gate: {alarms: [], allow_no_alarms: true}`"))
    return out


def json_schema() -> dict:
    schema = Config.model_json_schema()
    schema["properties"].pop("source", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pipeline-tools pipeline.yml"
    return schema
