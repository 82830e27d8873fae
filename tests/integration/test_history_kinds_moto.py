"""`pt history` for every record kind on a moto-server ledger: --kind, --since/--until, --next pages,
Query only (never Scan), damaged items skipped, bad tokens refused."""

from __future__ import annotations

import pytest

from pipeline_tools.ops import records
from pipeline_tools.release.ledger import Ledger, ensure_table

CONFIG = """\
project: his
region: us-east-1
images:
  model: {context: ., dockerfile: Dockerfile}
functions:
  predict: {image: model}
stages:
  staging: {account: "111111111111", branch: integration, gate: {alarms: ["his-staging-*"]}}
"""
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z
KINDS = [("deploy", {"operation": "deploy", "strategy": "canary", "functions": [{"name": "his-staging-predict"}]}),
         ("deploy", {"operation": "deploy", "target": "sagemaker", "targets": ["ep"]}),
         ("gate", {"deploy_id": "x", "target": "lambda"}),
         ("approval", {"approver": "carol", "decision": "approve", "source": "codepipeline"}),
         ("promotion", {"source": "dev"}),
         ("window-override", {"window": "Mon-Thu 09:00-16:00 Europe/Berlin"}),
         ("break-glass", {"approvers": ["dave"]}),
         ("sagemaker", {"operation": "shadow", "endpoint": "his-staging-ep"}),
         ("zoo", {"operation": "apply", "set_digest": "sha256:" + "f" * 64}),
         ("runbook", {"name": "vendor", "steps": [{}, {}], "results": {"a": {}}}),
         ("artifacts", {"operation": "copy", "destination": "s3://dst/p"}),
         ("teardown", {"operation": "teardown", "bucket": "his-staging-artifacts"})]


class Recording:
    """The DynamoDB client, remembering which operations were called."""

    def __init__(self, client):
        self.client, self.calls = client, []

    def query(self, **kw):
        self.calls.append(("query", kw.get("Limit")))
        return self.client.query(**kw)

    def __getattr__(self, name):
        self.calls.append((name, None))
        return getattr(self.client, name)


@pytest.fixture
def world(aws, tmp_path):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    ddb = aws.client("dynamodb")
    ensure_table(ddb, "his-ledger", project="his", stage="staging", local=True)
    now = {"t": T0}
    led = Ledger(ddb, "his-ledger", clock=lambda: now["t"])
    ids = []
    for i, (kind, data) in enumerate(KINDS):
        now["t"] = T0 + i * 3600
        ids.append(led.put_record(kind, "staging", {"digest": f"sha256:{i:064d}", **data},
                                  actor={"name": "alice"}, state="done", reason=f"r{i}").id)
    return {"cfg": cfg, "ddb": ddb, "ids": ids}


def test_every_kind_newest_first_with_a_description(world):
    rows, token = records.history_page(world["ddb"], "his-ledger", "staging", limit=50)
    assert token is None
    assert [r["kind"] for r in rows] == [k for k, _ in reversed(KINDS)]
    what = {r["kind"] + ("/sm" if r["target"] == "sagemaker" else ""): r["what"] for r in rows}
    assert what["deploy"] == "deploy his-staging-predict canary"
    assert what["deploy/sm"] == "deploy [sagemaker] ep"
    assert what["approval"] == "approve by carol (codepipeline)"
    assert what["break-glass"] == "break-glass approvers dave"
    assert what["runbook"] == "vendor 1/2 steps"
    assert what["artifacts"] == "copy s3://dst/p" and what["teardown"] == "teardown his-staging-artifacts"


def test_kind_filter_time_range_and_pages_by_query_only(world):
    client = Recording(world["ddb"])
    seen, token, pages = [], None, 0
    while True:
        rows, token = records.history_page(client, "his-ledger", "staging", kinds=["deploy", "approval", "zoo"],
                                           limit=2, next_token=token)
        pages += 1
        seen += rows
        if token is None:
            break
    assert [r["kind"] for r in seen] == ["zoo", "approval", "deploy", "deploy"] and pages == 2
    assert {c[0] for c in client.calls} == {"query"} and all(c[1] is not None for c in client.calls)
    rows, _ = records.history_page(world["ddb"], "his-ledger", "staging", since=T0 + 2 * 3600,
                                   until=T0 + 4 * 3600 + 1)
    assert [r["kind"] for r in rows] == ["promotion", "approval", "gate"]


def test_cli_kinds_json_pages_and_bad_input(world, run_pt):
    c = ("--config", str(world["cfg"]), "--stage", "staging")
    r = run_pt("history", *c, "--kind", "all", "-n", "5", "--output", "json")
    assert r.exit_code == 0, r
    first = r.json()
    assert len(first["records"]) == 5 and first["next"] == first["records"][-1]["id"]
    r = run_pt("history", *c, "--kind", "all", "-n", "50", "--next", first["next"], "--output", "json")
    assert [x["id"] for x in r.json()["records"]] == list(reversed(world["ids"]))[5:] and r.json()["next"] is None
    r = run_pt("history", *c, "--kind", "break-glass", "--kind", "window-override")
    assert r.exit_code == 0 and "break-glass" in r.stdout and "window-override" in r.stdout and "zoo" not in r.stdout
    r = run_pt("history", *c, "--since", "2026-11-18T13:00", "--until", "2026-11-18T14:30", "--output", "json")
    assert [x["kind"] for x in r.json()["records"]] == ["approval", "gate"]
    assert run_pt("history", *c, "--next", "nope").exit_code == 2
    assert run_pt("history", *c, "--since", "yesterday-ish").exit_code == 2
    assert run_pt("history", *c, "--kind", "gate", "--before", world["ids"][0]).exit_code == 2
    legacy = run_pt("history", *c, "--output", "json")  # no new option: the deploy listing as before
    assert legacy.exit_code == 0 and len(legacy.json()["deploys"]) == 2


def test_damaged_item_is_skipped_with_a_warning(world, run_pt):
    bad = {"pk": {"S": "staging"}, "sk": {"S": "R#20261119T000000000Z-bad000"}, "kind": {"S": "gate"},
           "data": {"S": "{broken"}}
    world["ddb"].put_item(TableName="his-ledger", Item=bad)
    r = run_pt("history", "--config", str(world["cfg"]), "--stage", "staging", "--kind", "all", "-n", "50",
               "--output", "json")
    assert r.exit_code == 0 and len(r.json()["records"]) == len(KINDS)
    assert "skipped" in r.stderr and "R#20261119T000000000Z-bad000" in r.stderr
