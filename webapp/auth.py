"""Who is calling: bearer tokens for the API (signed, stateless, so any host can check them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.exceptions import Unauthorized

from engine.access import Actor
from engine.models import User
from engine.users import actor_for

from .database import session, settings


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="api-token")


def issue_token(user: User) -> tuple[str, datetime]:
    hours = settings().token_hours
    token = _serializer().dumps({"u": user.username, "h": user.password_hash[-12:]})
    return token, datetime.now(UTC) + timedelta(hours=hours)


def _user_from_token(token: str) -> User | None:
    try:
        data = _serializer().loads(token, max_age=settings().token_hours * 3600)
    except (BadSignature, SignatureExpired):
        return None
    user = session().scalar(select(User).where(User.username == data.get("u")))
    # A changed password or a disabled account invalidates every token issued before.
    if user is None or not user.active or user.password_hash[-12:] != data.get("h"):
        return None
    return user


def current_user() -> User | None:
    if "current_user" not in g:
        header = request.headers.get("Authorization", "")
        user = None
        if header.startswith("Bearer "):
            user = _user_from_token(header[7:].strip())
        g.current_user = user
    return g.current_user


def current_actor() -> Actor:
    user = current_user()
    if user is None:
        raise Unauthorized("需要登录")
    return actor_for(user)


def require_login() -> Actor:
    return current_actor()
