"""Step Functions target: a state machine released as a published version behind alias `live`.

The state machine and its role come from the service stack (`names.state_machine`,
`names.state_machine_role`); a deploy only changes its definition and the alias:

- `current`: alias `live` (1 or 2 versions with weights); the placement's digest is the sha256
  of the live version's canonical definition (`sfn_definition`), not an image digest.
- `prepare`: renders the repository's definition (`${Name}` substitutions, `function:<key>` →
  that function's `live` alias ARN) and `UpdateStateMachine(publish=True)`: a new version, no traffic.
- `smoke`: with `smoke_input`, one execution of the new version that must SUCCEED (deadline).
- `shift`: alias routing [old 100-p, new p] (Step Functions aliases take at most two versions).
- `restore`: alias back to the recorded version; a first deploy (no alias before) deletes the alias.
- `finish`: deletes versions beyond `deploy.keep_versions` that no alias references.

Weights in a Placement are fractions (0–1) of traffic, as for Lambda aliases.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipeline_tools.core import names as naming
from pipeline_tools.core.errors import DeployFailed, NotFoundError, PtError, UsageError
from pipeline_tools.release.target import Candidate, Placement, Release, target_id
from pipeline_tools.targets import sfn_definition as sfn

if TYPE_CHECKING:
    from pipeline_tools.core.config import Config, StepFunctionsTargetConfig
    from pipeline_tools.targets import TargetEnv

KIND = "stepfunctions"
FAILED_STATES = ("FAILED", "TIMED_OUT", "ABORTED")


def names(cfg: Config, stage: str) -> list[str]:
    """The state machines of `stage`, in config order."""
    return [n for n, t in cfg.targets.stepfunctions.items() if t.stages is None or stage in t.stages]


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _code(e: BaseException) -> str | None:
    resp = getattr(e, "response", None)
    return resp.get("Error", {}).get("Code") if isinstance(resp, dict) else None


def version_of(arn: str) -> str:
    return arn.rsplit(":", 1)[1]


def routing(old_arn: str | None, new_arn: str, percent: int) -> list[dict[str, Any]]:
    """Alias routing for `percent` % on new_arn (pure). At 0 or 100 % a single version."""
    percent = max(0, min(100, int(percent)))
    if old_arn is None or percent >= 100 or old_arn == new_arn:
        return [{"stateMachineVersionArn": new_arn, "weight": 100}]
    if percent <= 0:
        return [{"stateMachineVersionArn": old_arn, "weight": 100}]
    return [{"stateMachineVersionArn": old_arn, "weight": 100 - percent},
            {"stateMachineVersionArn": new_arn, "weight": percent}]


def read_routing(entries: list[dict[str, Any]]) -> tuple[str, dict[str, float]]:
    """(primary version ARN, {other version number: fraction}) from an alias routing (pure).

    The primary is the version with the larger weight (the first listed on a tie: `routing`
    writes the old version first)."""
    if not entries:
        raise ValueError("alias has no routing")
    primary = max(entries, key=lambda e: (int(e["weight"]), -entries.index(e)))
    extra = {version_of(e["stateMachineVersionArn"]): int(e["weight"]) / 100
             for e in entries if e is not primary}
    return primary["stateMachineVersionArn"], extra


class StateMachineTarget:
    weighted = True

    def __init__(self, cfg: Config, stage: str, name: str, env: TargetEnv):
        cfg.stage(stage)
        if name not in cfg.targets.stepfunctions:
            known = ", ".join(cfg.targets.stepfunctions) or "none"
            raise UsageError(f"unknown state machine '{name}' (targets.stepfunctions: {known})",
                             "pass a key of targets.stepfunctions in pipeline.yml")
        self.cfg, self.stage, self.name, self.env = cfg, stage, name, env
        self.spec: StepFunctionsTargetConfig = cfg.targets.stepfunctions[name]
        if self.spec.stages is not None and stage not in self.spec.stages:
            raise UsageError(f"stage {stage} has no state machine '{name}' (targets.stepfunctions.{name}.stages: "
                             f"{', '.join(self.spec.stages)})", "pass one of those stages, or add it to the list")
        self.id = target_id(KIND, name)
        self.region = cfg.stage_region(stage)
        self.account = cfg.stages[stage].account
        self.machine = naming.state_machine(cfg.project, stage, name)
        self.arn = f"arn:{partition(self.region)}:states:{self.region}:{self.account}:stateMachine:{self.machine}"
        self.alias_arn = f"{self.arn}:{naming.LIVE_ALIAS}"

    @property
    def sfn(self) -> Any:
        return self.env.client("stepfunctions")

    # --- the definition ---------------------------------------------------------------------

    def function_arn(self, key: str) -> str:
        fn = naming.function_name(self.cfg.project, self.stage, key)
        return f"arn:{partition(self.region)}:lambda:{self.region}:{self.account}:function:{fn}:{naming.LIVE_ALIAS}"

    def rendered(self) -> sfn.Rendered:
        """The definition this stage would publish now. Bad input → UsageError (exit 2)."""
        path = self.cfg.base_dir / self.spec.definition
        try:
            text = sfn.read(path, self.spec.definition)
            values = sfn.resolve(self.spec.substitutions, self.function_arn)
            return sfn.render(text, values, self.spec.definition)
        except sfn.DefinitionError as e:
            raise UsageError(str(e), f"fix the definition or targets.stepfunctions.{self.name} in pipeline.yml") \
                from None

    def check(self) -> None:
        self.rendered()
        self._describe_machine()

    def _describe_machine(self) -> dict:
        try:
            return self.sfn.describe_state_machine(stateMachineArn=self.arn)
        except Exception as e:
            if _code(e) in ("StateMachineDoesNotExist", "ResourceNotFound", "ResourceNotFoundException"):
                stacks = [naming.service_stack(self.cfg.project, svc, self.stage)
                          for svc, s in self.cfg.services_for(self.stage).items() if s.state_machine == self.name]
                where = f" ({', '.join(stacks)})" if stacks else ""
                raise NotFoundError(f"state machine {self.machine} does not exist ({self.id}, stage {self.stage})",
                                    f"deploy the stack that creates it{where} with `npx cdk deploy`",
                                    exit_code=2) from None
            raise

    def _version_digest(self, version_arn: str) -> str | None:
        d = self.sfn.describe_state_machine(stateMachineArn=version_arn).get("definition")
        try:
            return sfn.digest_of(d) if d else None
        except ValueError:
            return None

    # --- the protocol -----------------------------------------------------------------------

    def current(self) -> Placement:
        self._describe_machine()
        try:
            alias = self.sfn.describe_state_machine_alias(stateMachineAliasArn=self.alias_arn)
        except Exception as e:
            if _code(e) in ("ResourceNotFound", "ResourceNotFoundException"):
                return Placement(self.id, self.arn, False, data={"alias_arn": self.alias_arn})
            raise
        primary, extra = read_routing(alias.get("routingConfiguration") or [])
        extra_arns = {version_of(e["stateMachineVersionArn"]): e["stateMachineVersionArn"]
                      for e in alias.get("routingConfiguration") or []}
        return Placement(self.id, self.arn, True, version_of(primary), self._version_digest(primary), extra,
                         {"alias_arn": self.alias_arn, "version_arn": primary,
                          "routing": {v: a for v, a in extra_arns.items() if v in extra}})

    def unchanged(self, placement: Placement, release: Release) -> bool:
        """Nothing to publish: the live version (all traffic) has the definition rendered now."""
        return placement.serves(self.rendered().digest)

    def prepare(self, release: Release, placement: Placement) -> Candidate:
        r = self.rendered()
        resp = self.sfn.update_state_machine(stateMachineArn=self.arn, definition=r.definition, publish=True,
                                             versionDescription=f"pt {release.deploy_id} {r.digest}"[:256])
        arn = resp["stateMachineVersionArn"]
        self.env.log(f"{self.id}: published version {version_of(arn)} ({r.digest[:19]})")
        return Candidate(self.id, version_of(arn), r.digest, {"version_arn": arn})

    def smoke(self, candidate: Candidate) -> None:
        if self.spec.smoke_input is None:
            return
        arn = candidate.data["version_arn"]
        body = json.dumps(self.spec.smoke_input)
        name = f"pt-smoke-{candidate.version}-{int(self.env.clock() * 1000)}"[:80]
        if self.spec.type == "EXPRESS":
            # Express executions cannot be described later: run synchronously.
            out = self.sfn.start_sync_execution(stateMachineArn=arn, name=name, input=body)
            self._smoke_verdict(candidate, out)
            return
        execution = self.sfn.start_execution(stateMachineArn=arn, name=name, input=body)["executionArn"]
        self.env.log(f"{self.id}: smoke execution {name} of version {candidate.version}")
        deadline = self.env.clock() + self.spec.smoke_timeout
        delay = 0.5
        while True:
            out = self.sfn.describe_execution(executionArn=execution)
            if out.get("status") != "RUNNING":
                self._smoke_verdict(candidate, out)
                return
            if self.env.clock() >= deadline:
                try:
                    self.sfn.stop_execution(executionArn=execution, error="pt.SmokeTimeout",
                                            cause="smoke deadline passed")
                except Exception as e:  # the timeout is the failure to report, not the stop
                    self.env.log(f"{self.id}: could not stop {execution}: {e}")
                raise DeployFailed(f"{self.id}: smoke execution still RUNNING after {self.spec.smoke_timeout:.0f}s "
                                   f"(version {candidate.version})",
                                   f"raise targets.stepfunctions.{self.name}.smoke_timeout or check the execution")
            self.env.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _smoke_verdict(self, candidate: Candidate, out: dict) -> None:
        status = out.get("status")
        if status == "SUCCEEDED":
            self.env.log(f"{self.id}: smoke execution SUCCEEDED")
            return
        why = ": ".join(x for x in (out.get("error"), out.get("cause")) if x) or "no error given"
        raise DeployFailed(f"{self.id}: smoke execution of version {candidate.version} ended {status}: {why}"[:500],
                           f"fix the definition or targets.stepfunctions.{self.name}.smoke_input; "
                           "traffic did not move")

    def _set_alias(self, entries: list[dict[str, Any]]) -> None:
        try:
            self.sfn.update_state_machine_alias(stateMachineAliasArn=self.alias_arn, routingConfiguration=entries)
            return
        except Exception as e:
            if _code(e) not in ("ResourceNotFound", "ResourceNotFoundException"):
                raise
        self.sfn.create_state_machine_alias(name=naming.LIVE_ALIAS, routingConfiguration=entries,
                                            description="pipeline-tools traffic alias")

    def shift(self, placement: Placement, candidate: Candidate, percent: int) -> None:
        old = placement.data.get("version_arn") if placement.exists else None
        self._set_alias(routing(old, candidate.data["version_arn"], percent))

    def restore(self, placement: Placement) -> None:
        if placement.exists:
            entries = [{"stateMachineVersionArn": placement.data["version_arn"], "weight": 100}]
            if placement.weights:  # put a recorded split back as it was
                arns = placement.data.get("routing") or {}
                extra = [{"stateMachineVersionArn": arns[v], "weight": round(w * 100)}
                         for v, w in placement.weights.items() if v in arns]
                entries = [{"stateMachineVersionArn": placement.data["version_arn"],
                            "weight": 100 - sum(e["weight"] for e in extra)}] + extra
            self._set_alias(entries)
            return
        try:
            self.sfn.delete_state_machine_alias(stateMachineAliasArn=self.alias_arn)
        except Exception as e:
            if _code(e) not in ("ResourceNotFound", "ResourceNotFoundException"):
                raise

    def finish(self, placement: Placement, candidate: Candidate) -> list[str]:
        keep = self.cfg.stages[self.stage].deploy.keep_versions
        try:
            return self._prune(keep, protect={candidate.data.get("version_arn"), placement.data.get("version_arn")})
        except Exception as e:  # housekeeping never fails a deploy
            err = (e.message if isinstance(e, PtError) else f"{type(e).__name__}: {e}")[:200]
            self.env.log(f"{self.id}: old versions not pruned: {err}")
            return []

    def _prune(self, keep: int, protect: set[str | None]) -> list[str]:
        versions: list[str] = []
        token = None
        for _ in range(1000):
            resp = self.sfn.list_state_machine_versions(stateMachineArn=self.arn, **({"nextToken": token} if token
                                                                                     else {}))
            versions += [v["stateMachineVersionArn"] for v in resp.get("stateMachineVersions", [])]
            token = resp.get("nextToken")
            if not token:
                break
        versions.sort(key=lambda a: int(version_of(a)), reverse=True)
        old = versions[keep:]
        if not old:
            return []
        referenced = set(protect)
        token = None
        for _ in range(1000):
            resp = self.sfn.list_state_machine_aliases(stateMachineArn=self.arn, **({"nextToken": token} if token
                                                                                    else {}))
            for a in resp.get("stateMachineAliases", []):
                d = self.sfn.describe_state_machine_alias(stateMachineAliasArn=a["stateMachineAliasArn"])
                referenced.update(e["stateMachineVersionArn"] for e in d.get("routingConfiguration") or [])
            token = resp.get("nextToken")
            if not token:
                break
        deleted = []
        for arn in sorted(old, key=lambda a: int(version_of(a))):
            if arn in referenced:
                continue
            self.sfn.delete_state_machine_version(stateMachineVersionArn=arn)
            deleted.append(version_of(arn))
        return deleted

    def describe(self) -> dict:
        p = self.current()
        return {"target": self.id, "state_machine": self.machine, "arn": self.arn, "alias": self.alias_arn,
                "exists": p.exists, "version": p.version, "definition_digest": p.digest,
                "weights": p.weights}

    def alarm_dimensions(self, candidate: Candidate) -> list[dict[str, str]]:
        # Step Functions publishes ExecutionsFailed/TimedOut per version ARN as well as per alias.
        return [{"StateMachineArn": candidate.data["version_arn"]}]
