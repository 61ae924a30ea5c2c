"""流程设计室: the analysts' pages — versions, diff, modeler with drafts/validate/deploy, form
editor, imports with their report, migration. Analysts and admins only (webapp/permissions.py).

Two blueprints: `bp` (pages.studio) renders HTML inside the workspace (its login, layout and
error pages); `xhr` answers the editor's fetches with XML/JSON and API.md's error bodies.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from engine import definitions, forms, imports, migration, studio
from engine.errors import Conflict, DefinitionError, NotFound, TooLarge, ValidationFailed
from engine.models import Group

from .. import database
from ..api.studio import repository_path, resolve_diff_versions
from . import work

bp = Blueprint("studio", __name__, url_prefix="/studio")
xhr = Blueprint("studio_xhr", __name__, url_prefix="/studio")
SCRIPT = Path(__file__).resolve().parent.parent / "templates" / "studio" / "studio.js"
SEVERITY_BADGES = {"error": "badge-sla-overdue", "warning": "badge-sla-warning", "info": "badge-info"}
SEVERITY_LABELS = {"error": "无法运行", "warning": "需注意", "info": "说明"}
ACTIVE_LABELS = {
    "user_task": "待办",
    "timer": "定时器",
    "message": "等待消息",
    "subprocess": "子流程",
    "other": "其他",
}


@bp.context_processor
def _studio_context():
    return {
        "nav": "studio",
        "studio_script": _script_url(),
        "severity_badges": SEVERITY_BADGES,
        "severity_labels": SEVERITY_LABELS,
        "active_labels": ACTIVE_LABELS,
    }


@lru_cache(maxsize=1)
def _script_version(mtime: float) -> str:
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]


def _script_url() -> str:
    return url_for("studio_xhr.script", v=_script_version(SCRIPT.stat().st_mtime))


def _group_choices(session) -> list[Group]:
    return list(session.scalars(select(Group).order_by(Group.name)))


# --- process list, versions, diff, export ------------------------------------------------------


@bp.get("/")
def index():
    with work() as ctx:
        repository = repository_path()
        processes = studio.list_processes(ctx, repository)
        return render_template(
            "studio/index.html",
            processes=processes,
            repository=repository,
            outside=[p.latest for p in processes if p.latest.in_repository is False],
            drafts=studio.open_drafts(ctx, "bpmn"),
            deployed_keys={p.key for p in processes},
        )


@bp.post("/processes/new")
def new_process():
    key = request.form.get("key", "").strip()
    try:
        with work() as ctx:
            studio.new_process(ctx, key, request.form.get("name", ""))
    except ValidationFailed as exc:
        for messages in exc.errors.values():
            for message in messages:
                flash(message, "error")
        return redirect(url_for(".index"), code=303)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for(".index"), code=303)
    return redirect(url_for(".edit", key=key), code=303)


@bp.get("/processes/<key>/")
def process(key: str):
    with work() as ctx:
        info = studio.get_process(ctx, key, repository_path())
        state = studio.draft_state(ctx, "bpmn", key)
        return render_template("studio/process.html", process=info, state=state, repository=repository_path())


@bp.get("/processes/<key>/versions/<int:version>")
def version(key: str, version: int):
    with work() as ctx:
        info = studio.get_process(ctx, key, repository_path())
        found = next((v for v in info.versions if v.definition.version == version), None)
        if found is None:
            return redirect(url_for(".process", key=key))
        return render_template(
            "studio/version.html", process=info, version=found, files=studio.version_files(ctx, key, version)
        )


@bp.get("/processes/<key>/diff")
def diff(key: str):
    with work() as ctx:
        old, new = resolve_diff_versions(
            ctx, key, request.args.get("from", type=int), request.args.get("to", type=int)
        )
        info = studio.get_process(ctx, key)
        changes = studio.diff_versions(ctx, key, old, new) if old != new else None
        return render_template("studio/diff.html", process=info, old=old, new=new, changes=changes)


@xhr.get("/processes/<key>/versions/<int:version>/xml")
def version_xml(key: str, version: int):
    with work() as ctx:
        xml = definitions.bpmn_xml(ctx.session, definitions.get_definition(ctx.session, key, version))
    return Response(xml, mimetype="application/xml")


@xhr.get("/processes/<key>/versions/<int:version>/export")
def export(key: str, version: int):
    with work() as ctx:
        data = studio.export_zip(ctx, key, version)
    return Response(
        data,
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{key}-v{version}.zip"'},
    )


# --- the modeler: drafts, validation, deployment ---------------------------------------------------


@bp.get("/processes/<key>/edit")
def edit(key: str):
    with work() as ctx:
        studio.check_key(key)
        state = studio.draft_state(ctx, "bpmn", key)
        xml, base_version = studio.process_source(ctx, key)
        return render_template(
            "studio/editor.html",
            key=key,
            state=state,
            base_version=base_version,
            latest=_latest(ctx, key),
            groups=_group_choices(ctx.session),
            form_ids=[f.form_id for f in studio.list_forms(ctx)],
        )


def _latest(ctx, key: str):
    try:
        return definitions.get_definition(ctx.session, key)
    except NotFound:
        return None  # drafted, never deployed


@bp.post("/processes/<key>/discard")
def discard(key: str):
    with work() as ctx:
        studio.discard_draft(ctx, "bpmn", key)
        deployed = _latest(ctx, key) is not None
    flash(_("草稿已丢弃。"), "info")
    return redirect(url_for(".process", key=key) if deployed else url_for(".index"), code=303)


@xhr.get("/processes/<key>/source")
def source(key: str):
    with work() as ctx:
        xml, _version = studio.process_source(ctx, key)
    return Response(studio.ensure_diagram(xml), mimetype="application/xml")


def _posted_xml() -> str:
    if request.content_length and request.content_length > definitions.MAX_FILE_BYTES:
        raise TooLarge("图超过大小限制")
    return request.get_data(as_text=True)


@xhr.post("/processes/<key>/draft")
def save_draft(key: str):
    with work() as ctx:
        draft = studio.save_draft(
            ctx,
            "bpmn",
            key,
            _posted_xml(),
            base_revision=request.args.get("base", 0, type=int),
            base_version=request.args.get("version", None, type=int),
        )
        return {"revision": draft.revision, "saved_at": draft.updated_at.isoformat()}


@xhr.post("/processes/<key>/validate")
def validate(key: str):
    with work() as ctx:
        candidates = studio.validate_process(ctx, key, _posted_xml())
        return {"valid": True, "definitions": [{"key": c.key, "checksum": c.checksum} for c in candidates]}


@xhr.post("/processes/<key>/deploy")
def deploy(key: str):
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("xml"), str):
        raise ValidationFailed({"xml": ["请提交流程图"]})
    base_version = body.get("base_version")
    with work() as ctx:
        result = studio.deploy_process(
            ctx,
            key,
            str(body.get("note") or ""),
            body["xml"],
            base_version=base_version if isinstance(base_version, int) else None,
        )
        version = next(d.version for d in result.definitions if d.key == key)
    return (
        {
            "created": result.created,
            "version": version,
            "process_url": url_for("pages.studio.process", key=key),
            "migrate_url": url_for("pages.studio.migrate", key=key, to=version),
        },
        201 if result.created else 200,
    )


@xhr.get("/studio.js")
def script():
    response = Response(SCRIPT.read_bytes(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


# --- forms ---------------------------------------------------------------------------------------


@bp.get("/forms")
def form_list():
    new_id = request.args.get("id", "").strip()
    if new_id:
        studio.check_key(new_id, "form_id")
        return redirect(url_for(".form_editor", form_id=new_id), code=303)
    with work() as ctx:
        return render_template("studio/forms.html", forms=studio.list_forms(ctx))


@bp.route("/forms/<form_id>", methods=["GET", "POST"])
def form_editor(form_id: str):
    schema, errors = None, {}
    if request.method == "POST":
        schema = request.form.get("schema", "")
        try:
            with work() as ctx:
                studio.save_draft(
                    ctx, "form", form_id, schema, base_revision=request.form.get("base_revision", 0, type=int)
                )
            flash(_("表单草稿已保存；部署引用它的流程时会一并部署。"), "success")
            return redirect(url_for(".form_editor", form_id=form_id), code=303)
        except ValidationFailed as exc:
            errors = exc.errors
        except Conflict as exc:
            errors = {"": [exc.message]}
    with work() as ctx:
        current = (
            json.loads(schema) if schema and not errors.get("content") else studio.form_source(ctx, form_id)
        )
        info = next((f for f in studio.list_forms(ctx) if f.form_id == form_id), None)
        return (
            render_template(
                "studio/form_editor.html",
                form_id=form_id,
                schema=current,
                info=info,
                state=studio.draft_state(ctx, "form", form_id),
                problems=forms.lint_form(current),
                errors=errors,
            ),
            422 if errors else 200,
        )


# --- imports ---------------------------------------------------------------------------------------


@bp.route("/imports", methods=["GET", "POST"])
def import_list():
    errors, status = [], 200
    if request.method == "POST":
        upload = request.files.get("file")
        try:
            with work() as ctx:
                if upload is None or not upload.filename:
                    raise ValidationFailed({"file": [_("请选择要导入的文件")]})
                model = imports.import_file(ctx, upload.filename, upload.read())
                model_id = model.id
            return redirect(url_for(".import_detail", import_id=model_id), code=303)
        except DefinitionError as exc:
            errors, status = exc.errors, 422
        except ValidationFailed as exc:
            errors = [
                {"message": m, "line": None, "element_id": None} for ms in exc.errors.values() for m in ms
            ]
            status = 422
    with work() as ctx:
        return render_template(
            "studio/imports.html", imports=imports.list_imports(ctx), errors=errors
        ), status


@bp.get("/imports/<int:import_id>")
def import_detail(import_id: int):
    focus = request.args.get("element")
    with work() as ctx:
        model = imports.get_import(ctx, import_id)
        errors = sorted(
            {i["element_id"] for i in model.report if i["severity"] == "error" and i["element_id"]}
        )
        warnings = sorted(
            {i["element_id"] for i in model.report if i["severity"] == "warning" and i["element_id"]}
            - set(errors)
        )
        state = {"overdue": [focus]} if focus else {"overdue": errors, "active": warnings}
        return render_template("studio/import.html", model=model, state=state, focus=focus)


@xhr.get("/imports/<int:import_id>/content")
def import_content(import_id: int):
    with work() as ctx:
        model = imports.get_import(ctx, import_id)
        if model.kind == "form":
            return Response(model.content, mimetype="application/json")
        return Response(studio.ensure_diagram(model.content), mimetype="application/xml")


@bp.post("/imports/<int:import_id>/draft")
def import_as_draft(import_id: int):
    with work() as ctx:
        draft = imports.open_as_draft(ctx, import_id, request.form.get("key") or None)
        kind, key = draft.kind, draft.key
    flash(_("已作为草稿打开，可在编辑器中完善后部署。"), "success")
    if kind == "form":
        return redirect(url_for(".form_editor", form_id=key), code=303)
    if kind == "bpmn":
        return redirect(url_for(".edit", key=key), code=303)
    return redirect(url_for(".import_detail", import_id=import_id), code=303)


# --- migration -------------------------------------------------------------------------------------


@bp.route("/processes/<key>/migrate", methods=["GET", "POST"])
def migrate(key: str):
    outcomes = None
    if request.method == "POST":
        ids = [int(i) for i in request.form.getlist("instance_id") if i.isdigit()]
        target = request.form.get("to", type=int)
        if not ids:
            flash(_("请至少选择一个实例。"), "warning")
        else:
            with work() as ctx:
                actor = ctx.actor
            # Each instance gets its own transaction (SQLite has one writer): this request's is closed.
            outcomes = migration.migrate_instances(
                current_app.extensions["chengxin"]["sessions"], actor, database.settings(), key, ids, target
            )
            moved = sum(1 for o in outcomes if o.migrated)
            flash(_("已迁移 %(n)s 个实例，%(m)s 个未迁移。", n=moved, m=len(outcomes) - moved), "info")
    with work() as ctx:
        info = studio.get_process(ctx, key)
        to_version = request.values.get("to", type=int) or info.latest.definition.version
        sources = [v for v in info.versions if v.definition.version != to_version and v.active_instances]
        from_version = request.values.get("from", type=int) or (
            sources[0].definition.version if sources else None
        )
        plan = None
        if from_version and from_version != to_version:
            plan = migration.plan_migration(ctx, key, from_version, to_version)
        return render_template(
            "studio/migrate.html",
            process=info,
            plan=plan,
            from_version=from_version,
            to_version=to_version,
            sources=sources,
            outcomes=outcomes,
        )


def register(app: Flask) -> None:
    """Mount the studio pages inside the workspace (login, layout, HTML errors) and its fetch endpoints."""
    # name_prefix makes the pages a child of the workspace blueprint "pages", exactly as nesting does.
    app.register_blueprint(bp, name_prefix="pages")
    app.register_blueprint(xhr)
