"""Managers' monitoring: summary counts, dashboard charts, the instance and task lists with
their filters, the heatmap of a process version and the state of one instance's diagram.

Every figure is a SQL aggregate over the projections (process_instances, human_tasks,
task_candidates, events); no instance state is loaded except for the one instance a
page shows.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import (
    Date,
    Float,
    Integer,
    and_,
    case,
    column,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from . import audit, definitions, queries, runtime, urging
from .access import Actor
from .errors import Conflict, NotAllowed, TooLarge, ValidationFailed
from .models import Event, HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate, User

STATUSES = ("running", "waiting", "completed", "terminated", "suspended", "error")
OPEN_STATUSES = ("running", "waiting", "suspended", "error")
STATUS_LABELS = {
    "running": "办理中",
    "waiting": "等待中",
    "completed": "已办结",
    "terminated": "已终止",
    "suspended": "已挂起",
    "error": "出错",
}
TASK_STATUSES = ("open", "completed", "cancelled")
SLA_LEVELS = ("overdue", "warning")
WEEKS = 12
# Working-day ordinals reach this far back before the duration window; older tasks count from there.
DURATION_LOOKBACK_DAYS = 3 * 366
EXPORT_LIMIT = 50_000
MAX_TEXT = 128


def require_manager(actor: Actor) -> None:
    """Raises NotAllowed unless the actor is in the managers or admins group."""
    if not actor.is_manager:
        raise NotAllowed("只有督查/管理人员可以查看监控数据")


# --- SQL expressions that differ per database ---------------------------------------------


class local_date(FunctionElement):
    """The calendar date of a UTC timestamp column in the bureau's time zone."""

    type = Date()
    inherit_cache = True
    name = "local_date"


@compiles(local_date)
def _local_date_sqlite(element, compiler, **kw):
    value, _zone, shift = element.clauses
    return f"date({compiler.process(value, **kw)}, {compiler.process(shift, **kw)})"


@compiles(local_date, "postgresql")
def _local_date_postgresql(element, compiler, **kw):
    value, zone, _shift = element.clauses
    return f"CAST(timezone({compiler.process(zone, **kw)}, {compiler.process(value, **kw)}) AS DATE)"


class seconds_between(FunctionElement):
    """Seconds from the second timestamp argument to the first."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between)
def _seconds_sqlite(element, compiler, **kw):
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_postgresql(element, compiler, **kw):
    end, start = (compiler.process(c, **kw) for c in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


def _day_of(ctx: runtime.Context, value):
    """local_date(value) for the settings' zone; literals, so GROUP BY matches the SELECT."""
    zone = ctx.settings.timezone
    if not re.fullmatch(r"[A-Za-z0-9_+\-/]+", zone):
        raise ValueError(f"bad time zone name {zone!r}")
    offset = datetime.now(ctx.settings.tzinfo).utcoffset() or timedelta()
    minutes = int(offset.total_seconds() // 60)
    return local_date(value, literal_column(f"'{zone}'"), literal_column(f"'{minutes:+d} minutes'"))


def _local_midnight(ctx: runtime.Context, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ctx.settings.tzinfo).astimezone(UTC)


def _as_date(value) -> date:
    """A DATE column's value: SQLite may hand back its text."""
    return date.fromisoformat(value) if isinstance(value, str) else value


# --- summary (API.md: GET /api/v1/stats/summary) ----------------------------------------


# Open tasks are counted from the partial index ix_task_open_key_due (status = 'open'), which
# the planner only uses when the query states its predicate literally (queries.OPEN).
_OPEN_TASK = HumanTask.status == queries.OPEN
FINISHED_STATUSES = tuple(s for s in STATUSES if s not in OPEN_STATUSES)


def _overdue_task(now: datetime):
    return and_(_OPEN_TASK, HumanTask.due_at <= now)


def _warning_task(now: datetime):
    return and_(_OPEN_TASK, HumanTask.warn_at <= now, HumanTask.due_at > now)


def _instance_counts(session: Session, now: datetime):
    """(status, process_key, instances, overdue instances) rows, from ix_instance_status_key_due.

    Open instances (a small, current set) with their overdue count; finished ones counted
    apart, without the per-row CASE: an index-only scan, the only part that grows with history.
    """
    open_rows = session.execute(
        select(
            ProcessInstance.status,
            ProcessInstance.process_key,
            func.count(),
            func.sum(case((ProcessInstance.due_at <= now, 1), else_=0)),
        )
        .where(ProcessInstance.status.in_(OPEN_STATUSES))
        .group_by(ProcessInstance.status, ProcessInstance.process_key)
    )
    yield from open_rows
    finished_rows = session.execute(
        select(ProcessInstance.status, ProcessInstance.process_key, func.count())
        .where(ProcessInstance.status.in_(FINISHED_STATUSES))
        .group_by(ProcessInstance.status, ProcessInstance.process_key)
    )
    for status, key, count in finished_rows:
        yield status, key, count, 0


def _open_task_counts(now: datetime):
    """Open tasks with how many are overdue and due soon (index-only on ix_task_open_key_due)."""
    return (
        func.count(),
        func.sum(case((HumanTask.due_at <= now, 1), else_=0)),
        func.sum(case((and_(HumanTask.warn_at <= now, HumanTask.due_at > now), 1), else_=0)),
    )


def summary(ctx: runtime.Context, now: datetime | None = None) -> dict:
    """Instances by status, open/overdue/due-soon tasks, overall and per process. Raises NotAllowed."""
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    by_process: dict[str, dict] = {}

    def entry(key: str) -> dict:
        return by_process.setdefault(
            key,
            {
                "instances_by_status": dict.fromkeys(STATUSES, 0),
                "open_tasks": 0,
                "overdue_tasks": 0,
                "warning_tasks": 0,
                "overdue_instances": 0,
            },
        )

    for status, key, count, late in _instance_counts(ctx.session, now):
        entry(key)["instances_by_status"][status] = count
        entry(key)["overdue_instances"] += late or 0
    task_rows = ctx.session.execute(
        select(HumanTask.process_key, *_open_task_counts(now))
        .where(_OPEN_TASK)
        .group_by(HumanTask.process_key)
    )
    for key, count, overdue, warning in task_rows:
        item = entry(key)
        item["open_tasks"], item["overdue_tasks"], item["warning_tasks"] = count, overdue or 0, warning or 0
    names = process_names(ctx.session)
    for key, item in by_process.items():
        item["name"] = names.get(key, key)
    totals = dict.fromkeys(STATUSES, 0)
    for item in by_process.values():
        for status, count in item["instances_by_status"].items():
            totals[status] += count
    return {
        "instances_by_status": totals,
        "open_tasks": sum(i["open_tasks"] for i in by_process.values()),
        "overdue_tasks": sum(i["overdue_tasks"] for i in by_process.values()),
        "warning_tasks": sum(i["warning_tasks"] for i in by_process.values()),
        "overdue_instances": sum(i["overdue_instances"] for i in by_process.values()),
        "by_process": dict(sorted(by_process.items())),
    }


def gauges(session: Session, now: datetime | None = None) -> dict:
    """Operational counts for /metrics (the caller controls access): instances by status,
    open/overdue/due-soon tasks, due timers and the oldest one's lag, outbox backlog."""
    from .jobs import worker_status

    now = now or queries.now_utc()
    by_status = dict.fromkeys(STATUSES, 0)
    by_status.update(
        session.execute(select(ProcessInstance.status, func.count()).group_by(ProcessInstance.status)).all()
    )
    open_tasks, overdue, warning = session.execute(select(*_open_task_counts(now)).where(_OPEN_TASK)).one()
    worker = worker_status(session, None, now=now)
    return {
        "instances_by_status": by_status,
        "open_tasks": open_tasks or 0,
        "overdue_tasks": overdue or 0,
        "warning_tasks": warning or 0,
        "due_timers": worker["due_timers"] or 0,
        "timer_lag_seconds": worker["timer_lag_seconds"] or 0.0,
        "outbox_backlog": worker["outbox_backlog"],
        "outbox_dead": worker["outbox_dead"],
    }


def process_names(session: Session) -> dict[str, str]:
    """Process key -> the name of its latest version."""
    return {d.key: d.name or d.key for d in definitions.list_definitions(session)}


# --- dashboard ----------------------------------------------------------------------------


def dashboard(ctx: runtime.Context, now: datetime | None = None) -> dict:
    """Every chart of the managers' dashboard, each with the filters of the list behind it.

    Raises NotAllowed.
    """
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    this_monday = now.astimezone(ctx.settings.tzinfo).date()
    this_monday -= timedelta(days=this_monday.weekday())
    first_week = this_monday - timedelta(weeks=WEEKS - 1)
    opened = open_instances(ctx, now)
    totals = {
        "open_instances": sum(r["count"] for r in opened),
        "overdue_instances": sum(r["overdue"] for r in opened),
        **task_totals(ctx, now),
    }
    return {
        "generated_at": now,
        "processes": process_names(ctx.session),
        "open_instances": opened,
        "tasks_by_group": late_tasks_by_group(ctx, now),
        "tasks_by_person": late_tasks_by_person(ctx, now),
        "weeks": weekly_throughput(ctx, first_week),
        "step_durations": step_durations(ctx, first_week, now),
        "credit": credit_counts(ctx),
        "window_start": first_week,
        "totals": totals,
    }


def task_totals(ctx: runtime.Context, now: datetime) -> dict:
    """Open tasks, how many are overdue and how many due soon."""
    open_tasks, overdue, warning = ctx.session.execute(
        select(*_open_task_counts(now)).where(_OPEN_TASK)
    ).one()
    return {
        "open_tasks": open_tasks or 0,
        "overdue_tasks": overdue or 0,
        "warning_tasks": warning or 0,
    }


def open_instances(ctx: runtime.Context, now: datetime) -> list[dict]:
    """Open instances per process and status, with how many of them are overdue (overdue_instance)."""
    rows = ctx.session.execute(
        select(
            ProcessInstance.process_key,
            ProcessInstance.status,
            func.count(),
            func.sum(case((overdue_instance(now), 1), else_=0)),
        )
        .where(ProcessInstance.status.in_(OPEN_STATUSES))
        .group_by(ProcessInstance.process_key, ProcessInstance.status)
        .order_by(ProcessInstance.process_key, ProcessInstance.status)
    )
    return [
        {"process_key": key, "status": status, "count": count, "overdue": late or 0}
        for key, status, count, late in rows
    ]


def _late_counts(now: datetime):
    return (
        func.sum(case((HumanTask.due_at <= now, 1), else_=0)).label("overdue"),
        func.sum(case((HumanTask.due_at > now, 1), else_=0)).label("warning"),
    )


def _late_open_task(now: datetime):
    # warn_at <= due_at, so this is "overdue or due soon"; the OR keeps rows without warn_at.
    return and_(_OPEN_TASK, or_(HumanTask.warn_at <= now, HumanTask.due_at <= now))


def late_tasks_by_group(ctx: runtime.Context, now: datetime) -> list[dict]:
    """Open tasks overdue and due soon, per candidate group (claimed tasks stay with their group)."""
    from .users import GROUPS

    rows = ctx.session.execute(
        select(TaskCandidate.name, *_late_counts(now))
        .join(HumanTask, HumanTask.id == TaskCandidate.task_id)
        .where(TaskCandidate.kind == "group", _late_open_task(now))
        .group_by(TaskCandidate.name)
        .order_by(TaskCandidate.name)
    )
    return [
        {"group": name, "title": GROUPS.get(name, name), "overdue": overdue or 0, "warning": warning or 0}
        for name, overdue, warning in rows
    ]


def late_tasks_by_person(ctx: runtime.Context, now: datetime) -> list[dict]:
    """Open tasks overdue and due soon, per assignee (unclaimed tasks are in the group chart)."""
    rows = ctx.session.execute(
        select(HumanTask.assignee, func.max(User.display_name), *_late_counts(now))
        .outerjoin(User, User.username == HumanTask.assignee)
        .where(HumanTask.assignee.is_not(None), _late_open_task(now))
        .group_by(HumanTask.assignee)
        .order_by(HumanTask.assignee)
    )
    return [
        {"username": who, "display_name": name or who, "overdue": overdue or 0, "warning": warning or 0}
        for who, name, overdue, warning in rows
    ]


def _count_per_day(ctx: runtime.Context, column_, since: datetime) -> dict[date, int]:
    day = _day_of(ctx, column_)
    rows = ctx.session.execute(select(day, func.count()).where(column_ >= since).group_by(day))
    return {_as_date(d): n for d, n in rows}


def weekly_throughput(ctx: runtime.Context, first_week: date) -> list[dict]:
    """Instances started and finished (completed or terminated) per week, Monday first."""
    since = _local_midnight(ctx, first_week)
    started = _count_per_day(ctx, ProcessInstance.started_at, since)
    finished = _count_per_day(ctx, ProcessInstance.ended_at, since)
    weeks = [{"week": first_week + timedelta(weeks=i), "started": 0, "finished": 0} for i in range(WEEKS)]
    for counts, key in ((started, "started"), (finished, "finished")):
        for day, n in counts.items():
            index = (day - first_week).days // 7
            if 0 <= index < WEEKS:
                weeks[index][key] += n
    return weeks


def _workday_ordinals(ctx: runtime.Context, first: date, last: date) -> list[tuple[date, int]]:
    """(day, working days in [first, day]): working days between two dates is a difference."""
    calendar = ctx.settings.calendar
    rows, count, day = [], 0, first
    while day <= last:
        count += calendar.is_workday(day)
        rows.append((day, count))
        day += timedelta(days=1)
    return rows


# One JSON parameter rather than a VALUES list: the statement stays the same, so SQLAlchemy
# compiles it once instead of for every one of its thousand rows on each call.
_ORDINALS_SQL = {
    "postgresql": (
        "SELECT day, ordinal FROM json_to_recordset(CAST(:workdays AS json)) AS w(day date, ordinal int)"
    ),
    "sqlite": (
        "SELECT json_extract(value, '$.day') AS day, json_extract(value, '$.ordinal') AS ordinal"
        " FROM json_each(:workdays)"
    ),
}


def _workday_table(ctx: runtime.Context, first: date, last: date):
    """A CTE (day, ordinal) of `_workday_ordinals`, passed to the database as one JSON parameter."""
    payload = json.dumps(
        [{"day": d.isoformat(), "ordinal": n} for d, n in _workday_ordinals(ctx, first, last)]
    )
    statement = text(_ORDINALS_SQL[ctx.session.get_bind().dialect.name]).bindparams(workdays=payload)
    return statement.columns(column("day", Date), column("ordinal", Integer)).cte("workday")


def percentile(histogram: Mapping[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a {value: count} histogram (None when empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank, seen = max(1, math.ceil(fraction * total)), 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def step_durations(ctx: runtime.Context, first_week: date, now: datetime) -> list[dict]:
    """Median and p90 working days per user task of each process, over tasks completed since
    `first_week`: working days after the day it opened up to the day it was done."""
    today = now.astimezone(ctx.settings.tzinfo).date()
    ordinals = _workday_table(ctx, first_week - timedelta(days=DURATION_LOOKBACK_DAYS), today)
    done, opened = ordinals.alias("workday_done"), ordinals.alias("workday_opened")
    days = (done.c.ordinal - func.coalesce(opened.c.ordinal, 0)).label("days")
    rows = ctx.session.execute(
        select(HumanTask.process_key, HumanTask.element_id, func.max(HumanTask.name), days, func.count())
        .join(done, done.c.day == _day_of(ctx, HumanTask.completed_at))
        .outerjoin(opened, opened.c.day == _day_of(ctx, HumanTask.created_at))
        .where(HumanTask.status == "completed", HumanTask.completed_at >= _local_midnight(ctx, first_week))
        .group_by(HumanTask.process_key, HumanTask.element_id, days)
    )
    steps: dict[tuple[str, str], dict] = {}
    for key, element_id, name, n_days, count in rows:
        step = steps.setdefault(
            (key, element_id), {"process_key": key, "element_id": element_id, "name": name, "histogram": {}}
        )
        step["name"] = step["name"] or name
        step["histogram"][max(0, n_days)] = step["histogram"].get(max(0, n_days), 0) + count
    result = []
    for step in steps.values():
        histogram = step.pop("histogram")
        step.update(
            count=sum(histogram.values()),
            median_days=percentile(histogram, 0.5),
            p90_days=percentile(histogram, 0.9),
        )
        result.append(step)
    return sorted(result, key=lambda s: (s["process_key"], -s["p90_days"], s["element_id"]))


def credit_counts(ctx: runtime.Context) -> list[dict]:
    """Credit archive records per status and severity."""
    from .credit import CreditRecord

    rows = ctx.session.execute(
        select(CreditRecord.status, CreditRecord.severity, func.count())
        .group_by(CreditRecord.status, CreditRecord.severity)
        .order_by(CreditRecord.status, CreditRecord.severity)
    )
    return [{"status": s, "severity": v, "count": n} for s, v, n in rows]


# --- instance list ------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceFilter:
    """What the managers' instance list filters on; every field optional."""

    process_key: str | None = None
    version: int | None = None
    status: str | None = None
    started_by: str | None = None
    started_from: date | None = None
    started_to: date | None = None
    ended_from: date | None = None
    ended_to: date | None = None
    overdue: bool | None = None
    business_key: str | None = None
    subject: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping) -> InstanceFilter:
        """Parse query parameters or a saved view; unknown keys are ignored. Raises ValidationFailed."""
        errors: dict[str, list[str]] = {}
        values_: dict = {}
        for f in fields(cls):
            value = raw.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            try:
                values_[f.name] = _PARSERS[f.name](value)
            except (TypeError, ValueError) as exc:
                errors[f.name] = [str(exc) or "格式不正确"]
        for first, last in (("started_from", "started_to"), ("ended_from", "ended_to")):
            if values_.get(first) and values_.get(last) and values_[first] > values_[last]:
                errors.setdefault(last, []).append("结束日期不能早于开始日期")
        if errors:
            raise ValidationFailed(errors)
        return cls(**values_)

    def to_params(self) -> dict[str, str]:
        """The set filters as query-string values (the inverse of from_mapping)."""
        params = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            params[f.name] = value.isoformat() if isinstance(value, date) else str(value)
        return params


def _text(value) -> str:
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"不能超过 {MAX_TEXT} 个字符")
    return text


def _positive_int(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError("必须是正整数") from None
    if number < 1:
        raise ValueError("必须是正整数")
    return number


def _status(value) -> str:
    if value not in STATUSES:
        raise ValueError("状态必须是" + "、".join(STATUS_LABELS.values()) + "之一")
    return value


def _day(value) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        day = date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError("日期格式应为 YYYY-MM-DD") from None
    if not 1900 <= day.year <= 2200:
        raise ValueError("日期应在 1900 至 2200 年之间")
    return day


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("应为 true 或 false")


_PARSERS = {
    "process_key": _text,
    "version": _positive_int,
    "status": _status,
    "started_by": _text,
    "started_from": _day,
    "started_to": _day,
    "ended_from": _day,
    "ended_to": _day,
    "overdue": _flag,
    "business_key": _text,
    "subject": _text,
}


def _has_overdue_task(now: datetime):
    # Uncorrelated IN: PostgreSQL hashes the few instances with an overdue task once, rather
    # than probing human_tasks for every open instance.
    return ProcessInstance.id.in_(select(HumanTask.instance_id).where(_overdue_task(now)))


def overdue_instance(now: datetime):
    """An open instance past its own deadline or with an overdue open task."""
    return and_(
        ProcessInstance.status.in_(OPEN_STATUSES),
        or_(ProcessInstance.due_at <= now, _has_overdue_task(now)),
    )


def _on_time_instance(now: datetime):
    """The complement of overdue_instance, spelled out: NOT over a NULL due_at would drop rows."""
    return or_(
        ProcessInstance.status.not_in(OPEN_STATUSES),
        and_(
            or_(ProcessInstance.due_at.is_(None), ProcessInstance.due_at > now),
            ~_has_overdue_task(now),
        ),
    )


def instance_query(ctx: runtime.Context, filters: InstanceFilter, now: datetime):
    """SELECT of the instances matching `filters` (no order, no paging)."""
    query = select(ProcessInstance)
    exact = {
        "process_key": ProcessInstance.process_key,
        "version": ProcessInstance.version,
        "status": ProcessInstance.status,
        "started_by": ProcessInstance.started_by,
    }
    for name, col in exact.items():
        if getattr(filters, name) is not None:
            query = query.where(col == getattr(filters, name))
    ranges = (
        (filters.started_from, filters.started_to, ProcessInstance.started_at),
        (filters.ended_from, filters.ended_to, ProcessInstance.ended_at),
    )
    for first, last, col in ranges:
        if first:
            query = query.where(col >= _local_midnight(ctx, first))
        if last:
            query = query.where(col < _local_midnight(ctx, last + timedelta(days=1)))
    if filters.overdue is not None:
        query = query.where(overdue_instance(now) if filters.overdue else _on_time_instance(now))
    if filters.business_key:
        query = query.where(ProcessInstance.business_key.istartswith(filters.business_key, autoescape=True))
    if filters.subject:
        query = query.where(ProcessInstance.subject.icontains(filters.subject, autoescape=True))
    return query


@dataclass
class InstanceRow:
    instance: ProcessInstance
    open_tasks: list[HumanTask] = field(default_factory=list)
    overdue: bool = False


@dataclass
class InstancePage:
    rows: list[InstanceRow]
    total: int
    page: int
    per_page: int
    process_names: dict[str, str] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=dict)  # username -> display name

    def cells(self, row: InstanceRow, columns) -> dict:
        return {c: cell(row, c, self.process_names, self.people) for c in columns}

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


ORDER = (ProcessInstance.started_at.desc(), ProcessInstance.id.desc())


def _rows(ctx: runtime.Context, instances: list[ProcessInstance], now: datetime) -> list[InstanceRow]:
    """Rows with each instance's open tasks, fetched in one query."""
    rows = {i.id: InstanceRow(i) for i in instances}
    if rows:
        for task in ctx.session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id.in_(list(rows)), HumanTask.status == "open")
            .order_by(HumanTask.id)
        ):
            rows[task.instance_id].open_tasks.append(task)
    for row in rows.values():
        late_task = any(t.due_at is not None and t.due_at <= now for t in row.open_tasks)
        row.overdue = row.instance.status in OPEN_STATUSES and (
            queries.instance_overdue(row.instance, now) or late_task
        )
    return list(rows.values())


def list_instances(
    ctx: runtime.Context,
    filters: InstanceFilter,
    *,
    page: int = 1,
    per_page: int = 50,
    now: datetime | None = None,
) -> InstancePage:
    """One page of the instances matching `filters`, newest first. Raises NotAllowed."""
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    page, per_page = max(1, page), min(max(1, per_page), 500)
    query = instance_query(ctx, filters, now)
    total = ctx.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    instances = list(
        ctx.session.scalars(query.order_by(*ORDER).offset((page - 1) * per_page).limit(per_page))
    )
    rows = _rows(ctx, instances, now)
    return InstancePage(
        rows, total, page, per_page, process_names(ctx.session), display_names(ctx.session, rows)
    )


# Columns a manager may show or export, in their default order; the first ones are the default.
COLUMNS = {
    "business_key": "编号",
    "process": "流程",
    "subject": "事项",
    "status": "状态",
    "current_tasks": "当前环节",
    "assignees": "当前办理人",
    "started_at": "发起时间",
    "due_at": "办理时限",
    "overdue": "是否超期",
    "version": "版本",
    "started_by": "发起人",
    "ended_at": "办结时间",
    "id": "实例号",
}
DEFAULT_COLUMNS = (
    "business_key",
    "process",
    "subject",
    "status",
    "current_tasks",
    "started_at",
    "due_at",
    "overdue",
)


def parse_columns(value) -> tuple[str, ...]:
    """Chosen columns from a list or a comma-separated string; default when empty. Raises ValidationFailed."""
    if value is None or value == "" or value == []:
        return DEFAULT_COLUMNS
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ValidationFailed({"columns": [f"未知的列：{'、'.join(unknown[:5])}"]})
    return tuple(dict.fromkeys(names)) or DEFAULT_COLUMNS


def cell(row: InstanceRow, name: str, names: Mapping[str, str], people: Mapping[str, str]):
    """The value of one column for one row: text, a number, a bool or an aware datetime."""
    instance = row.instance
    if name == "process":
        return names.get(instance.process_key, instance.process_key)
    if name == "status":
        return STATUS_LABELS.get(instance.status, instance.status)
    if name == "current_tasks":
        return "、".join(dict.fromkeys(t.name for t in row.open_tasks))
    if name == "assignees":
        holders = [people.get(t.assignee, t.assignee) if t.assignee else "（待认领）" for t in row.open_tasks]
        return "、".join(dict.fromkeys(holders))
    if name == "started_by":
        return people.get(instance.started_by, instance.started_by) if instance.started_by else ""
    if name == "due_at":
        dues = [t.due_at for t in row.open_tasks if t.due_at] + ([instance.due_at] if instance.due_at else [])
        return min(dues) if dues and instance.status in OPEN_STATUSES else instance.due_at
    if name == "overdue":
        return row.overdue
    return getattr(instance, name)


def display_names(session: Session, rows: list[InstanceRow]) -> dict[str, str]:
    """username -> display name for the people a page of rows mentions."""
    names = {r.instance.started_by for r in rows} | {t.assignee for r in rows for t in r.open_tasks}
    return names_of(session, names)


def names_of(session: Session, usernames) -> dict[str, str]:
    """username -> display name (unknown users map to themselves)."""
    names = {u for u in usernames if u}
    if not names:
        return {}
    found = dict(
        session.execute(select(User.username, User.display_name).where(User.username.in_(names))).all()
    )
    return {u: found.get(u) or u for u in names}


def export_instances(
    ctx: runtime.Context,
    filters: InstanceFilter,
    columns: tuple[str, ...],
    fmt: str,
    now: datetime | None = None,
) -> bytes:
    """Every instance matching `filters` (not only one page) as CSV or XLSX with the chosen columns.

    Raises NotAllowed, ValidationFailed (format), TooLarge (more than EXPORT_LIMIT rows).
    """
    from . import ledgers

    require_manager(ctx.actor)
    now = now or queries.now_utc()
    query = instance_query(ctx, filters, now)
    total = ctx.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    if total > EXPORT_LIMIT:
        raise TooLarge(f"符合条件的流程实例有 {total} 个，超过导出上限 {EXPORT_LIMIT}，请缩小筛选范围")
    names = process_names(ctx.session)

    def lines():
        offset = 0
        while True:
            batch = list(ctx.session.scalars(query.order_by(*ORDER).offset(offset).limit(1000)))
            if not batch:
                return
            rows = _rows(ctx, batch, now)
            people = display_names(ctx.session, rows)
            for row in rows:
                yield [cell(row, c, names, people) for c in columns]
            offset += len(batch)

    return ledgers.write_table(
        [COLUMNS[c] for c in columns], lines(), fmt, ctx.settings.tzinfo, title="流程实例"
    )


# --- task list (where the task charts link to) ---------------------------------------------


@dataclass(frozen=True)
class TaskFilter:
    group: str | None = None
    assignee: str | None = None
    sla: str | None = None
    process_key: str | None = None
    element_id: str | None = None
    status: str = "open"
    completed_from: date | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping) -> TaskFilter:
        """Parse query parameters. Raises ValidationFailed."""
        errors, values_ = {}, {}
        for name in ("group", "assignee", "process_key", "element_id"):
            value = (raw.get(name) or "").strip() if isinstance(raw.get(name, ""), str) else raw.get(name)
            if value:
                if len(value) > MAX_TEXT:
                    errors[name] = [f"不能超过 {MAX_TEXT} 个字符"]
                values_[name] = value
        sla, status = raw.get("sla") or None, raw.get("status") or "open"
        if sla and sla not in SLA_LEVELS:
            errors["sla"] = ["时限状态必须是 overdue 或 warning"]
        if status not in TASK_STATUSES:
            errors["status"] = ["任务状态必须是 open、completed 或 cancelled"]
        if raw.get("completed_from"):
            try:
                values_["completed_from"] = _day(raw["completed_from"])
            except ValueError as exc:
                errors["completed_from"] = [str(exc)]
        if errors:
            raise ValidationFailed(errors)
        return cls(sla=sla, status=status, **values_)

    def to_params(self) -> dict[str, str]:
        params = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
        if self.completed_from:
            params["completed_from"] = self.completed_from.isoformat()
        return params


def list_tasks(
    ctx: runtime.Context,
    filters: TaskFilter,
    *,
    page: int = 1,
    per_page: int = 50,
    now: datetime | None = None,
) -> queries.PageResult:
    """Tasks by group, person, SLA, process and step: the list behind the task charts. Raises NotAllowed."""
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    page, per_page = max(1, page), min(max(1, per_page), 500)
    query = select(HumanTask).where(HumanTask.status == filters.status)
    if filters.group:
        query = query.where(
            exists().where(
                TaskCandidate.task_id == HumanTask.id,
                TaskCandidate.kind == "group",
                TaskCandidate.name == filters.group,
            )
        )
    if filters.assignee:
        query = query.where(HumanTask.assignee == filters.assignee)
    if filters.process_key:
        query = query.where(HumanTask.process_key == filters.process_key)
    if filters.element_id:
        query = query.where(HumanTask.element_id == filters.element_id)
    if filters.completed_from:
        query = query.where(HumanTask.completed_at >= _local_midnight(ctx, filters.completed_from))
    if filters.sla == "overdue":
        query = query.where(_overdue_task(now))
    elif filters.sla == "warning":
        query = query.where(_warning_task(now))
    if filters.status == "open":
        order = (HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id)
    else:
        order = (HumanTask.completed_at.desc(), HumanTask.id.desc())
    total = ctx.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(ctx.session.scalars(query.order_by(*order).offset((page - 1) * per_page).limit(per_page)))
    return queries.PageResult(items, total, page, per_page)


# --- heatmap of a process version ----------------------------------------------------------


def _hours(seconds) -> float | None:
    return None if seconds is None else round(float(seconds) / 3600, 1)


def heatmap(
    ctx: runtime.Context,
    process_key: str,
    version: int | None = None,
    *,
    started_from: date | None = None,
    started_to: date | None = None,
    now: datetime | None = None,
) -> dict:
    """Per element of one version: instances that reached it, tasks done there and the average
    hours from opening to completion; open and overdue counts. Raises NotAllowed, NotFound."""
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    definition = definitions.get_definition(ctx.session, process_key, version)
    scope = InstanceFilter(started_from=started_from, started_to=started_to)
    instances = (
        instance_query(ctx, scope, now).where(ProcessInstance.definition_id == definition.id).subquery()
    )
    is_done = HumanTask.status == "completed"
    rows = ctx.session.execute(
        select(
            HumanTask.element_id,
            func.count(func.distinct(HumanTask.instance_id)),
            func.sum(case((is_done, 1), else_=0)),
            func.avg(case((is_done, seconds_between(HumanTask.completed_at, HumanTask.created_at)))),
            func.sum(case((HumanTask.status == "open", 1), else_=0)),
            func.sum(case((_overdue_task(now), 1), else_=0)),
        )
        .join(instances, instances.c.id == HumanTask.instance_id)
        .group_by(HumanTask.element_id)
    )
    elements = {}
    for element_id, reached, done, avg_seconds, open_, late in rows:
        elements[element_id] = {
            "count": reached,
            "completed": done or 0,
            "avg_hours": _hours(avg_seconds),
            "open": open_ or 0,
            "overdue": late or 0,
        }
    by_status = dict(
        ctx.session.execute(select(instances.c.status, func.count()).group_by(instances.c.status)).all()
    )
    _add_event_counts(definition, elements, by_status)
    return {
        "definition": definition,
        "instances": sum(by_status.values()),
        "instances_by_status": by_status,
        "elements": elements,
        "state": _viewer_state(elements),
    }


def _add_event_counts(definition: ProcessDefinition, elements: dict, by_status: dict) -> None:
    """Start events: every instance; the end event, when there is only one: completed ones."""
    kinds: dict[str, list[str]] = {}
    for element_id, meta in (definition.elements or {}).items():
        kinds.setdefault(meta.get("type"), []).append(element_id)
    for element_id in kinds.get("startEvent", []):
        elements.setdefault(
            element_id, {"count": sum(by_status.values()), "completed": sum(by_status.values())}
        )
    ends = kinds.get("endEvent", [])
    if len(ends) == 1 and by_status.get("completed"):
        elements.setdefault(ends[0], {"count": by_status["completed"], "completed": by_status["completed"]})


def _viewer_state(elements: dict) -> dict:
    """The bpmn-viewer bundle's state: counts with average hours, active and overdue elements."""
    return {
        "counts": {
            element_id: {"count": e["count"], **({"avg_hours": e["avg_hours"]} if e.get("avg_hours") else {})}
            for element_id, e in elements.items()
        },
        "active": sorted(i for i, e in elements.items() if e.get("open")),
        "overdue": sorted(i for i, e in elements.items() if e.get("overdue")),
    }


# --- one instance ------------------------------------------------------------------------


def instance_tasks(session: Session, instance_id: int) -> list[HumanTask]:
    return list(
        session.scalars(select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(HumanTask.id))
    )


def instance_diagram_state(
    ctx: runtime.Context, instance: ProcessInstance, tasks: list[HumanTask], now: datetime
) -> dict:
    """Completed, active and overdue elements and, per element, how often and how long (hours,
    open tasks counted up to now) the instance was there."""
    state = runtime.instance_diagram(ctx, instance)
    spent: dict[str, list[float]] = {}
    overdue = set()
    for task in tasks:
        if task.status == "open" and task.due_at is not None and task.due_at <= now:
            overdue.add(task.element_id)
        end = task.completed_at or (now if task.status == "open" else None)
        if end is not None:
            spent.setdefault(task.element_id, []).append((end - task.created_at).total_seconds())
    if instance.status in OPEN_STATUSES and instance.due_at is not None and instance.due_at <= now:
        overdue |= set(state["active"])
    state["overdue"] = sorted(overdue)
    state["counts"] = {
        element_id: {"count": len(durations), "avg_hours": _hours(sum(durations) / len(durations))}
        for element_id, durations in spent.items()
    }
    return state


def instance_overview(ctx: runtime.Context, instance_id: int, now: datetime | None = None) -> dict:
    """What the managers' instance page shows: the instance, its variables (confidential fields
    masked for the actor), tasks, timeline, diagram state and audit chain breaks.

    Raises NotAllowed, NotFound.
    """
    require_manager(ctx.actor)
    now = now or queries.now_utc()
    instance = runtime.get_instance(ctx, instance_id)
    tasks = instance_tasks(ctx.session, instance.id)
    history = queries.history_of(ctx.session, instance.id)
    people = [e.user for e in history] + [instance.started_by]
    people += [u for t in tasks for u in (t.assignee, t.owner, t.completed_by)]
    return {
        "instance": instance,
        "process_name": process_names(ctx.session).get(instance.process_key, instance.process_key),
        "people": names_of(ctx.session, people),
        "overdue": bool(_rows(ctx, [instance], now)[0].overdue),
        "variables": runtime.instance_variables(ctx, instance),
        "tasks": tasks,
        "history": history,
        "fields": field_labels(instance.definition),
        "diagram": instance_diagram_state(ctx, instance, tasks, now),
        "audit_breaks": audit.verify_chain(history, instance.last_event_hash),
    }


def field_labels(definition: ProcessDefinition) -> dict[str, dict]:
    """Top-level variable key -> {"label", "options": {value: label}} from the version's forms."""
    from .forms import form_fields

    labels: dict[str, dict] = {}
    for form in (definition.forms or {}).values():
        for f in form_fields(form):
            if "." not in f["key"] and f["key"] not in labels:
                options = {str(o["value"]): o["label"] for o in f["options"] or []}
                labels[f["key"]] = {"label": f["label"], "options": options}
    return labels


def verify_instance_audit(ctx: runtime.Context, instance_id: int) -> dict:
    """The instance's audit chain checked: {instance_id, events, ok, breaks}. Raises NotAllowed, NotFound."""
    require_manager(ctx.actor)
    instance = runtime.get_instance(ctx, instance_id)
    history = queries.history_of(ctx.session, instance.id)
    breaks = audit.verify_chain(history, instance.last_event_hash)
    return {"instance_id": instance.id, "events": len(history), "ok": not breaks, "breaks": breaks}


def verify_all_chains(session: Session, batch: int = 2000):
    """Every instance's audit chain, streamed in (instance, event) order: yields
    (instance_id, events checked, breaks) per instance."""
    query = (
        select(Event, ProcessInstance.last_event_hash)
        .join(ProcessInstance, ProcessInstance.id == Event.instance_id)
        .order_by(Event.instance_id, Event.id)
        .execution_options(yield_per=batch)
    )
    current, chain, head = None, [], None
    for event, event_head in session.execute(query):
        if event.instance_id != current:
            if chain:
                yield current, len(chain), audit.verify_chain(chain, head)
            current, chain, head = event.instance_id, [], event_head
        chain.append(event)
    if chain:
        yield current, len(chain), audit.verify_chain(chain, head)


def urge_instance(ctx: runtime.Context, instance_id: int, message: str = "") -> list:
    """催办 every open task of the instance that someone else holds or is offered.

    Raises NotAllowed, NotFound, Conflict (nothing to urge, or all urged moments ago).
    """
    require_manager(ctx.actor)
    instance = runtime.get_instance(ctx, instance_id)
    if instance.status not in ("running", "waiting"):
        raise Conflict("流程未在办理中，无需催办")
    urged, refusals = [], []
    for task in instance_tasks(ctx.session, instance.id):
        if task.status != "open":
            continue
        try:
            urged.append(urging.urge_task(ctx, task.id, message))
        except (Conflict, NotAllowed) as exc:
            refusals.append(exc.message)
    if not urged:
        raise Conflict(refusals[0] if refusals else "该流程当前没有待办任务可催办")
    return urged
