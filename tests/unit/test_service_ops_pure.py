"""Pure parts of the service operations: --service selection, the access record's conditional
update (conflicts, give-up, fail closed), what a stage's services own, shared service buckets."""

from __future__ import annotations

import io
import json

import pytest
from botocore.exceptions import ClientError

from pipeline_tools.core.config import parse
from pipeline_tools.core.errors import PtError, UsageError
from pipeline_tools.ops import access
from pipeline_tools.ops.services import partition, pick_service
from pipeline_tools.ops.teardown_services import shared_buckets, wanted

BASE = """\
project: iris
region: us-east-1
images: {model: {}}
functions: {predict: {image: model}}
targets:
  stepfunctions: {flow: {}}
  batch: {score: {image: model}}
stages:
  val: {account: "111111111111", branch: val, gate: {alarms: ["iris-val-*"]}}
  prod: {account: "222222222222", branch: master, gate: {alarms: ["iris-prod-*"]}}
"""


def cfg(services: str = ""):
    return parse(BASE + ("services:\n" + services if services else ""))


TWO = """\
  scorer: {function: predict, state_machine: flow, batch: [score]}
  ranker: {function: predict, api: null, stages: [prod], bucket: "{project}-{service}-shared"}
"""


def test_pick_service():
    c = cfg(TWO)
    assert pick_service(c, "val", None) == "scorer"  # the only one in val
    with pytest.raises(UsageError, match="runs several services"):
        pick_service(c, "prod", None)
    with pytest.raises(UsageError, match="does not run in stage 'val'"):
        pick_service(c, "val", "ranker")
    with pytest.raises(UsageError) as e:
        pick_service(c, "prod", "scorr")
    assert e.value.hint == "did you mean 'scorer'?"
    with pytest.raises(UsageError, match="no `services:` section"):
        pick_service(cfg(), "val", None)


def test_partition():
    assert [partition(r) for r in ("us-east-1", "cn-north-1", "us-gov-west-1")] == ["aws", "aws-cn", "aws-us-gov"]


def test_wanted_names_what_the_stage_owns():
    w = wanted(cfg(TWO), "prod")
    assert w["apis"] == {"iris-prod-scorer-api"}  # ranker has api: null
    assert w["machines"] == {"iris-prod-flow"} and w["schedules"] == {"iris-prod-score"}
    assert w["endpoint"] is None and w["services"] == ["scorer", "ranker"]


def test_shared_service_bucket_only_when_another_stage_renders_it():
    c = cfg(TWO.replace("stages: [prod], ", ""))
    assert set(shared_buckets(c, "val")) == {"iris-ranker-shared"}
    assert shared_buckets(cfg(TWO), "prod") == {}  # ranker runs in prod only


# --- the access record ------------------------------------------------------------------------


class FakeS3:
    """get_object/put_object with ETags and the two S3 conditions; `conflicts` PUTs fail first."""

    def __init__(self, body: bytes | None = None, conflicts: int = 0, code: str = "PreconditionFailed"):
        self.body, self.etag, self.conflicts, self.code, self.puts = body, '"e0"' if body else None, conflicts, code, []

    def get_object(self, Bucket, Key):
        if self.body is None:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
        return {"Body": io.BytesIO(self.body), "ETag": self.etag}

    def put_object(self, Bucket, Key, Body, ContentType, IfMatch=None, IfNoneMatch=None):
        self.puts.append({"IfMatch": IfMatch, "IfNoneMatch": IfNoneMatch})
        if self.conflicts:
            self.conflicts -= 1
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "PutObject")
        assert (IfMatch == self.etag) if self.body is not None else (IfNoneMatch == "*")
        self.body, self.etag = Body, f'"e{len(self.puts)}"'
        return {"ETag": self.etag}


def _grant(doc: dict) -> dict:
    doc["grants"].setdefault("g", {})["s"] = {"policy_arn": "p"}
    return doc


@pytest.mark.parametrize("code", ["PreconditionFailed", "ConditionalRequestConflict"])
def test_update_creates_with_if_none_match_and_retries_conflicts(code):
    s3, sleeps = FakeS3(conflicts=2, code=code), []
    _doc, retries, written = access.update_document(s3, "b", _grant, empty=access.empty_document("iris", "val"),
                                                   sleep=sleeps.append, rng=lambda: 0.5)
    assert written and retries == 2 and len(sleeps) == 2 and sleeps[0] < sleeps[1]
    assert all(p["IfNoneMatch"] == "*" for p in s3.puts)
    assert json.loads(s3.body)["grants"] == {"g": {"s": {"policy_arn": "p"}}}


def test_update_uses_if_match_and_skips_a_no_op():
    s3 = FakeS3(json.dumps(access.empty_document("iris", "val")).encode())
    access.update_document(s3, "b", _grant, empty={}, sleep=lambda s: None)
    assert s3.puts == [{"IfMatch": '"e0"', "IfNoneMatch": None}]
    _doc, _r, written = access.update_document(s3, "b", _grant, empty={}, sleep=lambda s: None)
    assert not written and len(s3.puts) == 1


def test_update_gives_up_after_the_attempts():
    s3 = FakeS3(conflicts=99)
    with pytest.raises(PtError, match="kept changing"):
        access.update_document(s3, "b", _grant, empty=access.empty_document("iris", "val"), sleep=lambda s: None,
                               attempts=3)
    assert len(s3.puts) == 3


def test_other_errors_are_not_retried():
    s3 = FakeS3(conflicts=1, code="AccessDenied")
    with pytest.raises(ClientError):
        access.update_document(s3, "b", _grant, empty=access.empty_document("iris", "val"), sleep=lambda s: None)
    assert len(s3.puts) == 1


@pytest.mark.parametrize("body", [b"{oops", b"[]", b'{"grants": {"g": []}}', b'{"schema": 9, "grants": {}}'])
def test_an_unreadable_record_fails_closed(body):
    with pytest.raises(PtError):
        access.read_document(FakeS3(body), "b")


def test_a_read_error_is_not_an_empty_record():
    class Denied(FakeS3):
        def get_object(self, Bucket, Key):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(ClientError):
        access.read_document(Denied(), "b")


def test_with_and_without_grant():
    t = access.Target("val", "s", "g", "us-east-1_X", "p", "b")
    doc = access.with_grant(access.empty_document("iris", "val"), t, "r", "now", "me")
    assert doc["grants"] == {"g": {"s": {"policy_arn": "p", "role_arn": "r", "at": "now", "by": "me"}}}
    assert access.without_grant(doc, t)["grants"] == {}
    assert access.user_pool_region("eu-west-1_AbC") == "eu-west-1"


def test_a_change_that_changes_nothing_writes_nothing_even_without_a_record():
    s3 = FakeS3()
    _doc, _r, written = access.update_document(s3, "b", lambda d: d, empty=access.empty_document("iris", "val"),
                                               sleep=lambda s: None)
    assert not written and s3.puts == []
