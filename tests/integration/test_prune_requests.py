"""prune_versions against moto server: the same deletions as before, fewer requests when there is
nothing to prune (a young function, or no version beyond `keep`)."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.targets import lambda_ops as lo


@pytest.fixture(name="fn")
def fn_fixture(aws):
    lc = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="pr-fn", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    lc.create_function(FunctionName="pr", PackageType="Image", Code={"ImageUri": "1.dkr.ecr/x@sha256:" + "a" * 64},
                       Role=role)
    calls: list[str] = []
    lc.meta.events.register("before-send.lambda.*", lambda event_name, **_: calls.append(event_name.split(".")[-1]))
    return lc, calls


def _publish(lc, n: int) -> str:
    v = ""
    for i in range(n):  # a configuration change each time, else publishing returns the same version
        lc.update_function_configuration(FunctionName="pr", Environment={"Variables": {"N": str(i)}})
        v = lc.publish_version(FunctionName="pr", Description=f"v{i}")["Version"]
    return v


def test_young_function_is_not_listed(fn):
    lc, calls = fn
    newest = _publish(lc, 3)
    calls.clear()
    assert lo.prune_versions(lc, "pr", 5, lambda _s: None, newest=newest) == []
    assert calls == []


def test_nothing_beyond_keep_skips_the_alias_listing(fn):
    lc, calls = fn
    _publish(lc, 3)
    calls.clear()
    assert lo.prune_versions(lc, "pr", 5, lambda _s: None) == []
    assert calls == ["ListVersionsByFunction"]


def test_old_unreferenced_versions_are_still_deleted(fn):
    lc, _ = fn
    newest = _publish(lc, 7)
    lc.create_alias(FunctionName="pr", Name="pinned", FunctionVersion="1")
    deleted = lo.prune_versions(lc, "pr", 5, lambda _s: None, newest=newest)
    assert deleted == ["2"]  # 1 is referenced by an alias; 3..7 are the newest 5
    left = {v["Version"] for v in lc.list_versions_by_function(FunctionName="pr")["Versions"]}
    assert left == {"$LATEST", "1", "3", "4", "5", "6", "7"}
