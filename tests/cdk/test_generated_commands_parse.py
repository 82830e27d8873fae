"""Fast check (no docker, no AWS): every `pt …` line of the workflows `pt init` writes and of the
buildspecs `PipelineStack` synthesizes parses against the real CLI (options exist, required ones
are given). tests/e2e/test_generated_pipelines.py runs them; this catches a renamed option in
seconds, e.g. the `pt promote --stage` of issue 14 when promote only took --to."""

from __future__ import annotations

import os
import shlex

import click
import pytest

from ..e2e import generated as g
from .test_workflows import rendered_templates

VARS = {"PT_STAGE": "staging", "GITHUB_SHA": "0" * 40, "RUNNER_TEMP": "/tmp", "CODEBUILD_SRC_DIR_Build": "/tmp/b",
        "CODEBUILD_BUILD_NUMBER": "1", "PT_DEPLOY_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_CONFIG_FILE": "/tmp/c"}


def parse(line: str) -> None:
    """Parse `pt ARGS` like the CLI would, without running any command (raises click errors)."""
    from pipeline_tools.cli import cli

    words = shlex.split(os.path.expandvars(line))
    if ">" in words:
        words = words[:words.index(">")]
    assert words[0] == "pt"
    cmd: click.Command = cli
    ctx = cmd.make_context("pt", words[1:], resilient_parsing=False)
    while isinstance(cmd, click.Group):
        args = [*ctx._protected_args, *ctx.args] if hasattr(ctx, "_protected_args") else [*ctx.protected_args,
                                                                                          *ctx.args]
        if not args:
            break
        name, sub, rest = cmd.resolve_command(ctx, args)
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        cmd = sub


def workflow_lines(tmp_path) -> list[str]:
    out = []
    for path in rendered_templates(tmp_path):
        job = next(iter(g.load_workflow(path)["jobs"].values()))
        for step in job["steps"]:
            out += g.pt_lines(g.EXPR.sub("x", step.get("run", "")))
    return out


def buildspec_lines(synthesized) -> list[str]:
    out = []
    for name, template in synthesized.templates.items():
        if not name.endswith("-pipeline"):
            continue
        resolve = g.Resolver(template, account="111111111111", region="us-east-1")
        for action in g.pipeline_build_actions(template, resolve):
            for phase in action.spec["phases"].values():
                out += g.pt_lines("\n".join(phase.get("commands", [])))
    return out


def test_every_generated_pt_line_parses(tmp_path, synthesized, monkeypatch):
    for k, v in VARS.items():
        monkeypatch.setenv(k, v)
    lines = workflow_lines(tmp_path) + buildspec_lines(synthesized)
    subcommands = {ln.split()[1] for ln in lines}
    assert {"build-push", "test", "deploy", "gate", "promote", "approvals", "config"} <= subcommands, lines
    failures = []
    for line in lines:
        try:
            parse(line)
        except click.ClickException as e:
            failures.append(f"{line}: {e.format_message()}")
    assert failures == []


@pytest.mark.parametrize("line", ["pt promote --stage prod --nope", "pt deploy --stage staging --from-buld x.json",
                                  "pt approvals sync-codepipeline --stage prod"])
def test_parse_rejects_what_the_cli_rejects(line):
    with pytest.raises(click.ClickException):
        parse(line)


def test_buildspec_pt_lines_in_pipeline_order(synthesized):
    template = synthesized.template("iris-prod-pipeline")
    actions = g.pipeline_build_actions(template, g.Resolver(template, account="222222222222", region="us-east-1"))
    assert [a.name for a in actions] == ["Promote", "Gate"]
    assert g.pt_lines("\n".join(actions[0].spec["phases"]["build"]["commands"])) == [
        "pt approvals sync-codepipeline --stage prod --pipeline iris-prod-pipeline", "pt promote --to prod"]
    assert actions[0].env == {"PT_DEPLOY_ROLE_ARN": "arn:aws:iam::222222222222:role/iris-prod-deploy"}
