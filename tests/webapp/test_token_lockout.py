"""POST /api/v1/auth/token: failures counted with the page login's, lockout with 429 and an audit event."""

from __future__ import annotations

from sqlalchemy import select

from engine import login_throttle
from engine.models import Event

from .pages_client import PageClient


def ask(api, password, username="chief", address="10.1.2.3"):
    return api.client.post(
        "/api/v1/auth/token",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def locked_events(session_factory):
    with session_factory() as s:
        return list(s.scalars(select(Event).where(Event.type == "login_locked")))


def test_repeated_failures_lock_the_name_out_with_429_and_one_audit_event(api, session_factory):
    for _ in range(login_throttle.MAX_FAILURES):
        assert ask(api, "wrong").status_code == 401
    locked = ask(api, "demo123")  # even the right password: the name is locked out from here
    assert locked.status_code == 429
    assert locked.json["error"] == "too_many_requests" and "分钟后再试" in locked.json["message"]
    assert int(locked.headers["Retry-After"]) == login_throttle.WINDOW.total_seconds()
    assert ask(api, "wrong").status_code == 429
    [event] = locked_events(session_factory)
    assert event.user == "chief" and event.details["address"] == "10.1.2.3"
    assert event.details["via"] == "api"
    # Another address, or another name, is not locked out.
    assert ask(api, "demo123", address="10.9.9.9").status_code == 200
    assert ask(api, "demo123", username="handler").status_code == 200


def test_a_success_before_the_limit_clears_the_count(api, session_factory):
    for _ in range(login_throttle.MAX_FAILURES - 1):
        assert ask(api, "wrong").status_code == 401
    assert ask(api, "demo123").status_code == 200
    for _ in range(login_throttle.MAX_FAILURES - 1):
        assert ask(api, "wrong").status_code == 401
    assert ask(api, "demo123").status_code == 200
    assert locked_events(session_factory) == []


def test_page_and_api_failures_share_one_counter(app, api):
    browser = PageClient(app, address="10.1.2.3")
    for _ in range(login_throttle.MAX_FAILURES - 1):
        assert browser.login("chief", "wrong").status_code == 401
    assert ask(api, "wrong").status_code == 401  # the fifth failure, through the API
    assert ask(api, "demo123").status_code == 429
    assert browser.login("chief", "demo123").status_code == 429


def test_unknown_user_names_are_counted_too(api):
    for _ in range(login_throttle.MAX_FAILURES):
        assert ask(api, "x", username="nobody").status_code == 401
    assert ask(api, "x", username="nobody").status_code == 429
