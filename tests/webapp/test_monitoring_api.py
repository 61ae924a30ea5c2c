"""The managers' monitoring API, /metrics and `chengxin verify-audit`, through HTTP and the CLI."""

from __future__ import annotations

import io
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import text

import engine.saved_views  # noqa: F401  (registers its table before create_all)
import engine.urging  # noqa: F401
from webapp.cli import main

from ..engine.test_ledgers import FILES as COMPLAINT_FILES
from .test_tasks_api import start

MANAGERS = ("director", "deputy", "supervisor", "admin")
STAFF = ("registrar", "handler", "chief", "legal", "liaison", "analyst")


@pytest.fixture
def running(api, deployed):
    """Three simple_review instances: one finished, one claimed by registrar, one waiting in the office."""
    instances = [start(api, subject_name=name) for name in ("许昌甲化工有限公司", "许昌乙矿业", "许昌丙建材")]
    first = instances[0]["tasks"][0]["id"]
    done = api.post(
        f"/api/v1/tasks/{first}/complete", user="registrar", json={"data": {"decision": "reject"}}
    )
    assert done.status_code == 200, done.json
    claimed = api.post(f"/api/v1/tasks/{instances[1]['tasks'][0]['id']}/claim", user="registrar")
    assert claimed.status_code == 200
    return instances


def test_summary_as_api_md_says(api, running):
    response = api.get("/api/v1/stats/summary", user="director")
    assert response.status_code == 200
    body = response.json
    assert {"instances_by_status", "open_tasks", "overdue_tasks", "by_process"} <= set(body)
    assert body["instances_by_status"]["running"] == 2 and body["instances_by_status"]["completed"] == 1
    assert body["open_tasks"] == 2 and body["overdue_tasks"] == 0
    process = body["by_process"]["simple_review"]
    assert process["instances_by_status"]["running"] == 2 and process["open_tasks"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/stats/summary",
        "/api/v1/monitor/dashboard",
        "/api/v1/monitor/instances",
        "/api/v1/monitor/instances/export",
        "/api/v1/monitor/tasks",
        "/api/v1/monitor/heatmap/simple_review",
        "/api/v1/monitor/ledgers/complaints?from=2026-01-01&to=2026-01-31",
        "/api/v1/monitor/instances/1/audit",
        "/api/v1/monitor/views",
    ],
)
def test_staff_get_403_and_strangers_401(api, running, path):
    for user in STAFF:
        response = api.get(path, user=user)
        assert response.status_code == 403, (user, response.status_code)
        assert response.json["error"] == "forbidden"
    assert api.get(path).status_code == 401
    assert api.get(path, user="supervisor").status_code == 200


def test_staff_cannot_urge_or_save_views(api, running):
    instance_id = running[2]["id"]
    assert (
        api.post(f"/api/v1/monitor/instances/{instance_id}/urge", user="registrar", json={}).status_code
        == 403
    )
    assert api.post("/api/v1/monitor/views", user="chief", json={"name": "x"}).status_code == 403


def test_dashboard_data(api, running):
    body = api.get("/api/v1/monitor/dashboard", user="deputy").json
    assert body["processes"]["simple_review"] == "简单审核"
    assert body["open_instances"] == [
        {"process_key": "simple_review", "status": "running", "count": 2, "overdue": 0}
    ]
    assert (
        len(body["weeks"]) == 12 and body["weeks"][-1]["started"] == 3 and body["weeks"][-1]["finished"] == 1
    )
    [step] = body["step_durations"]
    assert (step["element_id"], step["count"], step["median_days"], step["p90_days"]) == (
        "first_review",
        1,
        0,
        0,
    )
    assert body["tasks_by_group"] == [] and body["credit"] == []


def test_instance_list_filters_and_columns(api, running):
    url = "/api/v1/monitor/instances"
    everything = api.get(url, user="director").json
    assert everything["total"] == 3 and everything["columns"][0] == "business_key"
    assert api.get(url + "?status=completed", user="director").json["total"] == 1
    assert api.get(url + "?subject=矿业", user="director").json["items"][0]["id"] == running[1]["id"]
    assert api.get(url + "?version=2", user="director").json["total"] == 0
    assert api.get(url + "?started_by=registrar&overdue=false", user="director").json["total"] == 3
    key = running[2]["business_key"]
    chosen = api.get(f"{url}?business_key={key}&columns=business_key,assignees", user="director").json
    assert chosen["columns"] == ["business_key", "assignees"]
    assert chosen["items"][0]["cells"] == {"business_key": key, "assignees": "（待认领）"}
    claimed = api.get(
        f"{url}?business_key={running[1]['business_key']}&columns=assignees", user="director"
    ).json
    assert claimed["items"][0]["cells"]["assignees"] == "登记员 王芳"
    paged = api.get(url + "?per_page=2&page=2", user="director").json
    assert (paged["total"], len(paged["items"])) == (3, 1)


@pytest.mark.parametrize(
    "query",
    [
        "status=sleeping",
        "version=0",
        "started_from=2026-02-30",
        "overdue=maybe",
        "columns=password_hash",
        "per_page=9999",
    ],
)
def test_bad_list_parameters_are_422(api, running, query):
    response = api.get(f"/api/v1/monitor/instances?{query}", user="director")
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation" and response.json["errors"]


def test_reversed_date_range_is_422(api, running):
    response = api.get(
        "/api/v1/monitor/instances?started_from=2026-03-02&started_to=2026-03-01", user="director"
    )
    assert response.status_code == 422 and "started_to" in response.json["errors"]


def test_export_xlsx_and_csv_are_what_the_filter_shows(api, running):
    url = "/api/v1/monitor/instances/export?status=running&columns=business_key,subject,status"
    response = api.get(url + "&format=xlsx", user="director")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("编号", "事项", "状态")
    assert sorted(rows[1:]) == sorted((i["business_key"], i["subject"], "办理中") for i in running[1:])
    csv_response = api.get(url + "&format=csv", user="director")
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.data.decode("utf-8-sig").strip().splitlines()
    assert lines[0] == "编号,事项,状态" and len(lines) == 3
    assert api.get(url + "&format=pdf", user="director").status_code == 422


def test_task_list_behind_the_charts(api, running):
    url = "/api/v1/monitor/tasks"
    assert api.get(url + "?group=office", user="director").json["total"] == 2
    assert api.get(url + "?assignee=registrar", user="director").json["total"] == 1
    assert api.get(url + "?sla=overdue", user="director").json["total"] == 0
    done = api.get(url + "?status=completed&element_id=first_review", user="director").json
    assert done["total"] == 1 and done["items"][0]["instance_id"] == running[0]["id"]
    assert api.get(url + "?sla=late", user="director").status_code == 422


def test_heatmap(api, running):
    body = api.get("/api/v1/monitor/heatmap/simple_review?version=1", user="director").json
    assert (body["process_key"], body["version"], body["name"], body["instances"]) == (
        "simple_review",
        1,
        "简单审核",
        3,
    )
    assert body["elements"]["first_review"]["count"] == 3
    assert (
        body["elements"]["first_review"]["completed"] == 1 and body["elements"]["first_review"]["open"] == 2
    )
    assert body["state"]["active"] == ["first_review"] and body["state"]["counts"]["start"]["count"] == 3
    assert api.get("/api/v1/monitor/heatmap/no_such_flow", user="director").status_code == 404
    assert api.get("/api/v1/monitor/heatmap/simple_review?version=0", user="director").status_code == 422


def test_ledger_download(api, app):
    response = api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={"files": [(io.BytesIO(content), name) for name, content in COMPLAINT_FILES]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    variables = {
        "received_at": "2026-01-05",
        "subject_name": "许昌甲公司",
        "content": "违规储存",
        "reporter_name": "某人",
    }
    started = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "complaint_rectification", "variables": variables},
    )
    assert started.status_code == 201, started.json
    day = datetime.fromisoformat(started.json["started_at"]).astimezone(ZoneInfo("Asia/Shanghai")).date()
    url = f"/api/v1/monitor/ledgers/complaints?from={day}&to={day}"
    download = api.get(url, user="supervisor")
    assert download.status_code == 200
    assert "filename*=UTF-8''" in download.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(download.data)).active
    assert [c.value for c in sheet[1]] == [
        "编号",
        "收到日期",
        "事项",
        "承办股室",
        "办理结果",
        "办结日期",
        "是否超期",
    ]
    assert sheet["A2"].value == started.json["business_key"] and sheet["C2"].value == "许昌甲公司：违规储存"
    assert sheet["E2"].value == "办理中：受理审查" and sheet["G2"].value == "否"
    assert api.get(f"/api/v1/monitor/ledgers/complaints?from={day}", user="supervisor").status_code == 422
    assert (
        api.get(f"/api/v1/monitor/ledgers/speeding?from={day}&to={day}", user="supervisor").status_code == 404
    )


def test_audit_endpoint_reports_an_altered_event(api, running, session_factory):
    instance_id = running[0]["id"]
    url = f"/api/v1/monitor/instances/{instance_id}/audit"
    clean = api.get(url, user="director").json
    assert clean["ok"] is True and clean["events"] >= 3 and clean["breaks"] == []
    with session_factory() as session:
        session.execute(
            text("UPDATE events SET comment = '已篡改' WHERE instance_id = :i AND type = 'completed'"),
            {"i": instance_id},
        )
        session.commit()
    report = api.get(url, user="director").json
    assert report["ok"] is False
    assert report["breaks"][0]["problem"] == "content was altered"
    assert api.get(f"/api/v1/monitor/instances/{running[1]['id']}/audit", user="director").json["ok"] is True
    assert api.get("/api/v1/monitor/instances/99999/audit", user="director").status_code == 404


def test_verify_audit_command(api, running, session_factory, database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "CHENGXIN_INSTANCE": str(tmp_path / "instance")}
    ok = CliRunner().invoke(main, ["verify-audit"], env=env, catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert "已校验 3 个流程实例" in ok.output and "全部完整" in ok.output
    victim = running[1]["id"]
    with session_factory() as session:
        event_id = session.scalar(
            text("SELECT MIN(id) FROM events WHERE instance_id = :i AND type = 'claimed'"), {"i": victim}
        )
        session.execute(text("UPDATE events SET comment = '改过' WHERE id = :e"), {"e": event_id})
        session.commit()
    broken = CliRunner().invoke(main, ["verify-audit"], env=env, catch_exceptions=False)
    assert broken.exit_code == 1
    assert f"流程实例 {victim} 审计记录 {event_id}：内容被改动" in broken.output
    assert "发现 1 处断裂" in broken.output


def test_urge_an_instance(api, running):
    instance_id = running[1]["id"]
    urged = api.post(
        f"/api/v1/monitor/instances/{instance_id}/urge", user="director", json={"message": "请加快"}
    )
    assert urged.status_code == 200 and urged.json["urged"] == 1
    again = api.post(f"/api/v1/monitor/instances/{instance_id}/urge", user="director", json={})
    assert again.status_code == 409
    finished = api.post(f"/api/v1/monitor/instances/{running[0]['id']}/urge", user="director", json={})
    assert finished.status_code == 409
    notices = api.get("/api/v1/tasks?scope=mine", user="registrar").json
    assert notices["total"] == 1  # the urged task is still registrar's


def test_saved_views_crud(api, running):
    saved = api.post(
        "/api/v1/monitor/views",
        user="director",
        json={"name": "办理中", "filters": {"status": "running"}, "columns": ["business_key", "subject"]},
    )
    assert saved.status_code == 200, saved.json
    view = saved.json
    assert view["filters"] == {"status": "running"} and view["columns"] == ["business_key", "subject"]
    assert [v["name"] for v in api.get("/api/v1/monitor/views", user="director").json["items"]] == ["办理中"]
    assert api.get("/api/v1/monitor/views", user="deputy").json["items"] == []
    bad = api.post(
        "/api/v1/monitor/views", user="director", json={"name": "坏", "filters": {"status": "zzz"}}
    )
    assert bad.status_code == 422 and "status" in bad.json["errors"]
    assert (
        api.client.delete(
            f"/api/v1/monitor/views/{view['id']}", headers={"Authorization": f"Bearer {api.token('deputy')}"}
        ).status_code
        == 404
    )
    deleted = api.client.delete(
        f"/api/v1/monitor/views/{view['id']}", headers={"Authorization": f"Bearer {api.token('director')}"}
    )
    assert deleted.status_code == 204
    assert api.get("/api/v1/monitor/views", user="director").json["items"] == []


def test_openapi_documents_the_monitoring_paths(api):
    paths = api.get("/api/openapi.json").json["paths"]
    assert "/api/v1/stats/summary" in paths and "/api/v1/monitor/instances/export" in paths


# --- /metrics ----------------------------------------------------------------------------


def metrics(api, address="127.0.0.1", **headers):
    return api.client.get("/metrics", environ_base={"REMOTE_ADDR": address}, headers=headers)


def test_metrics_from_loopback(api, running):
    api.get("/api/v1/stats/summary", user="director")
    response = metrics(api)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    assert "chengxin_open_tasks 2.0" in body
    assert "chengxin_overdue_tasks 0.0" in body
    assert 'chengxin_instances{status="completed"} 1.0' in body
    assert "chengxin_worker_lag_seconds 0.0" in body
    assert "chengxin_outbox_backlog 0.0" in body
    assert (
        'chengxin_http_request_duration_seconds_count{endpoint="/api/v1/stats/summary",method="GET",status="200"}'
        in body
    )


def test_metrics_refuse_other_hosts_proxied_requests_and_staff(api, app, running):
    assert metrics(api, "10.0.0.7").status_code == 401
    assert metrics(api, "127.0.0.1", **{"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    assert metrics(api, "10.0.0.7", Authorization=f"Bearer {api.token('handler')}").status_code == 403
    assert metrics(api, "10.0.0.7", Authorization="Bearer forged").status_code == 401
    assert metrics(api, "10.0.0.7", Authorization=f"Bearer {api.token('supervisor')}").status_code == 200
    assert metrics(api, "10.0.0.7", Authorization=f"Bearer {api.token('admin')}").status_code == 200
    app.config["METRICS_TOKEN"] = "scrape-secret-123"
    assert metrics(api, "10.0.0.7", Authorization="Bearer scrape-secret-123").status_code == 200
    assert metrics(api, "10.0.0.7", Authorization="Bearer scrape-secret-12").status_code == 401
