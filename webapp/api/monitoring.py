"""Managers' monitoring API: summary, dashboard data, the filtered instance and task lists with
their exports, the heatmap of a version, ledgers, audit verification, 催办 and saved views.

Everything here answers 403 to staff outside the managers and admins groups.
"""

from __future__ import annotations

import io

from flask import send_file
from flask.views import MethodView
from flask_smorest import Blueprint

from engine import ledgers, monitoring, saved_views

from .. import database
from . import present, schemas

blp = Blueprint("monitoring", __name__, url_prefix="/api/v1", description="监控与台账（督查/管理）")

MIMETYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FILE_RESPONSE = {"200": {"description": "CSV or XLSX file", "content": {m: {} for m in MIMETYPES.values()}}}
PAGING = ("page", "per_page", "columns", "format")


def _file(name: str, fmt: str, content: bytes):
    return send_file(io.BytesIO(content), mimetype=MIMETYPES[fmt], as_attachment=True, download_name=name)


def _instance_filter(query: dict) -> monitoring.InstanceFilter:
    return monitoring.InstanceFilter.from_mapping({k: v for k, v in query.items() if k not in PAGING})


@blp.route("/stats/summary")
class SummaryView(MethodView):
    @blp.response(200, schemas.StatsSummary)
    def get(self):
        """Instances by status, open and overdue tasks, overall and per process (managers)."""
        with database.unit_of_work() as ctx:
            return monitoring.summary(ctx)


@blp.route("/monitor/dashboard")
class DashboardView(MethodView):
    @blp.response(200, schemas.Dashboard)
    def get(self):
        """The data of every dashboard chart (managers)."""
        with database.unit_of_work() as ctx:
            return monitoring.dashboard(ctx)


def _listed(page: monitoring.InstancePage, row: monitoring.InstanceRow, columns) -> dict:
    body = present.instance(None, row.instance, with_tasks=False)
    body["tasks"] = [present.task(t) for t in row.open_tasks]
    body["overdue"] = row.overdue
    body["cells"] = {
        k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in page.cells(row, columns).items()
    }
    return body


@blp.route("/monitor/instances")
class MonitorInstancesView(MethodView):
    @blp.arguments(schemas.MonitorInstanceQuery, location="query")
    @blp.response(200, schemas.MonitorInstanceList)
    def get(self, query):
        """Instances by flow, version, status, starter, dates, overdue, business key and subject (managers)."""
        filters = _instance_filter(query)
        columns = monitoring.parse_columns(query.get("columns"))
        with database.unit_of_work() as ctx:
            page = monitoring.list_instances(ctx, filters, page=query["page"], per_page=query["per_page"])
            return {
                "items": [_listed(page, row, columns) for row in page.rows],
                "total": page.total,
                "page": page.page,
                "per_page": page.per_page,
                "columns": list(columns),
            }


@blp.route("/monitor/instances/export")
class MonitorExportView(MethodView):
    @blp.arguments(schemas.MonitorExportQuery, location="query")
    @blp.doc(responses=FILE_RESPONSE)
    def get(self, query):
        """Every instance the filter shows (all pages), with the chosen columns, as XLSX or CSV."""
        filters = _instance_filter(query)
        columns = monitoring.parse_columns(query.get("columns"))
        fmt = query["format"]
        with database.unit_of_work() as ctx:
            content = monitoring.export_instances(ctx, filters, columns, fmt)
        return _file(f"流程实例.{fmt}", fmt, content)


@blp.route("/monitor/tasks")
class MonitorTasksView(MethodView):
    @blp.arguments(schemas.MonitorTaskQuery, location="query")
    @blp.response(200, schemas.TaskList)
    def get(self, query):
        """Tasks by group, person, SLA, flow and step: the list behind the task charts (managers)."""
        filters = monitoring.TaskFilter.from_mapping({k: v for k, v in query.items() if k not in PAGING})
        with database.unit_of_work() as ctx:
            result = monitoring.list_tasks(ctx, filters, page=query["page"], per_page=query["per_page"])
            return {
                "items": [present.task(t) for t in result.items],
                "total": result.total,
                "page": result.page,
                "per_page": result.per_page,
            }


@blp.route("/monitor/heatmap/<process_key>")
class HeatmapView(MethodView):
    @blp.arguments(schemas.HeatmapQuery, location="query")
    @blp.response(200, schemas.Heatmap)
    def get(self, query, process_key):
        """Per element of one version (latest by default): instances through it, average hours, open, overdue."""
        with database.unit_of_work() as ctx:
            heat = monitoring.heatmap(ctx, process_key, query["version"], **_range(query))
        definition = heat.pop("definition")
        return {**heat, "process_key": definition.key, "version": definition.version, "name": definition.name}


def _range(query: dict) -> dict:
    return {"started_from": query["started_from"], "started_to": query["started_to"]}


@blp.route("/monitor/ledgers/<kind>")
class LedgerView(MethodView):
    @blp.arguments(schemas.LedgerQuery, location="query")
    @blp.doc(responses=FILE_RESPONSE)
    def get(self, query, kind):
        """台账 (complaints | objections | repairs | judicial) of matters received in a date range."""
        with database.unit_of_work() as ctx:
            name, content = ledgers.ledger_file(
                ctx, kind, query["date_from"], query["date_to"], query["format"]
            )
        return _file(name, query["format"], content)


@blp.route("/monitor/instances/<int:instance_id>/audit")
class AuditView(MethodView):
    @blp.response(200, schemas.AuditReport)
    def get(self, instance_id):
        """The instance's hash chain of events checked; `breaks` lists altered or missing events."""
        with database.unit_of_work() as ctx:
            return monitoring.verify_instance_audit(ctx, instance_id)


@blp.route("/monitor/instances/<int:instance_id>/urge")
class UrgeView(MethodView):
    @blp.arguments(schemas.UrgeRequest)
    @blp.response(200, schemas.UrgeResult)
    def post(self, body, instance_id):
        """催办 every open task of the instance (409 when there is nothing to urge or it was just urged)."""
        with database.unit_of_work() as ctx:
            urged = monitoring.urge_instance(ctx, instance_id, body["message"])
            return {"urged": len(urged), "task_ids": [u.task_id for u in urged]}


def _view(view) -> dict:
    return {
        "id": view.id,
        "name": view.name,
        "filters": view.filters,
        "columns": view.columns,
        "updated_at": view.updated_at,
    }


@blp.route("/monitor/views")
class SavedViewsView(MethodView):
    @blp.response(200, schemas.SavedViewList)
    def get(self):
        """My saved views of the instance list."""
        with database.unit_of_work() as ctx:
            return {"items": [_view(v) for v in saved_views.list_views(ctx)]}

    @blp.arguments(schemas.SavedViewRequest)
    @blp.response(200, schemas.SavedView)
    def post(self, body):
        """Save a view (filters and columns) under a name; the same name replaces it."""
        with database.unit_of_work() as ctx:
            view = saved_views.save_view(ctx, body["name"], body["filters"], body["columns"])
        return _view(view)


@blp.route("/monitor/views/<int:view_id>")
class SavedViewView(MethodView):
    @blp.response(204)
    def delete(self, view_id):
        """Delete one of my saved views."""
        with database.unit_of_work() as ctx:
            saved_views.delete_view(ctx, view_id)
