"""The REST API of API.md under /api/v1, with its OpenAPI document at /api/openapi.json."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from . import schemas


class ChengxinApi(Api):
    """flask-smorest Api whose error bodies follow API.md (handled by webapp.errors)."""

    # Documents error answers as they are sent ({"error", "message", "errors"?}), not as
    # flask-smorest's own {"code", "status"}: clients and the fuzz test check against it.
    ERROR_SCHEMA = schemas.ApiError

    def _register_error_handlers(self):
        pass


def register_api(app: Flask) -> None:
    from . import auth, credit, definitions, instances, tasks

    api = ChengxinApi(app)
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for module in (auth, definitions, instances, tasks, credit):
        api.register_blueprint(module.blp)
    from . import calendar

    api.register_blueprint(calendar.blp)
    from . import monitoring

    api.register_blueprint(monitoring.blp)
    from . import studio

    api.register_blueprint(studio.blp)
    from . import admin

    api.register_blueprint(admin.blp)
    app.extensions["chengxin"]["api"] = api
