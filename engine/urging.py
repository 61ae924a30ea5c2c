"""催办 (urge the holder of a task) and 抄送 (copy a task, read-only, to colleagues)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, notifications, worklist
from .connectors import notify_users
from .db import Base, utcnow
from .errors import Conflict, ValidationFailed
from .models import HumanTask, User
from .runtime import Context

# One urging per task in this interval is enough; more is noise in the holder's messages.
URGE_INTERVAL = timedelta(minutes=10)
MAX_COPIES = 20


class TaskUrging(Base):
    """The urging log: who urged which task, when, with what words."""

    __tablename__ = "task_urgings"
    __table_args__ = (Index("ix_task_urging_task_at", "task_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instances.id", ondelete="CASCADE"), index=True
    )
    urged_by: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


def urgings_of(session, task_id: int) -> list[TaskUrging]:
    return list(
        session.scalars(select(TaskUrging).where(TaskUrging.task_id == task_id).order_by(TaskUrging.at))
    )


def urge_task(ctx: Context, task_id: int, message: str = "") -> TaskUrging:
    """催办: notify whoever holds or is offered the task, and log it.

    Raises NotFound, NotAllowed, TaskConflict/Conflict (task closed, or urged moments ago).
    """
    found = worklist.require_action(ctx, task_id, "urge")
    task = found.task
    message = (message or "").strip()[:500]
    since = utcnow() - URGE_INTERVAL
    recent = ctx.session.scalar(
        select(TaskUrging.id).where(TaskUrging.task_id == task.id, TaskUrging.at > since).limit(1)
    )
    if recent:
        raise Conflict("该任务刚刚已催办过，请稍后再催")
    urging = TaskUrging(
        task_id=task.id, instance_id=task.instance_id, urged_by=ctx.actor.username, message=message
    )
    ctx.session.add(urging)
    who = ctx.actor.display_name or ctx.actor.username
    title = f"催办：{task.name}（{who}）" + (f"：{message}" if message else "")
    notifications.notify_task(ctx.session, task, title, kind="urge", exclude=ctx.actor.username)
    _event(ctx, task, "urged", message or None, {})
    return urging


def _active_users(session, usernames: list[str]) -> set[str]:
    return set(
        session.scalars(select(User.username).where(User.username.in_(usernames), User.active.is_(True)))
    )


def copy_task(ctx: Context, task_id: int, usernames: list[str], note: str = "") -> list[worklist.TaskCopy]:
    """抄送: give colleagues a read-only copy of the task; the new copies (existing ones are kept).

    Raises NotFound, NotAllowed, ValidationFailed (nobody chosen, unknown user, copy to oneself).
    """
    found = worklist.require_action(ctx, task_id, "cc")
    task = found.task
    wanted = list(dict.fromkeys(u.strip() for u in usernames if u and u.strip()))
    if not wanted:
        raise ValidationFailed({"usernames": ["请选择抄送对象"]})
    if len(wanted) > MAX_COPIES:
        raise ValidationFailed({"usernames": [f"一次最多抄送 {MAX_COPIES} 人"]})
    if ctx.actor.username in wanted:
        raise ValidationFailed({"usernames": ["不能抄送给自己"]})
    unknown = [u for u in wanted if u not in _active_users(ctx.session, wanted)]
    if unknown:
        raise ValidationFailed({"usernames": [f"用户不存在或已停用：{'、'.join(unknown)}"]})
    existing = set(
        ctx.session.scalars(
            select(worklist.TaskCopy.username).where(
                worklist.TaskCopy.task_id == task.id, worklist.TaskCopy.username.in_(wanted)
            )
        )
    )
    note = (note or "").strip()[:500]
    copies = []
    for username in wanted:
        if username in existing:
            continue
        copy = worklist.TaskCopy(
            task_id=task.id,
            instance_id=task.instance_id,
            username=username,
            copied_by=ctx.actor.username,
            note=note,
        )
        ctx.session.add(copy)
        copies.append(copy)
        who = ctx.actor.display_name or ctx.actor.username
        notify_users(
            ctx.session,
            username,
            f"抄送：{task.name}（{who}）",
            kind="cc",
            body="，".join(p for p in (task.business_key, task.subject, note) if p),
            link=notifications.task_link(task.id),
            instance_id=task.instance_id,
        )
    ctx.session.flush()
    if copies:
        _event(ctx, task, "copied", note or None, {"to": [c.username for c in copies]})
    return copies


def mark_copy_read(ctx: Context, task_id: int) -> None:
    """The actor has opened their copy of the task (clears it from the unread count)."""
    copy = ctx.session.scalar(
        select(worklist.TaskCopy).where(
            worklist.TaskCopy.task_id == task_id, worklist.TaskCopy.username == ctx.actor.username
        )
    )
    if copy is not None and copy.read_at is None:
        copy.read_at = utcnow()
        ctx.session.flush()


def _event(ctx: Context, task: HumanTask, type: str, comment, details) -> None:
    audit.record_task_event(
        ctx.session, task, type, user=ctx.actor.username, comment=comment, details=details
    )
