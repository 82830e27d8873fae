"""cdk.pt_install must name one build of the toolkit; cdk.toolkit_image is an image by digest."""

from __future__ import annotations

import pytest

from pipeline_tools import __version__
from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import ConfigError
from pipeline_tools.infra.toolkit import toolkit_dockerfile

BASE = """\
project: iris
region: us-east-1
images: {model: {}}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["iris-staging-*"]}}
"""


def test_default_is_this_exact_version():
    assert parse(BASE).cdk.pt_install == f"pipeline-tools=={__version__}"


@pytest.mark.parametrize("req", ["pipeline-tools==1.4.2", "pipeline-tools[cdk]==1.4.2",
                                 "git+https://github.com/acme/pipeline-tools@" + "a" * 40,
                                 "pipeline-tools @ https://files.example/pt-1.4.2-py3-none-any.whl#sha256=" + "b" * 64])
def test_pinned_requirements_pass(req):
    assert parse(BASE + f"cdk: {{pt_install: '{req}'}}\n").cdk.pt_install == req


@pytest.mark.parametrize("req", ["pipeline-tools", "pipeline-tools>=1.4", "pipeline-tools==1.*",
                                 "git+https://github.com/acme/pipeline-tools@main", "https://x/pt.whl"])
def test_moving_requirements_are_refused_with_the_fix(req):
    with pytest.raises(ConfigError) as e:
        parse(BASE + f"cdk: {{pt_install: '{req}'}}\n", "pipeline.yml")
    line = e.value.problems[0]
    assert line.startswith("pipeline.yml:6: cdk.pt_install:") and "not pinned" in line and "NAME==X.Y.Z" in line


def test_toolkit_image_must_be_by_digest():
    ok = "ghcr.io/acme/pipeline-tools@sha256:" + "c" * 64
    assert parse(BASE + f"cdk: {{toolkit_image: '{ok}'}}\n").cdk.toolkit_image == ok
    with pytest.raises(ConfigError, match=r"cdk\.toolkit_image"):
        parse(BASE + "cdk: {toolkit_image: 'ghcr.io/acme/pipeline-tools:latest'}\n")


def test_toolkit_dockerfile_installs_exactly_the_requirement_and_git():
    text = toolkit_dockerfile("pipeline-tools==1.4.2")
    assert "pip install --no-cache-dir 'pipeline-tools==1.4.2' && pt --version" in text
    assert "install -y --no-install-recommends git" in text
