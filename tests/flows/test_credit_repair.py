"""信用修复 end to end through the API: eligibility (DMN), materials, approvals, the archive and the outbox."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine.credit import months_between

from .conftest import VALID_PHONE, china_today

pytestmark = pytest.mark.usefixtures("demo_archive")

PROCESS = "credit_repair"
APPLICANT = "许昌某某有限公司"


def application(record_id: int, *, duties_fulfilled: bool = True) -> dict:
    return {
        "record_id": record_id,
        "applicant_name": APPLICANT,
        "applicant_contact": VALID_PHONE,
        "duties_fulfilled": duties_fulfilled,
        "performance_description": "已缴清罚款，完成整改并通过复查。",
        "commitment_signed": True,
        "attachments": ["proof_0001"],
    }


def apply(flows, record_id: int, **kwargs) -> int:
    """修复申请, filed by the credit liaison on the applicant's behalf; returns the instance id."""
    return flows.start(PROCESS, application(record_id, **kwargs), user="liaison")["id"]


def repairable(record: dict) -> bool:
    return date.fromisoformat(record["repairable_from"]) <= china_today()


def months_old(record: dict) -> int:
    return months_between(date.fromisoformat(record["decided_at"]), china_today())


def review_materials(flows, iid: int, materials: str, **fields) -> None:
    assert flows.open_task(iid, "materials_review")["candidate_groups"] == ["supervision"]
    flows.complete(iid, "materials_review", "handler", {"materials": materials, **fields})


def chief_review(flows, iid: int, approved: bool) -> None:
    assert flows.open_task(iid, "chief_review")["candidate_groups"] == ["section_chiefs"]
    data = {"approved": approved, "opinion": "同意修复" if approved else "不同意修复"}
    if not approved:
        data["refusal_reason"] = "履行证明不能证明已消除不良影响"
    flows.complete(iid, "chief_review", "chief", data)


def director_approval(flows, iid: int, approved: bool) -> None:
    assert flows.open_task(iid, "director_approval")["candidate_groups"] == ["directors"]
    data = {"approved": approved, "opinion": "批准" if approved else "不批准"}
    if not approved:
        data["refusal_reason"] = "严重失信信息，整改成效尚待观察"
    flows.complete(iid, "director_approval", "director", data)


def applicant_notice(flows, iid: int) -> dict:
    notices = flows.outbox("applicant_notice", iid)
    assert notices, "the applicant was not told"
    assert notices[-1].payload["name"] == APPLICANT and notices[-1].payload["contact"] == VALID_PHONE
    return notices[-1].payload


def assert_repaired(flows, iid: int, before: dict) -> None:
    record = flows.record(before["id"])
    assert record["status"] == "repaired"
    assert record["disclosure_end"] == china_today().isoformat()
    change = record["history"][-1]
    assert (change["from_status"], change["to_status"], change["instance_id"]) == (
        before["status"],
        "repaired",
        iid,
    )
    assert APPLICANT in change["reason"]
    assert before["id"] not in flows.public_ids()
    [sync] = flows.platform_syncs(before["id"])
    assert sync.status == "pending" and sync.instance_id == iid
    assert sync.payload["status"] == "repaired" and sync.payload["public"] is False
    assert "停止公示" in applicant_notice(flows, iid)["message"]


def assert_unchanged(flows, before: dict, iid: int) -> None:
    assert flows.record(before["id"]) == before
    assert not [m for m in flows.outbox("platform_sync") if m.instance_id == iid]


# --- eligibility ---------------------------------------------------------------------------


INELIGIBLE = {
    # case: (status, severity, record filter, duties_fulfilled, reason words, wait months)
    "revoked": ("revoked", None, None, True, "已撤销", 0),
    "general_under_3_months": ("published", "general", lambda r: months_old(r) < 3, True, "满3个月", 3),
    "serious_under_12_months": ("published", "serious", lambda r: months_old(r) < 12, True, "满1年", 12),
    "duties_not_fulfilled": ("published", "minor", repairable, False, "尚未履行", 0),
    "already_repaired": ("repaired", None, None, True, "已修复", 0),
    "expired": ("expired", None, None, True, "公示期已届满", 0),
    "under_objection": ("under_objection", None, None, True, "异议处理中", 0),
}


@pytest.mark.parametrize("case", sorted(INELIGIBLE))
def test_ineligible_application_is_refused_with_reason_and_earliest_date(flows, case):
    status, severity, match, duties, words, wait = INELIGIBLE[case]
    before = flows.pick_record(status, severity, match=match)
    iid = apply(flows, before["id"], duties_fulfilled=duties)
    body = flows.assert_ended_at(iid, "end_ineligible")
    assert "materials_review" not in body["diagram"]["completed"]
    variables = body["variables"]
    assert variables["eligible"] is False and words in variables["ineligible_reason"]
    assert variables["wait_months"] == wait
    message = applicant_notice(flows, iid)["message"]
    assert variables["ineligible_reason"] in message
    if wait:
        assert variables["earliest_repair_date"] == before["repairable_from"]
        assert before["repairable_from"] in message
    else:
        assert variables["earliest_repair_date"] is None
    assert_unchanged(flows, before, iid)


def test_minor_record_with_duties_fulfilled_is_eligible_and_repaired(flows):
    before = flows.pick_record("published", "minor", match=repairable)
    iid = apply(flows, before["id"])
    assert flows.variables(iid)["eligible"] is True
    review_materials(flows, iid, "complete")
    # The decision is due 3 working days after acceptance (国办发〔2025〕22号).
    assert flows.due(iid, "chief_review") == flows.calendar.workdays(3)
    assert datetime.fromisoformat(flows.instance(iid)["due_at"]) == flows.calendar.workdays(3)
    chief_review(flows, iid, True)
    body = flows.assert_ended_at(iid, "end")
    assert "director_approval" not in body["diagram"]["completed"]
    assert_repaired(flows, iid, before)


def test_general_record_refused_by_the_section_chief_stays_unchanged(flows):
    before = flows.pick_record("published", "general", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "complete")
    chief_review(flows, iid, False)
    body = flows.assert_ended_at(iid, "end")
    assert {"refuse_repair", "notify_result"} <= set(body["diagram"]["completed"])
    assert "repair_record" not in body["diagram"]["completed"]
    assert "履行证明不能证明已消除不良影响" in applicant_notice(flows, iid)["message"]
    assert_unchanged(flows, before, iid)
    assert before["id"] in flows.public_ids()


def test_serious_record_needs_the_directors_approval(flows):
    before = flows.pick_record("published", "serious", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "complete")
    chief_review(flows, iid, True)
    assert flows.open_elements(iid) == ["director_approval"]
    assert flows.record(before["id"])["status"] == "published"
    director_approval(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    assert_repaired(flows, iid, before)


def test_serious_record_refused_by_the_director_stays_unchanged(flows):
    before = flows.pick_record("published", "serious", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "complete")
    chief_review(flows, iid, True)
    director_approval(flows, iid, False)
    body = flows.assert_ended_at(iid, "end")
    assert "repair_record" not in body["diagram"]["completed"]
    assert "整改成效尚待观察" in applicant_notice(flows, iid)["message"]
    assert_unchanged(flows, before, iid)


def test_corrected_record_can_be_repaired(flows):
    before = flows.pick_record("corrected", match=lambda r: repairable(r) and r["severity"] != "serious")
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "complete")
    chief_review(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    assert_repaired(flows, iid, before)


# --- 材料审查 --------------------------------------------------------------------------------


def test_supplemented_materials_come_back_to_review(flows):
    before = flows.pick_record("published", "general", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "supplement", supplement_request="请补充罚款缴纳凭证")
    # The event-based gateway holds both of its events: the message and the 5-workday window.
    flows.assert_waiting_at(iid, "gw_wait_supplement")
    assert flows.timer_due(iid, "timer_supplement") == flows.calendar.workdays(5)
    assert flows.instance(iid)["status"] == "waiting"
    assert "请补充罚款缴纳凭证" in applicant_notice(flows, iid)["message"]
    assert flows.message(iid, "something_else", {}).status_code == 409

    response = flows.message(iid, "materials_supplemented", {"attachments": ["receipt_0002"]})
    assert response.status_code == 200, response.json
    assert response.json["variables"]["attachments"] == ["proof_0001", "receipt_0002"]
    assert flows.open_elements(iid) == ["materials_review"]
    assert flows.message(iid, "materials_supplemented", {"attachments": []}).status_code == 409
    review_materials(flows, iid, "complete")
    chief_review(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    assert_repaired(flows, iid, before)


@pytest.mark.parametrize("payload", [{"attachments": "abc"}, {"attachments": ["../../etc/passwd"]}])
def test_malformed_supplement_is_refused(flows, payload):
    before = flows.pick_record("published", "general", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "supplement", supplement_request="请补充罚款缴纳凭证")
    response = flows.message(iid, "materials_supplemented", payload)
    assert response.status_code == 422, response.json
    assert flows.variables(iid)["attachments"] == ["proof_0001"]
    flows.assert_waiting_at(iid, "gw_wait_supplement")


def test_no_supplement_within_the_window_withdraws_the_application(flows):
    before = flows.pick_record("published", "general", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "supplement", supplement_request="请补充信用承诺书原件")
    flows.fire(iid, "timer_supplement")
    body = flows.assert_ended_at(iid, "end_withdrawn")
    assert "materials_supplemented" not in body["diagram"]["completed"]
    assert flows.message(iid, "materials_supplemented", {"attachments": ["late_0003"]}).status_code == 409
    assert_unchanged(flows, before, iid)


def test_rejected_materials_end_the_application(flows):
    before = flows.pick_record("published", "minor", match=repairable)
    iid = apply(flows, before["id"])
    review_materials(flows, iid, "reject", refusal_reason="提交的履行证明系伪造")
    flows.assert_ended_at(iid, "end_rejected")
    assert "提交的履行证明系伪造" in applicant_notice(flows, iid)["message"]
    assert_unchanged(flows, before, iid)
