"""`pt zoo` with --parallel N against moto server: bounded concurrency, the same plan as one at a
time, and on a failure every model that was touched is in the ledger record and undone."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from pipeline_tools.core import config
from pipeline_tools.ops import manifest as mf
from pipeline_tools.ops.artifacts import s3_client
from pipeline_tools.release.ledger import FenceLost, Ledger, ensure_table
from pipeline_tools.targets import zoo as z

REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/zp-model"
IMG = REPO + "@sha256:" + hashlib.sha256(b"zp-img").hexdigest()
MODELS = [f"m{i:02d}" for i in range(12)]


@pytest.fixture(name="setup")
def setup_fixture(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "alice")
    role = aws.client("iam").create_role(RoleName="zp-fn", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    aws.client("s3").create_bucket(Bucket="zp-staging-artifacts")
    art = tmp_path / "models" / "shared"
    art.mkdir(parents=True)
    (art / "weights.bin").write_text("weights")
    mf.write(mf.build(art), art / mf.MANIFEST_NAME)
    models = "\n".join(f"    {m}: {{copy: false, artifacts: models/shared}}" for m in MODELS)
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(f"project: zp\nregion: us-east-1\nimages: {{model: {{context: .}}}}\nstages:\n"
                   f"  staging: {{account: '111111111111', branch: main, gate: {{alarms: [zp-staging-]}}}}\n"
                   f"zoo:\n  role: {role}\n  models:\n{models}\n")
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "zp-ledger", project="zp", stage="staging", local=True)
    return aws, config.load(cfg), Ledger(ddb, "zp-ledger")


class Watching:
    """The real Lambda client, counting create_function calls in flight; optionally failing one."""

    def __init__(self, real, fail: str | None = None, meet: int = 0):
        self.real, self.fail = real, fail
        self.lock = threading.Lock()
        self.running = self.peak = 0
        self.created: list[str] = []
        self.barrier = threading.Barrier(meet, timeout=20) if meet else None

    def __getattr__(self, name):
        return getattr(self.real, name)

    def create_function(self, **kw):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            if self.barrier is not None and not self.barrier.broken:
                try:
                    self.barrier.wait()  # only passes if `meet` creates run at the same time
                except threading.BrokenBarrierError:
                    pass
            if kw["FunctionName"] == self.fail:
                raise RuntimeError(f"injected failure creating {self.fail}")
            out = self.real.create_function(**kw)
            with self.lock:
                self.created.append(kw["FunctionName"])
            return out
        finally:
            with self.lock:
                self.running -= 1


def _deps(aws, led, lc, parallel: int) -> z.ZooDeps:
    return z.ZooDeps(lambda_client=lc, ssm=aws.client("ssm"), ledger=led, s3=s3_client(aws), sleep=lambda _s: None,
                     actor={"name": "alice"}, parallel=parallel)


def test_parallel_plan_is_the_sequential_plan(setup):
    aws, cfg, led = setup
    one = z.plan_stage(cfg, "staging", deps=_deps(aws, led, aws.client("lambda"), 1), image_uri=IMG)
    many = z.plan_stage(cfg, "staging", deps=_deps(aws, led, aws.client("lambda"), 6), image_uri=IMG)
    assert many.to_dict() == one.to_dict() and len(one.models) == len(MODELS)


def test_parallel_apply_runs_n_at_once_and_records_every_model(setup):
    aws, cfg, led = setup
    lc = Watching(aws.client("lambda"), meet=2)
    d = _deps(aws, led, lc, 3)
    rec = z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG), d)
    assert rec.state == "succeeded"
    assert not lc.barrier.broken and 2 <= lc.peak <= 3  # concurrent, and bounded by --parallel
    stored = led.get("staging", rec.id)
    assert sorted(m["model"] for m in stored.data["models"] if m["version"]) == MODELS
    # two writes per wave (recorded before, live after), not two per model: 500 models fit in one item
    assert len(stored.transitions) <= 6 and len(stored.data["plan"]["models"]) == len(MODELS)
    assert set(stored.data["plan"]["models"][0]) == {"model", "action", "reason"}
    for m in MODELS:
        assert aws.client("lambda").get_alias(FunctionName=f"zp-staging-{m}", Name="live")["FunctionVersion"]


def test_a_failure_leaves_no_model_unrecorded_and_undoes_them_all(setup):
    aws, cfg, led = setup
    lc = Watching(aws.client("lambda"), fail="zp-staging-m05")
    d = _deps(aws, led, lc, 4)
    plan = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG)
    with pytest.raises(z.DeployFailed, match="rolled back: RuntimeError: injected failure creating zp-staging-m05"):
        z.apply_stage(cfg, plan, d)
    rec = led.query("staging", "zoo")[0]
    assert rec.state == "rolled_back"
    recorded = {m["function"] for m in rec.data["models"]}
    assert set(lc.created) <= recorded and "zp-staging-m05" in recorded  # every touched model is in the record
    names = {f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]}
    assert not names & {f"zp-staging-{m}" for m in MODELS}  # and everything created was undone
    assert led.current_lock("staging") is None


def test_listing_existing_functions_plans_the_same_with_fewer_requests(setup, monkeypatch):
    aws, cfg, led = setup
    lc = aws.client("lambda")
    calls: list[str] = []
    lc.meta.events.register("before-send.lambda.*", lambda event_name, **_: calls.append(event_name.split(".")[-1]))
    d = _deps(aws, led, lc, 4)
    z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=MODELS[:5]), d)  # 5 exist
    monkeypatch.setattr(z, "LIST_FUNCTIONS_FROM", 10**6)
    calls.clear()
    each = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG).to_dict()
    per_function = len(calls)
    monkeypatch.setattr(z, "LIST_FUNCTIONS_FROM", 1)
    calls.clear()
    listed = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG).to_dict()
    assert listed == each
    assert "ListFunctions" in calls and len(calls) < per_function
    assert calls.count("GetAlias") == 5  # only the functions that exist are read one by one


class TakenOver(Watching):
    """While the first model is created, another process (`pt recover --force`) takes the lock over."""

    def __init__(self, real, led):
        super().__init__(real)
        self.led, self.took = led, None

    def create_function(self, **kw):
        if self.took is None:
            rec = self.led.query("staging", "zoo")[0]
            self.took = self.led.take_over("staging", rec.id, {"name": "bob"}, force=True)
        return super().create_function(**kw)


def test_a_zoo_apply_whose_lock_was_taken_over_writes_nothing_more(setup):
    """The fence covers zoo records too: the old holder's next write fails instead of clobbering
    the record the new holder now owns."""
    aws, cfg, led = setup
    lc = TakenOver(aws.client("lambda"), led)
    d = _deps(aws, led, lc, 1)
    with pytest.raises(FenceLost):
        z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG), d)
    rec = led.query("staging", "zoo")[0]
    assert rec.state != "succeeded"  # the old holder did not finish the record under bob's lock
    lock = led.current_lock("staging")
    assert lock is not None and lock.token == lc.took.token  # bob's lock was not released by the old holder
