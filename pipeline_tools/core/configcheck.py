"""Checks of pipeline.yml against what AWS would accept, on the raw (line-marked) data.

Run by config.parse() next to its own cross checks, so they report even when other fields are
wrong. Each check yields (path, message); parse() turns the path into FILE:LINE. Covered:
derived physical names (names.py) against AWS's naming rules, two stages or functions deriving
the same physical name, Lambda environment keys, registry hosts, zero durations
where time must pass, and empty strings where a value is required.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pipeline_tools.core import awsnames, names

Problem = tuple[tuple, str]

# Metric suffixes of the alarms the StageStack creates per function (stacks/stage_stack.py).
GENERATED_ALARM_METRICS = ("errors", "throttles", "duration-p99")


def codebuild_role(project: str, stage: str) -> str:
    """The PipelineStack's CodeBuild role name (stacks.stage_stack.codebuild_role_name)."""
    return f"{project}-{stage}-codebuild"


def sagemaker_role(project: str, stage: str) -> str:
    """The StageStack's SageMaker execution role name (sagemaker.role_name)."""
    return f"{project}-{stage}-sagemaker"


def checks(data: dict) -> list[Problem]:
    out: list[Problem] = []
    out += _required_strings(data)
    out += _registries(data)
    out += _durations(data)
    out += _environments(data)
    out += _derived_names(data)
    return out


# --- helpers ---------------------------------------------------------------------------------


def _dict(v: Any) -> dict:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list:
    return v if isinstance(v, list) else []


def _str_keys(d: dict) -> list[str]:
    return [k for k in d if isinstance(k, str)]


# --- empty strings ---------------------------------------------------------------------------


def _required_strings(data: dict) -> Iterator[Problem]:
    """Strings that mean nothing (or everything, like an empty alarm prefix) when empty."""
    def empty(v: Any) -> bool:
        return isinstance(v, str) and not v.strip()

    msg = "must not be empty"
    for sname, s in _dict(data.get("stages")).items():
        s = _dict(s)
        if empty(s.get("branch")):
            yield ("stages", sname, "branch"), f"{msg}: give the git branch that deploys this stage"
        for i, pat in enumerate(_list(_dict(s.get("gate")).get("alarms"))):
            if empty(pat):
                yield (("stages", sname, "gate", "alarms", i),
                       f"{msg}: an empty alarm prefix would match every alarm in the account")
        if empty(s.get("promote_from")):
            yield ("stages", sname, "promote_from"), f"{msg}: name a stage or remove the key"
    for iname, img in _dict(data.get("images")).items():
        for key in ("context", "dockerfile"):
            if empty(_dict(img).get(key)):
                yield ("images", iname, key), msg
    for fname, f in _dict(data.get("functions")).items():
        f = _dict(f)
        for key in ("image", "handler"):
            if empty(f.get(key)):
                yield ("functions", fname, key), msg
        for i, a in enumerate(_list(f.get("alarms"))):
            for key in ("name", "metric", "namespace", "statistic"):
                if empty(_dict(a).get(key)):
                    yield ("functions", fname, "alarms", i, key), msg
    art = _dict(data.get("artifacts"))
    if empty(art.get("bucket")):
        yield ("artifacts", "bucket"), msg
    for i, p in enumerate(_list(art.get("paths"))):
        if empty(p):
            yield ("artifacts", "paths", i), msg
    sm = _dict(_dict(data.get("targets")).get("sagemaker"))
    for key in ("image", "model_artifacts"):
        if empty(sm.get(key)):
            yield ("targets", "sagemaker", key), msg
    zoo = _dict(data.get("zoo"))
    for mname, m in _dict(zoo.get("models")).items():
        if empty(_dict(m).get("artifacts")):
            yield ("zoo", "models", mname, "artifacts"), msg
    for i, c in enumerate(_list(zoo.get("consumers"))):
        for key in ("ssm", "function", "model"):
            if empty(_dict(c).get(key)):
                yield ("zoo", "consumers", i, key), msg


# --- registries and role ARNs ----------------------------------------------------------------


def _registries(data: dict) -> Iterator[Problem]:
    if isinstance(data.get("registry"), str) and (p := awsnames.registry_host(data["registry"])):
        yield ("registry",), p
    for path in (("targets", "sagemaker", "execution_role"), ("zoo", "role")):
        parent = _dict(_dict(data.get(path[0])).get(path[1])) if len(path) == 3 else _dict(data.get(path[0]))
        role = parent.get(path[-1])
        if isinstance(role, str) and (p := awsnames.iam_role_arn(role)):
            yield path, p
    for sname, s in _dict(data.get("stages")).items():
        s = _dict(s)
        if isinstance(s.get("registry"), str) and (p := awsnames.registry_host(s["registry"])):
            yield ("stages", sname, "registry"), p


# --- durations -------------------------------------------------------------------------------


def _seconds(v: Any) -> float | None:
    from pipeline_tools.core.config import parse_duration

    try:
        return parse_duration(v)
    except ValueError:
        return None  # the model reports the bad duration itself


# CloudWatch accepts these periods for standard and high-resolution alarms, else multiples of 60.
_ALARM_PERIODS = (10, 30)


def _durations(data: dict) -> Iterator[Problem]:
    for sname, s in _dict(data.get("stages")).items():
        s = _dict(s)
        gate = _dict(s.get("gate"))
        if "poll" in gate and _seconds(gate["poll"]) == 0:
            yield ("stages", sname, "gate", "poll"), "must be more than 0s (the gate would poll without pause)"
        deploy = _dict(s.get("deploy"))
        if "interval" in deploy and _seconds(deploy["interval"]) == 0:
            yield (("stages", sname, "deploy", "interval"),
                   "must be more than 0s (traffic steps need time to be watched)")
    for fname, f in _dict(data.get("functions")).items():
        for i, a in enumerate(_list(_dict(f).get("alarms"))):
            a = _dict(a)
            if "period" not in a:
                continue
            sec = _seconds(a["period"])
            if sec is not None and not (sec in _ALARM_PERIODS or (sec >= 60 and sec % 60 == 0)):
                yield (("functions", fname, "alarms", i, "period"),
                       f"CloudWatch alarm periods are 10s, 30s or a multiple of 60s (got {sec:g}s)")
    sm = _dict(_dict(data.get("targets")).get("sagemaker"))
    if "wait" in sm and _seconds(sm["wait"]) == 0:
        yield ("targets", "sagemaker", "wait"), "must be more than 0s (the deadline for an endpoint update)"


# --- Lambda environments ---------------------------------------------------------------------


def _environment(path: tuple, env: Any) -> Iterator[Problem]:
    env = _dict(env)
    for key in env:
        if not isinstance(key, str):
            yield path + (key,), f"environment key must be a string (got {awsnames.clip(key)})"
        elif p := awsnames.lambda_env_key(key):
            yield path + (key,), p
    if p := awsnames.lambda_env_size({str(k): str(v) for k, v in env.items()}):
        yield path, p


def _environments(data: dict) -> Iterator[Problem]:
    for fname, f in _dict(data.get("functions")).items():
        yield from _environment(("functions", fname, "environment"), _dict(f).get("environment"))
    for mname, m in _dict(_dict(data.get("zoo")).get("models")).items():
        yield from _environment(("zoo", "models", mname, "environment"), _dict(m).get("environment"))


# --- derived physical names ------------------------------------------------------------------


def _account(s: dict) -> str:
    a = s.get("account")
    return str(a).zfill(12) if isinstance(a, int) and not isinstance(a, bool) else str(a)


def _derived_names(data: dict) -> list[Problem]:
    from pipeline_tools.core.config import render

    project = data.get("project")
    if not isinstance(project, str) or not project:
        return []
    top_region = data.get("region") if isinstance(data.get("region"), str) else ""
    stages = {k: _dict(v) for k, v in _dict(data.get("stages")).items() if isinstance(k, str)}
    functions = {k: _dict(v) for k, v in _dict(data.get("functions")).items() if isinstance(k, str)}
    images = _str_keys(_dict(data.get("images")))
    art = _dict(data.get("artifacts"))
    bucket_tpl = art.get("bucket") if isinstance(art.get("bucket"), str) else names.default_bucket_template()
    bucket_path = ("artifacts", "bucket") if "bucket" in art else None
    sm = _dict(_dict(data.get("targets")).get("sagemaker"))
    sm_stages = sm.get("stages") if isinstance(sm.get("stages"), list) else list(stages)
    zoo_models = _str_keys(_dict(_dict(data.get("zoo")).get("models")))

    out: list[Problem] = []
    reported: set[tuple] = set()
    # (scope, kind, name) -> who derived it first; scope is where AWS requires uniqueness.
    owners: dict[tuple, str] = {}

    def check(path: tuple, kind: str, name: str, rule, scope: tuple, who: str) -> None:
        if (problem := rule(name)) and (path, kind) not in reported:
            reported.add((path, kind))
            out.append((path, f"{problem} ({who})"))
        key = (scope, kind, name)
        if key in owners and owners[key] != who and (path, "dup") not in reported:
            reported.add((path, "dup"))
            where = {"global": "S3 bucket names are global: put {stage} in artifacts.bucket",
                     "account": "in the same account"}.get(
                scope[0], "in the same account and region")
            out.append((path, f"{kind} {awsnames.clip(name)} ({who}) is also derived for {owners[key]} "
                              f"({where}); rename one of them"))
        owners.setdefault(key, who)

    for image in images:
        check(("images", image), "ECR repository name", names.ecr_repository(project, image),
              awsnames.ecr_repository, ("none", image), f"image {awsnames.short(image)}")

    for sname, s in stages.items():
        account = _account(s)
        region = s.get("region") if isinstance(s.get("region"), str) else top_region
        regional = ("regional", account, region)
        acct = ("account", account)
        spath = ("stages", sname)
        st = f"stage {awsnames.short(sname)}"
        for fname, f in functions.items():
            fpath = ("functions", fname)
            who = f"{st}, function {awsnames.short(fname)}"
            fn = names.function_name(project, sname, fname)
            check(fpath, "Lambda function name", fn, awsnames.lambda_function, regional, who)
            check(fpath, "log group name", f"/aws/lambda/{fn}", awsnames.log_group, regional, who)
            for metric in GENERATED_ALARM_METRICS:
                check(fpath, "alarm name", names.alarm_name(project, sname, fname, metric), awsnames.alarm,
                      regional, f"{who}, generated alarm {metric}")
            for i, a in enumerate(_list(f.get("alarms"))):
                aname = _dict(a).get("name")
                if isinstance(aname, str) and aname.strip():
                    check(fpath + ("alarms", i, "name"), "alarm name",
                          names.alarm_name(project, sname, fname, aname), awsnames.alarm, regional,
                          f"{who}, alarm {awsnames.short(aname)}")
        for model in zoo_models:
            mpath = ("zoo", "models", model)
            fn = names.function_name(project, sname, model)
            for name in (fn, fn + "_copy"):
                check(mpath, "Lambda function name", name, awsnames.lambda_function, ("zoo", account, region),
                      f"{st}, zoo model {awsnames.short(model)}")
        bucket = render(bucket_tpl, project=project, stage=sname)
        if "{" not in bucket:  # an unknown placeholder is reported by config's own cross checks
            check(bucket_path or spath, "S3 bucket name", bucket, awsnames.s3_bucket, ("global",), st)
        check(spath, "IAM role name", names.deploy_role(project, sname), awsnames.iam_role, acct, st)
        check(spath, "IAM role name", codebuild_role(project, sname), awsnames.iam_role, acct, f"{st} CodeBuild")
        if sm and sname in sm_stages:
            check(("targets", "sagemaker"), "IAM role name", sagemaker_role(project, sname), awsnames.iam_role,
                  acct, f"{st} SageMaker")
        check(spath, "SNS topic name", names.sns_topic(project, sname), awsnames.sns_topic, regional, st)
        for stack in (names.stage_stack(project, sname), names.pipeline_stack(project, sname)):
            check(spath, "CloudFormation stack name", stack, awsnames.stack, regional, st)
    return out
