"""services: the model-service section of pipeline.yml and its cross-checks."""

from __future__ import annotations

import pytest

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import ConfigError

BASE = """\
project: iris
region: us-east-1
images: {model: {}}
functions: {predict: {image: model, ephemeral_storage: 4016}}
targets:
  stepfunctions: {flow: {}}
  batch: {score: {image: model}}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["iris-staging-*"]}}
  prod: {account: "222222222222", branch: master, gate: {alarms: ["iris-prod-*"]}}
"""


def test_service_parses_with_names_and_defaults():
    cfg = parse(BASE + """\
services:
  scorer:
    function: predict
    state_machine: flow
    batch: [score]
    stages: [prod]
    access: {identity_pool_id: "us-east-1:12345678-1234-1234-1234-123456789012", user_pool_id: us-east-1_AbC123}
""")
    svc = cfg.services["scorer"]
    assert cfg.functions["predict"].ephemeral_storage == 4016
    assert svc.api is not None and svc.api.throttle_burst == 100
    assert cfg.service_bucket("scorer", "prod") == "iris-scorer-prod"
    assert cfg.params_path("scorer", "prod") == "/pt/scorer/prod/"
    assert list(cfg.services_for("prod")) == ["scorer"] and cfg.services_for("staging") == {}


@pytest.mark.parametrize(("service", "needle"), [
    ("{function: predct}", "services.scorer.function: unknown function 'predct' (did you mean 'predict'?)"),
    ("{function: predict, state_machine: flo}", "unknown state machine 'flo' (did you mean 'flow'?)"),
    ("{function: predict, batch: [scor]}", "services.scorer.batch[0]: unknown batch job 'scor'"),
    ("{function: predict, stages: [qa]}", "services.scorer.stages[0]: unknown stage 'qa'"),
    ("{function: predict, access: {identity_pool_id: pool-1}}", "services.scorer.access.identity_pool_id"),
    ("{function: predict, access: {identity_pool_id: 'us-east-1:12345678-1234-1234-1234-123456789012', "
     "user_pool_id: 'bad pool'}}", "services.scorer.access.user_pool_id"),
])
def test_service_bad_input_is_one_line_with_its_line(service, needle):
    with pytest.raises(ConfigError) as e:
        parse(BASE + f"services:\n  scorer: {service}\n", "pipeline.yml")
    assert any(needle in line and line.startswith("pipeline.yml:") for line in e.value.problems), e.value.lines


@pytest.mark.parametrize("mb", [511, 10241])
def test_ephemeral_storage_out_of_range(mb):
    with pytest.raises(ConfigError) as e:
        parse(BASE.replace("ephemeral_storage: 4016", f"ephemeral_storage: {mb}"), "pipeline.yml")
    assert any("functions.predict.ephemeral_storage" in line for line in e.value.problems)
