"""Every endpoint of the URL map × every role, against the rule table of webapp/permissions.py.

The cases come from `app.url_map`, so a new endpoint is tested the moment it exists, and the
suite fails until it has a rule. Path values are made up (id 999999, key "nonexistent"): a
request that passes the gate may then answer 404/409/422 — what matters is that the gate let
it through (not 401/403, no redirect to the login page) or refused it (401/403, or the login
page for signed-out visitors of a page).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from werkzeug.routing import AnyConverter, IntegerConverter, PathConverter

from engine.access import Actor
from engine.models import User
from webapp import create_app, permissions

from .pages_client import PageClient

# role -> the demo user who has it (None: not signed in)
ROLES = {
    "anonymous": None,
    "staff": "handler",
    "analyst": "analyst",
    "manager": "supervisor",
    "admin": "admin",
}
SKIPPED_METHODS = {"HEAD", "OPTIONS"}
# Answers an endpoint gives on its own, past the gate (endpoint, method, role) -> (status, why).
OWN_ANSWERS = {
    ("pages.auth.login", "POST"): (401, "an empty user name and password is a failed sign-in"),
    ("pages.auth.logout", "POST"): (303, "signing out ends on the login page"),
}


def _dummy(converter) -> object:
    if isinstance(converter, IntegerConverter):
        return 999999
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    if isinstance(converter, PathConverter):
        return "nonexistent.txt"
    return "nonexistent"


def cases(app) -> list[tuple[str, str, str]]:
    """(endpoint, method, URL with made-up path values) for every rule of the app."""
    found = []
    for rule in app.url_map.iter_rules():
        values = {name: _dummy(converter) for name, converter in rule._converters.items()}
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - SKIPPED_METHODS):
            found.append((rule.endpoint, method, url))
    return sorted(found)


class Caller:
    """Requests as one role: bearer token for /api/, the session cookie (with CSRF) elsewhere."""

    def __init__(self, api, app, username: str | None):
        self.api, self.username = api, username
        self.pages = PageClient(app)
        self.user = None
        if username:
            with app.app_context():
                from webapp.database import session

                self.user = session().scalar(select(User).where(User.username == username))
                self.fingerprint = self.user.password_hash[-12:]

    def _sign_in(self) -> str:
        # Straight into the signed session (what a login leaves): one argon2 check per role, not per case.
        with self.pages.client.session_transaction() as session:
            session.clear()
            session["_csrf"] = "matrix-csrf-token"
            if self.username:
                session["user"] = self.username
                session["pw"] = self.fingerprint
        return "matrix-csrf-token"

    def call(self, method: str, url: str):
        if url.startswith("/api/"):
            return self.api.client.open(
                url,
                method=method,
                headers={"Authorization": f"Bearer {self.api.token(self.username)}"} if self.username else {},
                json={} if method in ("POST", "PUT", "PATCH") else None,
            )
        token = self._sign_in()
        return self.pages.client.open(
            url,
            method=method,
            headers={"X-CSRFToken": token},
            data={"csrf_token": token} if method != "GET" else None,
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )


def _roles(username: str | None, app) -> frozenset[str]:
    if username is None:
        return frozenset()
    with app.app_context():
        from webapp.database import session

        user = session().scalar(select(User).where(User.username == username))
        return Actor(username, frozenset(user.group_names)).roles


def _to_login(response) -> bool:
    return response.status_code in (301, 302, 303) and "/login" in response.headers.get("Location", "")


def _verdict(endpoint: str, method: str, url: str, role: str, roles, response) -> str | None:
    """None when the answer fits the rule, else what is wrong."""
    rule = permissions.RULES[endpoint]
    status = response.status_code
    if status >= 500:
        return f"server error {status}"
    own = OWN_ANSWERS.get((endpoint, method))
    if own and status == own[0]:
        return None
    page = not permissions.answers_json(endpoint, url)
    if rule.public or (role != "anonymous" and rule.allows(roles)):
        if status in (401, 403) or _to_login(response):
            return f"refused ({status}) but the rule '{rule.name}' allows {role}"
        return None
    if role == "anonymous":
        ok = _to_login(response) if page else status == 401
        return None if ok else f"expected {'the login page' if page else 401}, got {status}"
    return None if status == 403 else f"expected 403 (rule '{rule.name}'), got {status}"


def test_every_endpoint_has_a_rule(app):
    missing = sorted({e for e, _, _ in cases(app)} - set(permissions.RULES))
    assert not missing, f"endpoints without a rule in webapp/permissions.py RULES: {missing}"


def test_every_rule_names_an_endpoint(app):
    stale = sorted(set(permissions.RULES) - {e for e, _, _ in cases(app)})
    assert not stale, f"rules for endpoints that do not exist (typo or removed view): {stale}"


@pytest.mark.parametrize("role", ROLES)
def test_matrix(app, api, role):
    username = ROLES[role]
    roles = _roles(username, app)
    caller = Caller(api, app, username)
    problems = []
    checked = 0
    for endpoint, method, url in cases(app):
        rule = permissions.RULES.get(endpoint)
        if rule is None or rule.own_check:
            continue  # reported by test_every_endpoint_has_a_rule / tested below
        response = caller.call(method, url)
        checked += 1
        problem = _verdict(endpoint, method, url, role, roles, response)
        if problem:
            problems.append(f"{method} {url} ({endpoint}) as {role}: {problem}")
    assert checked > 100
    assert not problems, "\n".join(problems)


def test_the_matrix_sees_refusals(app, api):
    """The checks above can fail: a staff member on an admin endpoint, a stranger on a page."""
    staff = Caller(api, app, "handler")
    assert staff.call("GET", "/api/v1/admin/users").status_code == 403
    assert _to_login(Caller(api, app, None).call("GET", "/admin/users"))
    assert Caller(api, app, "admin").call("GET", "/api/v1/admin/users").status_code == 200


def test_an_endpoint_without_a_rule_is_refused_to_everyone(settings, db_engine, seeded):
    app = create_app(settings, TESTING=True)
    app.add_url_rule("/api/v1/unruled", "unruled", lambda: "open")
    app.add_url_rule("/unruled-page", "pages.unruled", lambda: "open")
    from tests.conftest import ApiClient

    api = ApiClient(app)
    for username in (None, "handler", "admin"):
        response = Caller(api, app, username).call("GET", "/api/v1/unruled")
        assert response.status_code == 403 and response.json["error"] == "forbidden", username
        page = Caller(api, app, username).call("GET", "/unruled-page")
        assert page.status_code == 403 and "open" not in page.get_data(as_text=True), username
    app.extensions["chengxin"]["engine"].dispose()


def test_metrics_checks_its_own_callers(app, api):
    """/metrics is OWN_CHECK: loopback, the metrics token or a managers' token (webapp/metrics.py)."""
    far = {"REMOTE_ADDR": "10.0.0.7"}

    def scrape(user=None):
        headers = {"Authorization": f"Bearer {api.token(user)}"} if user else {}
        return api.client.get("/metrics", headers=headers, environ_base=far)

    assert scrape().status_code == 401
    assert scrape("handler").status_code == 403
    assert scrape("supervisor").status_code == 200
    assert scrape("admin").status_code == 200


def test_api_refusals_follow_api_md(api):
    anonymous = api.get("/api/v1/tasks")
    assert anonymous.status_code == 401 and anonymous.json["error"] == "unauthorized"
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    forged = api.client.get("/api/v1/tasks", headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 401
    staff = api.post("/api/v1/process-instances/1/terminate", user="handler", json={"reason": "x"})
    assert staff.status_code == 403 and staff.json["error"] == "forbidden"


def test_page_refusals_are_pages(app):
    stranger = PageClient(app)
    response = stranger.get("/monitor/instances?status=running")
    location = urlsplit(response.headers["Location"])
    assert response.status_code == 302 and location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/monitor/instances?status=running"]
    staff = PageClient(app, "handler")
    page = staff.get("/admin/users")
    assert page.status_code == 403 and "text/html" in page.content_type and "无权" in page.text
