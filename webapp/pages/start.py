"""发起: the processes a user may start, and their start forms."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_babel import gettext as _

from engine import attachments, worklist, workspace
from engine.errors import ValidationFailed

from .. import database
from . import present, work
from .uploads import posted_data, posted_files

bp = Blueprint("start", __name__)


@bp.get("/start")
def index():
    with work() as ctx:
        return render_template(
            "start_list.html", nav="start", definitions=worklist.startable_definitions(ctx)
        )


def _render_form(ctx, definition, data=None, errors=None, status=200):
    form = definition.forms[definition.start_form]
    pickers = attachments.filepickers(form)
    picker_keys = {p.key for p in pickers}
    errors = errors or {}
    return (
        render_template(
            "start_form.html",
            nav="start",
            definition=definition,
            form_schema=attachments.without_filepickers(worklist.form_for(ctx.actor, form)),
            form_data=data or {},
            form_errors={k: v for k, v in errors.items() if k not in picker_keys and k != "_schema"},
            error_list=present.labelled_errors(form, errors),
            pickers=pickers,
            file_errors={k: v for k, v in errors.items() if k in picker_keys or k == "files"},
            allowed=attachments.allowed_extensions(),
            max_mb=attachments.MAX_BYTES // (1024 * 1024),
        ),
        status,
    )


@bp.get("/start/<process_key>")
def form(process_key: str):
    with work() as ctx:
        return _render_form(ctx, worklist.startable_definition(ctx, process_key))


@bp.post("/start/<process_key>")
def submit(process_key: str):
    data = None
    try:
        data = posted_data()
        with attachments.upload_batch(database.settings()) as batch, work() as ctx:
            instance = workspace.start(ctx, process_key, data, posted_files(), batch)
            mine = worklist.my_open_tasks(ctx, instance.id)
            business_key = instance.business_key
    except ValidationFailed as exc:
        with work() as ctx:
            definition = worklist.startable_definition(ctx, process_key)
            return _render_form(ctx, definition, data if isinstance(data, dict) else {}, exc.errors, 422)
    flash(_("已发起，业务编号 %(key)s。", key=business_key), "success")
    if mine:
        return redirect(url_for("pages.tasks.show", task_id=mine[0].id), code=303)
    return redirect(url_for("pages.inbox.index", tab="started"), code=303)
