"""GitHubOidcStack: lets GitHub Actions of one repository reach AWS without stored keys.

One per AWS account that hosts stages: the GitHub OIDC provider and a role `<project>-github`
that only tokens of `repo:OWNER/NAME` can assume, and only from the branches of the stages in
that account (`ref:refs/heads/<branch>`) or from jobs in those stages' GitHub environments
(`environment:<stage>`). The role itself may do one thing: assume the stages' deploy roles.
An account that already has the GitHub provider passes its ARN (context `oidc_provider_arn`).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from .. import names
from ..config import Config
from .constructs import arn

GITHUB_ISSUER = "token.actions.githubusercontent.com"


def github_role_name(project: str) -> str:
    return f"{project}-github"


def trusted_subjects(cfg: Config, repository: str, stages: list[str]) -> list[str]:
    subjects = []
    for s in stages:
        subjects.append(f"repo:{repository}:ref:refs/heads/{cfg.stages[s].branch}")
        subjects.append(f"repo:{repository}:environment:{s}")
    return sorted(set(subjects))


class GitHubOidcStack(Stack):
    def __init__(self, scope: Construct, id: str, *, cfg: Config, repository: str, stages: list[str],
                 provider_arn: str | None = None, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        # An account has at most one provider per issuer URL: reuse an existing one if given.
        provider: iam.IOidcProvider = (
            iam.OidcProviderNative.from_oidc_provider_arn(self, "Provider", provider_arn) if provider_arn
            else iam.OidcProviderNative(self, "Provider", url=f"https://{GITHUB_ISSUER}",
                                        client_ids=["sts.amazonaws.com"]))
        self.subjects = trusted_subjects(cfg, repository, stages)
        self.role = iam.Role(
            self, "Role",
            role_name=github_role_name(cfg.project),
            description=f"GitHub Actions of {repository} ({', '.join(stages)}); may only assume deploy roles",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(provider.oidc_provider_arn, conditions={
                "StringEquals": {
                    f"{GITHUB_ISSUER}:aud": "sts.amazonaws.com",
                    f"{GITHUB_ISSUER}:sub": self.subjects,
                },
            }),
        )
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["sts:AssumeRole", "sts:TagSession"],
            resources=[arn(self, "iam", f"role/{names.deploy_role(cfg.project, s)}", region=False) for s in stages]))
        CfnOutput(self, "RoleArn", value=self.role.role_arn)
