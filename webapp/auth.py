"""Who is calling: bearer tokens for the API (signed, stateless, so any host can check them).

Each request costs one indexed query (the user row joined to its groups), so a disabled
account, a changed password or a changed group membership takes effect on the very next
request, on every host. Only the token's signature check is remembered per process: the same
token string always verifies the same way, and its expiry is checked again on every use.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from flask import current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import bindparam, select
from werkzeug.exceptions import Unauthorized

from engine.access import Actor
from engine.models import Group, User, UserGroup

from .database import session, settings

FINGERPRINT_LENGTH = 12  # characters of the password hash a token carries
VERIFIED_TOKENS_KEPT = 4096  # per process; each entry is a token string and a small tuple

# The caller's account and groups in one round trip: one row per group (one row, group
# NULL, for a user without groups). Built once so SQLAlchemy's statement cache is hit cheaply.
IDENTITY = (
    select(User.username, User.display_name, User.active, User.password_hash, Group.name)
    .outerjoin(UserGroup, UserGroup.user_id == User.id)
    .outerjoin(Group, Group.id == UserGroup.group_id)
    .where(User.username == bindparam("username"))
)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="api-token")


def _fingerprint(password_hash: str) -> str:
    # A changed password or a disabled account invalidates every token issued before.
    return password_hash[-FINGERPRINT_LENGTH:]


def issue_token(user: User) -> tuple[str, datetime]:
    hours = settings().token_hours
    token = _serializer().dumps({"u": user.username, "h": _fingerprint(user.password_hash)})
    return token, datetime.now(UTC) + timedelta(hours=hours)


def _verified_tokens() -> dict[str, tuple[dict, float]]:
    """token -> (claims, expiry as a Unix time), for this app in this process."""
    return current_app.extensions["chengxin"].setdefault("verified_tokens", {})


def _token_claims(token: str) -> dict | None:
    """The claims of a validly signed, unexpired token, else None."""
    known = _verified_tokens()
    entry = known.get(token)
    if entry is not None:
        claims, expires = entry
        if time.time() < expires:
            return claims
        known.pop(token, None)
        return None
    max_age = settings().token_hours * 3600
    try:
        claims, signed_at = _serializer().loads(token, max_age=max_age, return_timestamp=True)
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(claims, dict):
        return None
    if len(known) >= VERIFIED_TOKENS_KEPT:
        known.clear()  # rare (that many live tokens in one process); atomic under threads
    known[token] = (claims, signed_at.timestamp() + max_age)
    return claims


def _actor_from_token(token: str) -> Actor | None:
    claims = _token_claims(token)
    if claims is None or not isinstance(claims.get("u"), str):
        return None
    rows = session().execute(IDENTITY, {"username": claims["u"]}).all()
    if not rows:
        return None
    username, display_name, active, password_hash, _ = rows[0]
    if not active or _fingerprint(password_hash or "") != claims.get("h"):
        return None
    groups = frozenset(row[4] for row in rows if row[4] is not None)
    return Actor(username, groups, display_name)


def current_user() -> Actor | None:
    """The caller of this request as an Actor (checked against the database), or None."""
    if "current_user" not in g:
        header = request.headers.get("Authorization", "")
        actor = None
        if header.startswith("Bearer "):
            actor = _actor_from_token(header[7:].strip())
        g.current_user = actor
    return g.current_user


def current_actor() -> Actor:
    actor = current_user()
    if actor is None:
        raise Unauthorized("需要登录")
    return actor


def require_login() -> Actor:
    return current_actor()
