"""Sign in and out (session cookie, argon2, rate limited) and the language switch."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import audit, login_throttle, users

from .. import database, i18n
from .session import current_page_user, sign_in, sign_out

bp = Blueprint("auth", __name__)


def safe_next(target: str | None, default: str) -> str:
    """Only a local path: never send a signed-in user to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _login_form(status: int = 200, error: str | None = None, username: str = ""):
    return (
        render_template(
            "login.html", error=error, username=username, next=request.values.get("next", ""), remember=False
        ),
        status,
    )


@bp.route("/login", methods=["GET", "POST"])
def login():
    inbox = url_for("pages.inbox.index")
    if request.method == "GET":
        if current_page_user() is not None:
            return redirect(safe_next(request.args.get("next"), inbox))
        return _login_form()
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    address = request.remote_addr
    db = database.session()
    if login_throttle.login_blocked(db, username, address):
        return _login_form(429, _("登录失败次数过多，请 5 分钟后再试。"), username)
    user = users.authenticate(db, username, password) if username and password else None
    if user is None:
        login_throttle.record_login_failure(db, username, address)
        audit.record_event(db, "login_failed", user=username or None, details={"address": address})
        db.commit()
        return _login_form(401, _("用户名或密码不正确。"), username)
    login_throttle.clear_login_failures(db, username, address)
    audit.record_event(db, "login", user=user.username, details={"address": address})
    db.commit()
    sign_in(user, remember=request.form.get("remember") == "1")
    return redirect(safe_next(request.form.get("next"), inbox), code=303)


@bp.post("/logout")
def logout():
    user = current_page_user()
    if user is not None:
        db = database.session()
        audit.record_event(db, "logout", user=user.username, details={"address": request.remote_addr})
        db.commit()
    sign_out()
    flash(_("您已安全退出。"), "success")
    return redirect(url_for("pages.auth.login"), code=303)


@bp.get("/language/<language>")
def language(language: str):
    target = safe_next(request.args.get("next"), url_for("pages.inbox.index"))
    return i18n.remember_language(redirect(target), language)
