"""The built bundles in a real Chromium: they mount from data attributes, work under a
strict CSP without inline scripts, log no console errors and fetch nothing off 127.0.0.1."""

import json
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import engine.attachments  # noqa: F401  (the workspace's tables, before create_all)
import engine.credit  # noqa: F401
import engine.login_throttle  # noqa: F401
import engine.models  # noqa: F401
import engine.urging  # noqa: F401
import engine.worklist  # noqa: F401
from engine.config import Settings
from engine.db import Base, make_engine, make_session_factory, transaction
from engine.definitions import deploy_paths
from engine.users import seed_demo
from webapp import create_app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LOOPBACK = "127.0.0.1"

# What the app's pages will send; the bundles must work under it.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
)

BPMN_V1 = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"
    xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    xmlns:di="http://www.omg.org/spec/DD/20100524/DI"
    id="Definitions_1" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="complaint" name="投诉举报" isExecutable="true">
    <bpmn:startEvent id="start" name="收到举报"/>
    <bpmn:sequenceFlow id="flow_1" sourceRef="start" targetRef="register"/>
    <bpmn:userTask id="register" name="登记"/>
    <bpmn:sequenceFlow id="flow_2" sourceRef="register" targetRef="review"/>
    <bpmn:userTask id="review" name="受理审查"/>
    <bpmn:sequenceFlow id="flow_3" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end" name="办结"/>
  </bpmn:process>
  <bpmndi:BPMNDiagram id="Diagram_1">
    <bpmndi:BPMNPlane id="Plane_1" bpmnElement="complaint">
      <bpmndi:BPMNShape id="start_di" bpmnElement="start"><dc:Bounds x="100" y="100" width="36" height="36"/></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="register_di" bpmnElement="register"><dc:Bounds x="190" y="78" width="100" height="80"/></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="review_di" bpmnElement="review"><dc:Bounds x="350" y="78" width="100" height="80"/></bpmndi:BPMNShape>
      <bpmndi:BPMNShape id="end_di" bpmnElement="end"><dc:Bounds x="512" y="100" width="36" height="36"/></bpmndi:BPMNShape>
      <bpmndi:BPMNEdge id="flow_1_di" bpmnElement="flow_1"><di:waypoint x="136" y="118"/><di:waypoint x="190" y="118"/></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="flow_2_di" bpmnElement="flow_2"><di:waypoint x="290" y="118"/><di:waypoint x="350" y="118"/></bpmndi:BPMNEdge>
      <bpmndi:BPMNEdge id="flow_3_di" bpmnElement="flow_3"><di:waypoint x="450" y="118"/><di:waypoint x="512" y="118"/></bpmndi:BPMNEdge>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
"""

# Version 2: the review task is renamed and a verification task is added before the end.
BPMN_V2 = (
    BPMN_V1.replace('name="受理审查"', 'name="受理审查（股室）"')
    .replace(
        'targetRef="end"/>',
        'targetRef="verify"/>\n    <bpmn:userTask id="verify" name="核查"/>\n'
        '    <bpmn:sequenceFlow id="flow_4" sourceRef="verify" targetRef="end"/>',
    )
    .replace('<dc:Bounds x="512" y="100"', '<dc:Bounds x="672" y="100"')
    .replace(
        '<bpmndi:BPMNEdge id="flow_3_di" bpmnElement="flow_3"><di:waypoint x="450" y="118"/><di:waypoint x="512" y="118"/>',
        '<bpmndi:BPMNShape id="verify_di" bpmnElement="verify"><dc:Bounds x="510" y="78" width="100" height="80"/></bpmndi:BPMNShape>\n'
        '      <bpmndi:BPMNEdge id="flow_3_di" bpmnElement="flow_3"><di:waypoint x="450" y="118"/><di:waypoint x="510" y="118"/>'
        '</bpmndi:BPMNEdge>\n      <bpmndi:BPMNEdge id="flow_4_di" bpmnElement="flow_4"><di:waypoint x="610" y="118"/>'
        '<di:waypoint x="672" y="118"/>',
    )
)

FORM_SCHEMA = {
    "type": "default",
    "id": "complaint_register",
    "schemaVersion": 16,
    "components": [
        {
            "type": "textfield",
            "id": "f_subject",
            "key": "subject_name",
            "label": "被举报单位",
            "validate": {"required": True},
        },
        {
            "type": "textfield",
            "id": "f_uscc",
            "key": "subject_uscc",
            "label": "统一社会信用代码",
            "properties": {"format": "uscc"},
        },
        {"type": "textarea", "id": "f_content", "key": "content", "label": "举报内容"},
    ],
}


def page_html(title, bundles, body):
    """A test page shaped like the app's: CSP meta, our bundles, no inline script."""
    styles = "".join(f'<link rel="stylesheet" href="dist/{name}.css">' for name in bundles)
    scripts = "".join(f'<script defer src="dist/{name}.js"></script>' for name in bundles)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="csrf-token" content="token-123">
<title>{title}</title>
<link rel="stylesheet" href="dist/app.css">{styles}
<script defer src="dist/app.js"></script>{scripts}
</head><body><main class="app-main">{body}</main></body></html>"""


def json_script(element_id, value):
    return (
        f'<script type="application/json" id="{element_id}">{json.dumps(value, ensure_ascii=False)}</script>'
    )


def form_page(static_server, errors=None):
    body = (
        '<form method="post" action="/submit" class="form">'
        '<input type="hidden" name="csrf_token" value="token-123">'
        '<div data-form-schema="schema" data-form-data="prefill" data-form-errors="errors"></div>'
        '<div class="form-actions"><button type="submit" class="btn btn-primary">提交</button></div>'
        "</form>"
        + json_script("schema", FORM_SCHEMA)
        + json_script("prefill", {"content": "仓库堆放易燃物"})
        + json_script("errors", errors or {})
    )
    return static_server.write("form.html", page_html("表单", ["form-viewer"], body))


def test_form_viewer_posts_form_data_as_json(watched_page, static_server):
    page = watched_page.page
    page.goto(form_page(static_server))
    page.get_by_label("被举报单位").fill("某某化工有限公司")
    watched_page.screenshot("form-viewer")
    with page.expect_response(static_server.url("submit")):
        page.get_by_role("button", name="提交").click()

    [post] = static_server.posts
    fields = post.form()
    assert fields["csrf_token"] == ["token-123"]
    data = json.loads(fields["data"][0])
    assert data["subject_name"] == "某某化工有限公司"
    assert data["content"] == "仓库堆放易燃物"
    watched_page.assert_clean()


def test_form_viewer_blocks_submission_when_required_field_is_empty(watched_page, static_server):
    page = watched_page.page
    page.goto(form_page(static_server))
    page.get_by_label("被举报单位").wait_for()
    page.get_by_role("button", name="提交").click()

    page.locator(".fjs-form-field-error").first.wait_for()
    assert static_server.posts == []
    assert page.locator('input[name="data"]').input_value() == ""
    watched_page.assert_clean()


def test_form_viewer_shows_server_errors_next_to_fields(watched_page, static_server):
    page = watched_page.page
    errors = {"subject_uscc": ["统一社会信用代码校验位不正确"], "_schema": ["任务已被他人办理"]}
    page.goto(form_page(static_server, errors))

    field_error = page.locator(".fjs-form-field-error", has_text="统一社会信用代码校验位不正确")
    field_error.wait_for()
    uscc_field = page.locator(".fjs-form-field", has=page.get_by_label("统一社会信用代码"))
    assert uscc_field.locator(".fjs-form-field-error").inner_text().strip() == "统一社会信用代码校验位不正确"
    assert page.locator(".cx-form-errors").inner_text().strip() == "任务已被他人办理"
    watched_page.screenshot("form-viewer-server-errors")
    watched_page.assert_clean()


def bpmn_viewer_page(static_server, state):
    static_server.write("diagram.bpmn", BPMN_V1)
    body = '<div data-bpmn-viewer data-xml-url="diagram.bpmn" data-state="state"></div>' + json_script(
        "state", state
    )
    return static_server.write("viewer.html", page_html("流程图", ["bpmn-viewer"], body))


def test_bpmn_viewer_marks_progress_and_shows_counts(watched_page, static_server):
    page = watched_page.page
    state = {
        "completed": ["start", "flow_1", "register"],
        "active": ["review"],
        "overdue": ["review"],
        "counts": {"review": {"count": 3, "avg_hours": 30.5}},
    }
    page.goto(bpmn_viewer_page(static_server, state))

    page.locator(".cx-bpmn-count").wait_for()
    assert page.locator('g.djs-element.cx-completed[data-element-id="register"]').count() == 1
    assert page.locator('g.djs-element.cx-completed[data-element-id="flow_1"]').count() == 1
    assert page.locator('g.djs-element.cx-active[data-element-id="review"]').count() == 1
    assert page.locator('g.djs-element.cx-overdue[data-element-id="review"]').count() == 1
    assert page.locator('g.djs-element.cx-active[data-element-id="register"]').count() == 0
    assert page.locator(".cx-bpmn-count").inner_text() == "3"
    assert page.locator(".cx-bpmn-duration").inner_text() == "均 30.5 小时"
    overdue_fill = page.locator('g.cx-overdue[data-element-id="review"] .djs-visual > rect').evaluate(
        "e => getComputedStyle(e).fill"
    )
    completed_fill = page.locator('g.cx-completed[data-element-id="register"] .djs-visual > rect').evaluate(
        "e => getComputedStyle(e).fill"
    )
    assert overdue_fill != completed_fill
    watched_page.screenshot("bpmn-viewer")
    watched_page.assert_clean()


def test_bpmn_viewer_reports_a_missing_diagram_visibly(watched_page, static_server):
    page = watched_page.page
    body = '<div data-bpmn-viewer data-xml-url="missing.bpmn"></div>'
    page.goto(static_server.write("viewer.html", page_html("流程图", ["bpmn-viewer"], body)))

    assert page.locator(".cx-load-error").inner_text() == "加载失败，请刷新页面重试。"
    assert any("missing.bpmn" in message for message in watched_page.console_errors)


def test_charts_render_and_link_bars(watched_page, static_server):
    page = watched_page.page
    option = {
        "tooltip": {},
        "xAxis": {"type": "category", "data": ["投诉举报", "信用异议", "信用修复"]},
        "yAxis": {"type": "value"},
        "series": [
            {"type": "bar", "data": [{"value": 5, "href": "/instances.html?process=complaint"}, 3, 2]}
        ],
    }
    body = '<div id="chart" data-chart="option" style="height:320px"></div>' + json_script("option", option)
    static_server.write("instances.html", "<!doctype html><title>实例列表</title>")
    page.goto(static_server.write("charts.html", page_html("统计", ["charts"], body)))

    canvas = page.locator("#chart canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    assert box["width"] > 300 and box["height"] == 320
    watched_page.screenshot("charts")
    watched_page.assert_clean()

    # The first bar is the tallest: click near its top middle (grid is the default 10%/60px).
    chart_box = page.locator("#chart").bounding_box()
    with page.expect_navigation():
        page.mouse.click(
            chart_box["x"] + 10 + (chart_box["width"] - 20) * 0.2, chart_box["y"] + chart_box["height"] * 0.5
        )
    assert page.url == static_server.url("instances.html?process=complaint")


def test_bpmn_modeler_edits_camunda_attributes_and_saves(watched_page, static_server):
    page = watched_page.page
    static_server.write("diagram.bpmn", BPMN_V1)
    body = '<div data-bpmn-modeler data-xml-url="diagram.bpmn" data-save-url="/save"></div>'
    page.goto(static_server.write("modeler.html", page_html("建模", ["bpmn-modeler"], body)))
    # A function, not a bare expression: Playwright compiles bare expressions with eval, which our CSP refuses.
    page.wait_for_function(
        "() => window.chengxinModeler && window.chengxinModeler.get('elementRegistry').get('review')"
    )

    page.evaluate(
        """() => {
          const modeler = window.chengxinModeler;
          const review = modeler.get('elementRegistry').get('review');
          modeler.get('modeling').updateProperties(review, {'camunda:candidateGroups': 'section_chiefs'});
          modeler.get('selection').select(review);
        }"""
    )
    page.locator(".bio-properties-panel-header-label", has_text="受理审查").wait_for()
    assert page.locator(".bts-toggle-mode").count() == 1  # token simulation switch
    watched_page.screenshot("bpmn-modeler")

    with page.expect_response(static_server.url("save")):
        page.get_by_role("button", name="保存").click()
    [post] = static_server.posts
    assert post.path == "/save"
    assert post.headers["X-CSRFToken"] == "token-123"
    assert 'camunda:candidateGroups="section_chiefs"' in post.body.decode()
    page.locator(".cx-bpmn-modeler__status", has_text="已保存").wait_for()
    watched_page.assert_clean()


def test_bpmn_modeler_shows_refused_definition_on_the_diagram(watched_page, static_server):
    page = watched_page.page
    static_server.write("diagram.bpmn", BPMN_V1)
    static_server.answer(
        "/save",
        422,
        {
            "error": "invalid_definition",
            "errors": [
                {"file": "complaint.bpmn", "line": 9, "element_id": "review", "message": "用户任务缺少表单"}
            ],
        },
    )
    body = '<div data-bpmn-modeler data-xml-url="diagram.bpmn" data-save-url="/save"></div>'
    page.goto(static_server.write("modeler.html", page_html("建模", ["bpmn-modeler"], body)))
    # A function, not a bare expression: Playwright compiles bare expressions with eval, which our CSP refuses.
    page.wait_for_function(
        "() => window.chengxinModeler && window.chengxinModeler.get('elementRegistry').get('review')"
    )

    with page.expect_response(static_server.url("save")):
        page.get_by_role("button", name="保存").click()
    page.locator(".cx-bpmn-modeler__problems li").wait_for()
    assert page.locator(".cx-bpmn-modeler__problems li").all_inner_texts() == ["review：用户任务缺少表单"]
    assert page.locator(".cx-bpmn-modeler__status").inner_text() == "保存失败（422）"
    assert page.locator('g.cx-error[data-element-id="review"]').count() == 1
    # The browser logs the 422 response itself; nothing else may be logged.
    assert [error for error in watched_page.console_errors if "422" not in error] == []
    assert watched_page.offsite_requests() == []


def test_bpmn_diff_marks_added_and_changed_elements(watched_page, static_server):
    page = watched_page.page
    static_server.write("v1.bpmn", BPMN_V1)
    static_server.write("v2.bpmn", BPMN_V2)
    body = '<div data-bpmn-diff data-old-url="v1.bpmn" data-new-url="v2.bpmn" data-old-label="版本 1" data-new-label="版本 2"></div>'
    page.goto(static_server.write("diff.html", page_html("版本对比", ["bpmn-diff"], body)))

    page.locator(".cx-bpmn-diff__list table").wait_for()
    panes = page.locator(".cx-bpmn-diff__pane")
    assert panes.nth(1).locator('g.cx-diff-added[data-element-id="verify"]').count() == 1
    assert panes.nth(0).locator('g.cx-diff-changed[data-element-id="review"]').count() == 1
    assert panes.nth(1).locator('g.cx-diff-changed[data-element-id="review"]').count() == 1
    assert panes.nth(0).locator('[data-element-id="verify"]').count() == 0
    rows = page.locator(".cx-bpmn-diff__list tbody tr").all_inner_texts()
    assert any(row.startswith("新增\tverify") for row in rows)
    assert any(row.startswith("修改\treview") and "name" in row for row in rows)
    watched_page.screenshot("bpmn-diff")
    watched_page.assert_clean()


def test_form_editor_keeps_schema_in_hidden_input_and_previews(watched_page, static_server):
    page = watched_page.page
    body = (
        '<form method="post" action="/forms"><div data-form-editor data-form-schema="schema"></div>'
        '<button type="submit" class="btn btn-primary">保存表单</button></form>'
        + json_script("schema", FORM_SCHEMA)
    )
    page.goto(static_server.write("editor.html", page_html("表单设计", ["form-editor"], body)))

    page.locator(".cx-form-editor__preview .fjs-form-field").first.wait_for()
    assert page.locator(".cx-form-editor__preview").get_by_label("被举报单位").count() == 1
    saved = json.loads(page.locator('input[name="schema"]').input_value())
    uscc = next(component for component in saved["components"] if component["key"] == "subject_uscc")
    assert uscc["properties"] == {"format": "uscc"}
    watched_page.screenshot("form-editor")
    watched_page.assert_clean()


@pytest.mark.parametrize("width", [375, 1366])
def test_app_kit_layout_confirm_dismiss_and_autosubmit(watched_page, static_server, width):
    page = watched_page.page
    page.set_viewport_size({"width": width, "height": 768})
    body = (
        '<header class="app-header"><a class="app-brand" href="#">诚信</a>'
        '<button class="app-nav-toggle" data-nav-toggle aria-controls="nav" aria-expanded="false">菜单</button>'
        '<nav class="app-nav" id="nav"><ul><li><a href="#" aria-current="page">待办 <span class="nav-badge">4</span></a></li>'
        '<li><a href="#">监控</a></li></ul></nav></header>'
        '<div class="flashes"><div class="flash flash-success"><span>已保存</span>'
        '<button class="flash-close" data-dismiss aria-label="关闭">×</button></div></div>'
        '<form method="get" action="filter.html" class="toolbar"><label>状态 '
        '<select name="status" data-autosubmit><option value="">全部</option><option value="running">进行中</option></select>'
        "</label></form>"
        '<div class="table-wrap"><table class="table"><thead><tr><th>任务</th><th>时限</th></tr></thead><tbody>'
        '<tr><td>受理审查</td><td><span class="badge badge-sla-normal">正常</span></td></tr>'
        '<tr><td>核查</td><td><span class="badge badge-sla-warning">临期</span></td></tr>'
        '<tr><td>复查</td><td><span class="badge badge-sla-overdue">超期</span></td></tr></tbody></table></div>'
        '<form method="post" action="/terminate" data-confirm="确定终止该流程实例？" class="form-actions">'
        '<button type="button" class="btn btn-secondary">返回</button>'
        '<button type="submit" class="btn btn-danger">终止</button></form>'
    )
    app_page = static_server.write("app.html", page_html("界面", [], body))
    static_server.write("filter.html", "<!doctype html><title>筛选</title>")
    page.goto(app_page)

    if width < 768:
        assert not page.locator(".app-nav").is_visible()
        page.get_by_role("button", name="菜单").click()
        assert page.get_by_role("button", name="菜单").get_attribute("aria-expanded") == "true"
    assert page.locator(".app-nav").is_visible()
    assert (
        page.locator(".badge-sla-overdue").evaluate("e => getComputedStyle(e).backgroundColor")
        == "rgb(254, 226, 226)"
    )
    watched_page.screenshot(f"app-kit-{width}")

    page.get_by_role("button", name="关闭").click()
    assert page.locator(".flash").count() == 0

    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="终止").click()
    page.wait_for_timeout(200)
    assert static_server.posts == []
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_response(static_server.url("terminate")):
        page.get_by_role("button", name="终止").click()
    assert [post.path for post in static_server.posts] == ["/terminate"]

    page.goto(app_page)
    with page.expect_navigation():
        page.get_by_label("状态").select_option("running")
    assert page.url == static_server.url("filter.html?status=running")
    watched_page.assert_clean()


# What Chromium 90 (the domestic browsers' floor) lacks but the libraries call.
REMOVE_POST_CHROMIUM_90_BUILTINS = """
delete Object.hasOwn; delete Array.prototype.at; delete String.prototype.at;
delete Array.prototype.toSorted; delete globalThis.structuredClone;
"""


def test_bundles_run_without_built_ins_newer_than_chromium_90(watched_page, static_server):
    page = watched_page.page
    page.add_init_script(REMOVE_POST_CHROMIUM_90_BUILTINS)

    page.goto(bpmn_viewer_page(static_server, {"active": ["review"]}))
    page.locator('g.cx-active[data-element-id="review"]').wait_for()
    page.evaluate("() => document.querySelector('[data-bpmn-viewer]').chengxinViewer.get('canvas').zoom(0.8)")

    page.goto(form_page(static_server))
    page.get_by_label("被举报单位").fill("某某化工有限公司")
    with page.expect_response(static_server.url("submit")):
        page.get_by_role("button", name="提交").click()
    assert json.loads(static_server.posts[0].form()["data"][0])["subject_name"] == "某某化工有限公司"
    watched_page.assert_clean()


def test_form_viewer_formnovalidate_skips_the_block_and_keeps_the_button(watched_page, static_server):
    page = watched_page.page
    body = (
        '<form method="post" action="/submit">'
        '<div data-form-schema="schema"></div>'
        '<button type="submit" name="action" value="complete">提交</button>'
        '<button type="submit" name="action" value="send_back" formnovalidate>退回</button>'
        "</form>" + json_script("schema", FORM_SCHEMA)
    )
    page.goto(static_server.write("buttons.html", page_html("表单", ["form-viewer"], body)))
    page.get_by_label("被举报单位").wait_for()
    with page.expect_response(static_server.url("submit")):
        page.get_by_role("button", name="退回").click()

    [send_back] = (post.form() for post in static_server.posts)
    assert send_back["action"] == ["send_back"]
    assert json.loads(send_back["data"][0])["subject_name"] == ""
    watched_page.assert_clean()


def test_form_viewer_enter_in_a_single_field_form_submits_the_page_form(watched_page, static_server):
    page = watched_page.page
    schema = {"type": "default", "components": [{"type": "textfield", "key": "reason", "label": "理由"}]}
    body = (
        '<form method="post" action="/submit"><div data-form-schema="schema"></div>'
        '<button type="submit" name="action" value="complete">提交</button></form>'
        + json_script("schema", schema)
    )
    page.goto(static_server.write("single.html", page_html("表单", ["form-viewer"], body)))
    page.get_by_label("理由").fill("材料齐全")
    with page.expect_response(static_server.url("submit")):
        page.get_by_label("理由").press("Enter")

    [post] = (post.form() for post in static_server.posts)
    assert post["action"] == ["complete"]
    assert json.loads(post["data"][0]) == {"reason": "材料齐全"}
    watched_page.assert_clean()


def settle(page):
    """Let form-js finish mounting: its fields validate their initial values in effects after paint."""
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 100))))"
    )


def field_errors(page, label):
    field = page.locator(".fjs-form-field", has=page.get_by_label(label))
    return field.locator(".fjs-form-field-error li").all_inner_texts()


USCC_ERROR = "统一社会信用代码校验位错误"


def prefilled_uscc_page(static_server, prefill):
    body = (
        '<form method="post" action="/submit" class="form">'
        '<div data-form-schema="schema" data-form-data="prefill" data-form-errors="errors"></div>'
        '<button type="submit" class="btn btn-primary">提交</button></form>'
        + json_script("schema", FORM_SCHEMA)
        + json_script("prefill", prefill)
        + json_script("errors", {"subject_uscc": [USCC_ERROR]})
    )
    return static_server.write("uscc.html", page_html("表单", ["form-viewer"], body))


def test_form_viewer_keeps_server_errors_on_prefilled_fields_until_edited(watched_page, static_server):
    page = watched_page.page
    page.goto(prefilled_uscc_page(static_server, {"subject_uscc": "91411002MA00000000"}))
    page.get_by_label("统一社会信用代码").wait_for()
    settle(page)
    assert field_errors(page, "统一社会信用代码") == [USCC_ERROR]

    # A blocked submission (empty required field) re-validates every field: the server's word stays.
    page.get_by_role("button", name="提交").click()
    settle(page)
    assert static_server.posts == []
    assert field_errors(page, "被举报单位") != []
    assert field_errors(page, "统一社会信用代码") == [USCC_ERROR]

    page.get_by_label("被举报单位").fill("某某化工有限公司")
    settle(page)
    assert field_errors(page, "统一社会信用代码") == [USCC_ERROR]
    page.get_by_label("统一社会信用代码").fill("91411002MA00000001")
    uscc_field = page.locator(".fjs-form-field", has=page.get_by_label("统一社会信用代码"))
    uscc_field.locator(".fjs-form-field-error").wait_for(state="detached")  # form-js debounces input
    watched_page.screenshot("form-viewer-server-error-edited")
    watched_page.assert_clean()


def test_form_viewer_server_errors_alone_do_not_block_a_resubmission(watched_page, static_server):
    page = watched_page.page
    prefill = {"subject_name": "某某化工有限公司", "subject_uscc": "91411002MA00000000"}
    page.goto(prefilled_uscc_page(static_server, prefill))
    page.get_by_label("统一社会信用代码").wait_for()
    settle(page)
    assert field_errors(page, "统一社会信用代码") == [USCC_ERROR]
    with page.expect_response(static_server.url("submit")):
        page.get_by_role("button", name="提交").click()
    [post] = static_server.posts
    assert json.loads(post.form()["data"][0])["subject_uscc"] == "91411002MA00000000"
    watched_page.assert_clean()


def test_form_viewer_places_server_errors_in_dynamic_list_rows(watched_page, static_server):
    page = watched_page.page
    schema = {
        "type": "default",
        "components": [
            {
                "type": "dynamiclist",
                "id": "problems",
                "path": "problems",
                "label": "问题",
                "isRepeating": True,
                "allowAddRemove": True,
                "components": [
                    {"type": "textfield", "id": "suggestion", "key": "suggestion", "label": "整改建议"}
                ],
            }
        ],
    }
    errors = {
        "problems.0.suggestion": ["请填写整改建议"],
        "problems.1.suggestion": ["建议过短"],
        "_schema": ["总体错误"],
    }
    body = (
        '<form method="post" action="/submit"><div data-form-schema="schema" data-form-data="prefill" '
        'data-form-errors="errors"></div><button type="submit">提交</button></form>'
        + json_script("schema", schema)
        + json_script("prefill", {"problems": [{"suggestion": ""}, {"suggestion": "整改"}]})
        + json_script("errors", errors)
    )
    page.goto(static_server.write("list.html", page_html("表单", ["form-viewer"], body)))
    rows = page.locator(".fjs-form-field-textfield")
    rows.nth(1).wait_for()
    settle(page)
    assert [row.locator(".fjs-form-field-error li").all_inner_texts() for row in rows.all()] == [
        ["请填写整改建议"],
        ["建议过短"],
    ]
    assert page.locator(".cx-form-errors").inner_text().strip() == "总体错误"
    watched_page.assert_clean()


I18N_SCHEMA = {
    "type": "default",
    "components": [
        {"type": "textfield", "key": "title", "label": "标题", "validate": {"required": True}},
        {
            "type": "textfield",
            "key": "code",
            "label": "编号",
            "validate": {"minLength": 4, "pattern": "^[A-Z]+$"},
        },
        {
            "type": "select",
            "key": "channel",
            "label": "举报渠道",
            "values": [{"label": "来信", "value": "letter"}, {"label": "来电", "value": "phone"}],
        },
        {
            "type": "datetime",
            "key": "received",
            "label": "收到日期",
            "subtype": "date",
            "dateLabel": "收到日期",
        },
        {
            "type": "taglist",
            "key": "tags",
            "label": "标签",
            "values": [{"label": "危化品", "value": "chem"}, {"label": "消防", "value": "fire"}],
        },
    ],
}


def i18n_page(static_server, lang):
    body = (
        '<form method="post" action="/submit" class="form"><div data-form-schema="schema"></div>'
        '<button type="submit" class="btn btn-primary">提交</button></form>'
        + json_script("schema", I18N_SCHEMA)
    )
    html = page_html("表单", ["form-viewer"], body).replace('<html lang="zh-CN">', f'<html lang="{lang}">')
    return static_server.write(f"i18n-{lang}.html", html)


def test_form_viewer_speaks_chinese_by_default(watched_page, static_server):
    page = watched_page.page
    page.goto(i18n_page(static_server, "zh-CN"))
    page.get_by_label("标题").wait_for()

    assert page.locator(".fjs-form-field-select .fjs-select-display").inner_text() == "请选择"
    assert page.get_by_label("标签").get_attribute("placeholder") == "搜索"
    date = page.get_by_label("收到日期")
    assert date.get_attribute("placeholder") == "年/月/日"

    date.click()
    calendar = page.locator(".flatpickr-calendar.open")
    calendar.wait_for()
    assert calendar.locator(".flatpickr-weekday").first.inner_text().strip() == "周一"
    months = calendar.locator(".flatpickr-monthDropdown-month").all_inner_texts()
    assert months[0] == "一月" and months[11] == "十二月"
    year, bar = (
        calendar.locator(".cur-year").bounding_box(),
        calendar.locator(".flatpickr-months").bounding_box(),
    )
    assert (
        bar["x"] < year["x"] and year["x"] + year["width"] < bar["x"] + bar["width"]
    )  # the year stays in sight (2 px slack: sub-pixel rounding differs with font and load)
    assert bar["y"] - 2 <= year["y"] and year["y"] + year["height"] <= bar["y"] + bar["height"] + 2
    watched_page.screenshot("form-viewer-zh-calendar")
    date.press("Escape")

    page.get_by_label("标签").fill("不存在的标签")
    assert page.locator(".fjs-dropdownlist-empty").inner_text() == "无匹配项"

    page.get_by_label("编号").fill("ab")
    page.get_by_label("编号").press("Tab")  # its errors show on blur and move the button down
    settle(page)
    page.get_by_role("button", name="提交").click()
    settle(page)
    assert field_errors(page, "标题") == ["此项为必填项。"]
    assert field_errors(page, "编号") == ["格式不正确。", "至少 4 个字符。"]
    assert static_server.posts == []
    watched_page.screenshot("form-viewer-zh")
    watched_page.assert_clean()


def test_form_viewer_keeps_english_on_english_pages(watched_page, static_server):
    page = watched_page.page
    page.goto(i18n_page(static_server, "en"))
    page.get_by_label("标题").wait_for()

    assert page.locator(".fjs-form-field-select .fjs-select-display").inner_text() == "Select"
    assert page.get_by_label("标签").get_attribute("placeholder") == "Search"
    page.get_by_label("收到日期").click()
    assert page.locator(".flatpickr-calendar.open .flatpickr-weekday").first.inner_text().strip() == "Sun"
    page.get_by_role("button", name="提交").click()
    settle(page)
    assert field_errors(page, "标题") == ["Field is required."]
    watched_page.assert_clean()


@pytest.fixture
def app_server(tmp_path):
    """The real app on 127.0.0.1 (random port), SQLite, demo users, the simple_review fixture flow."""
    url = f"sqlite:///{tmp_path}/assets.db"
    db_engine = make_engine(url)
    Base.metadata.create_all(db_engine)
    with transaction(make_session_factory(db_engine)) as session:
        seed_demo(session)
        files = ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
        deploy_paths(session, [FIXTURES / name for name in files], user="analyst", note="浏览器测试")
    db_engine.dispose()
    app = create_app(Settings(database_url=url, instance_dir=tmp_path / "instance", secret_key="assets-test"))
    server = make_server(LOOPBACK, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["chengxin"]["engine"].dispose()


LONG_TITLE = "关于许昌某化工有限公司仓库违规堆放易燃物的反映"


def test_inbox_rows_read_as_cards_on_a_phone(watched_page, app_server):
    page = watched_page.page
    page.goto(f"{app_server}/login")
    page.get_by_label("用户名").fill("registrar")
    page.get_by_label("密码").fill("demo123")
    with page.expect_navigation():
        page.get_by_role("button", name="登录").click()
    page.goto(f"{app_server}/start/simple_review")
    page.get_by_label("标题").fill(LONG_TITLE)
    with page.expect_navigation():
        page.get_by_role("button", name="提交", exact=True).click()

    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{app_server}/inbox?tab=started")
    subject = page.locator("tbody tr", has_text=LONG_TITLE).locator("td").first
    line_height = float(subject.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)"))
    # The 事项 column gets the row's width, not one character's: the title fits on two lines.
    assert subject.bounding_box()["width"] > 300
    assert subject.bounding_box()["height"] < 4 * line_height
    # Every other cell names its column, since the header row is not shown on a phone.
    cells = page.locator("tbody tr", has_text=LONG_TITLE).locator("td[data-label]")
    labels = [
        cells.nth(i).evaluate("e => getComputedStyle(e, '::before').content") for i in range(cells.count())
    ]
    assert labels == ['"流程"', '"业务编号"', '"到期"', '"发起时间"', '"当前办理"']
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    watched_page.screenshot("inbox-phone")

    page.set_viewport_size({"width": 1366, "height": 768})
    assert page.locator("thead").is_visible()
    assert subject.evaluate("e => getComputedStyle(e).display") == "table-cell"
    watched_page.assert_clean()
