"""The 系统管理 pages: users and groups, with CSRF, for admins only."""

from __future__ import annotations

import re

from .pages_client import PageClient


def test_admin_creates_user_sets_groups_and_disables_them(app):
    admin = PageClient(app, "admin")
    listing = admin.get("/admin/users")
    assert listing.status_code == 200 and "registrar" in listing.text and "承办人 李强" in listing.text
    created = admin.post(
        "/admin/users",
        {"username": "clerk", "display_name": "新登记员", "password": "secret-1", "groups": ["office"]},
    )
    assert created.status_code == 303 and created.headers["Location"] == "/admin/users/clerk"
    clerk = PageClient(app)
    assert clerk.login("clerk", "secret-1").status_code == 303
    assert clerk.get("/inbox").status_code == 200

    page = admin.get("/admin/users/clerk")
    assert "用户 clerk 已创建" in page.text and 'value="office" checked' in page.text
    assert admin.post("/admin/users/clerk/groups", {"groups": ["office", "legal"]}).status_code == 303
    assert 'value="legal" checked' in admin.get("/admin/users/clerk").text

    assert admin.post("/admin/users/clerk/disable").status_code == 303
    assert "账号已停用，0 个待办任务已退回" in admin.get("/admin/users/clerk").text
    after = clerk.get("/inbox")
    assert after.status_code == 302 and "/login" in after.headers["Location"]  # the session ended


def test_forms_without_csrf_or_with_bad_input_change_nothing(app):
    admin = PageClient(app, "admin")
    forged = admin.post("/admin/users", {"username": "mallory", "password": "secret-1"}, csrf=False)
    assert forged.status_code == 400
    refused = admin.post("/admin/users", {"username": "bad name", "password": "1"})
    assert refused.status_code == 422
    assert "用户名只能包含" in refused.text and "密码至少 6 位" in refused.text
    assert 'value="bad name"' in refused.text  # the form keeps what was typed
    users = admin.get("/admin/users").text
    assert "mallory" not in users
    assert "bad name" not in users


def test_reset_password_shows_a_generated_one_once(app):
    admin = PageClient(app, "admin")
    handler = PageClient(app, "handler")
    assert admin.post("/admin/users/handler/password", {"password": ""}).status_code == 303
    shown = admin.get("/admin/users/handler").text
    password = re.search(r"密码已重置为：(\S+?)（仅显示一次）", shown).group(1)
    assert password not in admin.get("/admin/users/handler").text
    assert handler.get("/inbox").status_code == 302  # the old session ended with the old password
    assert PageClient(app).login("handler", password).status_code == 303


def test_last_admin_and_self_are_protected(app):
    admin = PageClient(app, "admin")
    assert admin.post("/admin/users/admin/disable").status_code == 303
    assert "不能停用自己的账号" in admin.get("/admin/users/admin").text
    assert admin.post("/admin/users/admin/groups", {"groups": ["office"]}).status_code == 303
    page = admin.get("/admin/users/admin").text
    assert "不能停用或移出最后一名系统管理员" in page and 'value="admins" checked' in page


def test_groups_page_creates_and_renames(app):
    admin = PageClient(app, "admin")
    assert admin.post("/admin/groups", {"name": "fire_safety", "title": "消防股"}).status_code == 303
    assert "消防股" in admin.get("/admin/groups").text
    assert admin.post("/admin/groups/fire_safety", {"title": "消防安全股"}).status_code == 303
    page = admin.get("/admin/groups").text
    assert "用户组名称已更新" in page and 'value="消防安全股"' in page
    bad = admin.post("/admin/groups", {"name": "Bad Key", "title": "x"})
    assert bad.status_code == 422 and "标识以小写字母开头" in bad.text


def test_staff_and_managers_get_the_403_page(app):
    for username in ("handler", "supervisor", "analyst"):
        client = PageClient(app, username)
        assert client.get("/admin/users").status_code == 403, username
        assert client.post("/admin/users/registrar/disable").status_code == 403, username
    assert PageClient(app, "registrar").get("/inbox").status_code == 200  # nobody was disabled
