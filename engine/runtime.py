"""Running instances: every operation loads the state, steps the workflow and saves it,
keeping the task, timer and event projections in step inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from . import audit, confidential, definitions, forms, store
from .access import Actor, can_see_task, is_candidate
from .config import Settings
from .connectors import script_helpers
from .db import utcnow
from .errors import Conflict, NotAllowed, NotFound, ScriptError, TaskConflict, ValidationFailed
from .models import HumanTask, ProcessDefinition, ProcessInstance, TaskCandidate, Timer, User
from .scripting import ScriptEngine

FINISHED = ("completed", "terminated")
BUSINESS_KEY_PREFIX = {
    "complaint_rectification": "TS",
    "credit_objection": "YY",
    "credit_repair": "XF",
    "judicial_suggestion": "SF",
}
SUBJECT_VARIABLES = ("subject_name", "applicant_name", "issuing_organ", "doc_no", "title")


@dataclass
class Context:
    """One unit of work: the session (its transaction), who acts, and the settings."""

    session: Session
    actor: Actor
    settings: Settings


@dataclass
class Loaded:
    instance: ProcessInstance
    workflow: BpmnWorkflow


# --- load / step / save ----------------------------------------------------------------


def _script_engine(ctx: Context, instance: ProcessInstance) -> ScriptEngine:
    return ScriptEngine(helpers=script_helpers(ctx, instance), time_limit=ctx.settings.script_time_limit)


def load_instance(ctx: Context, instance: ProcessInstance) -> Loaded:
    """The instance's workflow, rebuilt from its encrypted state and its version's cached spec."""
    spec, subprocess_specs = definitions.load_spec(ctx.session, instance.definition)
    state = ctx.settings.cipher.decrypt(instance.state)
    workflow = store.load_state(state, spec, subprocess_specs, _script_engine(ctx, instance))
    return Loaded(instance, workflow)


def _run(action, *args):
    """Run a SpiffWorkflow step, turning script failures into a clear engine error."""
    try:
        return action(*args)
    except ScriptError:
        raise
    except SpiffWorkflowException as exc:
        raise ScriptError(f"流程执行出错：{_spiff_message(exc)}") from exc


def _spiff_message(exc: SpiffWorkflowException) -> str:
    parts = [str(exc.args[0]) if exc.args else exc.__class__.__name__]
    parts += [n for n in getattr(exc, "notes", [])]
    return "；".join(parts)


def _step(loaded: Loaded) -> None:
    _run(loaded.workflow.do_engine_steps)


@dataclass
class Snapshot:
    """What the projections need from the task tree, gathered in one walk (long histories make
    every walk costly)."""

    completed: bool
    variables: dict
    ready_user_tasks: list
    timer_tasks: list


def snapshot(workflow: BpmnWorkflow) -> Snapshot:
    if workflow.is_completed():
        data = workflow.data or (workflow.last_task.data if workflow.last_task else {})
        return Snapshot(True, dict(data), [], [])
    merged: dict = {}
    ready, timers = [], []
    for task in workflow.get_tasks(state=TaskState.READY | TaskState.WAITING | TaskState.STARTED):
        merged.update(task.data)
        if task.state == TaskState.READY and task.task_spec.manual:
            ready.append(task)
        elif task.state == TaskState.WAITING and _waits_for_timer(task):
            timers.append(task)
    if not merged and workflow.last_task is not None:
        merged.update(workflow.last_task.data)
    return Snapshot(False, merged, ready, timers)


def save_instance(ctx: Context, loaded: Loaded) -> list[HumanTask]:
    """Serialize the state and bring the task, timer and status projections in line with it.

    Returns the instance's open task rows as they now are.
    """
    instance, workflow = loaded.instance, loaded.workflow
    current = snapshot(workflow)
    instance.state = ctx.settings.cipher.encrypt(store.dump_state(workflow))
    instance.subject = _subject(current.variables) or instance.subject
    instance.due_at = _instance_deadline(ctx, current.variables)
    open_rows = _sync_tasks(ctx, loaded, current.ready_user_tasks)
    _sync_timers(ctx, loaded, current.timer_tasks)
    if instance.status not in ("suspended", "terminated", "error"):
        instance.status = "completed" if current.completed else "running" if open_rows else "waiting"
    if instance.status == "completed" and instance.ended_at is None:
        instance.ended_at = utcnow()
        audit.record_event(
            ctx.session, "instance_completed", user=ctx.actor.username, instance_id=instance.id
        )
    ctx.session.flush()
    return open_rows


def workflow_variables(workflow: BpmnWorkflow) -> dict:
    """The instance's current variables: the data of its current tasks merged (or the final data)."""
    return snapshot(workflow).variables


def _subject(variables: dict) -> str:
    for key in SUBJECT_VARIABLES:
        value = variables.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:500]
    return ""


def _as_deadline(ctx: Context, value) -> datetime | None:
    """A date (end of office day), an aware datetime, or an ISO string of either."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=ctx.settings.tzinfo)
    if isinstance(value, date):
        return ctx.settings.calendar.end_of_day(value)
    return None


def _instance_deadline(ctx: Context, variables: dict) -> datetime | None:
    deadlines = [
        _as_deadline(ctx, variables.get(name))
        for name, met_by in ctx.settings.deadline_variables.items()
        if not (met_by and variables.get(met_by))
    ]
    deadlines = [d for d in deadlines if d is not None]
    return min(deadlines) if deadlines else None


# --- task projection ---------------------------------------------------------------------


def _element(definition: ProcessDefinition, element_id: str) -> dict:
    return definition.elements.get(element_id, {})


def _evaluate(loaded: Loaded, task, expression: str):
    return _run(loaded.workflow.script_engine.evaluate, task, expression)


def _names(loaded: Loaded, task, value: str | None) -> list[str]:
    """A Camunda list attribute: literal 'a, b' or an expression giving a string or a list."""
    if not value:
        return []
    if "${" in value or "#{" in value:
        result = _evaluate(loaded, task, value)
        if isinstance(result, str):
            return [v.strip() for v in result.split(",") if v.strip()]
        if isinstance(result, (list, tuple, set)):
            return [str(v) for v in result]
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _due_at(ctx: Context, loaded: Loaded, task, expression: str | None) -> datetime | None:
    if not expression:
        return None
    return _as_deadline(ctx, _evaluate(loaded, task, expression))


def _open_tasks(ctx: Context, instance_id: int) -> list[HumanTask]:
    # Without a flush first: rows changed in this step keep their in-memory status.
    query = select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
    rows = ctx.session.scalars(query.execution_options(autoflush=False))
    return [row for row in rows if row.status == "open"]


def _sync_tasks(ctx: Context, loaded: Loaded, ready_user_tasks: list) -> list[HumanTask]:
    """Open a row for each new ready user task, cancel rows whose task is gone; the open rows."""
    instance = loaded.instance
    ready = {str(t.id): t for t in ready_user_tasks}
    kept, gone = [], []
    for row in _open_tasks(ctx, instance.id):
        (kept if row.task_guid in ready else gone).append(row)
    close_tasks(ctx, gone, "cancelled")
    for row in kept:
        if row.subject != instance.subject:  # even an equal value would make the flush visit the row
            row.subject = instance.subject
    known = {row.task_guid for row in kept}
    for guid, task in ready.items():
        if guid not in known:
            row = _new_human_task(ctx, loaded, task)
            ctx.session.add(row)
            kept.append(row)
    return kept


def _new_human_task(ctx: Context, loaded: Loaded, task) -> HumanTask:
    instance = loaded.instance
    element_id = task.task_spec.bpmn_id
    meta = _element(instance.definition, element_id)
    groups = _names(loaded, task, meta.get("candidate_groups"))
    users = _names(loaded, task, meta.get("candidate_users"))
    assignee = (_names(loaded, task, meta.get("assignee")) or [None])[0]
    due_at = _due_at(ctx, loaded, task, meta.get("due_date"))
    row = HumanTask(
        instance_id=instance.id,
        task_guid=str(task.id),
        element_id=element_id,
        name=task.task_spec.bpmn_name or element_id,
        process_key=instance.process_key,
        business_key=instance.business_key,
        subject=instance.subject,
        form_key=meta.get("form_ref"),
        assignee=assignee,
        candidate_groups=groups,
        candidate_users=users,
        due_at=due_at,
        warn_at=ctx.settings.calendar.warning_start(due_at) if due_at else None,
    )
    row.candidates = [TaskCandidate(kind="group", name=g) for g in groups] + [
        TaskCandidate(kind="user", name=u) for u in users
    ]
    return row


def close_tasks(ctx: Context, rows: list[HumanTask], status: str, by: str | None = None) -> None:
    """Close task rows; their candidate rows go (they exist only to find claimable open tasks)."""
    if not rows:
        return
    now = utcnow()
    for row in rows:
        row.status, row.completed_at = status, now
        if by is not None:
            row.completed_by = by
    ctx.session.execute(
        delete(TaskCandidate)
        .where(TaskCandidate.task_id.in_([row.id for row in rows]))
        .execution_options(synchronize_session=False, autoflush=False)
    )


# --- timer projection --------------------------------------------------------------------


def _event_definitions(task) -> list:
    """What a waiting task waits for; an event-based gateway waits for all its branches' events."""
    definition = getattr(task.task_spec, "event_definition", None)
    if isinstance(definition, MultipleEventDefinition):
        return list(definition.event_definitions)
    return [definition] if definition is not None else []


def _waits_for_timer(task) -> bool:
    return any(isinstance(d, TimerEventDefinition) for d in _event_definitions(task))


def _timer_tasks(workflow: BpmnWorkflow):
    return [t for t in workflow.get_tasks(state=TaskState.WAITING) if _waits_for_timer(t)]


def _timer_element_id(task) -> str:
    """The diagram element of a timer: the catch event after an event-based gateway, else the task's own."""
    definition = getattr(task.task_spec, "event_definition", None)
    if isinstance(definition, MultipleEventDefinition):
        # The gateway took over its branches' definitions, one per outgoing event, in order.
        for branch, branch_definition in zip(
            task.task_spec.outputs, definition.event_definitions, strict=False
        ):
            if isinstance(branch_definition, TimerEventDefinition):
                return branch.bpmn_id
    return task.task_spec.bpmn_id


def _timer_due(task) -> datetime | None:
    value = task._get_internal_data("event_value")
    if isinstance(value, dict):  # cycle timers keep {"cycles", "next", "duration"}
        value = value.get("next")
    if not isinstance(value, str):
        return None
    try:
        return TimerEventDefinition.get_datetime(value)
    except ValueError:
        return None


def _sync_timers(ctx: Context, loaded: Loaded, timer_tasks: list) -> None:
    instance = loaded.instance
    if not timer_tasks and not definitions.has_timer_events(ctx.session, instance.definition):
        return  # nothing to project, nothing ever projected: skip the query
    existing = {
        t.task_guid: t for t in ctx.session.scalars(select(Timer).where(Timer.instance_id == instance.id))
    }
    wanted = {}
    if instance.status not in FINISHED:
        for task in timer_tasks:
            due = _timer_due(task)
            if due is not None:
                wanted[str(task.id)] = (task, due)
    for guid, row in existing.items():
        if guid not in wanted:
            ctx.session.delete(row)
    for guid, (task, due) in wanted.items():
        row = existing.get(guid)
        if row is None:
            ctx.session.add(
                Timer(instance_id=instance.id, task_guid=guid, element_id=_timer_element_id(task), due_at=due)
            )
        elif row.due_at != due:
            row.due_at = due


# --- instances ----------------------------------------------------------------------------


def start_instance(
    ctx: Context,
    process_key: str,
    *,
    business_key: str | None = None,
    variables: dict | None = None,
    version: int | None = None,
) -> ProcessInstance:
    """Start a process with its start form's data.

    Raises NotFound (unknown key/version), ValidationFailed (start data), ScriptError.
    """
    definition = definitions.get_definition(ctx.session, process_key, version)
    variables = variables or {}
    if not isinstance(variables, dict):
        raise ValidationFailed({"variables": ["必须是对象"]})
    if definition.start_form:
        variables = forms.validate_submission(definition.forms[definition.start_form], variables)
    instance = ProcessInstance(
        definition=definition,
        definition_id=definition.id,
        process_key=definition.key,
        version=definition.version,
        business_key=business_key,
        started_by=ctx.actor.username,
        subject=_subject(variables),
        status="running",
    )
    ctx.session.add(instance)
    ctx.session.flush()
    if not instance.business_key:
        prefix = BUSINESS_KEY_PREFIX.get(definition.key, "LC")
        instance.business_key = (
            f"{prefix}{instance.started_at.astimezone(ctx.settings.tzinfo):%Y}{instance.id:06d}"
        )
    spec, subprocess_specs = definitions.load_spec(ctx.session, definition)
    workflow = store.Workflow(spec, subprocess_specs, script_engine=_script_engine(ctx, instance))
    loaded = Loaded(instance, workflow)
    start = workflow.get_tasks(state=TaskState.READY)
    for task in start:
        task.data.update(variables)
    _step(loaded)
    audit.record_event(
        ctx.session,
        "instance_started",
        user=ctx.actor.username,
        instance_id=instance.id,
        comment=variables.get("opinion") if isinstance(variables.get("opinion"), str) else None,
        details={"process_key": definition.key, "version": definition.version},
    )
    save_instance(ctx, loaded)
    return instance


def get_instance(ctx: Context, instance_id: int, *, for_update: bool = False) -> ProcessInstance:
    """An instance visible to the actor. Raises NotFound."""
    instance = ctx.session.get(ProcessInstance, instance_id)
    if instance is None or not can_see_instance(ctx, instance):
        raise NotFound(f"流程实例 {instance_id} 不存在")
    return instance


def can_see_instance(ctx: Context, instance: ProcessInstance) -> bool:
    actor = ctx.actor
    if actor.is_manager or instance.started_by == actor.username:
        return True
    rows = ctx.session.scalars(select(HumanTask).where(HumanTask.instance_id == instance.id))
    return any(can_see_task(actor, row) for row in rows)


def _require_manager(ctx: Context) -> None:
    if not ctx.actor.is_manager:
        raise NotAllowed("只有管理人员可以执行此操作")


def _require_active(instance: ProcessInstance) -> None:
    if instance.status == "suspended":
        raise Conflict("流程已挂起，请先恢复")
    if instance.status in FINISHED:
        raise Conflict("流程已结束")


def _waiting_message_definitions(workflow: BpmnWorkflow, name: str):
    for task in workflow.get_tasks(state=TaskState.WAITING):
        for definition in _event_definitions(task):
            if isinstance(definition, MessageEventDefinition) and definition.name == name:
                yield definition


def send_message(ctx: Context, instance_id: int, name: str, payload=None) -> ProcessInstance:
    """Deliver a named message to an instance. Raises NotFound, Conflict (nothing waits for it)."""
    instance = get_instance(ctx, instance_id)
    _require_active(instance)
    loaded = load_instance(ctx, instance)
    waiting = next(_waiting_message_definitions(loaded.workflow, name), None)
    if waiting is None:
        raise Conflict(f"流程当前没有等待消息 {name}")
    result_var = getattr(waiting, "result_var", None) or name
    event = BpmnEvent(waiting, payload={"payload": payload, "result_var": result_var})
    _run(loaded.workflow.send_event, event)
    _step(loaded)
    audit.record_event(
        ctx.session, "message", user=ctx.actor.username, instance_id=instance.id, details={"name": name}
    )
    save_instance(ctx, loaded)
    return instance


def _force_due(task, now: datetime) -> None:
    """Make a waiting timer due now, as if its time had come."""
    past = (now - timedelta(seconds=1)).isoformat()
    if any(isinstance(d, CycleTimerEventDefinition) for d in _event_definitions(task)):
        value = task._get_internal_data("event_value")
        if isinstance(value, dict):
            value["next"] = past
            return
    task._set_internal_data(event_value=past)


def fire_timers(ctx: Context, instance_id: int, element_id: str | None = None) -> ProcessInstance:
    """Fire an instance's waiting timers now (operations and tests). Raises NotAllowed, NotFound, Conflict."""
    _require_manager(ctx)
    instance = get_instance(ctx, instance_id)
    _require_active(instance)
    loaded = load_instance(ctx, instance)
    timers = [
        t
        for t in _timer_tasks(loaded.workflow)
        if element_id in (None, t.task_spec.bpmn_id, _timer_element_id(t))
    ]
    if not timers:
        raise Conflict("没有等待中的定时器" + (f" {element_id}" if element_id else ""))
    now = datetime.now(UTC)
    for task in timers:
        _force_due(task, now)
    _run(loaded.workflow.refresh_timers)
    _step(loaded)
    audit.record_event(
        ctx.session,
        "timers_fired",
        user=ctx.actor.username,
        instance_id=instance.id,
        details={"elements": sorted({_timer_element_id(t) for t in timers}), "manual": True},
    )
    save_instance(ctx, loaded)
    return instance


def run_due_timers(ctx: Context, instance_id: int) -> ProcessInstance:
    """The worker's step: let timers whose time has come fire, then run the engine."""
    instance = ctx.session.get(ProcessInstance, instance_id)
    if instance is None:
        raise NotFound(f"流程实例 {instance_id} 不存在")
    _require_active(instance)
    loaded = load_instance(ctx, instance)
    before = {str(t.id) for t in _timer_tasks(loaded.workflow)}
    _run(loaded.workflow.refresh_timers)
    _step(loaded)
    after = {str(t.id) for t in _timer_tasks(loaded.workflow)}
    fired = before - after
    if fired:
        audit.record_event(
            ctx.session,
            "timers_fired",
            user=ctx.actor.username,
            instance_id=instance.id,
            details={"count": len(fired)},
        )
    save_instance(ctx, loaded)
    return instance


def suspend_instance(ctx: Context, instance_id: int, reason: str) -> ProcessInstance:
    """Pause an instance: no task actions or timers until resumed. Raises NotAllowed, NotFound, Conflict."""
    _require_manager(ctx)
    instance = get_instance(ctx, instance_id)
    _require_active(instance)
    instance.status = "suspended"
    audit.record_event(
        ctx.session, "suspended", user=ctx.actor.username, instance_id=instance.id, comment=reason
    )
    return instance


def resume_instance(ctx: Context, instance_id: int, reason: str = "") -> ProcessInstance:
    """Resume a suspended instance. Raises NotAllowed, NotFound, Conflict."""
    _require_manager(ctx)
    instance = get_instance(ctx, instance_id)
    if instance.status != "suspended":
        raise Conflict("流程未处于挂起状态")
    loaded = load_instance(ctx, instance)
    instance.status = "running"
    audit.record_event(
        ctx.session, "resumed", user=ctx.actor.username, instance_id=instance.id, comment=reason
    )
    save_instance(ctx, loaded)
    return instance


def terminate_instance(ctx: Context, instance_id: int, reason: str) -> ProcessInstance:
    """End an instance now, cancelling its open tasks and timers. Raises NotAllowed, NotFound, Conflict."""
    _require_manager(ctx)
    if not (reason or "").strip():
        raise ValidationFailed({"reason": ["终止流程必须填写原因"]})
    instance = get_instance(ctx, instance_id)
    if instance.status in FINISHED:
        raise Conflict("流程已结束")
    loaded = load_instance(ctx, instance)
    _run(loaded.workflow.cancel)
    instance.status = "terminated"
    instance.ended_at = utcnow()
    audit.record_event(
        ctx.session, "terminated", user=ctx.actor.username, instance_id=instance.id, comment=reason
    )
    save_instance(ctx, loaded)
    return instance


# --- tasks --------------------------------------------------------------------------------


def get_task(ctx: Context, task_id: int) -> HumanTask:
    """A task visible to the actor. Raises NotFound."""
    return task_and_instance(ctx, task_id)[0]


def task_and_instance(ctx: Context, task_id: int) -> tuple[HumanTask, ProcessInstance]:
    """A task visible to the actor and its instance, in one query. Raises NotFound.

    Keep the instance referenced while using the task: the session holds objects weakly, so
    a later lookup of a dropped instance would be a query again.
    """
    found = ctx.session.execute(
        select(HumanTask, ProcessInstance)
        .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
        .where(HumanTask.id == task_id)
    ).first()
    if found is None or not can_see_task(ctx.actor, found[0]):
        raise NotFound(f"任务 {task_id} 不存在")
    return found[0], found[1]


def _lock_task(ctx: Context, task_id: int) -> tuple[HumanTask, ProcessInstance]:
    task, instance = task_and_instance(ctx, task_id)
    if task.status != "open":
        raise TaskConflict("该任务已办结" if task.status == "completed" else "该任务已取消")
    _require_active(instance)
    # Every action records an audit event, which moves the instance's chain head: the
    # version-checked UPDATE makes concurrent actions on one instance conflict (409).
    return task, instance


def _spiff_task(loaded: Loaded, task: HumanTask):
    from uuid import UUID

    spiff = loaded.workflow.get_task_from_id(UUID(task.task_guid))
    if spiff is None or spiff.state != TaskState.READY:
        raise TaskConflict("该任务已不在待办状态")
    return spiff


def _user_exists(ctx: Context, username: str) -> User:
    user = ctx.session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise ValidationFailed({"username": [f"用户 {username} 不存在或已停用"]})
    return user


def claim_task(ctx: Context, task_id: int) -> HumanTask:
    """Take an unassigned task offered to one of my groups. Raises NotFound, NotAllowed, TaskConflict."""
    task, instance = _lock_task(ctx, task_id)
    if task.assignee == ctx.actor.username:
        return task
    if task.assignee:
        raise TaskConflict(f"该任务已由 {task.assignee} 认领")
    if not is_candidate(ctx.actor, task):
        raise NotAllowed("您不是该任务的候选人")
    task.assignee = ctx.actor.username
    _task_event(ctx, task, "claimed")
    ctx.session.flush()
    return task


def unclaim_task(ctx: Context, task_id: int) -> HumanTask:
    """Give a claimed task back to its groups. Raises NotFound, NotAllowed, TaskConflict."""
    task, instance = _lock_task(ctx, task_id)
    if task.assignee != ctx.actor.username and not ctx.actor.is_manager:
        raise TaskConflict("只能退回自己认领的任务") if task.assignee else TaskConflict("该任务尚未被认领")
    if task.owner:
        raise TaskConflict("委派中的任务不能退回认领")
    task.assignee = None
    _task_event(ctx, task, "unclaimed")
    ctx.session.flush()
    return task


def _require_holder(ctx: Context, task: HumanTask) -> None:
    if task.assignee != ctx.actor.username and not ctx.actor.is_manager:
        if task.assignee is None and is_candidate(ctx.actor, task):
            return
        raise NotAllowed("只有任务的当前处理人可以执行此操作")


def assign_task(ctx: Context, task_id: int, username: str, comment: str | None = None) -> HumanTask:
    """转办: hand the task to another user. Raises NotFound, NotAllowed, TaskConflict, ValidationFailed."""
    task, instance = _lock_task(ctx, task_id)
    _require_holder(ctx, task)
    _user_exists(ctx, username)
    previous = task.assignee
    task.assignee = username
    task.owner = None
    _task_event(ctx, task, "assigned", comment, {"from": previous, "to": username})
    ctx.session.flush()
    return task


def delegate_task(ctx: Context, task_id: int, username: str, comment: str | None = None) -> HumanTask:
    """委派: ask another user to work the task; it comes back to me when they finish.

    Raises NotFound, NotAllowed, TaskConflict, ValidationFailed.
    """
    task, instance = _lock_task(ctx, task_id)
    if task.assignee != ctx.actor.username:
        raise NotAllowed("只有任务的当前处理人可以委派")
    if task.owner:
        raise TaskConflict("该任务已在委派中")
    _user_exists(ctx, username)
    if username == ctx.actor.username:
        raise ValidationFailed({"username": ["不能委派给自己"]})
    task.owner = ctx.actor.username
    task.assignee = username
    _task_event(ctx, task, "delegated", comment, {"to": username})
    ctx.session.flush()
    return task


def _task_event(ctx: Context, task: HumanTask, type: str, comment=None, details=None) -> None:
    audit.record_task_event(
        ctx.session, task, type, user=ctx.actor.username, comment=comment, details=details
    )


def task_form(ctx: Context, task: HumanTask) -> dict | None:
    instance = ctx.session.get(ProcessInstance, task.instance_id)
    return instance.definition.forms.get(task.form_key) if task.form_key else None


def _check_can_complete(ctx: Context, task: HumanTask) -> None:
    if task.assignee == ctx.actor.username:
        return
    if task.assignee is None and is_candidate(ctx.actor, task):
        return
    if task.assignee:
        raise NotAllowed(f"该任务由 {task.assignee} 办理，您不能提交")
    raise NotAllowed("您不是该任务的候选人")


@dataclass
class Completion:
    task: HumanTask
    instance: ProcessInstance
    next_tasks: list[HumanTask]  # the open tasks the actor may work next
    open_tasks: list[HumanTask] | None = None  # every open task of the instance, when known


def complete_task(ctx: Context, task_id: int, data: dict | None, comment: str | None = None) -> Completion:
    """Submit a task's form; a delegated task goes back to its owner instead of completing.

    Raises NotFound, NotAllowed, TaskConflict/Conflict, ValidationFailed, ScriptError.
    """
    task, instance = _lock_task(ctx, task_id)
    _check_can_complete(ctx, task)
    loaded = load_instance(ctx, instance)
    spiff = _spiff_task(loaded, task)
    form = task_form(ctx, task)
    cleaned = forms.validate_submission(form, data or {}, context=spiff.data) if form else _plain_data(data)
    cleaned = confidential.strip_for(ctx.actor, instance.definition, cleaned)
    comment = (comment or cleaned.get("opinion") or "").strip() or None
    if task.owner:
        return _resolve_delegation(ctx, task, instance, cleaned, comment)
    task.assignee = ctx.actor.username
    spiff.data.update(cleaned)
    _run_complete_listeners(loaded, spiff, _element(instance.definition, task.element_id))
    _run(spiff.run)
    _step(loaded)
    task.draft = None
    close_tasks(ctx, [task], "completed", by=ctx.actor.username)
    _task_event(ctx, task, "completed", comment, {"fields": sorted(cleaned)})
    open_rows = save_instance(ctx, loaded)
    return Completion(task, instance, _workable_by(ctx.actor, open_rows), open_rows)


def _run_complete_listeners(loaded: Loaded, spiff, meta: dict) -> None:
    """Camunda `taskListener event="complete"` scripts: checks (reject()) and derived values."""
    for script in meta.get("on_complete", []):
        _run(loaded.workflow.script_engine.execute, spiff, script)


def _plain_data(data) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationFailed({"data": ["必须是对象"]})
    return data


def _resolve_delegation(ctx, task, instance, cleaned, comment) -> Completion:
    delegate = task.assignee
    task.assignee, task.owner = task.owner, None
    task.draft = cleaned
    _task_event(ctx, task, "delegation_resolved", comment, {"delegate": delegate})
    ctx.session.flush()
    return Completion(task, instance, [task] if task.assignee == ctx.actor.username else [])


def _workable_by(actor: Actor, rows: list[HumanTask]) -> list[HumanTask]:
    return [
        t for t in rows if t.assignee == actor.username or (t.assignee is None and is_candidate(actor, t))
    ]


def _previous_user_task(spiff_task):
    """The nearest completed user task on the path that led to this one."""
    node = spiff_task.parent
    while node is not None:
        if node.task_spec.manual and node.state == TaskState.COMPLETED:
            return node
        node = node.parent
    workflow = spiff_task.workflow
    if workflow.parent_task_id is not None:  # inside a subprocess: continue in the parent
        return _previous_user_task(workflow.top_workflow.get_task_from_id(workflow.parent_task_id))
    return None


def send_back(ctx: Context, task_id: int, comment: str) -> Completion:
    """退回: return the matter to the previous user task, to the person who did it.

    Raises NotFound, NotAllowed, TaskConflict, ValidationFailed (no reason given).
    """
    if not (comment or "").strip():
        raise ValidationFailed({"comment": ["退回必须填写理由"]})
    task, instance = _lock_task(ctx, task_id)
    _check_can_complete(ctx, task)
    loaded = load_instance(ctx, instance)
    spiff = _spiff_task(loaded, task)
    previous = _previous_user_task(spiff)
    if previous is None:
        raise TaskConflict("这是第一个办理环节，无法退回")
    previous_row = ctx.session.scalar(
        select(HumanTask)
        .where(HumanTask.task_guid == str(previous.id), HumanTask.status == "completed")
        .order_by(HumanTask.id.desc())
        .limit(1)
    )
    _run(loaded.workflow.reset_from_task_id, previous.id)
    _step(loaded)
    close_tasks(ctx, [task], "cancelled", by=ctx.actor.username)
    _task_event(ctx, task, "sent_back", comment, {"to_element": previous.task_spec.bpmn_id})
    open_rows = save_instance(ctx, loaded)
    reopened = next((row for row in open_rows if row.task_guid == str(previous.id)), None)
    if reopened is not None and previous_row is not None and previous_row.completed_by:
        reopened.assignee = previous_row.completed_by
        ctx.session.flush()
    return Completion(task, instance, _workable_by(ctx.actor, open_rows), open_rows)


def task_prefill(ctx: Context, task: HumanTask) -> dict:
    """The data a task's form opens with: current variables for its fields, then any draft."""
    form = task_form(ctx, task)
    instance = ctx.session.get(ProcessInstance, task.instance_id)
    loaded = load_instance(ctx, instance)
    from uuid import UUID

    spiff = loaded.workflow.get_task_from_id(UUID(task.task_guid)) if task.status == "open" else None
    data = dict(spiff.data) if spiff is not None else {}
    keys = {f["key"] for f in forms.form_fields(form)} if form else set(data)
    prefill = {k: v for k, v in data.items() if k in keys}
    prefill.update(task.draft or {})
    return _jsonable(confidential.strip_for(ctx.actor, instance.definition, prefill))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def instance_variables(ctx: Context, instance: ProcessInstance) -> dict:
    """The instance's variables as this actor may see them (confidential fields masked)."""
    variables = workflow_variables(load_instance(ctx, instance).workflow)
    return _jsonable(confidential.mask_for(ctx.actor, instance.definition, variables))


def instance_diagram(ctx: Context, instance: ProcessInstance) -> dict:
    """Element ids already passed and currently active, for colouring the diagram."""
    workflow = load_instance(ctx, instance).workflow
    completed, active = set(), set()
    active_states = TaskState.READY | TaskState.WAITING | TaskState.STARTED
    for task in workflow.get_tasks():
        bpmn_id = getattr(task.task_spec, "bpmn_id", None)
        if not bpmn_id:
            continue
        if task.state == TaskState.COMPLETED:
            completed.add(bpmn_id)
        elif task.state & active_states and instance.status not in FINISHED:
            active.add(bpmn_id)
    return {"completed": sorted(completed), "active": sorted(active)}
