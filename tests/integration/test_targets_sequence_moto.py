"""Both new targets driven the way the engine drives a stage (plan → prepare → smoke → shift →
finish, or restore in reverse order), through the records the ledger keeps (JSON round trips)."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.core.errors import DeployFailed
from pipeline_tools.release.target import Candidate, Placement
from pipeline_tools.targets import target_class

from .conftest_targets import (
    Env,
    create_batch_queue,
    create_state_machine,
    digest,
    load_config,
    release,
    simple_batch,  # noqa: F401 - fixture
)


def roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


def build(tmp_path, env, **kw):
    cfg = load_config(tmp_path, **kw)
    return [target_class(k)(cfg, "staging", n, env.env) for k, n in (("stepfunctions", "flow"), ("batch", "score"))]


def release_stage(targets, rel) -> list[tuple]:
    """prepare + smoke every target, then shift each to 100 %; on a failure restore the ones
    already changed, newest first. Returns (placement, candidate) per target."""
    plan = [(t, roundtrip(t.current())) for t in targets]
    done: list[tuple] = []
    try:
        cands = []
        for t, p in plan:
            c = roundtrip(t.prepare(rel, p))
            t.smoke(c)
            cands.append((t, p, c))
        for t, p, c in cands:
            t.shift(p, c, 100)
            done.append((t, p, c))
    except DeployFailed:
        for t, p, _c in reversed(done):
            t.restore(roundtrip(p))
        raise
    for t, p, c in done:
        t.finish(p, c)
    return [(p, c) for _t, p, c in done]


def test_stage_with_both_targets_deploys_and_a_failure_restores_both(aws, tmp_path, simple_batch,  # noqa: F811
                                                                     monkeypatch):
    create_state_machine(aws)
    create_batch_queue(aws)
    env = Env(aws)
    targets = build(tmp_path, env)
    release_stage(targets, release(1))
    before = [t.current() for t in targets]
    assert [p.version for p in before] == ["1", "1"] and before[1].digest == digest(1)

    # second release: the state machine changes, then the Batch smoke job fails → nothing moved
    targets = build(tmp_path, env, label="v2")
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    with pytest.raises(DeployFailed, match="smoke job"):
        release_stage(targets, release(2))
    assert [(t.current().version, t.current().digest) for t in targets] == [(p.version, p.digest) for p in before]

    # third: smoke passes, the Batch shift fails after the state machine moved → restored in reverse
    monkeypatch.delenv("MOTO_SIMPLE_BATCH_FAIL_AFTER")
    sfn, job = targets

    def broken_shift(placement: Placement, candidate: Candidate, percent: int) -> None:
        raise DeployFailed("scheduler unavailable")

    job.shift = broken_shift  # type: ignore[method-assign]
    with pytest.raises(DeployFailed, match="scheduler unavailable"):
        release_stage(targets, release(3))
    assert sfn.current().version == "1" and sfn.current().weights == {}
    assert job.current().version == "1" and job.current().digest == digest(1)
