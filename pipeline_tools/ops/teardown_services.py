"""The service part of `pt teardown`: what `services:` (and the Step Functions, Batch schedule and
SageMaker targets) own in a stage, found and deleted in dependency order.

Order (each step idempotent; `ops/teardown.py` runs it after traffic is stopped and before the
stage's own bucket, stack and ECR, which stay last):

  s1. the service APIs (`names.api_name`): the entry points go first, so no new run starts
  s2. the EventBridge Scheduler schedules of the Batch targets (`names.batch_schedule`)
  s3. the state machines (`names.state_machine`): aliases, then versions, then the machine
  s4. the SageMaker endpoint of the stage, then its endpoint configs, then its models
  s5. the access policy (`names.access_policy`) detached from every role but the service's own
      access role (the Cognito groups' roles `pt access grant` attached it to); a managed policy
      that is still attached blocks the service stack's deletion
  s6. the service buckets emptied: every object version and delete marker
  s7. the service stacks (`names.service_stack`), waited for
  s8. sweep: the service buckets, the parameters under `/pt/<service>/<stage>/`

A service bucket whose name another stage renders too (a `bucket:` template without `{stage}`)
is kept, with the reason in the evidence, like the stage bucket.

Library code: the clients come in (`ops.teardown.Clients`); a missing client skips its step and
says so in the evidence (fail visible, never a silent "nothing there").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names
from pipeline_tools.core.aws import client_error_code

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config

_GONE = {"ResourceNotFoundException", "ResourceNotFound", "NotFoundException", "NoSuchEntity", "NoSuchBucket",
         "StateMachineDoesNotExist", "ValidationException", "ParameterNotFound", "404"}


@dataclass
class ServiceInventory:
    apis: list[tuple[str, str]] = field(default_factory=list)                # (id, name)
    schedules: list[tuple[str, str]] = field(default_factory=list)           # (group, name)
    state_machines: list[dict] = field(default_factory=list)                 # {arn, name, aliases, versions}
    endpoints: list[str] = field(default_factory=list)
    endpoint_configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str]] = field(default_factory=list)         # (role, policy arn)
    buckets: dict[str, list[dict]] = field(default_factory=dict)             # bucket -> object versions
    stacks: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)                      # steps without a client

    def listing(self) -> list[dict]:
        out: list[dict] = [{"type": "cloudformation:stack", "name": s} for s in self.stacks]
        out += [{"type": "apigateway:restapi", "name": n, "detail": i} for i, n in self.apis]
        out += [{"type": "scheduler:schedule", "name": n, "detail": f"group {g}"} for g, n in self.schedules]
        out += [{"type": "states:state-machine", "name": m["name"],
                 "detail": f"aliases {len(m['aliases'])}; versions {len(m['versions'])}"} for m in self.state_machines]
        out += [{"type": "sagemaker:endpoint", "name": n} for n in self.endpoints]
        out += [{"type": "sagemaker:endpoint-config", "name": n} for n in self.endpoint_configs]
        out += [{"type": "sagemaker:model", "name": n} for n in self.models]
        out += [{"type": "iam:policy-attachment", "name": f"{r} <- {p.rsplit('/', 1)[-1]}"}
                for r, p in self.attachments]
        for b, versions in self.buckets.items():
            out.append({"type": "s3:bucket", "name": b, "detail": f"{len(versions)} object versions/markers"})
        out += [{"type": "ssm:parameter", "name": p} for p in self.parameters]
        return out


def wanted(cfg: Config, stage: str) -> dict[str, Any]:
    """Names the stage's services and targets own (pure)."""
    services = cfg.services_for(stage)
    machines = {names.state_machine(cfg.project, stage, k) for k in cfg.targets.stepfunctions}
    machines |= {names.state_machine(cfg.project, stage, s.state_machine) for s in services.values() if s.state_machine}
    batch = set(cfg.targets.batch) | {b for s in services.values() for b in s.batch}
    endpoint = None
    sm = cfg.targets.sagemaker
    if sm is not None and (sm.stages is None or stage in sm.stages):
        from pipeline_tools.targets.sagemaker import endpoint_name

        endpoint = endpoint_name(cfg, stage)
    return {"apis": {names.api_name(cfg.project, s, stage) for s, svc in services.items() if svc.api is not None},
            "machines": machines, "schedules": {names.batch_schedule(cfg.project, stage, b) for b in batch},
            "endpoint": endpoint, "services": list(services)}


def shared_buckets(cfg: Config, stage: str) -> dict[str, str]:
    """Service buckets another stage renders too (pure): bucket -> why."""
    out = {}
    for svc in cfg.services_for(stage):
        mine = cfg.service_bucket(svc, stage)
        others = [s for s in cfg.stages if s != stage and svc in cfg.services_for(s)
                  and cfg.service_bucket(svc, s) == mine]
        if others:
            out[mine] = (f"shared with stage(s) {', '.join(others)}: services.{svc}.bucket "
                         f"{cfg.services[svc].bucket!r} renders the same name for them")
    return out


def _pages(client, op: str, key: str, token_in: str = "NextToken", token_out: str = "NextToken", **kw) -> list:
    out: list = []
    while True:
        resp = getattr(client, op)(**kw)
        out += resp.get(key, [])
        token = resp.get(token_out)
        if not token:
            return out
        kw[token_in] = token


def discover(cfg: Config, stage: str, c: Any) -> ServiceInventory:
    from pipeline_tools.ops import access
    from pipeline_tools.ops.teardown import list_object_versions

    inv = ServiceInventory()
    w = wanted(cfg, stage)

    def need(client_name: str, why: bool) -> Any:
        client = getattr(c, client_name, None)
        if why and client is None:
            inv.unchecked.append(client_name)
        return client if why else None

    if (api := need("apigateway", bool(w["apis"]))) is not None:
        for item in _pages(api, "get_rest_apis", "items", "position", "position"):
            if item.get("name") in w["apis"]:
                inv.apis.append((item["id"], item["name"]))
    if (sch := need("scheduler", bool(w["schedules"]))) is not None:
        for s in _pages(sch, "list_schedules", "Schedules"):
            if s.get("Name") in w["schedules"]:
                inv.schedules.append((s.get("GroupName") or "default", s["Name"]))
    if (sfn := need("stepfunctions", bool(w["machines"]))) is not None:
        for m in _pages(sfn, "list_state_machines", "stateMachines", "nextToken", "nextToken"):
            if m["name"] in w["machines"]:
                arn = m["stateMachineArn"]
                aliases = [a["stateMachineAliasArn"] for a in _pages(
                    sfn, "list_state_machine_aliases", "stateMachineAliases", "nextToken", "nextToken",
                    stateMachineArn=arn)]
                versions = [v["stateMachineVersionArn"] for v in _pages(
                    sfn, "list_state_machine_versions", "stateMachineVersions", "nextToken", "nextToken",
                    stateMachineArn=arn)]
                inv.state_machines.append({"arn": arn, "name": m["name"], "aliases": aliases, "versions": versions})
    ep = w["endpoint"]
    if (sm := need("sagemaker", ep is not None)) is not None:
        def mine(n: str) -> bool:
            return n == ep or n.startswith(ep + "-")

        inv.endpoints = [e["EndpointName"] for e in _pages(sm, "list_endpoints", "Endpoints", NameContains=ep)
                         if mine(e["EndpointName"])]
        inv.endpoint_configs = [e["EndpointConfigName"] for e in _pages(
            sm, "list_endpoint_configs", "EndpointConfigs", NameContains=ep) if mine(e["EndpointConfigName"])]
        inv.models = [m["ModelName"] for m in _pages(sm, "list_models", "Models", NameContains=ep)
                      if mine(m["ModelName"])]
    services = w["services"]
    if (iam := need("iam", any(cfg.services[s].access is not None for s in services))) is not None:
        for svc in services:
            if cfg.services[svc].access is None:
                continue
            arn = access.policy_arn(cfg, svc, stage)
            own = names.access_role(cfg.project, svc, stage)
            try:
                roles = _pages(iam, "list_entities_for_policy", "PolicyRoles", "Marker", "Marker",
                               PolicyArn=arn, EntityFilter="Role")
            except Exception as e:
                if client_error_code(e) in _GONE:
                    continue
                raise
            inv.attachments += [(r["RoleName"], arn) for r in roles if r["RoleName"] != own]
    shared = shared_buckets(cfg, stage)
    for svc in services:
        bucket = cfg.service_bucket(svc, stage)
        if bucket in shared:
            inv.kept.append({"type": "s3:bucket", "name": bucket, "why": shared[bucket]})
            continue
        try:
            c.s3.head_bucket(Bucket=bucket)
        except Exception as e:
            if client_error_code(e) in _GONE | {"NotFound"}:
                continue
            raise
        inv.buckets[bucket] = list_object_versions(c.s3, bucket)
    if (cfn := need("cloudformation", bool(services))) is not None:
        for svc in services:
            stack = names.service_stack(cfg.project, svc, stage)
            try:
                st = cfn.describe_stacks(StackName=stack)["Stacks"]
            except Exception as e:
                if client_error_code(e) == "ValidationError" and "does not exist" in str(e):
                    continue
                raise
            if st and st[0].get("StackStatus") != "DELETE_COMPLETE":
                inv.stacks.append(stack)
    if (ssm := need("ssm", bool(services))) is not None:
        for svc in services:
            prefix = cfg.params_path(svc, stage)
            for page in ssm.get_paginator("get_parameters_by_path").paginate(
                    Path=prefix.rstrip("/"), Recursive=True, PaginationConfig={"PageSize": 10}):
                inv.parameters += [p["Name"] for p in page.get("Parameters", [])]
    return inv


def run_steps(inv: ServiceInventory, c: Any, run: Any, *, delete_versions: Callable, delete_stack: Callable) -> None:
    """Delete what `inv` lists, in the module doc's order. `run` is ops.teardown's recorder;
    `delete_versions(s3, bucket, batch)` and `delete_stack(cfn, name)` are teardown's own helpers."""
    for name in inv.unchecked:
        run.record("services", name, "-", "discover", "skipped", "no client given: not checked")
    for api_id, name in inv.apis:
        run.do("s1-api", "apigateway:restapi", name, "delete_rest_api",
               lambda api_id=api_id: c.apigateway.delete_rest_api(restApiId=api_id))
    for group, name in inv.schedules:
        run.do("s2-schedules", "scheduler:schedule", name, "delete_schedule",
               lambda group=group, name=name: c.scheduler.delete_schedule(Name=name, GroupName=group))
    for m in inv.state_machines:
        for a in m["aliases"]:
            run.do("s3-state-machines", "states:alias", a, "delete_state_machine_alias",
                   lambda a=a: c.stepfunctions.delete_state_machine_alias(stateMachineAliasArn=a))
        for v in m["versions"]:
            run.do("s3-state-machines", "states:version", v, "delete_state_machine_version",
                   lambda v=v: c.stepfunctions.delete_state_machine_version(stateMachineVersionArn=v))
        run.do("s3-state-machines", "states:state-machine", m["name"], "delete_state_machine",
               lambda arn=m["arn"]: c.stepfunctions.delete_state_machine(stateMachineArn=arn))
    for n in inv.endpoints:
        run.do("s4-sagemaker", "sagemaker:endpoint", n, "delete_endpoint",
               lambda n=n: c.sagemaker.delete_endpoint(EndpointName=n))
    for n in inv.endpoint_configs:
        run.do("s4-sagemaker", "sagemaker:endpoint-config", n, "delete_endpoint_config",
               lambda n=n: c.sagemaker.delete_endpoint_config(EndpointConfigName=n))
    for n in inv.models:
        run.do("s4-sagemaker", "sagemaker:model", n, "delete_model", lambda n=n: c.sagemaker.delete_model(ModelName=n))
    for role, arn in inv.attachments:
        run.do("s5-access", "iam:policy-attachment", f"{role} <- {arn.rsplit('/', 1)[-1]}", "detach_role_policy",
               lambda role=role, arn=arn: c.iam.detach_role_policy(RoleName=role, PolicyArn=arn))
    for bucket, versions in inv.buckets.items():
        for i in range(0, len(versions), 1000):
            batch = versions[i:i + 1000]
            run.do("s6-empty-service-buckets", "s3:object-versions", f"{bucket} ({len(batch)})", "delete_objects",
                   lambda bucket=bucket, batch=batch: delete_versions(c.s3, bucket, batch))
    for stack in inv.stacks:
        run.do("s7-service-stacks", "cloudformation:stack", stack, "delete_stack + wait",
               lambda stack=stack: delete_stack(c.cloudformation, stack))
    for bucket in inv.buckets:
        run.do("s8-sweep", "s3:bucket", bucket, "delete_bucket", lambda bucket=bucket: _delete_bucket(c, bucket,
                                                                                                   delete_versions))
    for i in range(0, len(inv.parameters), 10):
        batch = inv.parameters[i:i + 10]
        run.do("s8-sweep", "ssm:parameter", ", ".join(batch), "delete_parameters",
               lambda batch=batch: _delete_parameters(c.ssm, batch))


def _delete_parameters(ssm: Any, batch: list[str]) -> str:
    resp = ssm.delete_parameters(Names=batch)
    return f"{len(resp.get('DeletedParameters', []))} deleted"


def _delete_bucket(c: Any, bucket: str, delete_versions: Callable) -> str:
    from pipeline_tools.ops.teardown import list_object_versions

    late = list_object_versions(c.s3, bucket)  # written since discovery
    for i in range(0, len(late), 1000):
        delete_versions(c.s3, bucket, late[i:i + 1000])
    c.s3.delete_bucket(Bucket=bucket)
    return f"{len(late)} late object versions deleted first" if late else ""
