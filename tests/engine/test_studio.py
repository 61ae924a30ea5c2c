"""The analysts' studio: drafts with optimistic concurrency, validation without storing,
deployment from a draft with a change note, versions with instance counts, diff, export and
the "not in the repository" check."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest
from lxml import etree
from sqlalchemy import func, select

import engine.imports  # noqa: F401  (register the studio tables before create_all)
import engine.studio  # noqa: F401
from engine import definitions, runtime, studio
from engine.access import Actor
from engine.errors import Conflict, DefinitionError, NotAllowed, NotFound, ValidationFailed
from engine.models import Deployment, Event

from ..conftest import FIXTURES

ANALYST = Actor("analyst", frozenset({"analysts"}), "业务分析员 周敏")
OTHER_ANALYST = Actor("admin", frozenset({"admins"}), "系统管理员 郑磊")
REGISTRAR = Actor("registrar", frozenset({"office"}))
BUNDLE = ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}
EXTRA_TASK = (
    '<bpmn:userTask id="extra_review" name="加审" camunda:candidateGroups="legal" {form} />\n'
    '    <bpmn:sequenceFlow id="f_extra" sourceRef="extra_review" targetRef="gw" />'
)


def fixture_files(*names):
    return [(n, (FIXTURES / n).read_bytes()) for n in names]


def simple_xml() -> str:
    return (FIXTURES / "simple_review.bpmn").read_text(encoding="utf-8")


def with_extra_task(form: str = 'camunda:formRef="simple_confirm"') -> str:
    """simple_review with a review step between the first review and the gateway."""
    return simple_xml().replace(
        '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="gw" />',
        '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="extra_review" />\n    '
        + EXTRA_TASK.format(form=form),
    )


@pytest.fixture
def ctx(seeded, session, settings):
    definitions.deploy(session, fixture_files(*BUNDLE), user="analyst", note="首次部署")
    return runtime.Context(session, ANALYST, settings)


def as_actor(ctx, actor):
    return runtime.Context(ctx.session, actor, ctx.settings)


# --- drafts ------------------------------------------------------------------------------------


def test_my_repeated_saves_with_one_base_never_conflict(ctx):
    first = studio.save_draft(
        ctx, "bpmn", "simple_review", with_extra_task(), base_revision=0, base_version=1
    )
    second = studio.save_draft(ctx, "bpmn", "simple_review", simple_xml(), base_revision=0, base_version=1)
    assert first.id == second.id and second.revision == 2
    state = studio.draft_state(ctx, "bpmn", "simple_review")
    assert state.mine.content == simple_xml() and state.latest_revision == 2 and state.others == []


def test_saving_over_someone_elses_newer_draft_names_who_and_when(ctx):
    studio.save_draft(ctx, "bpmn", "simple_review", simple_xml(), base_revision=0)
    admin = as_actor(ctx, OTHER_ANALYST)
    with pytest.raises(Conflict) as refused:
        studio.save_draft(admin, "bpmn", "simple_review", with_extra_task(), base_revision=0)
    message = refused.value.message
    assert "业务分析员 周敏（analyst）" in message and "修订 1" in message
    assert studio.draft_state(admin, "bpmn", "simple_review").mine is None  # nothing was saved
    # Having seen revision 1, the admin may save; then the analyst's stale page is refused in turn.
    saved = studio.save_draft(admin, "bpmn", "simple_review", with_extra_task(), base_revision=1)
    assert saved.revision == 2
    with pytest.raises(Conflict, match="系统管理员 郑磊（admin）"):
        studio.save_draft(ctx, "bpmn", "simple_review", simple_xml(), base_revision=1)
    assert [d.username for d in studio.draft_state(ctx, "bpmn", "simple_review").others] == ["admin"]


def test_discarded_draft_keeps_its_revision_used(ctx):
    studio.save_draft(ctx, "bpmn", "simple_review", simple_xml(), base_revision=0)
    studio.discard_draft(ctx, "bpmn", "simple_review")
    assert studio.draft_state(ctx, "bpmn", "simple_review").mine is None
    with pytest.raises(NotFound):
        studio.discard_draft(ctx, "bpmn", "simple_review")
    # A page opened before the discard still knows revision 1 was somebody's work.
    with pytest.raises(Conflict):
        studio.save_draft(
            as_actor(ctx, OTHER_ANALYST), "bpmn", "simple_review", simple_xml(), base_revision=0
        )


def test_drafts_refuse_non_analysts_bad_keys_and_empty_content(ctx):
    with pytest.raises(NotAllowed):
        studio.save_draft(as_actor(ctx, REGISTRAR), "bpmn", "simple_review", simple_xml(), base_revision=0)
    with pytest.raises(ValidationFailed) as bad_key:
        studio.save_draft(ctx, "bpmn", "../etc/passwd", simple_xml(), base_revision=0)
    assert "key" in bad_key.value.errors
    with pytest.raises(ValidationFailed):
        studio.save_draft(ctx, "exe", "simple_review", simple_xml(), base_revision=0)
    with pytest.raises(ValidationFailed) as empty:
        studio.save_draft(ctx, "bpmn", "simple_review", "   ", base_revision=0)
    assert "content" in empty.value.errors


def test_the_editor_opens_my_draft_else_the_latest_version(ctx):
    xml, version = studio.process_source(ctx, "simple_review")
    assert version == 1 and same_process(xml, simple_xml())
    studio.save_draft(ctx, "bpmn", "simple_review", with_extra_task(), base_revision=0, base_version=1)
    xml, version = studio.process_source(ctx, "simple_review")
    assert version == 1 and same_process(xml, with_extra_task())
    assert same_process(studio.process_source(as_actor(ctx, OTHER_ANALYST), "simple_review")[0], simple_xml())
    with pytest.raises(NotFound):
        studio.process_source(ctx, "no_such_process")


def same_process(xml: str, expected: str) -> bool:
    return studio.process_elements(xml, "simple_review") == studio.process_elements(expected, "simple_review")


def test_a_model_without_a_diagram_opens_with_a_generated_layout(ctx):
    assert "BPMNDiagram" not in simple_xml()
    laid_out = studio.ensure_diagram(with_extra_task())
    root = etree.fromstring(laid_out.encode())
    shapes = {s.get("bpmnElement"): s for s in root.iter(f"{{{studio.BPMNDI_NS}}}BPMNShape")}
    edges = {e.get("bpmnElement") for e in root.iter(f"{{{studio.BPMNDI_NS}}}BPMNEdge")}
    nodes = {"start", "first_review", "extra_review", "gw", "confirm", "end_ok", "end_rejected"}
    assert set(shapes) == nodes
    assert edges == {"f1", "f2", "f_extra", "f_ok", "f_no", "f3"}
    x = {i: float(s.find(f"{{{studio.DC_NS}}}Bounds").get("x")) for i, s in shapes.items()}
    assert x["start"] < x["first_review"] < x["extra_review"] < x["gw"] < x["confirm"] < x["end_ok"]
    # A diagram that has one is left alone, byte for byte.
    assert studio.ensure_diagram(laid_out) == laid_out
    # The layout is only for display: deploying the laid-out XML keeps every element.
    studio.validate_process(ctx, "simple_review", laid_out)


# --- validate and deploy -----------------------------------------------------------------------


def test_validate_reports_the_offending_element_and_stores_nothing(ctx):
    before = ctx.session.scalar(select(func.count(Deployment.id)))
    with pytest.raises(DefinitionError) as invalid:
        studio.validate_process(ctx, "simple_review", with_extra_task(form=""))
    problem = next(e for e in invalid.value.errors if e["element_id"] == "extra_review")
    assert "表单" in problem["message"] and problem["file"] == "simple_review.bpmn" and problem["line"]
    candidates = studio.validate_process(ctx, "simple_review", with_extra_task())
    assert [c.key for c in candidates] == ["simple_review"]
    assert ctx.session.scalar(select(func.count(Deployment.id))) == before


def test_validate_refuses_a_diagram_whose_process_id_changed(ctx):
    renamed = simple_xml().replace('id="simple_review"', 'id="other_process"')
    with pytest.raises(DefinitionError, match="other_process|simple_review"):
        studio.validate_process(ctx, "simple_review", renamed)


def test_deploy_from_my_draft_needs_a_note_and_creates_the_next_version(ctx):
    studio.save_draft(ctx, "bpmn", "simple_review", with_extra_task(), base_revision=0, base_version=1)
    with pytest.raises(ValidationFailed) as no_note:
        studio.deploy_process(ctx, "simple_review", "  ")
    assert "note" in no_note.value.errors
    result = studio.deploy_process(ctx, "simple_review", "增加法规股加审环节")
    definition = next(d for d in result.definitions if d.key == "simple_review")
    assert result.created and definition.version == 2 and "extra_review" in definition.elements
    assert ctx.session.get(Deployment, result.deployment_id).note == "增加法规股加审环节"
    event = ctx.session.scalar(select(Event).where(Event.type == "deployed").order_by(Event.id.desc()))
    assert event.user == "analyst" and event.details["definitions"] == [["simple_review", 2]]
    # The draft became version 2: the editor now opens the deployed version.
    assert studio.draft_state(ctx, "bpmn", "simple_review").mine is None
    xml, version = studio.process_source(ctx, "simple_review")
    assert version == 2 and same_process(xml, with_extra_task())
    again = studio.deploy_process(ctx, "simple_review", "再次部署", with_extra_task())
    assert not again.created and [d.version for d in again.definitions if d.key == "simple_review"] == [2]


def test_deploy_refuses_a_draft_based_on_an_outdated_version(ctx):
    studio.save_draft(ctx, "bpmn", "simple_review", with_extra_task(), base_revision=0, base_version=1)
    admin = as_actor(ctx, OTHER_ANALYST)
    studio.deploy_process(admin, "simple_review", "管理员先部署", simple_xml().replace("初审", "初步审核"))
    with pytest.raises(Conflict, match="版本 2"):
        studio.deploy_process(ctx, "simple_review", "我的修改")
    assert definitions.get_definition(ctx.session, "simple_review").version == 2


def test_deploy_takes_my_form_drafts_the_diagram_references(ctx):
    form = {
        "id": "extra_form",
        "type": "default",
        "schemaVersion": 16,
        "components": [{"type": "textarea", "id": "f_opinion", "key": "opinion", "label": "加审意见"}],
    }
    studio.save_draft(ctx, "form", "extra_form", json.dumps(form, ensure_ascii=False), base_revision=0)
    result = studio.deploy_process(
        ctx,
        "simple_review",
        "加审使用新表单",
        with_extra_task('camunda:formRef="extra_form"'),
        base_version=1,
    )
    definition = next(d for d in result.definitions if d.key == "simple_review")
    assert definition.forms["extra_form"]["components"][0]["label"] == "加审意见"
    assert studio.open_drafts(ctx, "form") == []  # the form draft went into version 2


# --- versions, repository, export, diff ----------------------------------------------------------


def start_instance(ctx):
    return runtime.start_instance(as_actor(ctx, REGISTRAR), "simple_review", variables=dict(START))


def test_versions_list_who_when_note_checksum_and_instances_per_version(ctx):
    start_instance(ctx)
    start_instance(ctx)
    studio.deploy_process(ctx, "simple_review", "增加加审", with_extra_task(), base_version=1)
    start_instance(ctx)
    process = studio.get_process(ctx, "simple_review")
    assert [v.definition.version for v in process.versions] == [2, 1]
    latest, first = process.versions
    assert latest.note == "增加加审" and first.note == "首次部署"
    assert latest.definition.deployed_by == "analyst" and len(latest.definition.checksum) == 64
    assert first.instances == {"running": 2} and latest.total_instances == 1
    assert first.in_repository is None  # no repository configured
    with pytest.raises(NotAllowed):
        studio.list_processes(as_actor(ctx, REGISTRAR))


def test_a_version_not_in_the_repository_is_flagged_with_its_files(ctx, tmp_path):
    repository = tmp_path / "repo"
    (repository / "processes").mkdir(parents=True)
    (repository / "forms").mkdir()
    shutil.copy(FIXTURES / "simple_review.bpmn", repository / "processes")
    for name in BUNDLE[1:]:
        shutil.copy(FIXTURES / name, repository / "forms")
    assert studio.not_in_repository(ctx, repository) == []
    studio.deploy_process(ctx, "simple_review", "在设计室里加了一步", with_extra_task(), base_version=1)
    flagged = studio.not_in_repository(ctx, repository)
    assert [(v.definition.key, v.definition.version) for v in flagged] == [("simple_review", 2)]
    assert flagged[0].missing_files == ["simple_review.bpmn"]
    versions = studio.get_process(ctx, "simple_review", repository).versions
    assert [v.in_repository for v in versions] == [False, True]


def test_export_lays_a_version_out_like_the_repository(ctx):
    archive = zipfile.ZipFile(io.BytesIO(studio.export_zip(ctx, "simple_review", 1)))
    names = sorted(archive.namelist())
    assert names == [
        "forms/simple_confirm.form",
        "forms/simple_review.form",
        "forms/simple_start.form",
        "processes/simple_review.bpmn",
    ]
    assert archive.read("processes/simple_review.bpmn").decode() == simple_xml()
    with pytest.raises(NotFound):
        studio.export_zip(ctx, "simple_review", 9)


def test_diff_lists_added_removed_and_changed_elements(ctx):
    changed = (
        with_extra_task()
        .replace('name="初审"', 'name="初步审核"')
        .replace('camunda:candidateGroups="section_chiefs"', 'camunda:candidateGroups="legal"')
    )
    studio.deploy_process(ctx, "simple_review", "调整", changed, base_version=1)
    diff = studio.diff_versions(ctx, "simple_review", 1, 2)
    assert {c.element_id for c in diff.added} == {"extra_review", "f_extra"}
    assert diff.removed == []
    aspects = {c.element_id: c.aspects for c in diff.changed}
    assert aspects["first_review"] == ["名称"]
    assert aspects["confirm"] == ["候选组"]
    assert aspects["f2"] == ["连线"]
    reverse = studio.diff_versions(ctx, "simple_review", 2, 1)
    assert {c.element_id for c in reverse.removed} == {"extra_review", "f_extra"}


# --- new processes and forms --------------------------------------------------------------------


def test_a_new_process_starts_as_my_draft_and_refuses_taken_or_bad_keys(ctx):
    draft = studio.new_process(ctx, "hazard_report", "隐患报告 <测试>")
    assert draft.kind == "bpmn" and draft.revision == 1
    assert 'id="hazard_report"' in draft.content and "隐患报告 &lt;测试&gt;" in draft.content
    assert studio.process_elements(draft.content, "hazard_report") == {
        "start": {"type": "startEvent", "name": "开始"}
    }
    with pytest.raises(ValidationFailed) as taken:
        studio.new_process(ctx, "simple_review", "重名")
    assert "已存在" in taken.value.errors["key"][0]
    with pytest.raises(ValidationFailed):
        studio.new_process(ctx, "1bad", "名称")
    with pytest.raises(ValidationFailed) as unnamed:
        studio.new_process(ctx, "another", " ")
    assert "name" in unnamed.value.errors


def test_form_drafts_take_their_key_as_id_and_list_beside_deployed_forms(ctx):
    schema = {"type": "default", "id": "Form_0x1", "components": []}
    draft = studio.save_draft(ctx, "form", "extra_form", json.dumps(schema), base_revision=0)
    assert json.loads(draft.content)["id"] == "extra_form"
    with pytest.raises(ValidationFailed):
        studio.save_draft(ctx, "form", "extra_form", "{not json", base_revision=1)
    with pytest.raises(ValidationFailed):
        studio.save_draft(ctx, "form", "extra_form", "[1, 2]", base_revision=1)
    forms = {f.form_id: f for f in studio.list_forms(ctx)}
    assert set(forms) == {"extra_form", "simple_confirm", "simple_review", "simple_start"}
    assert forms["extra_form"].draft is not None and forms["extra_form"].deployed is None
    assert forms["simple_confirm"].used_by == ["simple_review"]
    assert studio.form_source(ctx, "extra_form")["id"] == "extra_form"
    assert studio.form_source(ctx, "simple_confirm")["id"] == "simple_confirm"
    assert studio.form_source(ctx, "brand_new") == {
        "id": "brand_new",
        "type": "default",
        "schemaVersion": 16,
        "components": [],
    }
