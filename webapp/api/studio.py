"""The analysts' studio over HTTP: versions, drafts, validation, deployment, diff, export,
migration and imports. Analysts and admins only (webapp/permissions.py); everyone else gets 403."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from engine import imports, migration, studio
from engine.errors import NotFound, ValidationFailed

from .. import database
from ..auth import current_actor
from . import schemas

blp = Blueprint("studio", __name__, url_prefix="/api/v1/studio", description="流程设计室（业务分析员）")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def repository_path() -> Path | None:
    """The checkout whose processes/ and forms/ deployments are compared with.

    STUDIO_REPOSITORY in the app config, else CHENGXIN_REPOSITORY, else this project's own
    folder when it holds processes/; None turns the check off.
    """
    configured = current_app.config.get("STUDIO_REPOSITORY") or os.environ.get("CHENGXIN_REPOSITORY")
    if configured:
        return Path(configured)
    return PROJECT_ROOT if (PROJECT_ROOT / "processes").is_dir() else None


# --- presenters ----------------------------------------------------------------------------------


def present_version(info: studio.VersionInfo) -> dict:
    definition = info.definition
    return {
        "version": definition.version,
        "deployed_at": definition.deployed_at,
        "deployed_by": definition.deployed_by,
        "checksum": definition.checksum,
        "note": info.note,
        "instances": info.instances,
        "active_instances": info.active_instances,
        "total_instances": info.total_instances,
        "in_repository": info.in_repository,
        "missing_files": info.missing_files,
    }


def present_process(info: studio.ProcessInfo) -> dict:
    return {"key": info.key, "name": info.name, "versions": [present_version(v) for v in info.versions]}


def present_draft(draft: studio.Draft, with_content: bool = True) -> dict:
    body = {
        "kind": draft.kind,
        "key": draft.key,
        "username": draft.username,
        "revision": draft.revision,
        "base_version": draft.base_version,
        "status": draft.status,
        "updated_at": draft.updated_at,
    }
    if with_content:
        body["content"] = draft.content
    return body


def present_diff(diff: studio.VersionDiff) -> dict:
    return {
        "key": diff.key,
        "from_version": diff.old_version,
        "to_version": diff.new_version,
        "added": diff.added,
        "removed": diff.removed,
        "changed": diff.changed,
        "forms_changed": diff.forms_changed,
    }


def present_plan(plan: migration.MigrationPlan) -> dict:
    return {
        "key": plan.key,
        "from_version": plan.source.version,
        "to_version": plan.target.version,
        "diff": present_diff(plan.diff),
        "instances": [
            {
                "instance_id": p.instance.id,
                "business_key": p.instance.business_key,
                "subject": p.instance.subject,
                "status": p.instance.status,
                "version": p.instance.version,
                "can_move": p.can_move,
                "reasons": p.reasons,
                "active": p.active,
                "changes": p.changes,
            }
            for p in plan.instances
        ],
    }


def present_import(model: imports.ImportedModel) -> dict:
    return {
        column: getattr(model, column)
        for column in (
            "id",
            "name",
            "kind",
            "checksum",
            "exporter",
            "executable",
            "deployable",
            "has_diagram",
            "process_ids",
            "imported_by",
            "imported_at",
            "report",
        )
    }


def _validation(candidates) -> dict:
    return {
        "valid": True,
        "definitions": [{"key": c.key, "name": c.name, "checksum": c.checksum} for c in candidates],
    }


def _uploads(field: str) -> list[tuple[str, bytes]]:
    uploads = request.files.getlist(field)
    if not uploads:
        raise ValidationFailed({field: [f"请用 {field} 字段上传文件"]})
    return [(f.filename or "", f.read()) for f in uploads]


def _mimetype(kind: str) -> str:
    return "application/json" if kind == "form" else "application/xml"


# --- processes and versions --------------------------------------------------------------------


@blp.route("/processes")
class ProcessesView(MethodView):
    @blp.response(200, schemas.StudioProcessList)
    def get(self):
        """Every process with all versions: who, when, checksum, note, instances, repository status."""
        with database.unit_of_work() as ctx:
            return {"items": [present_process(p) for p in studio.list_processes(ctx, repository_path())]}


@blp.route("/processes/<string:key>")
class ProcessView(MethodView):
    @blp.response(200, schemas.StudioProcess)
    def get(self, key):
        """One process with all its versions."""
        with database.unit_of_work() as ctx:
            return present_process(studio.get_process(ctx, key, repository_path()))


@blp.route("/processes/<string:key>/versions/<int:version>/files")
class VersionFilesView(MethodView):
    @blp.response(200, schemas.StudioFileList)
    def get(self, key, version):
        """The files one version was deployed from."""
        with database.unit_of_work() as ctx:
            rows = studio.version_files(ctx, key, version)
            return {"items": [{"name": r.name, "kind": r.kind, "checksum": r.checksum} for r in rows]}


@blp.route("/processes/<string:key>/versions/<int:version>/files/<string:name>")
class VersionFileView(MethodView):
    @blp.response(200, content_type="application/xml")
    def get(self, key, version, name):
        """One file of a version, as deployed."""
        with database.unit_of_work() as ctx:
            row = next((r for r in studio.version_files(ctx, key, version) if r.name == name), None)
            if row is None:
                raise NotFound(f"版本 {version} 中没有文件 {name}")
            return Response(row.content, mimetype=_mimetype(row.kind))


@blp.route("/processes/<string:key>/versions/<int:version>/export")
class ExportView(MethodView):
    @blp.response(200, content_type="application/zip")
    def get(self, key, version):
        """A zip of one version laid out like the repository (processes/, forms/)."""
        with database.unit_of_work() as ctx:
            data = studio.export_zip(ctx, key, version)
        return Response(
            data,
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{key}-v{version}.zip"'},
        )


def resolve_diff_versions(ctx, key: str, from_version: int | None, to_version: int | None) -> tuple[int, int]:
    """Defaults: the latest version against the one before it."""
    process = studio.get_process(ctx, key)
    to_version = to_version or process.latest.definition.version
    from_version = from_version or max(1, to_version - 1)
    return from_version, to_version


@blp.route("/processes/<string:key>/diff")
class DiffView(MethodView):
    @blp.arguments(schemas.StudioDiffQuery, location="query")
    @blp.response(200, schemas.StudioDiff)
    def get(self, query, key):
        """Elements added, removed and changed between two versions (default: latest vs previous)."""
        with database.unit_of_work() as ctx:
            old, new = resolve_diff_versions(ctx, key, query["from_version"], query["to_version"])
            return present_diff(studio.diff_versions(ctx, key, old, new))


# --- drafts, validation, deployment --------------------------------------------------------------


@blp.route("/drafts/<string:kind>/<string:key>")
class DraftView(MethodView):
    @blp.response(200, schemas.StudioDraftState)
    def get(self, kind, key):
        """My open draft and the other analysts' open drafts of a process, form or decision table."""
        with database.unit_of_work() as ctx:
            state = studio.draft_state(ctx, kind, key)
            return {
                "draft": present_draft(state.mine) if state.mine else None,
                "latest_revision": state.latest_revision,
                "others": [present_draft(d, with_content=False) for d in state.others],
            }

    @blp.arguments(schemas.StudioDraftSave)
    @blp.response(200, schemas.StudioDraft)
    @blp.alt_response(409, schema=schemas.ApiError)
    def put(self, body, kind, key):
        """Save my draft; 409 naming who and when if someone else saved a newer one since base_revision."""
        with database.unit_of_work() as ctx:
            draft = studio.save_draft(
                ctx,
                kind,
                key,
                body["content"],
                base_revision=body["base_revision"],
                base_version=body["base_version"],
            )
            return present_draft(draft)

    @blp.response(204)
    def delete(self, kind, key):
        """Discard my draft."""
        with database.unit_of_work() as ctx:
            studio.discard_draft(ctx, kind, key)


@blp.route("/validate")
class ValidateBundleView(MethodView):
    @blp.response(200, schemas.StudioValidation)
    @blp.alt_response(422, schema=schemas.ApiError)
    def post(self):
        """Run the deployment checks on uploaded files (multipart `files`) without deploying."""
        with database.unit_of_work() as ctx:
            return _validation(studio.validate(ctx, _uploads("files")))


@blp.route("/processes/<string:key>/validate")
class ValidateProcessView(MethodView):
    @blp.arguments(schemas.StudioValidateRequest)
    @blp.response(200, schemas.StudioValidation)
    @blp.alt_response(422, schema=schemas.ApiError)
    def post(self, body, key):
        """Check a diagram (`xml`, else my draft) with my form drafts, without deploying."""
        with database.unit_of_work() as ctx:
            return _validation(studio.validate_process(ctx, key, body["xml"]))


@blp.route("/processes/<string:key>/deploy")
class DeployProcessView(MethodView):
    @blp.arguments(schemas.StudioDeployRequest)
    @blp.response(201, schemas.DeploymentResult)
    @blp.alt_response(200, schema=schemas.DeploymentResult)
    @blp.alt_response(409, schema=schemas.ApiError)
    @blp.alt_response(422, schema=schemas.ApiError)
    def post(self, body, key):
        """Deploy a diagram (`xml`, else my draft) with a change note; same content keeps its version."""
        with database.unit_of_work() as ctx:
            result = studio.deploy_process(
                ctx, key, body["note"], body["xml"], base_version=body["base_version"]
            )
            payload = {
                "deployment_id": result.deployment_id,
                "definitions": [{"key": d.key, "version": d.version} for d in result.definitions],
            }
        return payload, 201 if result.created else 200


# --- migration --------------------------------------------------------------------------------------


@blp.route("/processes/<string:key>/migration")
class MigrationView(MethodView):
    @blp.arguments(schemas.StudioMigrationQuery, location="query")
    @blp.response(200, schemas.StudioMigrationPlan)
    def get(self, query, key):
        """Dry run: can each unfinished instance of from_version move to to_version (default latest)?"""
        with database.unit_of_work() as ctx:
            plan = migration.plan_migration(ctx, key, query["from_version"], query["to_version"])
            return present_plan(plan)

    @blp.arguments(schemas.StudioMigrateRequest)
    @blp.response(200, schemas.StudioMigrationResult)
    def post(self, body, key):
        """Migrate the selected instances, each in its own transaction; refused ones say why."""
        actor = current_actor()
        # Each instance gets its own transaction: end this request's one first (SQLite has one writer).
        database.session().rollback()
        outcomes = migration.migrate_instances(
            current_app.extensions["chengxin"]["sessions"],
            actor,
            database.settings(),
            key,
            body["instance_ids"],
            body["to_version"],
        )
        return {"items": outcomes}


# --- imports --------------------------------------------------------------------------------------


@blp.route("/imports")
class ImportsView(MethodView):
    @blp.response(200, schemas.StudioImportList)
    def get(self):
        """Recent imports with their reports."""
        with database.unit_of_work() as ctx:
            return {"items": [present_import(m) for m in imports.list_imports(ctx)]}

    @blp.response(201, schemas.StudioImport)
    @blp.alt_response(422, schema=schemas.ApiError)
    def post(self):
        """Import one .bpmn/.dmn/.form (multipart `file`) for viewing, with its report; deploys nothing."""
        with database.unit_of_work() as ctx:
            (name, raw), *_ = _uploads("file")
            return present_import(imports.import_file(ctx, name, raw))


@blp.route("/imports/<int:import_id>")
class ImportView(MethodView):
    @blp.response(200, schemas.StudioImport)
    def get(self, import_id):
        """One import with its report."""
        with database.unit_of_work() as ctx:
            return present_import(imports.get_import(ctx, import_id))


@blp.route("/imports/<int:import_id>/content")
class ImportContentView(MethodView):
    @blp.response(200, content_type="application/xml")
    def get(self, import_id):
        """The imported file as it was uploaded."""
        with database.unit_of_work() as ctx:
            model = imports.get_import(ctx, import_id)
            return Response(model.content, mimetype=_mimetype(model.kind))


@blp.route("/imports/<int:import_id>/draft")
class ImportDraftView(MethodView):
    @blp.arguments(schemas.StudioOpenDraft)
    @blp.response(201, schemas.StudioDraft)
    def post(self, body, import_id):
        """Make the imported file my draft, to finish and deploy it from the editor."""
        with database.unit_of_work() as ctx:
            return present_draft(imports.open_as_draft(ctx, import_id, body["key"]))


@blp.route("/repository")
class RepositoryView(MethodView):
    @blp.response(200, schemas.StudioRepository)
    def get(self):
        """Latest versions whose files are not in the repository's processes/ and forms/."""
        path = repository_path()
        with database.unit_of_work() as ctx:
            flagged = studio.not_in_repository(ctx, path) if path else []
            return {
                "path": str(path) if path else None,
                "not_in_repository": [
                    {
                        "key": v.definition.key,
                        "version": v.definition.version,
                        "missing_files": v.missing_files,
                    }
                    for v in flagged
                ],
            }
