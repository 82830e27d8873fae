"""The pipelines pt generates, executed: the GitHub workflows `pt init` writes and the CodeBuild
buildspecs `PipelineStack` synthesizes, run step by step against the local stack (moto server,
local registry, docker), with this checkout's `pt` on PATH.

Every `pt …` line is executed, in order: staging build-push → test → deploy → gate, then prod
(approvals by two people) → promote → gate. A usage error (exit 2) or any failing step fails the
test. Expressions (`${{ steps.x.outputs.y }}`, `github.sha`) are substituted from what the earlier
steps produced ($GITHUB_OUTPUT), `aws-actions/configure-aws-credentials` is played by STS calls
to the roles it names (which must be the roles the stacks create), and CodeBuild's environment
(CODEBUILD_*, container credentials, secondary artifact directories) is set as CodeBuild sets it.

The local stack puts every stage in moto's one account (like `pt local up`); role ARNs from the
templates are mapped to that account the same way. Every AWS call the CodeBuild run makes is
checked against the synthesized role policies (tests/e2e/iam.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from . import generated as g
from . import iam

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = g.ROOT
EXAMPLE = ROOT / "examples" / "iris"
PROJECT = "iris"
REPOSITORY = "acme/iris-service"
TOOLKIT_REF = "acme/pipeline-tools@" + "c0ffee" * 6 + "c0ff"  # the pin `pt init --toolkit-ref` writes
CONNECTION = "arn:aws:codestar-connections:us-east-1:111111111111:connection/0c5e6f1a-1111-2222-3333-444455556666"
AUTHOR = "carol@example.com"
FUNCTIONS = ("predict", "batch-score")


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Carol", "GIT_AUTHOR_EMAIL": AUTHOR, "GIT_COMMITTER_NAME": "Carol",
           "GIT_COMMITTER_EMAIL": AUTHOR}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _local_env(state: Path) -> dict[str, str]:
    out = {}
    for line in (state / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line.removeprefix("export ").partition("=")
            out[k] = v
    return out


@pytest.fixture(scope="module")
def stack(docker_client, registry, lambda_base_image, tmp_path_factory):
    """The example service as a repository `pt init` set up, and the local stack it deploys to."""
    tmp = tmp_path_factory.mktemp("generated")
    project = tmp / "repo"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("reports", ".benchmarks", "__pycache__",
                                                                    ".pytest_cache", ".pt"))
    import yaml

    cfg = yaml.safe_load((project / "pipeline.yml").read_text())
    cfg["images"]["model"]["dockerfile"] = str((ROOT / "docker" / "model" / "Dockerfile").resolve())
    # the example's prod window is Mon-Thu 02-05 UTC; the generated promote has no override
    cfg["stages"]["prod"].pop("window", None)
    (project / "pipeline.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    # the files `pt init` writes (its pipeline.yml/Dockerfile are the example's own here)
    init_dir = tmp / "init"
    env0 = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PT_", "GITHUB_", "CODEBUILD_"))}
    r = subprocess.run([sys.executable, "-m", "pipeline_tools", "init", "-C", init_dir, "--project", PROJECT,
                        "--toolkit-ref", TOOLKIT_REF],
                       env={**env0, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    shutil.copytree(init_dir / ".github", project / ".github")
    _git(project, "init", "-q", "-b", "integration")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "initial")

    state = tmp / "state"
    bin_dir = tmp / "bin"
    g.write_pt_shim(bin_dir)
    base = {**env0, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "PT_LOCAL_DIR": str(state), "PT_LAMBDA_BASE_IMAGE": lambda_base_image, "NO_COLOR": "1",
            "PT_E2E_RUNS": str(tmp / "runs.jsonl"), "PT_E2E_CALLS": str(tmp / "calls.jsonl")}
    if os.environ.get("DOCKER_HOST"):
        base["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    from pipeline_tools.local.stack import free_port

    r = subprocess.run(["pt", "local", "up", "--port", str(free_port()), "--config", project / "pipeline.yml"],
                       env={**base, "PT_E2E_TAG": "setup"}, capture_output=True, text=True, timeout=900, cwd=project)
    assert r.returncode == 0, r.stderr[-4000:]
    local = _local_env(state)
    import boto3

    sts = boto3.client("sts", endpoint_url=local["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    account = sts.get_caller_identity()["Account"]
    with g.Front(local["AWS_ENDPOINT_URL"]) as front:
        yield {"project": project, "base": base, "local": local, "account": account, "front": front, "tmp": tmp}
    subprocess.run(["pt", "local", "down"], env=base, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def templates(stack):
    """Every stack of the project's pipeline.yml (stage, pipeline, GitHub OIDC), synthesized."""
    pytest.importorskip("aws_cdk", reason="needs the [cdk] extra")
    from pipeline_tools.core.config import load
    from pipeline_tools.infra.stacks import FEATURE_FLAGS, build_app, silence_node_warnings

    silence_node_warnings()
    import aws_cdk as cdk

    cfg = load(stack["project"] / "pipeline.yml")
    app = cdk.App(context=FEATURE_FLAGS, outdir=str(stack["tmp"] / "cdk.out"), analytics_reporting=False)
    stacks = build_app(app, cfg, repository=REPOSITORY, connection_arn=CONNECTION)
    assembly = app.synth()
    out = {}
    for name, st in stacks.items():
        out[name] = {"template": assembly.get_stack_by_name(name).template, "account": st.account,
                     "region": st.region}
    return out


def _new_commit(project: Path, marker: str) -> str:
    """A change that ships a new image (app.py is in the last layer: the cheapest rebuild)."""
    app = project / "app.py"
    app.write_text(app.read_text() + f"\n# {marker}\n")
    _git(project, "add", "app.py")
    _git(project, "commit", "-qm", marker)
    return _git(project, "rev-parse", "HEAD")


def _run(script: str, env: dict, cwd: Path, what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{script}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    return proc


def _approve(stack, stage: str, who: str) -> None:
    """A person approves (pt approve, run by hand: not part of any generated file)."""
    env = {**stack["base"], **stack["local"], "PT_ACTOR": who, "PT_E2E_TAG": "human"}
    _run(f"pt approve --stage {stage} -m 'looks good'", env, stack["project"], f"pt approve by {who}")


def _live_digests(stack, stage: str) -> set[str]:
    import boto3

    from pipeline_tools.targets.lambda_ops import version_digest

    lam = boto3.client("lambda", endpoint_url=stack["local"]["AWS_ENDPOINT_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    out = set()
    for fn in FUNCTIONS:
        name = f"{PROJECT}-{stage}-{fn}"
        alias = lam.get_alias(FunctionName=name, Name="live")
        assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"), alias
        out.add(version_digest(lam, name, alias["FunctionVersion"]))
    return out


def _runs(stack, tag: str) -> list[dict]:
    return [r for r in g.read_jsonl(Path(stack["base"]["PT_E2E_RUNS"])) if r["tag"] == tag]


def _check_runs(stack, tag: str, expected_lines: list[str]) -> list[dict]:
    runs = _runs(stack, tag)
    bad = [r for r in runs if r["exit"] != 0]
    assert not bad, f"pt exited non-zero (2 = usage error): {bad}"
    # every pt line of the generated files ran, in order (one invocation per line)
    assert [r["argv"][0] for r in runs] == [ln.split()[1] for ln in expected_lines], (runs, expected_lines)
    return runs


def _role_arn(templates, role_name: str) -> str:
    for t in templates.values():
        for r in t["template"]["Resources"].values():
            if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == role_name:
                return f"arn:aws:iam::{t['account']}:role/{role_name}"
    raise AssertionError(f"no stack creates role {role_name}")


# --- GitHub Actions ---------------------------------------------------------------------------


def run_workflow(stack, templates, path: Path, sha: str, tag: str) -> list[str]:
    """Run a workflow's one job like the runner; returns the pt lines it contains."""
    import boto3

    wf = g.load_workflow(path)
    (job_id, job), = wf["jobs"].items()
    tmp = stack["tmp"] / f"gh-{tag}"
    tmp.mkdir()
    event = tmp / "event.json"
    event.write_text(json.dumps({"ref": f"refs/heads/{wf['on']['push']['branches'][0]}", "after": sha,
                                 "repository": {"full_name": REPOSITORY},
                                 "head_commit": {"id": sha, "author": {"email": AUTHOR, "username": "carol"}}}))
    github = {"sha": sha, "ref": f"refs/heads/{wf['on']['push']['branches'][0]}", "repository": REPOSITORY,
              "actor": "carol", "run_id": "4242", "event_name": "push"}
    env = {**stack["base"], "GITHUB_ACTIONS": "true", "CI": "true", "RUNNER_TEMP": str(tmp),
           "GITHUB_SHA": sha, "GITHUB_REF": github["ref"], "GITHUB_REPOSITORY": REPOSITORY,
           "GITHUB_ACTOR": "carol", "GITHUB_RUN_ID": "4242", "GITHUB_RUN_ATTEMPT": "1",
           "GITHUB_SERVER_URL": "https://github.com", "GITHUB_WORKFLOW": wf["name"], "GITHUB_JOB": job_id,
           "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event), "GITHUB_WORKSPACE": str(stack["project"]),
           "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"), "PT_E2E_TAG": tag,
           # moto and the registry (what `pt local up` exports); AWS credentials come from the steps
           "AWS_ENDPOINT_URL": stack["local"]["AWS_ENDPOINT_URL"], "PT_REGISTRY": stack["local"]["PT_REGISTRY"],
           "PT_AWS_MAX_ATTEMPTS": stack["local"]["PT_AWS_MAX_ATTEMPTS"]}
    env.update({k: str(v) for k, v in (job.get("env") or {}).items()})
    ctx = {"github": github, "env": env, "steps": {}}
    lines: list[str] = []
    chained = False
    for i, step in enumerate(job["steps"]):
        uses = step.get("uses", "")
        if uses.startswith("aws-actions/configure-aws-credentials@"):
            w = {k: g.substitute(str(v), ctx) for k, v in step["with"].items()}
            role = w["role-to-assume"]
            name = role.rsplit("/", 1)[1]
            assert role == _role_arn(templates, name), f"{role}: not the ARN of the role the stacks create"
            local_role = role.replace(role.split(":")[4], stack["account"])  # every stage in moto's account
            sts = boto3.client("sts", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=w["aws-region"],
                               **({k: env[v] for k, v in (("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                                                           ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                                                           ("aws_session_token", "AWS_SESSION_TOKEN"))}
                                  if chained or w.get("role-chaining") == "true" else
                                  {"aws_access_key_id": "anonymous", "aws_secret_access_key": "anonymous"}))
            if w.get("role-chaining") == "true":
                assert chained, "role-chaining without credentials from an earlier step"
                creds = sts.assume_role(RoleArn=local_role, RoleSessionName="GitHubActions")["Credentials"]
            else:
                creds = sts.assume_role_with_web_identity(RoleArn=local_role, RoleSessionName="GitHubActions",
                                                          WebIdentityToken="github-oidc-token")["Credentials"]
            chained = True
            env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
                       AWS_SESSION_TOKEN=creds["SessionToken"], AWS_REGION=w["aws-region"],
                       AWS_DEFAULT_REGION=w["aws-region"])
            continue
        if uses.startswith(TOOLKIT_REF.split("@")[0] + "@"):
            from pipeline_tools import __version__

            assert (uses, step["with"]) == (TOOLKIT_REF, {"version": __version__}), step
            # the action installs pt from its pinned checkout (tests/unit/test_distribution.py runs its steps);
            # here the shim on PATH is this checkout, so every pt run is recorded
            continue
        if uses:
            continue  # checkout / setup-python: the test's own checkout and interpreter
        assert not g.INSTALL_LINE.search(step["run"]), f"{path.name}: a step pip-installs: {step['run']}"
        script = step["run"]
        script = g.substitute(script, ctx)
        lines += g.pt_lines(script)
        out_file = tmp / f"output-{i}"
        out_file.touch()
        _run(script, {**env, "GITHUB_OUTPUT": str(out_file)}, stack["project"], f"{path.name}: {step.get('name')}")
        if step.get("id"):
            ctx["steps"][step["id"]] = g.parse_github_output(out_file)
    return lines


def test_generated_github_workflows_run_end_to_end(stack, templates):
    project = stack["project"]
    sha = _new_commit(project, f"github workflow run {uuid.uuid4().hex[:6]}")
    workflows = project / ".github" / "workflows"

    staging_lines = run_workflow(stack, templates, workflows / "pt-staging.yml", sha, "gh-staging")
    assert [ln.split()[1] for ln in staging_lines] == ["config", "config", "build-push", "test", "deploy", "gate"]
    _check_runs(stack, "gh-staging", staging_lines)
    build = json.loads((project / "build.json").read_text())
    digest = build["images"][0]["digest"]
    assert _live_digests(stack, "staging") == {digest}

    for who in ("alice@example.com", "bob@example.com"):  # prod environment reviewers / pt approve
        _approve(stack, "prod", who)
    prod_lines = run_workflow(stack, templates, workflows / "pt-prod.yml", sha, "gh-prod")
    assert [ln.split()[1] for ln in prod_lines] == ["config", "config", "promote", "gate"]
    _check_runs(stack, "gh-prod", prod_lines)
    assert _live_digests(stack, "prod") == {digest}

    # what pt called with the deploy role (the GitHub role only assumes it) is allowed by its policy
    calls = g.read_jsonl(Path(stack["base"]["PT_E2E_CALLS"]))
    for stage in ("staging", "prod"):
        info = templates[f"{PROJECT}-{stage}-stage"]
        oidc = next(t for n, t in templates.items() if "github-oidc" in n and t["account"] == info["account"])
        problems = iam.check_calls(
            [c for c in calls if c["tag"] == f"gh-{stage}"],
            deploy=iam.role_policies(info["template"], f"{PROJECT}-{stage}-deploy", info),
            caller=iam.role_policies(oidc["template"], f"{PROJECT}-{stage}-github", oidc),
            local_only=iam.LOCAL_ONLY)
        assert problems == [], "\n".join(problems)


# --- CodeBuild --------------------------------------------------------------------------------


def run_pipeline(stack, templates, stage: str, sha: str, tag: str, before=None) -> list[str]:
    """Run the CodeBuild actions of `<project>-<stage>-pipeline` in order; `before(action)` runs
    first for each (e.g. to answer the Manual approval)."""
    t = templates[f"{PROJECT}-{stage}-pipeline"]
    resolve = g.Resolver(t["template"], account=t["account"], region=t["region"])
    actions = g.pipeline_build_actions(t["template"], resolve)
    artifacts: dict[str, Path] = {}
    lines: list[str] = []
    for n, action in enumerate(actions, 1):
        if before:
            before(action)
        work = stack["tmp"] / f"cb-{tag}-{action.name}"
        work.mkdir()
        # the source artifact: a full clone of the commit (the source action's CODEBUILD_CLONE_REF)
        _git(work, "clone", "-q", "--branch", _git(stack["project"], "rev-parse", "--abbrev-ref", "HEAD"),
             str(stack["project"]), "src")
        assert _git(work / "src", "rev-parse", "HEAD") == sha
        build_id = f"{action.project}:{uuid.uuid4()}"
        env = {**stack["base"], **{k: str(v) for k, v in action.env.items()},
               **{k: str(v) for k, v in (action.spec.get("env", {}).get("variables") or {}).items()},
               # what CodeBuild sets in every build container
               "CODEBUILD_BUILD_ID": build_id, "CODEBUILD_BUILD_NUMBER": str(n),
               "CODEBUILD_BUILD_ARN": f"arn:aws:codebuild:{t['region']}:{stack['account']}:build/{build_id}",
               "CODEBUILD_INITIATOR": f"codepipeline/{PROJECT}-{stage}-pipeline",
               "CODEBUILD_RESOLVED_SOURCE_VERSION": sha, "CODEBUILD_SOURCE_VERSION": sha,
               "CODEBUILD_SRC_DIR": str(work / "src"), "CODEBUILD_BUILD_SUCCEEDING": "1", "CODEBUILD_CI": "true",
               "AWS_REGION": t["region"], "AWS_DEFAULT_REGION": t["region"], "PT_E2E_TAG": tag,
               # container credentials of the CodeBuild role (the test front serves them on loopback)
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{stack['front'].url}/creds",
               "AWS_ENDPOINT_URL": stack["front"].url, "PT_REGISTRY": stack["local"]["PT_REGISTRY"],
               "PT_AWS_MAX_ATTEMPTS": stack["local"]["PT_AWS_MAX_ATTEMPTS"]}
        env = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        env["PT_DEPLOY_ROLE_ARN"] = env["PT_DEPLOY_ROLE_ARN"].replace(t["account"], stack["account"])
        env["AWS_CONFIG_FILE"] = str(work / "aws-config")  # the buildspec writes its profile there
        for extra in action.inputs[1:]:  # secondary inputs: CODEBUILD_SRC_DIR_<artifact name>
            env[f"CODEBUILD_SRC_DIR_{extra}"] = str(artifacts[extra])
        script = []
        for phase in ("install", "pre_build", "build", "post_build"):
            for cmd in (action.spec["phases"].get(phase) or {}).get("commands", []):
                if g.INSTALL_LINE.search(cmd):
                    continue  # `pip install pt`: the shim on PATH is this checkout
                script.append(cmd)
        lines += g.pt_lines("\n".join(script))
        _run("\n".join(script), env, work / "src", f"{stage} pipeline, action {action.name}")
        for out in action.outputs:
            artifacts[out] = work / f"artifact-{out}"
            artifacts[out].mkdir()
            for f in action.spec["artifacts"]["files"]:
                shutil.copy(work / "src" / f, artifacts[out] / f)
    return lines


def test_synthesized_codebuild_pipelines_run_end_to_end(stack, templates):
    sha = _new_commit(stack["project"], f"codebuild run {uuid.uuid4().hex[:6]}")
    calls = Path(stack["base"]["PT_E2E_CALLS"])
    start = len(g.read_jsonl(calls))

    lines = run_pipeline(stack, templates, "staging", sha, "cb-staging")
    assert [ln.split()[1] for ln in lines] == ["config", "build-push", "test", "config", "deploy", "config", "gate"]
    _check_runs(stack, "cb-staging", lines)
    staging = stack["tmp"] / "cb-cb-staging-Build" / "artifact-Build" / "build.json"
    digest = json.loads(staging.read_text())["images"][0]["digest"]
    assert _live_digests(stack, "staging") == {digest}

    # prod: the Manual approval is answered in the console by dave; alice approves with pt
    def before(action):
        if action.name == "Promote":
            stack["front"].pipeline_states[f"{PROJECT}-prod-pipeline"] = approved_state(stack["account"])
            _approve(stack, "prod", "alice@example.com")

    lines = run_pipeline(stack, templates, "prod", sha, "cb-prod", before=before)
    assert [ln.split()[1] for ln in lines] == ["config", "approvals", "promote", "config", "gate"]
    _check_runs(stack, "cb-prod", lines)
    assert _live_digests(stack, "prod") == {digest}
    assert stack["front"].unanswered == []

    # every AWS call the pipelines made is allowed by the synthesized role policies
    recorded = [c for c in g.read_jsonl(calls)[start:] if c["tag"] in ("cb-staging", "cb-prod")]
    # (UpdateFunctionCode publishes the version itself: Publish=true)
    assert {c["operation"] for c in recorded} >= {"UpdateFunctionCode", "UpdateAlias",
                                                 "DescribeAlarms", "AssumeRole", "GetPipelineState"}
    for stage in ("staging", "prod"):
        mine = [c for c in recorded if c["tag"] == f"cb-{stage}"]
        problems = iam.check_calls(
            mine, deploy=iam.role_policies(templates[f"{PROJECT}-{stage}-stage"]["template"],
                                           f"{PROJECT}-{stage}-deploy", templates[f"{PROJECT}-{stage}-stage"]),
            caller=iam.role_policies(templates[f"{PROJECT}-{stage}-pipeline"]["template"],
                                     f"{PROJECT}-{stage}-codebuild", templates[f"{PROJECT}-{stage}-pipeline"]),
            local_only=iam.LOCAL_ONLY)
        assert problems == [], "\n".join(problems)


def approved_state(account: str) -> dict:
    """GetPipelineState of the prod pipeline after its Manual approval was approved (API shape)."""
    return {"pipelineName": f"{PROJECT}-prod-pipeline", "pipelineVersion": 1, "stageStates": [
        {"stageName": "Source", "latestExecution": {"pipelineExecutionId": "exec-1", "status": "Succeeded"},
         "actionStates": [{"actionName": "GitHub", "latestExecution": {
             "status": "Succeeded", "externalExecutionId": "abc", "lastStatusChange": 1764800000.0}}]},
        {"stageName": "Approve", "latestExecution": {"pipelineExecutionId": "exec-1", "status": "Succeeded"},
         "actionStates": [{"actionName": "Approve", "latestExecution": {
             "actionExecutionId": "act-1", "status": "Succeeded", "summary": "ship it",
             "lastStatusChange": 1764800100.0,
             "lastUpdatedBy": f"arn:aws:sts::{account}:assumed-role/Approvers/dave@example.com"}}]},
        {"stageName": "Promote", "latestExecution": {"pipelineExecutionId": "exec-1", "status": "InProgress"},
         "actionStates": [{"actionName": "Promote", "latestExecution": {
             "status": "InProgress", "externalExecutionId": "build-1", "lastStatusChange": 1764800200.0}}]},
    ]}
