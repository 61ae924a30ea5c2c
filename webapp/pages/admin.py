"""系统管理: users (create, disable/enable, reset password, groups) and groups (create, rename).

Admins only (webapp/permissions.py); every change is one engine.users operation, audited.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import users
from engine.errors import Conflict, ValidationFailed

from ..api.admin import open_task_count
from . import work

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _messages(exc: ValidationFailed | Conflict) -> list[str]:
    if isinstance(exc, ValidationFailed):
        return [m for messages in exc.errors.values() for m in messages]
    return [exc.message]


def _refused(exc: ValidationFailed | Conflict) -> None:
    for message in _messages(exc):
        flash(message, "error")


@bp.get("/")
def index():
    return redirect(url_for("pages.admin.users"))


def _user_list(status: int = 200, form: dict | None = None):
    with work() as ctx:
        rows = [(u, open_task_count(ctx.session, u.username)) for u in users.list_users(ctx.session)]
        return (
            render_template(
                "admin/users.html",
                nav="admin",
                section="users",
                rows=rows,
                groups=users.list_groups(ctx.session),
                form=form or {},
            ),
            status,
        )


@bp.get("/users", endpoint="users")
def user_list():
    return _user_list()


@bp.post("/users")
def create_user():
    form = {
        "username": request.form.get("username", "").strip(),
        "display_name": request.form.get("display_name", "").strip(),
        "email": request.form.get("email", "").strip() or None,
        "groups": request.form.getlist("groups"),
    }
    try:
        with work() as ctx:
            users.create_account(
                ctx.session, password=request.form.get("password", ""), actor=ctx.actor, **form
            )
    except (ValidationFailed, Conflict) as exc:
        _refused(exc)
        return _user_list(422, form)
    flash(_("用户 %(name)s 已创建。", name=form["username"]), "success")
    return redirect(url_for("pages.admin.user", username=form["username"]), code=303)


@bp.get("/users/<username>")
def user(username: str):
    with work() as ctx:
        found = users.get_user(ctx.session, username)
        return render_template(
            "admin/user.html",
            nav="admin",
            section="users",
            user=found,
            open_tasks=open_task_count(ctx.session, username),
            groups=users.list_groups(ctx.session),
        )


def _change(username: str, operation, done: str):
    """Run one engine.users operation on a user; flash its outcome and go back to their page."""
    try:
        with work() as ctx:
            result = operation(ctx)
    except (ValidationFailed, Conflict) as exc:
        _refused(exc)
        return redirect(url_for("pages.admin.user", username=username), code=303)
    flash(done(result) if callable(done) else done, "success")
    return redirect(url_for("pages.admin.user", username=username), code=303)


@bp.post("/users/<username>/disable")
def disable_user(username: str):
    return _change(
        username,
        lambda ctx: users.disable_user(ctx.session, username, actor=ctx.actor),
        lambda moved: _("账号已停用，%(n)s 个待办任务已退回。", n=len(moved)),
    )


@bp.post("/users/<username>/enable")
def enable_user(username: str):
    return _change(
        username, lambda ctx: users.enable_user(ctx.session, username, actor=ctx.actor), _("账号已启用。")
    )


@bp.post("/users/<username>/password")
def reset_password(username: str):
    given = request.form.get("password", "") or None
    return _change(
        username,
        lambda ctx: users.reset_password(ctx.session, username, given, actor=ctx.actor),
        lambda password: _("密码已重置。") if given else _("密码已重置为：%(p)s（仅显示一次）", p=password),
    )


@bp.post("/users/<username>/groups")
def set_groups(username: str):
    wanted = request.form.getlist("groups")
    return _change(
        username,
        lambda ctx: users.set_groups(ctx.session, username, wanted, actor=ctx.actor),
        _("用户组已更新。"),
    )


def _group_list(status: int = 200, form: dict | None = None):
    with work() as ctx:
        rows = [(g, users.group_members(ctx.session, g.name)) for g in users.list_groups(ctx.session)]
        return render_template(
            "admin/groups.html", nav="admin", section="groups", rows=rows, form=form or {}
        ), status


@bp.get("/groups")
def groups():
    return _group_list()


@bp.post("/groups")
def create_group():
    form = {"name": request.form.get("name", "").strip(), "title": request.form.get("title", "").strip()}
    try:
        with work() as ctx:
            users.create_group(ctx.session, form["name"], form["title"], actor=ctx.actor)
    except (ValidationFailed, Conflict) as exc:
        _refused(exc)
        return _group_list(422, form)
    flash(_("用户组 %(name)s 已创建。", name=form["name"]), "success")
    return redirect(url_for("pages.admin.groups"), code=303)


@bp.post("/groups/<name>")
def rename_group(name: str):
    try:
        with work() as ctx:
            users.rename_group(ctx.session, name, request.form.get("title", ""), actor=ctx.actor)
    except ValidationFailed as exc:
        _refused(exc)
    else:
        flash(_("用户组名称已更新。"), "success")
    return redirect(url_for("pages.admin.groups"), code=303)
