"""Tokens, the caller's identity and health."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import Unauthorized

from engine import audit, login_throttle
from engine.users import authenticate

from .. import database
from ..auth import current_actor, issue_token
from ..errors import error_body
from . import schemas

blp = Blueprint("auth", __name__, url_prefix="/api/v1", description="认证与健康检查")

LOCKOUT_MINUTES = int(login_throttle.WINDOW.total_seconds() // 60)


@blp.route("/auth/token")
class TokenView(MethodView):
    @blp.arguments(schemas.TokenRequest)
    @blp.response(200, schemas.Token)
    @blp.alt_response(401, schema=schemas.ApiError)
    @blp.alt_response(429, schema=schemas.ApiError)
    def post(self, body):
        """Exchange a username and password for a bearer token.

        Failures count with the page login's (engine/login_throttle.py): after MAX_FAILURES
        within WINDOW from one address, that user name is locked out there (429), audited once.
        """
        db = database.session()
        username, address = body["username"], request.remote_addr
        if login_throttle.login_blocked(db, username, address):
            return _locked_out()
        user = authenticate(db, username, body["password"])
        if user is None:
            _count_failure(db, username, address)
            db.commit()
            raise Unauthorized("用户名或密码错误")
        login_throttle.clear_login_failures(db, username, address)
        token, expires_at = issue_token(user)
        db.commit()
        return {"token": token, "expires_at": expires_at}


def _count_failure(db, username: str, address: str | None) -> None:
    login_throttle.record_login_failure(db, username, address)
    audit.record_event(db, "login_failed", user=username, details={"address": address, "via": "api"})
    if login_throttle.login_blocked(db, username, address):  # this failure started the lockout
        audit.record_event(
            db,
            "login_locked",
            user=username,
            details={"address": address, "via": "api", "minutes": LOCKOUT_MINUTES},
        )


def _locked_out():
    response = error_body(
        429,
        "too_many_requests",
        f"登录失败次数过多，请 {LOCKOUT_MINUTES} 分钟后再试",
        retry_after=int(login_throttle.WINDOW.total_seconds()),
    )
    response.headers["Retry-After"] = str(int(login_throttle.WINDOW.total_seconds()))
    return response


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
