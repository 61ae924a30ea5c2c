"""Whole-database consistency: each instance's stored state against its projections and audit.

After a crash (kill -9 of a web process or a worker mid-step) every instance must be either
before or after its step, never between. This is what "between" would look like:

- the open `human_tasks` of an instance differ from the READY user tasks of its stored state
  (the projection `runtime._save` keeps in step), or one task guid is open twice;
- a task row is both open and completed, or completed without who/when;
- a completed task has no "completed" audit event, or more than one; a "completed" event
  names a task that is not completed;
- the instance status disagrees with its state (completed ↔ workflow completed; running ↔ has
  open tasks), a finished instance still has open tasks or timers;
- a state that does not decrypt or load; an audit chain with a break.

Read-only; used by tests/webapp/test_crash_consistency.py and `chengxin check`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, runtime
from .access import SYSTEM
from .config import Settings
from .models import Event, HumanTask, ProcessInstance, Timer

FINISHED = ("completed", "terminated")
BATCH = 200


@dataclass(frozen=True)
class Problem:
    """One inconsistency, with the instance and task it concerns when there is one."""

    message: str
    instance_id: int | None = None
    task_id: int | None = None

    def __str__(self) -> str:
        where = [
            f"实例 {self.instance_id}" if self.instance_id else "",
            f"任务 {self.task_id}" if self.task_id else "",
        ]
        prefix = "，".join(w for w in where if w)
        return f"{prefix}：{self.message}" if prefix else self.message


def check_database(session: Session, settings: Settings) -> list[Problem]:
    """Every inconsistency between instance states, task rows, timers and audit events.

    Read-only; give it a session of its own (it expunges what it loaded as it goes).
    """
    problems = _task_rows(session) + _completion_events(session)
    last_id = 0
    while True:
        instances = list(
            session.scalars(
                select(ProcessInstance)
                .where(ProcessInstance.id > last_id)
                .order_by(ProcessInstance.id)
                .limit(BATCH)
            )
        )
        if not instances:
            break
        ids = [i.id for i in instances]
        open_rows = _open_rows_by_instance(session, ids)
        timers = _timer_counts(session, ids)
        events = _events_by_instance(session, ids)
        for instance in instances:
            problems += _instance(session, settings, instance, open_rows[instance.id], timers[instance.id])
            problems += [
                Problem(f"审计链断裂（事件 {b['event_id']}）：{b['problem']}", instance.id)
                for b in audit.verify_chain(events[instance.id], instance.last_event_hash)
            ]
        last_id = ids[-1]
        session.expunge_all()  # keep memory flat on big databases
    global_events = list(session.scalars(select(Event).where(Event.instance_id.is_(None)).order_by(Event.id)))
    problems += [
        Problem(f"系统审计链断裂（事件 {b['event_id']}）：{b['problem']}")
        for b in audit.verify_chain(global_events)
    ]
    return problems


def _task_rows(session: Session) -> list[Problem]:
    problems = []
    both = select(HumanTask).where(
        HumanTask.status == "open",
        (HumanTask.completed_at.is_not(None)) | (HumanTask.completed_by.is_not(None)),
    )
    for row in session.scalars(both):
        problems.append(Problem("任务既是待办又有办结记录", row.instance_id, row.id))
    unfinished = select(HumanTask).where(
        HumanTask.status == "completed",
        (HumanTask.completed_at.is_(None)) | (HumanTask.completed_by.is_(None)),
    )
    for row in session.scalars(unfinished):
        problems.append(Problem("已办结任务缺少办结人或办结时间", row.instance_id, row.id))
    return problems


def _completion_events(session: Session) -> list[Problem]:
    """Each completed task has exactly one "completed" event, and each such event a completed task."""
    counts = Counter(
        session.scalars(select(Event.task_id).where(Event.type == "completed", Event.task_id.is_not(None)))
    )
    statuses = dict(session.execute(select(HumanTask.id, HumanTask.status)).all())
    instance_of = dict(session.execute(select(HumanTask.id, HumanTask.instance_id)).all())
    problems = []
    for task_id, status in statuses.items():
        count = counts.get(task_id, 0)
        if status == "completed" and count != 1:
            problems.append(
                Problem(f"已办结任务有 {count} 条办结事件（应为 1 条）", instance_of[task_id], task_id)
            )
    for task_id in counts:
        if statuses.get(task_id) != "completed":
            state = statuses.get(task_id, "不存在")
            problems.append(
                Problem(f"办结事件指向未办结的任务（状态：{state}）", instance_of.get(task_id), task_id)
            )
    return problems


def _open_rows_by_instance(session: Session, ids: list[int]) -> dict[int, list[HumanTask]]:
    rows = defaultdict(list)
    query = select(HumanTask).where(HumanTask.instance_id.in_(ids), HumanTask.status == "open")
    for row in session.scalars(query):
        rows[row.instance_id].append(row)
    return rows


def _timer_counts(session: Session, ids: list[int]) -> Counter:
    return Counter(session.scalars(select(Timer.instance_id).where(Timer.instance_id.in_(ids))))


def _events_by_instance(session: Session, ids: list[int]) -> dict[int, list[Event]]:
    events = defaultdict(list)
    for event in session.scalars(select(Event).where(Event.instance_id.in_(ids)).order_by(Event.id)):
        events[event.instance_id].append(event)
    return events


def _instance(
    session, settings, instance: ProcessInstance, open_rows: list[HumanTask], timers: int
) -> list[Problem]:
    try:
        workflow = runtime.load_instance(runtime.Context(session, SYSTEM, settings), instance).workflow
    except Exception as exc:  # any failure to decrypt or rebuild is the finding itself
        return [Problem(f"状态无法读取：{type(exc).__name__}", instance.id)]
    problems = []
    # The same READY user tasks runtime._sync_tasks projects into human_tasks.
    ready = {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
    open_guids = Counter(row.task_guid for row in open_rows)
    for guid, count in open_guids.items():
        if count > 1:
            problems.append(Problem(f"同一环节有 {count} 个待办任务（{guid}）", instance.id))
    for row in open_rows:
        if row.task_guid not in ready:
            problems.append(Problem(f"待办任务「{row.name}」在流程状态中并非待办", instance.id, row.id))
    for guid, task in ready.items():
        if guid not in open_guids:
            problems.append(
                Problem(f"流程状态中的待办环节「{task.task_spec.bpmn_name}」没有待办任务", instance.id)
            )
    return problems + _status(instance, workflow, open_rows, timers)


def _status(instance: ProcessInstance, workflow, open_rows: list, timers: int) -> list[Problem]:
    problems = []
    status = instance.status
    if status == "completed" and not workflow.is_completed():
        problems.append(Problem("实例状态为已办结，但流程尚未结束", instance.id))
    if status in ("running", "waiting") and workflow.is_completed():
        problems.append(Problem(f"流程已结束，但实例状态为 {status}", instance.id))
    if status == "running" and not open_rows:
        problems.append(Problem("实例状态为办理中，但没有待办任务", instance.id))
    if status == "waiting" and open_rows:
        problems.append(Problem("实例状态为等待中，但有待办任务", instance.id))
    if status in FINISHED and (open_rows or timers):
        problems.append(Problem("已结束的实例仍有待办任务或定时器", instance.id))
    if (status in FINISHED) != (instance.ended_at is not None):
        problems.append(Problem("结束时间与实例状态不符", instance.id))
    return problems
