"""The zoo planner (pure): names, skip / copy / new-version with reasons, set digests, whitelist,
gc selection, consumers all-or-none, and the `zoo:` config section."""

from __future__ import annotations

import hashlib
import textwrap
from itertools import permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import ConfigError, DeployFailed, UsageError
from pipeline_tools.targets import zoo as z
from pipeline_tools.targets import zoo_plan as zp


def h(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/zz-model"
MAIN, COPYFN = "zz-staging-resnet", "zz-staging-resnet_copy"


def live(fn: str, version: str = "3", art: int = 1, img: int = 10, weighted: bool = False) -> z.Deployed:
    return z.Deployed(fn, True, version, h(art), h(img), f"{REPO}@{h(img)}", weighted)


def model(copy: bool = False, art: int = 1, img: int | None = None, consumers=("ssm:/p",)) -> z.ModelInput:
    return z.ModelInput("resnet", copy, h(art), h(img) if img is not None else None,
                        f"{REPO}@{h(img)}" if img is not None else None, tuple(consumers), "models/resnet")


# --- names -------------------------------------------------------------------------------------


class Cfg:
    project = "zz"

    def function_name(self, stage: str, fn: str) -> str:
        return f"{self.project}-{stage}-{fn}"


def test_function_names_follow_the_naming_contract():
    assert z.function_names(Cfg(), "staging", "resnet") == (MAIN, COPYFN)


def test_function_name_too_long_for_lambda():
    with pytest.raises(UsageError, match="naming rules"):
        z.function_names(Cfg(), "staging", "m" * 50)


@given(st.text(min_size=0, max_size=80))
def test_check_function_name_accepts_exactly_lambdas_rule(name):
    ok = 1 <= len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    if ok:
        assert zp.check_function_name(name) == name
    else:
        with pytest.raises(UsageError):
            zp.check_function_name(name)


# --- the decision table -----------------------------------------------------------------------


@pytest.mark.parametrize("m, main, copy, action, fn, why", [
    (model(), live(MAIN), z.Deployed(COPYFN), "skip", MAIN, "already runs these artifacts"),
    (model(art=2), live(MAIN), z.Deployed(COPYFN), "new-version", MAIN, "artifacts sha256:6b86b273ff3"),
    (model(img=11), live(MAIN), z.Deployed(COPYFN), "new-version", MAIN, "image"),
    (model(img=10), live(MAIN), z.Deployed(COPYFN), "skip", MAIN, "and image"),
    (model(), live(MAIN, weighted=True), z.Deployed(COPYFN), "new-version", MAIN, "split between versions"),
    (model(img=10), z.Deployed(MAIN), z.Deployed(COPYFN), "new-version", MAIN, "not deployed yet"),
    (model(img=10), z.Deployed(MAIN, exists=True), z.Deployed(COPYFN), "new-version", MAIN, "without alias live"),
    (model(copy=True), live(MAIN), z.Deployed(COPYFN), "skip", MAIN, "no duplicate copy"),
    (model(copy=True, art=2), live(MAIN), z.Deployed(COPYFN), "copy", COPYFN, "alongside"),
    (model(copy=True, art=2), live(MAIN), live(COPYFN, "1", art=2), "skip", COPYFN, "no duplicate copy"),
    (model(copy=True, art=3), live(MAIN), live(COPYFN, "1", art=2), "copy", COPYFN, "a new version of"),
    (model(copy=True, img=10), z.Deployed(MAIN), z.Deployed(COPYFN), "new-version", MAIN, "no running model"),
])
def test_decisions(m, main, copy, action, fn, why):
    p = zp.plan_model(m, main, copy)
    assert (p.action, p.function) == (action, fn)
    assert why in p.reason


def test_copy_never_repoints_consumers_and_new_version_does():
    c = zp.plan_model(model(copy=True, art=2), live(MAIN), z.Deployed(COPYFN))
    assert c.repoint == () and c.create and c.previous_version is None
    n = zp.plan_model(model(art=2, consumers=("ssm:/a", "lambda:f#V")), live(MAIN), z.Deployed(COPYFN))
    assert n.repoint == ("ssm:/a", "lambda:f#V") and not n.create and n.previous_version == "3"


def test_kept_image_is_the_running_one():
    p = zp.plan_model(model(art=2), live(MAIN, img=12), z.Deployed(COPYFN))
    assert p.image_digest == h(12) and p.image_uri == f"{REPO}@{h(12)}"


def test_never_deployed_without_image_is_a_usage_error():
    with pytest.raises(UsageError, match="never been deployed"):
        zp.plan_model(model(), z.Deployed(MAIN), z.Deployed(COPYFN))


deployed = st.builds(
    lambda fn, exists, version, art, img, weighted: z.Deployed(
        fn, exists, version if exists else None, h(art) if exists and version else None,
        h(img) if exists and version else None, f"{REPO}@{h(img)}" if exists and version else None,
        weighted and exists and bool(version)),
    st.just(""), st.booleans(), st.sampled_from([None, "1", "7"]), st.integers(0, 2), st.integers(10, 11),
    st.booleans())


@settings(max_examples=400, deadline=None)
@given(copy=st.booleans(), art=st.integers(0, 2), img=st.sampled_from([None, 10, 11]), main=deployed, cp=deployed)
def test_planner_properties(copy, art, img, main, cp):
    main = z.Deployed(MAIN, *[getattr(main, f) for f in ("exists", "version", "artifacts", "digest", "image_uri",
                                                         "weighted")])
    cp = z.Deployed(COPYFN, *[getattr(cp, f) for f in ("exists", "version", "artifacts", "digest", "image_uri",
                                                       "weighted")])
    m = model(copy=copy, art=art, img=img)

    def same(d):
        return d.live and not d.weighted and d.artifacts == m.artifacts and (img is None or d.digest == h(img))

    try:
        p = zp.plan_model(m, main, cp)
    except UsageError:
        assert not (same(main) or (copy and main.live and same(cp)))
        assert img is None and main.image_uri is None and cp.image_uri is None
        return
    # skip exactly when what runs already has these artifacts (and the requested image)
    assert (p.action == zp.SKIP) == (same(main) or (copy and main.live and same(cp)))
    if p.action == zp.COPY:
        assert copy and main.live and p.function == COPYFN and p.repoint == ()
        assert p.create == (not cp.exists) and p.previous_version == cp.version
    if p.action == z.NEW_VERSION:
        assert p.function == MAIN and p.repoint == m.consumers
        assert p.create == (not main.exists) and p.previous_version == main.version
    if not copy:
        assert p.function == MAIN and p.action != zp.COPY
    assert p.image_digest is not None or p.action == zp.SKIP
    assert p.reason


def test_plan_models_sorted_and_set_digest_independent_of_order():
    inputs = [z.ModelInput(n, False, h(i), h(10), f"{REPO}@{h(10)}") for i, n in enumerate(["c", "a", "b"])]
    states = {n: (z.Deployed(f"zz-s-{n}"), z.Deployed(f"zz-s-{n}_copy")) for n in "abc"}
    plans = [z.plan_models("s", order, states) for order in permutations(inputs)]
    assert {p.set_digest for p in plans} == {plans[0].set_digest}
    assert [m.model for m in plans[0].models] == ["a", "b", "c"]
    assert plans[0].counts() == {"skip": 0, "copy": 0, "new-version": 3} and not plans[0].noop
    other = z.plan_models("s", [*inputs[:2], z.ModelInput("b", False, h(99), h(10), f"{REPO}@{h(10)}")], states)
    assert other.set_digest != plans[0].set_digest


def test_select_whitelist():
    models = {"resnet": 1, "bert": 2}
    assert z.select(models, None) == ["bert", "resnet"]
    assert z.select(models, ["resnet", "resnet"]) == ["resnet"]
    with pytest.raises(UsageError, match="not in the zoo whitelist") as e:
        z.select(models, ["resnett"])
    assert "did you mean 'resnet'" in e.value.hint
    with pytest.raises(UsageError) as e:
        z.select(models, ["gpt"])
    assert "whitelisted: resnet, bert" in e.value.hint


# --- gc selection, times, URIs ----------------------------------------------------------------


@given(st.lists(st.tuples(st.sampled_from(["$LATEST", "1", "2", "3", "10", "11"]),
                          st.one_of(st.none(), st.floats(0, 3e6))), max_size=8),
       st.sets(st.sampled_from(["1", "2", "3", "10"])), st.floats(0, 2e6))
def test_gc_candidates_never_touch_used_latest_or_young(versions, in_use, older):
    now = 3e6
    out = z.gc_candidates(versions, in_use, now, older)
    ages = {}
    for v, at in versions:
        ages.setdefault(v, []).append(at)
    for v in out:
        assert v.isdigit() and v not in in_use
        assert any(at is not None and now - at >= older for at in ages[v])
    assert out == sorted(out, key=int)


def test_lambda_time_formats():
    assert z.lambda_time("2019-08-14T22:26:11.234+0000") == pytest.approx(1565821571.234)
    assert z.lambda_time("2019-08-14T22:26:11.234000000Z") == pytest.approx(1565821571.234)
    assert z.lambda_time("2019-08-14T22:26:11Z") == pytest.approx(1565821571)
    assert z.lambda_time("yesterday") is None and z.lambda_time(None) is None


@pytest.mark.parametrize("uri, out", [
    (f"{REPO}:v1", f"{REPO}@{h(1)}"),
    (f"{REPO}@{h(2)}", f"{REPO}@{h(1)}"),
    ("127.0.0.1:5055/zz-model:t", f"127.0.0.1:5055/zz-model@{h(1)}"),
    (None, None),
])
def test_with_digest(uri, out):
    assert z.with_digest(uri, h(1)) == out


# --- consumers all or none ---------------------------------------------------------------------


class FakeSsm:
    """Just enough of SSM for set_consumers; fails on the write to `fail_on`."""

    class _NotFound(Exception):
        def __init__(self) -> None:
            super().__init__("not found")
            self.response = {"Error": {"Code": "ParameterNotFound"}}

    def __init__(self, values: dict, fail_on: str | None = None):
        self.values, self.fail_on = dict(values), fail_on

    def put_parameter(self, Name, Value, Type, Overwrite):
        if Name == self.fail_on and Value.endswith(":2"):
            raise RuntimeError(f"throttled on {Name}")
        self.values[Name] = Value

    def delete_parameter(self, Name):
        if Name not in self.values:
            raise self._NotFound()
        del self.values[Name]


def test_set_consumers_all_or_none():
    cons = [z.Consumer("m", "ssm", f"/p{i}") for i in range(4)]
    ssm = FakeSsm({"/p0": "f:1", "/p1": "f:1", "/p3": "f:1"}, fail_on="/p2")
    before = dict(ssm.values)
    changes = [(c, before.get(c.target), "f:2") for c in cons]
    with pytest.raises(DeployFailed, match=r"failed at ssm:/p2.*undid 2"):
        z.set_consumers(changes, ssm=ssm, lc=None, clock=lambda: 0.0, sleep=lambda _s: None)
    assert ssm.values == before
    ok = FakeSsm(before)
    z.set_consumers(changes, ssm=ok, lc=None, clock=lambda: 0.0, sleep=lambda _s: None)
    assert ok.values == {f"/p{i}": "f:2" for i in range(4)}


# --- config ------------------------------------------------------------------------------------

BASE = textwrap.dedent("""\
    project: zz
    region: us-east-1
    images: {model: {context: .}}
    functions: {api: {image: model}}
    stages: {staging: {account: "111111111111", branch: main, gate: {alarms: ["zz-staging-*"]}}}
    """)


def test_zoo_config_section():
    cfg = parse(BASE + textwrap.dedent("""\
        zoo:
          gc_older_than: 14d
          models:
            resnet: {copy: true, artifacts: models/resnet, memory: 2048}
            bert: {artifacts: "s3://b/{stage}/bert"}
          consumers:
            - {model: resnet, ssm: "/{project}/{stage}/resnet"}
            - {model: bert, function: api, variable: BERT_FN}
        """))
    assert cfg.zoo.gc_older_than == 14 * 86400
    assert cfg.zoo.models["resnet"].copy_alongside and not cfg.zoo.models["bert"].copy_alongside
    assert [c.key for c in z.consumers(cfg, "staging")] == ["ssm:/zz/staging/resnet", "lambda:zz-staging-api#BERT_FN"]
    assert parse(BASE).zoo is None
    assert cfg.zoo.waves is None and cfg.zoo.parallel == 8 and cfg.zoo.wave_bake is None
    waved = parse(BASE + "zoo:\n  models: {m: {artifacts: d}}\n  consumers: [{model: m, ssm: /a}]\n"
                         "  waves: [1, \"10%\", rest]\n  wave_bake: 30s\n  parallel: 3\n")
    assert waved.zoo.waves == [1, "10%", "rest"] and waved.zoo.wave_bake == 30 and waved.zoo.parallel == 3


@pytest.mark.parametrize("zoo, message", [
    ("models: {resnet: {artifacts: d}}\n  consumers: [{model: resnt, ssm: /p}]",
     "unknown model 'resnt' (did you mean 'resnet'?)"),
    ("models: {Res_Net: {artifacts: d}}", "model name 'Res_Net'"),
    ("models: {resnet: {artifacts: d}}\n  consumers: [{model: resnet, function: api}]", "needs `variable:`"),
    ("models: {resnet: {artifacts: d}}\n  consumers: [{model: resnet}]", "either `ssm: PARAMETER`"),
    ("models: {resnet: {artifacts: d, copy: maybe}}", "must be true or false"),
    ("models: {resnet: {}}", "required key is missing"),
    ("gc_older_than: soon", "must be a duration"),
    ("models: {resnet: {artifacts: d}}\n  consumers: [{model: resnet, ssm: /a}, {model: resnet, ssm: /b}]\n"
     "  waves: [1]", ":9: zoo.waves: waves place 1 of 2 consumer(s)"),
    ("models: {resnet: {artifacts: d}}\n  waves: [rest, 1]", ":8: zoo.waves: \"rest\" must be the last wave"),
    ("models: {resnet: {artifacts: d}}\n  waves: [\"10\"]", "expected a count (1), a percentage"),
    ("models: {resnet: {artifacts: d}}\n  parallel: 0", "zoo.parallel"),
])
def test_zoo_config_errors(zoo, message):
    with pytest.raises(ConfigError) as e:
        parse(BASE + "zoo:\n  " + zoo + "\n")
    assert any(message in line for line in e.value.lines()), e.value.lines()
