"""Migrating running instances between versions: the dry run per instance, the real move one
transaction per instance, refusals with reasons, and the projections after the move."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

import engine.imports  # noqa: F401  (register the studio tables before create_all)
from engine import credit, definitions, migration, runtime, studio
from engine.access import Actor
from engine.demo_archive import uscc
from engine.errors import Conflict, NotAllowed, ValidationFailed
from engine.models import Event, HumanTask, ProcessInstance, Timer

from ..conftest import FIXTURES, ROOT

ANALYST = Actor("analyst", frozenset({"analysts"}))
REGISTRAR = Actor("registrar", frozenset({"office"}))
CHIEF = Actor("chief", frozenset({"supervision", "section_chiefs"}))
LEGAL = Actor("legal", frozenset({"legal"}))
LIAISON = Actor("liaison", frozenset({"credit_liaison"}))
HANDLER = Actor("handler", frozenset({"supervision"}))
BUNDLE = (
    "simple_review.bpmn",
    "waiting_flow.bpmn",
    "simple_start.form",
    "simple_review.form",
    "simple_confirm.form",
)
START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def with_extra_review(xml: str) -> str:
    """simple_review with a 加审 step (legal) between the first review and the gateway."""
    return xml.replace(
        '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="gw" />',
        '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="extra_review" />\n'
        '    <bpmn:userTask id="extra_review" name="加审" camunda:candidateGroups="legal" '
        'camunda:formRef="simple_confirm" />\n'
        '    <bpmn:sequenceFlow id="f_extra" sourceRef="extra_review" targetRef="gw" />',
    )


@pytest.fixture
def ctx(seeded, session, settings):
    files = [(n, (FIXTURES / n).read_bytes()) for n in BUNDLE]
    definitions.deploy(session, files, user="analyst", note="v1")
    return runtime.Context(session, ANALYST, settings)


def as_actor(ctx, actor):
    return runtime.Context(ctx.session, actor, ctx.settings)


def deploy(ctx, xml: str, key="simple_review", note="v2"):
    return studio.deploy_process(ctx, key, note, xml)


def start(ctx, key="simple_review"):
    variables = dict(START) if key == "simple_review" else {}
    return runtime.start_instance(as_actor(ctx, REGISTRAR), key, variables=variables)


def open_task(ctx, instance_id) -> HumanTask:
    return ctx.session.scalar(
        select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "open")
    )


def complete(ctx, actor, instance_id, data):
    task = open_task(ctx, instance_id)
    return runtime.complete_task(as_actor(ctx, actor), task.id, data)


# --- dry run ---------------------------------------------------------------------------------


def test_dry_run_says_per_instance_whether_it_can_move_and_why_not(ctx):
    waiting_first = start(ctx)
    at_confirm = start(ctx)
    complete(ctx, REGISTRAR, at_confirm.id, {"decision": "approve"})
    finished = start(ctx)
    complete(ctx, REGISTRAR, finished.id, {"decision": "reject"})
    # v2 adds a step and replaces 复核 (confirm) by a new element id.
    v2 = with_extra_review(fixture_text("simple_review.bpmn")).replace('"confirm"', '"final_confirm"')
    deploy(ctx, v2)
    plan = migration.plan_migration(ctx, "simple_review", 1)
    assert (plan.source.version, plan.target.version) == (1, 2)
    assert {c.element_id for c in plan.diff.added} >= {"extra_review", "final_confirm"}
    assert [c.element_id for c in plan.diff.removed] == ["confirm"]
    by_id = {p.instance.id: p for p in plan.instances}
    assert set(by_id) == {waiting_first.id, at_confirm.id}  # the finished one is not offered
    movable = by_id[waiting_first.id]
    assert movable.can_move and movable.reasons == []
    assert [(a.element_id, a.type) for a in movable.active] == [("first_review", "user_task")]
    refused = by_id[at_confirm.id]
    assert not refused.can_move
    assert refused.reasons == ["当前环节「复核」(confirm)在版本 2 中不存在"]
    # A dry run writes nothing.
    assert ctx.session.get(ProcessInstance, waiting_first.id).version == 1


def test_dry_run_lists_what_changes_for_the_active_task(ctx):
    instance = start(ctx)
    changed = fixture_text("simple_review.bpmn").replace(
        'camunda:candidateGroups="office"', 'camunda:candidateGroups="supervision"'
    )
    deploy(ctx, changed.replace('name="初审"', 'name="初步审核"'))
    plan = migration.plan_migration(ctx, "simple_review", 1, 2)
    (only,) = plan.instances
    assert only.instance.id == instance.id and only.can_move
    assert "当前环节「初审」的名称、候选组有变化" in only.changes
    assert any("重新生成待办" in change for change in only.changes)


def test_dry_run_refuses_the_same_version_and_non_analysts(ctx):
    with pytest.raises(ValidationFailed):
        migration.plan_migration(ctx, "simple_review", 1, 1)
    with pytest.raises(NotAllowed):
        migration.plan_migration(as_actor(ctx, REGISTRAR), "simple_review", 1)


# --- the move --------------------------------------------------------------------------------


def test_migrated_instance_keeps_its_task_and_claim_and_then_takes_the_new_step(ctx):
    instance = start(ctx)
    task = open_task(ctx, instance.id)
    runtime.claim_task(as_actor(ctx, REGISTRAR), task.id)
    deploy(ctx, with_extra_review(fixture_text("simple_review.bpmn")))
    plan = migration.migrate_instance(ctx, "simple_review", instance.id)
    assert plan.can_move
    moved = ctx.session.get(ProcessInstance, instance.id)
    assert (moved.version, moved.definition.version) == (2, 2)
    same = open_task(ctx, instance.id)
    assert (same.id, same.task_guid, same.assignee) == (task.id, task.task_guid, "registrar")
    event = ctx.session.scalar(
        select(Event).where(Event.instance_id == instance.id, Event.type == "migrated")
    )
    assert event.user == "analyst" and event.details["from_version"] == 1 and event.details["to_version"] == 2
    result = complete(ctx, REGISTRAR, instance.id, {"decision": "approve"})
    assert result.instance.status == "running"
    step = open_task(ctx, instance.id)
    assert (step.element_id, step.name, step.candidate_groups) == ("extra_review", "加审", ["legal"])
    complete(ctx, LEGAL, instance.id, {})
    assert open_task(ctx, instance.id).element_id == "confirm"


def test_changed_assignment_rules_regenerate_the_open_task(ctx):
    instance = start(ctx)
    old = open_task(ctx, instance.id)
    runtime.claim_task(as_actor(ctx, REGISTRAR), old.id)
    deploy(
        ctx,
        fixture_text("simple_review.bpmn").replace(
            'camunda:candidateGroups="office"', 'camunda:candidateGroups="supervision"'
        ),
    )
    migration.migrate_instance(ctx, "simple_review", instance.id, 2)
    ctx.session.refresh(old)
    assert old.status == "cancelled"
    new = open_task(ctx, instance.id)
    assert new.id != old.id and new.task_guid == old.task_guid
    assert new.candidate_groups == ["supervision"] and new.assignee is None
    complete(ctx, HANDLER, instance.id, {"decision": "reject"})
    assert ctx.session.get(ProcessInstance, instance.id).status == "completed"


def test_refused_instance_is_left_untouched_and_others_still_move(ctx, session_factory):
    movable = start(ctx).id
    stuck = start(ctx).id
    complete(ctx, REGISTRAR, stuck, {"decision": "approve"})
    deploy(ctx, fixture_text("simple_review.bpmn").replace('"confirm"', '"final_confirm"'))
    with pytest.raises(Conflict, match="复核"):
        migration.migrate_instance(ctx, "simple_review", stuck, 2)
    ctx.session.commit()
    outcomes = migration.migrate_instances(
        session_factory, ANALYST, ctx.settings, "simple_review", [stuck, movable, 999999], 2
    )
    by_id = {o.instance_id: o for o in outcomes}
    assert by_id[movable].migrated and (by_id[movable].from_version, by_id[movable].to_version) == (1, 2)
    assert not by_id[stuck].migrated and "复核" in by_id[stuck].reasons[0]
    assert not by_id[999999].migrated
    ctx.session.expire_all()
    assert ctx.session.get(ProcessInstance, stuck).version == 1
    assert ctx.session.get(ProcessInstance, movable).version == 2
    events = ctx.session.scalars(select(Event.type).where(Event.instance_id == stuck)).all()
    assert "migrated" not in events


def test_an_element_already_passed_must_still_exist(ctx):
    instance = start(ctx)
    complete(ctx, REGISTRAR, instance.id, {"decision": "approve"})  # now at 复核 (confirm)
    # v2 drops the gateway's reject branch end event and the gateway itself: confirm follows first_review.
    xml = fixture_text("simple_review.bpmn")
    start_gw = xml.index('<bpmn:sequenceFlow id="f2"')
    end_gw = xml.index('<bpmn:userTask id="confirm"')
    v2 = (
        xml[:start_gw]
        + '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="confirm" />\n    '
        + xml[end_gw:]
    ).replace('<bpmn:endEvent id="end_rejected" name="不予通过" />', "")
    deploy(ctx, v2)
    (plan,) = migration.plan_migration(ctx, "simple_review", 1).instances
    assert not plan.can_move
    assert any("已经过的环节「是否通过」(gw)" in r for r in plan.reasons)


def test_waiting_timer_keeps_its_deadline_and_a_changed_timer_restarts(ctx):
    instance = start(ctx, "waiting_flow")
    due_before = ctx.session.scalar(select(Timer.due_at).where(Timer.instance_id == instance.id))
    renamed = fixture_text("waiting_flow.bpmn").replace('name="处理"', 'name="处理材料"')
    deploy(ctx, renamed, key="waiting_flow")
    migration.migrate_instance(ctx, "waiting_flow", instance.id, 2)
    timer = ctx.session.scalar(select(Timer).where(Timer.instance_id == instance.id))
    assert timer.element_id == "wait_hour" and timer.due_at == due_before
    assert ctx.session.get(ProcessInstance, instance.id).status == "waiting"
    longer = renamed.replace(">PT1H<", ">PT2H<")
    deploy(ctx, longer, key="waiting_flow", note="v3")
    (plan,) = migration.plan_migration(ctx, "waiting_flow", 2, 3).instances
    assert plan.can_move and any("重新计时" in c for c in plan.changes)
    migration.migrate_instance(ctx, "waiting_flow", instance.id, 3)
    due_after = ctx.session.scalar(select(Timer.due_at).where(Timer.instance_id == instance.id))
    assert due_after - due_before >= timedelta(minutes=59)


def test_a_waiting_message_must_keep_its_name(ctx):
    instance = start(ctx, "waiting_flow")
    runtime.fire_timers(as_actor(ctx, Actor("admin", frozenset({"admins"}))), instance.id)
    complete(ctx, REGISTRAR, instance.id, {})
    assert ctx.session.get(ProcessInstance, instance.id).status == "waiting"  # waits for docs_received
    deploy(
        ctx,
        fixture_text("waiting_flow.bpmn").replace('name="docs_received"', 'name="docs_arrived"'),
        key="waiting_flow",
    )
    (plan,) = migration.plan_migration(ctx, "waiting_flow", 1).instances
    assert plan.reasons == ["当前等待的消息 docs_received 在版本 2 中改名为 docs_arrived"]


# --- the bureau's flow: a review step added to credit_objection ------------------------------------

OBJECTION_REVIEW = (
    '<bpmn:userTask id="chief_review" name="股室负责人复核" camunda:candidateGroups="section_chiefs" '
    'camunda:formRef="objection_legal_review">\n'
    "      <bpmn:incoming>flow_verification__legal_review</bpmn:incoming>\n"
    "      <bpmn:outgoing>flow_chief_review__legal_review</bpmn:outgoing>\n"
    "    </bpmn:userTask>\n"
    '    <bpmn:sequenceFlow id="flow_chief_review__legal_review" sourceRef="chief_review" targetRef="legal_review" />\n'
    "    "
)


def objection_with_review(xml: str) -> str:
    xml = xml.replace(
        '<bpmn:sequenceFlow id="flow_verification__legal_review" sourceRef="verification" targetRef="legal_review" />',
        '<bpmn:sequenceFlow id="flow_verification__legal_review" sourceRef="verification" targetRef="chief_review" />',
    )
    return xml.replace('<bpmn:endEvent id="end"', OBJECTION_REVIEW + '<bpmn:endEvent id="end"', 1)


def test_a_waiting_objection_moves_onto_a_version_with_a_review_step(ctx):
    definitions.deploy_paths(ctx.session, [ROOT / "processes", ROOT / "forms"], user="analyst", note="git")
    record = credit.create_record(
        ctx.session,
        actor="liaison",
        subject_type="unit",
        subject_name="许昌某化工有限公司",
        subject_code=uscc("91", "MA3X0001"),
        category="行政处罚",
        severity="general",
        doc_no="魏应急罚〔2026〕1号",
        decided_at=credit.local_today() - timedelta(days=30),
        facts="未按规定开展安全培训",
    )
    instance = runtime.start_instance(
        as_actor(ctx, LIAISON),
        "credit_objection",
        variables={
            "record_id": record.id,
            "applicant_name": "许昌某化工有限公司",
            "applicant_contact": "13800138000",
            "objection_reason": "处罚决定已被复议撤销",
        },
    )
    assert open_task(ctx, instance.id).element_id == "verification"
    xml = definitions.bpmn_xml(ctx.session, definitions.get_definition(ctx.session, "credit_objection"))
    version = studio.deploy_process(
        ctx, "credit_objection", "核查后增加股室负责人复核", objection_with_review(xml)
    )
    target = next(d for d in version.definitions if d.key == "credit_objection")
    (plan,) = migration.plan_migration(ctx, "credit_objection", instance.version, target.version).instances
    assert plan.can_move, plan.reasons
    migration.migrate_instance(ctx, "credit_objection", instance.id, target.version)
    complete(
        ctx,
        HANDLER,
        instance.id,
        {
            "proposal": "maintain",
            "subject_name": "许昌某化工有限公司",
            "category": "行政处罚",
            "severity": "general",
            "decided_at": (credit.local_today() - timedelta(days=30)).isoformat(),
            "verification_reason": "经核查，处罚决定有效",
        },
    )
    step = open_task(ctx, instance.id)
    assert (step.element_id, step.candidate_groups) == ("chief_review", ["section_chiefs"])


SUBPROCESS_FLOW = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d_sub" targetNamespace="t">
  <bpmn:process id="nested_review" name="嵌套审核" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="inner" />
    <bpmn:subProcess id="inner" name="内部审核">
      <bpmn:startEvent id="inner_start" />
      <bpmn:sequenceFlow id="i1" sourceRef="inner_start" targetRef="inner_task" />
      <bpmn:userTask id="inner_task" name="内部办理" camunda:candidateGroups="office" camunda:formRef="simple_confirm" />
      <bpmn:sequenceFlow id="i2" sourceRef="inner_task" targetRef="inner_end" />
      <bpmn:endEvent id="inner_end" />
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="f2" sourceRef="inner" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_an_instance_waiting_inside_a_sub_process_moves_and_takes_the_step_added_after_it(ctx):
    deploy(ctx, SUBPROCESS_FLOW, key="nested_review", note="v1")
    instance = start(ctx, "nested_review")
    assert open_task(ctx, instance.id).element_id == "inner_task"
    v2 = SUBPROCESS_FLOW.replace(
        '<bpmn:sequenceFlow id="f2" sourceRef="inner" targetRef="end" />',
        '<bpmn:sequenceFlow id="f2" sourceRef="inner" targetRef="after" />\n'
        '    <bpmn:userTask id="after" name="复核" camunda:candidateGroups="legal" camunda:formRef="simple_confirm" />\n'
        '    <bpmn:sequenceFlow id="f3" sourceRef="after" targetRef="end" />',
    )
    deploy(ctx, v2, key="nested_review", note="v2")
    (plan,) = migration.plan_migration(ctx, "nested_review", 1).instances
    assert plan.can_move, plan.reasons
    assert ("inner_task", "user_task") in [(a.element_id, a.type) for a in plan.active]
    migration.migrate_instance(ctx, "nested_review", instance.id)
    complete(ctx, REGISTRAR, instance.id, {})
    assert open_task(ctx, instance.id).element_id == "after"
