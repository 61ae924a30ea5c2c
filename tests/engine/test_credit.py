"""Credit archive: disclosure periods, every transition and refusal, history, outbox, views."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from engine import credit
from engine.credit import (
    CreditHistory,
    CreditRecord,
    DisclosurePolicy,
    add_months,
    disclosure_dates,
    months_between,
)
from engine.demo_archive import id_number, seed_demo_archive, uscc
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.forms import is_valid_id_card, is_valid_uscc
from engine.models import OutboxMessage

TODAY = date(2026, 11, 25)
UNIT_CODE = uscc("91", "MA44FR2K")
ORGAN_CODE = uscc("11", "00593621")
# 41100219900101123X: its check character is X (411002199001011234 would be invalid).
PERSON_CODE = id_number("19900101", 123)


def make(session, **overrides) -> CreditRecord:
    values = {
        "actor": "registrar",
        "subject_type": "unit",
        "subject_name": "许昌测试化工有限公司",
        "subject_code": UNIT_CODE,
        "category": "投诉核实",
        "severity": "general",
        "doc_no": "魏应急核〔2026〕1号",
        "decided_at": date(2026, 5, 10),
        "facts": "举报危化品仓库超量储存，经核查属实。",
        "today": TODAY,
    }
    values.update(overrides)
    return credit.create_record(session, **values)


def make_person(session, **overrides) -> CreditRecord:
    values = {
        "subject_type": "person",
        "subject_name": "王某",
        "subject_code": PERSON_CODE,
        "category": "政务处分",
        "contact_phone": "13812345678",
    }
    return make(session, **(values | overrides))


def object_to(session, record, **kw) -> CreditRecord:
    return credit.mark_under_objection(session, record.id, actor="liaison", reason="申请人提出异议", **kw)


def revoked(session) -> CreditRecord:
    record = object_to(session, make(session))
    return credit.apply_outcome(session, record.id, "revoke", actor="deputy", reason="撤销")


def repaired(session) -> CreditRecord:
    record = make(session)
    return credit.repair(session, record.id, actor="chief", reason="已履行", today=TODAY)


def expired(session) -> CreditRecord:
    record = make(session, severity="minor", decided_at=date(2026, 6, 1))
    assert credit.expire_due(session, TODAY) >= 1
    return record


def corrected(session) -> CreditRecord:
    record = object_to(session, make(session))
    return credit.apply_outcome(
        session,
        record.id,
        "correct",
        actor="deputy",
        corrections={"facts": "经核查部分属实。"},
        reason="更正事实",
        today=TODAY,
    )


def syncs(session, record_id: int) -> list[OutboxMessage]:
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "platform_sync").order_by(OutboxMessage.id)
    ).all()
    return [row for row in rows if row.payload["id"] == record_id]


# --- calendar months --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2026, 5, 10), 3, date(2026, 8, 10)),
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2026, 5, 10), 0, date(2026, 5, 10)),
    ],
)
def test_add_months_keeps_the_day_or_clamps_to_month_end(start, months, expected):
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2026, 5, 31), date(2026, 11, 30), 6),
        (date(2026, 5, 31), date(2026, 11, 29), 5),
        (date(2026, 1, 31), date(2026, 2, 28), 1),
        (date(2026, 3, 31), date(2026, 4, 29), 0),
        (date(2025, 11, 25), date(2026, 11, 25), 12),
        (date(2026, 11, 26), date(2026, 11, 25), 0),
    ],
)
def test_months_between_counts_whole_calendar_months(start, end, expected):
    assert months_between(start, end) == expected


# --- disclosure periods -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "repairable_from", "end"),
    [
        ("minor", date(2026, 5, 10), date(2026, 8, 10)),
        ("general", date(2026, 8, 10), date(2027, 5, 10)),
        ("serious", date(2027, 5, 10), date(2029, 5, 10)),
    ],
)
def test_disclosure_dates_per_severity(severity, repairable_from, end):
    dates = disclosure_dates(severity, "行政处罚", date(2026, 5, 10))
    assert (dates.start, dates.repairable_from, dates.end) == (
        date(2026, 5, 10),
        repairable_from,
        end,
    )


@pytest.mark.parametrize(
    ("severity", "category", "decided", "repairable_from", "end"),
    [
        # 行政处罚 before 2026-04-01: the old one-year minimum.
        ("minor", "行政处罚", date(2026, 3, 31), date(2027, 3, 31), date(2027, 3, 31)),
        ("general", "行政处罚", date(2025, 12, 1), date(2026, 12, 1), date(2026, 12, 1)),
        # Longer periods than the minimum stay as they are.
        ("serious", "行政处罚", date(2025, 1, 31), date(2026, 1, 31), date(2028, 1, 31)),
        # From 2026-04-01, or in another category, the new periods apply.
        ("minor", "行政处罚", date(2026, 4, 1), date(2026, 4, 1), date(2026, 7, 1)),
        ("minor", "投诉核实", date(2026, 3, 31), date(2026, 3, 31), date(2026, 6, 30)),
        ("general", "政务处分", date(2025, 12, 1), date(2026, 3, 1), date(2026, 12, 1)),
    ],
)
def test_legacy_minimum_for_penalties_decided_before_the_2026_rules(
    severity, category, decided, repairable_from, end
):
    dates = disclosure_dates(severity, category, decided)
    assert (dates.repairable_from, dates.end) == (repairable_from, end)


def test_five_year_cap_limits_disclosure_and_repair():
    long = DisclosurePolicy(serious_repair_months=72, serious_disclosure_months=96)
    dates = disclosure_dates("serious", "司法判决", date(2024, 2, 29), long)
    assert dates.end == date(2029, 2, 28)  # 60 months, clamped to the month end
    assert dates.repairable_from == dates.end
    tighter = DisclosurePolicy(serious_disclosure_months=96, cap_months=48)
    assert disclosure_dates("serious", "司法判决", date(2024, 2, 29), tighter).end == date(2028, 2, 29)


def test_policy_numbers_are_settings(session):
    policy = DisclosurePolicy(general_repair_months=1, general_disclosure_months=6, legacy_minimum_months=0)
    record = make(session, category="行政处罚", decided_at="2025-12-31", policy=policy)
    assert record.repairable_from == date(2026, 1, 31)
    assert record.disclosure_end == date(2026, 6, 30)


@pytest.mark.parametrize(
    ("severity", "decided", "repairable_from", "end"),
    [
        ("general", "2026-05-31", date(2026, 8, 31), date(2027, 5, 31)),
        ("minor", "2026-08-31", date(2026, 8, 31), date(2026, 11, 30)),
        ("minor", "2023-11-30", date(2023, 11, 30), date(2024, 2, 29)),
        ("general", "2025-02-28", date(2025, 5, 28), date(2026, 2, 28)),
    ],
)
def test_record_dates_clamp_to_month_end(session, severity, decided, repairable_from, end):
    record = make(session, severity=severity, decided_at=decided)
    assert record.disclosure_start == date.fromisoformat(decided)
    assert (record.repairable_from, record.disclosure_end) == (repairable_from, end)


# --- creating ---------------------------------------------------------------------------


def test_create_record_publishes_with_history_and_sync(session):
    record = make(session, instance_id=7, reason="流程 TS-1")
    assert record.id is not None
    assert record.status == "published"
    assert (record.repairable_from, record.disclosure_end) == (
        date(2026, 8, 10),
        date(2027, 5, 10),
    )
    [entry] = record.history
    assert (entry.user, entry.from_status, entry.to_status, entry.reason) == (
        "registrar",
        None,
        "published",
        "流程 TS-1",
    )
    assert entry.instance_id == 7
    assert entry.changes["disclosure_end"] == "2027-05-10"
    [message] = syncs(session, record.id)
    assert message.status == "pending"
    assert message.instance_id == 7
    assert message.payload["action"] == "create"
    assert message.payload["status"] == "published"
    assert message.payload["public"] is True


def test_create_record_normalises_input(session):
    record = make_person(
        session,
        subject_code=" " + PERSON_CODE.lower() + " ",
        decided_at="2026-05-10",
        subject_name="  王某  ",
    )
    assert record.subject_code == PERSON_CODE
    assert record.subject_name == "王某"
    assert record.decided_at == date(2026, 5, 10)
    assert record.contact_phone == "13812345678"
    assert make(session, contact_phone="  ").contact_phone is None
    assert make(session, subject_type="organ", subject_code=ORGAN_CODE).subject_type == "organ"


def test_create_record_reports_every_bad_field_at_once(session):
    with pytest.raises(ValidationFailed) as caught:
        make(
            session,
            subject_type="company",
            subject_name=" ",
            subject_code="",
            category="罚款",
            severity="huge",
            doc_no="",
            decided_at="10/05/2026",
            facts=None,
            contact_phone="12ab",
        )
    errors = caught.value.errors
    assert set(errors) == {
        "subject_type",
        "subject_name",
        "subject_code",
        "category",
        "severity",
        "doc_no",
        "decided_at",
        "facts",
        "contact_phone",
    }
    assert errors["subject_name"] == ["请填写主体名称"]
    assert errors["severity"] == ["失信程度必须是轻微、一般、严重之一"]
    assert errors["decided_at"] == ["认定日期格式应为YYYY-MM-DD"]
    assert session.scalar(select(func.count()).select_from(CreditRecord)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"subject_code": UNIT_CODE[:17] + "0"}, "subject_code", "统一社会信用代码格式或校验位不正确"),
        ({"subject_code": PERSON_CODE}, "subject_code", "统一社会信用代码格式或校验位不正确"),
        (
            {"subject_type": "person", "subject_code": UNIT_CODE},
            "subject_code",
            "身份证号码格式或校验位不正确",
        ),
        (
            {"subject_type": "person", "subject_code": "411002199002301234"},
            "subject_code",
            "身份证号码格式或校验位不正确",
        ),
        (
            {"subject_type": "person", "subject_code": PERSON_CODE[:17] + "0"},
            "subject_code",
            "身份证号码格式或校验位不正确",
        ),
        ({"decided_at": "2026-11-26"}, "decided_at", "认定日期不能晚于今天"),
        ({"decided_at": "2026-02-30"}, "decided_at", "认定日期格式应为YYYY-MM-DD"),
        ({"decided_at": 20260510}, "decided_at", "认定日期格式应为YYYY-MM-DD"),
        ({"category": "行政许可"}, "category", None),
        ({"facts": "x" * 5001}, "facts", "失信事实不能超过5000个字"),
        ({"contact_phone": "12345"}, "contact_phone", None),
    ],
)
def test_create_record_rejects_bad_values(session, overrides, field, message):
    with pytest.raises(ValidationFailed) as caught:
        make(session, **overrides)
    assert list(caught.value.errors) == [field]
    if message:
        assert caught.value.errors[field] == [message]


# --- objection --------------------------------------------------------------------------


def test_objection_from_published(session):
    record = make(session)
    object_to(session, record, instance_id=11)
    assert record.status == "under_objection"
    entry = record.history[-1]
    assert (entry.user, entry.from_status, entry.to_status, entry.reason, entry.instance_id) == (
        "liaison",
        "published",
        "under_objection",
        "申请人提出异议",
        11,
    )


def test_objection_from_corrected(session):
    record = corrected(session)
    object_to(session, record)
    assert record.status == "under_objection"
    assert [h.to_status for h in record.history] == [
        "published",
        "under_objection",
        "corrected",
        "under_objection",
    ]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (revoked, "该信用记录已撤销，不能提出异议"),
        (repaired, "该信用记录已信用修复，不能提出异议"),
        (expired, "该信用记录公示期已满，不能提出异议"),
    ],
)
def test_objection_refused_for_hidden_records(session, build, message):
    record = build(session)
    before = len(record.history)
    with pytest.raises(Conflict) as caught:
        object_to(session, record)
    assert caught.value.message == message
    assert len(record.history) == before


def test_objection_refused_while_already_under_objection(session):
    record = object_to(session, make(session))
    with pytest.raises(Conflict, match="正在异议处理中"):
        object_to(session, record)


def test_objection_requires_a_reason(session):
    record = make(session)
    with pytest.raises(ValidationFailed) as caught:
        credit.mark_under_objection(session, record.id, actor="liaison", reason="  ")
    assert caught.value.errors == {"reason": ["请填写理由"]}
    assert record.status == "published"


# --- objection outcomes -----------------------------------------------------------------


def test_maintain_returns_the_record_to_published(session):
    record = object_to(session, make(session))
    credit.apply_outcome(session, record.id, "maintain", actor="deputy", instance_id=3, reason="维持原记录")
    assert record.status == "published"
    assert record.correction is None
    entry = record.history[-1]
    assert (entry.user, entry.from_status, entry.to_status, entry.reason, entry.instance_id) == (
        "deputy",
        "under_objection",
        "published",
        "维持原记录",
        3,
    )


def test_revoke_hides_the_record(session):
    record = revoked(session)
    assert record.status == "revoked"
    assert record.history[-1].to_status == "revoked"
    assert credit.public_records(session, today=TODAY) == ([], 0)
    assert syncs(session, record.id)[-1].payload["public"] is False


def test_correct_changes_fields_and_keeps_old_values(session):
    record = object_to(session, make(session))
    credit.apply_outcome(
        session,
        record.id,
        "correct",
        actor="deputy",
        instance_id=5,
        corrections={"facts": "经核查部分属实。", "doc_no": "魏应急核〔2026〕2号"},
        reason="事实表述有误",
        today=TODAY,
    )
    assert record.status == "corrected"
    assert record.facts == "经核查部分属实。"
    assert record.doc_no == "魏应急核〔2026〕2号"
    assert record.correction["fields"] == {
        "facts": {"old": "举报危化品仓库超量储存，经核查属实。", "new": "经核查部分属实。"},
        "doc_no": {"old": "魏应急核〔2026〕1号", "new": "魏应急核〔2026〕2号"},
    }
    assert (record.correction["user"], record.correction["instance_id"]) == ("deputy", 5)
    assert record.correction["reason"] == "事实表述有误"
    assert record.disclosure_end == date(2027, 5, 10)  # no date-bearing field changed
    assert record.history[-1].changes["doc_no"]["new"] == "魏应急核〔2026〕2号"


def test_correcting_severity_or_date_recomputes_disclosure(session):
    record = object_to(session, make(session, severity="serious"))
    assert record.disclosure_end == date(2029, 5, 10)
    credit.apply_outcome(
        session,
        record.id,
        "correct",
        actor="deputy",
        corrections={"severity": "general", "decided_at": "2026-05-31"},
        today=TODAY,
    )
    assert (record.severity, record.decided_at) == ("general", date(2026, 5, 31))
    assert record.disclosure_start == date(2026, 5, 31)
    assert record.repairable_from == date(2026, 8, 31)
    assert record.disclosure_end == date(2027, 5, 31)
    changes = record.history[-1].changes
    assert changes["disclosure_end"] == {"old": "2029-05-10", "new": "2027-05-31"}
    assert changes["decided_at"] == {"old": "2026-05-10", "new": "2026-05-31"}
    assert record.correction["fields"]["severity"] == {"old": "serious", "new": "general"}


def test_correcting_category_applies_the_legacy_rule(session):
    record = object_to(session, make(session, severity="minor", decided_at="2026-03-01"))
    assert record.disclosure_end == date(2026, 6, 1)
    credit.apply_outcome(session, record.id, "correct", actor="deputy", corrections={"category": "行政处罚"})
    assert (record.repairable_from, record.disclosure_end) == (
        date(2027, 3, 1),
        date(2027, 3, 1),
    )


def test_second_correction_keeps_the_original_values(session):
    record = corrected(session)
    object_to(session, record)
    credit.apply_outcome(
        session,
        record.id,
        "correct",
        actor="legal",
        corrections={"facts": "经再次核查，部分属实。", "subject_name": "许昌测试化工股份有限公司"},
        today=TODAY,
    )
    assert record.correction["fields"] == {
        "facts": {"old": "举报危化品仓库超量储存，经核查属实。", "new": "经再次核查，部分属实。"},
        "subject_name": {"old": "许昌测试化工有限公司", "new": "许昌测试化工股份有限公司"},
    }
    assert record.correction["user"] == "legal"


@pytest.mark.parametrize(
    ("corrections", "errors"),
    [
        (None, {"corrections": ["更正时请填写需要更正的内容"]}),
        ({}, {"corrections": ["更正时请填写需要更正的内容"]}),
        (
            {"subject_code": UNIT_CODE, "status": "revoked"},
            {
                "status": ["该字段不能更正"],
                "subject_code": ["该字段不能更正"],
            },
        ),
        ({"severity": "extreme"}, {"severity": ["失信程度必须是轻微、一般、严重之一"]}),
        ({"decided_at": "2027-01-01"}, {"decided_at": ["认定日期不能晚于今天"]}),
        ({"facts": "举报危化品仓库超量储存，经核查属实。"}, {"corrections": ["更正内容与原记录相同"]}),
    ],
)
def test_correct_refuses_bad_corrections(session, corrections, errors):
    record = object_to(session, make(session))
    with pytest.raises(ValidationFailed) as caught:
        credit.apply_outcome(
            session, record.id, "correct", actor="deputy", corrections=corrections, today=TODAY
        )
    assert caught.value.errors == errors
    assert record.status == "under_objection"
    assert record.severity == "general"


def test_unknown_outcome_is_a_validation_error(session):
    record = object_to(session, make(session))
    with pytest.raises(ValidationFailed) as caught:
        credit.apply_outcome(session, record.id, "delete", actor="deputy")
    assert caught.value.errors == {"outcome": ["处理结果必须是更正、撤销、维持之一"]}
    assert record.status == "under_objection"


@pytest.mark.parametrize("build", [make, corrected, revoked, repaired, expired])
@pytest.mark.parametrize("outcome", ["correct", "revoke", "maintain"])
def test_outcome_refused_when_not_under_objection(session, build, outcome):
    record = build(session)
    status = record.status
    with pytest.raises(Conflict, match="不能作出异议处理决定"):
        credit.apply_outcome(session, record.id, outcome, actor="deputy", corrections={"facts": "新的事实"})
    assert record.status == status


# --- repair -----------------------------------------------------------------------------


def test_repair_ends_disclosure_today(session):
    record = make(session, decided_at="2026-05-10")
    credit.repair(session, record.id, actor="chief", instance_id=9, reason="已整改并提交承诺书", today=TODAY)
    assert record.status == "repaired"
    assert record.disclosure_end == TODAY
    entry = record.history[-1]
    assert (entry.user, entry.from_status, entry.to_status, entry.instance_id) == (
        "chief",
        "published",
        "repaired",
        9,
    )
    assert entry.reason == "已整改并提交承诺书"
    assert entry.changes == {"disclosure_end": {"old": "2027-05-10", "new": "2026-11-25"}}
    assert syncs(session, record.id)[-1].payload["action"] == "repair"


def test_repair_a_corrected_record(session):
    record = corrected(session)
    credit.repair(session, record.id, actor="chief", reason="已履行", today=TODAY)
    assert record.status == "repaired"


def test_repair_on_the_first_repairable_day(session):
    record = make(session, severity="serious", decided_at="2025-11-25")
    assert record.repairable_from == TODAY
    credit.repair(session, record.id, actor="director", reason="已履行", today=TODAY)
    assert record.status == "repaired"


def test_minor_record_is_repairable_on_its_decision_day(session):
    record = make(session, severity="minor", decided_at=TODAY)
    credit.repair(session, record.id, actor="chief", reason="已履行", today=TODAY)
    assert record.status == "repaired"


def test_repair_before_the_earliest_date_names_it(session):
    record = make(session, severity="serious", decided_at="2025-11-26")
    with pytest.raises(Conflict) as caught:
        credit.repair(session, record.id, actor="director", reason="已履行", today=TODAY)
    assert "2026-11-26" in caught.value.message
    assert record.status == "published"
    assert record.disclosure_end == date(2028, 11, 26)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (revoked, "该信用记录已撤销，不能申请信用修复"),
        (repaired, "该信用记录已信用修复，不能申请信用修复"),
        (expired, "该信用记录公示期已满，不能申请信用修复"),
        (lambda s: object_to(s, make(s)), "该信用记录正在异议处理中，不能申请信用修复"),
    ],
)
def test_repair_refused_outside_published_or_corrected(session, build, message):
    record = build(session)
    status, end = record.status, record.disclosure_end
    with pytest.raises(Conflict) as caught:
        credit.repair(session, record.id, actor="chief", reason="已履行", today=TODAY)
    assert caught.value.message == message
    assert (record.status, record.disclosure_end) == (status, end)


def test_repair_requires_a_reason(session):
    record = make(session)
    with pytest.raises(ValidationFailed):
        credit.repair(session, record.id, actor="chief", reason="", today=TODAY)
    assert record.status == "published"


@pytest.mark.parametrize(
    "operation",
    [
        lambda s, i: credit.mark_under_objection(s, i, actor="a", reason="r"),
        lambda s, i: credit.apply_outcome(s, i, "maintain", actor="a"),
        lambda s, i: credit.repair(s, i, actor="a", reason="r", today=TODAY),
        lambda s, i: credit.queue_platform_sync(s, i),
        credit.get_record,
        credit.lookup,
    ],
)
@pytest.mark.parametrize("record_id", [999, "abc", None])
def test_missing_record_is_not_found(session, operation, record_id):
    with pytest.raises(NotFound, match="信用记录不存在"):
        operation(session, record_id)


# --- expiry -----------------------------------------------------------------------------


def test_expire_due_hides_records_whose_period_ended(session):
    ends_today = make(session, severity="minor", decided_at="2026-08-25")
    ends_tomorrow = make(session, severity="minor", decided_at="2026-08-26")
    corrected_due = corrected(session)
    objected_due = object_to(session, make(session, severity="minor", decided_at="2026-06-01"))
    revoked_due = revoked(session)
    corrected_due.disclosure_end = revoked_due.disclosure_end = TODAY
    session.flush()

    assert credit.expire_due(session, TODAY) == 2
    assert ends_today.status == "expired"
    assert corrected_due.status == "expired"
    assert ends_tomorrow.status == "published"
    assert objected_due.status == "under_objection"  # closes through its objection first
    assert revoked_due.status == "revoked"
    entry = ends_today.history[-1]
    assert (entry.user, entry.from_status, entry.to_status, entry.instance_id) == (
        "system",
        "published",
        "expired",
        None,
    )
    assert entry.reason
    assert syncs(session, ends_today.id)[-1].payload["action"] == "expire"
    assert credit.expire_due(session, TODAY) == 0
    assert credit.expire_due(session, TODAY + timedelta(days=1)) == 1


# --- outbox -----------------------------------------------------------------------------


def test_platform_sync_is_deduped_while_unsent(session):
    record = make(session, instance_id=1)
    object_to(session, record, instance_id=2)
    [message] = syncs(session, record.id)
    assert message.payload["action"] == "mark_under_objection"
    assert message.payload["status"] == "under_objection"
    assert message.instance_id == 2
    credit.queue_platform_sync(session, record.id)
    assert syncs(session, record.id) == [message]
    assert message.instance_id == 2
    other = make(session)
    assert len(syncs(session, other.id)) == 1
    assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


@pytest.mark.parametrize("sent", [{"status": "delivered"}, {"status": "dead"}, {"attempts": 1}])
def test_a_message_a_worker_has_taken_is_not_rewritten(session, sent):
    record = make(session)
    [first] = syncs(session, record.id)
    for name, value in sent.items():  # what the worker does to a message it has tried
        setattr(first, name, value)
    session.flush()
    object_to(session, record)
    rows = syncs(session, record.id)
    assert len(rows) == 2
    assert first.payload["status"] == "published"
    assert rows[1].payload["status"] == "under_objection"


def test_dedupe_spans_transactions_until_delivered(session_factory):
    with session_factory() as first:
        record_id = make(first).id
        first.commit()
    with session_factory() as second:
        credit.mark_under_objection(second, record_id, actor="liaison", reason="异议")
        second.commit()
    with session_factory() as check:
        [message] = syncs(check, record_id)
        assert message.payload["status"] == "under_objection"


def test_sync_payload_is_the_masked_public_view(session):
    record = make_person(session, facts="当事人身份证号" + PERSON_CODE + "，电话13812345678。")
    [message] = syncs(session, record.id)
    payload = message.payload
    assert payload["subject_code"] == PERSON_CODE[:4] + "*" * 10 + PERSON_CODE[-4:]
    assert PERSON_CODE not in payload["facts"]
    assert "13812345678" not in str(payload)
    assert "contact_phone" not in payload
    assert "history" not in payload
    assert payload == {
        **credit.public_record_to_dict(record),
        "action": "create",
        "public": True,
    }


# --- reading ----------------------------------------------------------------------------


def test_lookup_gives_flows_what_they_decide_on(session):
    record = make(session, severity="serious", category="行政处罚", decided_at="2026-05-31")
    facts = credit.lookup(session, record.id, today=date(2026, 11, 30))
    assert facts == {
        "id": record.id,
        "status": "published",
        "severity": "serious",
        "category": "行政处罚",
        "subject_name": "许昌测试化工有限公司",
        "subject_code": UNIT_CODE,
        "decided_at": "2026-05-31",
        "months_since_decided": 6,
        "repairable_from": "2027-05-31",
        "disclosure_end": "2029-05-31",
    }
    assert credit.lookup(session, str(record.id), today=date(2026, 11, 29))["months_since_decided"] == 5


def test_record_to_dict_has_the_api_shape(session):
    record = object_to(session, make(session, instance_id=4), instance_id=4)
    data = credit.record_to_dict(record)
    assert set(data) == {
        "id",
        "subject_type",
        "subject_name",
        "subject_code",
        "category",
        "severity",
        "doc_no",
        "decided_at",
        "facts",
        "status",
        "disclosure_start",
        "repairable_from",
        "disclosure_end",
        "history",
        "correction",
    }
    assert data["decided_at"] == "2026-05-10"
    assert data["disclosure_end"] == "2027-05-10"
    assert data["correction"] is None
    assert [h["to_status"] for h in data["history"]] == ["published", "under_objection"]
    entry = data["history"][1]
    assert set(entry) == {"at", "user", "from_status", "to_status", "reason", "instance_id"}
    assert entry["at"].endswith("+00:00")
    assert (entry["user"], entry["instance_id"]) == ("liaison", 4)
    assert "history" not in credit.record_to_dict(record, history=False)


def test_record_to_dict_keeps_identity_numbers_for_staff(session):
    data = credit.record_to_dict(make_person(session))
    assert data["subject_code"] == PERSON_CODE


# --- masking ----------------------------------------------------------------------------


def test_mask_id_number_keeps_four_and_four():
    assert credit.mask_id_number("411002199001011234") == "4110**********1234"
    assert credit.mask_id_number("11010519491231002X") == "1101**********002X"
    assert credit.mask_id_number("1234567") == "*******"


def test_mask_phone_keeps_three_and_four():
    assert credit.mask_phone("13812345678") == "138****5678"
    assert credit.mask_phone("0374-5100022") == "037*****0022"
    assert credit.mask_phone("12345") == "*****"


def test_mask_personal_data_in_text_masks_only_real_numbers():
    text = f"身份证{PERSON_CODE}，手机13812345678，代码{UNIT_CODE}，编号123456789012345678。"
    masked = credit.mask_personal_data(text)
    assert PERSON_CODE not in masked and "4110**********" in masked
    assert "138****5678" in masked
    assert UNIT_CODE in masked
    assert "123456789012345678" in masked  # not a valid 身份证号: left alone


def test_public_view_masks_a_person_and_shows_a_unit_code(session):
    person = credit.public_record_to_dict(make_person(session))
    assert person["subject_code"] == PERSON_CODE[:4] + "**********" + PERSON_CODE[-4:]
    assert person["subject_name"] == "王某"
    assert "history" not in person and "contact_phone" not in person
    unit = credit.public_record_to_dict(make(session, contact_phone="13812345678"))
    assert unit["subject_code"] == UNIT_CODE
    assert "13812345678" not in str(unit)
    organ = make(session, subject_type="organ", subject_code=ORGAN_CODE)
    assert credit.public_record_to_dict(organ)["subject_code"] == ORGAN_CODE


def test_public_view_shows_corrected_values_not_withdrawn_ones(session):
    record = object_to(session, make(session))
    credit.apply_outcome(
        session,
        record.id,
        "correct",
        actor="deputy",
        corrections={"facts": "联系电话13812345678的举报人反映的情况部分属实。"},
        today=TODAY,
    )
    public = credit.public_record_to_dict(record)
    assert set(public["correction"]) == {"at", "fields"}
    assert public["correction"]["fields"] == {"facts": "联系电话138****5678的举报人反映的情况部分属实。"}
    assert "经核查属实" not in str(public)
    assert credit.record_to_dict(record)["correction"]["fields"]["facts"]["old"]


# --- lists ------------------------------------------------------------------------------


def test_public_records_show_only_records_in_disclosure(session):
    published = make(session, decided_at="2026-05-01")
    objected = object_to(session, make(session, decided_at="2026-05-02"))
    fixed = corrected(session)  # decided 2026-05-10
    revoked(session)
    repaired(session)
    expired(session)
    # At or past its end but not yet expired by the worker: hidden all the same.
    make(session, severity="minor", decided_at="2026-07-01")
    make(session, severity="minor", decided_at="2026-08-25")
    last_day = make(session, severity="minor", decided_at="2026-08-26")
    items, total = credit.public_records(session, today=TODAY)
    assert total == 4
    assert [r.id for r in items] == [last_day.id, fixed.id, objected.id, published.id]


def test_public_search_never_matches_a_person_id_number(session):
    person = make_person(session)
    unit = make(session)
    assert credit.public_records(session, subject=PERSON_CODE, today=TODAY) == ([], 0)
    assert credit.public_records(session, subject=PERSON_CODE[-6:], today=TODAY)[1] == 0
    assert credit.public_records(session, subject="王某", today=TODAY)[0] == [person]
    assert credit.public_records(session, subject=UNIT_CODE[-8:].lower(), today=TODAY)[0] == [unit]
    assert credit.list_records(session, subject=PERSON_CODE)[0] == [person]


def test_list_records_filters_and_paginates(session):
    minor = make(session, severity="minor", decided_at="2026-03-01")
    serious = make(session, severity="serious", subject_name="许昌宏达石料有限公司")
    person = object_to(session, make_person(session, decided_at="2026-06-01"))
    for day in range(1, 8):
        make(session, decided_at=date(2026, 4, day), subject_name=f"许昌第{day}化工有限公司")

    assert credit.list_records(session)[1] == 10
    assert credit.list_records(session, status="under_objection") == ([person], 1)
    assert credit.list_records(session, severity="minor") == ([minor], 1)
    assert credit.list_records(session, severity="serious", status="published") == (
        [serious],
        1,
    )
    assert credit.list_records(session, subject="宏达")[0] == [serious]
    assert credit.list_records(session, subject=PERSON_CODE[6:14])[0] == [person]
    assert credit.list_records(session, subject="%") == ([], 0)
    assert credit.list_records(session, subject="许昌第_化工")[1] == 0

    page1, total = credit.list_records(session, per_page=4)
    page3, _ = credit.list_records(session, per_page=4, page=3)
    assert total == 10
    assert page1[0] == person  # newest 认定日期 first
    assert len(page1) == 4 and len(page3) == 2
    assert page3[-1] == minor
    assert credit.list_records(session, page=4, per_page=4) == ([], 10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page": 0}, "page"),
        ({"per_page": 0}, "per_page"),
        ({"per_page": 201}, "per_page"),
        ({"status": "deleted"}, "status"),
        ({"severity": "huge"}, "severity"),
    ],
)
def test_list_records_rejects_bad_parameters(session, kwargs, field):
    with pytest.raises(ValidationFailed) as caught:
        credit.list_records(session, **kwargs)
    assert list(caught.value.errors) == [field]


def test_operations_flush_and_leave_the_commit_to_the_caller(session_factory):
    with session_factory() as first:
        record = make(first)
        object_to(first, record)
        first.rollback()
    with session_factory() as check:
        for table in (CreditRecord, CreditHistory, OutboxMessage):
            assert check.scalar(select(func.count()).select_from(table)) == 0


def test_committed_changes_read_back(session_factory):
    with session_factory() as writer:
        record_id = corrected(writer).id
        writer.commit()
    with session_factory() as reader:
        record = credit.get_record(reader, record_id)
        assert record.status == "corrected"
        assert record.correction["fields"]["facts"]["new"] == "经核查部分属实。"
        assert [h.to_status for h in record.history] == [
            "published",
            "under_objection",
            "corrected",
        ]
        assert record.history[0].at.tzinfo is not None


# --- demo seed --------------------------------------------------------------------------


def test_demo_seed_builds_a_realistic_archive_once(session):
    created = seed_demo_archive(session, today=TODAY)
    records, total = credit.list_records(session, per_page=200)
    assert created == total
    assert 25 <= total <= 35
    for record in records:
        if record.subject_type == "person":
            assert is_valid_id_card(record.subject_code), record.subject_code
        else:
            assert is_valid_uscc(record.subject_code), record.subject_code
    assert {r.subject_type for r in records} == {"unit", "organ", "person"}
    assert {r.severity for r in records} == {"minor", "general", "serious"}
    assert len({r.category for r in records}) == 6
    assert {r.status for r in records} == set(credit.STATUSES)
    shown = [r for r in records if r.status in ("published", "corrected")]
    assert any(r.repairable_from <= TODAY for r in shown)
    assert any(r.repairable_from > TODAY for r in shown)
    decided = sorted(r.decided_at for r in records)
    assert decided[-1] - decided[0] > timedelta(days=730)
    assert decided[0] >= TODAY - timedelta(days=915)
    history = session.scalar(select(func.count()).select_from(CreditHistory))
    assert history > total
    assert any(r.correction for r in records)

    assert seed_demo_archive(session, today=TODAY) == 0
    assert credit.list_records(session)[1] == total
    assert session.scalar(select(func.count()).select_from(CreditHistory)) == history


def test_demo_seed_does_nothing_when_records_exist(session):
    make(session)
    assert seed_demo_archive(session, today=TODAY) == 0
    assert credit.list_records(session)[1] == 1


def test_known_codes_validate():
    # Examples printed in GB 32100-2015 and GB 11643-1999.
    assert is_valid_uscc("91350100M000100Y43")
    assert is_valid_id_card("11010519491231002X")
    assert is_valid_uscc(UNIT_CODE) and is_valid_uscc(ORGAN_CODE)
    assert is_valid_id_card(PERSON_CODE)
