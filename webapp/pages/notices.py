"""消息: the notification centre and the unread counter in the header."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from engine import notifications

from . import work
from .auth import safe_next

bp = Blueprint("notices", __name__)


@bp.get("/notifications")
def index():
    unread_only = request.args.get("unread") == "1"
    try:
        page = max(1, int(request.args.get("page", 1)))
    except ValueError:
        page = 1
    with work() as ctx:
        result = notifications.list_for(ctx.session, ctx.actor.username, unread_only=unread_only, page=page)
        return render_template(
            "notifications.html", nav="notifications", result=result, unread_only=unread_only
        )


@bp.get("/notifications/unread-count")
def unread_count():
    with work() as ctx:
        return jsonify({"count": notifications.unread_count(ctx.session, ctx.actor.username)})


@bp.get("/notifications/<int:notification_id>")
def open_one(notification_id: int):
    with work() as ctx:
        item = notifications.open_notification(ctx.session, ctx.actor.username, notification_id)
        link = item.link
    return redirect(safe_next(link, url_for("pages.notices.index")))


@bp.post("/notifications/read")
def mark_read():
    ids = (
        None
        if request.form.get("all") == "1"
        else [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    )
    with work() as ctx:
        changed = notifications.mark_read(ctx.session, ctx.actor.username, ids)
    flash(_("已将 %(n)s 条消息标为已读。", n=changed), "success")
    return redirect(url_for("pages.notices.index"), code=303)
