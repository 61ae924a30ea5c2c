"""Crash safety of the web process: a real gunicorn server completes tasks under concurrent load
and is killed with SIGKILL mid-way; afterwards the whole database is consistent
(engine.consistency.check_database, also `chengxin check`) and every completion the server
acknowledged is there. On a SQLite file, and on PostgreSQL when DATABASE_URL points to one.

Every child process is killed in `finally`; every wait has a deadline.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from engine import runtime
from engine.access import Actor
from engine.config import Settings
from engine.consistency import check_database
from engine.db import Base, make_engine, make_session_factory, transaction
from engine.definitions import deploy_paths
from engine.models import HumanTask
from engine.schema import load_models
from engine.users import seed_demo

from ..conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent.parent
INSTANCES = 60
START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}
POSTGRES_URL = os.environ.get("DATABASE_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_settings(request, tmp_path, demo_password_hash):
    """A fresh database with the demo users, the simple bundle and INSTANCES started instances."""
    if request.param == "postgresql":
        if not POSTGRES_URL.startswith("postgresql"):
            pytest.skip("set DATABASE_URL to a PostgreSQL database to run the PostgreSQL case (CI does)")
        url = POSTGRES_URL
    else:
        url = f"sqlite:///{tmp_path}/crash.db"
    settings = Settings(database_url=url, instance_dir=tmp_path / "instance", secret_key="crash-test-secret")
    load_models()
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        seed_demo(session, password_hash=demo_password_hash)
        deploy_paths(session, [FIXTURES / n for n in SIMPLE_BUNDLE], user="analyst")
        ctx = runtime.Context(session, Actor("registrar", frozenset({"office"})), settings)
        for _ in range(INSTANCES):
            runtime.start_instance(ctx, "simple_review", variables=START)
    yield settings, sessions
    engine.dispose()


SIMPLE_BUNDLE = ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn serving webapp.wsgi:app in its own process group, killed with SIGKILL."""

    def __init__(self, settings: Settings, log_path: Path):
        self.port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "CHENGXIN_SECRET_KEY": settings.secret_key,
            "CHENGXIN_INSTANCE": str(settings.instance_dir),
            "CHENGXIN_DATA_KEYS": "",  # the states' key derives from the secret, as in the test
        }
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed in kill)
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "3",
            "--threads",
            "4",
            "-b",
            f"127.0.0.1:{self.port}",
        ]
        self.process = subprocess.Popen(
            [*command, "webapp.wsgi:app"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: SIGKILL reaches the master and its workers
        )
        self._wait_until_up()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("the server exited at start")
            try:
                with urllib.request.urlopen(self.url("/api/v1/health"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the server did not answer within {timeout} s")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()


def call(server: Server, method: str, path: str, body: dict | None = None, token: str | None = None):
    """(status, JSON body) — or (None, error) when the connection broke."""
    request = urllib.request.Request(
        server.url(path),
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except (OSError, http.client.HTTPException, ValueError):
            return exc.code, None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # cut off by the kill
        return None, str(exc)


def token(server: Server, username: str) -> str:
    status, body = call(server, "POST", "/api/v1/auth/token", {"username": username, "password": "demo123"})
    assert status == 200, body
    return body["token"]


def open_tasks(sessions, element_id: str) -> list[int]:
    with sessions() as session:
        query = select(HumanTask.id).where(HumanTask.element_id == element_id, HumanTask.status == "open")
        return list(session.scalars(query.order_by(HumanTask.id)))


def complete_until_killed(server: Server, task_ids: list[int], user: str, data: dict, kill_after: int):
    """Complete tasks from 12 threads; SIGKILL the server once `kill_after` completions are acknowledged."""
    bearer = token(server, user)
    acknowledged: list[int] = []
    answers: list[int | None] = []
    lock = threading.Lock()

    def complete(task_id: int) -> None:
        status, _ = call(server, "POST", f"/api/v1/tasks/{task_id}/complete", {"data": data}, bearer)
        with lock:
            answers.append(status)
            if status == 200:
                acknowledged.append(task_id)
                if len(acknowledged) == kill_after:
                    server.kill()

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(complete, task_ids))
    return acknowledged, answers


def chengxin_check(settings: Settings) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CHENGXIN_SECRET_KEY": settings.secret_key,
        "CHENGXIN_INSTANCE": str(settings.instance_dir),
        "CHENGXIN_DATA_KEYS": "",
    }
    command = [sys.executable, "-m", "webapp.cli", "check"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_consistent(sessions, settings) -> None:
    with sessions() as session:
        problems = check_database(session, settings)
    assert not problems, "\n".join(str(p) for p in problems)


def test_kill_9_mid_completion_leaves_every_instance_before_or_after_its_step(crash_settings, tmp_path):
    settings, sessions = crash_settings
    log = tmp_path / "server.log"
    rounds = [
        ("first_review", "registrar", {"decision": "approve"}),
        ("confirm", "chief", {"confirmed": True}),
    ]
    for element_id, user, data in rounds:
        tasks = open_tasks(sessions, element_id)
        assert len(tasks) >= INSTANCES // 3, element_id
        server = Server(settings, log)
        try:
            acknowledged, answers = complete_until_killed(
                server, tasks, user, data, kill_after=len(tasks) // 3
            )
        finally:
            server.kill()
        assert 500 not in answers, answers
        assert None in answers, "the kill came after every request had finished: nothing was cut off"
        assert_consistent(sessions, settings)
        still_open = set(open_tasks(sessions, element_id))
        assert not still_open & set(acknowledged), "an acknowledged completion was lost"
        assert still_open, "every task was completed before the kill"

    # The survivors finish normally on a restarted server: nothing was left locked or half-written.
    server = Server(settings, log)
    try:
        for element_id, user, data in rounds:
            bearer = token(server, user)
            for task_id in open_tasks(sessions, element_id):
                status, body = call(
                    server, "POST", f"/api/v1/tasks/{task_id}/complete", {"data": data}, bearer
                )
                assert status == 200, body
    finally:
        server.kill()
    assert_consistent(sessions, settings)
    assert open_tasks(sessions, "first_review") == open_tasks(sessions, "confirm") == []
    cli = chengxin_check(settings)
    assert cli.returncode == 0 and "数据一致" in cli.stdout, cli.stdout + cli.stderr


def test_the_check_finds_a_half_written_step(crash_settings):
    """The checker can fail: a task row out of step with its instance's state is reported."""
    settings, sessions = crash_settings
    assert_consistent(sessions, settings)
    first, second, third = open_tasks(sessions, "first_review")[:3]
    with transaction(sessions) as session:
        session.execute(update(HumanTask).where(HumanTask.id == first).values(status="completed"))
        session.execute(update(HumanTask).where(HumanTask.id == second).values(completed_by="registrar"))
        session.delete(session.get(HumanTask, third))
    with sessions() as session:
        found = [str(p) for p in check_database(session, settings)]
    assert any(f"任务 {first}" in p and "办结事件" in p for p in found), found
    assert any(f"任务 {second}" in p and "既是待办又有办结记录" in p for p in found), found
    assert any("没有待办任务" in p for p in found), found
    cli = chengxin_check(settings)
    assert cli.returncode == 1 and "处不一致" in cli.stdout, cli.stdout + cli.stderr
