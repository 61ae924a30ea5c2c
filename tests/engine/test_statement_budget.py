"""The SQL a step costs: a fixed handful of statements, however many tasks are open."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event, select

from engine import runtime
from engine.db import transaction
from engine.definitions import deploy_paths
from engine.models import HumanTask, User
from engine.users import actor_for

BENCH_FIXTURES = Path(__file__).parent.parent.parent / "bench" / "fixtures"
REVIEW = {"decision": "agree", "opinion": "同意"}


@pytest.fixture
def processes(session_factory, seeded):
    names = ["seq10.bpmn", "multi.bpmn", "bench_review.form"]
    with transaction(session_factory) as session:
        deploy_paths(session, [BENCH_FIXTURES / n for n in names], user="analyst")


@contextmanager
def statements(db_engine):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    event.listen(db_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db_engine, "before_cursor_execute", record)


def _ctx(session, settings):
    user = session.scalar(select(User).where(User.username == "registrar"))
    return runtime.Context(session, actor_for(user), settings)


def _start(session_factory, settings, key, **variables) -> int:
    with transaction(session_factory) as session:
        return runtime.start_instance(_ctx(session, settings), key, variables=variables).id


def _complete_one(session_factory, settings, db_engine, instance_id) -> list[str]:
    with transaction(session_factory) as session:
        ctx = _ctx(session, settings)
        task_id = session.scalar(
            select(HumanTask.id)
            .where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            .order_by(HumanTask.id)
            .limit(1)
        )
        with statements(db_engine) as seen:
            runtime.complete_task(ctx, task_id, dict(REVIEW))
            session.flush()
    return seen


def test_a_complete_task_costs_eight_statements(session_factory, settings, db_engine, processes):
    instance_id = _start(session_factory, settings, "bench_seq10")
    seen = _complete_one(session_factory, settings, db_engine, instance_id)
    # task+instance, close task, its candidates, audit event, state, open tasks, next task, its candidates
    assert len(seen) <= 8, "\n".join(seen)
    assert not any("pg_advisory" in s or "FROM events" in s for s in seen)


def test_open_sibling_tasks_are_neither_rewritten_nor_counted_against_a_step(
    session_factory, settings, db_engine, processes
):
    counts = {}
    for items in (3, 40):
        instance_id = _start(
            session_factory, settings, "bench_multi", items=[f"企业{n}" for n in range(items)]
        )
        seen = _complete_one(session_factory, settings, db_engine, instance_id)
        assert sum(s.startswith("UPDATE human_tasks") for s in seen) == 1, "\n".join(seen)
        counts[items] = len(seen)
    assert counts[3] == counts[40]
