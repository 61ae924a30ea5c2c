"""The bureau's diagrams, decision table and forms: they parse with XSD validation and agree with
each other and with domain.md. The flows themselves are walked through the real engine and API in
the other tests of this folder."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.camunda.parser import CamundaParser

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ROOT / "processes"
FORMS = ROOT / "forms"

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA = "http://camunda.org/schema/1.0/bpmn"
MODELER = "http://camunda.org/schema/modeler/1.0"
NS = {"bpmn": BPMN, "camunda": CAMUNDA}

FLOWS = ("complaint_rectification", "credit_objection", "credit_repair", "judicial_suggestion")
PROCESS_NAMES = {
    "complaint_rectification": "投诉举报→整改",
    "credit_objection": "信用信息异议处理",
    "credit_repair": "信用修复",
    "judicial_suggestion": "司法建议/检察建议回复",
    "notify_and_sync": "通知与平台同步",
}
GROUPS = {
    "office", "supervision", "section_chiefs", "legal", "credit_liaison",
    "deputies", "directors", "analysts", "managers", "admins",
}  # fmt: skip
FLOW_NODES = {
    "startEvent", "endEvent", "userTask", "scriptTask", "businessRuleTask", "callActivity",
    "exclusiveGateway", "parallelGateway", "eventBasedGateway", "intermediateCatchEvent",
    "boundaryEvent", "subProcess",
}  # fmt: skip
FORM_TYPES = {
    "textfield", "textarea", "number", "select", "radio", "checkbox", "datetime",
    "dynamiclist", "filepicker", "text",
}  # fmt: skip
CONFIDENTIAL = {"reporter_name", "reporter_phone", "reporter_id_number", "reporter_address"}
VALID_USCC = "91350100M000100Y43"
CHINESE = re.compile(r"[\u4e00-\u9fff]")

# --- the bundle on disk --------------------------------------------------------------------------


def _unwrap(text: str) -> str:
    match = re.fullmatch(r"\s*\$\{(.*)\}\s*", text, re.DOTALL)
    return match.group(1).strip() if match else text.strip()


def _bpmn_files() -> list[Path]:
    return sorted(PROCESSES.glob("*.bpmn"))


def _trees() -> dict[Path, etree._ElementTree]:
    return {path: etree.parse(str(path)) for path in _bpmn_files()}


def _forms() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(FORMS.glob("*.form"))}


def _local(node) -> str:
    return etree.QName(node).localname


class Bundle:
    """Element attributes per process (including nested subprocesses) and the forms by id."""

    def __init__(self):
        self.elements: dict[str, dict[str, etree._Element]] = {}
        self.processes: dict[str, etree._Element] = {}
        for tree in _trees().values():
            for process in tree.getroot().iterfind("bpmn:process", NS):
                self.processes[process.get("id")] = process
                self.elements[process.get("id")] = {
                    node.get("id"): node
                    for node in process.iter()
                    if isinstance(node.tag, str) and node.get("id")
                }
        self.forms = _forms()

    def camunda(self, process_id: str, element_id: str, attribute: str) -> str | None:
        return self.elements[process_id][element_id].get(f"{{{CAMUNDA}}}{attribute}")

    def form_of(self, process_id: str, element_id: str) -> dict:
        return self.forms[self.camunda(process_id, element_id, "formRef")]


@pytest.fixture(scope="module")
def parser():
    parser = CamundaParser(validator=BpmnValidator())
    parser.add_bpmn_files([str(p) for p in _bpmn_files()])
    parser.add_dmn_files([str(p) for p in sorted(PROCESSES.glob("*.dmn"))])
    return parser


@pytest.fixture(scope="module")
def bundle():
    return Bundle()


# --- static checks -------------------------------------------------------------------------------


def test_the_bundle_holds_exactly_the_agreed_files():
    assert {p.stem for p in _bpmn_files()} == set(PROCESS_NAMES)
    assert [p.name for p in PROCESSES.glob("*.dmn")] == ["repair_eligibility.dmn"]


@pytest.mark.parametrize("process_id", sorted(PROCESS_NAMES))
def test_each_process_parses_with_xsd_validation(parser, process_id):
    spec = parser.get_spec(process_id)
    assert spec.name == process_id
    subprocesses = parser.get_subprocess_specs(process_id)
    if process_id in FLOWS[:3]:
        assert "notify_and_sync" in subprocesses


def test_xsd_validation_is_really_on(tmp_path):
    broken = (PROCESSES / "notify_and_sync.bpmn").read_text(encoding="utf-8")
    broken = broken.replace("<bpmn:incoming>", "<bpmn:arrival>").replace(
        "</bpmn:incoming>", "</bpmn:arrival>"
    )
    path = tmp_path / "broken.bpmn"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(Exception, match="arrival"):
        CamundaParser(validator=BpmnValidator()).add_bpmn_file(str(path))


@pytest.mark.parametrize("path", _bpmn_files(), ids=lambda p: p.name)
def test_definitions_use_camunda_7_conventions(path):
    root = etree.parse(str(path)).getroot()
    assert root.nsmap["camunda"] == CAMUNDA and root.nsmap["modeler"] == MODELER
    assert root.get("exporter") == "Camunda Modeler"
    assert root.get(f"{{{MODELER}}}executionPlatform") == "Camunda Platform"
    assert root.get(f"{{{MODELER}}}executionPlatformVersion") == "7.21.0"
    processes = root.findall("bpmn:process", NS)
    assert [p.get("id") for p in processes] == [path.stem]
    process = processes[0]
    assert process.get("isExecutable") == "true"
    assert process.get("name") == PROCESS_NAMES[path.stem]
    participants = root.findall("bpmn:collaboration/bpmn:participant", NS)
    assert [(p.get("processRef"), p.get("name")) for p in participants] == [(path.stem, process.get("name"))]
    shapes = {s.get("bpmnElement") for s in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape")}
    edges = {e.get("bpmnElement") for e in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge")}
    for node in process.iter():
        if not isinstance(node.tag, str):
            continue
        if _local(node) in FLOW_NODES | {"lane"}:
            assert node.get("id") in shapes, f"{node.get('id')} has no diagram shape"
        if _local(node) == "sequenceFlow":
            assert node.get("id") in edges, f"{node.get('id')} has no diagram edge"


@pytest.mark.parametrize("path", _bpmn_files(), ids=lambda p: p.name)
def test_every_element_has_a_chinese_name(path):
    root = etree.parse(str(path)).getroot()
    named = [
        n for n in root.iter() if isinstance(n.tag, str) and _local(n) in FLOW_NODES | {"lane", "participant"}
    ]
    assert named
    for node in named:
        assert CHINESE.search(node.get("name") or ""), f"{node.get('id')} has no Chinese name"
    outgoing: dict[str, list] = {}
    for flow in root.iter(f"{{{BPMN}}}sequenceFlow"):
        outgoing.setdefault(flow.get("sourceRef"), []).append(flow)
    for node in root.iter(f"{{{BPMN}}}exclusiveGateway", f"{{{BPMN}}}eventBasedGateway"):
        flows = outgoing.get(node.get("id"), [])
        if len(flows) > 1:
            for flow in flows:
                assert CHINESE.search(flow.get("name") or ""), f"{flow.get('id')} leaves a gateway unnamed"
                if _local(node) == "exclusiveGateway" and node.get("default") != flow.get("id"):
                    assert flow.find("bpmn:conditionExpression", NS) is not None, flow.get("id")


@pytest.mark.parametrize("path", _bpmn_files(), ids=lambda p: p.name)
def test_user_tasks_and_start_events_name_groups_and_forms(path, bundle):
    root = etree.parse(str(path)).getroot()
    for task in root.iter(f"{{{BPMN}}}userTask"):
        groups = task.get(f"{{{CAMUNDA}}}candidateGroups")
        assert groups, f"{task.get('id')} has no candidate group"
        if "${" not in groups:
            assert set(groups.split(",")) <= GROUPS, groups
        assert task.get(f"{{{CAMUNDA}}}formRef") in bundle.forms, task.get("id")
        assert task.get(f"{{{CAMUNDA}}}formRefBinding") == "latest"
    process = root.find("bpmn:process", NS)
    for start in process.findall("bpmn:startEvent", NS):
        if path.stem in FLOWS:
            assert start.get(f"{{{CAMUNDA}}}formRef") in bundle.forms, start.get("id")
            assert start.get(f"{{{CAMUNDA}}}formRefBinding") == "latest"
        else:  # only ever called: nobody starts it, and the task list does not offer it
            assert process.get(f"{{{CAMUNDA}}}isStartableInTasklist") == "false"


def test_flows_one_to_three_call_the_one_shared_call_activity():
    for path in _bpmn_files():
        calls = etree.parse(str(path)).getroot().iter(f"{{{BPMN}}}callActivity")
        called = {c.get("calledElement") for c in calls}
        assert called == ({"notify_and_sync"} if path.stem in FLOWS[:3] else set()), path.name


def _expressions(root):
    """(element id, kind, text) of every condition, timer, script and Camunda expression."""
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        owner = node.getparent().get("id") if node.getparent() is not None else None
        if _local(node) == "conditionExpression":
            yield owner, "eval", node.text
        elif _local(node) in ("timeDate", "timeDuration", "timeCycle"):
            yield node.getparent().getparent().get("id"), "eval", node.text
        elif _local(node) == "script":
            yield owner, "exec", node.text
        for attribute in ("dueDate", "candidateGroups", "assignee"):
            value = node.get(f"{{{CAMUNDA}}}{attribute}")
            if value and "${" in value:
                yield node.get("id"), "eval", value


@pytest.mark.parametrize("path", _bpmn_files(), ids=lambda p: p.name)
def test_expressions_and_scripts_are_python(path):
    found = list(_expressions(etree.parse(str(path)).getroot()))
    assert found
    for element_id, mode, text in found:
        assert text and text.strip(), element_id
        ast.parse(_unwrap(text) if mode == "eval" else text, mode=mode)


@pytest.mark.parametrize("path", _bpmn_files(), ids=lambda p: p.name)
def test_scripts_and_expressions_pass_the_engine_sandbox(path):
    scripting = pytest.importorskip("engine.scripting")
    for element_id, mode, text in _expressions(etree.parse(str(path)).getroot()):
        check = scripting.check_script if mode == "exec" else scripting.check_expression
        try:
            check(text)
        except scripting.ScriptError as err:
            pytest.fail(f"{path.name} {element_id}: {err.message}")


def test_the_engine_lint_accepts_the_whole_bundle(session):
    definitions = pytest.importorskip("engine.definitions")
    files = [(p.name, p.read_bytes()) for p in sorted(PROCESSES.iterdir()) + sorted(FORMS.iterdir())]
    candidates = definitions.check_bundle(session, files)
    assert {c.key for c in candidates} == set(PROCESS_NAMES)
    starts = {c.key: c.start_form for c in candidates}
    assert starts["complaint_rectification"] == "complaint_register" and starts["notify_and_sync"] is None


def test_forms_resolve_one_to_one_and_ids_are_unique(bundle):
    refs = set()
    for tree in _trees().values():
        refs |= {n.get(f"{{{CAMUNDA}}}formRef") for n in tree.getroot().iter() if isinstance(n.tag, str)}
    refs.discard(None)
    assert refs == set(bundle.forms), "every form is used and every formRef has a form"
    ids = [form["id"] for form in bundle.forms.values()]
    assert len(ids) == len(set(ids))
    assert all(form["id"] == stem for stem, form in bundle.forms.items())


def _all_components(components):
    for component in components:
        yield component
        yield from _all_components(component.get("components", []))


@pytest.mark.parametrize("form_id", sorted(_forms()))
def test_forms_follow_the_conventions(form_id, bundle):
    form = bundle.forms[form_id]
    assert form["type"] == "default" and form["schemaVersion"] == 16
    ids = [c["id"] for c in _all_components(form["components"])]
    assert len(ids) == len(set(ids))
    for component in _all_components(form["components"]):
        assert component["type"] in FORM_TYPES, component["type"]
        if component["type"] != "text":
            assert CHINESE.search(component.get("label", "")), component["id"]
        for option in component.get("values", []):
            assert CHINESE.search(option["label"]) and isinstance(option["value"], str)
        if "uscc" in component.get("key", "") or component.get("key", "").endswith("id_number"):
            assert component["properties"]["format"] in ("uscc", "id_card")
        if component.get("key", "").endswith(("_phone", "_contact")):
            assert component["properties"]["format"] == "phone"
        if component.get("key") in CONFIDENTIAL:
            assert component["properties"]["confidential"] == "true"
    user_task_forms = {
        node.get(f"{{{CAMUNDA}}}formRef")
        for tree in _trees().values()
        for node in tree.getroot().iter(f"{{{BPMN}}}userTask")
    }
    opinion = [c for c in form["components"] if c.get("key") == "opinion"]
    if form_id in user_task_forms:
        assert opinion and opinion[0]["type"] == "textarea" and opinion[0]["label"] == "审批意见"
    else:
        assert any(c["type"] == "filepicker" and c["key"] == "attachments" for c in form["components"])


def test_special_form_parts(bundle):
    register = {c.get("key"): c for c in bundle.forms["complaint_register"]["components"]}
    assert set(register) >= CONFIDENTIAL
    suggestions = next(
        c for c in bundle.forms["judicial_register"]["components"] if c["type"] == "dynamiclist"
    )
    assert suggestions["path"] == "suggestions"
    assert [(c["key"], c["type"]) for c in suggestions["components"]] == [
        ("problem", "textfield"),
        ("suggestion", "textfield"),
    ]
    measures = next(c for c in bundle.forms["judicial_draft"]["components"] if c["type"] == "dynamiclist")
    assert measures["path"] == "measures"
    assert [c["key"] for c in measures["components"]] == ["measure", "owner", "due_date"]
