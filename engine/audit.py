"""The append-only, hash-chained audit trail of instances (one function records an event)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Event, ProcessInstance


def _content_hash(prev_hash: str, event: Event) -> str:
    content = {
        "instance_id": event.instance_id,
        "at": event.at.isoformat(timespec="microseconds") if event.at else None,
        "type": event.type,
        "user": event.user,
        "element_id": event.element_id,
        "task_name": event.task_name,
        "task_id": event.task_id,
        "comment": event.comment,
        "details": event.details,
    }
    data = prev_hash + json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    """Serialize writers of the chain of events without an instance (logins, deployments), so two
    concurrent events cannot both follow the same hash: SQLite already serializes writers
    (BEGIN IMMEDIATE); on PostgreSQL a transaction-scoped advisory lock does it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k1, :k2)"), {"k1": 8110, "k2": 0})


def _last_global_hash(session: Session) -> str:
    query = select(Event.hash).where(Event.instance_id.is_(None)).order_by(Event.id.desc()).limit(1)
    return session.scalar(query) or ""


def _chain_to(session: Session, event: Event) -> None:
    """Link the event to the head of its chain and make it the new head.

    An instance keeps its head on its row: the version-checked UPDATE that moves it makes a
    concurrent writer of the same chain fail (409) instead of forking the chain.
    """
    if event.instance_id is None:
        _lock_chain(session)
        event.prev_hash = _last_global_hash(session)
        event.hash = _content_hash(event.prev_hash, event)
        return
    instance = session.get(ProcessInstance, event.instance_id)
    event.prev_hash = instance.last_event_hash
    event.hash = instance.last_event_hash = _content_hash(event.prev_hash, event)


def record_event(
    session: Session,
    type: str,
    *,
    user: str | None,
    instance_id: int | None = None,
    element_id: str | None = None,
    task_name: str | None = None,
    task_id: int | None = None,
    comment: str | None = None,
    details: dict | None = None,
    at: datetime | None = None,
) -> Event:
    """Append one audit event, chained to the previous event of the same instance."""
    event = Event(
        instance_id=instance_id,
        at=(at or utcnow()).astimezone(UTC),
        type=type,
        user=user,
        element_id=element_id,
        task_name=task_name,
        task_id=task_id,
        comment=comment,
        details=details or {},
    )
    _chain_to(session, event)
    session.add(event)
    return event


def record_task_event(
    session: Session, task, type: str, *, user: str | None, comment=None, details=None
) -> Event:
    """Append one audit event about a human task (its instance, element and name)."""
    return record_event(
        session,
        type,
        user=user,
        instance_id=task.instance_id,
        element_id=task.element_id,
        task_name=task.name,
        task_id=task.id,
        comment=comment,
        details=details,
    )


def verify_chain(events: list[Event], head: str | None = None) -> list[dict]:
    """Breaks in a chain of events (oldest first): [{event_id, problem}].

    `head` is the hash the chain must end with (an instance's last_event_hash): it reveals
    events deleted from the end, which the links alone cannot.
    """
    breaks, prev = [], ""
    for event in events:
        if event.prev_hash != prev:
            breaks.append({"event_id": event.id, "problem": "previous hash does not match"})
        if _content_hash(event.prev_hash, event) != event.hash:
            breaks.append({"event_id": event.id, "problem": "content was altered"})
        prev = event.hash
    if head is not None and head != prev:
        breaks.append({"event_id": events[-1].id if events else None, "problem": "latest events are missing"})
    return breaks
