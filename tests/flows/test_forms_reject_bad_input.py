"""Every flow's start form and task forms refuse bad input with 422 and a Chinese field message,
and a refused submission changes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from .conftest import INSTANCES, VALID_PHONE, VALID_USCC, china_today

VALID_ID = "11010519491231002X"
BAD_USCC = VALID_USCC[:-1] + ("3" if VALID_USCC[-1] != "3" else "4")  # right shape, wrong check character
BAD_ID = VALID_ID[:-1] + "3"  # right shape and birth date, wrong check digit
BAD_PHONE = "1380013800"  # ten digits
CHINESE = re.compile(r"[\u4e00-\u9fff]")
REQUIRED = "此项为必填项"
NEEDS_ARCHIVE = ("credit_objection", "credit_repair")
ONE_OF = "必须是以下选项之一"

START = {
    "complaint_rectification": lambda: {
        "channel": "hotline_12345",
        "received_at": china_today().isoformat(),
        "anonymous": False,
        "reporter_name": "王某",
        "reporter_phone": VALID_PHONE,
        "reporter_id_number": VALID_ID,
        "subject_name": "许昌某某化工有限公司",
        "subject_uscc": VALID_USCC,
        "category": "safety_violation",
        "content": "夜间违规动火作业",
    },
    "credit_objection": lambda: {
        "record_id": 1,
        "applicant_name": "许昌某某有限公司",
        "applicant_contact": VALID_PHONE,
        "objection_reason": "认定事实有误",
    },
    "credit_repair": lambda: {
        "record_id": 1,
        "applicant_name": "许昌某某有限公司",
        "applicant_uscc": VALID_USCC,
        "applicant_contact": VALID_PHONE,
        "duties_fulfilled": True,
        "performance_description": "已缴清罚款",
        "commitment_signed": True,
        "attachments": ["proof_0001"],
    },
    "judicial_suggestion": lambda: {
        "source_type": "court",
        "doc_no": "魏法建〔2026〕5号",
        "issuing_organ": "许昌市魏都区人民法院",
        "received_at": china_today().isoformat(),
        "suggestions": [{"problem": "问题", "suggestion": "建议"}],
    },
}

# (process, field, bad value or None to leave it out, words of the expected message)
START_CASES = [
    ("complaint_rectification", "content", None, REQUIRED),
    ("complaint_rectification", "subject_name", "   ", REQUIRED),
    ("complaint_rectification", "subject_uscc", BAD_USCC, "统一社会信用代码校验位错误"),
    ("complaint_rectification", "reporter_id_number", BAD_ID, "身份证号码校验位错误"),
    ("complaint_rectification", "reporter_phone", BAD_PHONE, "电话号码格式不正确"),
    ("complaint_rectification", "channel", "wechat", ONE_OF),
    ("complaint_rectification", "category", "其他", ONE_OF),
    ("complaint_rectification", "received_at", "2026/11/26", "日期格式不正确"),
    ("credit_objection", "record_id", None, REQUIRED),
    ("credit_objection", "objection_reason", "", REQUIRED),
    ("credit_objection", "applicant_contact", BAD_PHONE, "电话号码格式不正确"),
    ("credit_objection", "record_id", "第一条", "必须是数字"),
    ("credit_repair", "attachments", [], REQUIRED),
    ("credit_repair", "commitment_signed", False, REQUIRED),
    ("credit_repair", "applicant_uscc", BAD_USCC, "统一社会信用代码校验位错误"),
    ("credit_repair", "applicant_uscc", "91350100M000100Y4", "统一社会信用代码应为 18 位"),
    ("credit_repair", "applicant_contact", BAD_PHONE, "电话号码格式不正确"),
    ("judicial_suggestion", "source_type", "police", ONE_OF),
    ("judicial_suggestion", "source_type", None, REQUIRED),
    ("judicial_suggestion", "reply_deadline", "下月底", "日期格式不正确"),
    ("judicial_suggestion", "urgent", "yes", "必须是 true 或 false"),
]


@pytest.mark.parametrize("process", sorted(START))
def test_start_form_refuses_bad_input_and_starts_nothing(flows, request, process):
    if process in NEEDS_ARCHIVE:
        request.getfixturevalue("demo_archive")
    archive_before = flows.records()
    problems = []
    for case_process, field, value, words in START_CASES:
        if case_process != process:
            continue
        variables = START[process]()
        if value is None:
            variables.pop(field)
        else:
            variables[field] = value
        response = flows.api.post(
            INSTANCES, user=_starter(process), json={"process_key": process, "variables": variables}
        )
        case = f"{field}={value!r}"
        if response.status_code != 422 or response.json.get("error") != "validation":
            problems.append(f"{case}: {response.status_code} {response.json}")
        elif set(response.json["errors"]) != {field}:
            problems.append(f"{case}: errors on {sorted(response.json['errors'])}")
        else:
            messages = response.json["errors"][field]
            if not any(words in m for m in messages) or not all(CHINESE.search(m) for m in messages):
                problems.append(f"{case}: messages {messages}")
    assert problems == []
    assert_nothing_started(flows)
    assert flows.records() == archive_before


def test_start_form_refuses_several_bad_fields_at_once_and_unknown_ones(flows):
    variables = START["complaint_rectification"]() | {
        "subject_uscc": BAD_USCC,
        "reporter_phone": BAD_PHONE,
        "priority": "high",
    }
    response = flows.api.post(
        INSTANCES, user="registrar", json={"process_key": "complaint_rectification", "variables": variables}
    )
    assert response.status_code == 422, response.json
    assert set(response.json["errors"]) == {"subject_uscc", "reporter_phone", "priority"}
    assert response.json["errors"]["priority"] == ["未知字段"]
    assert_nothing_started(flows)


def test_valid_start_data_is_accepted(flows):
    # The bases above are valid: each refusal is caused by the one field a case changes.
    for process in ("complaint_rectification", "judicial_suggestion"):
        response = flows.api.post(
            INSTANCES, user=_starter(process), json={"process_key": process, "variables": START[process]()}
        )
        assert response.status_code == 201, (process, response.json)


def _starter(process: str) -> str:
    return {"credit_objection": "liaison", "credit_repair": "liaison"}.get(process, "registrar")


def assert_nothing_started(flows) -> None:
    listed = flows.api.get(INSTANCES, user="director").json
    assert listed["total"] == 0, listed["items"]
    assert all(m.instance_id is None for m in flows.outbox("platform_sync"))
    assert flows.outbox("applicant_notice") == []


# --- task forms ------------------------------------------------------------------------------


def _instance_at(flows, process: str, element: str) -> int:
    """An instance of `process` waiting at the user task `element`."""
    variables = START[process]()
    if process in ("credit_objection", "credit_repair"):
        variables["record_id"] = flows.pick_record("published", "minor")["id"]
    iid = flows.start(process, variables, user=_starter(process))["id"]
    if process == "complaint_rectification" and element != "acceptance_review":
        flows.complete(iid, "acceptance_review", "chief", {"acceptance": "accept", "opinion": "受理"})
        if element == "decision":
            flows.complete(iid, "verification", "handler", {"verification": "founded", "findings": "属实"})
    if process == "judicial_suggestion" and element == "draft":
        flows.complete(iid, "instruction", "director", {"instructions": "办理", "lead_group": "supervision"})
    assert element in flows.open_elements(iid), flows.open_elements(iid)
    return iid


DECISION = {
    "measures": "责令限期整改",
    "rectification_deadline": china_today().isoformat(),
    "decision_doc_no": "魏应急决〔2026〕9号",
    "decision_date": china_today().isoformat(),
    "credit_record": True,
    "credit_severity": "general",
    "subject_uscc": VALID_USCC,
    "opinion": "同意",
}
DRAFT_ITEM = {"measure": "专项检查", "owner": "张科长", "due_date": "2026-12-31"}

# (process, element, user, valid data, field, bad value or None to leave it out, error key, words)
TASK_CASES = [
    ("complaint_rectification", "acceptance_review", "chief", {"acceptance": "accept", "opinion": "受理"},
     "acceptance", "maybe", "acceptance", ONE_OF),
    ("complaint_rectification", "acceptance_review", "chief", {"acceptance": "accept", "opinion": "受理"},
     "opinion", None, "opinion", REQUIRED),
    ("complaint_rectification", "verification", "handler", {"verification": "founded", "findings": "属实"},
     "subject_uscc", BAD_USCC, "subject_uscc", "统一社会信用代码校验位错误"),
    ("complaint_rectification", "verification", "handler", {"verification": "founded", "findings": "属实"},
     "verification", "true", "verification", ONE_OF),
    ("complaint_rectification", "decision", "deputy", DECISION,
     "subject_uscc", BAD_USCC, "subject_uscc", "统一社会信用代码校验位错误"),
    ("complaint_rectification", "decision", "deputy", DECISION,
     "credit_severity", "extreme", "credit_severity", ONE_OF),
    ("complaint_rectification", "decision", "deputy", DECISION,
     "rectification_deadline", None, "rectification_deadline", REQUIRED),
    ("credit_objection", "verification", "handler", {"proposal": "maintain", "verification_reason": "维持"},
     "proposal", "delete", "proposal", ONE_OF),
    ("credit_objection", "verification", "handler",
     {"proposal": "correct", "category": "行政处罚", "verification_reason": "更正"},
     "category", "交通违法", "category", ONE_OF),
    ("credit_repair", "materials_review", "handler", {"materials": "complete"},
     "materials", "partial", "materials", ONE_OF),
    ("credit_repair", "materials_review", "handler", {"materials": "complete"},
     "materials", None, "materials", REQUIRED),
    ("judicial_suggestion", "instruction", "director", {"instructions": "办理", "lead_group": "supervision"},
     "lead_group", "finance", "lead_group", ONE_OF),
    ("judicial_suggestion", "instruction", "director", {"instructions": "办理", "lead_group": "supervision"},
     "instructions", None, "instructions", REQUIRED),
    ("judicial_suggestion", "draft", "handler", {"measures": [DRAFT_ITEM], "reply_draft": "回复稿"},
     "measures", [DRAFT_ITEM | {"owner": ""}], "measures.0.owner", REQUIRED),
    ("judicial_suggestion", "draft", "handler", {"measures": [DRAFT_ITEM], "reply_draft": "回复稿"},
     "measures", [DRAFT_ITEM | {"due_date": "年底前"}], "measures.0.due_date", "日期格式不正确"),
]  # fmt: skip


TASK_GROUPS = sorted({(c[0], c[1]) for c in TASK_CASES})


@pytest.mark.parametrize(("process", "element"), TASK_GROUPS, ids=[f"{p}-{e}" for p, e in TASK_GROUPS])
def test_task_form_refuses_bad_input_and_changes_nothing(flows, request, process, element):
    if process in NEEDS_ARCHIVE:
        request.getfixturevalue("demo_archive")
    cases = [c for c in TASK_CASES if (c[0], c[1]) == (process, element)]
    user, valid = cases[0][2], cases[0][3]
    iid = _instance_at(flows, process, element)
    before = flows.instance(iid)
    task = flows.open_task(iid, element)
    problems = []
    for *_, field, value, key, words in cases:
        data = dict(valid)
        if value is None:
            data.pop(field)
        else:
            data[field] = value
        response = flows.api.post(f"/api/v1/tasks/{task['id']}/complete", user=user, json={"data": data})
        case = f"{field}={value!r}"
        if response.status_code != 422 or response.json.get("error") != "validation":
            problems.append(f"{case}: {response.status_code} {response.json}")
        elif set(response.json["errors"]) != {key}:
            problems.append(f"{case}: errors on {sorted(response.json['errors'])}")
        else:
            messages = response.json["errors"][key]
            if not any(words in m for m in messages) or not all(CHINESE.search(m) for m in messages):
                problems.append(f"{case}: messages {messages}")
    assert problems == []

    after = flows.instance(iid)
    assert after["tasks"] == before["tasks"]
    assert after["variables"] == before["variables"]
    assert after["diagram"] == before["diagram"]
    assert [e["type"] for e in after["history"]] == [e["type"] for e in before["history"]]
    # The same task then takes valid data.
    done = flows.api.post(f"/api/v1/tasks/{task['id']}/complete", user=user, json={"data": valid})
    assert done.status_code == 200, done.json


def test_decision_with_credit_record_requires_the_severity(flows):
    iid = _instance_at(flows, "complaint_rectification", "decision")
    task = flows.open_task(iid, "decision")
    data = {k: v for k, v in DECISION.items() if k != "credit_severity"}
    response = flows.api.post(f"/api/v1/tasks/{task['id']}/complete", user="deputy", json={"data": data})
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation", response.json
    assert REQUIRED in response.json["errors"]["credit_severity"]


def test_decision_date_in_the_future_is_refused_at_its_field(flows):
    iid = _instance_at(flows, "complaint_rectification", "decision")
    task = flows.open_task(iid, "decision")
    tomorrow = (china_today() + timedelta(days=1)).isoformat()
    data = DECISION | {"decision_date": tomorrow}
    response = flows.api.post(f"/api/v1/tasks/{task['id']}/complete", user="deputy", json={"data": data})
    assert response.status_code == 422, response.json
    assert flows.open_elements(iid) == ["decision", "reply"]
    assert "decision_date" in response.json["errors"], response.json["errors"]
