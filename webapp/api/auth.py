"""Tokens, the caller's identity and health."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import Unauthorized

from engine.users import authenticate

from .. import database
from ..auth import current_actor, issue_token
from . import schemas

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="认证与健康检查")


@blp.route("/auth/token")
class TokenView(MethodView):
    @blp.arguments(schemas.TokenRequest)
    @blp.response(200, schemas.Token)
    def post(self, body):
        """Exchange a username and password for a bearer token."""
        db = database.session()
        user = authenticate(db, body["username"], body["password"])
        if user is None:
            raise Unauthorized("用户名或密码错误")
        token, expires_at = issue_token(user)
        db.commit()
        return {"token": token, "expires_at": expires_at}


@blp.route("/me")
class MeView(MethodView):
    @blp.response(200, schemas.Me)
    @blp.doc(security=[{"bearer": []}])
    def get(self):
        """The caller: username, groups and roles."""
        actor = current_actor()
        return {
            "username": actor.username,
            "display_name": actor.display_name,
            "groups": sorted(actor.groups),
            "roles": sorted(actor.roles),
        }


@blp.route("/health")
class HealthView(MethodView):
    @blp.response(200, schemas.Health)
    @blp.alt_response(503, schema=schemas.Health)
    def get(self):
        """Liveness and database reachability (no auth)."""
        try:
            database.session().execute(text("SELECT 1"))
        except SQLAlchemyError:
            return {"status": "degraded", "database": "unavailable"}, 503
        return {"status": "ok", "database": "ok"}
