"""The bureau's diagrams, decision table and forms: they parse with XSD validation, agree with
each other and with domain.md, and every branch of every flow runs to its end.

The walks use bare SpiffWorkflow (Camunda parser) with stand-ins for the engine's helpers and
connectors, so a failure here points at processes/ or forms/, not at the engine. The stand-ins
keep the engine's conventions: a `${…}` wrapper is stripped, timer expressions give ISO 8601
strings, message payloads land in the catch event's camunda:resultVariable, and a submission
carries what form-js would send.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import chinese_calendar
import pytest
from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.specs.defaults import EndEvent, EventBasedGateway
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.camunda.specs.event_definitions import MessageEventDefinition
from SpiffWorkflow.util.task import TaskState

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

# --- stand-ins for the engine's deadline helpers (same signatures and semantics) ---------------

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
OFFICE_END = time(17, 30)


def _parse(value):
    if isinstance(value, str):
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    return value


def _day(value) -> date:
    value = datetime.now(CHINA) if value is None else _parse(value)
    if isinstance(value, datetime):
        return (value.astimezone(CHINA) if value.tzinfo else value).date()
    return value


def _instant(value) -> datetime:
    value = _parse(value)
    if isinstance(value, datetime):
        return value.astimezone(CHINA) if value.tzinfo else value.replace(tzinfo=CHINA)
    return end_of_day(value)


def _is_workday(day: date) -> bool:
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:  # a year the package does not know yet
        return day.weekday() < 5


def _next_workday(day: date) -> date:
    while not _is_workday(day):
        day += timedelta(days=1)
    return day


def end_of_day(d) -> datetime:
    return datetime.combine(_day(d), OFFICE_END, CHINA)


def workdays(n, start=None) -> datetime:
    day, left = _day(start), n
    while left:
        day += timedelta(days=1)
        left -= _is_workday(day)
    return end_of_day(day if n else _next_workday(day))


def days(n, start=None) -> datetime:
    return end_of_day(_next_workday(_day(start) + timedelta(days=n)))


def _months_later(day: date, n: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 + n, 12)
    first_of_next = date(year + (month == 11), (month + 1) % 12 + 1, 1)
    return date(year, month + 1, min(day.day, (first_of_next - timedelta(days=1)).day))


def months(n, start=None) -> datetime:
    return end_of_day(_next_workday(_months_later(_day(start), n)))


def point_between(start, end, fraction) -> datetime:
    first = datetime.now(CHINA) if start is None else _instant(start)
    last = _instant(end)
    return first + (last - first) * fraction


def today() -> date:
    return datetime.now(CHINA).date()


# --- stand-in for the credit archive connectors -----------------------------------------------

CORRECTABLE = {"facts", "doc_no", "decided_at", "severity", "category", "subject_name"}
REPAIR_MONTHS = {"minor": 0, "general": 3, "serious": 12}


class Archive:
    """Records in memory with the archive's status rules; every side effect is logged."""

    def __init__(self):
        self.records: dict[int, dict] = {}
        self.synced: list[int] = []
        self.notices: list[tuple[str, str]] = []
        self.applicant_notices: list[tuple[str, str, str]] = []

    def add(self, status="published", severity="general", category="行政处罚", age_months=6, **extra) -> int:
        decided = _months_later(today(), -age_months)
        record = {
            "id": len(self.records) + 1,
            "status": status,
            "severity": severity,
            "category": category,
            "subject_name": "某化工有限公司",
            "subject_code": VALID_USCC,
            "decided_at": decided.isoformat(),
            "months_since_decided": age_months,
            "repairable_from": _months_later(decided, REPAIR_MONTHS[severity]).isoformat(),
            "doc_no": "魏应急罚〔2026〕1号",
            "facts": "未按规定开展隐患排查",
        }
        record.update(extra)
        self.records[record["id"]] = record
        return record["id"]

    def helpers(self) -> dict:
        return {
            "workdays": workdays,
            "days": days,
            "months": months,
            "end_of_day": end_of_day,
            "point_between": point_between,
            "credit_lookup": self.lookup,
            "credit_create": self.create,
            "credit_mark_objection": self.mark_objection,
            "credit_apply_outcome": self.apply_outcome,
            "credit_repair": self.repair,
            "platform_sync": lambda record_id: self.synced.append(int(record_id)),
            "notify": lambda recipient, message: self.notices.append((recipient, message)),
            "notify_applicant": lambda name, contact, message: self.applicant_notices.append(
                (name, contact, message)
            ),
            # the engine's sandbox offers these as builtins
            "datetime": datetime,
            "date": date,
            "timedelta": timedelta,
        }

    def lookup(self, record_id) -> dict:
        record = self.records[int(record_id)]
        keys = ("id", "status", "severity", "category", "subject_name", "subject_code", "decided_at")
        return {key: record[key] for key in keys} | {
            "months_since_decided": record["months_since_decided"],
            "repairable_from": record["repairable_from"],
        }

    def create(self, subject_type, subject_name, subject_code, category, severity, doc_no, decided_at, facts):
        assert subject_type in ("unit", "organ", "person")
        assert category in ("行政处罚", "司法判决", "政务处分", "纪律处分", "问责处理", "投诉核实")
        assert severity in REPAIR_MONTHS and subject_code and doc_no and facts
        assert date.fromisoformat(decided_at) <= today()
        record_id = len(self.records) + 1
        self.records[record_id] = {
            "id": record_id,
            "status": "published",
            "subject_type": subject_type,
            "subject_name": subject_name,
            "subject_code": subject_code,
            "category": category,
            "severity": severity,
            "doc_no": doc_no,
            "decided_at": decided_at,
            "facts": facts,
        }
        return record_id

    def _require(self, record_id, *statuses) -> dict:
        record = self.records[int(record_id)]
        assert record["status"] in statuses, f"record {record_id} is {record['status']}"
        return record

    def mark_objection(self, record_id, reason):
        assert reason
        self._require(record_id, "published", "corrected")["status"] = "under_objection"

    def apply_outcome(self, record_id, outcome, corrections=None, reason=""):
        record = self._require(record_id, "under_objection")
        if outcome == "correct":
            assert corrections and set(corrections) <= CORRECTABLE, corrections
            assert all(record[key] != value for key, value in corrections.items())
            record.update(corrections)
            record["corrections"] = corrections
        record["status"] = {"correct": "corrected", "revoke": "revoked", "maintain": "published"}[outcome]

    def repair(self, record_id, reason):
        assert reason
        record = self._require(record_id, "published", "corrected")
        assert record["repairable_from"] <= today().isoformat()
        record["status"] = "repaired"


# --- the bundle on disk --------------------------------------------------------------------------


def _unwrap(text: str) -> str:
    match = re.fullmatch(r"\s*\$\{(.*)\}\s*", text, re.DOTALL)
    return match.group(1).strip() if match else text.strip()


class StandInEngine(PythonScriptEngine):
    """Bare SpiffWorkflow's engine plus the engine's conventions: `${…}` stripped, timers as ISO."""

    def __init__(self, helpers: dict):
        super().__init__(environment=TaskDataEnvironment(helpers))

    def validate(self, expression):
        super().validate(_unwrap(expression))

    def evaluate(self, task, expression, external_context=None):
        value = super().evaluate(task, _unwrap(expression), external_context)
        return value.isoformat() if isinstance(value, datetime) else value


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


# --- form-js submissions -------------------------------------------------------------------------


def _data_components(form: dict):
    for component in form["components"]:
        if component["type"] == "dynamiclist":
            yield component["path"], component
        elif component.get("key"):
            yield component["key"], component


def _empty_value(component: dict):
    kind = component["type"]
    if kind == "dynamiclist":
        return []
    if kind == "checkbox":
        return component.get("defaultValue", False)
    return "" if kind in ("textfield", "textarea") else None


def _blank(value) -> bool:
    return value is None or value == "" or value == [] or value is False


def submission(form: dict, data: dict, fill: bool = True) -> dict:
    """What form-js sends for `data` (unconditional fields left empty are sent empty)."""
    components = dict(_data_components(form))
    unknown = set(data) - set(components)
    assert not unknown, f"{form['id']}: no such fields {unknown}"
    sent = dict(data)
    for key, component in components.items():
        if "conditional" in component:
            continue
        if fill:
            sent.setdefault(key, _empty_value(component))
        if component.get("validate", {}).get("required"):
            assert not _blank(sent.get(key)), f"{form['id']}: required field {key} left empty"
    return sent


# --- driving a flow ------------------------------------------------------------------------------


class Flow:
    """One instance on bare SpiffWorkflow, driven the way the engine drives it."""

    def __init__(self, parser, bundle: Bundle, process_id: str, data: dict, archive=None, fill=True):
        self.bundle, self.process_id = bundle, process_id
        self.archive = archive or Archive()
        spec = parser.get_spec(process_id)
        self.workflow = BpmnWorkflow(
            spec, parser.get_subprocess_specs(process_id), script_engine=StandInEngine(self.archive.helpers())
        )
        start_event = bundle.processes[process_id].find("bpmn:startEvent", NS).get("id")
        start_form = bundle.form_of(process_id, start_event)
        for task in self.workflow.get_tasks(state=TaskState.READY):
            task.data.update(submission(start_form, data, fill))
        self._step()

    def _step(self):
        self.workflow.do_engine_steps()
        self.workflow.refresh_timers()
        self.workflow.do_engine_steps()

    def _find(self, element_id: str, state: TaskState):
        tasks = [t for t in self.workflow.get_tasks(state=state) if t.task_spec.bpmn_id == element_id]
        assert len(tasks) == 1, f"{element_id} is not {state}; open user tasks: {self.open_tasks}"
        return tasks[0]

    @property
    def open_tasks(self) -> list[str]:
        tasks = self.workflow.get_tasks(state=TaskState.READY, manual=True)
        return sorted(t.task_spec.bpmn_id for t in tasks)

    def _waiting_tasks(self) -> dict[str, object]:
        """Waiting events by element id. SpiffWorkflow 3.2 makes an event-based gateway wait
        itself (one MultipleEventDefinition) while its catch events stay MAYBE."""
        waiting = {}
        for task in self.workflow.get_tasks(state=TaskState.WAITING):
            if isinstance(task.task_spec, EventBasedGateway):
                waiting.update({output.bpmn_id: task for output in task.task_spec.outputs})
            else:
                waiting[task.task_spec.bpmn_id] = task
        return waiting

    @property
    def waiting(self) -> list[str]:
        return sorted(self._waiting_tasks())

    @property
    def data(self) -> dict:
        if self.workflow.is_completed():
            return self.workflow.data or self.workflow.last_task.data
        merged = {}
        for task in self.workflow.get_tasks(state=TaskState.READY | TaskState.WAITING):
            merged.update(task.data)
        return merged

    @property
    def ended_at(self) -> list[str]:
        tasks = self.workflow.get_tasks(state=TaskState.COMPLETED)
        return sorted(
            t.task_spec.bpmn_id
            for t in tasks
            if isinstance(t.task_spec, EndEvent) and t.workflow is self.workflow
        )

    def task_info(self, element_id: str) -> tuple[list[str], datetime | None]:
        """Candidate groups and due date of an open user task, evaluated as the engine would."""
        task = self._find(element_id, TaskState.READY)
        environment = self.workflow.script_engine.environment
        groups = self.bundle.camunda(self.process_id, element_id, "candidateGroups")
        if "${" in groups:
            groups = environment.evaluate(_unwrap(groups), task.data)
        due = self.bundle.camunda(self.process_id, element_id, "dueDate")
        if due is not None:
            due = environment.evaluate(_unwrap(due), task.data)
            assert isinstance(due, datetime) and due.tzinfo is not None, f"{element_id}: due {due!r}"
        return [g.strip() for g in groups.split(",")], due

    def complete(self, element_id: str, **data) -> tuple[list[str], datetime | None]:
        groups, due = self.task_info(element_id)
        assert set(groups) <= GROUPS, groups
        task = self._find(element_id, TaskState.READY)
        task.data.update(submission(self.bundle.form_of(self.process_id, element_id), data))
        task.run()
        self._step()
        return groups, due

    def timer_due(self, element_id: str) -> datetime:
        """When a waiting timer is due, as its expression computed it."""
        task = self._waiting_tasks().get(element_id)
        assert task is not None, f"{element_id} is not waiting: {self.waiting}"
        self.workflow.refresh_timers()  # a timer computes its due time when first refreshed
        return datetime.fromisoformat(task.internal_data["event_value"])

    def fire(self, element_id: str):
        self.timer_due(element_id)
        self._waiting_tasks()[element_id].internal_data["event_value"] = "2000-01-01T00:00:00+08:00"
        self._step()

    def send(self, name: str, payload):
        definitions = []
        for task in self.workflow.get_tasks(state=TaskState.WAITING):
            definition = task.task_spec.event_definition
            if isinstance(definition, MultipleEventDefinition):
                definitions += definition.event_definitions
            else:
                definitions.append(definition)
        definitions = [d for d in definitions if isinstance(d, MessageEventDefinition) and d.name == name]
        assert definitions, f"nothing waits for message {name}"
        result_var = definitions[0].result_var or name
        self.workflow.send_event(BpmnEvent(definitions[0], {"payload": payload, "result_var": result_var}))
        self._step()


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


# --- flow 1: 投诉举报→整改 --------------------------------------------------------------------------

RECEIVED = (today() - timedelta(days=2)).isoformat()
REPORT = {
    "channel": "hotline_12350",
    "received_at": RECEIVED,
    "anonymous": False,
    "reporter_name": "王某",
    "reporter_phone": "13800138000",
    "reporter_id_number": "11010519491231002X",
    "reporter_address": "许昌市魏都区",
    "subject_name": "某化工有限公司",
    "subject_uscc": VALID_USCC,
    "category": "safety_violation",
    "content": "夜间违规动火作业",
}
DECISION = {
    "measures": "责令限期整改",
    "rectification_deadline": (today() + timedelta(days=20)).isoformat(),
    "decision_doc_no": "魏应急责改〔2026〕8号",
    "decision_date": today().isoformat(),
    "opinion": "同意",
}


def complaint(parser, bundle, **data) -> Flow:
    return Flow(parser, bundle, "complaint_rectification", REPORT | data)


def accepted(parser, bundle) -> Flow:
    flow = complaint(parser, bundle)
    flow.complete("acceptance_review", acceptance="accept", opinion="受理")
    return flow


def test_complaint_not_accepted_is_told_to_the_reporter(parser, bundle):
    flow = complaint(parser, bundle)
    groups, due = flow.complete(
        "acceptance_review", acceptance="reject", reject_reason="不属于本局职责", opinion="否"
    )
    assert groups == ["section_chiefs"] and due == days(15, RECEIVED)
    assert flow.open_tasks == ["reject_notice"]
    groups, due = flow.complete("reject_notice", notice_method="written", notice_date=today().isoformat())
    assert groups == ["office"] and due == days(15, RECEIVED)
    assert flow.workflow.is_completed() and flow.ended_at == ["end_rejected"]


def test_anonymous_complaint_can_be_transferred(parser, bundle):
    anonymous = {k: v for k, v in REPORT.items() if k not in CONFIDENTIAL} | {"anonymous": True}
    flow = Flow(parser, bundle, "complaint_rectification", anonymous)
    flow.complete("acceptance_review", acceptance="transfer", transfer_to="区住建局", opinion="转办")
    assert flow.ended_at == ["end_transferred"] and flow.data["transfer_to"] == "区住建局"
    assert "reporter_name" not in flow.data


def test_verification_is_extended_once_with_deputy_approval(parser, bundle):
    flow = accepted(parser, bundle)
    groups, first_due = flow.task_info("verification")
    assert groups == ["supervision"] and first_due == days(60)
    flow.complete("verification", request_extension=True, extension_reason="涉及多家单位")
    groups, due = flow.complete("extension_approval", extension_approved=True, opinion="同意延期")
    assert groups == ["deputies"] and due == first_due
    assert flow.task_info("verification")[1] == days(30, first_due)
    assert flow.data["extension_used"] is True and flow.data["request_extension"] is False
    # the form hides the extension box now; verifying goes straight on
    flow.complete("verification", verification="unfounded", findings="经查不属实")
    assert flow.open_tasks == ["reply_unfounded"]
    groups, due = flow.complete(
        "reply_unfounded",
        reply_method="phone",
        reply_date=today().isoformat(),
        reply_content="经核查举报不属实",
    )
    assert groups == ["office"] and due == days(10)
    assert flow.ended_at == ["end_unfounded"] and flow.archive.records == {}


def test_refused_extension_keeps_the_deadline_and_may_be_asked_again(parser, bundle):
    flow = accepted(parser, bundle)
    first_due = flow.task_info("verification")[1]
    flow.complete("verification", request_extension=True, extension_reason="涉及多家单位")
    flow.complete("extension_approval", extension_approved=False, opinion="请按期完成")
    assert flow.task_info("verification")[1] == first_due and flow.data["extension_used"] is False
    flow.complete("verification", request_extension=True, extension_reason="补充理由")
    assert flow.open_tasks == ["extension_approval"]


def founded(parser, bundle) -> Flow:
    flow = accepted(parser, bundle)
    flow.complete("verification", verification="founded", findings="现场查实违规动火")
    assert flow.open_tasks == ["decision", "reply"]
    return flow


def test_founded_complaint_records_credit_waits_and_closes_after_review(parser, bundle):
    flow = founded(parser, bundle)
    groups, due = flow.complete(
        "decision", **DECISION, credit_record=True, credit_severity="general", subject_uscc=VALID_USCC
    )
    assert groups == ["deputies"] and due is None
    [record] = flow.archive.records.values()
    assert (record["category"], record["status"], record["severity"]) == ("投诉核实", "published", "general")
    assert (record["subject_code"], record["doc_no"], record["facts"]) == (
        VALID_USCC,
        "魏应急责改〔2026〕8号",
        "现场查实违规动火",
    )
    assert flow.archive.synced == [record["id"]]
    assert flow.archive.notices[0][0] == "group:credit_liaison"
    assert "timer_rectification" in flow.waiting and flow.open_tasks == ["reply"]
    groups, due = flow.complete(
        "reply", reply_method="written", reply_date=today().isoformat(), reply_content="已责令整改"
    )
    assert due == days(10)
    assert flow.timer_due("timer_rectification") == end_of_day(DECISION["rectification_deadline"])
    flow.fire("timer_rectification")
    groups, due = flow.task_info("review")
    assert groups == ["supervision"] and due == workdays(5)
    flow.complete("review", review_passed=True, review_findings="已整改到位")
    assert flow.workflow.is_completed() and flow.ended_at == ["end"]


def test_third_failed_review_escalates_to_the_director(parser, bundle):
    flow = founded(parser, bundle)
    flow.complete("reply", reply_method="sms", reply_date=today().isoformat(), reply_content="已立案处理")
    flow.complete("decision", **DECISION)
    for attempt in (1, 2, 3):
        flow.fire("timer_rectification")
        flow.complete("review", review_passed=False, review_findings=f"第{attempt}次复查未整改到位")
        assert flow.data["review_failures"] == attempt
        if attempt < 3:
            assert flow.open_tasks == ["decision"]
            flow.complete("decision", **DECISION, credit_record=True, credit_severity="serious")
    assert len(flow.archive.records) == 1, "a second decision does not record the same failure twice"
    assert flow.open_tasks == ["escalation"]
    groups, _ = flow.complete("escalation", escalation_action="file_case", opinion="立案查处")
    assert groups == ["directors"] and flow.ended_at == ["end"]


def test_review_passed_at_the_second_attempt(parser, bundle):
    flow = founded(parser, bundle)
    flow.complete("decision", **DECISION)
    flow.fire("timer_rectification")
    flow.complete("review", review_passed=False, review_findings="未整改到位")
    flow.complete("decision", **DECISION)
    flow.fire("timer_rectification")
    flow.complete("review", review_passed=True, review_findings="已整改")
    assert not flow.workflow.is_completed(), "the reply to the reporter is still open"
    flow.complete("reply", reply_method="email", reply_date=today().isoformat(), reply_content="已整改")
    assert flow.ended_at == ["end"] and flow.data["review_failures"] == 1


# --- flow 2: 信用信息异议处理 ------------------------------------------------------------------------

OBJECTION = {
    "applicant_name": "某化工有限公司",
    "applicant_contact": "13900139000",
    "objection_reason": "处罚已被复议撤销",
}


def objection(parser, bundle, **record) -> Flow:
    archive = Archive()
    record_id = archive.add(**record)
    return Flow(parser, bundle, "credit_objection", OBJECTION | {"record_id": record_id}, archive)


def test_objection_marks_at_once_and_corrects_after_send_backs(parser, bundle):
    flow = objection(parser, bundle, severity="general")
    assert flow.archive.records[1]["status"] == "under_objection"
    deadline = workdays(7)
    groups, due = flow.task_info("verification")
    assert groups == ["supervision"] and due == workdays(3)
    assert flow.data["objection_deadline"] == deadline and flow.data["severity"] == "general"
    flow.complete("verification", proposal="correct", severity="minor", verification_reason="情节轻微")
    groups, due = flow.complete("legal_review", legal_opinion="disagree", opinion="事实不清")
    assert groups == ["legal"] and due == deadline
    assert flow.task_info("verification")[1] == deadline, "a second verification is due with the whole matter"
    flow.complete("verification", proposal="correct", severity="minor", verification_reason="已补充证据")
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    groups, due = flow.complete("approval", approved=False, opinion="再核")
    assert groups == ["deputies"] and due == deadline
    assert flow.open_tasks == ["verification"]
    flow.complete("verification", proposal="correct", severity="minor", verification_reason="复核无误")
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    flow.complete("approval", approved=True, opinion="同意更正")
    record = flow.archive.records[1]
    assert record["status"] == "corrected" and record["corrections"] == {"severity": "minor"}
    assert flow.archive.synced == [1]
    [(name, contact, message)] = flow.archive.applicant_notices
    assert (name, contact) == ("某化工有限公司", "13900139000") and "予以更正" in message
    assert flow.ended_at == ["end"]


@pytest.mark.parametrize("proposal, status", [("revoke", "revoked"), ("maintain", "published")])
def test_objection_revoked_or_maintained(parser, bundle, proposal, status):
    flow = objection(parser, bundle)
    flow.complete("verification", proposal=proposal, verification_reason="核查属实")
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    flow.complete("approval", approved=True, opinion="同意")
    assert flow.archive.records[1]["status"] == status and "corrections" not in flow.archive.records[1]
    assert flow.archive.synced == [1] and flow.ended_at == ["end"]


# --- flow 3: 信用修复 ------------------------------------------------------------------------------

APPLICATION = {
    "applicant_name": "某化工有限公司",
    "applicant_uscc": VALID_USCC,
    "applicant_contact": "13700137000",
    "duties_fulfilled": True,
    "performance_description": "罚款已缴清，隐患已整改",
    "commitment_signed": True,
    "attachments": ["att-1"],
}


def repair(parser, bundle, duties=True, fill=True, **record) -> Flow:
    archive = Archive()
    record_id = archive.add(**record)
    data = APPLICATION | {"record_id": record_id, "duties_fulfilled": duties}
    if duties is None:
        del data["duties_fulfilled"]
    return Flow(parser, bundle, "credit_repair", data, archive, fill)


@pytest.mark.parametrize(
    "record, duties, reason, wait",
    [
        ({"status": "revoked"}, True, "已撤销", 0),
        ({"status": "repaired"}, True, "已修复", 0),
        ({"status": "expired"}, True, "公示期已届满", 0),
        ({"status": "under_objection"}, True, "异议处理中", 0),
        ({"severity": "general", "age_months": 2}, True, "满3个月", 3),
        ({"severity": "serious", "age_months": 11}, True, "满1年", 12),
        (
            {"severity": "general", "age_months": 8, "repairable_from": "2099-01-01"},
            True,
            "最早可修复日期",
            12,
        ),
        ({"severity": "general", "age_months": 5}, False, "尚未履行", 0),
        ({"severity": "minor", "age_months": 0}, None, "尚未履行", 0),
    ],
)
def test_ineligible_application_is_refused_with_reason_and_date(parser, bundle, record, duties, reason, wait):
    flow = repair(parser, bundle, duties=duties, fill=duties is not None, **record)
    assert flow.ended_at == ["end_ineligible"]
    assert flow.data["eligible"] is False and flow.data["wait_months"] == wait
    [(name, contact, message)] = flow.archive.applicant_notices
    assert reason in message and (name, contact) == ("某化工有限公司", "13700137000")
    repairable_from = flow.archive.records[1]["repairable_from"]
    assert (repairable_from in message) == bool(wait)
    assert flow.archive.notices[0][0] == "group:credit_liaison" and flow.archive.synced == []


@pytest.mark.parametrize(
    "record",
    [
        {"severity": "minor", "age_months": 0},
        {"severity": "general", "age_months": 3},
        {"severity": "serious", "age_months": 12, "status": "corrected"},
    ],
)
def test_eligible_application_goes_to_materials_review(parser, bundle, record):
    flow = repair(parser, bundle, **record)
    assert flow.data["eligible"] is True and flow.open_tasks == ["materials_review"]
    assert flow.task_info("materials_review") == (["supervision"], None)


def test_supplemented_application_is_repaired(parser, bundle):
    flow = repair(parser, bundle, severity="general", age_months=6)
    flow.complete("materials_review", materials="supplement", supplement_request="缴款凭证")
    [(_, _, message)] = flow.archive.applicant_notices
    assert "缴款凭证" in message and flow.data["supplement_deadline"] == workdays(5)
    assert {"materials_supplemented", "timer_supplement"} <= set(flow.waiting)
    flow.send("materials_supplemented", {"attachments": ["att-2"]})
    assert flow.open_tasks == ["materials_review"] and flow.data["attachments"] == ["att-1", "att-2"]
    flow.complete("materials_review", materials="complete")
    groups, due = flow.complete("chief_review", approved=True, opinion="同意")
    assert groups == ["section_chiefs"] and due == workdays(3)
    assert flow.archive.records[1]["status"] == "repaired" and flow.archive.synced == [1]
    assert "审核通过" in flow.archive.applicant_notices[-1][2]
    assert flow.ended_at == ["end"]


def test_unanswered_supplement_request_withdraws_the_application(parser, bundle):
    flow = repair(parser, bundle)
    flow.complete("materials_review", materials="supplement", supplement_request="信用承诺书原件")
    assert flow.timer_due("timer_supplement") == workdays(5)
    flow.fire("timer_supplement")
    assert flow.ended_at == ["end_withdrawn"] and flow.archive.records[1]["status"] == "published"
    with pytest.raises(AssertionError, match="nothing waits"):
        flow.send("materials_supplemented", ["att-9"])


def test_rejected_materials_end_with_written_reasons(parser, bundle):
    flow = repair(parser, bundle)
    flow.complete("materials_review", materials="reject", refusal_reason="材料系伪造")
    assert flow.ended_at == ["end_rejected"]
    assert "材料系伪造" in flow.archive.applicant_notices[-1][2] and flow.archive.synced == []


def test_serious_record_needs_the_director(parser, bundle):
    flow = repair(parser, bundle, severity="serious", age_months=13)
    flow.complete("materials_review", materials="complete")
    decision_deadline = flow.data["decision_deadline"]
    flow.complete("chief_review", approved=True, opinion="同意")
    groups, due = flow.complete("director_approval", approved=True, opinion="批准")
    assert groups == ["directors"] and due == decision_deadline
    assert flow.archive.records[1]["status"] == "repaired" and flow.ended_at == ["end"]


@pytest.mark.parametrize("refused_by", ["chief_review", "director_approval"])
def test_refused_repair_gives_written_reasons(parser, bundle, refused_by):
    flow = repair(parser, bundle, severity="serious", age_months=13)
    flow.complete("materials_review", materials="complete")
    if refused_by == "director_approval":
        flow.complete("chief_review", approved=True, opinion="同意")
    flow.complete(refused_by, approved=False, refusal_reason="仍有未履行的义务", opinion="不同意")
    assert flow.archive.records[1]["status"] == "published" and flow.archive.synced == []
    assert "仍有未履行的义务" in flow.archive.applicant_notices[-1][2] and flow.ended_at == ["end"]


# --- flow 4: 司法建议/检察建议回复 -------------------------------------------------------------------

SUGGESTION = {
    "source_type": "public_interest",
    "doc_no": "魏检行公建〔2026〕3号",
    "issuing_organ": "魏都区人民检察院",
    "received_at": (today() - timedelta(days=1)).isoformat(),
    "reply_deadline": None,
    "urgent": True,
    "suggestions": [{"problem": "危化品仓库未落实双人双锁", "suggestion": "开展专项检查"}],
}
MEASURES = [{"measure": "专项检查", "owner": "张三", "due_date": (today() + timedelta(days=30)).isoformat()}]


def suggestion(parser, bundle, fill=True, **data) -> Flow:
    return Flow(parser, bundle, "judicial_suggestion", SUGGESTION | data, fill=fill)


def instructed(parser, bundle, **data) -> Flow:
    flow = suggestion(parser, bundle, **data)
    groups, due = flow.complete("instruction", instructions="请监管股牵头办理", lead_group="supervision")
    assert groups == ["directors"] and due == min(workdays(2), end_of_day(flow.data["reply_deadline"]))
    return flow


def draft(flow: Flow) -> None:
    groups, due = flow.complete("draft", measures=MEASURES, reply_draft="关于……的回复")
    assert groups == ["supervision"] and due == end_of_day(flow.data["reply_deadline"])


@pytest.mark.parametrize(
    "data, deadline",
    [
        ({}, days(15, SUGGESTION["received_at"])),
        ({"urgent": False}, months(2, SUGGESTION["received_at"])),
        ({"source_type": "court", "reply_deadline": "2027-03-31"}, end_of_day("2027-03-31")),
    ],
)
def test_reply_deadline_comes_from_the_document_or_the_source_type(parser, bundle, data, deadline):
    flow = suggestion(parser, bundle, **data)
    assert end_of_day(flow.data["reply_deadline"]) == deadline
    assert flow.open_tasks == ["instruction"]


def test_reply_deadline_defaults_when_optional_fields_are_not_sent(parser, bundle):
    data = {k: v for k, v in SUGGESTION.items() if k not in ("reply_deadline", "urgent")}
    flow = Flow(parser, bundle, "judicial_suggestion", data | {"source_type": "procuratorate"}, fill=False)
    assert end_of_day(flow.data["reply_deadline"]) == months(2, SUGGESTION["received_at"])


def test_judicial_suggestion_with_send_backs_and_tracking(parser, bundle):
    flow = instructed(parser, bundle)
    draft(flow)
    groups, due = flow.complete("legal_review", legal_opinion="disagree", opinion="措施不具体")
    assert groups == ["legal"] and due == min(workdays(5), end_of_day(flow.data["reply_deadline"]))
    draft(flow)
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    flow.complete("sign", signed=False, opinion="补充时限")
    draft(flow)
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    groups, _ = flow.complete("sign", signed=True, opinion="同意签发")
    assert groups == ["directors"]
    groups, _ = flow.complete(
        "written_reply", sent_date=today().isoformat(), reply_doc_no="魏应急函〔2026〕5号"
    )
    assert groups == ["office"]
    assert flow.waiting == [], "urging timers stop once the reply is sent"
    groups, _ = flow.complete("tracking", measures_done=False, progress="正在整改")
    assert groups == ["supervision"] and flow.waiting == ["timer_remind"]
    assert flow.timer_due("timer_remind") == workdays(10)
    flow.fire("timer_remind")
    assert flow.archive.notices == [("group:supervision", flow.archive.notices[0][1])]
    flow.complete("tracking", measures_done=True, progress="已全部落实")
    groups, _ = flow.complete("archive", archive_no="2026-SF-001", archive_date=today().isoformat())
    assert groups == ["office"] and flow.ended_at == ["end"]


def test_urging_and_overdue_timers_do_not_interrupt_the_work(parser, bundle):
    flow = instructed(parser, bundle)
    assert {"overdue_timer", "urge_timer"} <= set(flow.waiting)
    expected_urge = point_between(SUGGESTION["received_at"], flow.data["reply_deadline"], 2 / 3)
    assert flow.timer_due("urge_timer") == expected_urge
    assert flow.timer_due("overdue_timer") == end_of_day(flow.data["reply_deadline"])
    flow.fire("urge_timer")
    recipient, message = flow.archive.notices[-1]
    assert recipient == "group:directors" and "催办" in message
    assert flow.open_tasks == ["draft"]
    flow.fire("overdue_timer")
    assert flow.archive.notices[-1][0] == "group:directors" and "逾期" in flow.archive.notices[-1][1]
    draft(flow)
    flow.complete("legal_review", legal_opinion="agree", opinion="同意")
    flow.complete("sign", signed=True, opinion="签发")
    flow.complete("written_reply", sent_date=today().isoformat(), reply_doc_no="魏应急函〔2026〕6号")
    flow.complete("tracking", measures_done=True, progress="已落实")
    flow.complete("archive", archive_no="2026-SF-002", archive_date=today().isoformat())
    assert flow.ended_at == ["end", "end_overdue", "end_urged"]
