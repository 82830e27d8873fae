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


# --- consumers in waves ------------------------------------------------------------------------

WAVE_MODELS = MODELS[:3]
PARAMS = [f"/zp/staging/c{i}" for i in range(8)]  # 8 consumers: waves [1, "25%", rest] → 1, 2, 5


@pytest.fixture(name="waves")
def waves_fixture(setup, tmp_path):
    aws, _cfg, led = setup
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="zp-staging-errors", MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                        Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold")
    cw.set_alarm_state(AlarmName="zp-staging-errors", StateValue="OK", StateReason="seed")
    cfg_text = (tmp_path / "pipeline.yml").read_text()
    cons = "\n".join(f"    - {{model: {WAVE_MODELS[i % 3]}, ssm: \"{p}\"}}" for i, p in enumerate(PARAMS))
    text = cfg_text.replace("staging: {account: '111111111111', branch: main, gate: {alarms: [zp-staging-]}}",
                            "staging: {account: '111111111111', branch: main, deploy: {bake: 0s}, "
                            "gate: {alarms: [zp-staging-*], insufficient_data: pass, poll: 0.05s}}")
    text += f"  consumers:\n{cons}\n  waves: [1, \"25%\", rest]\n  wave_bake: 0.2s\n"
    (tmp_path / "pipeline.yml").write_text(text)
    ssm = aws.client("ssm")
    for p in PARAMS[:4]:  # half of them held a value before (the other half are new)
        ssm.put_parameter(Name=p, Value="old:1", Type="String")
    return aws, config.load(tmp_path / "pipeline.yml"), led


def _values(aws) -> dict[str, str | None]:
    ssm, out = aws.client("ssm"), {}
    for p in PARAMS:
        try:
            out[p] = ssm.get_parameter(Name=p)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            out[p] = None
    return out


class Ssm:
    """The real SSM client; counts writes in flight, can fail one parameter or run a hook on a write."""

    def __init__(self, real, fail: str | None = None, on_write=None, meet: int = 0):
        self.real, self.fail, self.on_write = real, fail, on_write
        self.lock = threading.Lock()
        self.running = self.peak = self.writes = 0
        self.met = False
        self.barrier = threading.Barrier(meet, timeout=20) if meet else None

    def __getattr__(self, name):
        return getattr(self.real, name)

    def put_parameter(self, **kw):
        with self.lock:
            self.running += 1
            self.writes += 1
            self.peak = max(self.peak, self.running)
            n = self.writes
        try:
            if self.barrier is not None and n > 1 and not self.met:  # wave 1 is a single write
                try:
                    self.barrier.wait()  # only passes if two writes of a wave run at the same time
                    self.met = True
                except threading.BrokenBarrierError:
                    pass
            if self.on_write:
                self.on_write(n, kw)
            if kw["Name"] == self.fail and kw["Value"].startswith("zp-"):
                raise RuntimeError(f"injected failure writing {self.fail}")
            return self.real.put_parameter(**kw)
        finally:
            with self.lock:
                self.running -= 1


def _wave_deps(aws, led, ssm, parallel: int, log=None) -> z.ZooDeps:
    return z.ZooDeps(lambda_client=aws.client("lambda"), ssm=ssm, ledger=led, s3=s3_client(aws),
                     cloudwatch=aws.client("cloudwatch"), sleep=lambda _s: None, actor={"name": "alice"},
                     parallel=parallel, log=log or (lambda _m: None))


def test_consumers_move_in_waves_with_the_gate_between_them(waves):
    aws, cfg, led = waves
    lines: list[str] = []
    ssm = Ssm(aws.client("ssm"), meet=2)
    d = _wave_deps(aws, led, ssm, 4, lines.append)
    rec = z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=WAVE_MODELS), d)
    assert rec.state == "succeeded"
    stored = led.get("staging", rec.id)
    assert [len(w["consumers"]) for w in stored.data["waves"]] == [1, 2, 5]
    assert [w["gate"]["status"] if w["gate"] else None for w in stored.data["waves"]] == ["PASS", "PASS", None]
    assert sorted(c["wave"] for c in stored.data["consumers"]) == [1, 2, 2, 3, 3, 3, 3, 3]
    assert {c["outcome"] for c in stored.data["consumers"]} == {"set"}
    assert all(v and v.startswith("zp-staging-m0") and v.endswith(":1") for v in _values(aws).values())
    assert 2 <= ssm.peak <= 4 and ssm.met  # writes inside a wave run at once, bounded
    assert [ln.split(": re-pointing")[0] for ln in lines if "re-pointing" in ln] == \
        [f"staging: wave {n}/3" for n in (1, 2, 3)]
    assert sum("gate PASS" in ln for ln in lines) == 2
    # the waves are written to the record before each one acts: a repointing transition per wave
    assert [t.get("reason", "").split(":")[0] for t in stored.transitions if t["state"] == "repointing"][:1] == \
        ["wave 1/3"]


def test_a_gate_fail_between_waves_undoes_every_wave_and_records_each_consumer(waves):
    aws, cfg, led = waves
    before = _values(aws)
    cw = aws.client("cloudwatch")

    def alarm_after_wave_one(n, _kw):
        if n == 1:  # the first consumer moved: the alarm goes off during the gate after wave 1
            cw.set_alarm_state(AlarmName="zp-staging-errors", StateValue="ALARM", StateReason="test")

    d = _wave_deps(aws, led, Ssm(aws.client("ssm"), on_write=alarm_after_wave_one), 4)
    plan = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=WAVE_MODELS)
    with pytest.raises(z.DeployFailed, match=r"gate FAIL after wave 1/3 .*stopped before wave 2"):
        z.apply_stage(cfg, plan, d)
    assert _values(aws) == before  # wave 1 is put back too (old value, or no parameter)
    rec = led.query("staging", "zoo")[0]
    assert rec.state == "rolled_back"
    outcomes = {c["consumer"]: (c["wave"], c["outcome"]) for c in rec.data["consumers"]}
    assert sorted(outcomes.values()) == [(1, "reverted")] + [(2, "untouched")] * 2 + [(3, "untouched")] * 5
    assert rec.data["waves"][0]["gate"]["status"] == "FAIL"
    assert not {f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]} & \
        {f"zp-staging-{m}" for m in WAVE_MODELS}  # the models this apply created are gone
    assert led.current_lock("staging") is None


def test_a_gate_that_cannot_read_its_alarms_between_waves_fails_closed(waves):
    aws, cfg, led = waves
    before = _values(aws)

    class Broken:
        def __getattr__(self, name):
            def fail(**_kw):
                raise RuntimeError("cloudwatch unreachable")
            return fail

    d = _wave_deps(aws, led, aws.client("ssm"), 2)
    d.cloudwatch = Broken()
    with pytest.raises(z.DeployFailed, match="cloudwatch unreachable"):
        z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=WAVE_MODELS), d)
    assert _values(aws) == before
    rec = led.query("staging", "zoo")[0]
    assert rec.state == "rolled_back" and rec.data["consumers"][0]["outcome"] == "reverted"


def test_a_consumer_failing_in_a_later_wave_undoes_the_earlier_waves(waves):
    aws, cfg, led = waves
    before = _values(aws)
    d = _wave_deps(aws, led, Ssm(aws.client("ssm"), fail=None), 3)
    plan = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=WAVE_MODELS)
    # which parameter lands in wave 3 follows the plan's order: fail the last one
    order = [c for s in sorted(WAVE_MODELS) for c in PARAMS if WAVE_MODELS[PARAMS.index(c) % 3] == s]
    d.ssm = Ssm(aws.client("ssm"), fail=order[-1])
    with pytest.raises(z.DeployFailed, match=f"failed at ssm:{order[-1]}"):
        z.apply_stage(cfg, plan, d)
    assert _values(aws) == before
    rec = led.query("staging", "zoo")[0]
    by = {c["consumer"]: c for c in rec.data["consumers"]}
    assert by[f"ssm:{order[-1]}"]["outcome"] == "failed, reverted" and by[f"ssm:{order[-1]}"]["wave"] == 3
    assert by[f"ssm:{order[0]}"]["outcome"] == "reverted" and by[f"ssm:{order[0]}"]["wave"] == 1
    assert all(c["outcome"] in ("reverted", "failed, reverted", "untouched") for c in by.values())
    assert [w["gate"]["status"] for w in rec.data["waves"][:2]] == ["PASS", "PASS"]


# --- plan at scale: request counts (not timings) -----------------------------------------------

class Count:
    """Requests sent by the given clients, per operation (botocore before-send)."""

    def __init__(self, *clients):
        self.calls: list[str] = []
        for c in clients:
            c.meta.events.register("before-send", self._on)

    def _on(self, event_name, **_kw):
        self.calls.append(".".join(event_name.split(".")[1:]))

    def clear(self):
        self.calls.clear()

    def of(self, service: str) -> list[str]:
        return [c for c in self.calls if c.startswith(service + ".")]


def test_a_cached_plan_reads_the_ledger_not_lambda(setup, monkeypatch):
    aws, cfg, led = setup
    lc, ddb = aws.client("lambda"), aws.client("dynamodb")
    led = Ledger(ddb, "zp-ledger")
    n = Count(lc, ddb)
    d = _deps(aws, led, lc, 4)
    monkeypatch.setattr(z, "LIST_FUNCTIONS_FROM", 1)  # as at hundreds of models
    first = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, cached=True)
    # nothing deployed, no records: one ListFunctions pass tells every function is missing
    assert n.of("lambda") == ["lambda.ListFunctions"] and len(n.of("dynamodb")) <= 2
    assert first.reads == {"ledger": 0, "aws": len(MODELS), "functions": len(MODELS), "cached": True}
    z.apply_stage(cfg, first, d)

    n.clear()
    cached = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, cached=True)
    assert n.of("lambda") == [] and n.of("dynamodb") == ["dynamodb.Query"]  # one page: the apply's record
    assert cached.reads["ledger"] == len(MODELS) and cached.counts()["skip"] == len(MODELS)
    n.clear()
    fresh = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG)
    assert len(n.of("lambda")) == 1 + 2 * len(MODELS)  # ListFunctions, then GetAlias + GetFunction per model
    assert fresh.to_dict()["models"] == cached.to_dict()["models"] and fresh.set_digest == cached.set_digest


def test_the_cache_looks_through_a_revert_and_apply_reads_lambda(setup):
    aws, cfg, led = setup
    lc = aws.client("lambda")
    d = _deps(aws, led, lc, 4)
    z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=MODELS[:2]), d)
    img2 = REPO + "@sha256:" + hashlib.sha256(b"zp-img2").hexdigest()
    z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=img2, models=MODELS[:2]), d)
    z.revert(cfg, "staging", d)  # back to IMG's v1
    cached = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=MODELS[:2], cached=True)
    assert cached.reads["ledger"] == 2 and cached.counts()["skip"] == 2
    assert cached.to_dict()["models"] == z.plan_stage(cfg, "staging", deps=d, image_uri=IMG,
                                                      models=MODELS[:2]).to_dict()["models"]
    # an alias moved by hand: the cache cannot see it, a refresh (and so every apply) does
    lc.update_alias(FunctionName="zp-staging-m00", Name="live", FunctionVersion="2")
    assert z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=MODELS[:1], cached=True).noop
    fresh = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG, models=MODELS[:1])
    assert fresh.models[0].action == "new-version" and fresh.models[0].previous_version == "2"


def throttle_publishes(client, times: int = 2) -> dict[str, int]:
    """Lambda answers HTTP 429 TooManyRequestsException to the first `times` PublishVersion calls of
    every function, on the wire, so botocore's retry mode (core/aws.py) is what has to cope."""
    import threading

    from botocore.awsrequest import AWSResponse

    seen: dict[str, int] = {}
    lock = threading.Lock()

    class _Raw:
        def __init__(self, body: bytes):
            self._body = body

        def stream(self, **_kw):
            yield self._body

    def before_send(request, **_kw):
        name = request.url.split("/functions/", 1)[1].split("/", 1)[0]
        with lock:
            n = seen.get(name, 0)
            seen[name] = n + 1
        if n < times:
            body = b'{"Type": "User", "message": "Rate exceeded"}'
            return AWSResponse(request.url, 429, {"x-amzn-ErrorType": "TooManyRequestsException",
                                                  "Content-Type": "application/json"}, _Raw(body))
        return None

    client.meta.events.register("before-send.lambda.PublishVersion", before_send)
    return seen


def test_throttling_under_parallel_apply_is_retried_and_every_model_recorded(setup):
    from pipeline_tools.core.aws import AwsFactory

    aws, cfg, led = setup
    # the default attempts (5), not the suite's short PT_AWS_MAX_ATTEMPTS
    lc = AwsFactory(region="us-east-1", endpoint=aws.endpoint, max_attempts=5).client("lambda")
    seen = throttle_publishes(lc, times=1)   # botocore's backoff sleeps for real: one throttle per model
    d = _deps(aws, led, lc, 4)
    rec = z.apply_stage(cfg, z.plan_stage(cfg, "staging", deps=d, image_uri=IMG), d)
    assert rec.state == "succeeded"
    # every publish was throttled on the wire and then went through: retried, not failed
    assert len(seen) == len(MODELS) and all(n == 2 for n in seen.values()), seen
    stored = led.get("staging", rec.id)
    assert sorted(m["model"] for m in stored.data["models"] if m["version"]) == MODELS
