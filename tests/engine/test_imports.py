"""Importing diagrams made in other tools: descriptive Signavio/Bizagi models are stored for
viewing with a per-element report of what keeps them from running; Camunda Modeler files
deploy and run; unreadable files are refused with a reason; nothing is deployed by an import."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from engine import definitions, imports, runtime, studio
from engine.access import Actor
from engine.errors import DefinitionError, NotAllowed, ValidationFailed
from engine.models import Deployment, ProcessDefinition

from ..conftest import FIXTURES, ROOT

ANALYST = Actor("analyst", frozenset({"analysts"}))
REGISTRAR = Actor("registrar", frozenset({"office"}))

# What Signavio Process Editor exports for a descriptive model: default BPMN namespace,
# signavio metadata in extension elements, isExecutable="false", a data store.
SIGNAVIO = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:omgdc="http://www.omg.org/spec/DD/20100524/DC" xmlns:omgdi="http://www.omg.org/spec/DD/20100524/DI" xmlns:signavio="http://www.signavio.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" exporter="Signavio Process Editor, http://www.signavio.com" exporterVersion="16.6.0" expressionLanguage="http://www.w3.org/TR/XPath" id="sid-defs" targetNamespace="http://www.signavio.com" typeLanguage="http://www.w3.org/2001/XMLSchema">
   <dataStore id="sid-store" isUnlimited="false" name="信用信息库"/>
   <process id="sid-objection" isClosed="false" isExecutable="false" name="异议处理（描述）" processType="None">
      <extensionElements>
         <signavio:signavioDiagramMetaData metaKey="revisionid" metaValue="4f1c2a"/>
      </extensionElements>
      <startEvent id="sid-start" name="收到异议">
         <extensionElements>
            <signavio:signavioMetaData metaKey="bgcolor" metaValue="#ffffff"/>
         </extensionElements>
         <outgoing>sid-f1</outgoing>
      </startEvent>
      <task completionQuantity="1" id="sid-register" isForCompensation="false" name="登记" startQuantity="1">
         <extensionElements>
            <signavio:signavioMetaData metaKey="bgcolor" metaValue="#ffffcc"/>
         </extensionElements>
         <incoming>sid-f1</incoming>
         <outgoing>sid-f2</outgoing>
         <outgoing>sid-f3</outgoing>
      </task>
      <userTask completionQuantity="1" id="sid-verify" implementation="##unspecified" isForCompensation="false" name="核查" startQuantity="1">
         <incoming>sid-f2</incoming>
         <outgoing>sid-f4</outgoing>
      </userTask>
      <serviceTask completionQuantity="1" id="sid-sync" implementation="##WebService" isForCompensation="false" name="同步平台" startQuantity="1">
         <incoming>sid-f3</incoming>
         <outgoing>sid-f5</outgoing>
      </serviceTask>
      <exclusiveGateway gatewayDirection="Diverging" id="sid-gw" name="是否成立">
         <incoming>sid-f4</incoming>
         <outgoing>sid-yes</outgoing>
         <outgoing>sid-no</outgoing>
      </exclusiveGateway>
      <subProcess completionQuantity="1" id="sid-supplement" isForCompensation="false" name="补充材料" startQuantity="1" triggeredByEvent="false">
         <incoming>sid-yes</incoming>
         <outgoing>sid-f6</outgoing>
      </subProcess>
      <endEvent id="sid-end" name="办结">
         <incoming>sid-no</incoming>
         <incoming>sid-f5</incoming>
         <incoming>sid-f6</incoming>
      </endEvent>
      <dataStoreReference dataStoreRef="sid-store" id="sid-storeref" name="信用信息库"/>
      <sequenceFlow id="sid-f1" sourceRef="sid-start" targetRef="sid-register"/>
      <sequenceFlow id="sid-f2" sourceRef="sid-register" targetRef="sid-verify"/>
      <sequenceFlow id="sid-f3" sourceRef="sid-register" targetRef="sid-sync"/>
      <sequenceFlow id="sid-f4" sourceRef="sid-verify" targetRef="sid-gw"/>
      <sequenceFlow id="sid-yes" name="成立" sourceRef="sid-gw" targetRef="sid-supplement"/>
      <sequenceFlow id="sid-no" name="不成立" sourceRef="sid-gw" targetRef="sid-end"/>
      <sequenceFlow id="sid-f5" sourceRef="sid-sync" targetRef="sid-end"/>
      <sequenceFlow id="sid-f6" sourceRef="sid-supplement" targetRef="sid-end"/>
   </process>
   <bpmndi:BPMNDiagram id="sid-diagram">
      <bpmndi:BPMNPlane bpmnElement="sid-objection" id="sid-plane">
         <bpmndi:BPMNShape bpmnElement="sid-start" id="sid-start_gui"><omgdc:Bounds height="30" width="30" x="60" y="115"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-register" id="sid-register_gui"><omgdc:Bounds height="80" width="100" x="135" y="90"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-verify" id="sid-verify_gui"><omgdc:Bounds height="80" width="100" x="280" y="90"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-sync" id="sid-sync_gui"><omgdc:Bounds height="80" width="100" x="280" y="230"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-gw" id="sid-gw_gui" isMarkerVisible="true"><omgdc:Bounds height="40" width="40" x="425" y="110"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-supplement" id="sid-supplement_gui" isExpanded="false"><omgdc:Bounds height="80" width="100" x="510" y="20"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-end" id="sid-end_gui"><omgdc:Bounds height="28" width="28" x="680" y="116"/></bpmndi:BPMNShape>
         <bpmndi:BPMNShape bpmnElement="sid-storeref" id="sid-storeref_gui"><omgdc:Bounds height="60" width="62" x="300" y="350"/></bpmndi:BPMNShape>
         <bpmndi:BPMNEdge bpmnElement="sid-f1" id="sid-f1_gui"><omgdi:waypoint x="90" y="130"/><omgdi:waypoint x="135" y="130"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-f2" id="sid-f2_gui"><omgdi:waypoint x="235" y="130"/><omgdi:waypoint x="280" y="130"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-f3" id="sid-f3_gui"><omgdi:waypoint x="185" y="170"/><omgdi:waypoint x="185" y="270"/><omgdi:waypoint x="280" y="270"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-f4" id="sid-f4_gui"><omgdi:waypoint x="380" y="130"/><omgdi:waypoint x="425" y="130"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-yes" id="sid-yes_gui"><omgdi:waypoint x="445" y="110"/><omgdi:waypoint x="445" y="60"/><omgdi:waypoint x="510" y="60"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-no" id="sid-no_gui"><omgdi:waypoint x="465" y="130"/><omgdi:waypoint x="680" y="130"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-f5" id="sid-f5_gui"><omgdi:waypoint x="380" y="270"/><omgdi:waypoint x="694" y="270"/><omgdi:waypoint x="694" y="144"/></bpmndi:BPMNEdge>
         <bpmndi:BPMNEdge bpmnElement="sid-f6" id="sid-f6_gui"><omgdi:waypoint x="610" y="60"/><omgdi:waypoint x="694" y="60"/><omgdi:waypoint x="694" y="116"/></bpmndi:BPMNEdge>
      </bpmndi:BPMNPlane>
   </bpmndi:BPMNDiagram>
</definitions>
"""

# What Bizagi Modeler exports: a pool, bizagi extension elements, no diagram interchange here.
BIZAGI = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bizagi="http://www.bizagi.com/bpmn20" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Id_defs" exporter="Bizagi Modeler" exporterVersion="4.0.0.014" targetNamespace="http://www.bizagi.com/definitions/credit_repair">
  <message id="Id_msg_materials" />
  <collaboration id="Id_collab">
    <participant id="Id_pool" name="信用修复" processRef="Id_repair" />
  </collaboration>
  <process id="Id_repair" name="信用修复（Bizagi）" isExecutable="false">
    <extensionElements>
      <bizagi:BizagiExtensions>
        <bizagi:BizagiProperties>
          <bizagi:BizagiProperty name="bgColor" value="White" />
          <bizagi:BizagiProperty name="borderColor" value="Black" />
        </bizagi:BizagiProperties>
      </bizagi:BizagiExtensions>
    </extensionElements>
    <manualTask id="Id_check" name="材料审查">
      <extensionElements>
        <bizagi:BizagiExtensions><bizagi:BizagiProperties><bizagi:BizagiProperty name="bgColor" value="#ECEFFF" /></bizagi:BizagiProperties></bizagi:BizagiExtensions>
      </extensionElements>
      <outgoing>Id_f1</outgoing>
    </manualTask>
    <complexGateway id="Id_complex" name="综合判断">
      <incoming>Id_f1</incoming>
      <outgoing>Id_f2</outgoing>
    </complexGateway>
    <intermediateCatchEvent id="Id_wait" name="等待补正材料">
      <incoming>Id_f2</incoming>
      <outgoing>Id_f3</outgoing>
      <messageEventDefinition messageRef="Id_msg_materials" />
    </intermediateCatchEvent>
    <intermediateCatchEvent id="Id_condition" name="条件满足">
      <incoming>Id_f3</incoming>
      <outgoing>Id_f4</outgoing>
      <conditionalEventDefinition><condition xsi:type="tFormalExpression">ok</condition></conditionalEventDefinition>
    </intermediateCatchEvent>
    <task id="Id_undo" name="撤回公示" isForCompensation="true" />
    <endEvent id="Id_end" name="结束">
      <incoming>Id_f4</incoming>
    </endEvent>
    <sequenceFlow id="Id_f1" sourceRef="Id_check" targetRef="Id_complex" />
    <sequenceFlow id="Id_f2" sourceRef="Id_complex" targetRef="Id_wait" />
    <sequenceFlow id="Id_f3" sourceRef="Id_wait" targetRef="Id_condition" />
    <sequenceFlow id="Id_f4" sourceRef="Id_condition" targetRef="Id_end" />
  </process>
</definitions>
"""

# Camunda Modeler 5 with its usual attributes: an executable, deployable model.
CAMUNDA_MODELER = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:di="http://www.omg.org/spec/DD/20100524/DI" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:modeler="http://camunda.org/schema/modeler/1.0" id="Definitions_0x1" targetNamespace="http://bpmn.io/schema/bpmn" exporter="Camunda Modeler" exporterVersion="5.31.0" modeler:executionPlatform="Camunda Platform" modeler:executionPlatformVersion="7.21.0">
  <bpmn:process id="hazard_report" name="隐患报告" isExecutable="true" camunda:historyTimeToLive="180">
    <bpmn:startEvent id="StartEvent_1" name="报告隐患" camunda:formRef="simple_start" camunda:formRefBinding="latest">
      <bpmn:outgoing>Flow_1</bpmn:outgoing>
    </bpmn:startEvent>
    <bpmn:userTask id="Activity_check" name="核实隐患" camunda:candidateGroups="supervision" camunda:dueDate="${workdays(5)}" camunda:formRef="simple_confirm" camunda:formRefBinding="latest">
      <bpmn:incoming>Flow_1</bpmn:incoming>
      <bpmn:outgoing>Flow_2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="Event_end" name="办结">
      <bpmn:incoming>Flow_2</bpmn:incoming>
    </bpmn:endEvent>
    <bpmn:sequenceFlow id="Flow_1" sourceRef="StartEvent_1" targetRef="Activity_check" />
    <bpmn:sequenceFlow id="Flow_2" sourceRef="Activity_check" targetRef="Event_end" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_1">
    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement="hazard_report">
      <bpmndi:BPMNShape id="StartEvent_1_di" bpmnElement="StartEvent_1"><dc:Bounds x="152" y="102" width="36" height="36" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Activity_check_di" bpmnElement="Activity_check"><dc:Bounds x="240" y="80" width="100" height="80" /></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="Event_end_di" bpmnElement="Event_end"><dc:Bounds x="392" y="102" width="36" height="36" /></bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="Flow_1_di" bpmnElement="Flow_1"><di:waypoint x="188" y="120" /><di:waypoint x="240" y="120" /></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="Flow_2_di" bpmnElement="Flow_2"><di:waypoint x="340" y="120" /><di:waypoint x="392" y="120" /></bpmndi:BPMNEdge>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""


@pytest.fixture
def ctx(seeded, session, settings):
    forms = [(n, (FIXTURES / n).read_bytes()) for n in ("simple_start.form", "simple_confirm.form")]
    forms.append(("simple_review.form", (FIXTURES / "simple_review.form").read_bytes()))
    definitions.deploy(
        session,
        [("simple_review.bpmn", (FIXTURES / "simple_review.bpmn").read_bytes()), *forms],
        user="analyst",
    )
    return runtime.Context(session, ANALYST, settings)


def findings(report) -> dict[str, list[tuple[str, str]]]:
    by_element: dict[str, list[tuple[str, str]]] = {}
    for item in report.items:
        by_element.setdefault(item.element_id, []).append((item.severity, item.message))
    return by_element


def messages(report, element_id) -> str:
    return " / ".join(m for _, m in findings(report).get(element_id, []))


def deployment_count(ctx) -> int:
    return ctx.session.scalar(select(func.count(Deployment.id)))


def test_signavio_descriptive_model_is_stored_with_a_report_per_element(ctx):
    before = deployment_count(ctx)
    model = imports.import_file(ctx, "objection_signavio.bpmn", SIGNAVIO.encode())
    assert model.kind == "bpmn" and model.exporter.startswith("Signavio Process Editor")
    assert not model.executable and not model.deployable and model.has_diagram
    assert model.process_ids == ["sid-objection"]
    report = imports.get_import(ctx, model.id)
    by_element = {}
    for item in report.report:
        by_element.setdefault(item["element_id"], []).append(item)
    assert by_element["sid-objection"][0]["severity"] == "info"
    assert "描述性模型" in by_element["sid-objection"][0]["message"]
    expected = {
        "sid-storeref": "数据存储没有实现",
        "sid-sync": "服务任务没有实现",
        "sid-yes": "没有条件",
        "sid-no": "没有条件",
        "sid-register": "隐式并行分支",
        "sid-supplement": "折叠的空子流程",
        "sid-verify": "用户任务没有表单",
    }
    for element_id, words in expected.items():
        items = by_element[element_id]
        assert any(words in i["message"] and i["severity"] == "error" for i in items), (element_id, items)
        assert items[0]["line"] and items[0]["element_type"]
    assert any("没有候选组" in i["message"] for i in by_element["sid-verify"])
    assert by_element["sid-yes"][0]["element_type"] == "sequenceFlow"
    # Plain tasks run as no-ops: worth a warning, not a refusal.
    assert any(i["severity"] == "warning" and "直接跳过" in i["message"] for i in by_element["sid-register"])
    assert deployment_count(ctx) == before  # an import never deploys


def test_bizagi_model_reports_start_event_manual_task_unnamed_message_and_unsupported_elements(ctx):
    report = imports.analyze(ctx, "repair.bpmn", BIZAGI.encode())
    assert report.exporter.startswith("Bizagi Modeler") and not report.has_diagram
    assert "缺少开始事件" in messages(report, "Id_repair")
    assert "人工任务" in messages(report, "Id_check")
    assert "消息没有名称" in messages(report, "Id_msg_materials")
    assert "引用的消息没有名称" in messages(report, "Id_wait")
    assert "复杂网关" in messages(report, "Id_complex")
    assert "条件事件" in messages(report, "Id_condition")
    assert "补偿" in messages(report, "Id_undo")
    assert any("BPMNDiagram" in i.message for i in report.items if i.element_id is None)
    assert not report.deployable


def test_camunda_modeler_file_is_deployable_and_runs_after_opening_as_draft(ctx):
    model = imports.import_file(ctx, "hazard_report.bpmn", CAMUNDA_MODELER.encode())
    assert model.executable and model.deployable, model.report
    assert [i["severity"] for i in model.report] == []
    draft = imports.open_as_draft(ctx, model.id)
    assert (draft.kind, draft.key, draft.content) == ("bpmn", "hazard_report", CAMUNDA_MODELER)
    result = studio.deploy_process(ctx, "hazard_report", "从 Camunda Modeler 导入")
    (definition,) = [d for d in result.definitions if d.key == "hazard_report"]
    assert definition.elements["Activity_check"]["due_date"] == "${workdays(5)}"
    instance = runtime.start_instance(
        runtime.Context(ctx.session, REGISTRAR, ctx.settings),
        "hazard_report",
        variables={"title": "仓库消防通道堵塞", "subject_name": "许昌某物流公司", "amount": 1},
    )
    assert instance.status == "running"
    assert [t.candidate_groups for t in instance_tasks(ctx, instance.id)] == [["supervision"]]
    assert instance_tasks(ctx, instance.id)[0].due_at is not None


def instance_tasks(ctx, instance_id):
    from engine.queries import open_tasks_of

    return open_tasks_of(ctx.session, instance_id)


def test_a_descriptive_draft_is_refused_on_deploy_never_deployed_empty(ctx):
    model = imports.import_file(ctx, "objection_signavio.bpmn", SIGNAVIO.encode())
    imports.open_as_draft(ctx, model.id)
    before = deployment_count(ctx)
    with pytest.raises(DefinitionError) as refused:
        studio.deploy_process(ctx, "sid-objection", "试部署描述性模型")
    assert refused.value.errors and all(e["message"] for e in refused.value.errors)
    assert deployment_count(ctx) == before
    assert (
        ctx.session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == "sid-objection")) is None
    )


def test_a_file_without_any_process_is_reported_not_silently_accepted(ctx):
    empty = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">'
        '<collaboration id="c" /></definitions>'
    )
    report = imports.analyze(ctx, "empty.bpmn", empty.encode())
    assert not report.deployable and report.process_ids == []
    assert any("没有流程" in i.message and i.severity == "error" for i in report.items)
    with pytest.raises(ValidationFailed):
        imports.open_as_draft(ctx, imports.import_file(ctx, "empty.bpmn", empty.encode()).id)


def test_unreadable_files_are_refused_with_a_reason_and_not_stored(ctx):
    with pytest.raises(DefinitionError) as broken:
        imports.import_file(ctx, "broken.bpmn", b'<?xml version="1.0"?>\n<definitions>\n<process id="p">')
    assert broken.value.errors[0]["line"] and "XML" in broken.value.errors[0]["message"]
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><definitions>&a;</definitions>'
    with pytest.raises(DefinitionError, match="DTD"):
        imports.import_file(ctx, "bomb.bpmn", bomb)
    with pytest.raises(DefinitionError, match="BPMN"):
        imports.import_file(ctx, "other.bpmn", b"<html><body>not bpmn</body></html>")
    with pytest.raises(ValidationFailed):
        imports.import_file(ctx, "notes.txt", b"hello")
    with pytest.raises(DefinitionError, match="JSON"):
        imports.import_file(ctx, "broken.form", b"{not json")
    assert imports.list_imports(ctx) == []


def test_forms_and_decision_tables_import_with_their_findings(ctx):
    bad_form = {"id": "bad_form", "type": "default", "components": [{"type": "nonsense", "key": "x"}]}
    report = imports.analyze(ctx, "bad_form.form", json.dumps(bad_form).encode())
    assert report.kind == "form" and report.items[0].severity == "error"
    good = imports.import_file(ctx, "simple_confirm.form", (FIXTURES / "simple_confirm.form").read_bytes())
    assert good.deployable and good.process_ids == ["simple_confirm"]
    draft = imports.open_as_draft(ctx, good.id)
    assert (draft.kind, draft.key) == ("form", "simple_confirm")
    dmn = ROOT / "processes" / "repair_eligibility.dmn"
    if dmn.exists():
        decision = imports.import_file(ctx, dmn.name, dmn.read_bytes())
        assert decision.kind == "dmn" and decision.deployable, decision.report


def test_only_analysts_and_admins_import(ctx):
    staff = runtime.Context(ctx.session, REGISTRAR, ctx.settings)
    with pytest.raises(NotAllowed):
        imports.import_file(staff, "hazard_report.bpmn", CAMUNDA_MODELER.encode())
    with pytest.raises(NotAllowed):
        imports.list_imports(staff)
