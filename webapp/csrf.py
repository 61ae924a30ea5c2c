"""CSRF protection: every state-changing request outside the bearer-token API carries the
session's token, in the form field `csrf_token` or the `X-CSRFToken` header.

The API under /api/ is exempt because it authenticates by bearer token only, never by the
session cookie; an endpoint there that ever accepts the cookie must call `check()` itself.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, request, session
from werkzeug.exceptions import BadRequest

SESSION_KEY = "_csrf"
FIELD = "csrf_token"
HEADER = "X-CSRFToken"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
EXEMPT_PREFIX = "/api/"


class CSRFError(BadRequest):
    description = "页面已过期或请求来源无法验证，请刷新页面后重试。"


def csrf_token() -> str:
    """The session's token, created on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def rotate() -> None:
    """A fresh token (after login), so a token seen before login is worthless after it."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)


def check() -> None:
    """Raise CSRFError (HTTP 400) unless the request carries the session's token."""
    expected = session.get(SESSION_KEY)
    sent = request.headers.get(HEADER) or request.form.get(FIELD)
    if not expected or not sent or not hmac.compare_digest(str(expected), str(sent)):
        raise CSRFError()


def _protect() -> None:
    if request.method in SAFE_METHODS or request.path.startswith(EXEMPT_PREFIX):
        return
    check()


def init_app(app: Flask) -> None:
    app.before_request(_protect)
    app.jinja_env.globals["csrf_token"] = csrf_token
