"""督查/管理: the managers' dashboard, instance list (filters, columns, saved views, exports),
instance page (coloured diagram, timeline, variables, actions), the task list behind the task
charts, the heatmap of a process version, ledgers and the credit list behind its chart.

Only the managers and admins groups get in (webapp/permissions.py); everyone else gets the 403 page.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta

from flask import Blueprint, Response, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from engine import credit, definitions, ledgers, monitoring, queries, runtime, saved_views
from engine.errors import Conflict, NotAllowed, ValidationFailed

from .. import database
from . import bp as pages_bp
from . import present, work

bp = Blueprint("monitor", __name__, url_prefix="/monitor")

MIMETYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
COLUMN_LABELS = {key: _l(label) for key, label in monitoring.COLUMNS.items()}
SECTIONS = (
    ("dashboard", _l("总览")),
    ("instances", _l("流程实例")),
    ("tasks", _l("任务")),
    ("heatmap", _l("热力图")),
    ("ledgers", _l("台账")),
)
STATUS_COLOURS = {"running": "#1d4ed8", "waiting": "#0891b2", "suspended": "#b45309", "error": "#7f1d1d"}
LATE_COLOURS = {"overdue": "#b91c1c", "warning": "#d97706"}
ACTIONS = {
    "suspend": (runtime.suspend_instance, _l("流程已挂起。")),
    "resume": (runtime.resume_instance, _l("流程已恢复办理。")),
    "terminate": (runtime.terminate_instance, _l("流程已终止。")),
}


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", 1)))
    except ValueError:
        return 1


def _messages(exc: ValidationFailed) -> list[str]:
    return [m for messages in exc.errors.values() for m in messages] or [exc.message]


# --- charts (ECharts options; every data item links to the list behind it) ------------------


def _bar(categories: list[str], series: list[dict], *, horizontal: bool = False, stack: bool = False) -> dict:
    # Few categories: show every label, turned when they would crowd; many (weeks): let ECharts thin them.
    labels = {"interval": 0, "rotate": 30 if len(categories) > 3 and not horizontal else 0}
    if len(categories) > 8:
        labels = {"hideOverlap": True}
    category_axis = {"type": "category", "data": categories, "axisLabel": labels}
    value_axis = {"type": "value", "minInterval": 1}
    for item in series:
        item.setdefault("type", "bar")
        if stack:
            item.setdefault("stack", "total")
    return {
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0},
        "grid": {"left": 8, "right": 16, "top": 36, "bottom": 8, "containLabel": True},
        "xAxis": value_axis if horizontal else category_axis,
        "yAxis": category_axis if horizontal else value_axis,
        "series": series,
    }


def _link(endpoint: str, **params) -> str:
    return url_for(endpoint, **{k: v for k, v in params.items() if v not in (None, "")})


def _open_instances_chart(data: dict) -> dict:
    names = data["processes"]
    keys = sorted({r["process_key"] for r in data["open_instances"]})
    counts = {(r["process_key"], r["status"]): r for r in data["open_instances"]}
    series = []
    for status in monitoring.OPEN_STATUSES:
        if not any((k, status) in counts for k in keys):
            continue
        items = [
            {
                "value": counts[(k, status)]["count"] if (k, status) in counts else 0,
                "href": _link("pages.monitor.instances", process_key=k, status=status),
            }
            for k in keys
        ]
        name = str(present.label(present.INSTANCE_STATUS, status))
        series.append({"name": name, "data": items, "itemStyle": {"color": STATUS_COLOURS[status]}})
    late = [
        {
            "value": sum(r["overdue"] for s, r in counts.items() if s[0] == k),
            "href": _link("pages.monitor.instances", process_key=k, overdue="true"),
        }
        for k in keys
    ]
    chart = _bar([names.get(k, k) for k in keys], series, stack=True)
    chart["series"].append(
        {
            "type": "bar",
            "name": str(_("其中超期")),
            "data": late,
            "itemStyle": {"color": LATE_COLOURS["overdue"]},
        }
    )
    return chart


def _late_chart(rows: list[dict], label_key: str, filter_key: str, value_key: str) -> dict:
    series = [
        {
            "name": str(present.SLA_LABELS[level]),
            "itemStyle": {"color": LATE_COLOURS[level]},
            "data": [
                {
                    "value": r[level],
                    "href": _link("pages.monitor.tasks", **{filter_key: r[value_key]}, sla=level),
                }
                for r in rows
            ],
        }
        for level in ("overdue", "warning")
    ]
    return _bar([r[label_key] for r in rows], series)


def _weeks_chart(weeks: list[dict]) -> dict:
    labels = [f"{w['week'].month}/{w['week'].day}" for w in weeks]

    def items(key: str, first: str, last: str) -> list[dict]:
        return [
            {
                "value": w[key],
                "href": _link(
                    "pages.monitor.instances",
                    **{first: w["week"].isoformat(), last: (w["week"] + timedelta(days=6)).isoformat()},
                ),
            }
            for w in weeks
        ]

    series = [
        {"name": str(_("新发起")), "type": "line", "data": items("started", "started_from", "started_to")},
        {"name": str(_("已结束")), "type": "line", "data": items("finished", "ended_from", "ended_to")},
    ]
    return _bar(labels, series)


def _durations_chart(data: dict) -> dict:
    steps = list(reversed(data["step_durations"]))
    names = data["processes"]
    labels = [
        f"{names.get(s['process_key'], s['process_key'])} · {s['name'] or s['element_id']}" for s in steps
    ]

    def items(key: str) -> list[dict]:
        return [
            {
                "value": s[key],
                "href": _link(
                    "pages.monitor.tasks",
                    process_key=s["process_key"],
                    element_id=s["element_id"],
                    status="completed",
                    completed_from=data["window_start"].isoformat(),
                ),
            }
            for s in steps
        ]

    series = [
        {"name": str(_("中位数（工作日）")), "data": items("median_days"), "itemStyle": {"color": "#1d4ed8"}},
        {"name": str(_("90% 分位（工作日）")), "data": items("p90_days"), "itemStyle": {"color": "#b45309"}},
    ]
    return _bar(labels, series, horizontal=True)


def _credit_chart(rows: list[dict]) -> dict:
    statuses = [s for s in credit.STATUSES if any(r["status"] == s for r in rows)]
    counts = {(r["status"], r["severity"]): r["count"] for r in rows}
    series = [
        {
            "name": label,
            "data": [
                {
                    "value": counts.get((s, severity), 0),
                    "href": _link("pages.monitor.credit_list", status=s, severity=severity),
                }
                for s in statuses
            ],
        }
        for severity, label in credit.SEVERITIES.items()
    ]
    return _bar([credit.STATUSES[s] for s in statuses], series, stack=True)


def dashboard_charts(data: dict) -> dict[str, dict]:
    return {
        "open_instances": _open_instances_chart(data),
        "late_by_group": _late_chart(data["tasks_by_group"], "title", "group", "group"),
        "late_by_person": _late_chart(data["tasks_by_person"], "display_name", "assignee", "username"),
        "weeks": _weeks_chart(data["weeks"]),
        "durations": _durations_chart(data),
        "credit": _credit_chart(data["credit"]),
    }


@bp.get("/")
def dashboard():
    with work() as ctx:
        data = monitoring.dashboard(ctx)
    return render_template(
        "monitor/dashboard.html",
        nav="monitor",
        section="dashboard",
        sections=SECTIONS,
        data=data,
        charts=dashboard_charts(data),
    )


# --- instance list, exports and saved views --------------------------------------------------


def _chosen_columns(args: MultiDict) -> tuple[str, ...]:
    chosen = [c for value in args.getlist("columns") for c in value.split(",")]
    return monitoring.parse_columns(chosen)


def _list_params(filters: monitoring.InstanceFilter, columns) -> dict:
    params = filters.to_params()
    if tuple(columns) != monitoring.DEFAULT_COLUMNS:
        params["columns"] = ",".join(columns)
    return params


@bp.get("/instances")
def instances():
    errors = []
    try:
        filters = monitoring.InstanceFilter.from_mapping(request.args)
        columns = _chosen_columns(request.args)
    except ValidationFailed as exc:
        errors = _messages(exc)
        filters, columns = monitoring.InstanceFilter(), monitoring.DEFAULT_COLUMNS
    with work() as ctx:
        page = monitoring.list_instances(ctx, filters, page=_page_number())
        views = saved_views.list_views(ctx)
        processes = monitoring.process_names(ctx.session)
    return (
        render_template(
            "monitor/instances.html",
            nav="monitor",
            section="instances",
            sections=SECTIONS,
            page=page,
            filters=filters,
            raw=request.args,
            columns=columns,
            column_labels=COLUMN_LABELS,
            params=_list_params(filters, columns),
            views=views,
            processes=processes,
            statuses=monitoring.STATUSES,
            errors=errors,
        ),
        422 if errors else 200,
    )


def _file(name: str, fmt: str, content: bytes):
    return send_file(io.BytesIO(content), mimetype=MIMETYPES[fmt], as_attachment=True, download_name=name)


@bp.get("/instances/export")
def export():
    fmt = request.args.get("format", "xlsx")
    try:
        filters = monitoring.InstanceFilter.from_mapping(request.args)
        columns = _chosen_columns(request.args)
        with work() as ctx:
            content = monitoring.export_instances(ctx, filters, columns, fmt)
    except ValidationFailed as exc:
        for message in _messages(exc):
            flash(message, "error")
        return redirect(url_for("pages.monitor.instances", **request.args), code=303)
    return _file(f"{_('流程实例')}_{_today():%Y%m%d}.{fmt}", fmt, content)


@bp.post("/views")
def save_view():
    name = request.form.get("name", "")
    filters = {k: v for k, v in request.form.items() if k not in ("name", "columns", "csrf_token")}
    columns = request.form.get("columns", "")
    try:
        with work() as ctx:
            view = saved_views.save_view(ctx, name, filters, columns)
            params = _list_params(view.filter, view.columns)
    except ValidationFailed as exc:
        for message in _messages(exc):
            flash(message, "error")
        return redirect(url_for("pages.monitor.instances", **filters), code=303)
    flash(_("已保存视图“%(name)s”。", name=view.name), "success")
    return redirect(url_for("pages.monitor.instances", **params), code=303)


@bp.post("/views/<int:view_id>/delete")
def delete_view(view_id: int):
    with work() as ctx:
        saved_views.delete_view(ctx, view_id)
    flash(_("视图已删除。"), "success")
    return redirect(url_for("pages.monitor.instances"), code=303)


# --- tasks behind the task charts ----------------------------------------------------------


@bp.get("/tasks")
def tasks():
    errors = []
    try:
        filters = monitoring.TaskFilter.from_mapping(request.args)
    except ValidationFailed as exc:
        errors, filters = _messages(exc), monitoring.TaskFilter()
    with work() as ctx:
        result = monitoring.list_tasks(ctx, filters, page=_page_number())
        people = monitoring.names_of(ctx.session, [t.assignee for t in result.items])
        processes = monitoring.process_names(ctx.session)
    return (
        render_template(
            "monitor/tasks.html",
            nav="monitor",
            section="tasks",
            sections=SECTIONS,
            result=result,
            pages=max(1, -(-result.total // result.per_page)),
            filters=filters,
            params=filters.to_params(),
            people=people,
            processes=processes,
            sla=queries.task_sla,
        ),
        422 if errors else 200,
    )


# --- one instance -------------------------------------------------------------------------


@bp.get("/instances/<int:instance_id>")
def instance(instance_id: int):
    with work() as ctx:
        overview = monitoring.instance_overview(ctx, instance_id)
        definition = overview["instance"].definition
        return render_template(
            "monitor/instance.html",
            nav="monitor",
            section="instances",
            sections=SECTIONS,
            o=overview,
            item=overview["instance"],
            xml_url=url_for(
                "pages.monitor.definition_xml", process_key=definition.key, version=definition.version
            ),
            variables=_variable_rows(overview),
            sla=queries.task_sla,
        )


def _variable_rows(overview: dict) -> list[tuple[str, str]]:
    """(label, shown value) for each variable: form labels, option labels, lists joined."""
    rows = []
    for key, value in sorted(overview["variables"].items()):
        meta = overview["fields"].get(key, {})
        if isinstance(value, bool):
            shown = _("是") if value else _("否")
        elif isinstance(value, list):
            shown = "、".join(str(v) for v in value)
        else:
            shown = meta.get("options", {}).get(str(value), "" if value is None else str(value))
        rows.append((meta.get("label", key), shown))
    return rows


@bp.post("/instances/<int:instance_id>/<any(suspend, resume, terminate):action>")
def lifecycle(instance_id: int, action: str):
    operation, done = ACTIONS[action]
    reason = request.form.get("reason", "").strip()
    try:
        if action == "suspend" and not reason:
            raise ValidationFailed({"reason": [_("挂起流程必须填写原因")]})
        with work() as ctx:
            operation(ctx, instance_id, reason)
        flash(str(done), "success")
    except ValidationFailed as exc:
        for message in _messages(exc):
            flash(message, "error")
    except Conflict as exc:
        flash(exc.message, "error")
    return redirect(url_for("pages.monitor.instance", instance_id=instance_id), code=303)


@bp.post("/instances/<int:instance_id>/urge")
def urge(instance_id: int):
    try:
        with work() as ctx:
            urged = monitoring.urge_instance(ctx, instance_id, request.form.get("message", ""))
        flash(_("已催办 %(n)s 个待办任务。", n=len(urged)), "success")
    except (Conflict, NotAllowed) as exc:
        flash(exc.message, "error")
    return redirect(url_for("pages.monitor.instance", instance_id=instance_id), code=303)


@bp.get("/definitions/<process_key>/<int:version>.bpmn")
def definition_xml(process_key: str, version: int):
    with work() as ctx:
        xml = definitions.bpmn_xml(ctx.session, definitions.get_definition(ctx.session, process_key, version))
    return Response(xml, mimetype="application/xml")


# --- heatmap --------------------------------------------------------------------------------


@bp.get("/heatmap")
def heatmap():
    errors = []
    try:
        scope = monitoring.InstanceFilter.from_mapping(request.args)
        version = scope.version
    except ValidationFailed as exc:
        errors, scope, version = _messages(exc), monitoring.InstanceFilter(), None
    with work() as ctx:
        versions = definitions.list_definitions(ctx.session, all_versions=True)
        key = scope.process_key or (versions[0].key if versions else None)
        heat = None
        if key:
            heat = monitoring.heatmap(
                ctx, key, version, started_from=scope.started_from, started_to=scope.started_to
            )
    return (
        render_template(
            "monitor/heatmap.html",
            nav="monitor",
            section="heatmap",
            sections=SECTIONS,
            heat=heat,
            versions=versions,
            scope=scope,
            errors=errors,
            xml_url=url_for(
                "pages.monitor.definition_xml",
                process_key=heat["definition"].key,
                version=heat["definition"].version,
            )
            if heat
            else None,
        ),
        422 if errors else 200,
    )


# --- ledgers and the credit list --------------------------------------------------------------


def _today() -> date:
    return datetime.now(database.settings().tzinfo).date()


def _month_so_far() -> tuple[date, date]:
    today = _today()
    return today.replace(day=1), today


@bp.get("/ledgers")
def ledgers_page():
    first, last = _month_so_far()
    return render_template(
        "monitor/ledgers.html",
        nav="monitor",
        section="ledgers",
        sections=SECTIONS,
        ledgers=ledgers.LEDGERS,
        first=request.args.get("from", first.isoformat()),
        last=request.args.get("to", last.isoformat()),
    )


def _date_arg(name: str) -> date:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        raise ValidationFailed({name: [_("日期格式应为 YYYY-MM-DD")]}) from None


@bp.get("/ledgers/download")
def ledger_download():
    kind, fmt = request.args.get("kind", ""), request.args.get("format", "xlsx")
    try:
        first, last = _date_arg("from"), _date_arg("to")
        with work() as ctx:
            name, content = ledgers.ledger_file(ctx, kind, first, last, fmt)
    except ValidationFailed as exc:
        for message in _messages(exc):
            flash(message, "error")
        return redirect(url_for("pages.monitor.ledgers_page", **request.args), code=303)
    return _file(name, fmt, content)


@bp.get("/credit")
def credit_list():
    status, severity = request.args.get("status") or None, request.args.get("severity") or None
    with work() as ctx:
        records, total = credit.list_records(
            ctx.session, status=status, severity=severity, page=_page_number()
        )
    return render_template(
        "monitor/credit.html",
        nav="monitor",
        section="dashboard",
        sections=SECTIONS,
        records=records,
        total=total,
        page=_page_number(),
        pages=max(1, -(-total // 50)),
        status=status,
        severity=severity,
        statuses=credit.STATUSES,
        severities=credit.SEVERITIES,
    )


# Mounted on the workspace blueprint (its login, error pages, headers and layout), once, when
# this module is first imported — before the app registers that blueprint.
pages_bp.register_blueprint(bp)
