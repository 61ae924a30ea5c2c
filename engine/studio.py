"""The analysts' studio: drafts with optimistic concurrency, validation, deployment from a
draft, the version list, element diffs between versions, export, and the "not in git" check."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree
from sqlalchemy import Index, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, definitions
from .access import Actor
from .db import Base, utcnow
from .errors import Conflict, DefinitionError, NotAllowed, NotFound, TooLarge, ValidationFailed
from .models import Deployment, DeploymentFile, ProcessDefinition, ProcessInstance, User
from .runtime import Context

DRAFT_KINDS = ("bpmn", "form", "dmn")
# Process ids and form ids become file names and URL parts: keep them plain.
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
BPMN_NS = definitions.BPMN_NS
CAMUNDA_NS = definitions.CAMUNDA_NS
# Where each kind of file lives in the repository (and in an export).
REPO_FOLDER = {"bpmn": "processes", "dmn": "processes", "form": "forms"}


class Draft(Base):
    """One analyst's unsaved work on one process, form or decision table."""

    __tablename__ = "studio_drafts"
    __table_args__ = (
        UniqueConstraint("kind", "key", "username"),
        Index("ix_studio_draft_kind_key_revision", "kind", "key", "revision"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # bpmn | form | dmn
    key: Mapped[str] = mapped_column(String(128))
    username: Mapped[str] = mapped_column(String(64))
    content: Mapped[str] = mapped_column(Text)
    # Increases with every save of any draft of this kind and key, never reused: the
    # number a page last saw tells whether somebody else saved since.
    revision: Mapped[int] = mapped_column(Integer)
    base_version: Mapped[int | None] = mapped_column(Integer)  # deployed version it started from
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | deployed | discarded
    deployed_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- access ---------------------------------------------------------------------------------


def require_studio(actor: Actor) -> None:
    """Only analysts and admins use the studio. Raises NotAllowed."""
    if not actor.has_role("analyst", "admin"):
        raise NotAllowed("只有业务分析员和系统管理员可以使用流程设计室")


def check_key(key: str, what: str = "key") -> str:
    """A process or form id usable as a file name. Raises ValidationFailed."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValidationFailed({what: ["只能包含字母、数字、下划线、点和连字符，且以字母或下划线开头"]})
    return key


def _check_kind(kind: str) -> str:
    if kind not in DRAFT_KINDS:
        raise ValidationFailed({"kind": [f"草稿类型只能是 {'、'.join(DRAFT_KINDS)}"]})
    return kind


# --- drafts -----------------------------------------------------------------------------------


@dataclass
class DraftState:
    """What an editor page needs: my open draft, the newest revision, others' newer work."""

    mine: Draft | None
    latest_revision: int
    others: list[Draft]


def _display_name(session, username: str | None) -> str:
    if not username:
        return "未知用户"
    user = session.scalar(select(User).where(User.username == username))
    return f"{user.display_name}（{username}）" if user and user.display_name else username


def _local_time(ctx: Context, moment: datetime | None) -> str:
    return moment.astimezone(ctx.settings.tzinfo).strftime("%Y-%m-%d %H:%M") if moment else ""


def _latest_revision(session, kind: str, key: str) -> int:
    return session.scalar(select(func.max(Draft.revision)).where(Draft.kind == kind, Draft.key == key)) or 0


def _my_draft(session, kind: str, key: str, username: str) -> Draft | None:
    return session.scalar(
        select(Draft).where(Draft.kind == kind, Draft.key == key, Draft.username == username)
    )


def draft_state(ctx: Context, kind: str, key: str) -> DraftState:
    """My draft of a process/form (if open) and the other analysts' drafts. Raises NotAllowed, ValidationFailed."""
    require_studio(ctx.actor)
    _check_kind(kind)
    check_key(key)
    rows = list(
        ctx.session.scalars(
            select(Draft).where(Draft.kind == kind, Draft.key == key).order_by(Draft.revision.desc())
        )
    )
    mine = next((r for r in rows if r.username == ctx.actor.username and r.status == "open"), None)
    others = [r for r in rows if r.username != ctx.actor.username and r.status == "open"]
    return DraftState(mine, max((r.revision for r in rows), default=0), others)


def _newer_by_someone_else(session, kind, key, username, base_revision) -> Draft | None:
    return session.scalar(
        select(Draft)
        .where(
            Draft.kind == kind,
            Draft.key == key,
            Draft.username != username,
            Draft.revision > base_revision,
        )
        .order_by(Draft.revision.desc())
        .limit(1)
    )


def _check_content(kind: str, content) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationFailed({"content": ["草稿内容不能为空"]})
    if len(content.encode()) > definitions.MAX_FILE_BYTES:
        raise TooLarge(f"草稿超过 {definitions.MAX_FILE_BYTES // 1024 // 1024} MB")
    return content


def _form_draft(key: str, content: str) -> str:
    """A form draft is form-js JSON whose id is the draft's key (user tasks refer to it by id)."""
    try:
        schema = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ValidationFailed({"content": [f"表单不是有效的 JSON：{exc.msg}"]}) from exc
    if not isinstance(schema, dict):
        raise ValidationFailed({"content": ["表单必须是 JSON 对象"]})
    schema["id"] = key
    return json.dumps(schema, ensure_ascii=False, indent=2)


def save_draft(
    ctx: Context,
    kind: str,
    key: str,
    content: str,
    *,
    base_revision: int,
    base_version: int | None = None,
) -> Draft:
    """Save my draft; refused when someone else saved a newer draft of it since `base_revision`.

    My own newer saves never conflict (an editor page saves many times with one base).
    Raises NotAllowed, ValidationFailed, TooLarge, Conflict (names who changed it and when).
    """
    require_studio(ctx.actor)
    _check_kind(kind)
    check_key(key)
    _check_content(kind, content)
    if kind == "form":
        content = _form_draft(key, content)
    session, username = ctx.session, ctx.actor.username
    newer = _newer_by_someone_else(session, kind, key, username, int(base_revision or 0))
    if newer is not None:
        raise Conflict(
            f"{_display_name(session, newer.username)} 于 {_local_time(ctx, newer.updated_at)} "
            f"保存了更新的草稿（修订 {newer.revision}）。为免覆盖其修改，请重新打开编辑器查看后再保存。"
        )
    revision = _latest_revision(session, kind, key) + 1
    draft = _my_draft(session, kind, key, username)
    if draft is None:
        draft = Draft(kind=kind, key=key, username=username)
        session.add(draft)
    draft.content = content
    draft.revision = revision
    draft.base_version = base_version if base_version is not None else draft.base_version
    draft.status = "open"
    draft.deployed_version = None
    draft.updated_at = utcnow()
    session.flush()
    return draft


def discard_draft(ctx: Context, kind: str, key: str) -> None:
    """Drop my open draft (its revision number stays used). Raises NotAllowed, NotFound."""
    require_studio(ctx.actor)
    draft = _my_draft(ctx.session, _check_kind(kind), check_key(key), ctx.actor.username)
    if draft is None or draft.status != "open":
        raise NotFound("没有可丢弃的草稿")
    draft.status = "discarded"
    draft.updated_at = utcnow()
    ctx.session.flush()


def open_drafts(ctx: Context, kind: str) -> list[Draft]:
    """My open drafts of one kind, newest first. Raises NotAllowed."""
    require_studio(ctx.actor)
    return list(
        ctx.session.scalars(
            select(Draft)
            .where(Draft.kind == kind, Draft.username == ctx.actor.username, Draft.status == "open")
            .order_by(Draft.updated_at.desc())
        )
    )


# --- bundles from drafts: validate and deploy ----------------------------------------------


def _latest(session, key: str) -> ProcessDefinition | None:
    try:
        return definitions.get_definition(session, key)
    except NotFound:
        return None


def definition_files(session, definition: ProcessDefinition) -> list[DeploymentFile]:
    """The stored files a version was parsed from (its BPMN, DMN and forms)."""
    ids = definition.file_ids or []
    if not ids:
        return []
    return list(
        session.scalars(
            select(DeploymentFile).where(DeploymentFile.id.in_(ids)).order_by(DeploymentFile.name)
        )
    )


def _parse_xml(raw: bytes):
    """lxml tree of a stored or submitted file (entities unresolved, no network), or None when malformed."""
    try:
        return etree.fromstring(raw, _SAFE_PARSER)
    except etree.XMLSyntaxError:
        return None


_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _form_refs(raw: bytes) -> set[str]:
    root = _parse_xml(raw)
    if root is None:
        return set()  # the deployment check reports the syntax error
    refs = set()
    for node in root.iter():
        for attr in ("formRef", "formKey"):
            value = node.get(f"{{{CAMUNDA_NS}}}{attr}") if isinstance(node.tag, str) else None
            if value:
                refs.add(value.strip())
    return refs


# --- a diagram for models written without one ------------------------------------------------

BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
DC_NS = "http://www.omg.org/spec/DD/20100524/DC"
DI_NS = "http://www.omg.org/spec/DD/20100524/DI"
_SIZES = {"event": (36, 36), "gateway": (50, 50), "data": (50, 50), "activity": (100, 80)}
_COLUMN, _ROW, _LEFT, _TOP = 170, 130, 80, 60


def _shape_kind(local: str) -> str | None:
    if local.endswith("Event"):
        return "event"
    if local.endswith("Gateway"):
        return "gateway"
    if local in ("dataObjectReference", "dataStoreReference"):
        return "data"
    if local.endswith("Task") or local in ("task", "callActivity") or local in CONTAINERS:
        return "activity"
    return None


def _columns(nodes: dict, flows: list) -> dict[str, int]:
    """Breadth-first distance from the start events (unreached nodes go to the first column)."""
    outgoing: dict[str, list[str]] = {}
    for flow in flows:
        outgoing.setdefault(flow.get("sourceRef"), []).append(flow.get("targetRef"))
    starts = [i for i, n in nodes.items() if _local(n) == "startEvent"] or list(nodes)[:1]
    column = {i: 0 for i in starts}
    queue = list(starts)
    while queue:
        current = queue.pop(0)
        for target in outgoing.get(current, []):
            if target in nodes and target not in column:
                column[target] = column[current] + 1
                queue.append(target)
    return {i: column.get(i, 0) for i in nodes}


def _add_shape(plane, element_id: str, bounds: tuple[int, int, int, int], expanded: bool | None = None):
    shape = etree.SubElement(
        plane, f"{{{BPMNDI_NS}}}BPMNShape", id=f"{element_id}_di", bpmnElement=element_id
    )
    if expanded is not None:
        shape.set("isExpanded", "true" if expanded else "false")
    x, y, w, h = bounds
    etree.SubElement(shape, f"{{{DC_NS}}}Bounds", x=str(x), y=str(y), width=str(w), height=str(h))


def _add_edge(plane, flow, bounds: dict) -> None:
    source, target = bounds.get(flow.get("sourceRef")), bounds.get(flow.get("targetRef"))
    if source is None or target is None:
        return
    edge = etree.SubElement(
        plane, f"{{{BPMNDI_NS}}}BPMNEdge", id=f"{flow.get('id')}_di", bpmnElement=flow.get("id")
    )
    (sx, sy, sw, sh), (tx, ty, tw, th) = source, target
    if tx > sx:
        points = [(sx + sw, sy + sh // 2), (tx, ty + th // 2)]
    else:  # a loop back: under both shapes
        low = max(sy + sh, ty + th) + 30
        points = [(sx + sw // 2, sy + sh), (sx + sw // 2, low), (tx + tw // 2, low), (tx + tw // 2, ty + th)]
    for x, y in points:
        etree.SubElement(edge, f"{{{DI_NS}}}waypoint", x=str(x), y=str(y))


def _layout_process(root, process) -> None:
    nodes = {
        n.get("id"): n for n in process if isinstance(n.tag, str) and n.get("id") and _shape_kind(_local(n))
    }
    boundary = {i: n for i, n in nodes.items() if _local(n) == "boundaryEvent"}
    placed = {i: n for i, n in nodes.items() if i not in boundary}
    flows = [f for f in process if isinstance(f.tag, str) and _local(f) == "sequenceFlow"]
    columns = _columns({i: n for i, n in placed.items() if _shape_kind(_local(n)) != "data"}, flows)
    rows: dict[int, int] = {}
    bounds: dict[str, tuple[int, int, int, int]] = {}
    last_column = max(columns.values(), default=0)
    for element_id, node in placed.items():
        column = columns.get(element_id, last_column + 1)
        row = rows[column] = rows.get(column, -1) + 1
        w, h = _SIZES[_shape_kind(_local(node))]
        cx, cy = _LEFT + column * _COLUMN + 50, _TOP + row * _ROW + 40
        bounds[element_id] = (cx - w // 2, cy - h // 2, w, h)
    for offset, (element_id, node) in enumerate(boundary.items()):
        host = bounds.get(node.get("attachedToRef"))
        if host is not None:
            bounds[element_id] = (host[0] + 10 + (offset % 2) * 40, host[1] + host[3] - 18, 36, 36)
    diagram = etree.SubElement(root, f"{{{BPMNDI_NS}}}BPMNDiagram", id=f"diagram_{process.get('id')}")
    plane = etree.SubElement(diagram, f"{{{BPMNDI_NS}}}BPMNPlane", id=f"plane_{process.get('id')}")
    plane.set("bpmnElement", process.get("id"))
    for element_id, box in bounds.items():
        expanded = False if _local(nodes[element_id]) in CONTAINERS else None
        _add_shape(plane, element_id, box, expanded)
    for flow in flows:
        _add_edge(plane, flow, bounds)


def ensure_diagram(xml: str) -> str:
    """The XML with a simple left-to-right layout added when it has no diagram at all, so the
    modeler and viewer can show models written by hand or exported without one."""
    root = _parse_xml(xml.encode())
    if root is None or root.find(f"{{{BPMNDI_NS}}}BPMNDiagram") is not None:
        return xml
    processes = root.findall(f"{{{BPMN_NS}}}process")
    if not processes:
        return xml
    _layout_process(root, processes[0])  # bpmn-js shows one plane; the first process is the main one
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode()


def process_source(ctx: Context, key: str) -> tuple[str, int | None]:
    """The XML an editor opens: my open draft, else the latest version. Raises NotAllowed, NotFound."""
    state = draft_state(ctx, "bpmn", key)
    latest = _latest(ctx.session, key)
    if state.mine is not None:
        return state.mine.content, state.mine.base_version
    if latest is None:
        raise NotFound(f"流程 {key} 尚未部署，也没有草稿")
    return definitions.bpmn_xml(ctx.session, latest), latest.version


def draft_bundle(ctx: Context, key: str, xml: str | None = None) -> list[tuple[str, bytes]]:
    """The files a deployment of process `key` needs: the diagram (given, my draft or the
    latest), my drafts of the forms it references and of decision tables, and the latest
    version's decision tables. Forms not drafted resolve to their deployed version.

    Raises NotAllowed, NotFound (nothing to deploy), ValidationFailed.
    """
    require_studio(ctx.actor)
    check_key(key)
    if xml is None:
        xml, _ = process_source(ctx, key)
    raw = _check_content("bpmn", xml).encode()
    files: dict[str, bytes] = {f"{key}.bpmn": raw}
    refs = _form_refs(raw)
    for draft in open_drafts(ctx, "form"):
        if draft.key in refs:
            files[f"{draft.key}.form"] = draft.content.encode()
    for draft in open_drafts(ctx, "dmn"):
        files[f"{draft.key}.dmn"] = draft.content.encode()
    latest = _latest(ctx.session, key)
    if latest is not None:
        for row in definition_files(ctx.session, latest):
            if row.kind == "dmn" and row.name not in files:
                files[row.name] = row.content.encode()
    return list(files.items())


def validate(ctx: Context, files: list[tuple[str, bytes]]) -> list[definitions.Candidate]:
    """Run every deployment check on a bundle without storing it.

    Raises NotAllowed, TooLarge, DefinitionError (every problem, with file, line and element).
    """
    require_studio(ctx.actor)
    return definitions.check_bundle(ctx.session, files)


def _require_key_in(candidates, key: str, file_name: str) -> None:
    if key not in {c.key for c in candidates}:
        raise DefinitionError(
            [
                {
                    "file": file_name,
                    "line": None,
                    "element_id": None,
                    "message": f"图中没有 id 为 {key} 的可执行流程；请勿修改流程 id",
                }
            ]
        )


def validate_process(ctx: Context, key: str, xml: str | None = None) -> list[definitions.Candidate]:
    """Check a process diagram (given, or my draft) with my form drafts, without deploying.

    Raises NotAllowed, NotFound, ValidationFailed, TooLarge, DefinitionError.
    """
    files = draft_bundle(ctx, key, xml)
    candidates = validate(ctx, files)
    _require_key_in(candidates, key, files[0][0])
    return candidates


def _check_base_version(ctx: Context, key: str, base_version: int | None) -> None:
    latest = _latest(ctx.session, key)
    if latest is None or base_version is None or base_version >= latest.version:
        return
    raise Conflict(
        f"流程已有更新的版本 {latest.version}（{_display_name(ctx.session, latest.deployed_by)} 于 "
        f"{_local_time(ctx, latest.deployed_at)} 部署），您的修改基于版本 {base_version}。"
        "请重新打开编辑器，在最新版本上修改后再部署。"
    )


def deploy_process(
    ctx: Context, key: str, note: str, xml: str | None = None, *, base_version: int | None = None
) -> definitions.DeployResult:
    """Deploy process `key` from the given diagram or my draft, with a change note.

    Unchanged content keeps its version. My drafts that went into it are marked deployed.
    Raises NotAllowed, NotFound, ValidationFailed (no note), TooLarge, DefinitionError,
    Conflict (a newer version was deployed since `base_version`).
    """
    require_studio(ctx.actor)
    note = (note or "").strip()
    if not note:
        raise ValidationFailed({"note": ["请填写变更说明"]})
    mine = draft_state(ctx, "bpmn", key).mine
    if base_version is None and mine is not None and xml is None:
        base_version = mine.base_version
    _check_base_version(ctx, key, base_version)
    files = draft_bundle(ctx, key, xml)
    _require_key_in(definitions.check_bundle(ctx.session, files), key, files[0][0])
    result = definitions.deploy(ctx.session, files, user=ctx.actor.username, note=note[:2000])
    version = next(d.version for d in result.definitions if d.key == key)
    if result.created:
        audit.record_event(
            ctx.session,
            "deployed",
            user=ctx.actor.username,
            comment=note,
            details={
                "deployment_id": result.deployment_id,
                "definitions": [[d.key, d.version] for d in result.definitions],
                "source": "studio",
            },
        )
    _mark_deployed(ctx, files, version, key)
    return result


def _mark_deployed(ctx: Context, files: list[tuple[str, bytes]], version: int, key: str) -> None:
    kinds = {"bpmn": {key}, "form": set(), "dmn": set()}
    for name, _ in files:
        stem, suffix = Path(name).stem, Path(name).suffix
        if suffix in (".form", ".dmn"):
            kinds[suffix[1:]].add(stem)
    for kind, keys in kinds.items():
        for draft in open_drafts(ctx, kind):
            if draft.key in keys:
                draft.status = "deployed"
                draft.deployed_version = version if kind == "bpmn" else None
                draft.updated_at = utcnow()
    ctx.session.flush()


STARTER_DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" \
xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" \
xmlns:di="http://www.omg.org/spec/DD/20100524/DI" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" \
id="definitions_{key}" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="{key}" name="{name}" isExecutable="true">
    <bpmn:startEvent id="start" name="开始" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="diagram_{key}">
    <bpmndi:BPMNPlane id="plane_{key}" bpmnElement="{key}">
      <bpmndi:BPMNShape id="start_di" bpmnElement="start"><dc:Bounds x="160" y="100" width="36" height="36" /></bpmndi:BPMNShape>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""


def new_process(ctx: Context, key: str, name: str) -> Draft:
    """Start a new process as my draft (a start event to build on).

    Raises NotAllowed, ValidationFailed (bad or taken key, no name), Conflict (someone drafts it).
    """
    require_studio(ctx.actor)
    check_key(key)
    name = (name or "").strip()
    if not name:
        raise ValidationFailed({"name": ["请填写流程名称"]})
    if _latest(ctx.session, key) is not None:
        raise ValidationFailed({"key": [f"流程 {key} 已存在，请在其版本列表中编辑"]})
    escaped = escape(name[:200], {'"': "&quot;"})
    state = draft_state(ctx, "bpmn", key)
    return save_draft(
        ctx, "bpmn", key, STARTER_DIAGRAM.format(key=key, name=escaped), base_revision=state.latest_revision
    )


@dataclass
class FormInfo:
    form_id: str
    deployed: DeploymentFile | None  # the latest deployed file of this form
    draft: Draft | None  # my open draft
    used_by: list[str]  # process keys whose latest version uses it


def list_forms(ctx: Context) -> list[FormInfo]:
    """Every deployed form and every form I am drafting. Raises NotAllowed."""
    require_studio(ctx.actor)
    latest_files = {}
    for row in ctx.session.scalars(
        select(DeploymentFile).where(DeploymentFile.kind == "form").order_by(DeploymentFile.id)
    ):
        latest_files[row.ref] = row
    drafts = {d.key: d for d in open_drafts(ctx, "form")}
    users: dict[str, list[str]] = {}
    for definition in definitions.list_definitions(ctx.session):
        for form_id in definition.forms or {}:
            users.setdefault(form_id, []).append(definition.key)
    ids = sorted(set(latest_files) | set(drafts))
    return [FormInfo(i, latest_files.get(i), drafts.get(i), users.get(i, [])) for i in ids]


def form_source(ctx: Context, form_id: str) -> dict:
    """The schema a form editor opens: my draft, else the deployed form, else an empty form.

    Raises NotAllowed, ValidationFailed.
    """
    require_studio(ctx.actor)
    check_key(form_id, "form_id")
    info = next((f for f in list_forms(ctx) if f.form_id == form_id), None)
    if info is not None and info.draft is not None:
        return json.loads(info.draft.content)
    if info is not None and info.deployed is not None:
        return json.loads(info.deployed.content)
    return {"id": form_id, "type": "default", "schemaVersion": 16, "components": []}


# --- versions, instance counts, repository check, export ------------------------------------


@dataclass
class VersionInfo:
    definition: ProcessDefinition
    note: str
    instances: dict[str, int]  # status -> count
    in_repository: bool | None  # None: no repository configured
    missing_files: list[str] = field(default_factory=list)

    @property
    def active_instances(self) -> int:
        return sum(n for s, n in self.instances.items() if s in ("running", "waiting", "suspended"))

    @property
    def total_instances(self) -> int:
        return sum(self.instances.values())


@dataclass
class ProcessInfo:
    key: str
    name: str
    versions: list[VersionInfo]  # newest first

    @property
    def latest(self) -> VersionInfo:
        return self.versions[0]


def _instance_counts(session) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(ProcessInstance.definition_id, ProcessInstance.status, func.count()).group_by(
            ProcessInstance.definition_id, ProcessInstance.status
        )
    )
    for definition_id, status, count in rows:
        counts.setdefault(definition_id, {})[status] = count
    return counts


def repository_checksums(repository: Path | None) -> dict[str, set[str]] | None:
    """sha256 of every .bpmn/.dmn/.form under the repository's processes/ and forms/, by file name."""
    if repository is None:
        return None
    found: dict[str, set[str]] = {}
    for folder in ("processes", "forms"):
        base = Path(repository) / folder
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if path.is_file() and path.suffix in (".bpmn", ".dmn", ".form"):
                found.setdefault(path.name, set()).add(hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _missing_from_repository(files: list[DeploymentFile], checksums: dict[str, set[str]]) -> list[str]:
    # A file counts as present when some repository file has the same bytes (names may differ).
    every = set().union(*checksums.values()) if checksums else set()
    return [row.name for row in files if row.checksum not in every]


def list_processes(ctx: Context, repository: Path | None = None, key: str | None = None) -> list[ProcessInfo]:
    """Every process with all its versions, instance counts, notes and repository status.

    Raises NotAllowed.
    """
    require_studio(ctx.actor)
    session = ctx.session
    query = select(ProcessDefinition, Deployment.note).join(
        Deployment, Deployment.id == ProcessDefinition.deployment_id
    )
    if key is not None:
        query = query.where(ProcessDefinition.key == key)
    rows = session.execute(query.order_by(ProcessDefinition.key, ProcessDefinition.version.desc())).all()
    counts = _instance_counts(session)
    checksums = repository_checksums(repository)
    processes: dict[str, ProcessInfo] = {}
    for definition, note in rows:
        missing = None
        if checksums is not None:
            missing = _missing_from_repository(definition_files(session, definition), checksums)
        info = VersionInfo(
            definition=definition,
            note=note or "",
            instances=counts.get(definition.id, {}),
            in_repository=None if missing is None else not missing,
            missing_files=missing or [],
        )
        entry = processes.setdefault(definition.key, ProcessInfo(definition.key, definition.name, []))
        entry.versions.append(info)
    return list(processes.values())


def get_process(ctx: Context, key: str, repository: Path | None = None) -> ProcessInfo:
    """One process with its versions. Raises NotAllowed, NotFound."""
    found = list_processes(ctx, repository, key=check_key(key))
    if not found:
        raise NotFound(f"流程 {key} 不存在")
    return found[0]


def not_in_repository(ctx: Context, repository: Path) -> list[VersionInfo]:
    """Latest versions whose files are not byte-identical in processes/ and forms/. Raises NotAllowed."""
    return [p.latest for p in list_processes(ctx, repository) if p.latest.in_repository is False]


def version_files(ctx: Context, key: str, version: int) -> list[DeploymentFile]:
    """The files of one version. Raises NotAllowed, NotFound."""
    require_studio(ctx.actor)
    definition = definitions.get_definition(ctx.session, check_key(key), version)
    return definition_files(ctx.session, definition)


def export_zip(ctx: Context, key: str, version: int) -> bytes:
    """A zip of one version laid out like the repository (processes/, forms/). Raises NotAllowed, NotFound."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in version_files(ctx, key, version):
            archive.writestr(f"{REPO_FOLDER.get(row.kind, 'processes')}/{row.name}", row.content)
    return buffer.getvalue()


# --- element diff between versions ----------------------------------------------------------

# What an analyst calls each changed aspect of an element.
ASPECTS = {
    "name": "名称",
    f"{{{CAMUNDA_NS}}}formRef": "表单",
    f"{{{CAMUNDA_NS}}}formKey": "表单",
    f"{{{CAMUNDA_NS}}}candidateGroups": "候选组",
    f"{{{CAMUNDA_NS}}}candidateUsers": "候选人",
    f"{{{CAMUNDA_NS}}}assignee": "处理人",
    f"{{{CAMUNDA_NS}}}dueDate": "办理期限",
    "conditionExpression": "条件",
    "script": "脚本",
    "timerEventDefinition": "定时器",
    "messageEventDefinition": "消息",
    "incoming": "连线",
    "outgoing": "连线",
    "sourceRef": "连线",
    "targetRef": "连线",
    "default": "默认分支",
    "calledElement": "调用流程",
    "type": "类型",
    "extensionElements": "扩展属性",
    "multiInstanceLoopCharacteristics": "多实例",
}
_SKIPPED = ("laneSet", "lane", "documentation", "extensionElements")
# Elements holding flow elements of their own; everything else nested belongs to its owner.
CONTAINERS = ("process", "subProcess", "transaction", "adHocSubProcess")


@dataclass
class ElementChange:
    element_id: str
    type: str
    name: str
    aspects: list[str] = field(default_factory=list)


@dataclass
class VersionDiff:
    key: str
    old_version: int
    new_version: int
    added: list[ElementChange]
    removed: list[ElementChange]
    changed: list[ElementChange]
    forms_changed: list[str]  # form ids whose content differs

    def change_of(self, element_id: str) -> ElementChange | None:
        return next((c for c in self.changed if c.element_id == element_id), None)


def _local(node) -> str:
    return etree.QName(node).localname


def flow_elements(container):
    """The flow elements (tasks, events, gateways, flows, data) of a process, sub-processes included."""
    for child in container:
        if not isinstance(child.tag, str) or not child.get("id") or _local(child) in _SKIPPED:
            continue
        if etree.QName(child).namespace != BPMN_NS:
            continue
        yield child
        if _local(child) in CONTAINERS:
            yield from flow_elements(child)


def _owned_parts(node):
    """Descendants that describe this element (conditions, timers, scripts, Camunda extensions)."""
    for child in node:
        if not isinstance(child.tag, str) or _local(child) == "documentation":
            continue
        if _local(node) in CONTAINERS and child.get("id") and etree.QName(child).namespace == BPMN_NS:
            continue  # a nested flow element is compared on its own
        yield child


def _describe_part(part) -> str:
    pieces = [" ".join((part.text or "").split())]
    pieces += [f"{k}={v}" for k, v in sorted(part.attrib.items()) if k != "id"]
    pieces += [_describe_part(child) for child in part if isinstance(child.tag, str)]
    return "|".join(pieces)


def _signature(node) -> dict:
    """What makes an element behave as it does: its attributes and the parts it owns."""
    signature: dict = {"type": _local(node)}
    signature.update({attr: value for attr, value in node.attrib.items() if attr != "id"})
    for part in _owned_parts(node):
        if _local(part) == "extensionElements":
            camunda = [p for p in part if isinstance(p.tag, str) and etree.QName(p).namespace == CAMUNDA_NS]
            if camunda:
                signature["extensionElements"] = [_describe_part(p) for p in camunda]
            continue
        signature.setdefault(_local(part), []).append(_describe_part(part))
    for local in ("incoming", "outgoing"):
        if local in signature:
            signature[local] = sorted(signature[local])
    return signature


def process_elements(xml: str, key: str) -> dict[str, dict]:
    """element id -> signature for every flow element of process `key` (sub-processes included)."""
    root = _parse_xml(xml.encode())
    if root is None:
        return {}
    process = next((p for p in root.iter(f"{{{BPMN_NS}}}process") if p.get("id") == key), None)
    if process is None:
        return {}
    return {node.get("id"): _signature(node) for node in flow_elements(process)}


def _aspects(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    names = []
    for k in keys:
        if old.get(k) != new.get(k):
            label = ASPECTS.get(k) or "其他属性"
            if label not in names:
                names.append(label)
    return names


def _change(element_id: str, signature: dict, aspects=None) -> ElementChange:
    return ElementChange(element_id, signature["type"], signature.get("name", ""), list(aspects or []))


def diff_definitions(session, old: ProcessDefinition, new: ProcessDefinition) -> VersionDiff:
    """Elements added, removed and changed from one version to another, and changed forms."""
    before = process_elements(definitions.bpmn_xml(session, old), old.key)
    after = process_elements(definitions.bpmn_xml(session, new), new.key)
    changed = []
    forms_changed = sorted(
        fid for fid in set(old.forms or {}) & set(new.forms or {}) if old.forms[fid] != new.forms[fid]
    )
    for element_id in sorted(set(before) & set(after)):
        aspects = _aspects(before[element_id], after[element_id])
        form = after[element_id].get(f"{{{CAMUNDA_NS}}}formRef")
        if form in forms_changed and "表单" not in aspects:
            aspects.append("表单内容")
        if aspects:
            changed.append(_change(element_id, after[element_id], aspects))
    return VersionDiff(
        key=new.key,
        old_version=old.version,
        new_version=new.version,
        added=[_change(i, after[i]) for i in sorted(set(after) - set(before))],
        removed=[_change(i, before[i]) for i in sorted(set(before) - set(after))],
        changed=changed,
        forms_changed=forms_changed,
    )


def diff_versions(ctx: Context, key: str, old_version: int, new_version: int) -> VersionDiff:
    """The element diff of two versions of a process. Raises NotAllowed, NotFound."""
    require_studio(ctx.actor)
    old = definitions.get_definition(ctx.session, check_key(key), old_version)
    new = definitions.get_definition(ctx.session, key, new_version)
    return diff_definitions(ctx.session, old, new)
