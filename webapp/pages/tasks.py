"""The task page: the form, history, attachments, opinion box and the action buttons."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import attachments, forms, queries, runtime, urging, worklist, workspace
from engine.errors import Conflict, ValidationFailed
from engine.models import HumanTask

from .. import database
from . import present, work
from .uploads import posted_data, posted_files

bp = Blueprint("tasks", __name__)


def _task_names(session, instance_id: int) -> dict[int, str]:
    rows = session.execute(select(HumanTask.id, HumanTask.name).where(HumanTask.instance_id == instance_id))
    return dict(rows.all())


def _render(ctx, found, *, data=None, errors=None, comment="", status=200):
    task, instance = found.task, found.instance
    actions = worklist.task_actions(ctx.session, ctx.actor, task, instance)
    form = runtime.task_form(ctx, task)
    pickers = attachments.filepickers(form)
    picker_keys = {p.key for p in pickers}
    errors = errors or {}
    history = queries.history_of(ctx.session, instance.id)
    files = attachments.of_instance(ctx.session, instance.id)
    urgings = urging.urgings_of(ctx.session, task.id)
    users = [e.user for e in history] + [f.uploaded_by for f in files] + [u.urged_by for u in urgings]
    users += [task.assignee, task.owner, task.completed_by, instance.started_by]
    needs_people = bool(actions & {"assign", "delegate", "cc"})
    top_keys = {f["key"] for f in forms.form_fields(form)} if form else set()
    return (
        render_template(
            "task.html",
            nav="inbox",
            task=task,
            instance=instance,
            via_copy=found.via_copy,
            actions=actions,
            editable="complete" in actions,
            form_schema=attachments.without_filepickers(worklist.form_for(ctx.actor, form)),
            form_data={**worklist.task_data(ctx, task), **(data or {})},
            form_errors={k: v for k, v in errors.items() if k not in picker_keys and k != "_schema"},
            error_list=present.labelled_errors(form, errors),
            file_errors={k: v for k, v in errors.items() if k in picker_keys or k == "files"},
            comment=comment or "",
            opinion_in_form="opinion" in top_keys,
            pickers=pickers,
            files=files,
            task_names=_task_names(ctx.session, instance.id),
            history=history,
            urgings=urgings,
            people=worklist.display_names(ctx.session, users),
            colleagues=worklist.colleagues(ctx.session, exclude=ctx.actor.username) if needs_people else [],
            sla=queries.task_sla(task),
            allowed=attachments.allowed_extensions(),
            max_mb=attachments.MAX_BYTES // (1024 * 1024),
        ),
        status,
    )


def _show(task_id: int):
    return redirect(url_for("pages.tasks.show", task_id=task_id), code=303)


def _inbox():
    return redirect(url_for("pages.inbox.index"), code=303)


def _refused(task_id: int, exc: ValidationFailed | Conflict):
    messages = [m for v in getattr(exc, "errors", {}).values() for m in v] or [exc.message]
    for message in messages:
        flash(message, "error")
    return _show(task_id)


@bp.get("/tasks/<int:task_id>")
def show(task_id: int):
    with work() as ctx:
        found = worklist.get_viewable_task(ctx, task_id)
        if found.via_copy:
            urging.mark_copy_read(ctx, task_id)
        return _render(ctx, found)


def _rerender(task_id: int, data, errors, comment):
    with work() as ctx:
        found = worklist.get_viewable_task(ctx, task_id)
        kept = data if isinstance(data, dict) else None
        return _render(ctx, found, data=kept, errors=errors, comment=comment, status=422)


def _upload(task_id: int, files) -> int:
    if not files:
        return 0
    with attachments.upload_batch(database.settings()) as batch, work() as ctx:
        return len(workspace.upload(ctx, task_id, files, batch))


@bp.post("/tasks/<int:task_id>/complete")
def complete(task_id: int):
    comment = request.form.get("comment", "").strip() or None
    data = None
    try:
        data = posted_data()
        # Files go in first, in their own transaction, so a form error does not lose them.
        _upload(task_id, posted_files())
        with work() as ctx:
            result = workspace.complete(ctx, task_id, data, comment)
            name, business_key = result.task.name, result.instance.business_key
            next_task = result.next_tasks[0].id if result.next_tasks else None
    except ValidationFailed as exc:
        return _rerender(task_id, data, exc.errors, comment)
    if next_task is not None:
        flash(_("已办理“%(name)s”，下一步仍由您办理。", name=name), "success")
        return _show(next_task)
    flash(_("已办理“%(name)s”（%(key)s），已转下一环节。", name=name, key=business_key), "success")
    return _inbox()


@bp.post("/tasks/<int:task_id>/attachments")
def upload(task_id: int):
    data = None
    try:
        data = posted_data()
        count = _upload(task_id, posted_files())
        if count == 0:
            raise ValidationFailed({"files": [_("请选择要上传的文件")]})
        if isinstance(data, dict):
            with work() as ctx:
                workspace.save_draft(ctx, task_id, data)
    except ValidationFailed as exc:
        return _rerender(task_id, data, exc.errors, request.form.get("comment", ""))
    flash(_("已上传 %(n)s 个附件。", n=count), "success")
    return _show(task_id)


@bp.get("/attachments/<attachment_id>")
def download(attachment_id: str):
    with work() as ctx:
        row, path = attachments.open_for_download(ctx, attachment_id)
    return send_file(
        path, mimetype=row.content_type, as_attachment=True, download_name=row.filename, max_age=0
    )


@bp.post("/tasks/<int:task_id>/claim")
def claim(task_id: int):
    with work() as ctx:
        workspace.claim(ctx, task_id)
    flash(_("已认领，请办理。"), "success")
    return _show(task_id)


@bp.post("/tasks/<int:task_id>/unclaim")
def unclaim(task_id: int):
    with work() as ctx:
        workspace.unclaim(ctx, task_id)
    flash(_("已退回认领，任务回到可认领列表。"), "success")
    return _inbox()


def _hand_over(task_id: int, operation, message: str):
    username = request.form.get("username", "").strip()
    comment = request.form.get("comment", "").strip() or None
    if not username:
        flash(_("请选择人员。"), "error")
        return _show(task_id)
    try:
        with work() as ctx:
            operation(ctx, task_id, username, comment)
            name = worklist.display_names(ctx.session, [username])[username]
    except ValidationFailed as exc:
        return _refused(task_id, exc)
    flash(message % {"name": name}, "success")
    return _inbox()


@bp.post("/tasks/<int:task_id>/assign")
def assign(task_id: int):
    return _hand_over(task_id, workspace.assign, _("已转办给 %(name)s。"))


@bp.post("/tasks/<int:task_id>/delegate")
def delegate(task_id: int):
    return _hand_over(task_id, workspace.delegate, _("已委派给 %(name)s，对方办理后任务将回到您这里。"))


@bp.post("/tasks/<int:task_id>/send-back")
def send_back(task_id: int):
    try:
        with work() as ctx:
            result = workspace.send_back(ctx, task_id, request.form.get("comment", ""))
            next_task = result.next_tasks[0].id if result.next_tasks else None
    except ValidationFailed as exc:
        return _refused(task_id, exc)
    flash(_("已退回上一环节。"), "success")
    return _show(next_task) if next_task else _inbox()


@bp.post("/tasks/<int:task_id>/urge")
def urge(task_id: int):
    try:
        with work() as ctx:
            urging.urge_task(ctx, task_id, request.form.get("message", ""))
    except Conflict as exc:
        return _refused(task_id, exc)
    flash(_("已催办。"), "success")
    return _show(task_id)


@bp.post("/tasks/<int:task_id>/cc")
def copy(task_id: int):
    try:
        with work() as ctx:
            copies = urging.copy_task(
                ctx, task_id, request.form.getlist("usernames"), request.form.get("note", "")
            )
            names = worklist.display_names(ctx.session, [c.username for c in copies])
    except ValidationFailed as exc:
        return _refused(task_id, exc)
    if copies:
        flash(_("已抄送给 %(names)s。", names="、".join(names[c.username] for c in copies)), "success")
    else:
        flash(_("所选人员已收到过抄送。"), "info")
    return _show(task_id)
