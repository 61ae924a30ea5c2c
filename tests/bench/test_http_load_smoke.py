"""The HTTP benchmarks run end to end in a tiny configuration, so the scripts never rot."""

from __future__ import annotations

import pytest

from bench import http_load, memory, scaleout
from engine.db import make_engine, make_session_factory


@pytest.fixture
def url(database_url, tmp_path):
    """The test database (the benchmark drops and recreates its schema itself)."""
    return database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'b.db'}"


def test_load_through_gunicorn_is_consistent_and_counts_races(url, tmp_path):
    settings = http_load.prepare(url, tmp_path, 4)
    with http_load.gunicorn(settings, workers=2) as (port, process):
        tokens = [http_load.login(port, name) for name in http_load.load_usernames(4)]
        figures, tally = http_load.measured_level(port, tokens, 6.0, 6, process.pid, url)
    assert figures["errors"] == []
    assert figures["start_instance"]["n"] >= 4
    assert figures["complete_task"]["p95_ms"] > 0
    assert figures["server_cpu_ms_per_completed_task"] > 0
    # every fifth matter races another user's task: the loser's 409 is counted, not an error
    assert set(figures["statuses"]) <= {
        "start_instance:201",
        "complete_task:200",
        "complete_task:409",
    }
    check = http_load.check_consistency(url, [tally])
    assert check["ok"], check["problems"]
    assert check["tasks_completed"] == len(tally.completed) > 0


def test_consistency_check_notices_a_completion_nobody_answered(url, tmp_path):
    settings = http_load.prepare(url, tmp_path, 1)
    with http_load.gunicorn(settings, workers=1) as (port, _):
        with pytest.raises(http_load.BenchError):
            http_load.login(port, "nobody")
        token = http_load.login(port, "load01")
        _, tally = http_load.run_level(port, [token], 30.0, 1)
    forgotten = http_load.Tally()
    forgotten.completed = tally.completed[1:]  # as if one 200 had never been seen
    forgotten.started = tally.started
    check = http_load.check_consistency(url, [forgotten])
    assert not check["ok"]
    assert "not answered 200" in check["problems"][0]


def test_timer_instances_fire_once_each_under_the_job_worker(url, tmp_path):
    from engine.jobs import _Round, run_jobs

    settings = http_load.prepare(url, tmp_path, 1, [scaleout.TIMER_FLOW])
    sessions = make_session_factory(make_engine(url))
    ids = scaleout.start_timer_instances(sessions, settings, 3)
    assert not scaleout.check_timers(sessions, ids)["ok"]  # not due yet: nothing fired
    import time

    time.sleep(1.2)
    run_jobs(sessions, settings, state=_Round())
    result = scaleout.check_timers(sessions, ids)
    assert result["ok"], result["problems"]
    assert result["fired_once"] == 3


def test_rss_is_read_from_proc():
    import os

    assert memory.rss_kib(os.getpid()) > 10_000
    assert memory.growth(100, 111) == 11.0
