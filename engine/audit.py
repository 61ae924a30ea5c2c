"""The append-only, hash-chained audit trail of instances (one function records an event)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .db import utcnow
from .models import Event


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


def _lock_chain(session: Session, instance_id: int | None) -> None:
    """Serialize writers of one chain so two concurrent events cannot both follow the same hash.

    SQLite already serializes writers (BEGIN IMMEDIATE); on PostgreSQL a transaction-scoped
    advisory lock per chain does it (instance actions are also serialized by the version lock,
    but urging, logins and deployments are not).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k1, :k2)"), {"k1": 8110, "k2": instance_id or 0})


def _last_hash(session: Session, instance_id: int | None) -> str:
    query = select(Event.hash).where(Event.instance_id == instance_id).order_by(Event.id.desc()).limit(1)
    if instance_id is None:
        query = select(Event.hash).where(Event.instance_id.is_(None)).order_by(Event.id.desc()).limit(1)
    return session.scalar(query) or ""


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
    _lock_chain(session, instance_id)
    event.prev_hash = _last_hash(session, instance_id)
    event.hash = _content_hash(event.prev_hash, event)
    session.add(event)
    session.flush()
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


def verify_chain(events: list[Event]) -> list[dict]:
    """Breaks in a chain of events (oldest first): [{event_id, problem}]."""
    breaks, prev = [], ""
    for event in events:
        if event.prev_hash != prev:
            breaks.append({"event_id": event.id, "problem": "previous hash does not match"})
        if _content_hash(event.prev_hash, event) != event.hash:
            breaks.append({"event_id": event.id, "problem": "content was altered"})
        prev = event.hash
    return breaks
