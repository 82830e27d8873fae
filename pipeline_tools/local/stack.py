"""The embedded local stack behind `pt local up|down|status` and `pt release --local`.

An embedded AWS (moto's server on 127.0.0.1), a local image registry and the Docker daemon;
then every stage's resources provisioned into that AWS. Nothing else in pt knows it is local:
`AWS_ENDPOINT_URL` points boto3 at moto and `PT_REGISTRY` names the registry (env file).

Provisioning uses the same StageStack the cloud uses: `stacks.synth_stage_template(cfg, stage,
local=True)` (every stage mapped to moto's one account, image digests set to a bootstrap digest)
is created in moto's CloudFormation. moto 5.2.5 accepts such a template but silently skips
AWS::Lambda::Alias, AWS::CloudWatch::Alarm and AWS::S3::BucketPolicy and drops bucket versioning,
the public access block, ECR scan-on-push and DynamoDB PITR, so `fill_from_template` adds exactly
those with boto3, from the same template, and says so (`ProvisionReport.boto3`). Without the CDK
module (or with `PT_LOCAL_PROVISION=boto3`) `fill_gaps` provisions everything from the config.
Synthesized templates are cached by content (`template_cache_dir()`).

State lives in `$PT_LOCAL_DIR` (default `<repo>/.pt/local/`): `state.json` (what runs, who
started it), `env` (to `source`), `moto.log`, `registry.yml`/`registry.log`. `down` stops only
processes whose pid *and* command line match what `up` recorded as started by it.

Public API
- `state_dir(env=None) -> Path`, `load_state(dir)`, `env_vars(state)`, `apply_env(env)`
- `start(cfg, *, port, directory, …) -> dict` (services only), `provision_all(cfg, services, …)`
- `up(cfg, *, port=None, directory=None, stages=None, provision=True, on_step, clock, sleep) -> dict`
- `down(directory=None) -> dict`, `status(directory=None) -> dict`
- `provision_stage(cfg, stage, factory, *, registry, synth=None, cache_dir=None) -> ProvisionReport`
- `fill_from_template(template, physical, factory, *, region, account, report)`,
  `fill_gaps(cfg, stage, factory, *, registry) -> ProvisionReport`
- `with_local_base(cfg)`: BASE_IMAGE build arg from `PT_LAMBDA_BASE_IMAGE`
- `BOOTSTRAP_DIGEST`, `bootstrap_image_uri(cfg, image, registry)`
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_tools.core import names
from pipeline_tools.core.errors import DockerError, PtError, UsageError

DEFAULT_MOTO_PORT = 4566
DEFAULT_REGISTRY = "127.0.0.1:5055"
DUMMY_KEY = "testing"
# Lambda needs an ImageUri at creation, before anything was built: a well-formed digest nothing
# has (all zeros). The first `pt deploy` replaces it; `pt status` shows it as "bootstrap".
BOOTSTRAP_DIGEST = "sha256:" + "0" * 64
LAMBDA_ROLE_SUFFIX = "lambda"
TRUST_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


class LocalError(PtError):
    pass


# --- state ---------------------------------------------------------------------------------


def _repo_root(start: Path) -> Path:
    for p in (start, *start.parents):
        if (p / ".git").exists():
            return p
    return start


def state_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("PT_LOCAL_DIR"):
        return Path(env["PT_LOCAL_DIR"]).resolve()
    return _repo_root(Path.cwd().resolve()) / ".pt" / "local"


def load_state(directory: Path) -> dict:
    """The state `up` wrote; {} when there is none. A state file that cannot be read or is not a
    JSON object is an error (LocalError, one line, "missing" told apart from "corrupt"): guessing
    could leave pt's processes running or signal someone else's."""
    path = directory / "state.json"
    hint = _STATE_HINT.format(path=path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise LocalError(f"{path} is a directory, expected pt's local state file", hint) from None
    except OSError as e:
        raise LocalError(f"{path}: cannot read the local stack state: {e.strerror or e}", hint) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise LocalError(f"{path} is corrupt: not UTF-8 text", hint) from None
    except ValueError as e:
        raise LocalError(f"{path} is corrupt: not JSON ({getattr(e, 'msg', e)} at line "
                         f"{getattr(e, 'lineno', '?')})", hint) from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise LocalError(f"{path} is corrupt: expected a JSON object, got {kind}", hint)
    return data


_STATE_HINT = ("nothing was signalled; stop leftover `moto.server`/registry processes yourself (`ps -ef`), "
               "then delete {path} and run `pt local up` again")


def save_state(directory: Path, state: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(directory / "state.json")


# --- processes -----------------------------------------------------------------------------


def _pid_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return ""  # alive, command line unknown (no /proc)


def process_identity(pid: int) -> dict | None:
    """{start_time, argv} of a live process from /proc, or None when it does not run (or cannot be
    identified: no /proc). start_time is in clock ticks since boot, so a recycled pid differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return {"start_time": int(fields[19]),
            "argv": [a.decode(errors="surrogateescape") for a in argv.split(b"\0")[:-1]]}


def marker(pid: int, argv: list[str]) -> dict:
    """pt's marker for a process it started: pid, start time and command line, recorded in state.json."""
    ident = process_identity(pid)
    return {"pid": pid, "start_time": ident["start_time"] if ident else None, "argv": list(argv)}


def check_ours(proc: dict | None) -> tuple[str, str]:
    """(verdict, why); verdict is "ours" (signal it), "foreign" (not started by pt: leave it),
    "gone" (nothing runs under the pid) or "refuse" (cannot prove it is ours). Only a process that
    carries pt's marker is ours: started by pt, and the recorded pid, start time and command line
    ALL match the live process. Anything missing, empty or of the wrong type matches nothing."""
    if not isinstance(proc, dict) or proc.get("started_by_pt") is not True:
        return "foreign", "not started by pt local up, left running"
    pid, start, argv = proc.get("pid"), proc.get("start_time"), proc.get("argv")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return "refuse", f"state.json has no valid pid ({pid!r}): nothing signalled"
    if not (isinstance(start, int) and not isinstance(start, bool)) or not (
            isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)):
        return "refuse", (f"state.json has no start time and command line for pid {pid} (written by an older pt "
                       "or edited): refusing to signal it")
    live = process_identity(pid)
    if live is None:
        if _pid_cmdline(pid) == "":
            return "refuse", f"cannot check pid {pid} on this system (no /proc): refusing to signal it"
        return "gone", f"pid {pid} no longer runs it (already stopped)"
    if live["start_time"] != start:
        return "refuse", (f"pid {pid} now belongs to another process (started at tick {live['start_time']}, "
                       f"recorded {start}): refusing to signal it")
    if live["argv"] != argv:
        return "refuse", (f"pid {pid} runs `{' '.join(live['argv'])[:120]}`, not the recorded "
                       f"`{' '.join(argv)[:120]}`: refusing to signal it")
    return "ours", "ours"


def _ours(proc: dict | None) -> bool:
    """True if the recorded process still runs the command we started (pid not recycled)."""
    return check_ours(proc)[0] == "ours"


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 300
    except (OSError, ValueError):
        return False


def moto_answers(endpoint: str) -> bool:
    """A moto server answers its own API (plain HTTP servers on the port do not)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def registry_answers(host: str) -> bool:
    return _http_ok(f"http://{host}/v2/", timeout=2)


def _wait_until(check: Callable[[], bool], timeout: float, clock: Callable[[], float],
                sleep: Callable[[float], None], every: float = 0.2) -> bool:
    deadline = clock() + timeout
    while True:
        if check():
            return True
        if clock() >= deadline:
            return False
        sleep(every)


def _spawn(argv: list[str], log: Path) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    return proc.pid


MOTO_MODULE = "pipeline_tools.local.motoserver"


def start_moto(directory: Path, state: dict, port: int | None, *, clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """Reuse the moto server in `state` (or one answering on `port`), else start one detached."""
    prev = state.get("moto") or {}
    if prev.get("endpoint") and (port is None or prev.get("port") == port) and moto_answers(prev["endpoint"]):
        if not (_ours(prev) and MOTO_MODULE not in " ".join(map(str, prev.get("argv") or []))):
            return {**prev, "reused": True}
        # started by an earlier pt as plain moto.server, whose Lambda version numbers repeat after
        # pruning (repeated releases then fail): restart it once, through pipeline_tools.local.motoserver
        _terminate(int(prev["pid"]), sleep=sleep, clock=clock, proc=prev)
        port = port or prev.get("port")
    want = port or DEFAULT_MOTO_PORT
    endpoint = f"http://127.0.0.1:{want}"
    if moto_answers(endpoint):  # someone else's moto: use it, never stop it
        return {"endpoint": endpoint, "port": want, "pid": None, "started_by_pt": False, "reused": True}
    if not _port_free(want):
        if port is not None:
            raise UsageError(f"port {port} on 127.0.0.1 is taken by something that is not a moto server",
                             "pick another with `pt local up --port N`, or omit --port to use a free one")
        want = free_port()
        endpoint = f"http://127.0.0.1:{want}"
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise LocalError("moto is not installed, the local stack needs its server",
                         "pip install 'moto[server]' (or pip install -e '.[dev]')") from None
    # moto.server with Lambda version numbers as AWS assigns them (see localmoto.py)
    argv = [sys.executable, "-m", MOTO_MODULE, "-H", "127.0.0.1", "-p", str(want)]
    pid = _spawn(argv, directory / "moto.log")
    if not _wait_until(lambda: moto_answers(endpoint), 30, clock, sleep):
        _terminate(pid)
        raise LocalError(f"moto server did not answer on {endpoint} within 30 s",
                         f"see {directory / 'moto.log'}")
    return {"endpoint": endpoint, "port": want, "started_by_pt": True, "reused": False, **marker(pid, argv)}


def ensure_registry(directory: Path, state: dict, *, clock: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep) -> dict:
    """Reuse a registry that answers (state, PT_REGISTRY, PT_TEST_REGISTRY, :5055), else start one."""
    prev = state.get("registry") or {}
    candidates = [prev.get("host"), os.environ.get("PT_REGISTRY"), os.environ.get("PT_TEST_REGISTRY"),
                  DEFAULT_REGISTRY]
    for host in dict.fromkeys(h for h in candidates if h):
        if registry_answers(host):
            if host == prev.get("host") and prev.get("started_by_pt"):
                return {**prev, "reused": True}
            return {"host": host, "pid": None, "started_by_pt": False, "reused": True}
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        raise LocalError("no local registry answers and neither `docker-registry` nor `registry` is installed",
                         "apt-get install docker-registry, or `source scripts/services.sh`, or set PT_REGISTRY")
    port = 5055 if _port_free(5055) else free_port()
    host = f"127.0.0.1:{port}"
    store = directory / "registry"
    cfg = directory / "registry.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {store}\n  delete:\n"
                   f"    enabled: true\nhttp:\n  addr: {host}\n")
    argv = [binary, "serve", str(cfg)]
    pid = _spawn(argv, directory / "registry.log")
    if not _wait_until(lambda: registry_answers(host), 20, clock, sleep):
        _terminate(pid)
        raise LocalError(f"registry did not answer on {host}", f"see {directory / 'registry.log'}")
    return {"host": host, "started_by_pt": True, "reused": False, **marker(pid, argv)}


def check_docker(docker_factory: Callable[[], Any] | None = None) -> dict:
    """Ping the Docker daemon; its version and host, or DockerError with how to start one."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if docker_factory is None:
            import docker

            client = docker.from_env(timeout=10)
        else:
            client = docker_factory()
        client.ping()
        version = client.version().get("Version")
    except Exception as e:  # docker raises several unrelated types for "not there"
        raise DockerError(f"cannot reach Docker at {host} ({type(e).__name__})",
                          "start Docker, set DOCKER_HOST, or `source scripts/services.sh`") from None
    return {"host": host, "version": version}


def _terminate(pid: int, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
               proc: dict | None = None) -> bool:
    """SIGTERM the process group, SIGKILL after 10 s. With `proc` (a recorded marker) the
    identity is checked again right before the SIGKILL, so a pid recycled meanwhile is spared."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    gone = _wait_until(lambda: _pid_cmdline(pid) is None or _zombie(pid), 10, clock, sleep, every=0.1)
    if not gone and (proc is None or check_ours(proc)[0] == "ours"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    try:  # reap it if it is our child (same process as `up`, e.g. in tests)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


# --- provisioning --------------------------------------------------------------------------


@dataclass
class ProvisionReport:
    stage: str
    stack: str | None = None           # CloudFormation stack name when the CDK path ran
    cfn: list[str] = field(default_factory=list)     # resources created by moto CloudFormation
    boto3: list[str] = field(default_factory=list)   # what boto3 added (gaps or everything)
    existing: list[str] = field(default_factory=list)  # already there (idempotent re-run)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "stack": self.stack, "cfn": self.cfn, "boto3": self.boto3,
                "existing": self.existing}


def bootstrap_image_uri(cfg, image: str, registry: str) -> str:
    return f"{registry}/{cfg.ecr_repository(image)}@{BOOTSTRAP_DIGEST}"


def lambda_role_name(cfg, stage: str) -> str:
    return f"{cfg.project}-{stage}-{LAMBDA_ROLE_SUFFIX}"


def default_alarms(cfg, stage: str, function: str) -> list[dict]:
    """put_metric_alarm arguments for a function's alarms, as the StageStack defines them
    (errors, throttles, duration-p99, then the config's own); used when there is no template."""
    fname = cfg.function_name(stage, function)
    fcfg = cfg.functions[function]
    dims = [{"Name": "FunctionName", "Value": fname}]
    common = {"Namespace": "AWS/Lambda", "Period": 60, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
              "Dimensions": dims, "TreatMissingData": "notBreaching"}
    out = [
        {**common, "AlarmName": names.alarm_name(cfg.project, stage, function, "errors"), "MetricName": "Errors",
         "Statistic": "Sum", "Threshold": 1.0, "EvaluationPeriods": 1},
        {**common, "AlarmName": names.alarm_name(cfg.project, stage, function, "throttles"),
         "MetricName": "Throttles", "Statistic": "Sum", "Threshold": 1.0, "EvaluationPeriods": 1},
        {**common, "AlarmName": names.alarm_name(cfg.project, stage, function, "duration-p99"),
         "MetricName": "Duration", "ExtendedStatistic": "p99", "Threshold": float(round(fcfg.timeout * 900)),
         "EvaluationPeriods": 3, "DatapointsToAlarm": 2},
    ]
    ops = {"gt": "GreaterThanThreshold", "ge": "GreaterThanOrEqualToThreshold", "lt": "LessThanThreshold",
           "le": "LessThanOrEqualToThreshold"}
    for a in fcfg.alarms:
        out.append({**common, "AlarmName": names.alarm_name(cfg.project, stage, function, a.name),
                    "MetricName": a.metric, "Namespace": a.namespace, "Statistic": a.statistic,
                    "Period": int(a.period), "EvaluationPeriods": a.evaluation_periods,
                    "Threshold": float(a.threshold), "ComparisonOperator": ops[a.comparison]})
    return out


def _exists(call: Callable[[], Any], *missing_codes: str) -> bool:
    from pipeline_tools.core.aws import client_error_code

    try:
        call()
        return True
    except Exception as e:
        if client_error_code(e) in missing_codes:
            return False
        raise


def fill_gaps(cfg, stage: str, factory, *, registry: str, report: ProvisionReport | None = None) -> ProvisionReport:
    """Provision a stage with boto3 from the config alone (no CDK module in this build).

    The same resources and names as the StageStack (names.py); idempotent: each resource is
    checked first, `report.boto3` lists what was added, `report.existing` what was there.
    """
    rep = report or ProvisionReport(stage)
    region = cfg.stage_region(stage)
    sns = factory.client("sns", region)
    topic_arn = sns.create_topic(Name=cfg.sns_topic(stage))["TopicArn"]  # idempotent by name
    _note(rep, f"sns topic {cfg.sns_topic(stage)}", added=False)

    # ECR repositories (+ scan on push, which moto's CFN drops)
    ecr = factory.client("ecr", region)
    for image in cfg.images:
        repo = cfg.ecr_repository(image)
        if not _exists(lambda r=repo: ecr.describe_repositories(repositoryNames=[r]), "RepositoryNotFoundException"):
            ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True},
                                  imageTagMutability="IMMUTABLE")
            _note(rep, f"ecr repository {repo} (scan on push, immutable tags)")
        else:
            ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
            _note(rep, f"ecr repository {repo}: scan on push")

    # Artifacts bucket (+ versioning, public access block, TLS-only policy)
    s3 = factory.client("s3", region)
    bucket = cfg.bucket(stage)
    if not _exists(lambda: s3.head_bucket(Bucket=bucket), "404", "NoSuchBucket", "NotFound"):
        kw = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **kw)
        _note(rep, f"s3 bucket {bucket}")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
    _note(rep, f"s3 bucket {bucket}: versioning, public access block, TLS-only bucket policy")

    # Ledger table (one per account; the ledger module owns its key schema) + PITR
    ddb = factory.client("dynamodb", region)
    table = cfg.ledger_table()
    created = _ensure_ledger(ddb, cfg, stage)
    if created:
        _note(rep, f"dynamodb table {table}")
    ddb.update_continuous_backups(TableName=table,
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    _note(rep, f"dynamodb table {table}: point-in-time recovery")

    # Lambda functions from the bootstrap digest, a published version and the `live` alias
    lam = factory.client("lambda", region)
    role_arn = None
    for fn, fcfg in cfg.functions.items():
        name = cfg.function_name(stage, fn)
        if not _exists(lambda n=name: lam.get_function(FunctionName=n), "ResourceNotFoundException"):
            role_arn = role_arn or _ensure_role(factory.client("iam", region), lambda_role_name(cfg, stage))
            kw: dict[str, Any] = {}
            if fcfg.handler:
                kw["ImageConfig"] = {"Command": [fcfg.handler]}
            if fcfg.environment:
                kw["Environment"] = {"Variables": dict(fcfg.environment)}
            lam.create_function(FunctionName=name, PackageType="Image", Role=role_arn,
                                Code={"ImageUri": bootstrap_image_uri(cfg, fcfg.image, registry)},
                                MemorySize=fcfg.memory, Timeout=fcfg.timeout, Publish=False, **kw)
            _note(rep, f"lambda {name} (bootstrap image)")
        if not _exists(lambda n=name: lam.get_alias(FunctionName=n, Name=names.LIVE_ALIAS),
                       "ResourceNotFoundException"):
            version = lam.publish_version(FunctionName=name, Description="bootstrap")["Version"]
            lam.create_alias(FunctionName=name, Name=names.LIVE_ALIAS, FunctionVersion=version)
            _note(rep, f"lambda {name}: alias {names.LIVE_ALIAS} -> version {version}")

    # Alarms (moto's CFN skips AWS::CloudWatch::Alarm)
    cw = factory.client("cloudwatch", region)
    alarms = [a for fn in cfg.functions for a in default_alarms(cfg, stage, fn)]
    have = {a["AlarmName"] for a in _all_alarms(cw, f"{cfg.project}-{stage}-")}
    for a in alarms:
        if a["AlarmName"] in have:
            _note(rep, f"alarm {a['AlarmName']}", added=False)
            continue
        cw.put_metric_alarm(**{"AlarmActions": [topic_arn], "OKActions": [topic_arn], **a})
        _note(rep, f"alarm {a['AlarmName']}")
    return rep


def _note(rep: ProvisionReport, what: str, *, added: bool = True) -> None:
    if added:
        rep.boto3.append(what)
    else:
        rep.existing.append(what)


def _ensure_role(iam, name: str) -> str:
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except Exception as e:
        from pipeline_tools.core.aws import client_error_code

        if client_error_code(e) != "NoSuchEntity":
            raise
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_POLICY,
                           Description="pt local: execution role of the stage's functions")["Role"]["Arn"]


def _ensure_ledger(ddb, cfg, stage: str) -> bool:
    from pipeline_tools.core.aws import client_error_code

    try:
        ddb.describe_table(TableName=cfg.ledger_table())
        return False
    except Exception as e:
        if client_error_code(e) != "ResourceNotFoundException":
            raise
    from pipeline_tools.release import ledger

    ledger.ensure_table(ddb, cfg.ledger_table(), project=cfg.project, stage=stage, local=True)
    return True


def _all_alarms(cw, prefix: str) -> list[dict]:
    out: list[dict] = []
    for page in cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]):
        out.extend(page.get("MetricAlarms", []))
    return out


def synth_available() -> Callable[..., dict] | None:
    """The CDK module's `synth_stage_template`, when this build has it (and the user did not opt out)."""
    if os.environ.get("PT_LOCAL_PROVISION") == "boto3":
        return None
    try:
        from pipeline_tools.infra.stacks import synth_stage_template
    except ImportError:
        return None
    return synth_stage_template


def local_config(cfg, account: str):
    """`cfg` with every stage in moto's one account: the stacks then share the account-wide
    resources (ECR repositories, ledger table) exactly as stages sharing an account do in AWS."""
    stages = {n: s.model_copy(update={"account": account}) for n, s in cfg.stages.items()}
    return cfg.model_copy(update={"stages": stages})


def _stacks_fingerprint() -> str:
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent.parent / "infra" / "stacks"
    for f in sorted(pkg.glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    try:
        from importlib.metadata import version

        h.update(version("aws-cdk-lib").encode())
    except Exception:
        pass
    return h.hexdigest()


def template_cache_dir() -> Path:
    """Synthesized templates, keyed by content: $PT_CACHE_DIR or ~/.cache/pt, then templates/."""
    base = os.environ.get("PT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pt")
    return Path(base) / "templates"


def stage_template(cfg, stage: str, synth: Callable[..., dict], *, cache_dir: Path | None) -> tuple[dict, bool]:
    """The synthesized StageStack (bootstrap digests for every image), cached by content.

    Synthesis starts a jsii/node runtime (6-30 s); the cache makes a second `pt local up` instant.
    Returns (template, from_cache)."""
    digests = {i: BOOTSTRAP_DIGEST for i in cfg.images}
    key = hashlib.sha256(json.dumps([cfg.model_dump(mode="json"), stage, digests, _stacks_fingerprint()],
                                    sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"{stage}-{key}.json" if cache_dir else None
    if path and path.is_file():
        try:
            return json.loads(path.read_text()), True
        except ValueError:
            pass
    template = synth(cfg, stage, local=True, image_digests=digests)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(template))
    return template, False


def provision_stage(cfg, stage: str, factory, *, registry: str, synth: Callable[..., dict] | None = None,
                    cache_dir: Path | None = None, clock: Callable[[], float] = time.time,
                    sleep: Callable[[float], None] = time.sleep) -> ProvisionReport:
    """Create the stage's StageStack in moto CloudFormation (when `synth` is given), then fill gaps."""
    rep = ProvisionReport(stage)
    if synth is None:
        return fill_gaps(cfg, stage, factory, registry=registry, report=rep)
    account = factory.client("sts").get_caller_identity()["Account"]
    lcfg = local_config(cfg, account)
    template, cached = stage_template(lcfg, stage, synth, cache_dir=cache_dir)
    rep.stack = names.stage_stack(cfg.project, stage)
    rep.existing.append(f"template {'from cache' if cached else 'synthesized'}")
    cfn = factory.client("cloudformation", cfg.stage_region(stage))
    _create_or_update_stack(cfn, rep.stack, template, rep, clock, sleep)
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId")
                for r in cfn.describe_stack_resources(StackName=rep.stack)["StackResources"]
                if r.get("LogicalResourceId")}
    fill_from_template(template, physical, factory, region=cfg.stage_region(stage), account=account, report=rep)
    return rep


def _create_or_update_stack(cfn, stack: str, template: dict, rep: ProvisionReport,
                            clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
    body = json.dumps(template, sort_keys=True)
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    tags = [{"Key": "pt:template-sha256", "Value": digest}]
    try:
        current = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as e:
        if "does not exist" not in str(e):
            raise
        current = None
    if current is not None and current.get("StackStatus", "").endswith("_COMPLETE") and \
            {t["Key"]: t["Value"] for t in current.get("Tags", [])}.get("pt:template-sha256") == digest:
        rep.existing.append(f"stack {stack} (template unchanged)")
        return
    caps = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
    if current is None:
        cfn.create_stack(StackName=stack, TemplateBody=body, Capabilities=caps, Tags=tags)
    else:
        cfn.update_stack(StackName=stack, TemplateBody=body, Capabilities=caps, Tags=tags)

    def done() -> bool:
        return not cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"].endswith("_IN_PROGRESS")

    _wait_until(done, 120, clock, sleep, every=0.5)
    st = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if st["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise LocalError(f"stack {stack} ended in {st['StackStatus']}: {st.get('StackStatusReason') or ''}",
                         "see the moto log in the state directory")
    for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]:
        if r.get("ResourceType"):
            rep.cfn.append(f"{r['ResourceType']} {r.get('PhysicalResourceId') or r['LogicalResourceId']}")


class Unresolvable(Exception):
    pass


class _Resolver:
    """Evaluates the intrinsic functions a CDK StageStack uses, against the created stack."""

    def __init__(self, template: dict, physical: dict[str, str | None], region: str, account: str,
                 versions: Callable[[str], str]):
        self.resources = template.get("Resources", {})
        self.params = {k: v.get("Default") for k, v in template.get("Parameters", {}).items()}
        self.physical, self.region, self.account, self.versions = physical, region, account, versions

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (fn, arg), = v.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg))
            if fn == "Fn::Join":
                return arg[0].join(str(self(x)) for x in self(arg[1]))
            if fn.startswith("Fn::"):
                raise Unresolvable(fn)
        return {k: self(x) for k, x in v.items()}

    def ref(self, name: str) -> Any:
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": self.account, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": ""}
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        res = self.resources.get(name, {})
        props = res.get("Properties", {})
        for key in ("FunctionName", "BucketName", "RepositoryName", "TableName"):
            if isinstance(props.get(key), str):
                return props[key]
        if self.physical.get(name):
            return self.physical[name]
        raise Unresolvable(f"Ref {name}")

    def get_att(self, name: str, att: str) -> Any:
        rtype = self.resources.get(name, {}).get("Type")
        if rtype == "AWS::Lambda::Version" and att == "Version":
            fn = self(self.resources[name]["Properties"]["FunctionName"])
            return self.versions(fn)
        if rtype == "AWS::S3::Bucket" and att == "Arn":
            return f"arn:aws:s3:::{self.ref(name)}"
        if rtype == "AWS::Lambda::Function" and att == "Arn":
            return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.ref(name)}"
        raise Unresolvable(f"GetAtt {name}.{att}")


def _latest_version(lam) -> Callable[[str], str]:
    def get(fn: str) -> str:
        versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=fn)["Versions"]
                    if v["Version"] != "$LATEST"]
        if versions:
            return max(versions, key=int)
        return lam.publish_version(FunctionName=fn, Description="bootstrap")["Version"]

    return get


def fill_from_template(template: dict, physical: dict[str, str | None], factory, *, region: str, account: str,
                       report: ProvisionReport) -> ProvisionReport:
    """Add, with boto3, what moto's CloudFormation skipped or dropped from `template`.

    Read from the same synthesized template: AWS::Lambda::Alias, AWS::CloudWatch::Alarm,
    AWS::S3::BucketPolicy; bucket versioning and public access block; ECR scan-on-push;
    DynamoDB point-in-time recovery. (A function's ImageConfig, its handler command, is also
    dropped and moto cannot update it; `pt invoke --local` takes the handler from pipeline.yml.)
    Idempotent: what exists is left alone (alarms, aliases) or re-applied (settings).
    """
    lam = factory.client("lambda", region)
    r = _Resolver(template, physical, region, account, _latest_version(lam))
    add = report.boto3.append
    for logical_id, res in template.get("Resources", {}).items():
        rtype, props = res.get("Type"), res.get("Properties", {})
        try:
            if rtype == "AWS::Lambda::Alias":
                fn, name = r(props["FunctionName"]), props["Name"]
                if _exists(lambda fn=fn, name=name: lam.get_alias(FunctionName=fn, Name=name),
                           "ResourceNotFoundException"):
                    report.existing.append(f"alias {fn}:{name}")
                    continue
                version = r(props["FunctionVersion"])
                lam.create_alias(FunctionName=fn, Name=name, FunctionVersion=str(version))
                add(f"alias {fn}:{name} -> version {version}")
            elif rtype == "AWS::CloudWatch::Alarm":
                args = {k: r(v) for k, v in props.items() if k in _ALARM_KEYS}
                cw = factory.client("cloudwatch", region)
                if cw.describe_alarms(AlarmNames=[args["AlarmName"]])["MetricAlarms"]:
                    report.existing.append(f"alarm {args['AlarmName']}")
                    continue
                for k in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                    if k in args:
                        args[k] = int(args[k])
                if "Threshold" in args:
                    args["Threshold"] = float(args["Threshold"])
                cw.put_metric_alarm(**args)
                add(f"alarm {args['AlarmName']}")
            elif rtype == "AWS::S3::BucketPolicy":
                bucket = r(props["Bucket"])
                policy = json.dumps(r(props["PolicyDocument"]))
                factory.client("s3", region).put_bucket_policy(Bucket=bucket, Policy=policy)
                add(f"bucket policy {bucket}")
            elif rtype == "AWS::S3::Bucket":
                bucket = r({"Ref": logical_id})
                s3 = factory.client("s3", region)
                if props.get("VersioningConfiguration"):
                    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=r(props["VersioningConfiguration"]))
                    add(f"{bucket}: versioning")
                if props.get("PublicAccessBlockConfiguration"):
                    s3.put_public_access_block(Bucket=bucket,
                                               PublicAccessBlockConfiguration=r(props["PublicAccessBlockConfiguration"]))
                    add(f"{bucket}: public access block")
            elif rtype == "AWS::ECR::Repository" and props.get("ImageScanningConfiguration"):
                repo = r({"Ref": logical_id})
                factory.client("ecr", region).put_image_scanning_configuration(
                    repositoryName=repo, imageScanningConfiguration={
                        "scanOnPush": bool(props["ImageScanningConfiguration"].get("ScanOnPush"))})
                add(f"ecr {repo}: scan on push")
            elif rtype == "AWS::DynamoDB::Table" and props.get("PointInTimeRecoverySpecification"):
                table = r({"Ref": logical_id})
                spec = props["PointInTimeRecoverySpecification"]
                factory.client("dynamodb", region).update_continuous_backups(
                    TableName=table, PointInTimeRecoverySpecification={
                        "PointInTimeRecoveryEnabled": bool(spec.get("PointInTimeRecoveryEnabled"))})
                add(f"dynamodb {table}: point-in-time recovery")
        except Unresolvable as e:
            report.existing.append(f"{rtype} {logical_id}: not added ({e} cannot be evaluated locally)")
    return report


_ALARM_KEYS = ("AlarmName", "AlarmDescription", "MetricName", "Namespace", "Statistic", "ExtendedStatistic",
               "Period", "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator",
               "TreatMissingData", "Unit", "Dimensions", "AlarmActions", "OKActions", "ActionsEnabled")


# --- up / down / status --------------------------------------------------------------------


def env_vars(state: dict) -> dict[str, str]:
    out = {
        "AWS_ENDPOINT_URL": state["moto"]["endpoint"],
        "PT_REGISTRY": state["registry"]["host"],
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": state.get("region") or "us-east-1",
        # moto answers calls it lacks (e.g. DescribeAlarmHistory) with 500s that botocore would
        # retry with backoff; two attempts keep the gate's polls fast
        "PT_AWS_MAX_ATTEMPTS": "2",
        # the local stack is one account: stages of other accounts live in it too (docs/accounts.md)
        "PT_SINGLE_ACCOUNT": "1",
    }
    if state.get("docker", {}).get("host"):
        out["DOCKER_HOST"] = state["docker"]["host"]
    return out


def write_env_file(directory: Path, env: dict[str, str]) -> Path:
    path = directory / "env"
    lines = ["# written by `pt local up`: source it to point pt, boto3 and docker at the local stack",
             "unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN"]
    lines += [f"export {k}={v}" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def apply_env(env: dict[str, str], environ: dict | None = None) -> None:
    """Point this process at the local stack (what `source .pt/local/env` does for a shell)."""
    target = os.environ if environ is None else environ
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        target.pop(k, None)
    target.update(env)


def start(cfg, *, port: int | None = None, directory: Path | None = None,
          docker_factory: Callable[[], Any] | None = None, on_step: Callable[[str], None] = lambda _s: None,
          clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> dict:
    """The services only: docker check, moto server, registry; writes state and the env file."""
    directory = directory or state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    state = load_state(directory)
    on_step("docker daemon")
    state["docker"] = check_docker(docker_factory)
    on_step("moto server")
    state["moto"] = start_moto(directory, state, port, clock=clock, sleep=sleep)
    save_state(directory, state)  # record pids as soon as they exist, so `down` can find them
    on_step("registry")
    state["registry"] = ensure_registry(directory, state, clock=clock, sleep=sleep)
    state["region"] = cfg.region
    state["config"] = cfg.source
    save_state(directory, state)
    env = env_vars(state)
    env_file = write_env_file(directory, env)
    return {"state_dir": str(directory), "env_file": str(env_file), "env": env, "moto": state["moto"],
            "registry": state["registry"], "docker": state["docker"]}


def provision_all(cfg, services: dict, *, stages: Iterable[str] | None = None,
                  on_step: Callable[[str], None] = lambda _s: None, clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], None] = time.sleep) -> list[ProvisionReport]:
    """Provision every stage (StageStack in moto CloudFormation + boto3 gaps) into `services`' moto."""
    from pipeline_tools.core.aws import AwsFactory

    directory = Path(services["state_dir"])
    synth = synth_available()
    factory = AwsFactory(region=cfg.region, endpoint=services["moto"]["endpoint"], max_attempts=2)
    _dummy_credentials_for(factory)
    reports = []
    for stage in stages or cfg.stages:
        on_step(f"provision {stage}")
        reports.append(provision_stage(cfg, stage, factory, registry=services["registry"]["host"], synth=synth,
                                       cache_dir=template_cache_dir(), clock=clock, sleep=sleep))
    state = load_state(directory)
    state["provisioned"] = {**state.get("provisioned", {}), **{r.stage: r.to_dict() for r in reports}}
    state["provisioning"] = "cdk+boto3" if synth else "boto3"
    state["updated"] = clock()
    save_state(directory, state)
    return reports


def up(cfg, *, port: int | None = None, directory: Path | None = None, stages: Iterable[str] | None = None,
       docker_factory: Callable[[], Any] | None = None, provision: bool = True,
       on_step: Callable[[str], None] = lambda _s: None,
       clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> dict:
    """Start/reuse moto + registry, check docker, provision every stage; write the env file."""
    t0 = clock()
    res = start(cfg, port=port, directory=directory, docker_factory=docker_factory, on_step=on_step, clock=clock,
                sleep=sleep)
    reports = provision_all(cfg, res, stages=stages, on_step=on_step, clock=clock, sleep=sleep) if provision else []
    return {**res, "provisioning": ("cdk+boto3" if synth_available() else "boto3") if provision else "skipped",
            "stages": [r.to_dict() for r in reports], "seconds": round(clock() - t0, 2)}


def with_local_base(cfg):
    """`cfg` with build arg BASE_IMAGE=$PT_LAMBDA_BASE_IMAGE for images whose Dockerfile declares
    `ARG BASE_IMAGE` and whose config does not set it: the default base (public ECR) is not
    reachable from a laptop without AWS, the Lambda-like local base is (docker/base/)."""
    base = os.environ.get("PT_LAMBDA_BASE_IMAGE")
    if not base:
        return cfg
    images = {}
    for name, img in cfg.images.items():
        df = cfg.base_dir / img.dockerfile
        try:
            declares = any(ln.strip().startswith("ARG BASE_IMAGE") for ln in df.read_text().splitlines())
        except OSError:
            declares = False
        if declares and "BASE_IMAGE" not in img.build_args:
            img = img.model_copy(update={"build_args": {**img.build_args, "BASE_IMAGE": base}})
        images[name] = img
    return cfg.model_copy(update={"images": images})


def _dummy_credentials_for(factory) -> None:
    # moto accepts any key; make sure a real profile in the user's env is never used for it
    import boto3

    factory._session = boto3.session.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY,
                                             region_name=factory.region)


def down(directory: Path | None = None, *, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep, dry_run: bool = False) -> dict:
    """Stop what `up` started: only processes whose recorded pid, start time and command line all
    match (see `check_ours`); leave reused services alone. A process pt refuses to signal is listed
    in `refused` with the reason, and the state file is then kept so nothing is forgotten."""
    directory = directory or state_dir()
    state = load_state(directory)
    stopped, left, refused = [], [], []
    for key in ("moto", "registry"):
        proc = state.get(key)
        if not proc:
            continue
        label = (proc.get("endpoint") or proc.get("host")) if isinstance(proc, dict) else None
        verdict, why = check_ours(proc)
        if verdict == "ours":
            if not dry_run:
                _terminate(int(proc["pid"]), sleep=sleep, clock=clock, proc=proc)
            stopped.append(f"{key} {label} (pid {proc['pid']})")
        elif verdict in ("foreign", "gone"):
            left.append(f"{key} {label}: {why}")
        else:
            refused.append(f"{key} {label}: {why}")
    if not dry_run and not refused:
        for name in ("state.json", "env"):
            (directory / name).unlink(missing_ok=True)
    return {"state_dir": str(directory), "stopped": stopped, "left": left, "refused": refused, "dry_run": dry_run}


def read_state_checked(directory: Path) -> dict:
    """state.json for `pt local status`: load_state plus the fields status reads."""
    state = load_state(directory)
    path = directory / "state.json"
    hint = _STATE_HINT.format(path=path)
    for key, field_ in (("moto", "endpoint"), ("registry", "host"), ("docker", "host")):
        entry = state.get(key)
        if entry is not None and not (isinstance(entry, dict) and isinstance(entry.get(field_), str)):
            raise LocalError(f"{path} is corrupt: `{key}` lacks a `{field_}` string", hint)
    if not isinstance(state.get("provisioned", {}), dict):
        raise LocalError(f"{path} is corrupt: `provisioned` is not an object", hint)
    return state


def status(directory: Path | None = None) -> dict:
    directory = directory or state_dir()
    state = read_state_checked(directory)
    rows = []
    moto = state.get("moto")
    if moto:
        rows.append({"service": "moto server", "where": moto["endpoint"], "pid": moto.get("pid"),
                     "started_by_pt": moto.get("started_by_pt"), "up": moto_answers(moto["endpoint"])})
    reg = state.get("registry")
    if reg:
        rows.append({"service": "registry", "where": reg["host"], "pid": reg.get("pid"),
                     "started_by_pt": reg.get("started_by_pt"), "up": registry_answers(reg["host"])})
    dk = state.get("docker")
    if dk:
        try:
            check_docker()
            ok = True
        except DockerError:
            ok = False
        rows.append({"service": "docker", "where": dk["host"], "pid": None, "started_by_pt": False, "up": ok})
    return {"state_dir": str(directory), "running": bool(rows) and all(r["up"] for r in rows[:2]),
            "services": rows, "stages": sorted(state.get("provisioned", {})),
            "env_file": str(directory / "env") if (directory / "env").exists() else None}
