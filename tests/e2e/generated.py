"""Helpers to execute what `pt init` and `PipelineStack` generate, as GitHub Actions and CodeBuild
would: parse the workflow / buildspec, substitute expressions and variables, run each shell block
with a `pt` on PATH that is this checkout (`write_pt_shim`) and that records every invocation and
every AWS API call it makes (botocore `before-parameter-build`, see `install_recorder`).

Also a small HTTP front for moto (`Front`): it forwards every request to the moto server, serves
ECS-style container credentials (CodeBuild's credential source) and answers the CodePipeline
calls moto lacks (GetPipelineState) with a state shaped like the API reference.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PT_LINE = re.compile(r"^\s*pt\s")
EXPR = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")
INSTALL_LINE = re.compile(r"\bpip(3)? install\b")


# --- the `pt` on PATH -------------------------------------------------------------------------


def write_pt_shim(bin_dir: Path) -> Path:
    """`bin_dir/pt`: runs this checkout's CLI, appends {argv, exit, cwd} to $PT_E2E_RUNS and every
    AWS call to $PT_E2E_CALLS."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "pt"
    shim.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                    "from tests.e2e.generated import shim_main\nsys.exit(shim_main(sys.argv[1:]))\n")
    shim.chmod(0o755)
    return shim


def shim_main(argv: list[str]) -> int:
    calls = os.environ.get("PT_E2E_CALLS")
    if calls:
        install_recorder(calls, tag=os.environ.get("PT_E2E_TAG", ""))
    from pipeline_tools import cli

    code = cli.main(argv)
    runs = os.environ.get("PT_E2E_RUNS")
    if runs:
        with open(runs, "a", encoding="utf-8") as f:
            f.write(json.dumps({"argv": argv, "exit": code, "cwd": os.getcwd(),
                                "tag": os.environ.get("PT_E2E_TAG", "")}) + "\n")
    return code


# Parameters that name the resource a call acts on (for a loose resource check).
RESOURCE_PARAMS = ("FunctionName", "TableName", "repositoryName", "Bucket", "TopicArn", "logGroupName",
                   "AlarmNamePrefix", "AlarmNames", "AlarmName", "name", "pipelineName", "RoleArn", "Name",
                   "EndpointName", "ModelName", "EndpointConfigName")


def install_recorder(path: str, tag: str = "") -> None:
    """Record every API call of every botocore session this process creates (one JSON line each:
    service, operation, resource parameters; TransactWriteItems also lists its item operations)."""
    import botocore.session

    original = botocore.session.Session.__init__
    lock = threading.Lock()

    def record(params, model, **_kw):
        entry: dict[str, Any] = {"service": model.service_model.service_name, "operation": model.name,
                                 "resources": {k: params[k] for k in RESOURCE_PARAMS if k in params}, "tag": tag,
                                 "argv": sys.argv[1:3]}
        if model.name == "TransactWriteItems":
            entry["items"] = [{"operation": kind, "TableName": body.get("TableName")}
                              for item in params.get("TransactItems", []) for kind, body in item.items()]
        with lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def init(self, *a, **k):
        original(self, *a, **k)
        self.register("before-parameter-build", record)

    botocore.session.Session.__init__ = init


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- GitHub Actions ---------------------------------------------------------------------------


def load_workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def substitute(text: str, ctx: dict[str, Any]) -> str:
    """Replace `${{ expr }}` the way the runner does, for the expressions the templates use:
    github.*, env.*, steps.<id>.outputs.<name>. Anything else fails the test (unknown = untested)."""

    def one(m: re.Match) -> str:
        expr = m.group(1)
        parts = expr.split(".")
        if parts[0] == "github" and len(parts) == 2 and parts[1] in ctx["github"]:
            return str(ctx["github"][parts[1]])
        if parts[0] == "env" and len(parts) == 2 and parts[1] in ctx["env"]:
            return str(ctx["env"][parts[1]])
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            outputs = ctx["steps"].get(parts[1])
            if outputs is None:
                raise AssertionError(f"${{{{ {expr} }}}}: step {parts[1]!r} has not run before this one")
            if parts[3] not in outputs:
                raise AssertionError(f"${{{{ {expr} }}}}: step {parts[1]!r} wrote no output {parts[3]!r} "
                                     f"(it wrote {sorted(outputs)})")
            return outputs[parts[3]]
        raise AssertionError(f"expression ${{{{ {expr} }}}} is not supported by this harness")

    return EXPR.sub(one, text)


def parse_github_output(path: Path) -> dict[str, str]:
    """name=value lines and name<<DELIM heredocs, as the runner reads $GITHUB_OUTPUT."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1:j])
            i = j + 1
            continue
        if "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        i += 1
    return out


def pt_lines(script: str) -> list[str]:
    return [ln.strip() for ln in script.splitlines() if PT_LINE.match(ln)]


# --- CodeBuild / CloudFormation --------------------------------------------------------------


NAME_PROPS = ("BucketName", "TopicName", "TableName", "RepositoryName", "FunctionName", "RoleName", "Name",
              "PipelineName", "ManagedPolicyName")


@dataclass
class Resolver:
    """Resolves the intrinsic functions of a synthesized template to strings (pseudo parameters
    to the given values; Ref/GetAtt of a resource to an ARN-ish string with its physical name)."""

    template: dict
    account: str
    region: str
    partition: str = "aws"
    params: dict[str, str] = field(default_factory=dict)

    def physical(self, lid: str) -> str:
        res = self.template["Resources"].get(lid, {})
        props = res.get("Properties", {})
        for key in NAME_PROPS:
            if isinstance(props.get(key), str):
                return props[key]
        return lid

    def arn_of(self, lid: str) -> str:
        res = self.template["Resources"].get(lid, {})
        name = self.physical(lid)
        kind = res.get("Type", "")
        if kind == "AWS::S3::Bucket":
            return f"arn:{self.partition}:s3:::{name}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{self.partition}:sns:{self.region}:{self.account}:{name}"
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{name}"

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if set(v) == {"Ref"}:
            ref = v["Ref"]
            pseudo = {"AWS::AccountId": self.account, "AWS::Region": self.region, "AWS::Partition": self.partition,
                      "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "stack"}
            if ref in pseudo:
                return pseudo[ref]
            if ref in self.params:
                return self.params[ref]
            if self.template["Resources"].get(ref, {}).get("Type") == "AWS::SNS::Topic":
                return self.arn_of(ref)
            return self.physical(ref)
        if set(v) == {"Fn::GetAtt"}:
            lid, attr = v["Fn::GetAtt"] if isinstance(v["Fn::GetAtt"], list) else v["Fn::GetAtt"].split(".", 1)
            return self.arn_of(lid) if attr == "Arn" else f"{self.physical(lid)}.{attr}"
        if set(v) == {"Fn::Join"}:
            sep, parts = v["Fn::Join"]
            return sep.join(str(self(p)) for p in parts)
        if set(v) == {"Fn::Sub"}:
            return v["Fn::Sub"] if isinstance(v["Fn::Sub"], str) else v["Fn::Sub"][0]
        return {k: self(x) for k, x in v.items()}


@dataclass
class BuildAction:
    name: str  # pipeline stage / action name (Build, Deploy, Promote, Gate)
    project: str
    spec: dict
    env: dict[str, str]
    inputs: list[str]  # artifact names: the first is the primary source
    outputs: list[str]


def pipeline_build_actions(template: dict, resolve: Resolver) -> list[BuildAction]:
    """The CodeBuild actions of the template's pipeline, in pipeline order, with their buildspec
    (parsed) and the environment variables the project sets."""
    res = template["Resources"]
    pipeline = next(r for r in res.values() if r["Type"] == "AWS::CodePipeline::Pipeline")["Properties"]
    projects = {lid: r["Properties"] for lid, r in res.items() if r["Type"] == "AWS::CodeBuild::Project"}
    out: list[BuildAction] = []
    for stage in pipeline["Stages"]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] != "CodeBuild":
                continue
            lid = action["Configuration"]["ProjectName"]["Ref"]
            props = projects[lid]
            spec_text = resolve(props["Source"]["BuildSpec"])
            env = {e["Name"]: str(resolve(e["Value"])) for e in props["Environment"].get("EnvironmentVariables", [])}
            out.append(BuildAction(
                name=action["Name"], project=props["Name"], spec=yaml.safe_load(spec_text), env=env,
                inputs=[a["Name"] for a in action.get("InputArtifacts", [])],
                outputs=[a["Name"] for a in action.get("OutputArtifacts", [])]))
    return out


# --- a front for moto: container credentials, CodePipeline state -------------------------------


class Front:
    """Listens on 127.0.0.1; /creds answers ECS container credentials; CodePipeline
    GetPipelineState answers `pipeline_states[name]`; everything else is forwarded to moto."""

    def __init__(self, moto: str):
        self.moto = moto.rstrip("/")
        self.pipeline_states: dict[str, dict] = {}
        self.unanswered: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                head = self.command == "HEAD"
                for k, v in headers.items():
                    if k.lower() in ("transfer-encoding", "connection", "server", "date"):
                        continue
                    if k.lower() == "content-length" and not head:
                        continue
                    self.send_header(k, v)
                if not head:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/creds":
                    creds = {"AccessKeyId": "testing", "SecretAccessKey": "testing", "Token": "codebuild-token",
                             "Expiration": "2099-01-01T00:00:00Z"}
                    return self._send(200, json.dumps(creds).encode(), {"Content-Type": "application/json"})
                target = self.headers.get("X-Amz-Target", "")
                if target.startswith("CodePipeline_20150709."):
                    op = target.split(".", 1)[1]
                    req = json.loads(body or b"{}")
                    if op == "GetPipelineState" and req.get("name") in front.pipeline_states:
                        return self._send(200, json.dumps(front.pipeline_states[req["name"]]).encode(),
                                          {"Content-Type": "application/x-amz-json-1.1"})
                    front.unanswered.append(op)
                    err = {"__type": "PipelineNotFoundException", "message": f"{op} not answered by the test front"}
                    return self._send(400, json.dumps(err).encode(), {"Content-Type": "application/x-amz-json-1.1"})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(front.moto + self.path, data=body if body else None,
                                             method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(req, timeout=120) as resp:
                        return self._send(resp.status, resp.read(), dict(resp.headers))
                except urllib.error.HTTPError as e:
                    return self._send(e.code, e.read(), dict(e.headers))

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Front:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
