"""司法建议/检察建议回复 end to end through the API: deadlines, lead group, loops, urging, overdue."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

from ..conftest import ApiClient
from .conftest import CHINA, INSTANCES, china_today

PROCESS = "judicial_suggestion"
ORGAN = "许昌市魏都区人民法院"
DOC_NO = "魏法建〔2026〕3号"
MEMBERS = {"supervision": "handler", "legal": "legal", "office": "registrar"}


def registration(**changes) -> dict:
    return {
        "source_type": "court",
        "doc_no": DOC_NO,
        "issuing_organ": ORGAN,
        "received_at": china_today().isoformat(),
        "urgent": False,
        "suggestions": [
            {"problem": "辖区烟花爆竹零售点储存超量", "suggestion": "开展专项检查并建立长效监管机制"},
            {"problem": "执法文书送达不规范", "suggestion": "规范送达程序"},
        ],
        **changes,
    }


def register(flows, **changes) -> int:
    """收文登记 by the office; returns the instance id (waiting at 领导批示)."""
    instance = flows.start(PROCESS, registration(**changes), user="registrar")
    assert [t["element_id"] for t in instance["tasks"]] == ["instruction"]
    assert instance["tasks"][0]["candidate_groups"] == ["directors"]
    return instance["id"]


def instruct(flows, iid: int, lead_group: str = "supervision") -> None:
    flows.complete(
        iid, "instruction", "director", {"instructions": "请认真研究，按期回复", "lead_group": lead_group}
    )


def draft(flows, iid: int, user: str = "handler") -> None:
    flows.complete(
        iid,
        "draft",
        user,
        {
            "measures": [
                {
                    "measure": "开展烟花爆竹零售点专项检查",
                    "owner": "张科长",
                    "due_date": china_today().isoformat(),
                },
            ],
            "reply_draft": "关于魏法建〔2026〕3号司法建议的回复（稿）",
        },
    )


def legal_review(flows, iid: int, opinion: str) -> None:
    assert flows.open_task(iid, "legal_review")["candidate_groups"] == ["legal"]
    flows.complete(
        iid, "legal_review", "legal", {"legal_opinion": opinion, "opinion": f"法制审核：{opinion}"}
    )


def sign(flows, iid: int, signed: bool) -> None:
    assert flows.open_task(iid, "sign")["candidate_groups"] == ["directors"]
    flows.complete(
        iid, "sign", "director", {"signed": signed, "opinion": "签发" if signed else "请修改后再报"}
    )


def written_reply(flows, iid: int) -> None:
    assert flows.open_task(iid, "written_reply")["candidate_groups"] == ["office"]
    flows.complete(
        iid,
        "written_reply",
        "registrar",
        {"sent_date": china_today().isoformat(), "reply_doc_no": "魏应急函〔2026〕12号"},
    )


def track(flows, iid: int, done: bool, user: str = "handler") -> None:
    flows.complete(
        iid, "tracking", user, {"measures_done": done, "progress": "已落实" if done else "正在落实"}
    )


def archive(flows, iid: int) -> None:
    assert flows.open_task(iid, "archive")["candidate_groups"] == ["office"]
    flows.complete(
        iid, "archive", "registrar", {"archive_no": "WS2026-Y-012", "archive_date": china_today().isoformat()}
    )


def reply_until_tracking(flows, iid: int, lead_group: str = "supervision") -> None:
    instruct(flows, iid, lead_group)
    draft(flows, iid, MEMBERS[lead_group])
    legal_review(flows, iid, "agree")
    sign(flows, iid, True)
    written_reply(flows, iid)
    assert flows.open_task(iid, "tracking")["candidate_groups"] == [lead_group]


def urgings(flows, iid: int, username: str = "director") -> list:
    return [n for n in flows.notifications(username, iid) if "催办" in n.title]


# --- 收文登记: the reply deadline ----------------------------------------------------------


REGISTERED_ON = "2026-04-20"  # a Monday; two months on is Saturday 2026-06-20, in the 端午 holiday


@pytest.mark.parametrize(
    ("source_type", "urgent", "given", "expected"),
    [
        ("court", False, None, "2026-06-22"),  # 2 months, moved past 端午 (19–21 June)
        ("procuratorate", False, None, "2026-06-22"),
        ("public_interest", False, None, "2026-06-22"),
        ("public_interest", True, None, "2026-05-06"),  # 15 days: 5 May is in the 劳动节 holiday
        ("court", False, "2026-05-29", "2026-05-29"),  # the court's own deadline wins
        ("public_interest", True, "2026-05-12", "2026-05-12"),
    ],
)
def test_reply_deadline_defaults_by_source_type(flows, source_type, urgent, given, expected):
    with time_machine.travel(datetime(2026, 4, 20, 10, 0, tzinfo=CHINA), tick=False):
        api = ApiClient(flows.api.app)  # tokens issued "now"
        variables = registration(source_type=source_type, urgent=urgent, received_at=REGISTERED_ON)
        if given:
            variables["reply_deadline"] = given
        response = api.post(
            INSTANCES, user="registrar", json={"process_key": PROCESS, "variables": variables}
        )
        assert response.status_code == 201, response.json
        body = api.get(f"{INSTANCES}/{response.json['id']}", user="director").json
    assert body["variables"]["reply_deadline"] == expected
    assert datetime.fromisoformat(body["due_at"]) == flows.calendar.end_of_day(expected)
    assert [t["element_id"] for t in body["tasks"]] == ["instruction"]
    assert body["overdue"] is False


# --- 领导批示: the lead group ---------------------------------------------------------------


@pytest.mark.parametrize("lead_group", ["supervision", "legal", "office"])
def test_lead_group_chosen_by_the_director_drafts_the_reply(flows, lead_group):
    iid = register(flows)
    instruct(flows, iid, lead_group)
    task = flows.open_task(iid, "draft")
    assert task["candidate_groups"] == [lead_group]
    member = MEMBERS[lead_group]
    outsiders = [u for g, u in MEMBERS.items() if g != lead_group]
    claimable = flows.api.get(f"/api/v1/tasks?scope=claimable&instance_id={iid}", user=member).json["items"]
    assert [t["element_id"] for t in claimable] == ["draft"]
    for outsider in outsiders:
        listed = flows.api.get(f"/api/v1/tasks?scope=claimable&instance_id={iid}", user=outsider).json[
            "items"
        ]
        assert listed == [], outsider
        refused = flows.api.post(f"/api/v1/tasks/{task['id']}/claim", user=outsider)
        assert refused.status_code in (403, 404), (outsider, refused.json)
    claimed = flows.api.post(f"/api/v1/tasks/{task['id']}/claim", user=member)
    assert claimed.status_code == 200, claimed.json
    assert claimed.json["assignee"] == member
    draft(flows, iid, member)
    assert flows.open_elements(iid) == ["legal_review"]


def test_reply_signed_sent_and_measures_done_is_archived(flows):
    iid = register(flows)
    reply_until_tracking(flows, iid)
    track(flows, iid, True)
    archive(flows, iid)
    body = flows.assert_ended_at(iid, "end")
    completed = set(body["diagram"]["completed"])
    assert {
        "instruction",
        "draft",
        "legal_review",
        "sign",
        "written_reply",
        "handling_end",
        "tracking",
    } <= completed
    assert not {"urge_directors", "report_overdue", "timer_remind"} & completed
    assert body["variables"]["measures"][0]["owner"] == "张科长"
    assert body["variables"]["lead_group"] == "supervision"
    assert urgings(flows, iid) == []


def test_deadlines_of_each_step(flows):
    iid = register(flows)
    cal = flows.calendar
    end = cal.end_of_day(flows.variables(iid)["reply_deadline"])
    assert flows.due(iid, "instruction") == min(cal.workdays(2), end)
    instruct(flows, iid)
    assert flows.due(iid, "draft") == end
    draft(flows, iid)
    assert flows.due(iid, "legal_review") == min(cal.workdays(5), end)
    legal_review(flows, iid, "agree")
    assert flows.due(iid, "sign") == end
    sign(flows, iid, True)
    assert flows.due(iid, "written_reply") == end


def test_legal_disagreement_goes_back_to_the_draft(flows):
    iid = register(flows)
    instruct(flows, iid)
    draft(flows, iid)
    legal_review(flows, iid, "disagree")
    assert flows.open_task(iid, "draft")["candidate_groups"] == ["supervision"]
    draft(flows, iid, "chief")
    legal_review(flows, iid, "agree")
    sign(flows, iid, True)
    written_reply(flows, iid)
    track(flows, iid, True, user="chief")
    archive(flows, iid)
    flows.assert_ended_at(iid, "end")


def test_unsigned_reply_goes_back_to_the_draft(flows):
    iid = register(flows, source_type="procuratorate", issuing_organ="许昌市魏都区人民检察院")
    instruct(flows, iid, "legal")
    draft(flows, iid, "legal")
    legal_review(flows, iid, "agree")
    sign(flows, iid, False)
    assert flows.open_task(iid, "draft")["candidate_groups"] == ["legal"]
    draft(flows, iid, "legal")
    legal_review(flows, iid, "agree")
    sign(flows, iid, True)
    written_reply(flows, iid)
    track(flows, iid, True, user="legal")
    archive(flows, iid)
    flows.assert_ended_at(iid, "end")


# --- 整改落实跟踪 ---------------------------------------------------------------------------


def test_measures_not_done_are_asked_again_after_ten_working_days(flows):
    iid = register(flows)
    reply_until_tracking(flows, iid)
    track(flows, iid, False)
    flows.assert_waiting_at(iid, "timer_remind")
    assert flows.instance(iid)["status"] == "waiting"
    assert flows.timer_due(iid, "timer_remind") == flows.calendar.workdays(10)
    flows.fire(iid, "timer_remind")
    for member in ("handler", "chief"):  # the lead group is reminded
        assert any("整改落实情况" in n.title for n in flows.notifications(member, iid)), member
    assert flows.open_task(iid, "tracking")["candidate_groups"] == ["supervision"]
    track(flows, iid, True)
    archive(flows, iid)
    body = flows.assert_ended_at(iid, "end")
    assert "remind_tracking" in body["diagram"]["completed"]


# --- 催办 and 逾期 -------------------------------------------------------------------------


def test_urging_at_two_thirds_of_the_time_notifies_directors_without_interrupting(flows):
    iid = register(flows)
    instance = flows.instance(iid)
    deadline = instance["variables"]["reply_deadline"]
    expected = flows.calendar.point_between(instance["variables"]["received_at"], deadline, 2 / 3)
    assert flows.timer_due(iid, "urge_timer") == expected
    task_before = flows.open_task(iid, "instruction")

    flows.fire(iid, "urge_timer")
    [urging] = urgings(flows, iid)
    assert DOC_NO in urging.title and deadline in urging.title
    assert urgings(flows, iid, "deputy") == []  # directors only
    body = flows.instance(iid)
    assert body["status"] == "running"
    assert flows.open_task(iid, "instruction")["id"] == task_before["id"]
    assert {"urge_directors", "end_urged"} <= set(body["diagram"]["completed"])
    assert "overdue_timer" in body["diagram"]["active"]

    reply_until_tracking(flows, iid)
    track(flows, iid, True)
    archive(flows, iid)
    flows.assert_ended_at(iid, "end", "end_urged")
    assert len(urgings(flows, iid)) == 1


def test_instance_is_flagged_overdue_once_the_reply_deadline_has_passed(flows):
    iid = register(flows)
    instruct(flows, iid)
    deadline = flows.variables(iid)["reply_deadline"]
    overdue_url = f"{INSTANCES}?overdue=true&process_key={PROCESS}"
    assert flows.api.get(overdue_url, user="director").json["items"] == []
    assert flows.instance(iid)["overdue"] is False

    day_after = datetime.fromisoformat(deadline).replace(tzinfo=CHINA) + timedelta(days=1, hours=9)
    with time_machine.travel(day_after, tick=False):
        api = ApiClient(flows.api.app)
        listed = api.get(overdue_url, user="director").json["items"]
        assert [i["id"] for i in listed] == [iid]
        assert listed[0]["overdue"] is True
        assert api.get(f"{INSTANCES}/{iid}", user="director").json["overdue"] is True
        on_time = api.get(f"{INSTANCES}?overdue=false&process_key={PROCESS}", user="director").json["items"]
        assert iid not in [i["id"] for i in on_time]

    # The overdue timer reports to the directors and leaves the work in place.
    flows.fire(iid, "overdue_timer")
    assert any("逾期" in n.title and deadline in n.title for n in flows.notifications("director", iid))
    assert flows.open_elements(iid) == ["draft"]
    assert "end_overdue" in flows.instance(iid)["diagram"]["completed"]


def test_reply_sent_in_time_is_not_overdue_while_measures_are_tracked(flows):
    iid = register(flows)
    reply_until_tracking(flows, iid)
    track(flows, iid, False)
    deadline = flows.variables(iid)["reply_deadline"]
    day_after = datetime.fromisoformat(deadline).replace(tzinfo=CHINA) + timedelta(days=1, hours=9)
    with time_machine.travel(day_after, tick=False):
        api = ApiClient(flows.api.app)
        assert api.get(f"{INSTANCES}/{iid}", user="director").json["overdue"] is False
        listed = api.get(f"{INSTANCES}?overdue=true&process_key={PROCESS}", user="director").json["items"]
        assert listed == []
