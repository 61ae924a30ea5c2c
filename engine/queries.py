"""Read side: the inbox and instance lists, filtered in SQL on indexed projection columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from .access import Actor
from .errors import NotAllowed
from .models import Event, HumanTask, ProcessInstance, TaskCandidate


def now_utc() -> datetime:
    return datetime.now(UTC)


def task_sla(task: HumanTask, now: datetime | None = None) -> str:
    """normal | warning | overdue, from the stored due and warning instants."""
    now = now or now_utc()
    if task.due_at is None or task.status != "open":
        return "normal"
    if task.due_at <= now:
        return "overdue"
    if task.warn_at is not None and task.warn_at <= now:
        return "warning"
    return "normal"


def instance_overdue(instance: ProcessInstance, now: datetime | None = None) -> bool:
    return (
        instance.due_at is not None
        and instance.status not in ("completed", "terminated")
        and instance.due_at <= (now or now_utc())
    )


def _claimable_filter(actor: Actor):
    offered = exists().where(
        TaskCandidate.task_id == HumanTask.id,
        or_(
            and_(TaskCandidate.kind == "group", TaskCandidate.name.in_(sorted(actor.groups) or [""])),
            and_(TaskCandidate.kind == "user", TaskCandidate.name == actor.username),
        ),
    )
    return and_(HumanTask.status == "open", HumanTask.assignee.is_(None), offered)


def _sla_filter(sla: str, now: datetime):
    if sla == "overdue":
        return and_(HumanTask.status == "open", HumanTask.due_at <= now)
    if sla == "warning":
        return and_(HumanTask.status == "open", HumanTask.warn_at <= now, HumanTask.due_at > now)
    return and_(
        HumanTask.status == "open",
        or_(HumanTask.due_at.is_(None), HumanTask.due_at > now),
        or_(HumanTask.warn_at.is_(None), HumanTask.warn_at > now),
    )


@dataclass
class PageResult:
    items: list
    total: int
    page: int
    per_page: int


def _page(session: Session, query: Select, page: int, per_page: int, order) -> PageResult:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    items = list(session.scalars(query.order_by(*order).offset((page - 1) * per_page).limit(per_page)))
    return PageResult(items, total or 0, page, per_page)


def list_tasks(
    session: Session,
    actor: Actor,
    *,
    scope: str = "mine",
    process_key: str | None = None,
    instance_id: int | None = None,
    sla: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> PageResult:
    """Tasks by scope: mine (assigned), claimable (offered to my groups), all (managers).

    Raises NotAllowed for scope=all without the manager role.
    """
    query = select(HumanTask)
    if scope == "mine":
        query = query.where(HumanTask.assignee == actor.username, HumanTask.status == "open")
    elif scope == "claimable":
        query = query.where(_claimable_filter(actor))
    elif scope == "all":
        if not actor.is_manager:
            raise NotAllowed("只有管理人员可以查看全部任务")
        query = query.where(HumanTask.status == "open")
    if process_key:
        query = query.where(HumanTask.process_key == process_key)
    if instance_id:
        query = query.where(HumanTask.instance_id == instance_id)
    if sla:
        query = query.where(_sla_filter(sla, now_utc()))
    order = [HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id]
    return _page(session, query, page, per_page, order)


def list_instances(
    session: Session,
    actor: Actor,
    *,
    process_key: str | None = None,
    status: str | None = None,
    business_key: str | None = None,
    overdue: bool | None = None,
    page: int = 1,
    per_page: int = 50,
) -> PageResult:
    """Instances visible to the actor (managers: all; others: started or worked on by them)."""
    query = select(ProcessInstance)
    if not actor.is_manager:
        involved = exists().where(
            HumanTask.instance_id == ProcessInstance.id,
            or_(
                HumanTask.assignee == actor.username,
                HumanTask.completed_by == actor.username,
                HumanTask.owner == actor.username,
            ),
        )
        query = query.where(or_(ProcessInstance.started_by == actor.username, involved))
    if process_key:
        query = query.where(ProcessInstance.process_key == process_key)
    if status:
        query = query.where(ProcessInstance.status == status)
    if business_key:
        query = query.where(ProcessInstance.business_key == business_key)
    if overdue is not None:
        late = and_(
            ProcessInstance.status.in_(("running", "waiting", "suspended", "error")),
            ProcessInstance.due_at <= now_utc(),
        )
        query = query.where(late if overdue else ~late)
    return _page(
        session, query, page, per_page, [ProcessInstance.started_at.desc(), ProcessInstance.id.desc()]
    )


def open_tasks_of(session: Session, instance_id: int) -> list[HumanTask]:
    return list(
        session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            .order_by(HumanTask.id)
        )
    )


def history_of(session: Session, instance_id: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.id)))
