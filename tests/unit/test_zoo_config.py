"""The lean pipeline.yml view of `pt zoo plan` (targets/zoo_config.py): the same zoo values as the
full loader, the full loader (and its errors) for anything it does not check, and no pydantic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline_tools.core.config import Config, load
from pipeline_tools.core.errors import ConfigError
from pipeline_tools.targets import zoo_config

ROLE = "arn:aws:iam::111111111111:role/zz-fn"
GOOD = f"""\
project: zz
region: us-east-1
images: {{model: {{context: .}}}}
functions: {{api: {{image: model}}}}
stages:
  staging: {{account: '111111111111', branch: main, gate: {{alarms: [zz-staging-], poll: 0.5s}}}}
  prod: {{account: '111111111111', branch: release, promote_from: staging, gate: {{alarms: [zz-prod-]}}}}
zoo:
  role: {ROLE}
  parallel: 4
  models:
    resnet: {{copy: false, artifacts: models/resnet, memory: 512, timeout: 30, environment: {{MODE: fast}}}}
    bert: {{copy: true, artifacts: "s3://{{bucket}}/models/bert", image: model, handler: app.h}}
  consumers:
    - {{model: resnet, ssm: "/{{project}}/{{stage}}/resnet"}}
    - {{model: resnet, function: api, variable: RESNET_FN}}
"""


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "pipeline.yml"
    p.write_text(text)
    return str(p)


def test_hands_out_the_zoo_the_full_loader_does(tmp_path):
    path = _write(tmp_path, GOOD)
    lean, full = zoo_config.load(path), load(path)
    assert isinstance(lean, zoo_config.ZooLeanConfig)
    lz, fz = lean.zoo, full.zoo
    assert list(lz.models) == list(fz.models)
    for name, m in fz.models.items():
        got = lz.models[name]
        for attr in ("copy_alongside", "artifacts", "image", "handler", "memory", "timeout", "environment"):
            assert getattr(got, attr) == getattr(m, attr), (name, attr)
    assert [(c.model, c.ssm, c.function, c.variable) for c in lz.consumers] == \
        [(c.model, c.ssm, c.function, c.variable) for c in fz.consumers]
    for attr in ("role", "parallel", "gc_older_than", "waves", "wave_bake"):
        assert getattr(lz, attr) == getattr(fz, attr), attr
    assert list(lean.functions) == list(full.functions) and lean.base_dir == full.base_dir
    for stage in full.stages:
        assert lean.bucket(stage) == full.bucket(stage)
        assert lean.function_name(stage, "resnet") == full.function_name(stage, "resnet")
    assert lean.stages["prod"].promote_from == "staging"  # beyond the view: from the full config


def test_defaults_match_the_full_loader(tmp_path):
    path = _write(tmp_path, GOOD.split("zoo:")[0] + "zoo:\n  models:\n    m1: {artifacts: a}\n")
    lean, full = zoo_config.load(path), load(path)
    assert isinstance(lean, zoo_config.ZooLeanConfig)
    assert (lean.zoo.parallel, lean.zoo.role, lean.zoo.consumers, lean.zoo.gc_older_than) == \
        (full.zoo.parallel, full.zoo.role, full.zoo.consumers, full.zoo.gc_older_than)
    assert lean.zoo.models["m1"].copy_alongside is full.zoo.models["m1"].copy_alongside is False


@pytest.mark.parametrize("old,new", [
    ("copy: false, artifacts: models/resnet", "copy: 'no', artifacts: models/resnet"),  # lax bool
    ("memory: 512", "memory: 512.0"),                                                 # float for an int
    ("memory: 512", "memory: 64"),                                                    # out of range
    ("copy: false, artifacts", "copy_alongside: false, artifacts"),                   # the field name
    ("parallel: 4", "parallel: 4\n  waves: [1, rest]"),                               # not checked here
    ("parallel: 4", "parallel: 4\n  gc_older_than: 7d"),
    ("parallel: 4", "parallel: 0"),
    ("    resnet: {", "    ResNet: {"),                                                # model name rule
    ("{model: resnet, ssm", "{model: resnett, ssm"),                                  # unknown model
    ("variable: RESNET_FN", "variable: 1BAD"),
    ("function: api, variable: RESNET_FN", "function: api"),
    (f"role: {ROLE}", "role: not-an-arn"),                                             # configcheck
    ("{MODE: fast}", "{'1MODE': fast}"),                                               # env key rule
    ("artifacts: models/resnet", "artifacts: ' '"),                                    # empty string
    ("  models:\n", "  models:\n    bert: {artifacts: x}\n"),                          # duplicate key
    ("    bert: {", "    " + "b" * 40 + ": {"),                                       # Lambda name > 64
    ("project: zz", "project: zz\naccounts: {tooling: '111111111111'}"),               # not in the view
])
def test_anything_it_does_not_vouch_for_goes_to_the_full_loader(tmp_path, old, new):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    if "b" * 40 in new:  # zz{39}-staging-b{40}: a Lambda name over 64 characters
        text = text.replace("project: zz", "project: " + "z" * 39)
    path = _write(tmp_path, text)
    try:
        full = load(path)
    except ConfigError as e:
        with pytest.raises(ConfigError) as lean_err:
            zoo_config.load(path)
        assert lean_err.value.problems == e.problems and lean_err.value.hint == e.hint
        return
    got = zoo_config.load(path)
    assert isinstance(got, Config) and got.zoo == full.zoo


def test_missing_file_is_the_full_loaders_error(tmp_path):
    path = str(tmp_path / "nope.yml")
    with pytest.raises(ConfigError) as full:
        load(path)
    with pytest.raises(ConfigError) as lean:
        zoo_config.load(path)
    assert lean.value.problems == full.value.problems


def test_loads_and_plans_without_importing_pydantic(tmp_path):
    """What `pt zoo plan` reads of pipeline.yml (and the pure planner) pulls in no pydantic."""
    path = _write(tmp_path, GOOD)
    code = (
        "import sys\n"
        "from pipeline_tools.targets import zoo_config, zoo\n"
        f"cfg = zoo_config.load({path!r})\n"
        "zoo.require_zoo(cfg)\n"
        "assert [c.key for c in zoo.consumers(cfg, 'staging')] == "
        "['ssm:/zz/staging/resnet', 'lambda:zz-staging-api#RESNET_FN']\n"
        "assert zoo.function_names(cfg, 'staging', 'bert') == ('zz-staging-bert', 'zz-staging-bert_copy')\n"
        "bad = sorted(m for m in ('pydantic', 'pipeline_tools.core.config') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
