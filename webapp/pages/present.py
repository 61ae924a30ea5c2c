"""How engine values read on a page: labels, countdowns, sizes (presentation only)."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine.users import GROUPS

from .. import database

TAB_LABELS = {
    "mine": _l("我的待办"),
    "claimable": _l("可认领"),
    "done": _l("已办"),
    "started": _l("我发起的"),
    "cc": _l("抄送我的"),
}
SLA_LABELS = {"normal": _l("正常"), "warning": _l("临期"), "overdue": _l("超期")}
SORT_LABELS = {"due": _l("按到期时间"), "newest": _l("最新在前"), "started": _l("按发起时间")}
EVENT_LABELS = {
    "instance_started": _l("发起"),
    "claimed": _l("认领"),
    "unclaimed": _l("退回认领"),
    "assigned": _l("转办"),
    "delegated": _l("委派"),
    "delegation_resolved": _l("委派办理完毕"),
    "completed": _l("办理"),
    "sent_back": _l("退回"),
    "urged": _l("催办"),
    "copied": _l("抄送"),
    "attachment_added": _l("上传附件"),
    "message": _l("收到消息"),
    "timers_fired": _l("定时触发"),
    "suspended": _l("挂起"),
    "resumed": _l("恢复"),
    "terminated": _l("终止"),
    "instance_completed": _l("办结"),
}
INSTANCE_STATUS = {
    "running": _l("办理中"),
    "waiting": _l("等待中"),
    "completed": _l("已办结"),
    "terminated": _l("已终止"),
    "suspended": _l("已挂起"),
    "error": _l("出错"),
}
TASK_STATUS = {"open": _l("待办"), "completed": _l("已办结"), "cancelled": _l("已退回/取消")}


def workdays_left(due_at) -> int | None:
    if due_at is None:
        return None
    return database.settings().calendar.workdays_left(due_at)


def due_text(due_at) -> str:
    """剩余 3 个工作日 / 今日到期 / 超期 2 个工作日 (working days, by the bureau's calendar)."""
    left = workdays_left(due_at)
    if left is None:
        return _("无时限")
    if left < 0:
        return _("超期 %(n)s 个工作日", n=-left)
    if left == 0:
        return _("今日到期")
    return _("剩余 %(n)s 个工作日", n=left)


def group_title(name: str) -> str:
    return GROUPS.get(name, name)


def groups_text(names) -> str:
    return "、".join(group_title(n) for n in names or [])


def file_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} B"


def label(mapping: dict, key) -> str:
    value = mapping.get(key)
    return str(value) if value is not None else (key or "")


def labelled_errors(form: dict | None, errors: dict) -> list[tuple[str, str]]:
    """(field label, message) for every error, "" as the label of errors about the whole form."""
    from engine.forms import form_fields

    labels = {f["key"]: f["label"] for f in form_fields(form)} if form else {}
    listed = []
    for key, messages in errors.items():
        label = "" if key == "_schema" else labels.get(key) or labels.get(key.split(".")[0], key)
        listed.extend((label, message) for message in messages)
    return listed
