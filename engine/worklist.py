"""The staff workspace's read side and its one action rule.

Inbox tabs (我的待办 / 可认领 / 已办 / 我发起的 / 抄送我的), who may open a task page, which
buttons a user gets on it (`task_actions`, used by the pages and by every POST handler),
and which processes a user may start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, and_, exists, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from . import confidential, definitions, forms, runtime
from .access import Actor, can_see_task, is_candidate
from .db import Base, utcnow
from .errors import Conflict, NotAllowed, NotFound, TaskConflict
from .models import Group, HumanTask, ProcessDefinition, ProcessInstance, User
from .queries import (
    LIST_INSTANCE_OPTIONS,
    _claimable_filter,
    _sla_filter,
    instance_overdue,
    now_utc,
    task_sla,
)

TABS = ("mine", "claimable", "done", "started", "cc")
SLA_LEVELS = ("normal", "warning", "overdue")
SORTS = ("due", "newest", "started")
DEFAULT_SORT = {"mine": "due", "claimable": "due", "done": "newest", "started": "newest", "cc": "newest"}
PER_PAGE = 20
ACTIONS = ("complete", "claim", "unclaim", "assign", "delegate", "send_back", "urge", "cc")
# Instances in these states take task actions; suspended and finished ones do not.
ACTIVE_STATUSES = ("running", "waiting")


class TaskCopy(Base):
    """抄送: a read-only copy of a task for one user, listed in their 抄送我的 tab."""

    __tablename__ = "task_copies"
    __table_args__ = (
        UniqueConstraint("task_id", "username"),
        Index("ix_task_copy_user_created", "username", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"))
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instances.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str] = mapped_column(String(64))
    copied_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()


# --- who may open a task, and what they may do with it -----------------------------------


@dataclass
class ViewableTask:
    task: HumanTask
    instance: ProcessInstance
    via_copy: bool  # visible only because it was copied (抄送) to the actor: read-only


def has_copy(session, username: str, task_id: int) -> bool:
    return bool(
        session.scalar(
            select(TaskCopy.id).where(TaskCopy.task_id == task_id, TaskCopy.username == username).limit(1)
        )
    )


def get_viewable_task(ctx: runtime.Context, task_id: int) -> ViewableTask:
    """A task the actor may open: engine visibility, the instance's starter, or a copy.

    Raises NotFound (no such task), NotAllowed (someone else's task).
    """
    task = ctx.session.get(HumanTask, task_id)
    if task is None:
        raise NotFound(f"任务 {task_id} 不存在")
    instance = ctx.session.get(ProcessInstance, task.instance_id)
    if can_see_task(ctx.actor, task) or instance.started_by == ctx.actor.username:
        return ViewableTask(task, instance, via_copy=False)
    if has_copy(ctx.session, ctx.actor.username, task.id):
        return ViewableTask(task, instance, via_copy=True)
    raise NotAllowed("这是他人的任务，您无权查看")


def can_view_instance(ctx: runtime.Context, instance: ProcessInstance) -> bool:
    """Engine visibility of an instance, widened by copies (抄送) of any of its tasks."""
    if runtime.can_see_instance(ctx, instance):
        return True
    return bool(
        ctx.session.scalar(
            select(TaskCopy.id)
            .where(TaskCopy.instance_id == instance.id, TaskCopy.username == ctx.actor.username)
            .limit(1)
        )
    )


def _has_previous_user_task(session, task: HumanTask) -> bool:
    """Whether some user task of the instance was done before this one (退回 needs one)."""
    return bool(
        session.scalar(
            select(HumanTask.id)
            .where(
                HumanTask.instance_id == task.instance_id,
                HumanTask.status == "completed",
                HumanTask.id < task.id,
            )
            .limit(1)
        )
    )


def _involved(actor: Actor, task: HumanTask, instance: ProcessInstance) -> bool:
    return (
        actor.is_manager
        or instance.started_by == actor.username
        or actor.username in (task.assignee, task.owner, task.completed_by)
        or (task.assignee is None and is_candidate(actor, task))
    )


def task_actions(session, actor: Actor, task: HumanTask, instance: ProcessInstance) -> frozenset[str]:
    """The buttons `actor` gets on `task`: the one rule for the pages and their POST handlers.

    办理/退回 to its holder (or a candidate of an unclaimed task, completing claims it);
    认领 to candidates of an unclaimed task; 退回认领 to the holder of a claimed task that has
    candidates to return to and is not delegated; 转办 to the holder, a candidate of an
    unclaimed task, or a manager; 委派 to the holder of a task not already delegated;
    催办 to managers and the instance's starter when someone else holds or is offered it;
    抄送 to anyone involved (holder, candidate, completer, starter, manager), also after the
    task is done. Suspended or finished instances take no action but 抄送.
    """
    actions: set[str] = set()
    if _involved(actor, task, instance):
        actions.add("cc")
    if task.status != "open" or instance.status not in ACTIVE_STATUSES:
        return frozenset(actions)
    holder = task.assignee == actor.username
    offered = task.assignee is None and is_candidate(actor, task)
    has_candidates = bool(task.candidate_groups or task.candidate_users)
    if holder or offered:
        actions.add("complete")
    if offered:
        actions.add("claim")
    if holder and task.owner is None and has_candidates:
        actions.add("unclaim")
    if (holder and task.owner is None) or offered or actor.is_manager:
        actions.add("assign")
    if holder and task.owner is None:
        actions.add("delegate")
    if (holder or offered) and task.owner is None and _has_previous_user_task(session, task):
        actions.add("send_back")
    someone_else = (task.assignee and not holder) or (
        task.assignee is None and has_candidates and not offered
    )
    if someone_else and (actor.is_manager or instance.started_by == actor.username):
        actions.add("urge")
    return frozenset(actions)


def require_action(ctx: runtime.Context, task_id: int, action: str) -> ViewableTask:
    """The task, once `action` is allowed on it for the actor.

    Raises NotFound, NotAllowed, TaskConflict (task no longer open), Conflict (instance
    suspended or finished).
    """
    found = get_viewable_task(ctx, task_id)
    task, instance = found.task, found.instance
    if action != "cc":
        if task.status == "completed":
            raise TaskConflict("该任务已办结，无需再次操作")
        if task.status != "open":
            raise TaskConflict("该任务已被退回或取消")
        if instance.status == "suspended":
            raise Conflict("流程已挂起，暂不能办理")
        if instance.status not in ACTIVE_STATUSES:
            raise Conflict("流程已结束")
    if action not in task_actions(ctx.session, ctx.actor, task, instance):
        raise NotAllowed(_REFUSALS.get(action, "您无权对该任务执行此操作"))
    return found


_REFUSALS = {
    "complete": "该任务不由您办理",
    "claim": "该任务不能由您认领",
    "unclaim": "只能退回自己认领的任务",
    "assign": "只有任务的当前处理人可以转办",
    "delegate": "只有任务的当前处理人可以委派",
    "send_back": "您不能退回该任务",
    "urge": "只有管理人员和流程发起人可以催办",
    "cc": "您不能抄送该任务",
}


def my_open_tasks(ctx: runtime.Context, instance_id: int) -> list[HumanTask]:
    """Open tasks of the instance assigned to me, or offered to me and unclaimed."""
    rows = ctx.session.scalars(
        select(HumanTask)
        .where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
        .order_by(HumanTask.id)
    )
    actor = ctx.actor
    return [
        t for t in rows if t.assignee == actor.username or (t.assignee is None and is_candidate(actor, t))
    ]


# --- what a task page shows --------------------------------------------------------------


def prune_components(form: dict, drop: Callable[[dict], bool]) -> dict:
    """A copy of a form-js form without the components for which `drop` is true."""

    def keep(components):
        kept = []
        for component in components:
            if not isinstance(component, dict) or drop(component):
                continue
            if isinstance(component.get("components"), list):
                component = {**component, "components": keep(component["components"])}
            kept.append(component)
        return kept

    return {**form, "components": keep(form.get("components") or [])}


def form_for(actor: Actor, form: dict | None) -> dict | None:
    """The form as `actor` may see it: confidential fields removed unless they may see them."""
    if form is None or confidential.may_see_confidential(actor):
        return form
    hidden = forms.confidential_keys(form)
    return prune_components(form, lambda c: (c.get("key") or c.get("path")) in hidden)


def task_data(ctx: runtime.Context, task: HumanTask) -> dict:
    """What a task's form opens with: the instance's variables (for the form's text templates)
    overlaid with the task's prefill while it is open.

    Confidential values are hidden from actors who may not see them; form-js submits only the
    form's own fields, so the extra variables never come back.
    """
    instance = ctx.session.get(ProcessInstance, task.instance_id)
    data = runtime.instance_variables(ctx, instance)
    if task.status == "open":
        data.update(runtime.task_prefill(ctx, task))
    return data


def display_names(session, usernames) -> dict[str, str]:
    """username -> display name for the given users (unknown names map to themselves)."""
    names = {u for u in usernames if u}
    if not names:
        return {}
    rows = session.execute(select(User.username, User.display_name).where(User.username.in_(names)))
    found = {username: display or username for username, display in rows}
    return {u: found.get(u, u) for u in names}


def colleagues(session, exclude: str | None = None) -> list[tuple[str, str]]:
    """Active users as (username, display name), for 转办/委派/抄送 pickers."""
    rows = session.execute(
        select(User.username, User.display_name).where(User.active.is_(True)).order_by(User.username)
    )
    return [(u, d or u) for u, d in rows if u != exclude]


# --- inbox -------------------------------------------------------------------------------


@dataclass
class InboxRow:
    """One line of an inbox tab: a task (with its instance), or an instance (我发起的)."""

    instance: ProcessInstance
    task: HumanTask | None = None
    copy: TaskCopy | None = None
    open_tasks: list[HumanTask] = field(default_factory=list)

    @property
    def title(self) -> str:
        if self.task is not None:
            return self.task.name
        return "、".join(t.name for t in self.open_tasks)

    @property
    def link_task(self) -> HumanTask | None:
        return self.task or (self.open_tasks[0] if self.open_tasks else None)

    @property
    def due_at(self) -> datetime | None:
        if self.task is not None:
            return self.task.due_at if self.task.status == "open" else None
        dues = [t.due_at for t in self.open_tasks if t.due_at] + (
            [self.instance.due_at] if self.instance.due_at and self.instance.status in ACTIVE_STATUSES else []
        )
        return min(dues) if dues else None

    def sla(self, now: datetime | None = None) -> str | None:
        """normal | warning | overdue, or None when nothing is pending."""
        now = now or now_utc()
        if self.task is not None:
            return task_sla(self.task, now) if self.task.status == "open" else None
        if not self.open_tasks and self.instance.status not in ACTIVE_STATUSES:
            return None
        levels = [task_sla(t, now) for t in self.open_tasks]
        if instance_overdue(self.instance, now):
            levels.append("overdue")
        return max(levels, key=SLA_LEVELS.index) if levels else "normal"


@dataclass
class InboxPage:
    rows: list[InboxRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _text_filter(columns, text: str):
    pattern = _like(text.strip())
    return or_(*(column.ilike(pattern, escape="\\") for column in columns))


def _task_query(actor: Actor, tab: str):
    query = (
        select(HumanTask, ProcessInstance)
        .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
        .options(*LIST_INSTANCE_OPTIONS)
    )
    if tab == "mine":
        return query.where(HumanTask.assignee == actor.username, HumanTask.status == "open")
    if tab == "claimable":
        return query.where(_claimable_filter(actor))
    # 已办: what I completed, and what I sent back (退回 cancels my task and names me).
    return query.where(
        HumanTask.completed_by == actor.username, HumanTask.status.in_(("completed", "cancelled"))
    )


def _task_order(tab: str, sort: str):
    if sort == "started":
        return [ProcessInstance.started_at.desc(), HumanTask.id.desc()]
    if sort == "newest":
        if tab == "done":
            return [HumanTask.completed_at.desc(), HumanTask.id.desc()]
        return [HumanTask.created_at.desc(), HumanTask.id.desc()]
    return [HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id]


def _count(session, query) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def _open_sla_exists(sla: str, now: datetime):
    return exists().where(HumanTask.instance_id == ProcessInstance.id, _sla_filter(sla, now))


def inbox(
    ctx: runtime.Context,
    *,
    tab: str = "mine",
    process_key: str | None = None,
    sla: str | None = None,
    text: str | None = None,
    sort: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> InboxPage:
    """One page of an inbox tab, filtered (process, SLA, text in business key or subject) and sorted.

    Unknown tab, SLA or sort values fall back to the defaults.
    """
    tab = tab if tab in TABS else "mine"
    sort = sort if sort in SORTS else DEFAULT_SORT[tab]
    sla = sla if sla in SLA_LEVELS else None
    page = max(1, page)
    now = now_utc()
    if tab == "started":
        return _started_page(ctx, process_key, sla, text, sort, page, per_page, now)
    if tab == "cc":
        query = (
            select(TaskCopy, HumanTask, ProcessInstance)
            .join(HumanTask, HumanTask.id == TaskCopy.task_id)
            .join(ProcessInstance, ProcessInstance.id == TaskCopy.instance_id)
            .where(TaskCopy.username == ctx.actor.username)
            .options(*LIST_INSTANCE_OPTIONS)
        )
        order = {
            "due": [HumanTask.due_at.is_(None), HumanTask.due_at, TaskCopy.id.desc()],
            "started": [ProcessInstance.started_at.desc(), TaskCopy.id.desc()],
        }.get(sort, [TaskCopy.created_at.desc(), TaskCopy.id.desc()])
    else:
        query = _task_query(ctx.actor, tab)
        order = _task_order(tab, sort)
    if process_key:
        query = query.where(HumanTask.process_key == process_key)
    if sla:
        query = query.where(_sla_filter(sla, now))
    if text and text.strip():
        query = query.where(_text_filter((HumanTask.business_key, HumanTask.subject), text))
    total = _count(ctx.session, query)
    result = ctx.session.execute(query.order_by(*order).offset((page - 1) * per_page).limit(per_page))
    rows = []
    for row in result:
        if tab == "cc":
            copy, task, instance = row
            rows.append(InboxRow(instance=instance, task=task, copy=copy))
        else:
            task, instance = row
            rows.append(InboxRow(instance=instance, task=task))
    return InboxPage(rows, total, page, per_page)


def _started_page(ctx, process_key, sla, text, sort, page, per_page, now) -> InboxPage:
    query = (
        select(ProcessInstance)
        .where(ProcessInstance.started_by == ctx.actor.username)
        .options(*LIST_INSTANCE_OPTIONS)
    )
    if process_key:
        query = query.where(ProcessInstance.process_key == process_key)
    if sla == "overdue":
        late = and_(ProcessInstance.status.in_(ACTIVE_STATUSES), ProcessInstance.due_at <= now)
        query = query.where(or_(late, _open_sla_exists(sla, now)))
    elif sla:
        query = query.where(_open_sla_exists(sla, now))
    if text and text.strip():
        query = query.where(_text_filter((ProcessInstance.business_key, ProcessInstance.subject), text))
    if sort == "due":
        order = [ProcessInstance.due_at.is_(None), ProcessInstance.due_at, ProcessInstance.id.desc()]
    else:
        order = [ProcessInstance.started_at.desc(), ProcessInstance.id.desc()]
    total = _count(ctx.session, query)
    instances = list(
        ctx.session.scalars(query.order_by(*order).offset((page - 1) * per_page).limit(per_page))
    )
    open_by_instance: dict[int, list[HumanTask]] = {i.id: [] for i in instances}
    if instances:
        for task in ctx.session.scalars(
            select(HumanTask)
            .where(HumanTask.instance_id.in_(list(open_by_instance)), HumanTask.status == "open")
            .order_by(HumanTask.id)
        ):
            open_by_instance[task.instance_id].append(task)
    rows = [InboxRow(instance=i, open_tasks=open_by_instance[i.id]) for i in instances]
    return InboxPage(rows, total, page, per_page)


def tab_counts(ctx: runtime.Context) -> dict[str, int]:
    """Counts shown on the tabs: my open tasks, claimable tasks, unread copies."""
    actor = ctx.actor
    session = ctx.session
    return {
        "mine": open_task_count(session, actor.username),
        "claimable": session.scalar(select(func.count(HumanTask.id)).where(_claimable_filter(actor))) or 0,
        "cc": session.scalar(
            select(func.count(TaskCopy.id)).where(
                TaskCopy.username == actor.username, TaskCopy.read_at.is_(None)
            )
        )
        or 0,
    }


def open_task_count(session, username: str) -> int:
    """How many open tasks are assigned to the user (the header's counter)."""
    query = select(func.count(HumanTask.id)).where(HumanTask.assignee == username, HumanTask.status == "open")
    return session.scalar(query) or 0


def process_names(session) -> dict[str, str]:
    """Process key -> its latest version's name."""
    return {d.key: d.name or d.key for d in definitions.list_definitions(session)}


# --- who may start what ------------------------------------------------------------------


@dataclass(frozen=True)
class StartRule:
    """Who may start a process; empty groups and users mean every staff member."""

    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    source: str = "anyone"  # candidateStarter | lane | first_task | anyone

    def allows(self, actor: Actor) -> bool:
        if not self.groups and not self.users:
            return True
        return bool(actor.groups & self.groups) or actor.username in self.users


_CAMUNDA = "{http://camunda.org/schema/1.0/bpmn}"
_BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
_rule_cache: dict[tuple[int, str], StartRule] = {}
_rule_lock = threading.Lock()


def _names(value: str | None) -> frozenset[str]:
    if not value or "${" in value or "#{" in value:
        return frozenset()
    return frozenset(v.strip() for v in value.split(",") if v.strip())


def _group_for_lane(session, lane_name: str) -> str | None:
    for name, title in session.execute(select(Group.name, Group.title)):
        if lane_name in (name, title):
            return name
    return None


def _first_user_tasks(process, start_id: str) -> list[str]:
    """User tasks reached from the start event without passing another user task."""
    flows: dict[str, list[str]] = {}
    for flow in process.iter(f"{_BPMN}sequenceFlow"):
        flows.setdefault(flow.get("sourceRef"), []).append(flow.get("targetRef"))
    kinds = {
        node.get("id"): etree.QName(node).localname for node in process.iter() if isinstance(node.tag, str)
    }
    found, seen, todo = [], {start_id}, list(flows.get(start_id, []))
    while todo:
        node_id = todo.pop(0)
        if node_id in seen:
            continue
        seen.add(node_id)
        if kinds.get(node_id) == "userTask":
            found.append(node_id)
        else:
            todo.extend(flows.get(node_id, []))
    return found


def _compute_start_rule(session, definition: ProcessDefinition) -> StartRule:
    root = etree.fromstring(definitions.bpmn_xml(session, definition).encode(), definitions._SAFE_XML)
    process = next(p for p in root.iter(f"{_BPMN}process") if p.get("id") == definition.key)
    groups = _names(process.get(f"{_CAMUNDA}candidateStarterGroups"))
    users = _names(process.get(f"{_CAMUNDA}candidateStarterUsers"))
    if groups or users:
        return StartRule(groups, users, "candidateStarter")
    starts = [n for n in process.findall(f"{_BPMN}startEvent")]
    start = next((s for s in starts if s.get(f"{_CAMUNDA}formRef") or s.get(f"{_CAMUNDA}formKey")), None)
    start = start if start is not None else (starts[0] if starts else None)
    if start is None:
        return StartRule()
    for lane in process.iter(f"{_BPMN}lane"):
        refs = {(ref.text or "").strip() for ref in lane.iterfind(f"{_BPMN}flowNodeRef")}
        if start.get("id") in refs:
            group = _group_for_lane(session, lane.get("name") or "")
            if group:
                return StartRule(frozenset({group}), frozenset(), "lane")
    groups, users = set(), set()
    for task_id in _first_user_tasks(process, start.get("id")):
        element = definition.elements.get(task_id, {})
        groups |= _names(element.get("candidate_groups"))
        users |= _names(element.get("candidate_users"))
    if groups or users:
        return StartRule(frozenset(groups), frozenset(users), "first_task")
    return StartRule()


def start_rule(session, definition: ProcessDefinition) -> StartRule:
    """Who may start this process version (cached: a version never changes).

    In order: the process's camunda:candidateStarterGroups / candidateStarterUsers; else the
    group of the lane holding the start event; else the candidate groups and users of the
    first user tasks after the start event; else every staff member.
    """
    key = (definition.id, definition.checksum)  # ids repeat across databases (tests)
    rule = _rule_cache.get(key)
    if rule is None:
        rule = _compute_start_rule(session, definition)
        with _rule_lock:
            _rule_cache[key] = rule
    return rule


def startable_definitions(ctx: runtime.Context) -> list[ProcessDefinition]:
    """The latest version of each process that has a start form and that the actor may start."""
    return [
        d
        for d in definitions.list_definitions(ctx.session)
        if d.start_form and start_rule(ctx.session, d).allows(ctx.actor)
    ]


def startable_definition(ctx: runtime.Context, process_key: str) -> ProcessDefinition:
    """The latest version of a process the actor may start from its start form.

    Raises NotFound (unknown process, or no start form), NotAllowed (not for the actor's groups).
    """
    definition = definitions.get_definition(ctx.session, process_key)
    if not definition.start_form:
        raise NotFound(f"流程 {process_key} 没有开始表单，不能在此发起")
    if not start_rule(ctx.session, definition).allows(ctx.actor):
        raise NotAllowed("您所在的科室不能发起该流程")
    return definition
