"""Turning engine rows into the API's shapes (the schemas then serialize them)."""

from __future__ import annotations

from engine import queries
from engine.models import HumanTask, ProcessInstance


def task(row: HumanTask) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "element_id": row.element_id,
        "instance_id": row.instance_id,
        "process_key": row.process_key,
        "business_key": row.business_key,
        "subject": row.subject,
        "assignee": row.assignee,
        "owner": row.owner,
        "candidate_groups": row.candidate_groups or [],
        "candidate_users": row.candidate_users or [],
        "created_at": row.created_at,
        "due_at": row.due_at,
        "sla": queries.task_sla(row),
        "status": row.status,
        "completed_at": row.completed_at,
        "completed_by": row.completed_by,
        "form_key": row.form_key,
    }


def instance(session, row: ProcessInstance, *, with_tasks: bool = True, open_tasks=None) -> dict:
    """An instance with its open tasks (`open_tasks` when the caller has them, else queried)."""
    if with_tasks and open_tasks is None:
        open_tasks = queries.open_tasks_of(session, row.id)
    return {
        "id": row.id,
        "process_key": row.process_key,
        "version": row.version,
        "business_key": row.business_key,
        "subject": row.subject,
        "status": row.status,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "started_by": row.started_by,
        "due_at": row.due_at,
        "overdue": queries.instance_overdue(row),
        "tasks": [task(t) for t in sorted(open_tasks, key=lambda t: t.id)] if with_tasks else [],
    }


def event(row) -> dict:
    return {
        "at": row.at,
        "type": row.type,
        "user": row.user,
        "element_id": row.element_id,
        "task_name": row.task_name,
        "comment": row.comment,
    }


def definition(row) -> dict:
    return {
        "key": row.key,
        "name": row.name,
        "version": row.version,
        "deployed_at": row.deployed_at,
        "deployed_by": row.deployed_by,
        "checksum": row.checksum,
        "start_form": row.start_form,
    }
