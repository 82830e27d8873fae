"""Ledger.page and `pt history` paging against moto server: pages add up to the full query, the
cursor ends at the last page, and each Query asks for about a page of items (no full read)."""

from __future__ import annotations

import pytest

from pipeline_tools.release import deploy as dp
from pipeline_tools.release import ledger as L


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture(name="led")
def led_fixture(aws):
    client = aws.client("dynamodb")
    L.ensure_table(client, "iris-ledger", project="iris", stage="staging", local=True, sleep=lambda s: None)
    led = L.Ledger(client, "iris-ledger", Clock())
    for i in range(45):  # every third record is not a deploy: the filter has to skip them
        kind = "promote" if i % 3 == 2 else L.DEPLOY
        led.put_record(kind, "staging", {"n": i, "operation": kind}, state="succeeded")
    led.put_record(L.DEPLOY, "prod", {"n": 99}, state="succeeded")
    return led


def _limits(led) -> list[int]:
    sent: list[int] = []
    led.client.meta.events.register("before-parameter-build.dynamodb.Query",
                                    lambda params, **_: sent.append(params["Limit"]))
    return sent


@pytest.mark.parametrize("size", [1, 7, 10, 30, 100])
def test_pages_add_up_to_the_full_query(led, size):
    want = [r.id for r in led.query("staging", L.DEPLOY)]
    got, cursor, pages = [], None, 0
    while True:
        recs, cursor = led.page("staging", L.DEPLOY, limit=size, before=cursor)
        assert len(recs) <= size
        got += [r.id for r in recs]
        pages += 1
        if cursor is None:
            break
        assert len(recs) == size
    assert got == want and len(want) == 30
    assert pages == -(-len(want) // size)


def test_first_page_reads_about_a_page(led):
    sent = _limits(led)
    recs, cursor = led.page("staging", L.DEPLOY, limit=5)
    assert len(recs) == 5 and cursor == recs[-1].id
    assert sent and sent[0] == 6 and sum(sent) < 45


def test_an_empty_stage_has_no_pages(led):
    assert led.page("dev", L.DEPLOY, limit=5) == ([], None)


def test_history_page_rows_and_cursor(led):
    rows, cursor = dp.history_page(led, "staging", 4)
    assert [r["operation"] for r in rows] == ["deploy"] * 4 and cursor == rows[-1]["id"]
    more, _ = dp.history_page(led, "staging", 4, before=cursor)
    assert more[0]["started"] <= rows[-1]["started"] and more[0]["id"] != rows[-1]["id"]


CONFIG = """\
project: iris
region: us-east-1
images: {model: {context: .}}
functions: {predict: {image: model}}
stages:
  staging: {account: "111111111111", branch: main, gate: {alarms: [iris-staging-]}}
"""


def test_pt_history_pages_with_before(led, run_pt, tmp_path):
    cfg = tmp_path / "pipeline.yml"
    cfg.write_text(CONFIG)
    want = [r.id for r in led.query("staging", L.DEPLOY)]
    first = run_pt("history", "--config", str(cfg), "--stage", "staging", "-n", "20", "--output", "json")
    assert first.exit_code == 0, first.stderr
    page1 = first.json()
    assert [d["id"] for d in page1["deploys"]] == want[:20] and page1["next"] == want[19]
    second = run_pt("history", "--config", str(cfg), "--stage", "staging", "-n", "20", "--before", page1["next"],
                    "--output", "json").json()
    assert [d["id"] for d in second["deploys"]] == want[20:] and second["next"] is None
    human = run_pt("history", "--config", str(cfg), "--stage", "staging", "-n", "5")
    assert f"--before {want[4]}" in human.stdout + human.stderr
    bad = run_pt("history", "--config", str(cfg), "--stage", "prdo")
    assert bad.exit_code == 2 and "unknown stage 'prdo'" in bad.stderr
