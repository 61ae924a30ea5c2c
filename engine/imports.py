"""Importing .bpmn/.dmn/.form files made in other tools (Camunda Modeler, bpmn.io, Signavio,
Bizagi …), executable or descriptive: stored for viewing, with a report of what keeps each
element from running here. An import never deploys anything by itself."""

from __future__ import annotations

import hashlib
import json
import logging
from copy import deepcopy
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from lxml import etree
from sqlalchemy import JSON, Boolean, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from . import definitions, studio
from .db import Base, utcnow
from .errors import DefinitionError, NotFound, TooLarge, ValidationFailed
from .models import Group
from .runtime import Context

log = logging.getLogger(__name__)

BPMN_NS = definitions.BPMN_NS
CAMUNDA_NS = definitions.CAMUNDA_NS
KINDS = {".bpmn": "bpmn", ".xml": "bpmn", ".dmn": "dmn", ".form": "form", ".json": "form"}

# Flow elements that are not nodes SpiffWorkflow parses, but that a diagram may hold.
_NON_NODES = {
    "sequenceFlow",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "association",
    "textAnnotation",
    "group",
    "category",
}
_ACTIVITIES = {
    "task",
    "userTask",
    "manualTask",
    "scriptTask",
    "serviceTask",
    "sendTask",
    "receiveTask",
    "businessRuleTask",
    "subProcess",
    "transaction",
    "adHocSubProcess",
    "callActivity",
}
_UNSUPPORTED_DEFINITIONS = {
    "conditionalEventDefinition": "条件事件不受本平台支持：没有机制在数据变化时重新评估它的条件",
    "compensateEventDefinition": "补偿事件不受本平台支持",
}
_UNSUPPORTED_ELEMENTS = {
    "complexGateway": "复杂网关不受本平台支持；请改用排他、包容或并行网关",
}
_JAVA_IMPLEMENTATIONS = ("class", "delegateExpression", "expression", "type")


def _supported_tags() -> set[str]:
    parser = definitions.ChengxinParser
    tags = set(parser.PARSER_CLASSES) | set(parser.OVERRIDE_PARSER_CLASSES)
    return {etree.QName(tag).localname for tag in tags}


class ImportedModel(Base):
    """A file imported for viewing and documentation, with its report."""

    __tablename__ = "studio_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(8))  # bpmn | dmn | form
    content: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    exporter: Mapped[str] = mapped_column(String(256), default="")
    executable: Mapped[bool] = mapped_column(Boolean, default=False)
    deployable: Mapped[bool] = mapped_column(Boolean, default=False)
    process_ids: Mapped[list] = mapped_column(JSON, default=list)
    report: Mapped[list] = mapped_column(JSON, default=list)
    has_diagram: Mapped[bool] = mapped_column(Boolean, default=True)
    imported_by: Mapped[str | None] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    draft_revision: Mapped[int | None] = mapped_column(Integer)  # set once opened as a draft


@dataclass
class ReportItem:
    """One finding about one element: `error` keeps the model from running here, `warning`
    runs but probably not as meant, `info` is for the reader."""

    severity: str
    message: str
    element_id: str | None = None
    element_type: str | None = None
    name: str = ""
    line: int | None = None


@dataclass
class ImportReport:
    kind: str
    items: list[ReportItem]
    executable: bool
    process_ids: list[str]
    exporter: str = ""
    has_diagram: bool = True

    @property
    def errors(self) -> list[ReportItem]:
        return [i for i in self.items if i.severity == "error"]

    @property
    def deployable(self) -> bool:
        return self.executable and not self.errors


# --- BPMN ------------------------------------------------------------------------------------


def _local(node) -> str:
    return etree.QName(node).localname


def _bpmn(node, local: str) -> list:
    return node.findall(f"{{{BPMN_NS}}}{local}")


def _item(severity: str, node, message: str) -> ReportItem:
    return ReportItem(
        severity=severity,
        message=message,
        element_id=node.get("id"),
        element_type=_local(node),
        name=node.get("name") or "",
        line=node.sourceline,
    )


def _label(node) -> str:
    name = node.get("name")
    return f"「{name}」" if name else f" {node.get('id')} "


class _BpmnChecks:
    """Structural checks of one BPMN document, per element."""

    def __init__(self, session, root):
        self.root = root
        self.items: list[ReportItem] = []
        self.supported = _supported_tags()
        groups = list(session.scalars(select(Group)))
        self.groups = {g.name for g in groups} | {g.title for g in groups if g.title}
        self.lanes: dict[str, str] = {}
        self.flows: list = []
        self.messages = {m.get("id"): m for m in root.iter(f"{{{BPMN_NS}}}message")}
        self.has_data_stores = bool(root.findall(f".//{{{BPMN_NS}}}dataStore"))

    def add(self, severity, node, message):
        self.items.append(_item(severity, node, message))

    def run(self) -> list[ReportItem]:
        processes = _bpmn(self.root, "process")
        if not processes:
            self.items.append(ReportItem("error", "文件中没有流程（bpmn:process），没有可查看或运行的内容"))
        for message in self.messages.values():
            if not (message.get("name") or "").strip():
                self.add("error", message, "消息没有名称：消息事件按名称投递，无名称的消息无法接收")
        for process in processes:
            self.process(process)
        return self.items

    def process(self, process):
        if process.get("isExecutable", "true") != "true":
            self.add(
                "info",
                process,
                '描述性模型（isExecutable="false"）：导入后仅供查看和文档；要运行它，请在编辑器中勾选“可执行”并解决下列问题',
            )
        if not _bpmn(process, "startEvent"):
            self.add("error", process, "流程缺少开始事件，无法启动")
        self.lanes = {
            (ref.text or "").strip(): lane.get("name") or ""
            for lane in process.iter(f"{{{BPMN_NS}}}lane")
            for ref in _bpmn(lane, "flowNodeRef")
        }
        self.flows = [n for n in process.iter(f"{{{BPMN_NS}}}sequenceFlow")]
        for node in studio.flow_elements(process):
            self.element(node)

    def outgoing(self, node) -> list:
        return [f for f in self.flows if f.get("sourceRef") == node.get("id")]

    def element(self, node):
        local = _local(node)
        if local in _UNSUPPORTED_ELEMENTS:
            self.add("error", node, _UNSUPPORTED_ELEMENTS[local])
            return
        if local not in self.supported and local not in _NON_NODES:
            self.add("error", node, f"本平台不支持的元素类型 {local}，无法运行")
            return
        for definition in node:
            if isinstance(definition.tag, str) and _local(definition) in _UNSUPPORTED_DEFINITIONS:
                self.add("error", node, _UNSUPPORTED_DEFINITIONS[_local(definition)])
        if node.get("isForCompensation") == "true":
            self.add("error", node, "补偿活动不受本平台支持")
        check = getattr(self, f"check_{local}", None)
        if check is not None:
            check(node)
        if local in _ACTIVITIES or local.endswith("Event"):
            self.implicit_split(node)
        self.event_definitions(node)

    # -- per element type --

    def check_userTask(self, node):
        form = node.get(f"{{{CAMUNDA_NS}}}formRef") or node.get(f"{{{CAMUNDA_NS}}}formKey")
        if not form:
            self.add("error", node, "用户任务没有表单（camunda:formRef），办理人无处填写")
        elif ":" in form or "/" in form:
            self.add(
                "error",
                node,
                f"表单引用 {form} 是 Camunda 的内嵌/外部表单，本平台只认表单 id（camunda:formRef）",
            )
        assigned = any(
            node.get(f"{{{CAMUNDA_NS}}}{a}") for a in ("candidateGroups", "candidateUsers", "assignee")
        )
        if not assigned and self.lanes.get(node.get("id")) not in self.groups:
            self.add(
                "error", node, "用户任务没有候选组、候选人或处理人，所在泳道也不对应任何用户组，没有人能办理"
            )

    def check_manualTask(self, node):
        self.add("error", node, "人工任务在本平台没有办理入口：请改为带表单和候选组的用户任务")

    def check_task(self, node):
        self.add("warning", node, "未指定类型的任务在运行时会被直接跳过；若需要人办理，请改为用户任务")

    def _implementation(self, node) -> str | None:
        for attr in _JAVA_IMPLEMENTATIONS:
            if node.get(f"{{{CAMUNDA_NS}}}{attr}"):
                return f"camunda:{attr}"
        if node.find(f".//{{{CAMUNDA_NS}}}connector") is not None:
            return "camunda:connector"
        if node.get("implementation") and node.get("implementation") != "##WebService":
            return node.get("implementation")
        return None

    def check_serviceTask(self, node):
        implementation = self._implementation(node)
        if implementation is None:
            self.add(
                "error",
                node,
                "服务任务没有实现（没有连接器或脚本），运行到这里会一直停住；请改为脚本任务调用连接器函数",
            )
        else:
            self.add(
                "error",
                node,
                f"服务任务的实现 {implementation} 依赖 Camunda 引擎（Java/外部任务），本平台无法执行；请改为脚本任务调用连接器函数",
            )

    def check_sendTask(self, node):
        if not node.get("messageRef"):
            self.check_serviceTask(node)

    def check_businessRuleTask(self, node):
        if not node.get(f"{{{CAMUNDA_NS}}}decisionRef"):
            self.add("error", node, "业务规则任务没有指定决策表（camunda:decisionRef）")

    def check_scriptTask(self, node):
        language = (node.get("scriptFormat") or "python").lower()
        if language not in ("python", "py", "python3"):
            self.add("error", node, f"脚本语言 {language} 不受支持，本平台只运行 Python 脚本")
        script = node.find(f"{{{BPMN_NS}}}script")
        if script is None or not (script.text or "").strip():
            self.add("warning", node, "脚本任务没有脚本内容，运行时什么也不做")

    def check_callActivity(self, node):
        if not node.get("calledElement"):
            self.add("error", node, "调用活动没有指定被调用的流程（calledElement）")

    def _sub_process(self, node):
        inner = [
            c for c in node if isinstance(c.tag, str) and c.get("id") and _local(c) not in ("documentation",)
        ]
        inner = [c for c in inner if etree.QName(c).namespace == BPMN_NS and _local(c) not in _NON_NODES]
        if not inner:
            self.add(
                "error",
                node,
                "折叠的空子流程：里面没有任何环节，无法运行；请展开并画出其内容，或改为调用活动",
            )
        elif not _bpmn(node, "startEvent"):
            self.add("error", node, "子流程缺少开始事件")

    check_subProcess = check_transaction = check_adHocSubProcess = _sub_process

    def _conditional_gateway(self, node):
        outgoing = self.outgoing(node)
        if len(outgoing) < 2:
            return
        default = node.get("default")
        for flow in outgoing:
            if flow.get("id") != default and not _condition(flow):
                self.add(
                    "error",
                    flow,
                    f"网关{_label(node)}的分支{_label(flow)}没有条件，也不是默认分支，运行时无法判断走向",
                )

    check_exclusiveGateway = check_inclusiveGateway = _conditional_gateway

    def check_dataStoreReference(self, node):
        if self.has_data_stores:
            self.add(
                "error",
                node,
                "数据存储没有实现：引用数据存储的模型在本平台无法解析；请删除数据存储，改由脚本调用连接器读写",
            )
        else:
            self.add("warning", node, "数据存储没有实现：本平台不会读写它，仅作说明")

    def implicit_split(self, node):
        outgoing = self.outgoing(node)
        if len(outgoing) < 2:
            return
        if _local(node) == "startEvent":
            self.add(
                "warning",
                node,
                f"隐式并行分支：开始事件有 {len(outgoing)} 条出线，会同时走所有分支；建议改用并行网关",
            )
        elif any(_condition(f) for f in outgoing):
            self.add(
                "error",
                node,
                "活动上直接带条件的分支不受本平台支持，请改用排他网关或包容网关并在其出线上写条件",
            )
        else:
            self.add(
                "error",
                node,
                f"隐式并行分支：{_label(node).strip()}有 {len(outgoing)} 条无条件的出线，本平台不支持活动或中间事件直接分叉；"
                "要同时走请加并行网关，要选其一请加排他网关并写条件",
            )

    def event_definitions(self, node):
        for definition in node:
            if not isinstance(definition.tag, str):
                continue
            local = _local(definition)
            if local == "messageEventDefinition":
                ref = definition.get("messageRef")
                if not ref:
                    self.add("error", node, "消息事件没有指定消息（messageRef）")
                elif ref in self.messages and not (self.messages[ref].get("name") or "").strip():
                    self.add("error", node, "消息事件引用的消息没有名称")
            elif local == "signalEventDefinition" and not definition.get("signalRef"):
                self.add("error", node, "信号事件没有指定信号（signalRef）")
            elif local == "timerEventDefinition" and not any(
                (t.text or "").strip() for t in definition if isinstance(t.tag, str)
            ):
                self.add("error", node, "定时器没有时间表达式（timeDate/timeDuration/timeCycle）")


def _condition(flow) -> bool:
    condition = flow.find(f"{{{BPMN_NS}}}conditionExpression")
    return condition is not None and bool((condition.text or "").strip())


def _executable_copy(root) -> bytes:
    """The document with every process marked executable and its data stores (already
    reported, and fatal to the parser) left out, to learn what deploying would say next."""
    copy = deepcopy(root)
    for process in copy.iter(f"{{{BPMN_NS}}}process"):
        process.set("isExecutable", "true")
    for store in list(copy.iter(f"{{{BPMN_NS}}}dataStore")):
        store.getparent().remove(store)
    return etree.tostring(copy, xml_declaration=True, encoding="UTF-8")


def _describe_elements(root, items: list[ReportItem]) -> None:
    """Fill in type and name of findings that only carry an element id."""
    for item in items:
        if item.element_id and not item.element_type:
            found = root.xpath("//*[@id=$id]", id=item.element_id)
            if found:
                item.element_type = _local(found[0])
                item.name = item.name or found[0].get("name") or ""


def _deployment_findings(session, name: str, raw: bytes, flagged: set[str]) -> list[ReportItem]:
    """What the deployment check says, minus elements the structural checks already explain."""
    try:
        definitions.check_bundle(session, [(name, raw)])
    except DefinitionError as exc:
        return [
            ReportItem("error", e["message"], e.get("element_id"), None, "", e.get("line"))
            for e in exc.errors
            if not e.get("element_id") or e["element_id"] not in flagged
        ]
    except TooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 — a file from another tool must never cause a 500
        log.warning("import check of %s failed: %s", name, exc.__class__.__name__)
        return [ReportItem("error", f"无法按部署规则解析：{exc.__class__.__name__}: {exc}")]
    return []


def _analyze_bpmn(session, name: str, raw: bytes, root) -> ImportReport:
    if root.tag != f"{{{BPMN_NS}}}definitions":
        raise DefinitionError([_file_error(name, "不是 BPMN 2.0 文件（根元素应为 bpmn:definitions）")])
    items = _BpmnChecks(session, root).run()
    processes = _bpmn(root, "process")
    executable = [p.get("id") for p in processes if p.get("isExecutable", "true") == "true"]
    has_diagram = root.find(f"{{{studio.BPMNDI_NS}}}BPMNDiagram") is not None
    if not has_diagram:
        items.append(
            ReportItem(
                "warning", "文件没有图形信息（BPMNDiagram）：查看时由系统自动排布，在编辑器中保存后带上图形"
            )
        )
    if processes:
        flagged = {i.element_id for i in items if i.severity == "error" and i.element_id}
        items += _deployment_findings(session, name, _executable_copy(root), flagged)
        _describe_elements(root, items)
    return ImportReport(
        kind="bpmn",
        items=_unique(items),
        executable=bool(executable),
        process_ids=executable + [p.get("id") for p in processes if p.get("id") not in executable],
        exporter=" ".join(filter(None, [root.get("exporter"), root.get("exporterVersion")]))[:256],
        has_diagram=has_diagram,
    )


def _unique(items: list[ReportItem]) -> list[ReportItem]:
    seen, kept = set(), []
    for item in items:
        key = (item.element_id, item.message)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(kept, key=lambda i: order.get(i.severity, 3))


# --- DMN and forms ----------------------------------------------------------------------------


def _analyze_dmn(session, name: str, raw: bytes) -> ImportReport:
    items = _deployment_findings(session, name, raw, set())
    usable = not items
    if usable:
        items = [ReportItem("info", "决策表可以解析，可随流程一起部署")]
    return ImportReport(kind="dmn", items=items, executable=usable, process_ids=[], has_diagram=False)


def _analyze_form(name: str, raw: bytes) -> ImportReport:
    try:
        form = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DefinitionError([_file_error(name, f"表单不是有效的 JSON：{exc}")]) from exc
    if not isinstance(form, dict) or not isinstance(form.get("id"), str) or not form["id"]:
        raise DefinitionError([_file_error(name, "表单缺少 id")])
    try:
        definitions.read_bundle([(name, raw)])
        items = [ReportItem("info", "表单可用，可在表单编辑器中打开")]
    except DefinitionError as exc:
        items = [ReportItem("error", e["message"], e.get("element_id"), "form") for e in exc.errors]
    return ImportReport(
        kind="form", items=items, executable=True, process_ids=[form["id"]], has_diagram=False
    )


def _file_error(name: str, message: str) -> dict:
    return {"file": name, "line": None, "element_id": None, "message": message}


def _kind(name: str) -> str:
    kind = KINDS.get(Path(name or "").suffix.lower())
    if kind is None:
        raise ValidationFailed({"file": ["只能导入 .bpmn、.dmn 和 .form 文件"]})
    return kind


def analyze(ctx: Context, name: str, raw: bytes) -> ImportReport:
    """The import report of one file, without storing it.

    Raises NotAllowed, ValidationFailed (wrong kind), TooLarge, DefinitionError (unreadable:
    not XML/JSON, DTD, not UTF-8).
    """
    studio.require_studio(ctx.actor)
    kind = _kind(name)
    if kind == "form":
        if len(raw) > definitions.MAX_FILE_BYTES:
            raise TooLarge(f"文件超过 {definitions.MAX_FILE_BYTES // 1024 // 1024} MB")
        return _analyze_form(name, raw)
    xml_name = f"{Path(name).stem}.{kind}"
    entry = definitions.read_bundle([(xml_name, raw)])[0]
    if kind == "dmn":
        return _analyze_dmn(ctx.session, xml_name, raw)
    return _analyze_bpmn(ctx.session, xml_name, raw, entry.tree)


def import_file(ctx: Context, name: str, raw: bytes) -> ImportedModel:
    """Store a file for viewing, with its report; never deploys it.

    Raises NotAllowed, ValidationFailed, TooLarge, DefinitionError (unreadable file).
    """
    report = analyze(ctx, name, raw)
    model = ImportedModel(
        name=Path(name).name[:256],
        kind=report.kind,
        content=raw.decode("utf-8"),
        checksum=hashlib.sha256(raw).hexdigest(),
        exporter=report.exporter,
        executable=report.executable,
        deployable=report.deployable,
        process_ids=report.process_ids,
        report=[asdict(i) for i in report.items],
        has_diagram=report.has_diagram,
        imported_by=ctx.actor.username,
    )
    ctx.session.add(model)
    ctx.session.flush()
    return model


def get_import(ctx: Context, import_id: int) -> ImportedModel:
    """One imported file. Raises NotAllowed, NotFound."""
    studio.require_studio(ctx.actor)
    model = ctx.session.get(ImportedModel, import_id)
    if model is None:
        raise NotFound(f"导入记录 {import_id} 不存在")
    return model


def list_imports(ctx: Context, limit: int = 100) -> list[ImportedModel]:
    """Recent imports, newest first. Raises NotAllowed."""
    studio.require_studio(ctx.actor)
    return list(ctx.session.scalars(select(ImportedModel).order_by(ImportedModel.id.desc()).limit(limit)))


def open_as_draft(ctx: Context, import_id: int, key: str | None = None) -> studio.Draft:
    """Make an imported file my draft (of its first process, its form or its decision table),
    to finish it in the editor and deploy from there.

    Raises NotAllowed, NotFound, ValidationFailed (unusable id), TooLarge.
    """
    model = get_import(ctx, import_id)
    if model.kind == "dmn":
        key = key or Path(model.name).stem
    else:
        key = key or (model.process_ids[0] if model.process_ids else None)
    if not key:
        raise ValidationFailed({"key": ["文件中没有流程，无法作为草稿打开"]})
    studio.check_key(key)
    latest_version = None
    if model.kind == "bpmn":
        try:
            latest_version = definitions.get_definition(ctx.session, key).version
        except NotFound:
            latest_version = None
    state = studio.draft_state(ctx, model.kind, key)
    # Opening an import is a deliberate replacement of my own draft, so it takes the newest revision as base.
    draft = studio.save_draft(
        ctx, model.kind, key, model.content, base_revision=state.latest_revision, base_version=latest_version
    )
    model.draft_revision = draft.revision
    ctx.session.flush()
    return draft
