"""Read side: the inbox and instance lists, filtered in SQL on indexed projection columns.

Lists page by offset (`page`) or by keyset (`cursor`): a cursor is the sort key of the last
row shown, so the next page starts with an index range scan where that row left off instead
of reading and discarding every row before it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, and_, bindparam, exists, false, func, literal_column, or_, select, tuple_
from sqlalchemy.orm import Session, defer, lazyload

from .access import Actor
from .errors import NotAllowed, ValidationFailed
from .models import Event, HumanTask, ProcessInstance, TaskCandidate

# Inlined rather than bound: the planners (PostgreSQL's generic plans, SQLite always) can only
# use the partial indexes on open, unassigned tasks when the query states their predicate literally.
OPEN = literal_column("'open'")
MAX_CURSOR_LENGTH = 200
BAD_CURSOR = "分页游标无效或已损坏，请去掉 cursor 参数从第一页重新查询"
MAX_ROW_ID = 2**31 - 1  # ids are PostgreSQL int4


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
    """Open, unassigned and offered to one of the actor's groups or to the actor by name.

    Spelled so the partial index ix_task_claimable_order (open and unassigned, in inbox order)
    matches: a page walks that index and probes task_candidates' primary key per row.
    """
    offered = exists().where(
        TaskCandidate.task_id == HumanTask.id,
        or_(
            and_(TaskCandidate.kind == "group", TaskCandidate.name.in_(sorted(actor.groups) or [""])),
            and_(TaskCandidate.kind == "user", TaskCandidate.name == actor.username),
        ),
    )
    return and_(HumanTask.status == OPEN, HumanTask.assignee.is_(None), offered)


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
    total: int | None  # None on pages asked for by cursor: the first page counted them
    page: int | None  # None when the page was asked for by cursor
    per_page: int
    next_cursor: str | None = None  # where the next page starts; None on the last page


# --- keyset cursors -----------------------------------------------------------------------


def encode_cursor(kind: str, key: list) -> str:
    """An opaque cursor: the list's kind and the sort key of the last row shown."""
    payload = json.dumps([kind, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed({"cursor": [BAD_CURSOR]}, BAD_CURSOR)


def _instant(value) -> datetime:
    if not isinstance(value, str):
        raise _bad_cursor()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _bad_cursor() from None
    if parsed.tzinfo is None:
        raise _bad_cursor()
    return parsed.astimezone(UTC)


def _row_id(value) -> int:
    if type(value) is not int or not 0 < value <= MAX_ROW_ID:
        raise _bad_cursor()
    return value


def decode_cursor(kind: str, cursor: str) -> list:
    """The [sort key…, id] a cursor of this list kind carries. Raises ValidationFailed (422)."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode())
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _bad_cursor() from None
    if not isinstance(payload, list) or len(payload) != 3 or payload[0] != kind:
        raise _bad_cursor()
    return payload[1:]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


@dataclass(frozen=True)
class Keyset:
    """How one list is ordered and how a cursor continues it."""

    kind: str
    order: tuple
    key: Callable  # row -> JSON-able sort key of the row, id last
    after: Callable  # decoded key -> WHERE clause for the rows that follow it


def _task_after(key: list):
    """Rows after (due_at, id) in the order (due_at IS NULL), due_at, id.

    A row comparison on the indexed expressions, so PostgreSQL starts the index scan there;
    tasks without a due date sort last and follow each other by id.
    """
    due_at = None if key[0] is None else _instant(key[0])
    task_id = _row_id(key[1])
    if due_at is None:
        return and_(HumanTask.due_at.is_(None), HumanTask.id > task_id)
    return tuple_(HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id) > tuple_(
        false(), _typed(due_at, HumanTask.due_at), task_id
    )


def _instance_after(key: list):
    """Rows after (started_at, id) in the order started_at DESC, id DESC."""
    started_at, instance_id = _instant(key[0]), _row_id(key[1])
    return tuple_(ProcessInstance.started_at, ProcessInstance.id) < tuple_(
        _typed(started_at, ProcessInstance.started_at), instance_id
    )


def _typed(value, column):
    """A bound value with the column's type (UTC conversion, SQLite's text format)."""
    return bindparam(None, value, type_=column.type)


TASK_ORDER = Keyset(
    "task",
    (HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id),
    lambda t: [_iso(t.due_at), t.id],
    _task_after,
)
INSTANCE_ORDER = Keyset(
    "instance",
    (ProcessInstance.started_at.desc(), ProcessInstance.id.desc()),
    lambda i: [_iso(i.started_at), i.id],
    _instance_after,
)


# A list shows an instance's own columns: not its serialized workflow state (kilobytes, stored
# out of line) nor its definition (joined by default, whose JSON columns cost a parse per row).
LIST_INSTANCE_OPTIONS = (defer(ProcessInstance.state), lazyload(ProcessInstance.definition))


def _count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def _page(
    session: Session, query: Select, keyset: Keyset, page: int, per_page: int, cursor: str | None
) -> PageResult:
    """One page by offset, or after `cursor` (then `page` and `total` are answered as None).

    A cursor page costs what the first page does, however deep: an index range from the
    cursor's key. It is not counted again: an exact count reads every matching row, which is
    what keyset paging avoids (the first page, asked for without cursor, has the total).
    One row more than the page is read to know whether another page follows.
    """
    if cursor is not None:
        query = query.where(keyset.after(decode_cursor(keyset.kind, cursor)))
        offset, page, total = 0, None, None
    else:
        offset, total = (page - 1) * per_page, _count(session, query)
    rows = list(session.scalars(query.order_by(*keyset.order).offset(offset).limit(per_page + 1)))
    items = rows[:per_page]
    next_cursor = encode_cursor(keyset.kind, keyset.key(items[-1])) if len(rows) > per_page else None
    return PageResult(items, total, page, per_page, next_cursor)


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
    cursor: str | None = None,
) -> PageResult:
    """Tasks by scope: mine (assigned), claimable (offered to my groups), all (managers).

    Raises NotAllowed for scope=all without the manager role, ValidationFailed for a bad cursor.
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
    return _page(session, query, TASK_ORDER, page, per_page, cursor)


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
    cursor: str | None = None,
) -> PageResult:
    """Instances visible to the actor (managers: all; others: started or worked on by them).

    Raises ValidationFailed for a bad cursor.
    """
    query = select(ProcessInstance).options(*LIST_INSTANCE_OPTIONS)
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
    return _page(session, query, INSTANCE_ORDER, page, per_page, cursor)


def open_tasks_of(session: Session, instance_id: int) -> list[HumanTask]:
    return list(
        session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            .order_by(HumanTask.id)
        )
    )


def open_tasks_by_instance(session: Session, instance_ids) -> dict[int, list[HumanTask]]:
    """Open tasks of several instances in one query: instance id -> tasks by id (lists' N+1)."""
    found: dict[int, list[HumanTask]] = {i: [] for i in instance_ids}
    if found:
        for task in session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id.in_(list(found)), HumanTask.status == "open")
            .order_by(HumanTask.id)
        ):
            found[task.instance_id].append(task)
    return found


def history_of(session: Session, instance_id: int) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.instance_id == instance_id).order_by(Event.id)))
