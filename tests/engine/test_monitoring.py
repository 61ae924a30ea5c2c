"""Monitoring figures checked against a history built through the engine at known instants."""

from __future__ import annotations

import io
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import select, text

import engine.saved_views  # noqa: F401  (registers its table before create_all)
import engine.urging  # noqa: F401
from engine import definitions, monitoring, runtime, saved_views
from engine.db import transaction
from engine.errors import NotAllowed, NotFound, TooLarge, ValidationFailed
from engine.models import HumanTask, ProcessInstance, User
from engine.users import actor_for

from ..conftest import FIXTURES

TZ = ZoneInfo("Asia/Shanghai")
# 2026-04-06 (Monday) is the 清明 holiday: working days skip it.
NOW = datetime(2026, 4, 13, 10, 0, tzinfo=TZ)


def at(month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ)


class History:
    """Runs engine operations as a given user at a given instant, each in its own transaction."""

    def __init__(self, session_factory, settings):
        self.factory, self.settings = session_factory, settings

    def ctx(self, session, username: str) -> runtime.Context:
        user = session.scalar(select(User).where(User.username == username))
        return runtime.Context(session, actor_for(user), self.settings)

    def run(self, when: datetime, username: str, operation, *args, **kwargs):
        with time_machine.travel(when, tick=False), transaction(self.factory) as session:
            return operation(self.ctx(session, username), *args, **kwargs)

    def read(self, username: str, operation, *args, **kwargs):
        with self.factory() as session:
            return operation(self.ctx(session, username), *args, **kwargs)

    def start(self, when, subject, username="registrar", version=None):
        variables = {"title": f"关于{subject}的反映", "subject_name": subject}
        instance = self.run(
            when, username, runtime.start_instance, "simple_review", variables=variables, version=version
        )
        return instance.id

    def open_task(self, instance_id: int) -> int:
        with self.factory() as session:
            return session.scalar(
                select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            )

    def complete(self, when, username, instance_id, data):
        task_id = self.open_task(instance_id)
        self.run(when, username, runtime.complete_task, task_id, data, "同意")


def deploy_simple(session_factory, *, rename: str | None = None):
    names = (
        "simple_review.bpmn",
        "waiting_flow.bpmn",
        "simple_start.form",
        "simple_review.form",
        "simple_confirm.form",
    )
    files = []
    for name in names:
        content = (FIXTURES / name).read_bytes()
        if rename and name == "simple_review.bpmn":
            content = content.replace("简单审核".encode(), rename.encode())
        files.append((name, content))
    with transaction(session_factory) as session:
        definitions.deploy(session, files, user="analyst")


@pytest.fixture
def history(session_factory, settings, seeded):
    """A (approved, 2 working days over the holiday), B (rejected the same day), C (overdue, claimed),
    D (normal) and E (due soon, unclaimed); all of simple_review v1."""
    deploy_simple(session_factory)
    h = History(session_factory, settings)
    h.ids = {
        "A": h.start(at(4, 2), "许昌甲化工有限公司"),
        "B": h.start(at(4, 2), "许昌乙烟花爆竹经营部"),
        "C": h.start(at(4, 3), "许昌丙矿业公司"),
        "E": h.start(at(4, 8), "许昌戊危化品仓库"),
        "D": h.start(at(4, 9), "许昌丁建材厂"),
    }
    h.complete(at(4, 7, 10), "registrar", h.ids["A"], {"decision": "approve"})
    h.complete(at(4, 8, 10), "chief", h.ids["A"], {"confirmed": True})
    h.complete(at(4, 2, 15), "registrar", h.ids["B"], {"decision": "reject"})
    h.run(at(4, 3, 10), "registrar", runtime.claim_task, h.open_task(h.ids["C"]))
    return h


def test_summary_counts_by_status_and_sla(history):
    summary = history.read("director", monitoring.summary, now=NOW)
    assert summary["instances_by_status"]["running"] == 3
    assert summary["instances_by_status"]["completed"] == 2
    assert summary["instances_by_status"]["terminated"] == 0
    assert (summary["open_tasks"], summary["overdue_tasks"], summary["warning_tasks"]) == (3, 1, 1)
    process = summary["by_process"]["simple_review"]
    assert process["name"] == "简单审核"
    assert process["open_tasks"] == 3 and process["overdue_tasks"] == 1


@pytest.mark.parametrize("username", ["handler", "registrar", "analyst", "chief"])
def test_staff_without_the_managers_role_are_refused(history, username):
    for operation in (monitoring.summary, monitoring.dashboard):
        with pytest.raises(NotAllowed):
            history.read(username, operation, now=NOW)
    with pytest.raises(NotAllowed):
        history.read(username, monitoring.list_instances, monitoring.InstanceFilter())
    with pytest.raises(NotAllowed):
        history.read(username, monitoring.heatmap, "simple_review")
    with pytest.raises(NotAllowed):
        history.read(username, monitoring.instance_overview, history.ids["A"])


def test_admins_count_as_managers(history):
    assert history.read("admin", monitoring.summary, now=NOW)["open_tasks"] == 3


def test_step_durations_are_working_days_and_skip_the_holiday(history):
    steps = {
        s["element_id"]: s
        for s in history.read("supervisor", monitoring.dashboard, now=NOW)["step_durations"]
    }
    # A: opened Thu 04-02, done Tue 04-07 (Fri 04-03 and Tue 04-07; Mon 04-06 is a holiday) = 2;
    # B: opened and done on 04-02 = 0. Nearest rank: median 0, p90 2.
    assert steps["first_review"] == {
        "process_key": "simple_review",
        "element_id": "first_review",
        "name": "初审",
        "count": 2,
        "median_days": 0,
        "p90_days": 2,
    }
    assert (steps["confirm"]["count"], steps["confirm"]["median_days"], steps["confirm"]["p90_days"]) == (
        1,
        1,
        1,
    )


def test_percentile_is_nearest_rank():
    assert monitoring.percentile({}, 0.5) is None
    assert monitoring.percentile({1: 1, 2: 1, 3: 1, 4: 1}, 0.5) == 2
    assert monitoring.percentile({v: 1 for v in range(1, 11)}, 0.9) == 9
    assert monitoring.percentile({0: 9, 30: 1}, 0.9) == 0
    assert monitoring.percentile({0: 8, 30: 2}, 0.9) == 30


def test_weekly_throughput_buckets_by_local_monday(history):
    board = history.read("director", monitoring.dashboard, now=NOW)
    weeks = {w["week"]: (w["started"], w["finished"]) for w in board["weeks"]}
    assert len(board["weeks"]) == monitoring.WEEKS
    assert board["weeks"][-1]["week"] == date(2026, 4, 13)
    assert weeks[date(2026, 3, 30)] == (3, 1)  # A, B, C started; B finished
    assert weeks[date(2026, 4, 6)] == (2, 1)  # E, D started; A finished
    assert weeks[date(2026, 4, 13)] == (0, 0)
    assert sum(s for s, _ in weeks.values()) == 5


def test_late_tasks_per_group_and_person(history):
    board = history.read("director", monitoring.dashboard, now=NOW)
    assert board["tasks_by_group"] == [{"group": "office", "title": "办公室", "overdue": 1, "warning": 1}]
    assert board["tasks_by_person"] == [
        {"username": "registrar", "display_name": "登记员 王芳", "overdue": 1, "warning": 0}
    ]
    opened = {(r["process_key"], r["status"]): r for r in board["open_instances"]}
    assert opened[("simple_review", "running")]["count"] == 3
    assert opened[("simple_review", "running")]["overdue"] == 1  # C: its task is overdue


def test_the_group_bar_lands_on_those_tasks(history):
    filters = monitoring.TaskFilter.from_mapping({"group": "office", "sla": "overdue"})
    result = history.read("director", monitoring.list_tasks, filters, now=NOW)
    assert [t.instance_id for t in result.items] == [history.ids["C"]]
    warning = monitoring.TaskFilter.from_mapping({"group": "office", "sla": "warning"})
    assert [
        t.instance_id for t in history.read("director", monitoring.list_tasks, warning, now=NOW).items
    ] == [history.ids["E"]]
    person = monitoring.TaskFilter.from_mapping({"assignee": "registrar", "sla": "overdue"})
    assert history.read("director", monitoring.list_tasks, person, now=NOW).total == 1
    done = monitoring.TaskFilter.from_mapping({"element_id": "first_review", "status": "completed"})
    assert history.read("director", monitoring.list_tasks, done, now=NOW).total == 2
    with pytest.raises(ValidationFailed) as refused:
        monitoring.TaskFilter.from_mapping({"sla": "late", "status": "gone"})
    assert set(refused.value.errors) == {"sla", "status"}


def test_heatmap_matches_the_constructed_history(history):
    heat = history.read("director", monitoring.heatmap, "simple_review", 1, now=NOW)
    assert heat["instances"] == 5
    first = heat["elements"]["first_review"]
    # A: 04-02 09:00 -> 04-07 10:00 = 121 h; B: 04-02 09:00 -> 15:00 = 6 h; mean 63.5 h.
    assert first == {"count": 5, "completed": 2, "avg_hours": 63.5, "open": 3, "overdue": 1}
    assert heat["elements"]["confirm"] == {
        "count": 1,
        "completed": 1,
        "avg_hours": 24.0,
        "open": 0,
        "overdue": 0,
    }
    assert heat["elements"]["start"]["count"] == 5
    assert "end_ok" not in heat["elements"]  # two end events: which one was reached is not projected
    assert heat["state"]["counts"]["first_review"] == {"count": 5, "avg_hours": 63.5}
    assert heat["state"]["active"] == ["first_review"]
    assert heat["state"]["overdue"] == ["first_review"]
    week = history.read(
        "director", monitoring.heatmap, "simple_review", 1, started_from=date(2026, 4, 6), now=NOW
    )
    assert week["instances"] == 2 and week["elements"]["first_review"]["completed"] == 0
    with pytest.raises(NotFound):
        history.read("director", monitoring.heatmap, "simple_review", 9)


def ids(page) -> set[int]:
    return {row.instance.id for row in page.rows}


def test_instance_list_filters(history, session_factory):
    deploy_simple(session_factory, rename="简单审核（二）")
    history.ids["F"] = history.start(at(4, 10), "许昌己公司", username="chief", version=2)
    i = history.ids

    def listed(**raw):
        filters = monitoring.InstanceFilter.from_mapping(raw)
        return ids(history.read("director", monitoring.list_instances, filters, now=NOW))

    assert listed() == set(i.values())
    assert listed(process_key="simple_review", version="2") == {i["F"]}
    assert listed(version=1) == set(i.values()) - {i["F"]}
    assert listed(status="completed") == {i["A"], i["B"]}
    assert listed(started_by="chief") == {i["F"]}
    assert listed(started_from="2026-04-03", started_to="2026-04-08") == {i["C"], i["E"]}
    assert listed(ended_from="2026-04-08", ended_to="2026-04-08") == {i["A"]}
    assert listed(overdue="true") == {i["C"]}
    assert listed(overdue="false") == set(i.values()) - {i["C"]}
    with history.factory() as session:
        key = session.get(ProcessInstance, i["D"]).business_key
    assert listed(business_key=key[:-1].lower() + key[-1]) == {i["D"]}
    assert listed(subject="烟花") == {i["B"]}
    assert listed(subject="100%") == set()
    assert listed(process_key="no_such_flow") == set()


def test_instance_list_pages_newest_first_with_open_tasks(history):
    page = history.read(
        "director", monitoring.list_instances, monitoring.InstanceFilter(), page=2, per_page=2, now=NOW
    )
    assert (page.total, page.pages, len(page.rows)) == (5, 3, 2)
    first = history.read(
        "director", monitoring.list_instances, monitoring.InstanceFilter(), per_page=2, now=NOW
    )
    assert [r.instance.id for r in first.rows] == [history.ids["D"], history.ids["E"]]
    assert [t.name for t in first.rows[0].open_tasks] == ["初审"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"status": "sleeping"}, "status"),
        ({"version": "0"}, "version"),
        ({"version": "v2"}, "version"),
        ({"started_from": "2026-13-01"}, "started_from"),
        ({"started_from": "2026-04-09", "started_to": "2026-04-01"}, "started_to"),
        ({"overdue": "maybe"}, "overdue"),
        ({"subject": "x" * 200}, "subject"),
    ],
)
def test_bad_filters_are_refused_with_a_field_message(raw, field):
    with pytest.raises(ValidationFailed) as refused:
        monitoring.InstanceFilter.from_mapping(raw)
    assert field in refused.value.errors


def test_filters_round_trip_through_query_parameters():
    raw = {
        "process_key": "simple_review",
        "version": "2",
        "started_from": "2026-04-01",
        "overdue": "true",
        "x": "y",
    }
    parsed = monitoring.InstanceFilter.from_mapping(raw)
    assert parsed.version == 2 and parsed.overdue is True and parsed.started_from == date(2026, 4, 1)
    assert monitoring.InstanceFilter.from_mapping(parsed.to_params()) == parsed
    assert "x" not in parsed.to_params()


def test_export_is_exactly_the_filtered_list(history):
    filters = monitoring.InstanceFilter.from_mapping({"status": "running"})
    columns = monitoring.parse_columns("business_key,status,assignees,started_at,overdue")
    content = history.read("director", monitoring.export_instances, filters, columns, "xlsx", now=NOW)
    sheet = load_workbook(io.BytesIO(content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("编号", "状态", "当前办理人", "发起时间", "是否超期")
    assert len(rows) == 4  # C, D, E: the three running instances
    by_key = {r[0]: r for r in rows[1:]}
    with history.factory() as session:
        c = session.get(ProcessInstance, history.ids["C"])
    assert by_key[c.business_key] == (
        c.business_key,
        "办理中",
        "登记员 王芳",
        datetime(2026, 4, 3, 9, 0),
        "是",
    )
    assert {r[2] for r in rows[1:]} == {"登记员 王芳", "（待认领）"}
    assert sheet.cell(row=2, column=4).number_format == "yyyy-mm-dd hh:mm"

    csv_text = history.read("director", monitoring.export_instances, filters, columns, "csv", now=NOW).decode(
        "utf-8-sig"
    )
    lines = csv_text.strip().splitlines()
    assert lines[0] == "编号,状态,当前办理人,发起时间,是否超期"
    assert len(lines) == 4
    assert f"{c.business_key},办理中,登记员 王芳,2026-04-03 09:00,是" in lines


def test_export_keeps_formula_like_text_as_text(history):
    history.start(at(4, 10), '=HYPERLINK("http://evil","点击")')
    filters = monitoring.InstanceFilter.from_mapping({"subject": "HYPERLINK"})
    columns = ("subject",)
    content = history.read("director", monitoring.export_instances, filters, columns, "xlsx", now=NOW)
    sheet = load_workbook(io.BytesIO(content)).active
    assert sheet.cell(row=2, column=1).data_type == "s"
    assert sheet.cell(row=2, column=1).value.startswith("=HYPERLINK")
    csv_text = history.read("director", monitoring.export_instances, filters, columns, "csv", now=NOW).decode(
        "utf-8-sig"
    )
    assert csv_text.splitlines()[1].startswith("\"'=HYPERLINK")


def test_export_refuses_unknown_columns_formats_and_too_many_rows(history, monkeypatch):
    with pytest.raises(ValidationFailed):
        monitoring.parse_columns("subject,password_hash")
    with pytest.raises(ValidationFailed):
        history.read(
            "director", monitoring.export_instances, monitoring.InstanceFilter(), ("subject",), "pdf"
        )
    monkeypatch.setattr(monitoring, "EXPORT_LIMIT", 4)
    with pytest.raises(TooLarge):
        history.read(
            "director", monitoring.export_instances, monitoring.InstanceFilter(), ("subject",), "csv"
        )


def test_instance_overview_colours_where_it_is_stuck(history):
    overview = history.read("director", monitoring.instance_overview, history.ids["C"], now=NOW)
    diagram = overview["diagram"]
    assert diagram["active"] == ["first_review"] and diagram["overdue"] == ["first_review"]
    assert "start" in diagram["completed"]
    # Open since Fri 04-03 09:00, now Mon 04-13 10:00: 241 hours.
    assert diagram["counts"]["first_review"] == {"count": 1, "avg_hours": 241.0}
    assert overview["overdue"] is True and overview["audit_breaks"] == []
    done = history.read("director", monitoring.instance_overview, history.ids["A"], now=NOW)["diagram"]
    assert done["active"] == [] and done["overdue"] == []
    assert done["counts"]["first_review"] == {"count": 1, "avg_hours": 121.0}
    assert {"first_review", "confirm", "end_ok"} <= set(done["completed"])


def test_confidential_variables_are_masked_for_managers_outside_the_three_groups(
    session_factory, settings, seeded
):
    names = ("tip_off.bpmn", "tip_start.form", "tip_verify.form")
    with transaction(session_factory) as session:
        definitions.deploy(session, [(n, (FIXTURES / n).read_bytes()) for n in names], user="analyst")
    h = History(session_factory, settings)
    variables = {"subject_name": "某经营部", "reporter_name": "张三丰", "reporter_phone": "13912345678"}
    instance = h.run(at(4, 2), "registrar", runtime.start_instance, "tip_off", variables=variables)
    assert (
        h.read("supervisor", monitoring.instance_overview, instance.id)["variables"]["reporter_phone"]
        == "******"
    )
    assert (
        h.read("director", monitoring.instance_overview, instance.id)["variables"]["reporter_phone"]
        == "13912345678"
    )


def test_tampered_event_is_reported(history):
    target = history.ids["A"]
    with history.factory() as session:
        assert all(not breaks for _, _, breaks in monitoring.verify_all_chains(session))
    with transaction(history.factory) as session:
        event_id = session.scalar(
            text("SELECT id FROM events WHERE instance_id = :i AND type = 'completed' ORDER BY id LIMIT 1"),
            {"i": target},
        )
        session.execute(text("UPDATE events SET comment = '不同意' WHERE id = :e"), {"e": event_id})
    with history.factory() as session:
        broken = {i: b for i, _, b in monitoring.verify_all_chains(session) if b}
    assert broken == {target: [{"event_id": event_id, "problem": "content was altered"}]}
    report = history.read("director", monitoring.verify_instance_audit, target)
    assert report["ok"] is False and report["breaks"][0]["event_id"] == event_id
    assert history.read("director", monitoring.instance_overview, target)["audit_breaks"] == report["breaks"]
    assert history.read("director", monitoring.verify_instance_audit, history.ids["B"])["ok"] is True


def test_deleted_event_breaks_the_chain(history):
    target = history.ids["A"]
    with transaction(history.factory) as session:
        session.execute(
            text(
                "DELETE FROM events WHERE id = (SELECT MIN(id) FROM events WHERE instance_id = :i AND type = 'completed')"
            ),
            {"i": target},
        )
    report = history.read("director", monitoring.verify_instance_audit, target)
    assert report["ok"] is False
    assert report["breaks"][0]["problem"] == "previous hash does not match"


def test_urge_instance_notifies_the_holder_and_refuses_finished_matters(history):
    urged = history.run(at(4, 13, 10), "director", monitoring.urge_instance, history.ids["C"], "请尽快办理")
    assert len(urged) == 1 and urged[0].urged_by == "director"
    with pytest.raises(Exception) as again:
        history.run(at(4, 13, 10, 1), "director", monitoring.urge_instance, history.ids["C"])
    assert "刚刚" in again.value.message
    with pytest.raises(Exception) as finished:
        history.run(at(4, 13, 11), "director", monitoring.urge_instance, history.ids["A"])
    assert "未在办理中" in finished.value.message
    with pytest.raises(NotAllowed):
        history.run(at(4, 13, 11), "handler", monitoring.urge_instance, history.ids["C"])


def test_saved_views_are_per_user(history):
    view = history.run(
        NOW,
        "director",
        saved_views.save_view,
        "超期事项",
        {"overdue": "true", "junk": "1"},
        "business_key,subject",
    )
    assert view.filters == {"overdue": "true"} and view.columns == ["business_key", "subject"]
    same = history.run(NOW, "director", saved_views.save_view, " 超期事项 ", {"status": "running"}, [])
    assert same.id == view.id and same.filters == {"status": "running"}
    assert same.columns == list(monitoring.DEFAULT_COLUMNS)
    history.run(NOW, "deputy", saved_views.save_view, "超期事项", {}, None)
    assert [v.name for v in history.read("director", saved_views.list_views)] == ["超期事项"]
    with pytest.raises(NotFound):
        history.run(NOW, "deputy", saved_views.delete_view, view.id)
    with pytest.raises(ValidationFailed):
        history.run(NOW, "director", saved_views.save_view, "", {}, None)
    with pytest.raises(ValidationFailed):
        history.run(NOW, "director", saved_views.save_view, "坏视图", {"status": "sleeping"}, None)
    with pytest.raises(ValidationFailed):
        history.run(NOW, "director", saved_views.save_view, "坏视图", {}, "nope")
    with pytest.raises(NotAllowed):
        history.run(NOW, "handler", saved_views.save_view, "我的", {}, None)
    history.run(NOW, "director", saved_views.delete_view, view.id)
    assert history.read("director", saved_views.list_views) == []


def test_events_deleted_from_the_end_are_reported(history):
    # The links alone cannot show a missing tail; the instance's stored chain head can.
    target = history.ids["A"]
    with transaction(history.factory) as session:
        last = session.scalar(text("SELECT MAX(id) FROM events WHERE instance_id = :i"), {"i": target})
        session.execute(text("DELETE FROM events WHERE id = :e"), {"e": last})
    report = history.read("director", monitoring.verify_instance_audit, target)
    assert report["ok"] is False
    assert report["breaks"][-1]["problem"] == "latest events are missing"
    with history.factory() as session:
        broken = {i for i, _, b in monitoring.verify_all_chains(session) if b}
    assert broken == {target}
