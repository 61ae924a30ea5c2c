"""The staff workspace in a real Chromium against a real server: register a complaint as the
registrar, accept it and send the next step back as the section chief, see it reappear.

Runs flow 1 (processes/complaint_rectification.bpmn) once it exists, else the test fixture
flow simple_review. Uses the `browser` / `watched_page` fixtures of tests/browser/conftest.py,
which FAIL (never skip) when Chromium or the built bundles are missing.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

import engine.attachments  # noqa: F401  (register the workspace tables before create_all)
import engine.login_throttle  # noqa: F401
import engine.urging  # noqa: F401
import engine.worklist  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
FLOW_1 = REPO / "processes" / "complaint_rectification.bpmn"
FIXTURES = REPO / "tests" / "fixtures"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _bundle() -> list[Path]:
    if FLOW_1.exists():
        return [REPO / "processes", REPO / "forms"]
    names = ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
    return [FIXTURES / n for n in names]


@dataclass
class Server:
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def workspace_server(tmp_path):
    """The app on 127.0.0.1 (random port) with a SQLite database: demo users, deployed flows."""
    import engine.credit  # noqa: F401
    import engine.models  # noqa: F401
    from engine.config import Settings
    from engine.db import Base, make_engine, make_session_factory, transaction
    from engine.definitions import deploy_paths
    from engine.users import seed_demo
    from webapp import create_app

    url = f"sqlite:///{tmp_path}/workspace.db"
    db_engine = make_engine(url)
    Base.metadata.create_all(db_engine)
    with transaction(make_session_factory(db_engine)) as session:
        seed_demo(session)
        deploy_paths(session, _bundle(), user="analyst", note="浏览器测试")
    db_engine.dispose()
    app = create_app(
        Settings(database_url=url, instance_dir=tmp_path / "instance", secret_key="browser-test")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Server(f"http://127.0.0.1:{server.server_port}")
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["chengxin"]["engine"].dispose()


def log_in(page, server: Server, username: str) -> None:
    """Sign in with the keyboard only: the user name field has focus, Tab, Enter."""
    page.goto(server.url("/login"))
    page.get_by_label("用户名").focus()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type("demo123")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/inbox"), page.url


def log_out(page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="退出").click()
    assert "您已安全退出" in page.locator(".flashes").inner_text()


def choose(page, label: str, option: str) -> None:
    """Pick an option of a form-js select (a searchable dropdown, not a native <select>)."""
    field = page.locator(".fjs-form-field-select", has=page.locator("label", has_text=label))
    field.locator(".fjs-select-display").click()
    field.locator(".fjs-dropdownlist-item").get_by_text(option, exact=True).click()


def nav(page, name: str) -> None:
    with page.expect_navigation():
        page.locator("#app-nav a", has_text=name).click()


def submit(page, name: str) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name=name, exact=True).click()


def flash(page) -> str:
    return page.locator(".flashes").inner_text()


def register_complaint(page, server: Server) -> str:
    """Fill flow 1's start form as the registrar; returns the business key."""
    nav(page, "发起")
    page.get_by_role("link", name="发起“投诉举报→整改”").click()
    choose(page, "举报渠道", "12350热线")
    received = page.get_by_label("收到日期")
    received.fill("2026/11/20")
    received.press("Enter")
    page.get_by_label("举报人姓名").fill("张三")
    page.get_by_label("举报人联系电话").fill("13800138000")
    page.get_by_label("被举报单位名称").fill("许昌某化工有限公司")
    choose(page, "举报类别", "重大事故隐患")
    page.get_by_label("举报内容").fill("仓库内堆放大量易燃物，未设置消防通道。")
    page.locator('input[name="files.attachments"]').set_input_files(
        [{"name": "举报信.pdf", "mimeType": "application/pdf", "buffer": PDF}]
    )
    submit(page, "提交")
    match = re.search(r"业务编号 (TS\d+)", flash(page))
    assert match, flash(page)
    assert page.url.endswith("/inbox?tab=started")
    return match.group(1)


def register_fixture_matter(page, server: Server) -> str:
    """The fallback while flow 1 is missing: simple_review, whose first step is the registrar's."""
    nav(page, "发起")
    page.get_by_role("link", name="发起“简单审核”").click()
    page.get_by_label("标题").fill("关于某企业安全隐患的反映")
    page.get_by_label("被反映单位").fill("许昌某化工有限公司")
    submit(page, "提交")
    match = re.search(r"业务编号 (LC\d+)", flash(page))
    assert match, flash(page)
    choose(page, "审核结论", "通过")
    submit(page, "办理")
    return match.group(1)


def open_claimable(page, business_key: str, task_name: str) -> None:
    page.get_by_role("link", name="可认领").click()
    row = page.locator("tbody tr", has_text=business_key)
    with page.expect_navigation():
        row.get_by_role("link", name=task_name).click()
    page.get_by_role("heading", name=task_name).wait_for()


def send_back(page, reason: str) -> None:
    page.locator("summary", has_text="退回").click()
    page.get_by_label("退回理由").fill(reason)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.locator("details[open]").get_by_role("button", name="退回").click()
    assert "已退回上一环节" in flash(page)


def test_register_accept_send_back_and_see_it_reappear(watched_page, workspace_server):
    page, server = watched_page.page, workspace_server
    flow_1 = FLOW_1.exists()

    log_in(page, server, "registrar")
    business_key = register_complaint(page, server) if flow_1 else register_fixture_matter(page, server)
    log_out(page)

    log_in(page, server, "chief")
    first, second = ("受理审查", "核查") if flow_1 else ("复核", None)
    open_claimable(page, business_key, first)
    assert page.get_by_role("button", name="办理", exact=True).is_visible()
    submit(page, "认领")
    assert "已认领" in flash(page)
    assert page.get_by_role("button", name="退回认领").is_visible()
    assert page.get_by_role("button", name="催办").count() == 0  # only for managers and the starter
    if flow_1:
        assert "举报信.pdf" in page.locator("#files-title + *").inner_text()
        assert "仓库内堆放大量易燃物" in page.locator("[data-form-schema]").inner_text()
    watched_page.screenshot("workspace-task")

    if flow_1:
        page.get_by_label("受理", exact=True).check()
        page.get_by_label("审批意见").fill("属于本局职责范围，予以受理。")
        submit(page, "办理")
        # 核查 is offered to the supervision section, which the chief belongs to: straight on.
        assert "下一步仍由您办理" in flash(page)
        page.get_by_role("heading", name=second).wait_for()
        send_back(page, "受理意见需写明核查重点")
        nav(page, "待办")
        row = page.locator("tbody tr", has_text=business_key)
        assert row.get_by_role("link", name=first).is_visible()
        with page.expect_navigation():
            row.get_by_role("link", name=first).click()
        history = page.locator("#history-title + .table-wrap").inner_text()
        assert "受理意见需写明核查重点" in history and "退回" in history and "属于本局职责范围" in history
    else:
        send_back(page, "请补充现场照片")
        log_out(page)
        log_in(page, server, "registrar")
        row = page.locator("tbody tr", has_text=business_key)
        assert row.get_by_role("link", name="初审").is_visible()

    nav(page, "待办")
    watched_page.screenshot("workspace-inbox")
    page.set_viewport_size({"width": 375, "height": 740})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    watched_page.screenshot("workspace-inbox-phone")
    watched_page.assert_clean()


def test_server_errors_show_next_to_fields_and_keep_the_input(watched_page, workspace_server):
    page, server = watched_page.page, workspace_server
    log_in(page, server, "registrar")
    if FLOW_1.exists():
        page.goto(server.url("/start/complaint_rectification"))
        choose(page, "举报渠道", "信件")
        received = page.get_by_label("收到日期")
        received.fill("2026/11/20")
        received.press("Enter")
        page.get_by_label("匿名举报").check()
        page.get_by_label("被举报单位名称").fill("许昌某化工有限公司")
        page.get_by_label("被举报单位统一社会信用代码").fill("91411000MA000000XX")  # wrong check digit
        choose(page, "举报类别", "其他")
        page.get_by_label("举报内容").fill("匿名来信")
        submit(page, "提交")
        field, kept, value = "被举报单位统一社会信用代码", "被举报单位统一社会信用代码", "91411000MA000000XX"
    else:
        page.goto(server.url("/start/simple_review"))
        page.get_by_label("标题").fill("测试")
        page.get_by_label("金额").fill("12345678901234567890")
        submit(page, "提交")
        field, kept, value = "金额", "标题", "测试"
    problems = page.locator("#form-problems").inner_text()
    assert "填写有误" in problems and field in problems
    page.get_by_label(kept).wait_for()
    assert page.get_by_label(kept).input_value() == value
    # A 422 answer is logged by Chromium as a failed load; nothing else may be.
    watched_page.console_errors[:] = [e for e in watched_page.console_errors if "status of 422" not in e]
    watched_page.assert_clean()
