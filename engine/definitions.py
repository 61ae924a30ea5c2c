"""Deploying bundles of .bpmn/.dmn/.form files: safe parsing, linting, versioning, spec cache."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.defaults import StartEvent
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.camunda.parser.event_parsers import CamundaStartEventParser
from SpiffWorkflow.camunda.parser.task_spec import UserTaskParser
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import forms as form_rules
from . import scripting
from .errors import DefinitionError, ScriptError, TooLarge
from .models import Deployment, DeploymentFile, Group, ProcessDefinition

CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NS = {"bpmn": BPMN_NS, "camunda": CAMUNDA_NS}

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_BUNDLE_BYTES = 10 * 1024 * 1024
MAX_FILES = 50
MAX_XML_DEPTH = 64

# Refuse DTDs outright: our files never need them, and they carry XXE and entity bombs.
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_SAFE_XML = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False
)
_CAMUNDA_ATTRS = {
    "candidateGroups": "candidate_groups",
    "candidateUsers": "candidate_users",
    "assignee": "assignee",
    "dueDate": "due_date",
    "formRef": "form_ref",
    "formKey": "form_ref",
}


def _camunda_extensions(node) -> dict:
    """The Camunda 7 attributes the runtime needs, read from one element."""
    found = {}
    for attr, key in _CAMUNDA_ATTRS.items():
        value = node.get(f"{{{CAMUNDA_NS}}}{attr}")
        if value:
            found[key] = value.strip()
    return found


class ChengxinUserTaskParser(UserTaskParser):
    """Camunda user task parser that also reads assignment, due date and form reference."""

    def create_task(self):
        task = super().create_task()
        task.extensions = _camunda_extensions(self.node)
        return task


class ChengxinStartEventParser(CamundaStartEventParser):
    """Start events carry the start form (camunda:formRef / formKey)."""

    def create_task(self):
        task = super().create_task()
        task.extensions = _camunda_extensions(self.node)
        return task


class ChengxinParser(CamundaParser):
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (ChengxinUserTaskParser, UserTask),
        full_tag("startEvent"): (ChengxinStartEventParser, StartEvent),
    }


_validator_lock = threading.Lock()
_validator: BpmnValidator | None = None


def _bpmn_validator() -> BpmnValidator:
    global _validator
    with _validator_lock:
        if _validator is None:
            _validator = BpmnValidator()
        return _validator


@dataclass
class BundleFile:
    name: str
    kind: str  # bpmn | dmn | form
    content: str
    checksum: str
    tree: object = None  # lxml root for XML files
    form: dict | None = None


@dataclass
class ParsedBundle:
    files: list[BundleFile]
    parser: ChengxinParser
    errors: list[dict] = field(default_factory=list)

    def forms(self) -> dict[str, BundleFile]:
        return {f.form["id"]: f for f in self.files if f.kind == "form" and f.form}


def _error(file: str, message: str, line=None, element_id=None) -> dict:
    return {"file": file, "line": line or None, "element_id": element_id or None, "message": message}


def _checksum(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def _kind(name: str) -> str | None:
    suffix = Path(name).suffix.lower()
    return {".bpmn": "bpmn", ".dmn": "dmn", ".form": "form", ".json": "form"}.get(suffix)


def _xml_depth(root) -> int:
    depth, stack = 0, [(root, 1)]
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        if depth > MAX_XML_DEPTH:
            return depth
        stack.extend((child, d + 1) for child in node)
    return depth


def _read_xml(name: str, raw: bytes, errors: list[dict]):
    if _DTD.search(raw):
        errors.append(_error(name, "文件包含 DTD 或实体声明，出于安全原因拒绝导入"))
        return None
    try:
        root = etree.fromstring(raw, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        errors.append(_error(name, f"XML 格式错误：{exc.msg}", line=exc.lineno))
        return None
    if _xml_depth(root) > MAX_XML_DEPTH:
        errors.append(_error(name, f"XML 嵌套层数超过 {MAX_XML_DEPTH} 层"))
        return None
    return root


def _json_depth(value) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        depth = max(depth, d)
        if depth > MAX_XML_DEPTH:
            return depth
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, d + 1) for child in children)
    return depth


def _read_form(name: str, raw: bytes, errors: list[dict]) -> dict | None:
    try:
        form = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        errors.append(_error(name, f"表单不是有效的 JSON：{exc}"))
        return None
    except RecursionError:  # nested deeper than the JSON decoder goes
        errors.append(_error(name, f"表单 JSON 嵌套层数超过 {MAX_XML_DEPTH} 层"))
        return None
    if _json_depth(form) > MAX_XML_DEPTH:  # the form linter and validators walk it recursively
        errors.append(_error(name, f"表单 JSON 嵌套层数超过 {MAX_XML_DEPTH} 层"))
        return None
    if not isinstance(form, dict) or not isinstance(form.get("id"), str) or not form["id"]:
        errors.append(_error(name, "表单缺少 id"))
        return None
    for problem in form_rules.lint_form(form):
        errors.append(_error(name, problem, element_id=form["id"]))
    return form


def read_bundle(files: list[tuple[str, bytes]]) -> list[BundleFile]:
    """Check sizes and kinds and parse every file safely.

    Raises TooLarge for oversized input and DefinitionError for unreadable files.
    """
    if not files:
        raise DefinitionError([_error("", "没有上传任何文件")])
    if len(files) > MAX_FILES:
        raise TooLarge(f"一次最多部署 {MAX_FILES} 个文件")
    if sum(len(raw) for _, raw in files) > MAX_BUNDLE_BYTES:
        raise TooLarge(f"部署包超过 {MAX_BUNDLE_BYTES // 1024 // 1024} MB")
    errors: list[dict] = []
    bundle: list[BundleFile] = []
    for name, raw in files:
        name = Path(name or "").name or "unnamed"
        kind = _kind(name)
        if len(raw) > MAX_FILE_BYTES:
            raise TooLarge(f"文件 {name} 超过 {MAX_FILE_BYTES // 1024 // 1024} MB")
        if kind is None:
            errors.append(_error(name, "只能部署 .bpmn、.dmn 和 .form 文件"))
            continue
        entry = BundleFile(name=name, kind=kind, content="", checksum=_checksum(raw))
        if kind == "form":
            entry.form = _read_form(name, raw, errors)
        else:
            entry.tree = _read_xml(name, raw, errors)
        try:
            entry.content = raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(_error(name, "文件必须是 UTF-8 编码"))
        bundle.append(entry)
    if errors:
        raise DefinitionError(errors)
    names = [f.name for f in bundle]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise DefinitionError([_error(n, "文件名重复") for n in sorted(duplicates)])
    return bundle


def _validation_error(exc: SpiffWorkflowException, default_file: str) -> dict:
    return _error(
        getattr(exc, "file_name", "") or default_file,
        str(exc.args[0]) if exc.args else str(exc),
        line=getattr(exc, "line_number", None),
        element_id=getattr(exc, "id", None) or getattr(exc, "task_spec", None) and None,
    )


def _new_parser(validate: bool = True) -> ChengxinParser:
    return ChengxinParser(validator=_bpmn_validator() if validate else None)


def _add_to_parser(parser: ChengxinParser, entry: BundleFile, errors: list[dict]) -> None:
    try:
        if entry.kind == "bpmn":
            parser.add_bpmn_xml(entry.tree, entry.name)
        elif entry.kind == "dmn":
            parser.add_dmn_xml(entry.tree, entry.name)
    except SpiffWorkflowException as exc:
        errors.append(_validation_error(exc, entry.name))
    except (etree.LxmlError, ValueError, KeyError, IndexError, AttributeError) as exc:
        errors.append(_error(entry.name, f"无法解析：{exc}"))


def _executable_process_ids(entry: BundleFile) -> list[str]:
    return [
        p.get("id")
        for p in entry.tree.iterfind(f"{{{BPMN_NS}}}process")
        if p.get("isExecutable", "true") == "true"
    ]


def _called_elements(bundle: list[BundleFile]) -> set[str]:
    called = set()
    for entry in bundle:
        if entry.kind == "bpmn" and entry.tree is not None:
            called.update(
                el.get("calledElement")
                for el in entry.tree.iter(f"{{{BPMN_NS}}}callActivity")
                if el.get("calledElement")
            )
    return called


def _defined_processes(bundle: list[BundleFile]) -> set[str]:
    return {
        p.get("id")
        for entry in bundle
        if entry.kind == "bpmn" and entry.tree is not None
        for p in entry.tree.iterfind(f"{{{BPMN_NS}}}process")
    }


def _latest_definition(session: Session, key: str) -> ProcessDefinition | None:
    return session.scalars(
        select(ProcessDefinition)
        .where(ProcessDefinition.key == key)
        .order_by(ProcessDefinition.version.desc())
        .limit(1)
    ).first()


def _files_of(session: Session, definition: ProcessDefinition) -> list[DeploymentFile]:
    ids = definition.file_ids
    if not ids:
        return []
    return list(session.scalars(select(DeploymentFile).where(DeploymentFile.id.in_(ids))))


def _as_bundle_file(row: DeploymentFile) -> BundleFile:
    raw = row.content.encode()
    entry = BundleFile(name=row.name, kind=row.kind, content=row.content, checksum=row.checksum)
    if row.kind == "form":
        entry.form = json.loads(raw)
    else:
        entry.tree = etree.fromstring(raw, _SAFE_XML)
    return entry


def _resolve_missing_calls(session: Session, bundle: list[BundleFile]) -> list[BundleFile]:
    """Processes called from the bundle but deployed earlier join it (their latest version)."""
    added: list[BundleFile] = []
    seen = {f.checksum for f in bundle}
    missing = _called_elements(bundle) - _defined_processes(bundle)
    while missing:
        key = missing.pop()
        definition = _latest_definition(session, key)
        if definition is None:
            continue
        for row in _files_of(session, definition):
            if row.checksum not in seen and row.kind in ("bpmn", "dmn"):
                entry = _as_bundle_file(row)
                added.append(entry)
                seen.add(row.checksum)
        missing |= _called_elements(added) - _defined_processes(bundle + added)
    return added


def _deployed_form(session: Session, form_id: str) -> BundleFile | None:
    row = session.scalars(
        select(DeploymentFile)
        .where(DeploymentFile.kind == "form", DeploymentFile.ref == form_id)
        .order_by(DeploymentFile.id.desc())
        .limit(1)
    ).first()
    return _as_bundle_file(row) if row else None


def _source_line(node) -> int | None:
    return getattr(node, "sourceline", None)


def _check_code(errors, entry, node, text, check, what):
    try:
        check(text)
    except ScriptError as exc:
        errors.append(_error(entry.name, f"{what}：{exc.message}", _source_line(node), _owner_id(node)))


def _owner_id(node) -> str | None:
    while node is not None:
        if node.get("id") and etree.QName(node).localname not in (
            "conditionExpression",
            "timerEventDefinition",
            "script",
        ):
            return node.get("id")
        node = node.getparent()
    return None


def _expression_text(text: str | None) -> str:
    return (text or "").strip()


def _lint_expressions(entry: BundleFile, errors: list[dict]) -> None:
    root = entry.tree
    for cond in root.iter(f"{{{BPMN_NS}}}conditionExpression"):
        if _expression_text(cond.text):
            _check_code(errors, entry, cond, cond.text, scripting.check_expression, "条件表达式无效")
    for tag in ("timeDate", "timeDuration", "timeCycle"):
        for timer in root.iter(f"{{{BPMN_NS}}}{tag}"):
            text = _expression_text(timer.text)
            if not text:
                errors.append(_error(entry.name, "定时器没有表达式", _source_line(timer), _owner_id(timer)))
            else:
                check = partial(scripting.check_timer_expression, kind=tag)
                _check_code(errors, entry, timer, text, check, "定时器表达式无效")
    for script in root.iter(f"{{{BPMN_NS}}}script"):
        _check_code(errors, entry, script, script.text or "", scripting.check_script, "脚本无效")
    for node in root.iter():
        for attr in ("dueDate", "candidateGroups", "candidateUsers", "assignee"):
            value = node.get(f"{{{CAMUNDA_NS}}}{attr}")
            if value and ("${" in value or attr == "dueDate"):
                _check_code(errors, entry, node, value, scripting.check_expression, f"{attr} 表达式无效")


def _lanes(root) -> dict[str, str]:
    """element id -> lane name."""
    lanes = {}
    for lane in root.iter(f"{{{BPMN_NS}}}lane"):
        for ref in lane.iterfind(f"{{{BPMN_NS}}}flowNodeRef"):
            lanes[(ref.text or "").strip()] = lane.get("name") or ""
    return lanes


def _split(value: str | None) -> list[str]:
    if not value or "${" in value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _element_summary(session: Session, entry: BundleFile, process, forms, errors) -> dict:
    """Per-element metadata the runtime, pages and lint need, lanes resolved to groups."""
    group_names = {g.name: g.name for g in session.scalars(select(Group))}
    group_names.update({g.title: g.name for g in session.scalars(select(Group)) if g.title})
    lanes = _lanes(entry.tree)
    elements: dict[str, dict] = {}
    for node in process.iter():
        if not isinstance(node.tag, str) or not node.get("id"):
            continue
        kind = etree.QName(node).localname
        if kind in ("lane", "laneSet", "flowNodeRef", "process", "sequenceFlow"):
            continue
        item = {"type": kind, "name": node.get("name") or ""}
        if kind in ("userTask", "startEvent"):
            item.update(_camunda_extensions(node))
        if kind == "userTask":
            _lint_user_task(entry, node, item, lanes, group_names, forms, errors)
            listeners = _complete_listeners(node)
            for script in listeners:
                _check_code(errors, entry, node, script, scripting.check_script, "任务监听脚本无效")
            if listeners:
                item["on_complete"] = listeners
        if kind == "startEvent" and item.get("form_ref") and item["form_ref"] not in forms:
            errors.append(
                _error(entry.name, f"开始表单 {item['form_ref']} 不存在", _source_line(node), node.get("id"))
            )
        elements[node.get("id")] = item
    return elements


def _complete_listeners(node) -> list[str]:
    """Inline Python of the user task's `camunda:taskListener event="complete"` scripts."""
    scripts = []
    for listener in node.iterfind(f"{{{BPMN_NS}}}extensionElements/{{{CAMUNDA_NS}}}taskListener"):
        script = listener.find(f"{{{CAMUNDA_NS}}}script")
        if listener.get("event") == "complete" and script is not None and (script.text or "").strip():
            scripts.append(script.text)
    return scripts


def _lint_user_task(entry, node, item, lanes, group_names, forms, errors) -> None:
    element_id = node.get("id")
    line = _source_line(node)
    if not item.get("form_ref"):
        errors.append(_error(entry.name, "用户任务没有表单（camunda:formRef）", line, element_id))
    elif item["form_ref"] not in forms:
        errors.append(_error(entry.name, f"表单 {item['form_ref']} 不存在", line, element_id))
    has_candidates = any(item.get(k) for k in ("candidate_groups", "candidate_users", "assignee"))
    if not has_candidates:
        lane = lanes.get(element_id)
        if lane and lane in group_names:
            item["candidate_groups"] = group_names[lane]
        else:
            errors.append(
                _error(
                    entry.name,
                    "用户任务没有候选组、候选人或处理人，所在泳道也不对应任何用户组",
                    line,
                    element_id,
                )
            )
    for group in _split(item.get("candidate_groups")):
        if group_names and group not in group_names.values():
            errors.append(_error(entry.name, f"用户组 {group} 不存在", line, element_id))


@dataclass
class Candidate:
    """One executable process of a checked bundle, ready to be stored as a version."""

    key: str
    name: str
    checksum: str
    entry: BundleFile
    elements: dict
    forms: dict
    start_form: str | None
    files: list[BundleFile]


def check_bundle(session: Session, files: list[tuple[str, bytes]]) -> list[Candidate]:
    """Parse and lint a bundle without storing anything.

    Raises TooLarge or DefinitionError (with every problem found, not just the first).
    """
    bundle = read_bundle(files)
    extra = _resolve_missing_calls(session, bundle)
    errors: list[dict] = []
    parser = _new_parser()
    for entry in bundle + extra:
        if entry.kind in ("bpmn", "dmn"):
            _add_to_parser(parser, entry, errors)
    bpmn_files = [f for f in bundle if f.kind == "bpmn"]
    if errors:
        raise DefinitionError(errors)
    if bpmn_files and not any(_executable_process_ids(f) for f in bpmn_files):
        raise DefinitionError(
            [_error(f.name, '流程未标记为可执行（isExecutable="false"），无法部署运行') for f in bpmn_files]
        )
    forms = {fid: f for fid, f in ParsedBundle(bundle, parser).forms().items()}
    candidates = []
    for entry in bpmn_files:
        _lint_expressions(entry, errors)
        for process in entry.tree.iterfind(f"{{{BPMN_NS}}}process"):
            if process.get("isExecutable", "true") != "true":
                continue
            candidates.append(_candidate(session, parser, entry, process, forms, bundle + extra, errors))
    if errors:
        raise DefinitionError(errors)
    return candidates


def _candidate(session, parser, entry, process, forms, all_files, errors) -> Candidate:
    key = process.get("id")
    used_forms = dict(forms)
    elements = {}
    try:
        parser.get_spec(key)
        subprocess_specs = parser.get_subprocess_specs(key)
    except SpiffWorkflowException as exc:
        errors.append(_validation_error(exc, entry.name))
        subprocess_specs = {}
    for ref in _form_refs(process):
        if ref not in used_forms:
            deployed = _deployed_form(session, ref)
            if deployed:
                used_forms[ref] = deployed
    elements = _element_summary(session, entry, process, used_forms, errors)
    files = [entry] + _dependency_files(key, subprocess_specs, entry, all_files)
    needed_forms = {ref: used_forms[ref] for ref in _form_refs(process) if ref in used_forms}
    checksum = _checksum(
        "".join(sorted(f.checksum for f in files) + sorted(f.checksum for f in needed_forms.values()))
    )
    start_form = next(
        (el.get("form_ref") for el in elements.values() if el["type"] == "startEvent" and el.get("form_ref")),
        None,
    )
    return Candidate(
        key=key,
        name=process.get("name") or key,
        checksum=checksum,
        entry=entry,
        elements=elements,
        forms={ref: f.form for ref, f in needed_forms.items()},
        start_form=start_form,
        files=files + list(needed_forms.values()),
    )


def _form_refs(process) -> list[str]:
    refs = []
    for node in process.iter():
        if isinstance(node.tag, str):
            ref = node.get(f"{{{CAMUNDA_NS}}}formRef") or node.get(f"{{{CAMUNDA_NS}}}formKey")
            if ref and ref not in refs:
                refs.append(ref)
    return refs


def _dependency_files(key, subprocess_specs, entry, all_files) -> list[BundleFile]:
    """Other BPMN files holding called processes, and every DMN file (decisions are global)."""
    deps = []
    for other in all_files:
        if other is entry:
            continue
        calls_it = other.kind == "bpmn" and _defined_processes([other]) & set(subprocess_specs)
        if other.kind == "dmn" or calls_it:
            deps.append(other)
    return deps


@dataclass
class DeployResult:
    deployment_id: int
    definitions: list[ProcessDefinition]
    created: bool


def deploy(
    session: Session, files: list[tuple[str, bytes]], *, user: str | None, note: str = ""
) -> DeployResult:
    """Deploy a bundle: unchanged processes keep their version, changed ones get version + 1.

    Raises TooLarge or DefinitionError; on error nothing is stored.
    """
    candidates = check_bundle(session, files)
    bundle_checksum = _checksum("".join(sorted(c.checksum for c in candidates)))
    unchanged, changed = [], []
    for cand in candidates:
        latest = _latest_definition(session, cand.key)
        (unchanged if latest and latest.checksum == cand.checksum else changed).append((cand, latest))
    if not changed:
        definitions = [latest for _, latest in unchanged]
        return DeployResult(definitions[0].deployment_id if definitions else 0, definitions, False)
    deployment = Deployment(checksum=bundle_checksum, deployed_by=user, note=note)
    session.add(deployment)
    session.flush()
    stored: dict[str, DeploymentFile] = {}
    definitions = [latest for _, latest in unchanged]
    for cand, latest in changed:
        rows = [_store_file(session, deployment, f, stored) for f in cand.files]
        definition = ProcessDefinition(
            key=cand.key,
            version=(latest.version + 1) if latest else 1,
            name=cand.name,
            checksum=cand.checksum,
            deployment_id=deployment.id,
            deployed_by=user,
            forms=cand.forms,
            elements=cand.elements,
            file_ids=[r.id for r in rows],
            start_form=cand.start_form,
        )
        session.add(definition)
        definitions.append(definition)
    session.flush()
    return DeployResult(deployment.id, definitions, True)


def _store_file(session, deployment, entry: BundleFile, stored: dict) -> DeploymentFile:
    if entry.checksum in stored:
        return stored[entry.checksum]
    row = DeploymentFile(
        deployment_id=deployment.id,
        name=entry.name,
        kind=entry.kind,
        checksum=entry.checksum,
        content=entry.content,
        ref=entry.form["id"] if entry.kind == "form" and entry.form else None,
    )
    session.add(row)
    session.flush()
    stored[entry.checksum] = row
    return row


def deploy_paths(
    session: Session, paths: list[str | Path], *, user: str | None, note: str = ""
) -> DeployResult:
    """Deploy every .bpmn/.dmn/.form file under the given files or folders."""
    files: list[tuple[str, bytes]] = []
    for path in map(Path, paths):
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files.extend((p.name, p.read_bytes()) for p in candidates if p.is_file() and _kind(p.name))
    return deploy(session, files, user=user, note=note)


# --- spec cache -------------------------------------------------------------------------

# Keyed by content, not row id: ids repeat across databases (tests, restores), checksums don't.
_spec_cache: dict[tuple[str, str], tuple] = {}
_spec_lock = threading.Lock()


def load_spec(session: Session, definition: ProcessDefinition):
    """The parsed (spec, subprocess_specs) of a stored definition, parsed once per process."""
    cache_key = (definition.key, definition.checksum)
    cached = _spec_cache.get(cache_key)
    if cached is not None:
        return cached
    parser = _new_parser(validate=False)
    for row in _files_of(session, definition):
        if row.kind == "bpmn":
            parser.add_bpmn_xml(etree.fromstring(row.content.encode(), _SAFE_XML), row.name)
        elif row.kind == "dmn":
            parser.add_dmn_xml(etree.fromstring(row.content.encode(), _SAFE_XML), row.name)
    result = (parser.get_spec(definition.key), parser.get_subprocess_specs(definition.key))
    with _spec_lock:
        _spec_cache[cache_key] = result
    return result


_timer_flags: dict[tuple[str, str], bool] = {}


def has_timer_events(session: Session, definition: ProcessDefinition) -> bool:
    """Whether any element of the version (its called processes included) waits for a timer."""
    cache_key = (definition.key, definition.checksum)
    flag = _timer_flags.get(cache_key)
    if flag is None:
        spec, subprocess_specs = load_spec(session, definition)
        specs = [spec, *subprocess_specs.values()]
        flag = any(_is_timer_spec(task_spec) for s in specs for task_spec in s.task_specs.values())
        _timer_flags[cache_key] = flag
    return flag


def _is_timer_spec(task_spec) -> bool:
    definition = getattr(task_spec, "event_definition", None)
    inner = getattr(definition, "event_definitions", None) or [definition]
    return any(isinstance(d, TimerEventDefinition) for d in inner)


def get_definition(session: Session, key: str, version: int | None = None) -> ProcessDefinition:
    """The given version of a process, or its latest. Raises NotFound."""
    from .errors import NotFound

    query = select(ProcessDefinition).where(ProcessDefinition.key == key)
    if version is not None:
        query = query.where(ProcessDefinition.version == version)
    definition = session.scalars(query.order_by(ProcessDefinition.version.desc()).limit(1)).first()
    if definition is None:
        raise NotFound(f"流程 {key}" + (f" 版本 {version}" if version else "") + " 不存在")
    return definition


def list_definitions(session: Session, all_versions: bool = False) -> list[ProcessDefinition]:
    query = select(ProcessDefinition)
    if not all_versions:
        latest = (
            select(ProcessDefinition.key, func.max(ProcessDefinition.version).label("v"))
            .group_by(ProcessDefinition.key)
            .subquery()
        )
        query = query.join(
            latest, (ProcessDefinition.key == latest.c.key) & (ProcessDefinition.version == latest.c.v)
        )
    return list(session.scalars(query.order_by(ProcessDefinition.key, ProcessDefinition.version)))


def bpmn_xml(session: Session, definition: ProcessDefinition) -> str:
    """The BPMN file holding this definition's process."""
    for row in _files_of(session, definition):
        if row.kind == "bpmn" and f'id="{definition.key}"' in row.content:
            return row.content
    raise DefinitionError([_error("", f"流程 {definition.key} 的 BPMN 文件缺失")])


__all__ = [
    "ChengxinParser",
    "check_bundle",
    "deploy",
    "deploy_paths",
    "load_spec",
    "get_definition",
    "list_definitions",
    "bpmn_xml",
    "ValidationException",
]
