"""Process definitions and deployments."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from engine import definitions
from engine.errors import DefinitionError

from .. import database
from . import present, schemas

blp = Blueprint("definitions", __name__, url_prefix="/api/v1", description="流程定义与部署")


@blp.route("/process-definitions")
class DefinitionsView(MethodView):
    @blp.arguments(schemas.DefinitionQuery, location="query")
    @blp.response(200, schemas.DefinitionList)
    def get(self, query):
        """Latest version of each process (all versions with all_versions=true)."""
        with database.unit_of_work() as ctx:
            rows = definitions.list_definitions(ctx.session, query["all_versions"])
            return {"items": [present.definition(r) for r in rows]}


@blp.route("/process-definitions/<string:key>/xml")
class DefinitionXmlView(MethodView):
    @blp.arguments(schemas.VersionQuery, location="query")
    @blp.response(200, content_type="application/xml")
    def get(self, query, key):
        """The BPMN XML of a version (latest by default)."""
        with database.unit_of_work() as ctx:
            definition = definitions.get_definition(ctx.session, key, query["version"])
            xml = definitions.bpmn_xml(ctx.session, definition)
        return Response(xml, mimetype="application/xml")


@blp.route("/process-definitions/<string:key>/start-form")
class StartFormView(MethodView):
    @blp.arguments(schemas.VersionQuery, location="query")
    @blp.response(200, schemas.StartForm)
    def get(self, query, key):
        """The start form (form-js JSON) of a version, or null."""
        with database.unit_of_work() as ctx:
            definition = definitions.get_definition(ctx.session, key, query["version"])
            form = definition.forms.get(definition.start_form) if definition.start_form else None
            return {"form": form}


@blp.route("/deployments")
class DeploymentsView(MethodView):
    @blp.arguments(schemas.DeploymentForm, location="form")
    @blp.response(201, schemas.DeploymentResult)
    @blp.alt_response(200, schema=schemas.DeploymentResult)
    @blp.alt_response(422, schema=schemas.ApiError)
    def post(self, form):
        """Deploy .bpmn/.dmn/.form files (multipart field `files`); analysts and admins only."""
        with database.unit_of_work() as ctx:  # analysts and admins only: webapp/permissions.py
            uploads = request.files.getlist("files")
            if not uploads:
                raise DefinitionError(
                    [
                        {
                            "file": "",
                            "line": None,
                            "element_id": None,
                            "message": "请用 files 字段上传至少一个文件",
                        }
                    ]
                )
            files = [(f.filename or "", f.read()) for f in uploads]
            result = definitions.deploy(ctx.session, files, user=ctx.actor.username, note=form["note"])
            if result.created:
                from engine import audit

                audit.record_event(
                    ctx.session,
                    "deployed",
                    user=ctx.actor.username,
                    details={
                        "deployment_id": result.deployment_id,
                        "definitions": [[d.key, d.version] for d in result.definitions],
                    },
                )
            body = {
                "deployment_id": result.deployment_id,
                "definitions": [{"key": d.key, "version": d.version} for d in result.definitions],
            }
        return body, 201 if result.created else 200
