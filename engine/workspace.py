"""What the staff workspace's buttons do: one function per action.

Each checks the action rule (`worklist.require_action`, built on `worklist.task_actions`),
calls the runtime (which writes the audit event), and tells the people who now have work.
"""

from __future__ import annotations

from typing import BinaryIO

from . import attachments, notifications, runtime, worklist
from .errors import ValidationFailed
from .models import HumanTask, ProcessInstance

Upload = tuple[str | None, BinaryIO, str]  # (filepicker key or None, stream, file name)


def claim(ctx: runtime.Context, task_id: int) -> HumanTask:
    """认领. Raises NotFound, NotAllowed, TaskConflict, Conflict."""
    worklist.require_action(ctx, task_id, "claim")
    return runtime.claim_task(ctx, task_id)


def unclaim(ctx: runtime.Context, task_id: int) -> HumanTask:
    """退回认领. Raises NotFound, NotAllowed, TaskConflict, Conflict."""
    worklist.require_action(ctx, task_id, "unclaim")
    return runtime.unclaim_task(ctx, task_id)


def assign(ctx: runtime.Context, task_id: int, username: str, comment: str | None = None) -> HumanTask:
    """转办, and tell the new holder. Raises NotFound, NotAllowed, TaskConflict, Conflict, ValidationFailed."""
    worklist.require_action(ctx, task_id, "assign")
    if username == ctx.actor.username:
        raise ValidationFailed({"username": ["不能转办给自己"]})
    task = runtime.assign_task(ctx, task_id, username, comment)
    notifications.notify_task(ctx.session, task, f"转办给您：{task.name}", exclude=ctx.actor.username)
    return task


def delegate(ctx: runtime.Context, task_id: int, username: str, comment: str | None = None) -> HumanTask:
    """委派, and tell the delegate. Raises NotFound, NotAllowed, TaskConflict, Conflict, ValidationFailed."""
    worklist.require_action(ctx, task_id, "delegate")
    task = runtime.delegate_task(ctx, task_id, username, comment)
    notifications.notify_task(ctx.session, task, f"委派给您：{task.name}", exclude=ctx.actor.username)
    return task


def _as_data(data) -> dict:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["表单数据无效，请刷新页面后重试"]})
    return data


def complete(
    ctx: runtime.Context, task_id: int, data: dict | None, comment: str | None = None
) -> runtime.Completion:
    """办理: submit the form (filepicker fields filled from the task's uploads) and announce new tasks.

    Raises NotFound, NotAllowed, TaskConflict/Conflict, ValidationFailed, ScriptError.
    """
    found = worklist.require_action(ctx, task_id, "complete")
    task, instance = found.task, found.instance
    form = runtime.task_form(ctx, task)
    data = attachments.fill_filepickers(form, _as_data(data), attachments.of_task(ctx.session, task.id))
    before = notifications.newest_task_id(ctx.session, instance.id)
    delegated = task.owner is not None
    result = runtime.complete_task(ctx, task_id, data, comment)
    if delegated:
        notifications.notify_task(ctx.session, result.task, f"委派的任务已办理，请审核：{task.name}")
    else:
        notifications.notify_new_tasks(ctx.session, instance.id, before, ctx.actor.username)
    return result


def send_back(ctx: runtime.Context, task_id: int, comment: str) -> runtime.Completion:
    """退回 to the previous step, and tell whoever gets it back.

    Raises NotFound, NotAllowed, TaskConflict/Conflict, ValidationFailed (no reason).
    """
    found = worklist.require_action(ctx, task_id, "send_back")
    before = notifications.newest_task_id(ctx.session, found.instance.id)
    result = runtime.send_back(ctx, task_id, comment)
    notifications.notify_new_tasks(ctx.session, found.instance.id, before, ctx.actor.username)
    return result


def upload(
    ctx: runtime.Context, task_id: int, files: list[Upload], batch: attachments.UploadBatch
) -> list[attachments.Attachment]:
    """Attach files to an open task its holder is working on.

    Raises NotFound, NotAllowed, TaskConflict/Conflict, ValidationFailed (no file, bad type or
    field), TooLarge.
    """
    found = worklist.require_action(ctx, task_id, "complete")
    task = found.task
    keys = [p.key for p in attachments.filepickers(runtime.task_form(ctx, task))]
    if not files:
        raise ValidationFailed({"files": ["请选择要上传的文件"]})
    saved = []
    for key, stream, filename in files:
        if key and key not in keys:
            raise ValidationFailed({"files": ["附件类别无效"]})
        saved.append(
            batch.save(
                ctx.session,
                ctx.actor.username,
                stream,
                filename,
                instance_id=task.instance_id,
                task_id=task.id,
                field=key or (keys[0] if keys else None),
            )
        )
    return saved


def start(
    ctx: runtime.Context,
    process_key: str,
    data: dict | None,
    files: list[Upload],
    batch: attachments.UploadBatch,
) -> ProcessInstance:
    """发起 a process from its start form, with the files its filepicker fields take.

    Raises NotFound, NotAllowed (not for the actor's groups), ValidationFailed, TooLarge, ScriptError.
    """
    definition = worklist.startable_definition(ctx, process_key)
    form = definition.forms[definition.start_form]
    keys = {p.key for p in attachments.filepickers(form)}
    rows = []
    for key, stream, filename in files:
        if key and key not in keys:
            raise ValidationFailed({"files": ["附件类别无效"]})
        rows.append(batch.save(ctx.session, ctx.actor.username, stream, filename, field=key))
    data = attachments.fill_filepickers(form, _as_data(data), rows)
    instance = runtime.start_instance(ctx, definition.key, variables=data, version=definition.version)
    attachments.link_to_instance(ctx.session, rows, instance.id)
    notifications.notify_new_tasks(ctx.session, instance.id, 0, ctx.actor.username)
    return instance


MAX_DRAFT_CHARS = 200_000


def save_draft(ctx: runtime.Context, task_id: int, data: dict | None) -> None:
    """Keep what the holder has typed so far, to prefill the form (completing validates it).

    Raises NotFound, NotAllowed, TaskConflict/Conflict, ValidationFailed (not an object, too big).
    """
    import json

    from . import forms

    found = worklist.require_action(ctx, task_id, "complete")
    form = runtime.task_form(ctx, found.task)
    pickers = {p.key for p in attachments.filepickers(form)}
    keys = {f["key"] for f in forms.form_fields(form) if "." not in f["key"]} - pickers if form else set()
    draft = {k: v for k, v in _as_data(data).items() if k in keys}
    if len(json.dumps(draft, ensure_ascii=False, default=str)) > MAX_DRAFT_CHARS:
        raise ValidationFailed({"_schema": ["填写的内容过多，无法暂存"]})
    found.task.draft = draft or None
    ctx.session.flush()
