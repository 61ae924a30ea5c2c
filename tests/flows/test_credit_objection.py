"""信用信息异议→更正/撤销 end to end through the API: every branch, the archive and the outbox."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine.credit import disclosure_dates, months_between

from .conftest import INSTANCES, VALID_PHONE, china_today

pytestmark = pytest.mark.usefixtures("demo_archive")

PROCESS = "credit_objection"
APPLICANT = "许昌某某有限公司"


def months_old(record: dict) -> int:
    return months_between(date.fromisoformat(record["decided_at"]), china_today())


def objection(record_id: int) -> dict:
    return {
        "record_id": record_id,
        "applicant_name": APPLICANT,
        "applicant_contact": VALID_PHONE,
        "objection_reason": "认定事实有误，处罚决定已被复议撤销",
    }


def register(flows, record_id: int) -> int:
    """异议登记 by the credit liaison; returns the instance id (waiting at 核查)."""
    instance = flows.start(PROCESS, objection(record_id), user="liaison")
    task = flows.open_task(instance["id"], "verification")
    assert task["candidate_groups"] == ["supervision"]
    return instance["id"]


def verify(flows, iid: int, proposal: str, **fields) -> None:
    data = {"proposal": proposal, "verification_reason": f"核查意见：{proposal}", **fields}
    flows.complete(iid, "verification", "handler", data)


def legal(flows, iid: int, opinion: str) -> None:
    assert flows.open_task(iid, "legal_review")["candidate_groups"] == ["legal"]
    flows.complete(
        iid, "legal_review", "legal", {"legal_opinion": opinion, "opinion": f"法制审核：{opinion}"}
    )


def approve(flows, iid: int, approved: bool) -> None:
    assert flows.open_task(iid, "approval")["candidate_groups"] == ["deputies"]
    flows.complete(
        iid, "approval", "deputy", {"approved": approved, "opinion": "同意" if approved else "不同意"}
    )


def assert_applicant_told(flows, iid: int, words: str) -> None:
    [notice] = flows.outbox("applicant_notice", iid)
    assert notice.payload["name"] == APPLICANT and notice.payload["contact"] == VALID_PHONE
    assert words in notice.payload["message"]
    assert any(n.instance_id == iid for n in flows.notifications("liaison"))


def assert_synced(flows, record_id: int, status: str, public: bool) -> None:
    """The latest platform sync queued for the record carries its new state."""
    syncs = flows.platform_syncs(record_id)
    assert syncs, "no platform sync queued"
    assert syncs[-1].status == "pending"
    assert syncs[-1].payload["status"] == status and syncs[-1].payload["public"] is public


def last_change(record: dict) -> dict:
    return record["history"][-1]


def test_record_goes_under_objection_at_once(flows):
    record = flows.pick_record("published", "general")
    iid = register(flows, record["id"])
    marked = flows.record(record["id"])
    assert marked["status"] == "under_objection"
    change = last_change(marked)
    assert change["from_status"] == "published" and change["to_status"] == "under_objection"
    assert change["instance_id"] == iid and change["user"] == "liaison"
    assert "复议撤销" in change["reason"]
    assert record["id"] in flows.public_ids()  # still shown, marked
    assert_synced(flows, record["id"], "under_objection", public=True)


def test_verification_due_in_3_working_days_and_the_whole_matter_in_7(flows):
    record = flows.pick_record("published", "general")
    iid = register(flows, record["id"])
    cal = flows.calendar
    assert flows.due(iid, "verification") == cal.workdays(3)
    assert datetime.fromisoformat(flows.instance(iid)["due_at"]) == cal.workdays(7)
    verify(flows, iid, "maintain")
    assert flows.due(iid, "legal_review") == cal.workdays(7)
    legal(flows, iid, "agree")
    assert flows.due(iid, "approval") == cal.workdays(7)
    approve(flows, iid, False)
    assert flows.due(iid, "verification") == cal.workdays(7)  # a second look: what is left of the 7 days


def test_correct_changes_the_record_and_keeps_the_old_values(flows):
    # Decided less than 3 months ago: still shown once corrected to minor (at most 3 months).
    record = flows.pick_record("published", "general", match=lambda r: months_old(r) < 3)
    iid = register(flows, record["id"])
    verify(
        flows,
        iid,
        "correct",
        subject_name=record["subject_name"],
        category=record["category"],
        severity="minor",
        decided_at=record["decided_at"],
        corrected_facts="经核查，仅一项安全警示标志缺失，已当场改正。",
    )
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    flows.assert_ended_at(iid, "end")

    corrected = flows.record(record["id"])
    assert corrected["status"] == "corrected"
    assert corrected["severity"] == "minor"
    assert corrected["facts"] == "经核查，仅一项安全警示标志缺失，已当场改正。"
    assert corrected["correction"]["fields"]["severity"] == {"old": "general", "new": "minor"}
    assert corrected["correction"]["fields"]["facts"]["old"] == record["facts"]
    assert set(corrected["correction"]["fields"]) == {"severity", "facts"}
    dates = disclosure_dates("minor", record["category"], date.fromisoformat(record["decided_at"]))
    assert corrected["repairable_from"] == dates.repairable_from.isoformat()
    assert corrected["disclosure_end"] == dates.end.isoformat()
    change = last_change(corrected)
    assert (change["from_status"], change["to_status"], change["instance_id"]) == (
        "under_objection",
        "corrected",
        iid,
    )
    assert corrected["id"] in flows.public_ids()  # shown with the correction
    assert_synced(flows, record["id"], "corrected", public=True)
    assert_applicant_told(flows, iid, "予以更正")


def test_revoke_hides_the_record(flows):
    record = flows.pick_record("published", "serious")
    iid = register(flows, record["id"])
    verify(flows, iid, "revoke")
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    revoked = flows.record(record["id"])
    assert revoked["status"] == "revoked"
    assert revoked["facts"] == record["facts"] and revoked["correction"] is None
    assert (last_change(revoked)["to_status"], last_change(revoked)["instance_id"]) == ("revoked", iid)
    assert record["id"] not in flows.public_ids()
    assert_synced(flows, record["id"], "revoked", public=False)
    assert_applicant_told(flows, iid, "予以撤销")


def test_maintain_publishes_the_record_again(flows):
    record = flows.pick_record("published", "minor")
    iid = register(flows, record["id"])
    verify(flows, iid, "maintain")
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    kept = flows.record(record["id"])
    assert kept["status"] == "published"
    assert {k: kept[k] for k in ("facts", "severity", "doc_no")} == {
        k: record[k] for k in ("facts", "severity", "doc_no")
    }
    assert [h["to_status"] for h in kept["history"][-2:]] == ["under_objection", "published"]
    assert kept["history"][-1]["instance_id"] == iid
    assert record["id"] in flows.public_ids()
    assert_synced(flows, record["id"], "published", public=True)
    assert_applicant_told(flows, iid, "维持原信息")


def test_legal_disagreement_sends_it_back_to_verification(flows):
    record = flows.pick_record("published", "general")
    iid = register(flows, record["id"])
    verify(flows, iid, "revoke")
    legal(flows, iid, "disagree")
    assert flows.open_elements(iid) == ["verification"]
    assert flows.record(record["id"])["status"] == "under_objection"
    assert flows.outbox("applicant_notice", iid) == []
    verify(flows, iid, "maintain")
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    body = flows.assert_ended_at(iid, "end")
    assert "return_for_verification" in body["diagram"]["completed"]
    assert flows.record(record["id"])["status"] == "published"


def test_deputy_refusal_sends_it_back_to_verification(flows):
    record = flows.pick_record("published", "general")
    iid = register(flows, record["id"])
    verify(flows, iid, "maintain")
    legal(flows, iid, "agree")
    approve(flows, iid, False)
    assert flows.open_elements(iid) == ["verification"]
    assert flows.record(record["id"])["status"] == "under_objection"
    verify(flows, iid, "revoke")
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    assert flows.record(record["id"])["status"] == "revoked"


def test_maintaining_a_corrected_record_keeps_it_corrected(flows):
    record = flows.pick_record("corrected")
    iid = register(flows, record["id"])
    verify(flows, iid, "maintain")
    legal(flows, iid, "agree")
    approve(flows, iid, True)
    flows.assert_ended_at(iid, "end")
    kept = flows.record(record["id"])
    assert kept["correction"] == record["correction"]
    assert kept["status"] == "corrected"


@pytest.mark.parametrize("status", ["revoked", "repaired", "expired", "under_objection"])
def test_objecting_to_a_record_not_shown_or_already_objected_is_refused(flows, status):
    record = flows.pick_record(status)
    before = flows.record(record["id"])
    response = flows.api.post(
        INSTANCES, user="liaison", json={"process_key": PROCESS, "variables": objection(record["id"])}
    )
    assert response.status_code == 409, response.json
    assert response.json["error"] == "conflict"
    assert "不能提出异议" in response.json["message"]
    assert flows.record(record["id"]) == before
    assert flows.api.get(f"{INSTANCES}?process_key={PROCESS}", user="director").json["total"] == 0


def test_objecting_to_an_unknown_record_is_refused(flows):
    response = flows.api.post(
        INSTANCES, user="liaison", json={"process_key": PROCESS, "variables": objection(999999)}
    )
    assert response.status_code == 404, response.json
    assert "999999" in response.json["message"]
    assert flows.api.get(f"{INSTANCES}?process_key={PROCESS}", user="director").json["total"] == 0


def test_a_correction_without_corrected_fields_is_refused_at_verification(flows):
    record = flows.pick_record("published", "general")
    iid = register(flows, record["id"])
    task = flows.open_task(iid, "verification")
    response = flows.api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        user="handler",
        json={"data": {"proposal": "correct", "verification_reason": "需更正"}},
    )
    assert response.status_code == 422, response.json
