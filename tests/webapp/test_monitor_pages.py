"""The managers' pages: dashboard → overdue bar → tasks → instance diagram → ledger, and the rest."""

from __future__ import annotations

import html as html_lib
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import text

import engine.saved_views  # noqa: F401  (registers its table before create_all)
from engine.db import transaction

from ..conftest import FIXTURES
from ..engine.test_ledgers import FILES as COMPLAINT_FILES
from .pages_client import PageClient, json_script
from .test_tasks_api import start

TZ = ZoneInfo("Asia/Shanghai")
LATER = timedelta(days=12)  # past first_review's three working days


def links(page: str) -> list[str]:
    return [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]


def chart_item(page: str, chart: str, series_name: str, index: int = 0) -> dict:
    option = json_script(page, f"chart-{chart}")
    series = next(s for s in option["series"] if s["name"] == series_name)
    return series["data"][index]


@pytest.fixture
def stuck(api, deployed):
    """Two simple_review matters: one claimed by registrar, one waiting in the office."""
    first = start(api, subject_name="许昌甲化工有限公司")
    second = start(api, subject_name="许昌乙矿业有限公司")
    assert api.post(f"/api/v1/tasks/{first['tasks'][0]['id']}/claim", user="registrar").status_code == 200
    return first, second


def test_staff_get_the_403_page_and_strangers_the_login(app, stuck):
    handler = PageClient(app, "handler")
    for path in (
        "/monitor/",
        "/monitor/instances",
        "/monitor/tasks",
        "/monitor/heatmap",
        "/monitor/ledgers",
        f"/monitor/instances/{stuck[0]['id']}",
        "/monitor/definitions/simple_review/1.bpmn",
    ):
        response = handler.get(path)
        assert response.status_code == 403, path
        assert "无权操作" in response.text
    assert handler.post(f"/monitor/instances/{stuck[0]['id']}/terminate", {"reason": "x"}).status_code == 403
    stranger = PageClient(app)
    response = stranger.get("/monitor/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_director_follows_the_overdue_bar_to_the_stuck_matter(app, stuck):
    first, second = stuck
    director = PageClient(app, "director")
    with time_machine.travel(datetime.now(UTC) + LATER, tick=False):
        board = director.get("/monitor/")
        assert board.status_code == 200
        assert "督查总览" in board.text
        bar = chart_item(board.text, "late_by_group", "超期")
        assert bar["value"] == 2
        assert bar["href"] == "/monitor/tasks?group=office&sla=overdue"
        assert bar["href"] in links(board.text)  # the data table under the chart has the same link
        person = chart_item(board.text, "late_by_person", "超期")
        assert person == {"value": 1, "href": "/monitor/tasks?assignee=registrar&sla=overdue"}

        tasks = director.get(bar["href"])
        assert tasks.status_code == 200
        instance_links = [h for h in links(tasks.text) if re.fullmatch(r"/monitor/instances/\d+", h)]
        assert sorted(instance_links) == sorted(f"/monitor/instances/{i['id']}" for i in stuck)

        page = director.get(f"/monitor/instances/{first['id']}")
        assert page.status_code == 200
        state = json_script(page.text, "diagram-state")
        assert state["active"] == ["first_review"] and state["overdue"] == ["first_review"]
        assert "start" in state["completed"]
        assert state["counts"]["first_review"]["count"] == 1
        assert state["counts"]["first_review"]["avg_hours"] >= LATER.days * 24 - 1
        assert 'data-xml-url="/monitor/definitions/simple_review/1.bpmn"' in page.text
        assert "超期" in page.text and "审计记录完整" in page.text
        xml = director.get("/monitor/definitions/simple_review/1.bpmn")
        assert (
            xml.status_code == 200 and xml.mimetype == "application/xml" and 'id="first_review"' in xml.text
        )


def test_every_dashboard_chart_links_to_its_list(app, stuck, session_factory):
    from engine.demo_archive import seed_demo_archive

    with transaction(session_factory) as session:
        seed_demo_archive(session)
    director = PageClient(app, "director")
    board = director.get("/monitor/")
    for chart in ("open_instances", "late_by_group", "late_by_person", "weeks", "durations", "credit"):
        option = json_script(board.text, f"chart-{chart}") if f'id="chart-{chart}"' in board.text else None
        if option is None:
            continue  # a chart with no data shows a note instead
        for series in option["series"]:
            for item in series["data"]:
                assert item["href"].startswith("/monitor/"), (chart, item)
                assert director.get(item["href"]).status_code == 200, item["href"]
    running = chart_item(board.text, "open_instances", "办理中")
    assert running == {"value": 2, "href": "/monitor/instances?process_key=simple_review&status=running"}
    listed = director.get(running["href"])
    assert listed.text.count("/monitor/instances/") >= 2
    credit = json_script(board.text, "chart-credit")
    assert sum(i["value"] for s in credit["series"] for i in s["data"]) == 30
    week = json_script(board.text, "chart-weeks")["series"][0]["data"][-1]
    assert week["value"] == 2 and "started_from=" in week["href"]


def test_instance_list_columns_views_and_export(app, stuck):
    director = PageClient(app, "director")
    page = director.get(
        "/monitor/instances?status=running&columns=business_key&columns=subject&columns=assignees"
    )
    assert page.status_code == 200
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", page.text, re.S).group(1)
    assert re.findall(r'<th scope="col">([^<]+)</th>', header) == ["编号", "事项", "当前办理人"]
    assert "登记员 王芳" in page.text and "（待认领）" in page.text
    export_link = next(h for h in links(page.text) if "format=xlsx" in h)
    workbook = load_workbook(io.BytesIO(director.get(export_link).data)).active
    rows = list(workbook.iter_rows(values_only=True))
    assert rows[0] == ("编号", "事项", "当前办理人") and len(rows) == 3
    assert {r[1] for r in rows[1:]} == {"许昌甲化工有限公司", "许昌乙矿业有限公司"}

    saved = director.post(
        "/monitor/views",
        {"name": "办理中的事项", "status": "running", "columns": "business_key,subject,assignees"},
    )
    assert saved.status_code == 303
    target = saved.headers["Location"]
    assert "status=running" in target and "columns=business_key" in target
    listed = director.get("/monitor/instances")
    assert "办理中的事项" in listed.text
    view_link = next(h for h in links(listed.text) if "columns=business_key,subject,assignees" in h)
    assert director.get(view_link).status_code == 200
    assert "办理中的事项" not in PageClient(app, "deputy").get("/monitor/instances").text
    view_id = re.search(r'action="/monitor/views/(\d+)/delete"', listed.text).group(1)
    assert PageClient(app, "deputy").post(f"/monitor/views/{view_id}/delete").status_code == 404
    assert director.post(f"/monitor/views/{view_id}/delete").status_code == 303
    assert "办理中的事项" not in director.get("/monitor/instances").text
    assert director.post("/monitor/views", {"name": "x"}, csrf=False).status_code == 400


def test_bad_filters_show_their_messages(app, stuck):
    director = PageClient(app, "director")
    page = director.get("/monitor/instances?status=sleeping&started_from=2026-13-01")
    assert page.status_code == 422
    assert "日期格式应为 YYYY-MM-DD" in page.text
    assert director.get("/monitor/tasks?sla=late").status_code == 422


def test_manager_actions_on_the_instance_page(app, stuck, api):
    first, second = stuck
    director = PageClient(app, "director")
    url = f"/monitor/instances/{second['id']}"
    refused = director.post(url + "/suspend", {"reason": ""}, follow_redirects=True)
    assert "挂起流程必须填写原因" in refused.text
    director.post(url + "/suspend", {"reason": "等待上级意见"})
    assert api.get(f"/api/v1/process-instances/{second['id']}", user="director").json["status"] == "suspended"
    director.post(url + "/resume", {"reason": ""})
    assert api.get(f"/api/v1/process-instances/{second['id']}", user="director").json["status"] == "running"
    no_reason = director.post(url + "/terminate", {"reason": "  "}, follow_redirects=True)
    assert "终止流程必须填写原因" in no_reason.text
    urged = director.post(
        f"/monitor/instances/{first['id']}/urge", {"message": "请今天办结"}, follow_redirects=True
    )
    assert "已催办 1 个待办任务" in urged.text
    assert (
        "刚刚已催办过"
        in director.post(f"/monitor/instances/{first['id']}/urge", {}, follow_redirects=True).text
    )
    director.post(url + "/terminate", {"reason": "重复登记"})
    page = director.get(url)
    assert "已终止" in page.text and "重复登记" in page.text and "终止流程</button>" not in page.text


def test_confidential_fields_are_masked_on_the_instance_page(app, api):
    names = ("tip_off.bpmn", "tip_start.form", "tip_verify.form")
    assert api.deploy(*(FIXTURES / n for n in names)).status_code == 201
    started = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={
            "process_key": "tip_off",
            "variables": {
                "subject_name": "某经营部",
                "reporter_name": "举报人张三丰",
                "reporter_phone": "13912345678",
            },
        },
    ).json
    url = f"/monitor/instances/{started['id']}"
    hidden = PageClient(app, "supervisor").get(url).text
    assert "13912345678" not in hidden and "举报人张三丰" not in hidden and "******" in hidden
    assert "举报人电话" in hidden  # the form's label, not the variable name
    shown = PageClient(app, "director").get(url).text
    assert "13912345678" in shown and "举报人张三丰" in shown


def test_a_tampered_event_is_flagged_on_the_instance_page(app, stuck, session_factory):
    first = stuck[0]
    with session_factory() as session:
        session.execute(
            text("UPDATE events SET comment = '伪造的意见' WHERE instance_id = :i AND type = 'claimed'"),
            {"i": first["id"]},
        )
        session.commit()
    page = PageClient(app, "director").get(f"/monitor/instances/{first['id']}").text
    assert "审计记录校验未通过" in page and "内容被改动" in page and "校验未通过" in page
    other = PageClient(app, "director").get(f"/monitor/instances/{stuck[1]['id']}").text
    assert "审计记录完整" in other


def test_heatmap_page(app, stuck, api):
    done = api.post(
        f"/api/v1/tasks/{stuck[1]['tasks'][0]['id']}/complete",
        user="registrar",
        json={"data": {"decision": "reject"}},
    )
    assert done.status_code == 200
    director = PageClient(app, "director")
    page = director.get("/monitor/heatmap?process_key=simple_review&version=1")
    assert page.status_code == 200
    state = json_script(page.text, "heat-state")
    assert state["counts"]["first_review"]["count"] == 2 and state["counts"]["start"]["count"] == 2
    assert state["active"] == ["first_review"]
    assert (
        "/monitor/tasks?process_key=simple_review&amp;element_id=first_review&amp;status=completed"
        in page.text
    )
    assert director.get("/monitor/heatmap?process_key=nope").status_code == 404
    assert director.get("/monitor/heatmap").status_code == 200


def test_the_months_ledger_downloads_as_excel(app, api):
    response = api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={"files": [(io.BytesIO(content), name) for name, content in COMPLAINT_FILES]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
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
    ).json
    director = PageClient(app, "director")
    page = director.get("/monitor/ledgers")
    assert page.status_code == 200 and "投诉举报台账" in page.text and "司法建议回复台账" in page.text
    today = datetime.now(TZ).date()
    first, last = (
        re.findall(r'name="from" value="([\d-]+)"', page.text)[0],
        re.findall(r'name="to" value="([\d-]+)"', page.text)[0],
    )
    assert (first, last) == (today.replace(day=1).isoformat(), today.isoformat())
    download = director.get(f"/monitor/ledgers/download?kind=complaints&from={first}&to={last}&format=xlsx")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
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
    assert sheet["A2"].value == started["business_key"] and sheet["E2"].value == "办理中：受理审查"
    bad = director.get(
        f"/monitor/ledgers/download?kind=complaints&from={last}&to=2000-01-01", follow_redirects=True
    )
    assert "结束日期不能早于开始日期" in bad.text
    assert director.get(f"/monitor/ledgers/download?kind=parking&from={first}&to={last}").status_code == 404
