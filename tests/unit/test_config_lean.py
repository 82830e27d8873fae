"""The lean pipeline.yml view of the artifacts commands: same answers as the full loader for the
fields it serves, the full loader's errors for anything wrong in them, and no pydantic import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline_tools.core.config import load
from pipeline_tools.core.config_lean import LeanConfig, load_lean
from pipeline_tools.core.errors import ConfigError, UsageError

GOOD = """\
project: shop
region: eu-west-1
images: {model: {context: .}}
functions: {predict: {image: model}}
stages:
  dev: {account: 111111111111, branch: main, gate: {alarms: [shop-dev-]}}
  prod: {account: "222222222222", branch: release, region: us-east-1, gate: {alarms: [shop-prod-]}}
artifacts: {bucket: "{project}-art-{stage}"}
"""


def _write(tmp_path, text: str) -> str:
    p = tmp_path / "pipeline.yml"
    p.write_text(text)
    return str(p)


def test_serves_the_same_values_as_the_full_loader(tmp_path):
    path = _write(tmp_path, GOOD)
    lean, full = load_lean(path), load(path)
    assert isinstance(lean, LeanConfig)
    assert (lean.project, lean.region, list(lean.stages)) == (full.project, full.region, list(full.stages))
    for stage in full.stages:
        assert lean.bucket(stage) == full.bucket(stage)
        assert lean.stage_region(stage) == full.stage_region(stage)
        assert lean.stage(stage).account == full.stage(stage).account
    assert lean.base_dir == full.base_dir


def test_anything_else_comes_from_the_validated_file(tmp_path):
    lean = load_lean(_write(tmp_path, GOOD))
    assert lean.functions["predict"].image == "model"
    assert lean.stage("dev").deploy.strategy == load(lean.source).stages["dev"].deploy.strategy


@pytest.mark.parametrize("bad", [
    GOOD.replace("project: shop", "project: Shop!"),
    GOOD.replace("account: 111111111111", "account: 1111-1111"),
    GOOD.replace("{project}-art-{stage}", "{project}-{env}"),
    GOOD.replace("region: eu-west-1", "region: europe"),
    GOOD.replace("artifacts:", "artifact:"),
    "project: [unclosed\n",
])
def test_a_problem_in_its_fields_is_the_full_loaders_error(tmp_path, bad):
    path = _write(tmp_path, bad)
    with pytest.raises(ConfigError) as full:
        load(path)
    with pytest.raises(ConfigError) as lean:
        load_lean(path)
    assert lean.value.lines() == full.value.lines()


def test_an_unknown_stage_is_the_usual_usage_error(tmp_path):
    lean = load_lean(_write(tmp_path, GOOD))
    with pytest.raises(UsageError, match="unknown stage 'prdo'") as e:
        lean.stage("prdo")
    assert "prod" in (e.value.hint or "")


def test_a_problem_elsewhere_surfaces_when_that_part_is_read(tmp_path):
    lean = load_lean(_write(tmp_path, GOOD.replace("{image: model}", "{image: modle}")))
    assert lean.bucket("dev") == "shop-art-dev"  # the artifacts commands' fields are fine
    with pytest.raises(ConfigError, match="unknown image 'modle'"):
        _ = lean.functions


def test_artifacts_commands_do_not_import_pydantic(tmp_path):
    path = _write(tmp_path, GOOD)
    probe = (
        "import json, sys\n"
        "from pipeline_tools.core.context import App\n"
        f"app = App(config_path={path!r}, stage='prod', lean_config=True)\n"
        "cfg = app.config(); app.require_stage()\n"
        "print(json.dumps([cfg.bucket('prod'), app.aws('prod').region, 'pydantic' in sys.modules]))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == ["shop-art-prod", "us-east-1", False]


def test_status_fields_function_names_and_images(tmp_path):
    path = _write(tmp_path, GOOD.replace("{predict: {image: model}}", "{predict: {image: model, memory: 1024}, "
                                                                        "batch-score: {image: model}}"))
    lean, full = load_lean(path), load(path)
    assert {k: f.image for k, f in lean.functions.items()} == {k: f.image for k, f in full.functions.items()}
    assert lean.function_name("dev", "predict") == full.function_name("dev", "predict")
    assert lean.targets.sagemaker is None and full.targets.sagemaker is None
    assert lean.functions["predict"].memory == 1024  # any other field: from the validated file


def test_function_keys_the_lean_view_cannot_vouch_for_go_to_the_full_loader(tmp_path):
    path = _write(tmp_path, GOOD.replace("{predict: {image: model}}", "{Predict_1: {image: model}}"))
    lean = load_lean(path)
    assert lean.bucket("dev") == "shop-art-dev"
    assert type(lean.functions["Predict_1"]).__name__ == "FunctionConfig"  # the full model's answer


def test_status_does_not_import_pydantic(tmp_path):
    path = _write(tmp_path, GOOD)
    probe = (
        "import json, sys\n"
        "from pipeline_tools.core.context import App\n"
        "from pipeline_tools.release.deploy import _fn_names, _split\n"
        f"app = App(config_path={path!r}, stage='dev', lean_config=True)\n"
        "cfg = app.config()\n"
        "print(json.dumps([_fn_names(cfg, 'dev'), _split(cfg, []), cfg.targets.sagemaker,\n"
        "                  'pydantic' in sys.modules]))\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"predict": "shop-dev-predict"}, None, None, False]
