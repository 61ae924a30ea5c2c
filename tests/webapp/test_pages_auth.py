"""Signing in and out of the workspace pages: session cookie, rate limit, CSRF, language."""

from __future__ import annotations

import re
from pathlib import Path

from tests.webapp.pages_client import PageClient

ROOT = Path(__file__).resolve().parents[2]


def test_pages_need_login_and_come_back_after_it(app):
    browser = PageClient(app)
    response = browser.get("/inbox?tab=claimable")
    assert response.status_code == 302
    assert response.location == "/login?next=/inbox?tab%3Dclaimable"
    page = browser.get("/login")
    assert page.status_code == 200 and "用户名" in page.text and "密码" in page.text
    response = browser.post(
        "/login", {"username": "chief", "password": "demo123", "next": "/inbox?tab=claimable"}
    )
    assert response.status_code == 303 and response.location == "/inbox?tab=claimable"
    assert browser.get("/inbox").status_code == 200


def test_session_cookie_is_httponly_lax_and_ends_with_the_browser_unless_remembered(app):
    browser = PageClient(app)
    response = browser.login("chief")
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("chengxin_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires" not in cookie  # "remember me" is off by default
    assert "Secure" not in cookie  # plain HTTP in tests; CHENGXIN_SECURE_COOKIES=1 turns it on

    remembered = PageClient(app).login("chief", remember="1")
    cookie = next(c for c in remembered.headers.getlist("Set-Cookie") if c.startswith("chengxin_session="))
    assert "Expires" in cookie


def test_wrong_password_is_refused_in_chinese(app):
    response = PageClient(app).login("chief", "wrong")
    assert response.status_code == 401
    assert "用户名或密码不正确" in response.text
    assert PageClient(app).login("nobody", "demo123").status_code == 401


def test_login_is_rate_limited_per_user_and_address(app):
    attacker = PageClient(app, address="10.0.0.9")
    for _ in range(5):
        assert attacker.login("chief", "guess").status_code == 401
    blocked = attacker.login("chief", "demo123")
    assert blocked.status_code == 429
    assert "登录失败次数过多" in blocked.text
    # Another address, or another user from the same address, may still sign in.
    assert PageClient(app, address="10.0.0.10").login("chief").status_code == 303
    assert attacker.login("legal").status_code == 303


def test_rate_limit_is_shared_by_every_web_process(app, settings):
    from webapp import create_app

    for _ in range(5):
        PageClient(app, address="10.0.0.7").login("legal", "guess")
    other_process = create_app(settings, TESTING=True)
    try:
        assert PageClient(other_process, address="10.0.0.7").login("legal").status_code == 429
    finally:
        other_process.extensions["chengxin"]["engine"].dispose()


def test_post_without_or_with_a_wrong_csrf_token_is_400(app):
    browser = PageClient(app, "chief")
    missing = browser.post("/notifications/read", {"all": "1"}, csrf=False)
    assert missing.status_code == 400
    assert "页面已过期" in missing.text and "<html" in missing.text
    forged = browser.post("/notifications/read", {"all": "1", "csrf_token": "forged"})
    assert forged.status_code == 400
    assert (
        PageClient(app).post("/login", {"username": "chief", "password": "demo123"}, csrf=False).status_code
        == 400
    )
    # The bearer-token API carries no cookie credentials and needs no token.
    token = app.test_client().post("/api/v1/auth/token", json={"username": "chief", "password": "demo123"})
    assert token.status_code == 200


def test_logout_needs_a_post_and_ends_the_session(app):
    browser = PageClient(app, "chief")
    assert browser.get("/logout").status_code == 405
    response = browser.post("/logout")
    assert response.status_code == 303 and response.location == "/login"
    assert "您已安全退出" in browser.get("/login").text
    assert browser.get("/inbox").status_code == 302


def test_next_never_leaves_the_site(app):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = PageClient(app).post(
            "/login", {"username": "chief", "password": "demo123", "next": target}
        )
        assert response.location == "/inbox", target


def test_a_disabled_user_is_signed_out(app):
    from engine.models import User
    from webapp.database import session

    browser = PageClient(app, "legal")
    with app.app_context():
        db = session()
        db.query(User).filter_by(username="legal").one().active = False
        db.commit()
    assert browser.get("/inbox").status_code == 302


def test_pages_send_a_csp_without_inline_scripts_and_have_none(app, deployed):
    browser = PageClient(app, "registrar")
    for path in ("/inbox", "/start", "/start/simple_review", "/notifications", "/login"):
        response = (browser if path != "/login" else PageClient(app)).get(path)
        assert response.status_code == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert response.headers["X-Frame-Options"] == "DENY"
        inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", response.text)
        assert inline == [], path
        assert re.search(r"\son[a-z]+=", response.text) is None, path  # no inline event handlers


def _compiled_catalogue(tmp_path) -> str:
    # Compile into a private folder so the test does not depend on the setup step.
    out = tmp_path / "translations"
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for po in (ROOT / "webapp" / "translations").glob("*/LC_MESSAGES/messages.po"):
        target = out / po.parent.relative_to(ROOT / "webapp" / "translations")
        target.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source, (target / "messages.mo").open("wb") as mo:
            write_mo(mo, read_po(source))
    return str(out)


def test_chinese_by_default_and_english_by_choice(settings, db_engine, seeded, tmp_path):
    from webapp import create_app

    app = create_app(settings, TESTING=True, BABEL_TRANSLATION_DIRECTORIES=_compiled_catalogue(tmp_path))
    try:
        browser = PageClient(app, "chief")
        page = browser.get("/inbox")
        assert 'lang="zh-CN"' in page.text and "我的待办" in page.text
        response = browser.get("/language/en?next=/inbox")
        assert response.status_code == 302 and response.location == "/inbox"
        assert "chengxin_lang=en" in response.headers["Set-Cookie"]
        page = browser.get("/inbox")
        assert 'lang="en"' in page.text and "My tasks" in page.text and "我的待办" not in page.text
        browser.get("/language/zh_CN")
        assert "我的待办" in browser.get("/inbox").text
        assert browser.get("/language/xx").status_code == 302
        assert "我的待办" in browser.get("/inbox").text
    finally:
        app.extensions["chengxin"]["engine"].dispose()
