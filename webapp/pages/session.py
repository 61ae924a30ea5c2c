"""Who is signed in to the pages: a user name in the signed session cookie, checked each request."""

from __future__ import annotations

from flask import g, session
from sqlalchemy import select
from werkzeug.exceptions import Unauthorized

from engine.access import Actor
from engine.models import User
from engine.users import actor_for

from .. import csrf, database

USER_KEY = "user"
FINGERPRINT_KEY = "pw"


def _fingerprint(user: User) -> str:
    # A changed password or a disabled account ends every session opened before.
    return user.password_hash[-12:]


def sign_in(user: User, remember: bool) -> None:
    session.clear()
    session[USER_KEY] = user.username
    session[FINGERPRINT_KEY] = _fingerprint(user)
    session.permanent = remember
    csrf.rotate()
    g.page_user = user


def sign_out() -> None:
    session.clear()
    g.page_user = None


def current_page_user() -> User | None:
    if "page_user" not in g:
        user = None
        username = session.get(USER_KEY)
        if username:
            user = database.session().scalar(select(User).where(User.username == username))
            if user is None or not user.active or session.get(FINGERPRINT_KEY) != _fingerprint(user):
                session.pop(USER_KEY, None)
                session.pop(FINGERPRINT_KEY, None)
                user = None
        g.page_user = user
    return g.page_user


def current_actor() -> Actor:
    user = current_page_user()
    if user is None:
        raise Unauthorized("需要登录")
    return actor_for(user)
