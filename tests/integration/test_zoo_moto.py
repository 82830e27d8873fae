"""`pt zoo` against a moto server: plan/apply across staging → prod with the gate, copies vs new
versions, consumers (SSM parameter + Lambda environment) all-or-none, revert, gc, bad input."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from pipeline_tools.ops import artifacts as art
from pipeline_tools.ops import manifest as mf

PROJECT = "zz"
REPO = "111111111111.dkr.ecr.us-east-1.amazonaws.com/zz-model"
IMG1 = REPO + "@sha256:" + hashlib.sha256(b"img1").hexdigest()
IMG2 = REPO + "@sha256:" + hashlib.sha256(b"img2").hexdigest()

CONFIG = """\
project: zz
region: us-east-1
images:
  model: {{context: ., dockerfile: Dockerfile}}
functions:
  api: {{image: model}}
stages:
  staging:
    account: "111111111111"
    branch: integration
    deploy: {{bake: 0.2s}}
    gate: {{alarms: ["zz-staging-*"], insufficient_data: pass, poll: 0.05s}}
  prod:
    account: "222222222222"
    branch: master
    promote_from: staging
    deploy: {{bake: 0s}}
    gate: {{alarms: ["zz-prod-*"], insufficient_data: pass, poll: 0.05s}}
{prod_extra}
zoo:
  role: {role}
  models:
    resnet: {{copy: false, artifacts: models/resnet, handler: app.handler, memory: 1024}}
    bert: {{copy: true, artifacts: "s3://zz-{{stage}}-artifacts/models/bert"}}
  consumers:
    - {{model: resnet, ssm: "/zz/{{stage}}/resnet"}}
    - {{model: resnet, function: api, variable: RESNET_FN}}
"""


class Zoo:
    def __init__(self, aws, tmp: Path):
        self.aws, self.tmp = aws, tmp
        self.lam, self.ssm, self.s3, self.cw = (aws.client(s) for s in ("lambda", "ssm", "s3", "cloudwatch"))
        iam = aws.client("iam")
        self.role = iam.create_role(RoleName="zz-fn", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        for stage in ("staging", "prod"):
            self.lam.create_function(FunctionName=f"zz-{stage}-api", PackageType="Image", Code={"ImageUri": IMG1},
                                     Role=self.role, Environment={"Variables": {"KEEP": "1"}})
            if stage == "staging":  # served through alias live (deployed by pt deploy); prod's is not
                v = self.lam.publish_version(FunctionName="zz-staging-api",
                                             Description="pt seed " + IMG1.split("@")[1])["Version"]
                self.lam.create_alias(FunctionName="zz-staging-api", Name="live", FunctionVersion=v)
            self.s3.create_bucket(Bucket=f"zz-{stage}-artifacts")
            alarm = f"zz-{stage}-api-errors"
            self.cw.put_metric_alarm(AlarmName=alarm, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum",
                                     Period=60, EvaluationPeriods=1, Threshold=1,
                                     ComparisonOperator="GreaterThanOrEqualToThreshold")
            self.cw.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="seed")
        ecr = aws.client("ecr")
        ecr.create_repository(repositoryName="zz-model")
        for n, uri in enumerate((IMG1, IMG2)):
            manifest = json.dumps({"schemaVersion": 2,
                                   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                              "size": 1, "digest": "sha256:" + f"{n}" * 64}, "layers": []})
            ecr.put_image(repositoryName="zz-model", imageManifest=manifest, imageTag=f"t{n}",
                          imageDigest=uri.split("@")[1])
        self.config = tmp / "pipeline.yml"
        self.write_config()
        self.set_resnet("weights-1")
        self.set_bert("bert-1")

    def write_config(self, prod_extra: str = "") -> None:
        self.config.write_text(CONFIG.format(role=self.role, prod_extra=prod_extra))

    def set_resnet(self, content: str) -> None:
        root = self.tmp / "models" / "resnet"
        root.mkdir(parents=True, exist_ok=True)
        (root / "weights.bin").write_text(content)
        mf.write(mf.build(root), root / mf.MANIFEST_NAME)

    def set_bert(self, content: str, stages=("staging", "prod")) -> None:
        root = self.tmp / "bert-src"
        root.mkdir(exist_ok=True)
        (root / "model.onnx").write_text(content)
        for stage in stages:
            art.push(self.s3, root, art.Location.of(f"zz-{stage}-artifacts", "models/bert"))

    def alias(self, fn: str) -> str | None:
        try:
            return self.lam.get_alias(FunctionName=fn, Name="live")["FunctionVersion"]
        except self.lam.exceptions.ResourceNotFoundException:
            return None

    def exists(self, fn: str) -> bool:
        try:
            self.lam.get_function_configuration(FunctionName=fn)
            return True
        except self.lam.exceptions.ResourceNotFoundException:
            return False

    def consumers(self, stage: str) -> tuple[str | None, str | None]:
        """(SSM parameter, RESNET_FN of the api function as it serves: its live alias, else $LATEST)."""
        try:
            p = self.ssm.get_parameter(Name=f"/zz/{stage}/resnet")["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            p = None
        qual = {"Qualifier": "live"} if self.alias(f"zz-{stage}-api") else {}
        env = self.lam.get_function_configuration(FunctionName=f"zz-{stage}-api", **qual)["Environment"]["Variables"]
        return p, env.get("RESNET_FN")

    def records(self, stage: str, op: str | None = None):
        from pipeline_tools.release.ledger import Ledger

        led = Ledger(self.aws.client("dynamodb"), "zz-ledger")
        return [r for r in led.query(stage, "zoo") if op is None or r.data.get("operation") == op]


@pytest.fixture
def zoo(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("PT_ACTOR", "alice")
    monkeypatch.setenv("PT_COMMIT_AUTHOR", "alice@example.com")
    monkeypatch.setenv("PT_GIT_SHA", "0" * 40)
    return Zoo(aws, tmp_path)


def wait_for(pred, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def pt(run_pt, z: Zoo, *args: str):
    return run_pt("zoo", *args, "--config", str(z.config))


def test_plan_then_apply_staging_and_prod_then_skip(zoo, run_pt):
    r = pt(run_pt, zoo, "plan", "--image-uri", IMG1, "--output", "json")
    assert r.exit_code == 0, r
    stages = r.json()["stages"]
    assert [s["stage"] for s in stages] == ["staging", "prod"]
    actions = {m["model"]: (m["action"], m["function"]) for m in stages[0]["models"]}
    assert actions == {"bert": ("new-version", "zz-staging-bert"), "resnet": ("new-version", "zz-staging-resnet")}
    assert not zoo.exists("zz-staging-resnet")  # plan changes nothing

    r = pt(run_pt, zoo, "apply", "--image-uri", IMG1, "--output", "json")
    assert r.exit_code == 0, r
    out = r.json()
    assert [s["state"] for s in out["stages"]] == ["succeeded", "succeeded"]
    assert out["stages"][0]["gate"]["status"] == "PASS" and out["stages"][1]["gate"]["status"] == "PASS"
    assert {c["check"] for c in out["stages"][1]["checks"]} == {"deployed", "gate", "window", "lock"}
    for stage in ("staging", "prod"):
        assert zoo.alias(f"zz-{stage}-resnet") == "1" and zoo.alias(f"zz-{stage}-bert") == "1"
        assert zoo.consumers(stage) == (f"zz-{stage}-resnet:1", f"zz-{stage}-resnet:1")
        cfgv = zoo.lam.get_function_configuration(FunctionName=f"zz-{stage}-resnet", Qualifier="1")
        assert "artifacts=sha256:" in cfgv["Description"]
        assert cfgv["Environment"]["Variables"]["PT_MODEL_ARTIFACTS"].startswith(f"s3://zz-{stage}-artifacts/zoo/")
        assert cfgv["MemorySize"] == 1024
        api_env = zoo.lam.get_function_configuration(FunctionName=f"zz-{stage}-api")["Environment"]["Variables"]
        assert api_env["KEEP"] == "1"  # the consumer's other variables are kept
    # staging's api is served through its alias: the new value went live as a new version of it,
    # keeping the deploy engine's digest in the description
    assert zoo.alias("zz-staging-api") == "2"
    desc = zoo.lam.get_function_configuration(FunctionName="zz-staging-api", Qualifier="2")["Description"]
    assert desc.startswith("pt seed sha256:")
    rec = zoo.records("staging", "apply")[0]
    states = [t["state"] for t in rec.transitions if t.get("state")]
    assert states[0] == "locked" and states[-1] == "succeeded" and "repointing" in states
    assert any(t.get("event") == "gate" for t in rec.transitions)
    # uploaded local artifacts carry a manifest that verifies
    loc = art.parse_s3_url(zoo.lam.get_function_configuration(FunctionName="zz-staging-resnet", Qualifier="1")
                           ["Environment"]["Variables"]["PT_MODEL_ARTIFACTS"])
    assert art.verify(zoo.s3, loc)["ok"]

    r = pt(run_pt, zoo, "plan", "--output", "json")
    assert r.exit_code == 0, r
    assert all(m["action"] == "skip" for s in r.json()["stages"] for m in s["models"])
    r = pt(run_pt, zoo, "apply")
    assert r.exit_code == 0, r
    assert len(zoo.records("staging", "apply")) == 1  # nothing to do: no record, no lock


def test_copy_alongside_new_version_revert_and_gc(zoo, run_pt):
    from pipeline_tools.core import config
    from pipeline_tools.release.ledger import Ledger
    from pipeline_tools.targets import zoo as z

    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    zoo.set_bert("bert-2")
    zoo.set_resnet("weights-2")
    r = pt(run_pt, zoo, "plan", "--stage", "staging", "--output", "json")
    models = {m["model"]: m for m in r.json()["stages"][0]["models"]}
    assert models["bert"]["action"] == "copy" and models["bert"]["function"] == "zz-staging-bert_copy"
    assert models["bert"]["repoint"] == []
    assert models["resnet"]["action"] == "new-version" and len(models["resnet"]["repoint"]) == 2

    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--output", "json")
    assert r.exit_code == 0, r
    assert zoo.alias("zz-staging-bert") == "1" and zoo.alias("zz-staging-bert_copy") == "1"  # both live
    assert zoo.alias("zz-staging-resnet") == "2"
    assert zoo.consumers("staging") == ("zz-staging-resnet:2", "zz-staging-resnet:2")
    # the same artifacts again: no duplicate copy
    r = pt(run_pt, zoo, "plan", "--stage", "staging", "--output", "json")
    bert = next(m for m in r.json()["stages"][0]["models"] if m["model"] == "bert")
    assert bert["action"] == "skip" and "no duplicate copy" in bert["reason"]

    r = pt(run_pt, zoo, "revert", "--stage", "staging", "--dry-run", "--output", "json")
    assert r.exit_code == 0 and r.json()["dry_run"] and zoo.alias("zz-staging-resnet") == "2"
    r = pt(run_pt, zoo, "revert", "--stage", "staging", "--output", "json")
    assert r.exit_code == 0, r
    assert zoo.consumers("staging") == ("zz-staging-resnet:1", "zz-staging-resnet:1")
    assert zoo.alias("zz-staging-resnet") == "1"
    assert not zoo.exists("zz-staging-bert_copy")  # the copy this apply created is gone
    rev = zoo.records("staging", "revert")[0]
    assert rev.state == "succeeded" and len(rev.transitions) == 2  # one recorded step
    applies = zoo.records("staging", "apply")
    assert applies[0].data.get("reverted_by") == rev.id

    # gc: version 2 of resnet is used by nothing now; version 1 is live. Age via an injected clock.
    cfg = config.load(zoo.config)
    led = Ledger(zoo.aws.client("dynamodb"), "zz-ledger")
    d = z.ZooDeps(lambda_client=zoo.lam, ssm=zoo.ssm, ledger=led, clock=lambda: time.time() + 15 * 86400,
                  sleep=lambda _s: None, actor={"name": "alice"})
    young = z.gc(cfg, "staging", z.ZooDeps(lambda_client=zoo.lam, ssm=zoo.ssm, ledger=led), older_than=14 * 86400)
    assert young["deleted"] == [] and young["delete"] == []
    dry = z.gc(cfg, "staging", d, older_than=14 * 86400, dry_run=True)
    assert [(p["function"], p["version"]) for p in dry["delete"]] == [("zz-staging-resnet", "2")]
    done = z.gc(cfg, "staging", d, older_than=14 * 86400)
    assert [p["version"] for p in done["deleted"]] == ["2"]
    versions = [v["Version"] for v in zoo.lam.list_versions_by_function(FunctionName="zz-staging-resnet")["Versions"]]
    assert "1" in versions and "2" not in versions
    assert zoo.records("staging", "gc")[0].state == "succeeded"

    r = pt(run_pt, zoo, "gc", "--stage", "staging", "--older-than", "14d", "--output", "json")
    assert r.exit_code == 0 and r.json()["deleted"] == []


def test_revert_with_nothing_to_revert(zoo, run_pt):
    r = pt(run_pt, zoo, "revert", "--stage", "staging")
    assert r.exit_code == 1
    assert "nothing to revert in staging" in r.stderr


def test_bad_input(zoo, run_pt):
    r = pt(run_pt, zoo, "plan", "--model", "resnett", "--image-uri", IMG1)
    assert r.exit_code == 2 and "not in the zoo whitelist" in r.stderr and "resnet" in r.stderr
    r = pt(run_pt, zoo, "plan", "--image-uri", REPO + ":latest")
    assert r.exit_code == 2 and "digest" in r.stderr
    r = pt(run_pt, zoo, "plan", "--image-uri", REPO + "@sha256:" + "e" * 64)
    assert r.exit_code == 1 and "not found in ECR repository zz-model" in r.stderr

    (zoo.tmp / "models" / "resnet" / "weights.bin").write_text("tampered")
    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1)
    assert r.exit_code == 1 and "do not match" in r.stderr and "weights.bin" in r.stderr
    assert not zoo.exists("zz-staging-resnet") and zoo.records("staging") == []

    (zoo.tmp / "models" / "resnet" / "manifest.json").unlink()
    r = pt(run_pt, zoo, "plan", "--stage", "staging", "--image-uri", IMG1)
    assert r.exit_code == 1 and "artifacts missing their manifest" in r.stderr

    zoo.set_resnet("weights-1")
    zoo.s3.delete_object(Bucket="zz-staging-artifacts", Key="models/bert/manifest.json")
    r = pt(run_pt, zoo, "plan", "--stage", "staging", "--image-uri", IMG1)
    assert r.exit_code == 1 and "bert: artifacts missing" in r.stderr

    r = pt(run_pt, zoo, "plan", "--stage", "staging", "--model", "resnet")  # never deployed, no image
    assert r.exit_code == 2 and "--image-uri" in r.stderr


def test_unknown_model_in_config(zoo, run_pt):
    zoo.config.write_text(zoo.config.read_text().replace("{model: resnet, ssm:", "{model: resnt, ssm:"))
    r = pt(run_pt, zoo, "plan")
    assert r.exit_code == 2 and "unknown model 'resnt'" in r.stderr and "did you mean 'resnet'" in r.stderr


def test_model_named_like_a_function(zoo, run_pt):
    zoo.config.write_text(zoo.config.read_text().replace("    bert: {copy: true", "    api: {copy: true"))
    r = pt(run_pt, zoo, "plan")
    assert r.exit_code == 2 and "api collide with `functions:`" in r.stderr, r


def test_consumer_failure_undoes_everything(zoo, run_pt):
    zoo.ssm.put_parameter(Name="/zz/staging/resnet", Value="old-value", Type="String")
    zoo.lam.delete_function(FunctionName="zz-staging-api")  # the second consumer cannot be updated
    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1)
    assert r.exit_code == 1, r
    assert "rolled back" in r.stderr and "re-pointing consumers failed" in r.stderr
    assert zoo.ssm.get_parameter(Name="/zz/staging/resnet")["Parameter"]["Value"] == "old-value"
    assert not zoo.exists("zz-staging-resnet") and not zoo.exists("zz-staging-bert")
    rec = zoo.records("staging", "apply")[0]
    assert rec.state == "rolled_back"
    from pipeline_tools.release.ledger import Ledger

    assert Ledger(zoo.aws.client("dynamodb"), "zz-ledger").current_lock("staging") is None


def test_alarm_firing_before_apply_blocks_it(zoo, run_pt):
    zoo.cw.set_alarm_state(AlarmName="zz-staging-api-errors", StateValue="ALARM", StateReason="errors up")
    r = pt(run_pt, zoo, "apply", "--image-uri", IMG1)
    assert r.exit_code == 1 and "already in ALARM before the zoo apply to staging" in r.stderr, r
    assert not zoo.exists("zz-staging-resnet") and zoo.records("staging") == []


def test_gate_fail_in_staging_reverts_and_leaves_prod_untouched(zoo, run_pt):
    import threading

    assert pt(run_pt, zoo, "apply", "--image-uri", IMG1).exit_code == 0
    zoo.config.write_text(zoo.config.read_text().replace("deploy: {bake: 0.2s}", "deploy: {bake: 3s}"))
    zoo.set_resnet("weights-2")
    errors: list[BaseException] = []

    def alarm_during_bake():  # the moment the second staging apply succeeded, errors go up
        try:
            wait_for(lambda: any(r.state == "succeeded" for r in zoo.records("staging", "apply")[:-1]), 30)
            zoo.cw.set_alarm_state(AlarmName="zz-staging-api-errors", StateValue="ALARM", StateReason="errors up")
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=alarm_during_bake)
    t.start()
    r = pt(run_pt, zoo, "apply", "--output", "json")
    t.join(30)
    assert not errors
    assert r.exit_code == 1, r
    assert "staging gate FAIL" in r.stderr and "prod untouched" in r.stderr
    assert zoo.alias("zz-staging-resnet") == "1"  # reverted
    assert zoo.consumers("staging") == ("zz-staging-resnet:1", "zz-staging-resnet:1")
    assert zoo.alias("zz-prod-resnet") == "1"
    assert len(zoo.records("prod", "apply")) == 1


def test_prod_needs_staging_gate_and_approvals(zoo, run_pt, monkeypatch):
    zoo.write_config(prod_extra="    approvals: {required: 1, two_person_rule: true}")
    # prod before staging ran the set: refused
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1)
    assert r.exit_code == 1 and "staging has not run this zoo set" in r.stderr
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1, "--dry-run", "--output", "json")
    assert r.exit_code == 0
    refused = r.json()["stages"][0]["checks"][0]
    assert refused["ok"] is False and "approvals" in refused["detail"]
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1)
    assert r.exit_code == 1 and "approvals for prod not satisfied" in r.stderr
    assert zoo.records("prod", "apply")[0].reason.startswith("refused: approvals")  # the refusal is recorded
    r = pt(run_pt, zoo, "approve", "--stage", "prod")
    assert r.exit_code == 1 and "commit author" in r.stderr  # two-person rule
    monkeypatch.setenv("PT_ACTOR", "carol")
    r = pt(run_pt, zoo, "approve", "--stage", "prod", "--dry-run")
    assert r.exit_code == 0 and "would approve zoo set" in r.stdout and "0 of 1" in r.stdout, r
    r = pt(run_pt, zoo, "approve", "--stage", "prod", "-m", "ok", "--output", "json")
    assert r.exit_code == 0 and r.json()["status"]["satisfied"], r
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1, "--output", "json")
    assert r.exit_code == 0, r
    checks = {c["check"]: c for c in r.json()["stages"][0]["checks"]}
    assert checks["approvals"]["ok"] and "carol" in checks["approvals"]["detail"]
    assert zoo.consumers("prod") == ("zz-prod-resnet:1", "zz-prod-resnet:1")


def test_dead_apply_is_refused_then_recovered(zoo, run_pt):
    """An apply that died after moving resnet to v2 and one consumer: `pt zoo recover` undoes both."""
    from pipeline_tools.release.ledger import Ledger

    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    led = Ledger(zoo.aws.client("dynamodb"), "zz-ledger")
    fn = "zz-staging-resnet"
    v2 = zoo.lam.publish_version(FunctionName=fn, Description="pt zoo dead")["Version"]
    zoo.lam.update_alias(FunctionName=fn, Name="live", FunctionVersion=v2)
    zoo.ssm.put_parameter(Name="/zz/staging/resnet", Value=f"{fn}:{v2}", Type="String", Overwrite=True)
    led.acquire("staging", "20261127T000000000Z-dead00", {"name": "bob"}, lease=0)
    led.put_record("zoo", "staging", {
        "operation": "apply", "set_digest": "sha256:" + "0" * 64,
        "models": [{"model": "resnet", "action": "new-version", "function": fn, "created": False,
                    "previous_version": "1", "version": v2}],
        "consumers": [{"consumer": "ssm:/zz/staging/resnet", "model": "resnet", "kind": "ssm",
                       "target": "/zz/staging/resnet", "variable": None, "previous": f"{fn}:1",
                       "value": f"{fn}:{v2}"}]}, state="repointing", record_id="20261127T000000000Z-dead00")

    r = pt(run_pt, zoo, "apply", "--stage", "staging")
    assert r.exit_code == 4 and "pt zoo recover --stage staging" in r.stderr, r
    r = pt(run_pt, zoo, "recover", "--stage", "staging", "--dry-run", "--output", "json")
    assert r.exit_code == 0 and r.json()["action"] == "undo-apply" and zoo.alias(fn) == v2
    r = pt(run_pt, zoo, "recover", "--stage", "staging", "--output", "json")
    assert r.exit_code == 0, r
    assert zoo.alias(fn) == "1" and zoo.consumers("staging")[0] == f"{fn}:1"
    assert led.get("staging", "20261127T000000000Z-dead00").state == "rolled_back"
    assert led.current_lock("staging") is None
    r = pt(run_pt, zoo, "recover", "--stage", "staging", "--output", "json")
    assert r.json()["action"] == "nothing-to-recover"


def test_consumer_with_unpublished_code_is_not_republished(zoo, run_pt):
    """Re-publishing the consumer's $LATEST would ship code its alias does not run: refused, all undone."""
    zoo.lam.update_function_code(FunctionName="zz-staging-api", ImageUri=IMG2)  # e.g. a rolled-back deploy
    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1)
    assert r.exit_code == 1 and "differs from its live version" in r.stderr, r
    assert zoo.consumers("staging") == (None, None)  # the SSM parameter written first was removed again
    assert zoo.alias("zz-staging-api") == "1" and not zoo.exists("zz-staging-resnet")


def test_human_output(zoo, run_pt):
    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1, "--dry-run")
    assert r.exit_code == 0 and "dry run: nothing changed" in r.stdout and "new-version" in r.stdout
    assert not zoo.exists("zz-staging-resnet")
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    r = pt(run_pt, zoo, "revert", "--stage", "staging")
    assert r.exit_code == 0 and "zz-staging-resnet: v1 → function deleted" in r.stdout, r
    assert "ssm:/zz/staging/resnet: zz-staging-resnet:1 → (removed)" in r.stdout
    r = pt(run_pt, zoo, "gc", "--stage", "staging", "--older-than", "14d", "--dry-run")
    assert r.exit_code == 0 and "would delete 0 version(s) on staging" in r.stdout
    r = pt(run_pt, zoo, "gc", "--stage", "staging", "--older-than", "soon")
    assert r.exit_code == 2 and "--older-than" in r.stderr


def test_sigterm_during_apply_rolls_back(zoo):
    """SIGTERM after resnet's version is published: everything this apply did is undone, lock freed."""
    import os
    import signal

    from pipeline_tools.core import config
    from pipeline_tools.ops.artifacts import s3_client
    from pipeline_tools.release.ledger import Ledger, ensure_table
    from pipeline_tools.targets import zoo as z

    class Terminating:
        """The real Lambda client; SIGTERMs this process on the second publish_version."""

        def __init__(self, real):
            self.real, self.published = real, 0

        def __getattr__(self, name):
            return getattr(self.real, name)

        def publish_version(self, **kw):
            out = self.real.publish_version(**kw)
            self.published += 1
            if self.published == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

    ddb = zoo.aws.client("dynamodb")
    ensure_table(ddb, "zz-ledger", project="zz", stage="staging", local=True)
    led = Ledger(ddb, "zz-ledger")
    d = z.ZooDeps(lambda_client=Terminating(zoo.lam), ssm=zoo.ssm, ledger=led, s3=s3_client(zoo.aws),
                  actor={"name": "alice"})
    cfg = config.load(zoo.config)
    plan = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG1)
    with pytest.raises(z.DeployFailed, match="SIGTERM"):
        z.apply_stage(cfg, plan, d)
    assert not zoo.exists("zz-staging-resnet") and not zoo.exists("zz-staging-bert")
    assert zoo.consumers("staging") == (None, None)
    assert zoo.records("staging", "apply")[0].state == "rolled_back"
    assert led.current_lock("staging") is None


def test_rollback_never_deletes_a_function_it_did_not_create(zoo):
    """Planned as 'create', but another party's function of that name appeared before the apply:
    the create fails, the rollback leaves that function alone."""
    from pipeline_tools.core import config
    from pipeline_tools.ops.artifacts import s3_client
    from pipeline_tools.release.ledger import Ledger, ensure_table
    from pipeline_tools.targets import zoo as z

    ddb = zoo.aws.client("dynamodb")
    ensure_table(ddb, "zz-ledger", project="zz", stage="staging", local=True)
    d = z.ZooDeps(lambda_client=zoo.lam, ssm=zoo.ssm, ledger=Ledger(ddb, "zz-ledger"), s3=s3_client(zoo.aws),
                  sleep=lambda _s: None, actor={"name": "alice"})
    cfg = config.load(zoo.config)
    plan = z.plan_stage(cfg, "staging", deps=d, image_uri=IMG1, models=["resnet"])
    assert plan.models[0].create
    zoo.lam.create_function(FunctionName="zz-staging-resnet", PackageType="Image", Code={"ImageUri": IMG2},
                            Role=zoo.role)
    with pytest.raises(z.DeployFailed, match="rolled back"):
        z.apply_stage(cfg, plan, d)
    assert zoo.exists("zz-staging-resnet")
    assert zoo.records("staging", "apply")[0].state == "rolled_back"


def test_revert_refuses_over_later_changes_unless_forced(zoo, run_pt):
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    zoo.ssm.put_parameter(Name="/zz/staging/resnet", Value="hand-edited", Type="String", Overwrite=True)
    r = pt(run_pt, zoo, "revert", "--stage", "staging")
    assert r.exit_code == 1 and "changed since zoo apply" in r.stderr and "hand-edited" in r.stderr, r
    assert zoo.exists("zz-staging-resnet") and zoo.records("staging", "revert") == []
    r = pt(run_pt, zoo, "revert", "--stage", "staging", "--force", "--output", "json")
    assert r.exit_code == 0 and r.json()["drift"], r
    assert zoo.consumers("staging") == (None, None) and not zoo.exists("zz-staging-resnet")


def test_prod_window_and_override(zoo, run_pt):
    # closed except Mondays 02:00-02:01 UTC (the deploy tests use the same window)
    zoo.write_config(prod_extra='    window: {days: [mon], hours: "02:00-02:01", timezone: UTC}')
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1)
    assert r.exit_code == 1 and "outside deploy window" in r.stderr, r
    assert not zoo.exists("zz-prod-resnet")
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1, "--override-window")
    assert r.exit_code == 2 and "--reason" in r.stderr
    r = pt(run_pt, zoo, "apply", "--stage", "prod", "--image-uri", IMG1, "--override-window", "--reason", "INC-7",
           "--output", "json")
    assert r.exit_code == 0, r
    rec = zoo.records("prod", "apply")[0]
    assert rec.state == "succeeded" and rec.data["window"]["overridden"] and rec.data["window"]["reason"] == "INC-7"
    assert rec.transitions[0]["reason"] == "window override: INC-7"


def test_gc_keeps_the_previous_version_of_a_model_another_apply_did_not_touch(zoo, run_pt):
    """apply A (resnet v1 → v2), apply B (bert's copy), gc: resnet v1 is no alias's and no consumer's,
    and B is the newest apply — still v1 stays, so reverting B then A works."""
    from pipeline_tools.core import config
    from pipeline_tools.release.ledger import Ledger
    from pipeline_tools.targets import zoo as z

    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1).exit_code == 0
    zoo.set_resnet("weights-2")
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--model", "resnet").exit_code == 0  # A
    zoo.set_bert("bert-2")
    assert pt(run_pt, zoo, "apply", "--stage", "staging", "--model", "bert").exit_code == 0  # B
    assert zoo.alias("zz-staging-resnet") == "2" and zoo.exists("zz-staging-bert_copy")

    cfg = config.load(zoo.config)
    d = z.ZooDeps(lambda_client=zoo.lam, ssm=zoo.ssm, ledger=Ledger(zoo.aws.client("dynamodb"), "zz-ledger"),
                  clock=lambda: time.time() + 15 * 86400, sleep=lambda _s: None, actor={"name": "alice"})
    done = z.gc(cfg, "staging", d, older_than=14 * 86400)
    assert ("zz-staging-resnet", "1") not in {(p["function"], p["version"]) for p in done["deleted"]}

    assert pt(run_pt, zoo, "revert", "--stage", "staging").exit_code == 0  # B: the copy goes
    assert not zoo.exists("zz-staging-bert_copy")
    r = pt(run_pt, zoo, "revert", "--stage", "staging")  # A: resnet back to v1, which gc kept
    assert r.exit_code == 0, r
    assert zoo.alias("zz-staging-resnet") == "1"
    assert zoo.consumers("staging") == ("zz-staging-resnet:1", "zz-staging-resnet:1")


def test_apply_in_waves_cli_progress_and_json(zoo, run_pt):
    text = zoo.config.read_text().replace("    - {model: resnet, function: api, variable: RESNET_FN}\n",
                                          "    - {model: resnet, function: api, variable: RESNET_FN}\n"
                                          "  waves: [1, rest]\n  wave_bake: 0.1s\n  parallel: 2\n")
    zoo.config.write_text(text)
    r = pt(run_pt, zoo, "apply", "--stage", "staging", "--image-uri", IMG1, "--output", "json")
    assert r.exit_code == 0, r
    st = r.json()["stages"][0]
    assert [len(w["consumers"]) for w in st["waves"]] == [1, 1]
    assert st["waves"][0]["gate"]["status"] == "PASS" and st["waves"][1]["gate"] is None
    assert "staging: wave 1/2: re-pointing 1 consumer(s): ssm:/zz/staging/resnet" in r.stderr
    assert "staging: wave 1/2: gate PASS" in r.stderr and "staging: wave 2/2: re-pointing" in r.stderr
    assert zoo.consumers("staging") == ("zz-staging-resnet:1", "zz-staging-resnet:1")
    rec = zoo.records("staging", "apply")[0]
    assert [(c["consumer"], c["wave"], c["outcome"]) for c in rec.data["consumers"]] == [
        ("ssm:/zz/staging/resnet", 1, "set"), ("lambda:zz-staging-api#RESNET_FN", 2, "set")]
    zoo.set_resnet("weights-2")
    r = pt(run_pt, zoo, "apply", "--stage", "staging")
    assert r.exit_code == 0, r
    assert "wave 1: 1 consumer(s); gate PASS" in r.stdout and "wave 2: 1 consumer(s)" in r.stdout


def test_plan_reads_no_caller_identity_and_plans_as_the_full_config_does(zoo, run_pt, monkeypatch):
    """`pt zoo plan` records nothing, so it asks STS for no actor; it reads pipeline.yml through the
    lean zoo view (targets/zoo_config.py) and plans exactly what the fully validated config plans."""
    from pipeline_tools.core.aws import AwsFactory
    from pipeline_tools.core.config import load
    from pipeline_tools.targets import zoo_config

    assert isinstance(zoo_config.load(str(zoo.config)), zoo_config.ZooLeanConfig)  # this file takes the view
    sent: list[str] = []
    orig = AwsFactory.client

    def client(self, service, region=None):
        c = orig(self, service, region)
        if not getattr(c, "_zoo_counted", False):
            c.meta.events.register("before-send", lambda event_name, **_: sent.append(event_name.split(".", 1)[1]))
            c._zoo_counted = True
        return c

    monkeypatch.setattr(AwsFactory, "client", client)
    r = pt(run_pt, zoo, "plan", "--image-uri", IMG1, "--output", "json")
    assert r.exit_code == 0, r
    assert "lambda.GetAlias" in sent and "ecr.DescribeImages" in sent  # counted (every client)
    assert not [s for s in sent if s.startswith("sts.")], sent
    monkeypatch.setattr(zoo_config, "load", load)  # the same command over the full loader
    full = pt(run_pt, zoo, "plan", "--image-uri", IMG1, "--output", "json")
    assert full.exit_code == 0, full
    assert r.json() == full.json()
