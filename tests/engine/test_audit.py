"""The audit chain of an instance: appended without a query, never forked by concurrent writers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from engine import audit, runtime
from engine.access import SYSTEM
from engine.db import transaction
from engine.definitions import deploy_paths
from engine.models import Event, ProcessInstance

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def instance_id(session_factory, settings, seeded):
    names = ["simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form"]
    with transaction(session_factory) as session:
        deploy_paths(session, [FIXTURES / n for n in names], user="analyst")
        ctx = runtime.Context(session, SYSTEM, settings)
        return runtime.start_instance(ctx, "simple_review", variables={"title": "审计链"}).id


def _chain(session_factory, instance_id):
    with session_factory() as session:
        events = list(
            session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.id))
        )
        return events, session.get(ProcessInstance, instance_id).last_event_hash


def test_each_event_follows_the_last_and_becomes_the_instance_head(session_factory, instance_id):
    with transaction(session_factory) as session:
        audit.record_event(session, "note", user="chief", instance_id=instance_id, comment="一")
        audit.record_event(session, "note", user="chief", instance_id=instance_id, comment="二")
    events, head = _chain(session_factory, instance_id)
    assert [e.comment for e in events[-2:]] == ["一", "二"]
    assert head == events[-1].hash and events[-1].prev_hash == events[-2].hash
    assert audit.verify_chain(events, head) == []


def test_a_concurrent_writer_of_the_same_chain_loses_instead_of_forking_it(
    session_factory, instance_id, database_url
):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serializes writers before they read (BEGIN IMMEDIATE): no race to lose")
    late = session_factory()
    try:
        # Read the head before the other writer commits (held: the identity map is weak).
        seen = late.get(ProcessInstance, instance_id)
        with transaction(session_factory) as session:
            audit.record_event(session, "note", user="chief", instance_id=instance_id, comment="先")
        audit.record_event(late, "note", user="legal", instance_id=instance_id, comment="后")
        with pytest.raises(StaleDataError):
            late.commit()
        del seen
    finally:
        late.rollback()
        late.close()
    events, head = _chain(session_factory, instance_id)
    assert events[-1].comment == "先"
    assert audit.verify_chain(events, head) == []
