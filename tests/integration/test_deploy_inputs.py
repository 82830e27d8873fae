"""Deploy inputs: image URIs, `pt build-push --output json` files, choosing the image (no AWS)."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import UsageError
from pipeline_tools.release import deploy as dp

from .conftest_deploy import CONFIG, REPO, digest, uri

CFG = parse(CONFIG.format(strategy="canary", percent=10, interval="1s", bake="1s", poll="1s",
                          preexisting="block", keep=5))


def test_parse_image_uri():
    ref = dp.parse_image_uri(uri(1))
    assert ref.digest == digest(1) and ref.repository == REPO and ref.repo_name == "rel-model"
    assert dp.parse_image_uri("127.0.0.1:5055/rel-model@" + digest(1)).repo_name == "rel-model"
    with pytest.raises(UsageError, match="names a tag"):
        dp.parse_image_uri(REPO + ":latest")
    with pytest.raises(UsageError, match="not REPO@sha256"):
        dp.parse_image_uri(REPO + "@sha256:xyz")


def test_choose_image_by_repository_and_explicit():
    assert dp.choose_image(CFG, image_uri=uri(1))[0] == "model"
    assert dp.choose_image(CFG, image_uri="127.0.0.1:5055/rel-model@" + digest(1))[0] == "model"
    with pytest.raises(UsageError, match="exactly one"):
        dp.choose_image(CFG)
    with pytest.raises(UsageError, match="unknown image"):
        dp.choose_image(CFG, image_uri=uri(1), image="nope")


def test_from_build_shapes(tmp_path):
    f = tmp_path / "b.json"
    entries = [{"name": "model", "repository": REPO, "tag": "t", "digest": digest(2), "image_uri": uri(2),
                "status": "skipped"},
               {"name": "other", "repository": REPO + "x", "digest": digest(3), "image_uri": uri(3)}]
    f.write_text(json.dumps({"images": entries}))
    # "other" has no functions: the deployable one is chosen
    assert dp.choose_image(CFG, build=dp.load_build_output(str(f)))[1].digest == digest(2)
    f.write_text(json.dumps(entries[:1]))
    assert dp.choose_image(CFG, build=dp.load_build_output(str(f)))[0] == "model"
    f.write_text("{not json")
    with pytest.raises(UsageError, match="not JSON"):
        dp.load_build_output(str(f))
    with pytest.raises(UsageError, match="no such file"):
        dp.load_build_output(str(tmp_path / "missing.json"))


def test_plan_lines_and_noop():
    fp = dp.FunctionPlan("predict", "rel-staging-predict", True, "3", digest(1))
    from pipeline_tools.release.gate import GatePolicy
    from pipeline_tools.release.schedule import steps

    plan = dp.DeployPlan("staging", "model", uri(1), digest(1), "canary", steps("canary", 10, 1), 1, 1, 5, (fp,),
                         GatePolicy(("rel-staging-*",)))
    assert plan.noop and plan.changing() == ()
    weighted = dp.FunctionPlan("predict", "rel-staging-predict", True, "3", digest(1), {"4": 0.1})
    plan2 = dp.DeployPlan(**{**plan.__dict__, "functions": (weighted,)})
    assert not plan2.noop and "weighted" in "\n".join(plan2.lines())


@pytest.mark.docker
def test_digest_missing_in_local_registry(registry):
    """The registry HTTP API (a local registry here, like PT_REGISTRY in local mode) is asked."""
    from pipeline_tools.core.errors import NotFoundError

    ref = dp.parse_image_uri(f"{registry}/rel-model@{digest(9)}")
    with pytest.raises(NotFoundError, match=f"not found in registry {registry}/rel-model"):
        dp.check_image(ref)


def test_unreachable_registry_is_an_error():
    from tests.conftest import free_port

    ref = dp.parse_image_uri(f"127.0.0.1:{free_port()}/rel-model@{digest(1)}")
    with pytest.raises(dp.DeployFailed, match="cannot reach registry"):
        dp.check_image(ref, timeout=2)
