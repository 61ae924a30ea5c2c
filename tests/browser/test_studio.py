"""The analysts' studio in a real Chromium against a real server — the issue's "done when":
an analyst adds a review step to credit_objection in the modeler (bpmn-js API), sets its
candidate group in the properties panel, validates and sees the missing-form error on the
element, fixes the form reference, deploys with a change note, migrates the instance waiting
on version 1 onto version 2, and a new instance starts on version 2.

Falls back to tests/fixtures/simple_review.bpmn while processes/credit_objection.bpmn is missing.
Uses the `watched_page` fixture of tests/browser/conftest.py (FAILS when Chromium or the bundles
are missing).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

import engine.attachments  # noqa: F401  (register every table before create_all)
import engine.credit  # noqa: F401
import engine.imports  # noqa: F401
import engine.login_throttle  # noqa: F401
import engine.studio  # noqa: F401
import engine.urging  # noqa: F401
import engine.worklist  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
OBJECTION = REPO / "processes" / "credit_objection.bpmn"


@dataclass(frozen=True)
class Flow:
    """Where the review step goes in the flow under test, and who works the step before it."""

    key: str
    before: str  # the waiting instance's task, followed by the new step
    after: str
    flow: str  # the sequence flow between them, re-pointed at the new step
    form: str  # an existing form the new step will use
    before_actor: tuple[str, frozenset]
    before_data: dict


def objection_flow() -> Flow:
    decided = (engine.credit.local_today() - timedelta(days=30)).isoformat()
    return Flow(
        key="credit_objection",
        before="verification",
        after="legal_review",
        flow="flow_verification__legal_review",
        form="objection_legal_review",
        before_actor=("handler", frozenset({"supervision"})),
        before_data={
            "proposal": "maintain",
            "subject_name": "许昌某化工有限公司",
            "category": "行政处罚",
            "severity": "general",
            "decided_at": decided,
            "verification_reason": "经核查，处罚决定有效",
        },
    )


FIXTURE_FLOW = Flow(
    key="simple_review",
    before="first_review",
    after="gw",
    flow="f2",
    form="simple_confirm",
    before_actor=("registrar", frozenset({"office"})),
    before_data={"decision": "approve"},
)


@dataclass
class Studio:
    base_url: str
    flow: Flow
    instance_id: int
    sessions: object
    settings: object

    def url(self, path: str) -> str:
        return self.base_url + path


def _waiting_instance(session, settings, flow: Flow) -> int:
    from engine import credit, runtime
    from engine.access import Actor
    from engine.demo_archive import uscc

    if flow.key == "simple_review":
        actor = Actor("registrar", frozenset({"office"}))
        variables = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}
    else:
        actor = Actor("liaison", frozenset({"credit_liaison"}))
        record = credit.create_record(
            session,
            actor="liaison",
            subject_type="unit",
            subject_name="许昌某化工有限公司",
            subject_code=uscc("91", "MA3X0001"),
            category="行政处罚",
            severity="general",
            doc_no="魏应急罚〔2026〕7号",
            decided_at=credit.local_today() - timedelta(days=30),
            facts="未按规定开展安全培训",
        )
        variables = {
            "record_id": record.id,
            "applicant_name": "许昌某化工有限公司",
            "applicant_contact": "13800138000",
            "objection_reason": "处罚决定已被复议撤销",
        }
    return runtime.start_instance(runtime.Context(session, actor, settings), flow.key, variables=variables).id


@pytest.fixture
def studio_server(tmp_path):
    """The app on 127.0.0.1 (random port), SQLite, demo users, the flows deployed as version 1
    and one instance waiting at the step the review will follow."""
    import engine.models  # noqa: F401
    from engine.config import Settings
    from engine.db import Base, make_engine, make_session_factory, transaction
    from engine.definitions import deploy_paths
    from engine.users import seed_demo
    from webapp import create_app

    flow = objection_flow() if OBJECTION.exists() else FIXTURE_FLOW
    bundle = (
        [REPO / "processes", REPO / "forms"]
        if OBJECTION.exists()
        else [
            FIXTURES / n
            for n in ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
        ]
    )
    url = f"sqlite:///{tmp_path}/studio.db"
    settings = Settings(database_url=url, instance_dir=tmp_path / "instance", secret_key="browser-test")
    db_engine = make_engine(url)
    Base.metadata.create_all(db_engine)
    sessions = make_session_factory(db_engine)
    with transaction(sessions) as session:
        seed_demo(session)
        deploy_paths(session, bundle, user="analyst", note="从仓库部署")
    with transaction(sessions) as session:
        instance_id = _waiting_instance(session, settings, flow)
    app = create_app(settings, STUDIO_REPOSITORY=str(REPO))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Studio(f"http://127.0.0.1:{server.server_port}", flow, instance_id, sessions, settings)
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["chengxin"]["engine"].dispose()
    db_engine.dispose()


def log_in(page, studio: Studio, username: str) -> None:
    page.goto(studio.url("/login"))
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill("demo123")
    with page.expect_navigation():
        page.get_by_role("button", name="登录").click()


ADD_REVIEW_STEP = """([before, after, flowId]) => {
  const modeler = window.chengxinModeler;
  const registry = modeler.get('elementRegistry');
  const modeling = modeler.get('modeling');
  const source = registry.get(before);
  const target = registry.get(after);
  const flow = registry.get(flowId);
  const shape = modeler.get('elementFactory').createShape({ type: 'bpmn:UserTask' });
  const position = { x: (source.x + target.x) / 2 + 50, y: source.y + source.height + 90 };
  const created = modeling.createShape(shape, position, source.parent);
  modeling.updateProperties(created, { id: 'chief_review', name: '股室负责人复核' });
  modeling.reconnectEnd(flow, created, { x: created.x, y: created.y + created.height / 2 });
  modeling.connect(created, target);
  modeler.get('selection').select(created);
  return created.id;
}"""


def open_group(page, title: str) -> None:
    """Open a properties panel group (they start collapsed) by its Chinese title."""
    header = page.locator(".bio-properties-panel-group-header", has_text=title).first
    header.wait_for()
    if "open" not in (header.get_attribute("class") or ""):
        header.click()


def business_object(page, element_id: str, attribute: str):
    return page.evaluate(
        "([id, attr]) => window.chengxinModeler.get('elementRegistry').get(id).businessObject.get(attr)",
        [element_id, attribute],
    )


def test_analyst_adds_a_review_step_deploys_and_migrates_a_waiting_instance(watched_page, studio_server):
    page, studio, flow = watched_page.page, studio_server, studio_server.flow
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm and leaving the edited diagram
    log_in(page, studio, "analyst")

    page.goto(studio.url(f"/studio/processes/{flow.key}/edit"))
    page.wait_for_function(
        "id => window.chengxinModeler && window.chengxinModeler.get('elementRegistry').get(id)",
        arg=flow.before,
    )
    assert page.evaluate(ADD_REVIEW_STEP, [flow.before, flow.after, flow.flow]) == "chief_review"

    # The candidate group is set in the properties panel, offered from the real groups.
    open_group(page, "人员分配")
    groups = page.locator("#bio-properties-panel-candidateGroups")
    assert groups.get_attribute("list") == "cx-groups"
    assert page.locator("#cx-groups option[value='section_chiefs']").count() == 1
    groups.fill("section_chiefs")
    page.wait_for_function(
        "() => window.chengxinModeler.get('elementRegistry').get('chief_review')"
        ".businessObject.get('camunda:candidateGroups') === 'section_chiefs'"
    )

    # Validate: the server refuses the step without a form and the modeler marks it.
    page.get_by_role("button", name="校验").click()
    status = page.locator("[data-studio-status]")
    page.wait_for_function(
        "() => document.querySelector('[data-studio-status]').textContent.includes('未通过')"
    )
    problem = page.locator("[data-studio-problems] li[data-element-id='chief_review']")
    assert "表单" in problem.inner_text()
    assert page.evaluate("() => window.chengxinModeler.get('canvas').hasMarker('chief_review', 'cx-error')")

    # Fix it in the panel: a Camunda form reference to an existing form.
    open_group(page, "表单")
    page.locator("#bio-properties-panel-formType").select_option("formRef")
    form_ref = page.locator("#bio-properties-panel-formRef")
    form_ref.fill(flow.form)
    page.wait_for_function(
        "form => window.chengxinModeler.get('elementRegistry').get('chief_review')"
        ".businessObject.get('camunda:formRef') === form",
        arg=flow.form,
    )
    page.get_by_role("button", name="校验").click()
    page.wait_for_function(
        "() => document.querySelector('[data-studio-status]').textContent.includes('校验通过')"
    )
    assert not page.evaluate(
        "() => window.chengxinModeler.get('canvas').hasMarker('chief_review', 'cx-error')"
    )

    # Deploy with a change note: version 2.
    page.get_by_label("变更说明").fill("核查后增加股室负责人复核")
    page.get_by_role("button", name="部署为新版本").click()
    page.wait_for_function(
        "() => document.querySelector('[data-studio-status]').textContent.includes('已部署为版本')"
    )
    assert "已部署为版本 2" in status.inner_text()

    # The version list shows who, the note, and that version 2 is not in processes/ yet.
    with page.expect_navigation():
        status.get_by_role("link", name="查看版本列表").click()
    row = page.locator("[data-studio-versions] tr[data-version='2']")
    assert "核查后增加股室负责人复核" in row.inner_text() and "analyst" in row.inner_text()
    assert "不在 processes/ 中" in row.inner_text()
    assert "运行中 1" in page.locator("[data-studio-versions] tr[data-version='1']").inner_text()

    # Dry run, then migrate the waiting instance.
    with page.expect_navigation():
        page.locator("[data-studio-versions] tr[data-version='1']").get_by_role(
            "link", name="迁移到最新版"
        ).click()
    plan_row = page.locator(f"[data-studio-plan] tr[data-instance-id='{studio.instance_id}']")
    assert "可以迁移" in plan_row.inner_text()
    assert plan_row.locator("input[type=checkbox]").is_checked()
    with page.expect_navigation():
        page.locator("[data-studio-migrate]").click()
    outcome = page.locator(f"[data-studio-outcomes] tr[data-instance-id='{studio.instance_id}']")
    assert "已迁移到版本 2" in outcome.inner_text()
    # The refused validation is the only failed request the browser logs.
    unexpected = [e for e in watched_page.console_errors if not ("422" in e and "/validate" in e)]
    assert unexpected == [] and watched_page.offsite_requests() == []

    _the_migrated_instance_takes_the_new_step(studio)
    _a_new_instance_starts_on_version_2(studio)


def _the_migrated_instance_takes_the_new_step(studio: Studio) -> None:
    from engine import runtime
    from engine.access import Actor
    from engine.db import transaction
    from engine.models import HumanTask, ProcessInstance

    flow = studio.flow
    with transaction(studio.sessions) as session:
        instance = session.get(ProcessInstance, studio.instance_id)
        assert instance.version == 2
        task = session.scalar(
            select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == "open")
        )
        assert task.element_id == flow.before
        actor = Actor(flow.before_actor[0], flow.before_actor[1])
        runtime.complete_task(runtime.Context(session, actor, studio.settings), task.id, flow.before_data)
        step = session.scalar(
            select(HumanTask).where(HumanTask.instance_id == instance.id, HumanTask.status == "open")
        )
        assert (step.element_id, step.name, step.candidate_groups) == (
            "chief_review",
            "股室负责人复核",
            ["section_chiefs"],
        )


def _a_new_instance_starts_on_version_2(studio: Studio) -> None:
    from engine.db import transaction

    with transaction(studio.sessions) as session:
        instance_id = _waiting_instance(session, studio.settings, studio.flow)
    with transaction(studio.sessions) as session:
        from engine.models import ProcessInstance

        assert session.get(ProcessInstance, instance_id).version == 2


def test_diff_page_and_form_editor(watched_page, studio_server):
    """The side-by-side diff marks the renamed step as changed; the form editor saves a draft."""
    from engine import definitions
    from engine import studio as studio_engine
    from engine.access import Actor
    from engine.db import transaction
    from engine.runtime import Context

    page, studio, flow = watched_page.page, studio_server, studio_server.flow
    analyst = Actor("analyst", frozenset({"analysts"}))
    with transaction(studio.sessions) as session:
        ctx = Context(session, analyst, studio.settings)
        xml = definitions.bpmn_xml(session, definitions.get_definition(session, flow.key))
        renamed = xml.replace(f'id="{flow.before}" name="', f'id="{flow.before}" name="新')
        studio_engine.deploy_process(ctx, flow.key, "改名", renamed)
    log_in(page, studio, "analyst")
    page.goto(studio.url(f"/studio/processes/{flow.key}/diff"))
    page.wait_for_function("() => document.querySelector('[data-bpmn-diff]').chengxinDiff")
    changed = page.evaluate(
        "() => Object.keys(document.querySelector('[data-bpmn-diff]').chengxinDiff.changes._changed)"
    )
    assert flow.before in changed
    assert flow.before in page.locator("[data-studio-changes]").inner_text()

    page.goto(studio.url(f"/studio/forms/{flow.form}"))
    page.wait_for_function("() => document.querySelector('[data-form-editor]').chengxinFormEditor")
    with page.expect_navigation():
        page.get_by_role("button", name="保存表单草稿").click()
    assert "表单草稿已保存" in page.locator(".flashes").inner_text()
    assert watched_page.console_errors == [] and watched_page.offsite_requests() == []
