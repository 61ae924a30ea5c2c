"""A Flask test client signed in to the workspace pages as one demo user, posting with CSRF."""

from __future__ import annotations

import json
import re

import engine.attachments  # noqa: F401  (register the workspace tables before create_all)
import engine.login_throttle  # noqa: F401
import engine.urging  # noqa: F401
import engine.worklist  # noqa: F401

PASSWORD = "demo123"
_JSON_SCRIPT = r'<script type="application/json" id="{}">(.*?)</script>'


class PageClient:
    def __init__(self, app, username: str | None = None, address: str = "127.0.0.1"):
        self.app = app
        self.client = app.test_client()
        self.address = address
        if username:
            response = self.login(username)
            assert response.status_code == 303, response.text

    def csrf(self) -> str:
        """The session's CSRF token (rendering any page creates one)."""
        with self.client.session_transaction() as session:
            token = session.get("_csrf")
        if token is None:
            self.get("/login")
            with self.client.session_transaction() as session:
                token = session["_csrf"]
        return token

    def login(self, username: str, password: str = PASSWORD, **extra):
        return self.post("/login", {"username": username, "password": password, **extra})

    def get(self, path: str, **kw):
        return self.client.get(path, environ_base={"REMOTE_ADDR": self.address}, **kw)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf())
        return self.client.post(path, data=data, environ_base={"REMOTE_ADDR": self.address}, **kw)

    def complete(self, task_id: int, data: dict, comment: str | None = None, **files):
        body = {"data": json.dumps(data, ensure_ascii=False)}
        if comment is not None:
            body["comment"] = comment
        body.update(files)
        return self.post(f"/tasks/{task_id}/complete", body, content_type="multipart/form-data")


def json_script(html: str, element_id: str):
    """The JSON a page hands to a bundle in <script type="application/json" id=...>."""
    match = re.search(_JSON_SCRIPT.format(re.escape(element_id)), html, re.S)
    assert match, f"no JSON script #{element_id}"
    return json.loads(match.group(1))


def task_ids(html: str) -> list[int]:
    """Task links on a page, in order, without repeats."""
    return list(dict.fromkeys(int(i) for i in re.findall(r'href="/tasks/(\d+)"', html)))


def buttons(html: str) -> set[str]:
    """The action forms a task page offers (by their URL's last part)."""
    return set(re.findall(r'action="/tasks/\d+/([a-z-]+)"', html))
