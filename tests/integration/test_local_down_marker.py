"""`pt local down` signals only processes that carry pt's marker: the recorded pid, start time
and command line must all match the live process. One row per state.json shape; the victim is a
real process (a sleeping Python) that the test starts itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipeline_tools.local import stack as local

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def victim():
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    deadline = time.monotonic() + 10
    while (local.process_identity(proc.pid) or {}).get("argv") != SLEEPER:  # exec'd
        assert time.monotonic() < deadline, "victim did not start"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _alive(proc) -> bool:
    return proc.poll() is None


def _good(proc) -> dict:
    return {"endpoint": "http://127.0.0.1:1", "started_by_pt": True, **local.marker(proc.pid, SLEEPER)}


# (id, how the moto entry is built from the live victim, exit code, victim survives?, message)
ROWS = [
    ("marker-matches", lambda p: _good(p), 0, False, "stopped moto http://127.0.0.1:1 (pid {pid})"),
    ("empty-match-field", lambda p: {"endpoint": "http://127.0.0.1:1", "pid": p.pid, "started_by_pt": True,
                                     "match": ""}, 1, True,
     "refused moto http://127.0.0.1:1: state.json has no start time and command line for pid {pid}"),
    ("identity-missing", lambda p: {"endpoint": "http://127.0.0.1:1", "pid": p.pid, "started_by_pt": True}, 1, True,
     "state.json has no start time and command line for pid {pid}"),
    ("empty-argv", lambda p: {**_good(p), "argv": []}, 1, True,
     "state.json has no start time and command line for pid {pid}"),
    ("empty-strings-in-argv", lambda p: {**_good(p), "argv": [""]}, 1, True,
     "state.json has no start time and command line for pid {pid}"),
    ("start-time-differs", lambda p: {**_good(p), "start_time": _good(p)["start_time"] - 1}, 1, True,
     "pid {pid} now belongs to another process"),
    ("start-time-as-string", lambda p: {**_good(p), "start_time": str(_good(p)["start_time"])}, 1, True,
     "state.json has no start time and command line for pid {pid}"),
    ("command-line-differs", lambda p: {**_good(p), "argv": [sys.executable, "-m", "moto.server"]}, 1, True,
     "refusing to signal it"),
    ("pid-is-a-string", lambda p: {**_good(p), "pid": str(p.pid)}, 1, True, "state.json has no valid pid"),
    ("pid-1", lambda p: {**_good(p), "pid": 1}, 1, True, "state.json has no valid pid (1)"),
    ("not-started-by-pt", lambda p: {**_good(p), "started_by_pt": False}, 0, True,
     "left moto http://127.0.0.1:1: not started by pt local up, left running"),
    ("started-by-pt-as-string", lambda p: {**_good(p), "started_by_pt": "yes"}, 0, True,
     "not started by pt local up, left running"),
]


@pytest.mark.parametrize("entry, code, survives, needle", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_down_signals_only_marked_processes(tmp_path, run_pt, victim, entry, code, survives, needle):
    local.save_state(tmp_path, {"moto": entry(victim)})
    r = run_pt("local", "down", "--dir", tmp_path)
    assert r.exit_code == code, r
    assert needle.format(pid=victim.pid) in r.stdout + r.stderr, r
    if survives:
        assert _alive(victim), "pt signalled a process it could not prove it started"
    else:
        victim.wait(timeout=15)
    # the state is kept when something was refused, so nothing is forgotten
    assert (tmp_path / "state.json").exists() == (code == 1)


def test_dry_run_plans_with_the_same_rule(tmp_path, run_pt, victim):
    local.save_state(tmp_path, {"moto": _good(victim),
                                "registry": {"host": "127.0.0.1:2", "pid": victim.pid, "started_by_pt": True}})
    r = run_pt("local", "down", "--dir", tmp_path, "--dry-run", "--output", "json")
    assert r.exit_code == 1, r
    data = r.json()
    assert data["stopped"] == [f"moto http://127.0.0.1:1 (pid {victim.pid})"] and data["dry_run"] is True
    assert data["refused"][0].startswith("registry 127.0.0.1:2: state.json has no start time")
    assert _alive(victim)


def test_pid_that_no_longer_runs_is_already_stopped(tmp_path, run_pt, victim):
    entry = _good(victim)
    victim.kill()
    victim.wait(timeout=10)
    local.save_state(tmp_path, {"moto": entry})
    r = run_pt("local", "down", "--dir", tmp_path)
    assert r.exit_code == 0, r
    assert f"pid {victim.pid} no longer runs it (already stopped)" in r.stdout
    assert not (tmp_path / "state.json").exists()


@pytest.mark.parametrize("content, needle", [
    ("{not json", "is corrupt: not JSON (Expecting property name"),
    ("[1, 2]", "is corrupt: expected a JSON object, got an array"),
    ("", "is corrupt: not JSON (Expecting value at line 1)"),
    (b"\xff\xfe{", "is corrupt: not UTF-8 text"),
], ids=["not-json", "a-list", "empty", "not-utf8"])
def test_corrupt_state_is_one_line_and_signals_nothing(tmp_path, run_pt, victim, content, needle):
    p = tmp_path / "state.json"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    for cmd in (["local", "down"], ["local", "status"]):
        r = run_pt(*cmd, "--dir", tmp_path)
        assert r.exit_code == 1, r
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and needle in errors[0] and str(p) in errors[0], r
        assert "Traceback" not in r.stderr
    assert p.exists() and _alive(victim)
    p.unlink()  # missing is not corrupt: nothing to stop
    r = run_pt("local", "down", "--dir", tmp_path)
    assert r.exit_code == 0 and "nothing to stop" in r.stdout, r


def test_marker_of_a_spawned_process_matches_until_it_exits(tmp_path):
    argv = SLEEPER
    pid = local._spawn(argv, tmp_path / "x.log")
    try:
        deadline = time.monotonic() + 10
        while (local.process_identity(pid) or {}).get("argv") != argv:
            assert time.monotonic() < deadline
        m = local.marker(pid, argv)
        assert local.check_ours({"started_by_pt": True, **m}) == ("ours", "ours")
    finally:
        local._terminate(pid, proc={"started_by_pt": True, **m})
    assert local.check_ours({"started_by_pt": True, **m})[0] == "gone"
    assert os.path.exists(tmp_path / "x.log")


def test_a_real_moto_started_by_pt_is_stopped_by_down(tmp_path, run_pt):
    moto = local.start_moto(tmp_path, {}, local.free_port())
    try:
        assert moto["started_by_pt"] and moto["argv"][1:3] == ["-m", local.MOTO_MODULE]
        assert isinstance(moto["start_time"], int)
        local.save_state(tmp_path, {"moto": moto})
        r = run_pt("local", "down", "--dir", tmp_path)
        assert r.exit_code == 0, r
        assert f"stopped moto {moto['endpoint']} (pid {moto['pid']})" in r.stdout
        assert local.check_ours(moto)[0] == "gone" and not local.moto_answers(moto["endpoint"])
    finally:
        if local.check_ours(moto)[0] == "ours":
            local._terminate(moto["pid"], proc=moto)
