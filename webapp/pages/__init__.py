"""The staff workspace: server-rendered pages (Jinja) over `engine`, Chinese by default.

One parent blueprint holds what every page shares: HTML error pages and the template context;
each area is a child blueprint. Who may open which page: webapp/permissions.py (signed-out
visitors go to the login page). Security headers: webapp/security.py.
"""

from __future__ import annotations

from contextlib import contextmanager

from flask import Blueprint, Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from engine import errors as engine_errors
from engine import notifications, worklist
from engine.runtime import Context
from engine.users import actor_for

from .. import csrf, database
from . import assets, present
from .session import current_actor, current_page_user

bp = Blueprint("pages", __name__)


@contextmanager
def work():
    """The engine context of this page request (the signed-in user); commits when the block succeeds."""
    db = database.session()
    try:
        yield Context(db, current_actor(), database.settings())
        db.commit()
    except BaseException:
        db.rollback()
        raise


@bp.context_processor
def _page_context():
    user = current_page_user()
    context = {
        "asset_url": assets.asset_url,
        "present": present,
        "current_user": user,
        "nav_roles": frozenset(),
    }
    if user is not None:
        context["nav_roles"] = actor_for(user).roles
        db = database.session()
        context["nav_counts"] = {
            "mine": worklist.open_task_count(db, user.username),
            "unread": notifications.unread_count(db, user.username),
        }
    return context


def error_page(status: int, title: str, message: str):
    return render_template("error.html", status=status, title=title, message=message), status


def _engine_error(exc: engine_errors.EngineError):
    if isinstance(exc, engine_errors.NotAllowed):
        return error_page(403, _("无权操作"), exc.message)
    if isinstance(exc, engine_errors.NotFound):
        return error_page(404, _("未找到"), exc.message)
    if isinstance(exc, engine_errors.Conflict):
        return error_page(409, _("无法办理"), exc.message)
    if isinstance(exc, engine_errors.TooLarge):
        return error_page(413, _("文件过大"), exc.message)
    if isinstance(exc, engine_errors.Unavailable):
        return error_page(503, _("暂时不可用"), exc.message)
    return error_page(422, _("无法处理"), exc.message)


HTTP_TITLES = {
    400: (_l("请求无效"), _l("请求无效，请返回上一页重试。")),
    401: (_l("需要登录"), _l("请先登录。")),
    403: (_l("无权操作"), _l("您没有权限访问此页面。")),
    404: (_l("未找到"), _l("您要找的页面不存在。")),
    405: (_l("不支持的操作"), _l("不支持该请求方式。")),
    413: (_l("文件过大"), _l("上传的文件超过大小限制（20 MB）。")),
    429: (_l("操作过于频繁"), _l("请稍后再试。")),
}


def _http_error(exc: HTTPException):
    status = exc.code or 500
    title, message = HTTP_TITLES.get(status, (_l("出错了"), _l("请求未能完成。")))
    if isinstance(exc, csrf.CSRFError):
        return error_page(400, _("页面已过期"), _("页面已过期或请求来源无法验证，请刷新页面后重试。"))
    return error_page(status, str(title), str(message))


def _stale(_exc):
    return error_page(409, _("无法办理"), _("数据已被其他人修改，请刷新页面后重试。"))


bp.register_error_handler(engine_errors.EngineError, _engine_error)
bp.register_error_handler(HTTPException, _http_error)
bp.register_error_handler(StaleDataError, _stale)

# The areas, each a child blueprint; imported last because they use `work` above.
from . import admin, auth, inbox, notices, start, tasks  # noqa: E402

for _area in (auth, inbox, start, tasks, notices, admin):
    bp.register_blueprint(_area.bp)


def register_pages(app: Flask) -> None:
    """Mount the workspace pages on the app."""
    app.register_blueprint(bp)
