"""`pt teardown` of a stage with services, against moto server: API, schedules, state machine
(aliases, versions), SageMaker, access-policy attachments, service bucket (all versions), service
stack and parameters, in dependency order; the other stage's copies survive.

moto 5.2 has no ListStateMachineVersions/DeleteStateMachineVersion: `SfnVersions` answers those
two from the versions the test published (shaped like the API reference) and passes the rest on."""

from __future__ import annotations

import json
import time

from pipeline_tools.core.config import load
from pipeline_tools.ops import teardown as td

from .conftest_ops import role_arn, seed_bucket, seed_repository
from .conftest_services import seed_access, write_services_config

SAGEMAKER = "targets:\n  sagemaker: {endpoint: ep, image: model, model_artifacts: models/ep}\n"


class SfnVersions:
    def __init__(self, client, versions: dict[str, list[str]]):
        self._c, self.versions, self.calls = client, versions, []

    def list_state_machine_versions(self, stateMachineArn: str, **_kw):
        return {"stateMachineVersions": [{"stateMachineVersionArn": v, "creationDate": 0}
                                         for v in self.versions.get(stateMachineArn, [])]}

    def delete_state_machine_version(self, stateMachineVersionArn: str):
        self.calls.append(("delete_version", stateMachineVersionArn))
        for vs in self.versions.values():
            if stateMachineVersionArn in vs:
                vs.remove(stateMachineVersionArn)
        return {}

    def __getattr__(self, name):
        attr = getattr(self._c, name)
        if callable(attr) and name.startswith("delete"):
            def wrapped(**kw):
                self.calls.append((name, next(iter(kw.values()))))
                return attr(**kw)
            return wrapped
        return attr


def seed_services(aws, tmp_path):
    pool = seed_access(aws, {"analysts": True})
    cfg_path = write_services_config(tmp_path, pool)
    cfg_path.write_text(cfg_path.read_text().replace("targets:\n", SAGEMAKER))
    cfg = load(cfg_path)
    role = role_arn(aws)
    for stage in ("val", "prod"):
        aws.client("apigateway").create_rest_api(name=f"iris-{stage}-scorer-api")
        aws.client("scheduler").create_schedule(
            Name=f"iris-{stage}-score", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": "arn:aws:batch:us-east-1:123456789012:job-queue/q", "RoleArn": role})
        seed_bucket(aws, f"iris-scorer-{stage}", keys=2, versions_per_key=3, markers=1)
        aws.client("ssm").put_parameter(Name=f"/pt/scorer/{stage}/train/lr", Value="0.1", Type="String")
    sfn = aws.client("stepfunctions")
    definition = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    versions = {}
    for stage in ("val", "prod"):
        arn = sfn.create_state_machine(name=f"iris-{stage}-flow", definition=definition,
                                       roleArn=role)["stateMachineArn"]
        v = sfn.update_state_machine(stateMachineArn=arn, definition=definition, publish=True)["stateMachineVersionArn"]
        sfn.create_state_machine_alias(name="live", routingConfiguration=[{"stateMachineVersionArn": v, "weight": 100}])
        versions[arn] = [v]
    sm = aws.client("sagemaker")
    for stage in ("val", "prod"):
        model = f"iris-{stage}-ep-20261205t1"
        sm.create_model(ModelName=model, ExecutionRoleArn=role, PrimaryContainer={"Image": "x/y:1"})
        sm.create_endpoint_config(EndpointConfigName=f"iris-{stage}-ep-20261205t1", ProductionVariants=[{
            "VariantName": "main", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
        sm.create_endpoint(EndpointName=f"iris-{stage}-ep", EndpointConfigName=f"iris-{stage}-ep-20261205t1")
    iam = aws.client("iam")
    iam.attach_role_policy(RoleName="cognito-analysts",
                           PolicyArn="arn:aws:iam::123456789012:policy/iris-val-scorer-access")
    aws.client("cloudformation").create_stack(StackName="iris-scorer-val-service", TemplateBody=json.dumps({
        "Resources": {"T": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "iris-scorer-val-notices"}}}}))
    seed_repository(aws, "iris-model", images=1)
    return cfg, versions


def clients(aws, sfn) -> td.Clients:
    return td.Clients(lambda_client=aws.client("lambda"), s3=aws.client("s3"), ecr=aws.client("ecr"),
                      logs=aws.client("logs"), cloudformation=aws.client("cloudformation"),
                      dynamodb=aws.client("dynamodb"), cloudwatch=aws.client("cloudwatch"), sns=aws.client("sns"),
                      apigateway=aws.client("apigateway"), stepfunctions=sfn, scheduler=aws.client("scheduler"),
                      sagemaker=aws.client("sagemaker"), iam=aws.client("iam"), ssm=aws.client("ssm"))


def test_services_are_torn_down_in_order_and_prod_survives(aws, tmp_path):
    cfg, versions = seed_services(aws, tmp_path)
    sfn = SfnVersions(aws.client("stepfunctions"), versions)
    c = clients(aws, sfn)

    plan = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, dry_run=True,
                       evidence_dir=tmp_path / "ev")
    assert {a.result for a in plan.actions} <= {"planned", "kept"}
    assert aws.client("apigateway").get_rest_apis()["items"] and sfn.calls == []

    ev = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert ev.ok, (ev.failed, ev.remaining)
    steps = [a.step for a in ev.actions if a.result == "done"]
    order = ["s1-api", "s2-schedules", "s3-state-machines", "s4-sagemaker", "s5-access", "s6-empty-service-buckets",
             "s7-service-stacks", "s8-sweep", "delete-repositories"]
    firsts = [steps.index(s) for s in order]
    assert firsts == sorted(firsts), steps
    assert steps[-1] == "delete-repositories"  # ECR last
    # within the state machine: aliases, then versions, then the machine
    kinds = [k for k, _ in sfn.calls]
    assert kinds == ["delete_state_machine_alias", "delete_version", "delete_state_machine"]

    assert [a["name"] for a in aws.client("apigateway").get_rest_apis()["items"]] == ["iris-prod-scorer-api"]
    assert [s["Name"] for s in aws.client("scheduler").list_schedules()["Schedules"]] == ["iris-prod-score"]
    assert [m["name"] for m in aws.client("stepfunctions").list_state_machines()["stateMachines"]] == ["iris-prod-flow"]
    sm = aws.client("sagemaker")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["iris-prod-ep"]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["iris-prod-ep-20261205t1"]
    assert aws.client("iam").list_attached_role_policies(RoleName="cognito-analysts")["AttachedPolicies"] == []
    buckets = {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}
    assert "iris-scorer-val" not in buckets and "iris-scorer-prod" in buckets
    names = [p["Name"] for p in aws.client("ssm").get_parameters_by_path(Path="/pt", Recursive=True)["Parameters"]]
    assert names == ["/pt/scorer/prod/train/lr"]
    stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
    assert all(s["StackStatus"] == "DELETE_COMPLETE" for s in stacks if s["StackName"] == "iris-scorer-val-service")


def test_a_missing_client_is_not_checked_and_not_ok(aws, tmp_path):
    cfg, _versions = seed_services(aws, tmp_path)
    c = clients(aws, None)
    ev = td.teardown(cfg, "val", c, clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert not ev.ok
    assert {"type": "stepfunctions", "name": "not checked (no client)"} in ev.remaining
    assert any(a.result == "skipped" and a.resource_type == "stepfunctions" for a in ev.actions)


def test_shared_service_bucket_is_kept(aws, tmp_path):
    cfg, versions = seed_services(aws, tmp_path)
    aws.client("s3").create_bucket(Bucket="iris-scorer-all")
    data = cfg.model_dump()
    data["services"]["scorer"]["bucket"] = "{project}-{service}-all"
    from pipeline_tools.core.config import Config

    shared = Config.model_validate({k: v for k, v in data.items() if k != "source"})
    ev = td.teardown(shared, "val", clients(aws, SfnVersions(aws.client("stepfunctions"), versions)),
                     clock=time.time, sleep=lambda s: None, evidence_dir=tmp_path / "ev")
    assert any(k["name"] == "iris-scorer-all" and "shared with stage(s) prod" in k["why"] for k in ev.kept)
    assert "iris-scorer-all" in {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}


def test_cli_dry_run_lists_service_resources(aws, tmp_path, run_pt):
    pool = seed_access(aws, {"analysts": True})
    cfg = write_services_config(tmp_path, pool)
    aws.client("apigateway").create_rest_api(name="iris-val-scorer-api")
    seed_bucket(aws, "iris-scorer-val", keys=1, versions_per_key=2, markers=0)
    r = run_pt("teardown", "--stage", "val", "--config", cfg, "--dry-run", "--evidence-dir", tmp_path / "ev",
               "--output", "json")
    assert r.exit_code == 0, r
    found = {(f["type"], f["name"]) for f in r.json()["found"]}
    assert ("apigateway:restapi", "iris-val-scorer-api") in found and ("s3:bucket", "iris-scorer-val") in found
    assert aws.client("apigateway").get_rest_apis()["items"]
