"""CDK stacks built from pipeline.yml (imports aws_cdk: load this package only when synthesizing).

Stacks (one module each):
  stage_stack.StageStack            `<project>-<stage>-stage`    per stage, in its account/region
  pipeline_stack.PipelineStack      `<project>-<stage>-pipeline` per stage (needs repository + connection);
                                    in the tooling account when `accounts:` is set
  github_oidc_stack.GitHubOidcStack `<project>-github-oidc`      per account hosting stages (needs repository):
                                    one role `<project>-<stage>-github` per stage there
  ledger_stack.LedgerStack          `<project>-ledger`           in the tooling account (when `accounts:` is set)
  service_stack.ServiceStack        `<project>-<service>-<stage>-service` per service (`services:`) and stage:
                                    bucket, state machine, REST API, Cognito access (functions stay in StageStack)
  targets_stack.TargetsStack        `<project>-<stage>-targets`  per stage with Batch jobs or state machines no
                                    service owns: Batch compute/queue/roles/job definitions/schedules
  dashboard_stack.DashboardStack    `<project>-<stage>-dashboard` per stage: the dashboard `<project>-<stage>`

Entry points:
  build_app(app, cfg, ...)  adds every stack for `cfg` to a cdk.App (used by cdk/app.py and tests).
  synth_stage_template(cfg, stage, *, local, image_digests=None) -> dict
      The StageStack of `stage` synthesized to a CloudFormation template (a dict), without the CDK
      CLI and without touching the working directory. `local=True` makes a template that moto's
      CloudFormation accepts (`pt local up`): BootstraplessSynthesizer (no bootstrap version
      rule/parameter, no asset buckets), version reporting off, RemovalPolicy DESTROY and no
      table deletion protection. Repositories always have explicit lowercase names.
      The template has one parameter per image, `<Image>ImageDigest` (e.g. ModelImageDigest);
      while it is empty the functions of that image are left out (see stage_stack's docstring,
      "seed problem"). Pass `image_digests={"model": "sha256:…"}` to make a digest the default,
      or give the parameter when creating the stack. Note moto's CloudFormation skips some
      resource types (alias, alarms, bucket policy… as of moto 5.2): a local
      mode must create those itself.

CDK context (cdk.json or `-c key=value`), all optional:
  config             path of pipeline.yml (else $PT_CONFIG, else ./pipeline.yml)
  github_repository  OWNER/NAME (else `cdk.github_repository` in pipeline.yml)
  connection_arn     CodeStar connection ARN (else `cdk.connection_arn`)
  image_digests      default digests, JSON object {"image": "sha256:…"} or "image=sha256:…,…"
  stages             comma-separated subset of stages to synthesize
  nag                cdk/app.py runs cdk-nag AwsSolutions unless this is false
  oidc_provider_arn  an existing GitHub OIDC provider (used in the account it belongs to)
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names

if TYPE_CHECKING:
    import aws_cdk as cdk

    from pipeline_tools.core.config import Config


# Feature flags the stacks are written for; every App that holds them must be created with
# `context=FEATURE_FLAGS` (cdk/app.py, synth_stage_template, the tests).
FEATURE_FLAGS: dict[str, Any] = {
    "@aws-cdk/core:checkSecretUsage": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:validateSnapshotRemovalPolicy": True,
    "@aws-cdk/aws-s3:createDefaultLoggingPolicy": True,
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-codepipeline:crossAccountKeysDefaultValueToFalse": True,
    "@aws-cdk/aws-codepipeline:defaultPipelineTypeToV2": True,
    "@aws-cdk/aws-lambda:recognizeVersionProps": True,
    "@aws-cdk/aws-lambda:recognizeLayerVersion": True,
}


def silence_node_warnings() -> None:
    """jsii prints a banner on every start under an old Node (Node 20 here); keep stderr readable."""
    os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20,21,22,23")


def oidc_stack_name(cfg: Config, account: str) -> str:
    accounts = {s.account for s in cfg.stages.values()}
    base = f"{cfg.project}-github-oidc"
    return base if len(accounts) == 1 else f"{base}-{account}"


def parse_digests(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    text = str(value).strip()
    if text.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(text).items()}
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


def build_app(app: cdk.App, cfg: Config, *, repository: str | None = None, connection_arn: str | None = None,
              image_digests: dict[str, str] | None = None, stages: list[str] | None = None,
              oidc_provider_arn: str | None = None) -> dict[str, Any]:
    """Add all stacks for `cfg` to `app`; returns {stack name: stack}. Pipelines need `repository`
    and `connection_arn`, the OIDC stacks `repository`; without them those stacks are skipped."""
    import aws_cdk as cdk

    from pipeline_tools.infra.stacks.github_oidc_stack import GitHubOidcStack
    from pipeline_tools.infra.stacks.pipeline_stack import PipelineStack
    from pipeline_tools.infra.stacks.stage_stack import StageStack

    repository = repository or cfg.cdk.github_repository
    connection_arn = connection_arn or cfg.cdk.connection_arn
    chosen = stages or list(cfg.stages)
    out: dict[str, Any] = {}
    if cfg.accounts is not None:
        from pipeline_tools.infra.stacks.ledger_stack import LedgerStack

        name = names.ledger_stack(cfg.project)
        out[name] = LedgerStack(app, name, cfg=cfg, env=cdk.Environment(
            account=cfg.accounts.tooling, region=cfg.accounts.region or cfg.region),
            description=f"{cfg.project}: the shared ledger of every stage (pt), in the tooling account")
    for stage in chosen:
        st = cfg.stages[stage]
        env = cdk.Environment(account=st.account, region=cfg.stage_region(stage))
        name = names.stage_stack(cfg.project, stage)
        out[name] = StageStack(app, name, cfg=cfg, stage=stage, image_digests=image_digests, env=env,
                               description=f"{cfg.project} {stage}: images, functions, alarms, ledger (pt)")
        stage_stack = out[name]
        out.update(_service_stacks(app, cfg, stage, env, stage_stack, image_digests))
        if repository and connection_arn:
            name = names.pipeline_stack(cfg.project, stage)
            # With `accounts:` the pipelines live in the tooling account (in the stage's region) and
            # reach the stage through its deploy role, which trusts their CodeBuild role (ledger_stack).
            pipeline_env = env if cfg.accounts is None else cdk.Environment(
                account=cfg.accounts.tooling, region=cfg.stage_region(stage))
            out[name] = PipelineStack(app, name, cfg=cfg, stage=stage, repository=repository,
                                      connection_arn=connection_arn, env=pipeline_env,
                                      description=f"{cfg.project} {stage}: CodePipeline running pt")
    if repository:
        by_account: dict[str, list[str]] = {}
        for stage in chosen:
            by_account.setdefault(cfg.stages[stage].account, []).append(stage)
        for account, acc_stages in by_account.items():
            name = oidc_stack_name(cfg, account)
            env = cdk.Environment(account=account, region=cfg.stage_region(acc_stages[0]))
            provider = oidc_provider_arn if oidc_provider_arn and f":{account}:" in oidc_provider_arn else None
            out[name] = GitHubOidcStack(app, name, cfg=cfg, repository=repository, stages=acc_stages, env=env,
                                        provider_arn=provider,
                                        description=f"{cfg.project}: GitHub OIDC for {repository}")
    return out


def _service_stacks(app: cdk.App, cfg: Config, stage: str, env: cdk.Environment, stage_stack: Any,
                    image_digests: dict[str, str] | None) -> dict[str, Any]:
    """The ServiceStacks, TargetsStack and DashboardStack of one stage; each depends on the StageStack
    (deploy role, function aliases, topic: all referenced by name, no exports)."""
    from pipeline_tools.infra.stacks.dashboard_stack import DashboardStack
    from pipeline_tools.infra.stacks.service_stack import ServiceStack
    from pipeline_tools.infra.stacks.targets_stack import TargetsStack, needs_targets_stack

    out: dict[str, Any] = {}
    for service in cfg.services_for(stage):
        name = names.service_stack(cfg.project, service, stage)
        out[name] = ServiceStack(app, name, cfg=cfg, service=service, stage=stage, env=env,
                                 description=f"{cfg.project} {service} ({stage}): bucket, workflow, API, access (pt)")
    if needs_targets_stack(cfg, stage):
        name = names.targets_stack(cfg.project, stage)
        out[name] = TargetsStack(app, name, cfg=cfg, stage=stage, image_digests=image_digests, env=env,
                                 description=f"{cfg.project} {stage}: Batch jobs and schedules, state machines (pt)")
    name = names.dashboard_stack(cfg.project, stage)
    out[name] = DashboardStack(app, name, cfg=cfg, stage=stage, env=env,
                               description=f"{cfg.project} {stage}: CloudWatch dashboard (pt)")
    for stack in out.values():
        stack.add_dependency(stage_stack)
    return out


def synth_stage_template(cfg: Config, stage: str, *, local: bool,
                         image_digests: dict[str, str] | None = None) -> dict:
    """The StageStack of `stage` as a CloudFormation template dict (see the module docstring)."""
    silence_node_warnings()
    import aws_cdk as cdk

    from pipeline_tools.infra.stacks.stage_stack import StageStack

    cfg.stage(stage)  # unknown stage -> UsageError
    st = cfg.stages[stage]
    with tempfile.TemporaryDirectory(prefix="pt-synth-") as outdir:
        app = cdk.App(outdir=outdir, analytics_reporting=False, context=FEATURE_FLAGS)
        synthesizer = cdk.BootstraplessSynthesizer() if local else None
        name = names.stage_stack(cfg.project, stage)
        StageStack(app, name, cfg=cfg, stage=stage, image_digests=image_digests, local=local,
                   synthesizer=synthesizer, analytics_reporting=False,
                   env=cdk.Environment(account=st.account, region=cfg.stage_region(stage)))
        return app.synth().get_stack_by_name(name).template
