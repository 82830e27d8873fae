"""ops/dashboard.py: the console URL of a stage's dashboard (pure)."""

from __future__ import annotations

import pytest

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import UsageError
from pipeline_tools.ops.dashboard import dashboard_url

CFG = """\
project: iris
region: us-east-1
images: {model: {}}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["iris-staging-*"]}}
  prod: {account: "222222222222", region: eu-west-1, branch: master, gate: {alarms: ["iris-prod-*"]}}
  gov: {account: "333333333333", region: us-gov-west-1, branch: gov, gate: {alarms: ["iris-gov-*"]}}
  china: {account: "444444444444", region: cn-north-1, branch: cn, gate: {alarms: ["iris-china-*"]}}
"""


@pytest.mark.parametrize(("stage", "url"), [
    ("staging", "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
                "#dashboards/dashboard/iris-staging"),
    ("prod", "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/iris-prod"),
    ("gov", "https://us-gov-west-1.console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1"
            "#dashboards/dashboard/iris-gov"),
    ("china", "https://cn-north-1.console.amazonaws.cn/cloudwatch/home?region=cn-north-1"
              "#dashboards/dashboard/iris-china"),
])
def test_url_names_the_stage_dashboard_in_its_region(stage, url):
    assert dashboard_url(parse(CFG), stage) == url


def test_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError) as e:
        dashboard_url(parse(CFG), "stagin")
    assert e.value.exit_code == 2 and "unknown stage 'stagin'" in str(e.value.lines())
