"""The notification centre (消息): new tasks, urging and copies (deadline reminders come from
the worker, engine.jobs). Notifications are written through `connectors.notify_users`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from .connectors import notify_users
from .db import utcnow
from .errors import NotFound
from .models import Group, HumanTask, Notification, User, UserGroup

PER_PAGE = 20


def task_link(task_id: int) -> str:
    return f"/tasks/{task_id}"


def task_recipients(session, task: HumanTask) -> list[str]:
    """Who should hear about a task: its assignee, else its candidate users and group members."""
    if task.assignee:
        return [task.assignee]
    names = set(task.candidate_users or [])
    if task.candidate_groups:
        names |= set(
            session.scalars(
                select(User.username)
                .join(UserGroup, UserGroup.user_id == User.id)
                .join(Group, Group.id == UserGroup.group_id)
                .where(Group.name.in_(list(task.candidate_groups)), User.active.is_(True))
            )
        )
    return sorted(names)


def _describe(task: HumanTask) -> str:
    return "，".join(part for part in (task.business_key, task.subject) if part)


def notify_task(
    session, task: HumanTask, title: str, *, kind: str = "task", exclude: str | None = None
) -> int:
    """Notify everyone who should hear about `task` (but `exclude`); the number notified."""
    count = 0
    for username in task_recipients(session, task):
        if username != exclude:
            count += notify_users(
                session,
                username,
                title,
                kind=kind,
                body=_describe(task),
                link=task_link(task.id),
                instance_id=task.instance_id,
            )
    return count


def newest_task_id(session, instance_id: int) -> int:
    """The highest task id of an instance so far (0 if none): new tasks come after it."""
    return session.scalar(select(func.max(HumanTask.id)).where(HumanTask.instance_id == instance_id)) or 0


def notify_new_tasks(session, instance_id: int, after_task_id: int, actor: str) -> int:
    """Announce the instance's open tasks created after `after_task_id` (not to `actor`)."""
    tasks = session.scalars(
        select(HumanTask)
        .where(
            HumanTask.instance_id == instance_id,
            HumanTask.status == "open",
            HumanTask.id > after_task_id,
        )
        .order_by(HumanTask.id)
    )
    return sum(notify_task(session, task, f"新待办：{task.name}", exclude=actor) for task in tasks)


@dataclass
class NotificationPage:
    items: list[Notification]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def list_for(
    session, username: str, *, unread_only: bool = False, page: int = 1, per_page: int = PER_PAGE
) -> NotificationPage:
    """One page of a user's notifications, newest first."""
    query = select(Notification).where(Notification.username == username)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = max(1, page)
    items = list(
        session.scalars(
            query.order_by(Notification.created_at.desc(), Notification.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return NotificationPage(items, total, page, per_page)


def unread_count(session, username: str) -> int:
    return (
        session.scalar(
            select(func.count(Notification.id)).where(
                Notification.username == username, Notification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(session, username: str, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (the given ids, or all); how many changed.

    Reading is the user's own view state, not a change to any matter: it is not audited.
    """
    query = (
        update(Notification)
        .where(Notification.username == username, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    if ids is not None:
        query = query.where(Notification.id.in_(ids))
    return session.execute(query.execution_options(synchronize_session=False)).rowcount or 0


def open_notification(session, username: str, notification_id: int) -> Notification:
    """The user's notification, marked read. Raises NotFound (not theirs or no such one)."""
    item = session.get(Notification, notification_id)
    if item is None or item.username != username:
        raise NotFound("消息不存在")
    if item.read_at is None:
        item.read_at = utcnow()
        session.flush()
    return item
