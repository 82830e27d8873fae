"""GitHubOidcStack: lets GitHub Actions of one repository reach AWS without stored keys.

One per AWS account that hosts stages: the GitHub OIDC provider and, for each stage in that
account, a role `<project>-<stage>-github` that only jobs of `repo:OWNER/NAME` running in that
stage's GitHub environment (`environment:<stage>`) can assume. Each role may do one thing:
assume its own stage's deploy role. Two stages in one account therefore stay apart: a job of
the `staging` environment (a push to `integration`) cannot get prod's credentials; only jobs
gated by the `prod` environment (and its required reviewers) can.
An account that already has the GitHub provider passes its ARN (context `oidc_provider_arn`).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from pipeline_tools.core import names
from pipeline_tools.core.config import Config
from pipeline_tools.infra.stacks.constructs import arn, logical

GITHUB_ISSUER = "token.actions.githubusercontent.com"


def github_role_name(project: str, stage: str) -> str:
    """The role GitHub Actions jobs of `stage`'s environment assume (then chain to the deploy role)."""
    return f"{project}-{stage}-github"


def trusted_subject(repository: str, stage: str) -> str:
    """The only OIDC `sub` a stage's role trusts: jobs that run in the stage's GitHub environment
    (the generated workflows set `environment: <stage>`, so their tokens carry this subject)."""
    return f"repo:{repository}:environment:{stage}"


class GitHubOidcStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, repository: str, stages: list[str],
                 provider_arn: str | None = None, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        # An account has at most one provider per issuer URL: reuse an existing one if given.
        provider: iam.IOidcProvider = (
            iam.OidcProviderNative.from_oidc_provider_arn(self, "Provider", provider_arn) if provider_arn
            else iam.OidcProviderNative(self, "Provider", url=f"https://{GITHUB_ISSUER}",
                                        client_ids=["sts.amazonaws.com"]))
        self.roles: dict[str, iam.Role] = {}
        for stage in stages:
            role = iam.Role(
                self, f"Role{logical(stage)}",
                role_name=github_role_name(cfg.project, stage),
                description=f"GitHub Actions of {repository}, environment {stage}; may only assume "
                            f"{names.deploy_role(cfg.project, stage)}",
                max_session_duration=Duration.hours(1),
                assumed_by=iam.WebIdentityPrincipal(provider.oidc_provider_arn, conditions={
                    "StringEquals": {
                        f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                        f"{GITHUB_ISSUER}:sub": trusted_subject(repository, stage),
                    },
                }),
            )
            role.add_to_policy(iam.PolicyStatement(
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[arn(self, "iam", f"role/{names.deploy_role(cfg.project, stage)}", region=False)]))
            self.roles[stage] = role
            CfnOutput(self, f"RoleArn{logical(stage)}", value=role.role_arn,
                      description=f"role-to-assume of the {stage} workflow")
