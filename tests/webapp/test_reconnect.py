"""PostgreSQL closing the app's pooled connections (a restart, pg_terminate_backend, an idle
timeout): the next requests succeed on fresh connections; a request whose connection dies
under it answers a clean 503, never a 500, and the one after it succeeds.

The pool does not ping before each checkout (a round trip per request): a connection the
server has hung up on is recognised by its socket and replaced (engine/db.py).
"""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import event, text
from sqlalchemy.pool import NullPool

from engine.db import make_engine

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"),
    reason="needs PostgreSQL (DATABASE_URL): SQLite has no server to drop connections",
)

START = {"process_key": "simple_review", "variables": {"title": "断线重连", "amount": 1}}


@pytest.fixture
def admin_engine(database_url):
    engine = make_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def terminate(admin_engine, pids) -> None:
    with admin_engine.connect() as conn:
        for pid in pids:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until the server has let them go
            alive = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"), {"pids": list(pids)}
            ).scalar()
            if not alive:
                return
            time.sleep(0.05)
    raise AssertionError(f"backends {pids} still there")


def pooled_backends(app, how_many: int) -> list[int]:
    """Fill the app's pool with `how_many` connections; their server process ids."""
    engine = app.extensions["chengxin"]["engine"]
    conns = [engine.connect() for _ in range(how_many)]
    pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in conns]
    for conn in conns:
        conn.close()
    return pids


def test_requests_after_the_server_dropped_the_pool_succeed(app, api, deployed, admin_engine):
    token = api.token("registrar")  # warm: identity and pool in use
    assert api.get("/api/v1/me", user="registrar").status_code == 200
    pids = pooled_backends(app, 3)
    assert app.extensions["chengxin"]["engine"].pool.checkedin() == 3

    terminate(admin_engine, pids)

    for _ in range(3):  # each pooled connection is dead: each checkout must notice
        answer = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.json
    started = api.post("/api/v1/process-instances", user="registrar", json=START)
    assert started.status_code == 201, started.json
    task_id = started.json["tasks"][0]["id"]
    terminate(admin_engine, pooled_backends(app, 1))
    done = api.post(
        f"/api/v1/tasks/{task_id}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    assert done.status_code == 200, done.json
    assert done.json["task"]["status"] == "completed"


def test_a_connection_lost_mid_request_answers_503_then_the_next_succeeds(app, api, deployed, admin_engine):
    started = api.post("/api/v1/process-instances", user="registrar", json=START)
    task_id = started.json["tasks"][0]["id"]
    engine = app.extensions["chengxin"]["engine"]
    armed = {"on": True}

    def kill_own_backend(conn, cursor, statement, parameters, context, executemany):
        # After the caller is known, before the engine's first statement: the server goes.
        if armed["on"] and "FROM human_tasks" in statement:
            armed["on"] = False
            terminate(admin_engine, [conn.connection.dbapi_connection.info.backend_pid])

    event.listen(engine, "before_cursor_execute", kill_own_backend)
    try:
        lost = api.post(
            f"/api/v1/tasks/{task_id}/complete", user="registrar", json={"data": {"decision": "approve"}}
        )
    finally:
        event.remove(engine, "before_cursor_execute", kill_own_backend)
    assert armed["on"] is False  # the connection was really killed under the request
    assert lost.status_code == 503, lost.json
    assert lost.json["error"] == "unavailable" and "数据库" in lost.json["message"]

    done = api.post(
        f"/api/v1/tasks/{task_id}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    assert done.status_code == 200, done.json  # nothing was half-done by the lost request
    assert done.json["task"]["status"] == "completed"
