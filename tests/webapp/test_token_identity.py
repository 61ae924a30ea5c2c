"""Bearer tokens: one query per request resolves the caller, and every revocation (disabled
account, new password, changed groups) counts on the very next request, even when the change
was made elsewhere (another process or host) and the token's signature check is remembered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import event

from engine.access import SYSTEM
from engine.db import transaction
from engine.users import disable_user, enable_user, reset_password, set_groups


def me(api, token):
    return api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def stats(api, token):
    return api.client.get("/api/v1/stats/summary", headers={"Authorization": f"Bearer {token}"})


def count_statements(app):
    """A list that collects the SQL statements the app sends (BEGIN excluded) while attached."""
    sent = []

    def collect(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.append(statement)

    event.listen(app.extensions["chengxin"]["engine"], "before_cursor_execute", collect)
    return sent


def test_the_caller_costs_one_statement(app, api):
    token = api.token("chief")
    assert me(api, token).status_code == 200  # warm: the signature check is remembered now
    sent = count_statements(app)
    answer = me(api, token)
    assert answer.status_code == 200
    assert answer.json["groups"] == ["section_chiefs", "supervision"]
    assert answer.json["display_name"] == "股室负责人 张伟"
    assert len(sent) == 1, sent


def test_a_user_without_groups_is_still_recognised(api, session_factory):
    with transaction(session_factory) as s:
        set_groups(s, "registrar", [], actor=SYSTEM)
    answer = me(api, api.token("registrar"))
    assert answer.status_code == 200
    assert answer.json["groups"] == [] and answer.json["roles"] == ["staff"]


def test_disabling_elsewhere_ends_a_token_in_use_at_once(api, session_factory):
    token = api.token("handler")
    assert me(api, token).status_code == 200
    with transaction(session_factory) as s:  # another process: not through this app
        disable_user(s, "handler", actor=SYSTEM)
    refused = me(api, token)
    assert refused.status_code == 401 and refused.json["error"] == "unauthorized"
    with transaction(session_factory) as s:
        enable_user(s, "handler", actor=SYSTEM)
    assert me(api, token).status_code == 200  # same password: the token is valid again


def test_a_new_password_ends_a_token_in_use_at_once(api, session_factory):
    token = api.token("legal")
    assert me(api, token).status_code == 200
    with transaction(session_factory) as s:
        reset_password(s, "legal", "another-secret", actor=SYSTEM)
    assert me(api, token).status_code == 401
    fresh = api.post("/api/v1/auth/token", json={"username": "legal", "password": "another-secret"})
    assert fresh.status_code == 200 and me(api, fresh.json["token"]).status_code == 200


def test_changed_groups_count_on_the_next_request(api, session_factory):
    token = api.token("supervisor")  # managers: may read the statistics
    assert stats(api, token).status_code == 200
    with transaction(session_factory) as s:
        set_groups(s, "supervisor", ["office"], actor=SYSTEM)
    assert stats(api, token).status_code == 403
    assert me(api, token).json["groups"] == ["office"]
    with transaction(session_factory) as s:
        set_groups(s, "supervisor", ["managers"], actor=SYSTEM)
    assert stats(api, token).status_code == 200


def test_a_remembered_token_still_expires(app, api):
    token = api.token("registrar")
    assert me(api, token).status_code == 200
    hours = app.extensions["chengxin"]["settings"].token_hours
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=hours, minutes=1)):
        assert me(api, token).status_code == 401
    assert me(api, token).status_code == 200  # back in its lifetime (the clock moved back)


def test_a_tampered_or_foreign_token_is_refused(app, api):
    token = api.token("registrar")
    assert me(api, token).status_code == 200
    payload, signature = token.rsplit(".", 1)
    forged = f"{payload}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
    assert me(api, forged).status_code == 401
    assert me(api, "not-a-token").status_code == 401
    assert (
        api.client.get("/api/v1/me", headers={"Authorization": "Basic cmVnaXN0cmFyOmRlbW8xMjM="}).status_code
        == 401
    )
    from webapp import create_app

    other = create_app(
        app.extensions["chengxin"]["settings"].__class__(
            database_url=app.extensions["chengxin"]["settings"].database_url,
            instance_dir=app.extensions["chengxin"]["settings"].instance_dir,
            secret_key="another-deployment",
        ),
        TESTING=True,
    )
    try:  # a token signed with another deployment's key, though the user exists here
        answer = other.test_client().get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
    finally:
        other.extensions["chengxin"]["engine"].dispose()
