"""投诉举报→整改 end to end through the API: every branch to its end, with its side effects."""

from __future__ import annotations

from datetime import date, timedelta

from .conftest import china_today

PROCESS = "complaint_rectification"
SUBJECT = "许昌某某化工有限公司"
SUBJECT_USCC = "91411002MA44FR2K0B"  # a valid code not in the demo archive (check character fixed below)
REPORTER = {
    "reporter_name": "举报人李四光",
    "reporter_phone": "13912345678",
    "reporter_id_number": "11010519491231002X",
    "reporter_address": "许昌市魏都区七里店街道某小区3号楼",
}


def _uscc() -> str:
    from engine.forms import uscc_check_char

    return SUBJECT_USCC[:17] + uscc_check_char(SUBJECT_USCC[:17])


def register(flows, **changes) -> int:
    """登记 by the office; returns the instance id (waiting at 受理审查)."""
    variables = {
        "channel": "hotline_12350",
        "received_at": china_today().isoformat(),
        "anonymous": False,
        **REPORTER,
        "subject_name": SUBJECT,
        "subject_uscc": _uscc(),
        "category": "major_hazard",
        "content": "该公司在厂区内违规储存大量液氨，未设置泄漏报警装置。",
        **changes,
    }
    instance = flows.start(PROCESS, variables, user="registrar")
    assert [t["element_id"] for t in instance["tasks"]] == ["acceptance_review"]
    assert instance["tasks"][0]["candidate_groups"] == ["section_chiefs"]
    return instance["id"]


def accept(flows, iid: int) -> None:
    flows.complete(
        iid, "acceptance_review", "chief", {"acceptance": "accept", "opinion": "属本局职责，予以受理"}
    )


def verify(flows, iid: int, verification: str = "founded") -> None:
    flows.complete(
        iid,
        "verification",
        "handler",
        {
            "verification": verification,
            "findings": "现场核查：液氨储罐区未设置泄漏报警装置。",
            "opinion": "核查完毕",
        },
    )


def decide(flows, iid: int, *, credit_record: bool = False, **changes) -> None:
    data = {
        "measures": "责令限期安装氨气泄漏报警装置并组织应急演练",
        "rectification_deadline": (china_today() + timedelta(days=30)).isoformat(),
        "decision_doc_no": "魏应急决〔2026〕7号",
        "decision_date": china_today().isoformat(),
        "credit_record": credit_record,
        "public_criticism": False,
        "opinion": "同意处理意见",
        **changes,
    }
    if credit_record:
        data.setdefault("credit_severity", "general")
        data.setdefault("subject_uscc", _uscc())
    flows.complete(iid, "decision", "deputy", data)


def wait_and_review(flows, iid: int, passed: bool) -> None:
    """The rectification deadline passes (timer fired), then 复查 by supervision."""
    flows.fire(iid, "timer_rectification")
    task = flows.open_task(iid, "review")
    assert task["candidate_groups"] == ["supervision"]
    flows.complete(
        iid,
        "review",
        "handler",
        {
            "review_passed": passed,
            "review_findings": "复查：已整改到位" if passed else "复查：仍未安装报警装置",
        },
    )


def reply(flows, iid: int, element: str = "reply") -> None:
    task = flows.open_task(iid, element)
    assert task["candidate_groups"] == ["office"]
    flows.complete(
        iid,
        element,
        "registrar",
        {
            "reply_method": "written",
            "reply_date": china_today().isoformat(),
            "reply_content": "经核查，您反映的问题已依法处理。",
        },
    )


def complaint_records(flows) -> list[dict]:
    return [r for r in flows.records(subject=_uscc()) if r["category"] == "投诉核实"]


# --- 受理审查 -----------------------------------------------------------------------------


def test_rejected_complaint_is_told_to_the_reporter_and_ends(flows):
    iid = register(flows)
    flows.complete(
        iid,
        "acceptance_review",
        "chief",
        {"acceptance": "reject", "reject_reason": "不属于本局职责范围", "opinion": "不予受理"},
    )
    notice = flows.open_task(iid, "reject_notice")
    assert notice["candidate_groups"] == ["office"]
    flows.complete(
        iid,
        "reject_notice",
        "registrar",
        {"notice_method": "phone", "notice_date": china_today().isoformat()},
    )
    body = flows.assert_ended_at(iid, "end_rejected")
    assert body["variables"]["reject_reason"] == "不属于本局职责范围"
    assert "verification" not in body["diagram"]["completed"]


def test_transferred_complaint_records_where_it_went_and_ends(flows):
    iid = register(flows)
    flows.complete(
        iid,
        "acceptance_review",
        "chief",
        {"acceptance": "transfer", "transfer_to": "许昌市魏都区市场监督管理局", "opinion": "转办"},
    )
    body = flows.assert_ended_at(iid, "end_transferred")
    assert body["variables"]["transfer_to"] == "许昌市魏都区市场监督管理局"
    assert "reject_notice" not in body["diagram"]["completed"]


def test_deadlines_of_each_step(flows):
    received = (china_today() - timedelta(days=3)).isoformat()
    iid = register(flows, received_at=received)
    cal = flows.calendar
    assert flows.due(iid, "acceptance_review") == cal.days(15, received)  # 信访工作条例 第23条
    accept(flows, iid)
    assert flows.due(iid, "verification") == cal.days(60)
    verify(flows, iid)
    assert flows.due(iid, "reply") == cal.days(10)  # 10 days after verification
    deadline = (china_today() + timedelta(days=20)).isoformat()
    decide(flows, iid, rectification_deadline=deadline)
    assert flows.timer_due(iid, "timer_rectification") == cal.end_of_day(deadline)
    flows.fire(iid, "timer_rectification")
    assert flows.due(iid, "review") == cal.workdays(5)


def test_every_opinion_is_kept_in_the_history_with_its_author(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid, "unfounded")
    history = flows.instance(iid)["history"]
    completed = [(e["element_id"], e["user"], e["comment"]) for e in history if e["type"] == "completed"]
    assert completed == [
        ("acceptance_review", "chief", "属本局职责，予以受理"),
        ("verification", "handler", "核查完毕"),
    ]
    assert history[0]["type"] == "instance_started" and history[0]["user"] == "registrar"


def test_acceptance_is_for_section_chiefs_only(flows):
    iid = register(flows)
    task = flows.open_task(iid, "acceptance_review")
    refused = flows.api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        user="handler",
        json={"data": {"acceptance": "accept", "opinion": "x"}},
    )
    assert refused.status_code in (403, 404), refused.json
    assert flows.open_elements(iid) == ["acceptance_review"]


# --- 核查 ------------------------------------------------------------------------------------


def test_unfounded_complaint_is_answered_and_ends_without_a_credit_record(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid, "unfounded")
    reply(flows, iid, "reply_unfounded")
    body = flows.assert_ended_at(iid, "end_unfounded")
    assert "decision" not in body["diagram"]["completed"]
    assert body["variables"]["reply_method"] == "written"
    assert complaint_records(flows) == []
    assert flows.outbox("platform_sync", iid) == []


def test_extension_approved_adds_30_days_once(flows):
    iid = register(flows)
    accept(flows, iid)
    first_due = flows.open_task(iid, "verification")["due_at"]
    flows.complete(
        iid,
        "verification",
        "handler",
        {"request_extension": True, "extension_reason": "涉及多家单位，需延期"},
    )
    approval = flows.open_task(iid, "extension_approval")
    assert approval["candidate_groups"] == ["deputies"]
    flows.complete(
        iid, "extension_approval", "deputy", {"extension_approved": True, "opinion": "同意延期30日"}
    )
    again = flows.open_task(iid, "verification")
    assert date.fromisoformat(again["due_at"][:10]) - date.fromisoformat(first_due[:10]) >= timedelta(days=30)
    assert flows.variables(iid)["extension_used"] is True
    # The extension is used: asking again does not reach the deputies, the conclusion counts.
    flows.complete(
        iid,
        "verification",
        "handler",
        {
            "request_extension": True,
            "extension_reason": "再次延期",
            "verification": "unfounded",
            "findings": "不属实",
        },
    )
    assert flows.open_elements(iid) == ["reply_unfounded"]


def test_extension_refused_keeps_the_deadline(flows):
    iid = register(flows)
    accept(flows, iid)
    first_due = flows.open_task(iid, "verification")["due_at"]
    flows.complete(iid, "verification", "handler", {"request_extension": True, "extension_reason": "需延期"})
    flows.complete(
        iid, "extension_approval", "deputy", {"extension_approved": False, "opinion": "不同意延期"}
    )
    assert flows.open_task(iid, "verification")["due_at"] == first_due
    assert flows.variables(iid)["extension_used"] is False
    verify(flows, iid, "unfounded")
    reply(flows, iid, "reply_unfounded")
    flows.assert_ended_at(iid, "end_unfounded")


# --- 处理决定, 整改, 复查 --------------------------------------------------------------------


def test_founded_with_credit_record_publishes_a_complaint_record_and_syncs_it(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid, "founded")
    assert flows.open_elements(iid) == ["decision", "reply"]
    assert flows.open_task(iid, "decision")["candidate_groups"] == ["deputies"]
    decide(flows, iid, credit_record=True, credit_severity="general")

    [record] = complaint_records(flows)
    record = flows.record(record["id"])
    assert record["status"] == "published"
    assert record["subject_name"] == SUBJECT and record["subject_type"] == "unit"
    assert record["severity"] == "general" and record["doc_no"] == "魏应急决〔2026〕7号"
    assert record["decided_at"] == china_today().isoformat()
    assert "泄漏报警装置" in record["facts"]
    [created] = record["history"]
    assert created["from_status"] is None and created["to_status"] == "published"
    assert created["instance_id"] == iid and created["user"] == "deputy"
    assert record["id"] in flows.public_ids()
    [sync] = flows.platform_syncs(record["id"])
    assert sync.instance_id == iid and sync.status == "pending"
    assert sync.payload["status"] == "published" and sync.payload["public"] is True
    assert any(n.instance_id == iid and SUBJECT in n.title for n in flows.notifications("liaison"))
    assert flows.variables(iid)["credit_record_id"] == record["id"]

    flows.assert_waiting_at(iid, "reply", "timer_rectification")
    refused = flows.api.post(
        f"/api/v1/process-instances/{iid}/timers/fire",
        user="handler",
        json={"element_id": "timer_rectification"},
    )
    assert refused.status_code == 403, refused.json  # only managers fire timers early
    wait_and_review(flows, iid, passed=True)
    reply(flows, iid)
    body = flows.assert_ended_at(iid, "end")
    assert {"create_credit_record", "sync_credit_record", "review"} <= set(body["diagram"]["completed"])
    assert "escalation" not in body["diagram"]["completed"]


def test_partly_founded_without_credit_record_creates_nothing(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid, "partly_founded")
    reply(flows, iid)  # the reply may go first: the join waits for the rectification branch
    decide(flows, iid, credit_record=False, public_criticism=True)
    assert complaint_records(flows) == []
    assert flows.outbox("platform_sync", iid) == []
    flows.assert_waiting_at(iid, "timer_rectification", "gw_join")  # the reply is in, the join waits
    assert flows.instance(iid)["status"] == "waiting"
    wait_and_review(flows, iid, passed=True)
    body = flows.assert_ended_at(iid, "end")
    assert "create_credit_record" not in body["diagram"]["completed"]
    assert body["variables"]["public_criticism"] is True


def test_review_failed_twice_goes_back_to_decision_then_passes(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid)
    decide(flows, iid, credit_record=True)
    for failures in (1, 2):
        wait_and_review(flows, iid, passed=False)
        assert flows.variables(iid)["review_failures"] == failures
        assert flows.open_elements(iid) == ["decision", "reply"]
        # A second credit decision does not record the unit twice.
        decide(
            flows,
            iid,
            credit_record=True,
            rectification_deadline=(china_today() + timedelta(days=10)).isoformat(),
        )
    assert len(complaint_records(flows)) == 1
    wait_and_review(flows, iid, passed=True)
    assert flows.open_elements(iid) == ["reply"]
    reply(flows, iid)
    body = flows.assert_ended_at(iid, "end")
    assert "escalation" not in body["diagram"]["completed"]
    assert body["variables"]["review_failures"] == 2


def test_third_failed_review_escalates_to_the_directors(flows):
    iid = register(flows)
    accept(flows, iid)
    verify(flows, iid)
    reply(flows, iid)
    decide(flows, iid)
    for _ in range(2):
        wait_and_review(flows, iid, passed=False)
        decide(flows, iid)
    wait_and_review(flows, iid, passed=False)
    escalation = flows.open_task(iid, "escalation")
    assert escalation["candidate_groups"] == ["directors"]
    assert flows.variables(iid)["review_failures"] == 3
    refused = flows.api.post(
        f"/api/v1/tasks/{escalation['id']}/complete",
        user="deputy",
        json={"data": {"escalation_action": "supervise", "opinion": "督办"}},
    )
    assert refused.status_code in (403, 404), refused.json
    flows.complete(iid, "escalation", "director", {"escalation_action": "file_case", "opinion": "立案查处"})
    body = flows.assert_ended_at(iid, "end")
    assert body["variables"]["escalation_action"] == "file_case"


def test_anonymous_complaint_needs_no_reporter(flows):
    iid = register(flows, anonymous=True, **{k: None for k in REPORTER})
    variables = flows.variables(iid, user="registrar")
    assert variables["anonymous"] is True
    assert all(variables.get(k) is None for k in REPORTER)


# --- 举报人信息保密 --------------------------------------------------------------------------


def test_reporter_fields_are_masked_for_the_handler_and_shown_to_the_office(flows):
    iid = register(flows)
    accept(flows, iid)
    url = f"/api/v1/process-instances/{iid}"
    for user in ("handler", "chief"):  # supervision sees the matter, not who reported it
        response = flows.api.get(url, user=user)
        assert response.status_code == 200, (user, response.json)
        for key, value in REPORTER.items():
            assert response.json["variables"][key] == "******", (user, key)
            assert value not in response.get_data(as_text=True), (user, key)
        assert response.json["variables"]["subject_name"] == SUBJECT
    task = flows.open_task(iid, "verification")
    prefill = flows.api.get(f"/api/v1/tasks/{task['id']}", user="handler").get_data(as_text=True)
    assert REPORTER["reporter_phone"] not in prefill
    for user in ("registrar", "deputy", "director"):
        variables = flows.variables(iid, user=user)
        assert {k: variables[k] for k in REPORTER} == REPORTER, user
