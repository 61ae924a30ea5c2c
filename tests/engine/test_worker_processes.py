"""Real `chengxin worker` processes against one PostgreSQL database: exactly once, and kill -9 safe.

The workers post to a counting HTTP server on 127.0.0.1 that stands in for the district platform.
Every child process is killed in `finally`, and every wait has a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from engine import jobs, runtime
from engine.access import SYSTEM
from engine.db import transaction
from engine.definitions import deploy_paths
from engine.models import Event, HumanTask, OutboxMessage, ProcessInstance, Timer
from tests.jobs_peers import PlatformServer

FIXTURES = Path(__file__).parent.parent / "fixtures"
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
needs_postgres = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="several worker processes share work through PostgreSQL's FOR UPDATE SKIP LOCKED; "
    "set DATABASE_URL to a PostgreSQL database (CI does)",
)
INSTANCES = 100
MESSAGES = 100
ROOT = Path(__file__).resolve().parent.parent.parent


def chengxin_command() -> list[str]:
    script = Path(sys.executable).with_name("chengxin")
    return [str(script)] if script.exists() else [sys.executable, "-m", "webapp.cli"]


class Worker:
    """One `chengxin worker` child process with its log in a file."""

    def __init__(self, settings, platform_url: str, log_path: Path, lease: float = 120):
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "CHENGXIN_INSTANCE": str(settings.instance_dir),
            "CHENGXIN_PLATFORM_URL": platform_url,
            "CHENGXIN_WORKER_POLL": "0.2",
            "CHENGXIN_OUTBOX_LEASE": str(lease),
            "CHENGXIN_SECRET_KEY": settings.secret_key,  # the instance states' data key derives from it
        }
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop/kill)
        self.process = subprocess.Popen(
            [*chengxin_command(), "worker"], env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def ids(self, pattern: str) -> list[int]:
        return [int(m) for m in re.findall(pattern, self.log())]

    def terminate(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def due_work(session_factory, settings, seeded):
    """A function that creates instances whose 1-hour timer is already due, and outbox messages."""
    with transaction(session_factory) as session:
        deploy_paths(
            session, [FIXTURES / "waiting_flow.bpmn", FIXTURES / "simple_confirm.form"], user="analyst"
        )

    def create(instances: int = INSTANCES, messages: int = MESSAGES) -> tuple[list[int], list[int]]:
        # Started two hours ago (in this process only): their timers fell due an hour ago.
        with (
            time_machine.travel(datetime.now(UTC) - timedelta(hours=2)),
            transaction(session_factory) as session,
        ):
            ctx = runtime.Context(session, SYSTEM, settings)
            instance_ids = [runtime.start_instance(ctx, "waiting_flow").id for _ in range(instances)]
            outbox = [OutboxMessage(kind="platform_sync", payload={"id": n}) for n in range(messages)]
            session.add_all(outbox)
            session.flush()
            return instance_ids, [m.id for m in outbox]

    return create


def count(session_factory, query) -> int:
    with transaction(session_factory) as session:
        return session.scalar(query)


def fired_events(session_factory) -> int:
    return count(session_factory, select(func.count()).select_from(Event).where(Event.type == "timers_fired"))


def delivered(session_factory) -> int:
    return count(
        session_factory,
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "delivered"),
    )


def instance_phase(session, settings, instance_id) -> str:
    """'before' or 'after' the timer step; fails if projections and state disagree (half a step)."""
    instance = session.get(ProcessInstance, instance_id)
    tasks = session.scalars(
        select(HumanTask.element_id).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
    ).all()
    timers = session.scalars(select(Timer.element_id).where(Timer.instance_id == instance_id)).all()
    fired = session.scalar(
        select(func.count())
        .select_from(Event)
        .where(Event.instance_id == instance_id, Event.type == "timers_fired")
    )
    active = runtime.instance_diagram(runtime.Context(session, SYSTEM, settings), instance)["active"]
    observed = (instance.status, sorted(tasks), sorted(timers), fired, active)
    if observed == ("waiting", [], ["wait_hour"], 0, ["wait_hour"]):
        return "before"
    if observed == ("running", ["handle"], [], 1, ["handle"]):
        return "after"
    raise AssertionError(f"instance {instance_id} is half-stepped: {observed}")


def phases(session_factory, settings, instance_ids) -> Counter:
    with transaction(session_factory) as session:
        return Counter(instance_phase(session, settings, i) for i in instance_ids)


@needs_postgres
def test_two_workers_fire_each_timer_and_deliver_each_message_exactly_once(
    session_factory, settings, due_work, tmp_path
):
    workers = []
    with PlatformServer(delay=0.02) as server:
        try:
            started = time.monotonic()
            workers = [Worker(settings, server.url, tmp_path / f"worker{n}.log") for n in (1, 2)]
            # Both idle-poll first, then all the work appears at once for them to compete over.
            wait_until(lambda: all("worker started" in w.log() for w in workers), 30, "both workers to start")
            instance_ids, message_ids = due_work()
            wait_until(
                lambda: fired_events(session_factory) >= INSTANCES and delivered(session_factory) >= MESSAGES,
                60,
                "every timer and message",
            )
            time.sleep(1)  # a few more polls: a second firing or delivery would show now
            assert [w.terminate() for w in workers] == [0, 0]  # SIGTERM: a clean stop
            elapsed = time.monotonic() - started
        finally:
            for worker in workers:
                worker.kill()

    assert phases(session_factory, settings, instance_ids) == {"after": INSTANCES}
    assert fired_events(session_factory) == INSTANCES
    assert server.keys() == {f"chengxin-outbox-{i}": 1 for i in message_ids}
    assert delivered(session_factory) == MESSAGES
    # Each worker's own account: the two shares are disjoint and together cover everything.
    fired_by = [w.ids(r"instance (\d+): due timers fired") for w in workers]
    sent_by = [w.ids(r"outbox (\d+) \(platform_sync\): delivered") for w in workers]
    assert sorted(fired_by[0] + fired_by[1]) == sorted(instance_ids)
    assert sorted(sent_by[0] + sent_by[1]) == sorted(message_ids)
    assert all(fired_by) and all(sent_by), "both workers should have taken part"
    assert all("worker stopped" in w.log() for w in workers)
    print(
        f"\ntwo workers: {elapsed:.1f} s for {INSTANCES} timers and {MESSAGES} messages; "
        f"timers {len(fired_by[0])}/{len(fired_by[1])}, messages {len(sent_by[0])}/{len(sent_by[1])}"
    )


@needs_postgres
def test_a_worker_killed_mid_job_loses_nothing_and_leaves_no_half_step(
    session_factory, settings, due_work, tmp_path
):
    instances, messages = 60, 30
    instance_ids, message_ids = due_work(instances, messages)
    workers = []
    with PlatformServer(delay=0.2) as server:  # slow enough to be killed while posting
        try:
            # 1. Killed in the middle of a burst of timers.
            first = Worker(settings, server.url, tmp_path / "first.log", lease=2)
            workers.append(first)
            wait_until(lambda: fired_events(session_factory) >= 5, 60, "the first timers")
            first.process.send_signal(signal.SIGKILL)
            first.kill()
            after_first = phases(session_factory, settings, instance_ids)  # raises on a half step
            assert after_first["before"] > 0, "the kill came too late to test anything"

            # 2. Killed while posting to the platform.
            second = Worker(settings, server.url, tmp_path / "second.log", lease=2)
            workers.append(second)
            wait_until(lambda: len(server.requests) >= 5, 60, "the first deliveries")
            time.sleep(0.1)  # now inside a request that has reached the server
            second.process.send_signal(signal.SIGKILL)
            second.kill()
            phases(session_factory, settings, instance_ids)
            assert delivered(session_factory) < messages

            # 3. A fresh worker finishes everything, including the killed worker's claim.
            third = Worker(settings, server.url, tmp_path / "third.log", lease=2)
            workers.append(third)
            wait_until(
                lambda: fired_events(session_factory) >= instances and delivered(session_factory) >= messages,
                90,
                "the fresh worker to catch up",
            )
            assert third.terminate() == 0
        finally:
            for worker in workers:
                worker.kill()

    assert phases(session_factory, settings, instance_ids) == {"after": instances}
    keys = server.keys()
    assert set(keys) == {f"chengxin-outbox-{i}" for i in message_ids}  # every message arrived
    assert sum(keys.values()) >= messages  # maybe some twice, always under the same key
    print(f"\nkill -9: {sum(keys.values()) - messages} message(s) delivered twice, under the same key")
    with transaction(session_factory) as session:
        status = jobs.worker_status(session, settings)
    assert (status["due_timers"], status["outbox_backlog"], status["outbox_dead"]) == (0, 0, 0)


def test_doctor_reports_a_healthy_database_and_exits_0(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "CHENGXIN_INSTANCE": str(tmp_path / "instance"),
    }
    missing = subprocess.run(
        [*chengxin_command(), "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "chengxin init-db" in missing.stdout

    subprocess.run([*chengxin_command(), "init-db"], env=env, capture_output=True, timeout=120, check=True)
    healthy = subprocess.run(
        [*chengxin_command(), "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "数据库：可连接" in healthy.stdout
    assert "2025 内置数据" in healthy.stdout or "2026 内置数据" in healthy.stdout
    assert "结论：正常" in healthy.stdout


def test_doctor_exits_1_when_the_database_is_unreachable(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql+psycopg://nobody:secret@127.0.0.1:1/none",
        "CHENGXIN_INSTANCE": str(tmp_path / "instance"),
    }
    result = subprocess.run(
        [*chengxin_command(), "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "数据库：不可用" in result.stdout and "secret" not in result.stdout
