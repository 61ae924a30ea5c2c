"""台账: rows built from matters run through the engine, files opened with openpyxl cell by cell."""

from __future__ import annotations

import io
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from openpyxl import load_workbook
from sqlalchemy import select

import engine.urging  # noqa: F401  (registers its table before create_all)
from engine import definitions, ledgers, runtime
from engine.db import transaction
from engine.errors import NotAllowed, NotFound, TooLarge, ValidationFailed
from engine.models import HumanTask, ProcessInstance, User
from engine.users import actor_for

TZ = ZoneInfo("Asia/Shanghai")
REPORTER = "举报人赵六"

# A small stand-in for the bureau's complaint flow: 登记 → 受理审查 → (受理) 核查 → end.
COMPLAINT_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    id="defs_ledger" targetNamespace="http://chengxin.local/test">
  <bpmn:process id="complaint_rectification" name="投诉举报→整改" isExecutable="true">
    <bpmn:startEvent id="register" name="登记" camunda:formRef="t_register" />
    <bpmn:sequenceFlow id="f1" sourceRef="register" targetRef="accept" />
    <bpmn:userTask id="accept" name="受理审查" camunda:candidateGroups="section_chiefs"
        camunda:formRef="t_accept" camunda:dueDate="${workdays(2)}" />
    <bpmn:sequenceFlow id="f2" sourceRef="accept" targetRef="gw" />
    <bpmn:exclusiveGateway id="gw" name="是否受理" />
    <bpmn:sequenceFlow id="f_yes" sourceRef="gw" targetRef="verify">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">acceptance == "accept"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_no" sourceRef="gw" targetRef="end_rejected">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">acceptance != "accept"</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:userTask id="verify" name="核查" camunda:candidateGroups="supervision"
        camunda:formRef="t_verify" camunda:dueDate="${workdays(2)}" />
    <bpmn:sequenceFlow id="f3" sourceRef="verify" targetRef="end_done" />
    <bpmn:endEvent id="end_done" name="办结" />
    <bpmn:endEvent id="end_rejected" name="不予受理" />
  </bpmn:process>
</bpmn:definitions>
"""


def _form(form_id: str, components: list[dict]) -> bytes:
    return json.dumps(
        {"id": form_id, "type": "default", "schemaVersion": 16, "components": components}
    ).encode()


FILES = [
    ("complaint.bpmn", COMPLAINT_BPMN.encode()),
    (
        "t_register.form",
        _form(
            "t_register",
            [
                {"type": "datetime", "subtype": "date", "key": "received_at", "label": "收到日期"},
                {"type": "textfield", "key": "subject_name", "label": "被举报单位"},
                {"type": "textarea", "key": "content", "label": "举报内容"},
                {
                    "type": "textfield",
                    "key": "reporter_name",
                    "label": "举报人",
                    "properties": {"confidential": "true"},
                },
            ],
        ),
    ),
    (
        "t_accept.form",
        _form(
            "t_accept",
            [
                {
                    "type": "select",
                    "key": "acceptance",
                    "label": "受理意见",
                    "validate": {"required": True},
                    "values": [
                        {"label": label, "value": v}
                        for v, label in (("accept", "受理"), ("reject", "不予受理"))
                    ],
                },
                {"type": "textarea", "key": "opinion", "label": "审批意见"},
            ],
        ),
    ),
    (
        "t_verify.form",
        _form(
            "t_verify",
            [
                {
                    "type": "select",
                    "key": "verification",
                    "label": "核查结论",
                    "validate": {"required": True},
                    "values": [
                        {"label": "属实", "value": "founded"},
                        {"label": "部分属实", "value": "partly_founded"},
                        {"label": "不属实", "value": "unfounded"},
                    ],
                },
                {"type": "textarea", "key": "opinion", "label": "审批意见"},
            ],
        ),
    ),
]


def at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=TZ)


class Matters:
    def __init__(self, session_factory, settings):
        self.factory, self.settings = session_factory, settings

    def run(self, when, username, operation, *args, **kwargs):
        with time_machine.travel(when, tick=False), transaction(self.factory) as session:
            user = session.scalar(select(User).where(User.username == username))
            return operation(runtime.Context(session, actor_for(user), self.settings), *args, **kwargs)

    def start(self, when, received, subject, content):
        variables = {
            "received_at": received,
            "subject_name": subject,
            "content": content,
            "reporter_name": REPORTER,
        }
        return self.run(
            when, "registrar", runtime.start_instance, "complaint_rectification", variables=variables
        ).id

    def complete(self, when, username, instance_id, data):
        with self.factory() as session:
            task_id = session.scalar(
                select(HumanTask.id).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
            )
        self.run(when, username, runtime.complete_task, task_id, data)

    def ledger(self, username, *args, **kwargs):
        with time_machine.travel(at(4, 1, 12), tick=False), self.factory() as session:
            user = session.scalar(select(User).where(User.username == username))
            ctx = runtime.Context(session, actor_for(user), self.settings)
            return args[0](ctx, *args[1:], **kwargs)


@pytest.fixture
def matters(session_factory, settings, seeded):
    with transaction(session_factory) as session:
        definitions.deploy(session, FILES, user="analyst")
    m = Matters(session_factory, settings)
    m.rejected = m.start(at(3, 2), "2026-02-27", "许昌甲商贸公司", "无证经营烟花爆竹")
    m.complete(at(3, 2, 10), "chief", m.rejected, {"acceptance": "reject"})
    m.founded = m.start(at(3, 3), "2026-03-03", "许昌乙化工有限公司", "危化品仓库未按规定设置防火间距" * 5)
    m.complete(at(3, 3, 10), "chief", m.founded, {"acceptance": "accept"})
    m.complete(at(3, 9, 10), "handler", m.founded, {"verification": "founded"})  # due 03-05: late
    m.running = m.start(at(3, 31), "2026-03-31", "许昌丙矿业公司", "夜间违规作业")
    m.complete(at(3, 31, 10), "chief", m.running, {"acceptance": "accept"})
    m.april = m.start(at(4, 1), "2026-04-01", "许昌丁公司", "四月的事项")
    return m


def business_key(matters, instance_id) -> str:
    with matters.factory() as session:
        return session.get(ProcessInstance, instance_id).business_key


def test_march_ledger_rows(matters):
    rows = matters.ledger("director", ledgers.ledger_rows, "complaints", date(2026, 3, 1), date(2026, 3, 31))
    assert rows == [
        [
            business_key(matters, matters.rejected),
            date(2026, 2, 27),
            "许昌甲商贸公司：无证经营烟花爆竹",
            "股室负责人",
            "不予受理",
            date(2026, 3, 2),
            False,
        ],
        [
            business_key(matters, matters.founded),
            date(2026, 3, 3),
            "许昌乙化工有限公司：" + ("危化品仓库未按规定设置防火间距" * 5)[:59] + "…",
            "安全生产综合监管股",
            "经核查举报属实",
            date(2026, 3, 9),
            True,
        ],
        [
            business_key(matters, matters.running),
            date(2026, 3, 31),
            "许昌丙矿业公司：夜间违规作业",
            "安全生产综合监管股",
            "办理中：核查",
            None,
            False,
        ],
    ]


def test_xlsx_ledger_cell_by_cell(matters):
    name, content = matters.ledger(
        "supervisor", ledgers.ledger_file, "complaints", date(2026, 3, 1), date(2026, 3, 31), "xlsx"
    )
    assert name == "投诉举报台账_20260301-20260331.xlsx"
    book = load_workbook(io.BytesIO(content))
    sheet = book.active
    assert sheet.title == "投诉举报台账"
    assert [c.value for c in sheet[1]] == [
        "编号",
        "收到日期",
        "事项",
        "承办股室",
        "办理结果",
        "办结日期",
        "是否超期",
    ]
    assert sheet.max_row == 4 and sheet.max_column == 7
    assert sheet["A2"].value == business_key(matters, matters.rejected)
    assert sheet["B2"].value == datetime(2026, 2, 27) and sheet["B2"].number_format == "yyyy-mm-dd"
    assert sheet["C2"].value == "许昌甲商贸公司：无证经营烟花爆竹"
    assert sheet["D2"].value == "股室负责人"
    assert sheet["E2"].value == "不予受理"
    assert sheet["F2"].value == datetime(2026, 3, 2)
    assert sheet["G2"].value == "否"
    assert (sheet["D3"].value, sheet["E3"].value, sheet["G3"].value) == (
        "安全生产综合监管股",
        "经核查举报属实",
        "是",
    )
    assert sheet["E4"].value == "办理中：核查" and sheet["F4"].value is None and sheet["G4"].value == "否"
    everything = " ".join(str(c.value) for row in sheet.iter_rows() for c in row)
    assert REPORTER not in everything and "四月" not in everything


def test_csv_ledger_and_a_narrow_range(matters):
    name, content = matters.ledger(
        "director", ledgers.ledger_file, "complaints", date(2026, 3, 3), date(2026, 3, 3), "csv"
    )
    assert name.endswith(".csv") and content.startswith("\ufeff".encode())
    lines = content.decode("utf-8-sig").strip().splitlines()
    assert lines[0] == "编号,收到日期,事项,承办股室,办理结果,办结日期,是否超期"
    assert len(lines) == 2 and lines[1].endswith(",经核查举报属实,2026-03-09,是")
    assert REPORTER not in content.decode("utf-8-sig")


def test_other_ledgers_are_empty_but_well_formed(matters):
    for kind in ("objections", "repairs", "judicial"):
        _, content = matters.ledger(
            "director", ledgers.ledger_file, kind, date(2026, 3, 1), date(2026, 3, 31)
        )
        sheet = load_workbook(io.BytesIO(content)).active
        assert [c.value for c in sheet[1]] == list(ledgers.HEADERS) and sheet.max_row == 1


def test_ledger_refusals(matters, monkeypatch):
    march = (date(2026, 3, 1), date(2026, 3, 31))
    with pytest.raises(NotAllowed):
        matters.ledger("handler", ledgers.ledger_rows, "complaints", *march)
    with pytest.raises(NotFound):
        matters.ledger("director", ledgers.ledger_rows, "parking_tickets", *march)
    with pytest.raises(ValidationFailed):
        matters.ledger("director", ledgers.ledger_rows, "complaints", date(2026, 3, 31), date(2026, 3, 1))
    with pytest.raises(ValidationFailed):
        matters.ledger("director", ledgers.ledger_rows, "complaints", date(2020, 1, 1), date(2026, 3, 1))
    with pytest.raises(ValidationFailed):
        matters.ledger("director", ledgers.ledger_file, "complaints", *march, "pdf")
    monkeypatch.setattr(ledgers, "MAX_ROWS", 2)
    with pytest.raises(TooLarge):
        matters.ledger("director", ledgers.ledger_rows, "complaints", *march)


@pytest.mark.parametrize(
    "kind, variables, matter, result",
    [
        ("complaints", {"acceptance": "transfer", "transfer_to": "区市场监管局"}, "", "转办：区市场监管局"),
        (
            "complaints",
            {
                "subject_name": "甲",
                "verification": "partly_founded",
                "review_passed": True,
                "credit_record": True,
            },
            "甲",
            "经核查举报部分属实，已整改到位，记入失信记录",
        ),
        ("complaints", {"verification": "unfounded"}, "", "经核查举报不属实"),
        (
            "objections",
            {
                "record_id": 12,
                "applicant_name": "某公司",
                "objection_reason": "认定有误",
                "proposal": "revoke",
                "approved": True,
            },
            "某公司对信用记录 12 提出异议：认定有误",
            "异议处理完毕：撤销信用记录",
        ),
        (
            "repairs",
            {"record_id": 3, "applicant_name": "某公司", "eligible": False, "ineligible_reason": "未满一年"},
            "某公司申请修复信用记录 3",
            "不予受理：未满一年",
        ),
        (
            "repairs",
            {"eligible": True, "materials": "complete", "approved": True},
            "申请信用修复",
            "准予信用修复",
        ),
        (
            "judicial",
            {
                "source_type": "procuratorate",
                "issuing_organ": "魏都区人民检察院",
                "doc_no": "魏检建〔2026〕3号",
                "signed": True,
                "measures_done": True,
            },
            "魏都区人民检察院检察建议：魏检建〔2026〕3号",
            "已书面回复，整改措施已落实",
        ),
    ],
)
def test_each_flow_maps_its_variables(kind, variables, matter, result):
    spec = ledgers.LEDGERS[kind]
    assert spec.matter(variables) == matter
    assert spec.result(variables) == result


def test_the_judicial_ledger_names_the_lead_group():
    spec = ledgers.LEDGERS["judicial"]
    assert ledgers._handling_groups(spec, {"lead_group": "legal"}, []) == "法规股"
