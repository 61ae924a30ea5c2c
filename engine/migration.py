"""Moving running instances from one version of their process to another.

The rule: an instance can move when every element it is active in (open user task, waiting
timer or message, running sub-process) exists in the target version with the same id and
the same kind, and every element it already passed still exists there (its history must
stay readable). The move itself realigns the SpiffWorkflow task tree onto the new spec
(SpiffWorkflow.bpmn.util.diff), re-predicts what follows the active tasks, keeps their data
and timer deadlines, and re-syncs the inbox projection — one instance per transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.diff import diff_workflow, migrate_workflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, select
from sqlalchemy.orm.exc import StaleDataError

from . import audit, definitions, store
from .access import Actor
from .config import Settings
from .db import transaction, utcnow
from .errors import Conflict, EngineError, NotFound, ValidationFailed
from .models import HumanTask, ProcessDefinition, ProcessInstance, Timer

# runtime's load/save keep the projections (inbox, timers, status) in step; there is no
# public equivalent yet, so the migration uses them directly.
from .runtime import Context, Loaded, close_tasks, load_instance, save_instance
from .studio import VersionDiff, diff_definitions, require_studio

MOVABLE = ("running", "waiting", "suspended")
ACTIVE = TaskState.READY | TaskState.WAITING | TaskState.STARTED
# A user task re-assigned on the move when any of these differ between the versions.
ASSIGNMENT_FIELDS = ("candidate_groups", "candidate_users", "assignee", "due_date")
TYPE_NAMES = {
    "UserTask": "用户任务",
    "ManualTask": "人工任务",
    "ScriptTask": "脚本任务",
    "ServiceTask": "服务任务",
    "CallActivity": "调用活动/子流程",
    "SubWorkflowTask": "子流程",
    "TransactionSubprocess": "事务子流程",
    "IntermediateCatchEvent": "中间捕获事件",
    "BoundaryEvent": "边界事件",
    "ReceiveTask": "接收任务",
    "EventBasedGateway": "事件网关",
}


@lru_cache(maxsize=1)
def _spec_registry():
    # Converts task specs to dicts, which is how SpiffWorkflow compares two versions of one.
    return BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG)


@dataclass
class ActiveElement:
    element_id: str
    name: str
    type: str  # user_task | timer | message | subprocess | other


@dataclass
class InstancePlan:
    """Whether one instance can move to the target version, why not, and what changes for it."""

    instance: ProcessInstance
    target: ProcessDefinition
    can_move: bool
    reasons: list[str] = field(default_factory=list)
    active: list[ActiveElement] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


@dataclass
class MigrationPlan:
    key: str
    source: ProcessDefinition
    target: ProcessDefinition
    diff: VersionDiff
    instances: list[InstancePlan]


@dataclass
class MigrationOutcome:
    instance_id: int
    migrated: bool
    reasons: list[str] = field(default_factory=list)
    from_version: int | None = None
    to_version: int | None = None


# --- looking at a loaded workflow ------------------------------------------------------------


def _kind_of(task) -> str:
    spec = task.task_spec
    if getattr(spec, "manual", False):
        return "user_task"
    event = type(getattr(spec, "event_definition", None)).__name__
    if "Timer" in event:
        return "timer"
    if "Message" in event:
        return "message"
    if task.workflow.top_workflow.subprocesses.get(task.id) is not None:
        return "subprocess"
    return "other"


def _active_tasks(workflow):
    return [t for t in workflow.get_tasks(state=ACTIVE) if getattr(t.task_spec, "bpmn_id", None)]


def _active_elements(workflow) -> list[ActiveElement]:
    seen, found = set(), []
    for task in _active_tasks(workflow):
        spec = task.task_spec
        if spec.bpmn_id not in seen:
            seen.add(spec.bpmn_id)
            found.append(ActiveElement(spec.bpmn_id, spec.bpmn_name or spec.bpmn_id, _kind_of(task)))
    return found


def _label(spec) -> str:
    name = getattr(spec, "bpmn_name", None) or ""
    bpmn_id = getattr(spec, "bpmn_id", None) or spec.name
    return f"「{name}」({bpmn_id})" if name else f"{bpmn_id}"


def _target_spec(task, new_spec, new_subprocess_specs):
    workflow = task.workflow
    if workflow is workflow.top_workflow:
        return new_spec
    return new_subprocess_specs.get(workflow.spec.name)


def _event_definition(spec):
    definition = getattr(spec, "event_definition", None)
    return _spec_registry().convert(definition) if definition is not None else None


def _active_reasons(workflow, new_spec, new_subprocess_specs, version: int) -> list[str]:
    """Active elements must exist in the target with the same id and the same kind."""
    reasons = []
    for task in _active_tasks(workflow):
        old = task.task_spec
        target = _target_spec(task, new_spec, new_subprocess_specs)
        new = target.task_specs.get(old.name) if target is not None else None
        if new is None:
            reasons.append(f"当前环节{_label(old)}在版本 {version} 中不存在")
        elif type(new).__name__ != type(old).__name__:
            old_type = TYPE_NAMES.get(type(old).__name__, type(old).__name__)
            new_type = TYPE_NAMES.get(type(new).__name__, type(new).__name__)
            reasons.append(f"当前环节{_label(old)}在版本 {version} 中由{old_type}改成了{new_type}")
        elif type(getattr(new, "event_definition", None)) is not type(getattr(old, "event_definition", None)):
            reasons.append(f"当前等待的事件{_label(old)}在版本 {version} 中换成了另一种事件")
        elif _kind_of(task) == "message" and new.event_definition.name != old.event_definition.name:
            reasons.append(
                f"当前等待的消息 {old.event_definition.name} 在版本 {version} 中改名为 {new.event_definition.name}"
            )
    return reasons


def _history_reasons(top_diff, subprocess_diffs, workflow, version: int) -> list[str]:
    """Elements already passed (or cancelled) must still exist, or the history cannot be kept."""
    reasons = []
    diffs = [top_diff] + [d for d in subprocess_diffs.values() if d is not None]
    for diff in diffs:
        for task in diff.removed:
            if task.has_state(TaskState.PREDICTED_MASK) or task.has_state(ACTIVE):
                continue  # predicted tasks are re-predicted; active ones are checked on their own
            reasons.append(
                f"已经过的环节{_label(task.task_spec)}在版本 {version} 中被删除，迁移后无法保留其办理记录"
            )
    for sp_id, diff in subprocess_diffs.items():
        if diff is None:
            name = workflow.subprocesses[sp_id].spec.name
            reasons.append(f"正在运行的子流程 {name} 在版本 {version} 中不再被调用")
    return list(dict.fromkeys(reasons))


# --- the move itself ---------------------------------------------------------------------------


def _reset_tasks(workflow):
    return workflow.get_tasks(state=TaskState.READY | TaskState.WAITING)


def _move_workflow(workflow, top_diff, subprocess_diffs, new_spec, new_subprocess_specs) -> list[str]:
    """Realign the task tree onto the new specs; keep data and unchanged timers' deadlines.

    Returns the element ids of timers that restart because their definition changed.
    """
    kept = {
        task.id: (task.data, dict(task.internal_data), _event_definition(task.task_spec))
        for task in _reset_tasks(workflow)
    }
    migrate_workflow(top_diff, workflow, new_spec)
    _repredict_successors(workflow)
    for sp_id, diff in subprocess_diffs.items():
        subworkflow = workflow.subprocesses[sp_id]
        migrate_workflow(diff, subworkflow, new_subprocess_specs[subworkflow.spec.name])
        _repredict_successors(subworkflow)
    workflow.subprocess_specs = new_subprocess_specs
    restarted = []
    for task_id, (data, internal, event) in kept.items():
        task = workflow.get_task_from_id(task_id)
        if task is None:
            continue
        # migrate_workflow resets each active branch: data back to the parent's, timers from now.
        task.data = data
        if event == _event_definition(task.task_spec):
            task.internal_data = internal
        else:
            restarted.append(task.task_spec.bpmn_id)
    return restarted


def _repredict_successors(workflow) -> None:
    """migrate_workflow re-predicts below READY and WAITING tasks only; a running sub-process
    (STARTED) still holds the old version's successors. Demote those not yet reached to
    predicted and predict again, so the new outputs replace them (SpiffWorkflow internals:
    there is no public call for this)."""
    for task in workflow.get_tasks(state=TaskState.STARTED, skip_subprocesses=True):
        if [child.task_spec for child in task.children] == list(task.task_spec.outputs):
            continue
        for child in task.children:
            if child.has_state(TaskState.FUTURE):
                child._set_state(TaskState.LIKELY)
        task.task_spec._predict(task, mask=TaskState.STARTED | TaskState.FUTURE | TaskState.PREDICTED_MASK)


def _unresolved_tasks(workflow) -> list:
    return [t for t in workflow.get_tasks() if t.task_spec is None]


@dataclass
class _Trial:
    loaded: Loaded | None
    reasons: list[str]
    active: list[ActiveElement]
    restarted_timers: list[str] = field(default_factory=list)


def _trial(ctx: Context, instance: ProcessInstance, target: ProcessDefinition) -> _Trial:
    """Load the instance and move it in memory; nothing is written."""
    if instance.status not in MOVABLE:
        return _Trial(None, [f"流程状态为 {instance.status}，只有运行中、等待中或挂起的流程可以迁移"], [])
    if instance.definition_id == target.id:
        return _Trial(None, [f"流程已在版本 {target.version} 上"], [])
    loaded = load_instance(ctx, instance)
    workflow = loaded.workflow
    active = _active_elements(workflow)
    new_spec, new_subprocess_specs = definitions.load_spec(ctx.session, target)
    reasons = _active_reasons(workflow, new_spec, new_subprocess_specs, target.version)
    top_diff, subprocess_diffs = diff_workflow(_spec_registry(), workflow, new_spec, new_subprocess_specs)
    reasons += _history_reasons(top_diff, subprocess_diffs, workflow, target.version)
    if reasons:
        return _Trial(loaded, reasons, active)
    try:
        restarted = _move_workflow(workflow, top_diff, subprocess_diffs, new_spec, new_subprocess_specs)
        # The stored state must load against the new spec, exactly as the next request will.
        reloaded = store.load_state(store.dump_state(workflow), new_spec, new_subprocess_specs, None)
    except Exception as exc:  # noqa: BLE001 — any failure of the trial is a reason, never a 500
        return _Trial(loaded, [f"试迁移失败：{exc.__class__.__name__}: {exc}"], active)
    if _unresolved_tasks(reloaded):
        return _Trial(loaded, ["迁移后有环节无法对应到新版本（例如子流程之后的环节被删除）"], active)
    return _Trial(loaded, [], active, restarted)


def _meta_changes(source: ProcessDefinition, target: ProcessDefinition, element_id: str) -> list[str]:
    old = source.elements.get(element_id, {})
    new = target.elements.get(element_id, {})
    return [f for f in ("name", "form_ref", *ASSIGNMENT_FIELDS) if old.get(f) != new.get(f)]


def _instance_changes(trial: _Trial, source, target, diff: VersionDiff) -> list[str]:
    changes = []
    for element in trial.active:
        change = diff.change_of(element.element_id)
        label = f"当前环节「{element.name}」"
        if change is not None:
            changes.append(f"{label}的{'、'.join(change.aspects)}有变化")
        if element.type == "user_task":
            fields = _meta_changes(source, target, element.element_id)
            if set(fields) & set(ASSIGNMENT_FIELDS):
                changes.append(f"{label}将按新版本的候选组/处理人/期限重新生成待办，原认领失效")
            if element.element_id in diff_form_elements(source, target, diff):
                changes.append(f"{label}使用的表单内容有变化")
    for element_id in trial.restarted_timers:
        changes.append(f"定时器 {element_id} 的定义有变化，迁移后从迁移时刻重新计时")
    return list(dict.fromkeys(changes))


def diff_form_elements(source, target, diff: VersionDiff) -> set[str]:
    """User tasks of the target whose form is one whose content changed."""
    changed_forms = set(diff.forms_changed)
    return {
        element_id
        for element_id, meta in (target.elements or {}).items()
        if meta.get("form_ref") in changed_forms
    }


def _plan(ctx: Context, instance, source, target, diff) -> tuple[InstancePlan, _Trial]:
    trial = _trial(ctx, instance, target)
    plan = InstancePlan(
        instance=instance,
        target=target,
        can_move=not trial.reasons,
        reasons=trial.reasons,
        active=trial.active,
        changes=_instance_changes(trial, source, target, diff) if not trial.reasons else [],
    )
    return plan, trial


def _target(ctx: Context, key: str, to_version: int | None) -> ProcessDefinition:
    return definitions.get_definition(ctx.session, key, to_version)


def plan_migration(ctx: Context, key: str, from_version: int, to_version: int | None = None) -> MigrationPlan:
    """Dry run: for every unfinished instance on `from_version`, can it move to `to_version`
    (default: the latest) and what changes for it. Writes nothing.

    Raises NotAllowed, NotFound, ValidationFailed (same version).
    """
    require_studio(ctx.actor)
    source = definitions.get_definition(ctx.session, key, from_version)
    target = _target(ctx, key, to_version)
    if source.id == target.id:
        raise ValidationFailed({"to_version": ["目标版本必须不同于当前版本"]})
    diff = diff_definitions(ctx.session, source, target)
    instances = ctx.session.scalars(
        select(ProcessInstance)
        .where(ProcessInstance.definition_id == source.id, ProcessInstance.status.in_(MOVABLE))
        .order_by(ProcessInstance.id)
    )
    plans = [_plan(ctx, instance, source, target, diff)[0] for instance in instances]
    return MigrationPlan(key, source, target, diff, plans)


def _refresh_open_tasks(ctx: Context, instance, source, target) -> list[str]:
    """Rename/re-form open tasks in place; cancel those whose assignment rules changed so that
    saving the state recreates them under the new rules. Returns the re-assigned element ids."""
    reassigned = []
    rows = ctx.session.scalars(
        select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == "open")
    )
    cancelled = []
    for row in rows:
        meta = target.elements.get(row.element_id, {})
        fields = _meta_changes(source, target, row.element_id)
        if set(fields) & set(ASSIGNMENT_FIELDS):
            cancelled.append(row)
            reassigned.append(row.element_id)
        else:
            row.name = meta.get("name") or row.name
            row.form_key = meta.get("form_ref")
    close_tasks(ctx, cancelled, "cancelled")
    # Timer rows are rebuilt from the state under the new version (which may have none).
    ctx.session.execute(delete(Timer).where(Timer.instance_id == instance.id))
    ctx.session.flush()
    return reassigned


def migrate_instance(ctx: Context, key: str, instance_id: int, to_version: int | None = None) -> InstancePlan:
    """Move one instance of `key` to `to_version` (default: latest) in the caller's transaction.

    Raises NotAllowed, NotFound, Conflict (it cannot move: the message gives the reasons).
    """
    require_studio(ctx.actor)
    instance = ctx.session.get(ProcessInstance, instance_id)
    if instance is None or instance.process_key != key:
        raise NotFound(f"流程 {key} 没有实例 {instance_id}")
    source, target = instance.definition, _target(ctx, key, to_version)
    diff = diff_definitions(ctx.session, source, target)
    plan, trial = _plan(ctx, instance, source, target, diff)
    if not plan.can_move:
        raise Conflict("无法迁移：" + "；".join(plan.reasons))
    reassigned = _refresh_open_tasks(ctx, instance, source, target)
    instance.definition = target
    instance.definition_id = target.id
    instance.version = target.version
    instance.updated_at = utcnow()  # bumps lock_version: a concurrent action on it conflicts
    save_instance(ctx, trial.loaded)
    audit.record_event(
        ctx.session,
        "migrated",
        user=ctx.actor.username,
        instance_id=instance.id,
        comment=f"由版本 {source.version} 迁移到版本 {target.version}",
        details={
            "from_version": source.version,
            "to_version": target.version,
            "changes": plan.changes,
            "reassigned": reassigned,
        },
    )
    return plan


def migrate_instances(
    session_factory,
    actor: Actor,
    settings: Settings,
    key: str,
    instance_ids: list[int],
    to_version: int | None,
) -> list[MigrationOutcome]:
    """Move each instance in its own transaction; one that cannot move does not stop the others.

    Raises NotAllowed, NotFound (unknown target version).
    """
    require_studio(actor)
    with transaction(session_factory) as session:
        target_version = _target(Context(session, actor, settings), key, to_version).version
    outcomes = []
    for instance_id in dict.fromkeys(instance_ids):
        outcomes.append(_migrate_one(session_factory, actor, settings, key, instance_id, target_version))
    return outcomes


def _migrate_one(session_factory, actor, settings, key, instance_id, target_version) -> MigrationOutcome:
    try:
        with transaction(session_factory) as session:
            instance = session.get(ProcessInstance, instance_id)
            from_version = instance.version if instance is not None else None
            migrate_instance(Context(session, actor, settings), key, instance_id, target_version)
    except StaleDataError:
        return MigrationOutcome(instance_id, False, ["实例刚被其他操作修改，请重新试运行后再迁移"])
    except (Conflict, NotFound) as exc:
        return MigrationOutcome(instance_id, False, [exc.message])
    except EngineError as exc:
        return MigrationOutcome(instance_id, False, [exc.message or exc.__class__.__name__])
    return MigrationOutcome(instance_id, True, [], from_version, target_version)
