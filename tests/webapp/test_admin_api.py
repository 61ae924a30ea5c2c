"""User and group administration through /api/v1/admin: admins only, every change audited;
disabling a user keeps their history and gives their open tasks back."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import Event, HumanTask

START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}


def create(api, username="clerk", groups=("office",), password="secret-1", **extra):
    return api.post(
        "/api/v1/admin/users",
        user="admin",
        json={"username": username, "password": password, "groups": list(groups), **extra},
    )


def first_task(api) -> int:
    response = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "simple_review", "variables": START},
    )
    assert response.status_code == 201, response.json
    return response.json["tasks"][0]["id"]


def put(api, path, user, json):
    return api.client.put(path, headers={"Authorization": f"Bearer {api.token(user)}"}, json=json)


def patch(api, path, user, json):
    return api.client.patch(path, headers={"Authorization": f"Bearer {api.token(user)}"}, json=json)


def token_for(api, username, password):
    return api.post("/api/v1/auth/token", json={"username": username, "password": password})


def me(api, token):
    return api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def events(session_factory, type):
    with session_factory() as s:
        return list(s.scalars(select(Event).where(Event.type == type).order_by(Event.id)))


def test_admin_creates_a_user_who_can_sign_in(api, session_factory):
    created = create(api, display_name="新登记员", email="clerk@example.cn")
    assert created.status_code == 201, created.json
    assert created.json["groups"] == ["office"] and created.json["active"] is True
    token = token_for(api, "clerk", "secret-1").json["token"]
    assert me(api, token).json["groups"] == ["office"]
    [event] = events(session_factory, "user_created")
    assert event.user == "admin" and event.details["username"] == "clerk"
    listed = api.get("/api/v1/admin/users", user="admin").json["items"]
    assert "clerk" in {u["username"] for u in listed}


def test_bad_or_duplicate_users_are_refused(api):
    assert create(api).status_code == 201
    again = create(api)
    assert again.status_code == 409 and again.json["error"] == "conflict"
    unknown = create(api, username="other", groups=["no_such_group"])
    assert unknown.status_code == 422 and "groups" in unknown.json["errors"]
    assert create(api, username="bad name!").status_code == 422
    assert create(api, username="short", password="123").status_code == 422


def test_only_admins_administer(api):
    for user in ("handler", "supervisor", "analyst", "director"):
        body = {"username": "clerk", "password": "secret-1"}
        assert api.post("/api/v1/admin/users", user=user, json=body).status_code == 403, user
        assert api.post("/api/v1/admin/users/handler/disable", user=user).status_code == 403, user
    assert api.get("/api/v1/admin/users").status_code == 401


def test_disabling_moves_open_tasks_back_and_ends_tokens_at_once(api, deployed, session_factory):
    assert create(api, "clerk").status_code == 201
    token = token_for(api, "clerk", "secret-1").json["token"]
    held, delegated_to_clerk, delegated_by_clerk, done = (first_task(api) for _ in range(4))
    assert api.post(f"/api/v1/tasks/{held}/claim", user="clerk").status_code == 200
    assert api.post(f"/api/v1/tasks/{delegated_to_clerk}/claim", user="registrar").status_code == 200
    delegate = api.post(
        f"/api/v1/tasks/{delegated_to_clerk}/delegate", user="registrar", json={"username": "clerk"}
    )
    assert delegate.status_code == 200, delegate.json
    assert api.post(f"/api/v1/tasks/{delegated_by_clerk}/claim", user="clerk").status_code == 200
    back = api.post(
        f"/api/v1/tasks/{delegated_by_clerk}/delegate", user="clerk", json={"username": "registrar"}
    )
    assert back.status_code == 200
    completed = api.post(
        f"/api/v1/tasks/{done}/complete", user="clerk", json={"data": {"decision": "approve"}}
    )
    assert completed.status_code == 200, completed.json
    assert me(api, token).status_code == 200

    response = api.post("/api/v1/admin/users/clerk/disable", user="admin")

    assert response.status_code == 200, response.json
    assert sorted(response.json["released_tasks"]) == sorted([held, delegated_to_clerk, delegated_by_clerk])
    assert response.json["user"]["active"] is False
    assert me(api, token).status_code == 401  # the token issued before stops working at once
    assert token_for(api, "clerk", "secret-1").status_code == 401
    with session_factory() as s:
        rows = {t.id: t for t in s.scalars(select(HumanTask))}
    assert (rows[held].assignee, rows[held].owner) == (None, None)  # back to the office group
    assert (rows[delegated_to_clerk].assignee, rows[delegated_to_clerk].owner) == ("registrar", None)
    assert (rows[delegated_by_clerk].assignee, rows[delegated_by_clerk].owner) == (None, None)
    assert rows[done].status == "completed" and rows[done].completed_by == "clerk"  # history kept
    released = events(session_factory, "task_released")
    assert sorted(e.task_id for e in released) == sorted(response.json["released_tasks"])
    assert all(e.user == "admin" and e.details["from"] == "clerk" for e in released)
    assert events(session_factory, "user_disabled")[0].details == {"username": "clerk"}
    claimable = api.get("/api/v1/tasks?scope=claimable", user="registrar").json["items"]
    assert {held, delegated_by_clerk} <= {t["id"] for t in claimable}
    assert api.get(f"/api/v1/process-instances/{rows[done].instance_id}", user="director").status_code == 200


def test_disabled_user_can_be_enabled_again(api):
    create(api, "clerk")
    assert api.post("/api/v1/admin/users/clerk/disable", user="admin").status_code == 200
    assert token_for(api, "clerk", "secret-1").status_code == 401
    enabled = api.post("/api/v1/admin/users/clerk/enable", user="admin")
    assert enabled.status_code == 200 and enabled.json["active"] is True
    assert token_for(api, "clerk", "secret-1").status_code == 200


def test_admins_cannot_lock_everyone_out(api):
    myself = api.post("/api/v1/admin/users/admin/disable", user="admin")
    assert myself.status_code == 409
    create(api, "root2", groups=["admins"])
    assert api.post("/api/v1/admin/users/admin/disable", user="root2").status_code == 200
    # root2 is now the only active administrator
    last = put(api, "/api/v1/admin/users/root2/groups", "root2", {"groups": ["office"]})
    assert last.status_code == 409
    assert api.get("/api/v1/admin/users/root2", user="root2").json["groups"] == ["admins"]
    assert api.post("/api/v1/admin/users/nobody/disable", user="root2").status_code == 404


def test_reset_password_ends_old_tokens(api, session_factory):
    create(api, "clerk")
    old = token_for(api, "clerk", "secret-1").json["token"]
    chosen = api.post("/api/v1/admin/users/clerk/password", user="admin", json={"password": "new-secret"})
    assert chosen.status_code == 200 and chosen.json["password"] is None
    assert me(api, old).status_code == 401
    assert token_for(api, "clerk", "secret-1").status_code == 401
    assert token_for(api, "clerk", "new-secret").status_code == 200
    generated = api.post("/api/v1/admin/users/clerk/password", user="admin", json={})
    password = generated.json["password"]
    assert len(password) >= 12 and token_for(api, "clerk", password).status_code == 200
    assert (
        api.post("/api/v1/admin/users/clerk/password", user="admin", json={"password": "x"}).status_code
        == 422
    )
    assert len(events(session_factory, "password_reset")) == 2


def test_set_groups_changes_what_the_user_may_do(api, simple_bundle, session_factory):
    create(api, "clerk")
    token = token_for(api, "clerk", "secret-1").json["token"]
    assert me(api, token).json["roles"] == ["staff"]
    changed = put(api, "/api/v1/admin/users/clerk/groups", "admin", {"groups": ["analysts", "office"]})
    assert changed.status_code == 200 and changed.json["groups"] == ["analysts", "office"]
    assert me(api, token).json["roles"] == ["analyst", "staff"]
    assert put(api, "/api/v1/admin/users/clerk/groups", "admin", {"groups": ["nope"]}).status_code == 422
    [event] = events(session_factory, "groups_changed")
    assert event.details == {"username": "clerk", "before": ["office"], "after": ["analysts", "office"]}


def test_groups_create_and_rename(api, session_factory):
    created = api.post("/api/v1/admin/groups", user="admin", json={"name": "fire_safety", "title": "消防股"})
    assert created.status_code == 201 and created.json == {
        "name": "fire_safety",
        "title": "消防股",
        "members": [],
    }
    duplicate = api.post("/api/v1/admin/groups", user="admin", json={"name": "fire_safety", "title": "x"})
    assert duplicate.status_code == 409
    bad = api.post("/api/v1/admin/groups", user="admin", json={"name": "Fire Safety", "title": "x"})
    assert bad.status_code == 422
    renamed = patch(api, "/api/v1/admin/groups/fire_safety", "admin", {"title": "消防安全股"})
    assert renamed.status_code == 200 and renamed.json["title"] == "消防安全股"
    assert patch(api, "/api/v1/admin/groups/nothing", "admin", {"title": "x"}).status_code == 404
    assert patch(api, "/api/v1/admin/groups/fire_safety", "admin", {"title": ""}).status_code == 422
    create(api, "firefighter", groups=["fire_safety"])
    groups = {g["name"]: g for g in api.get("/api/v1/admin/groups", user="admin").json["items"]}
    assert groups["fire_safety"]["members"] == ["firefighter"]
    assert groups["office"]["members"] == ["registrar"]
    assert [e.type for e in events(session_factory, "group_renamed")] == ["group_renamed"]
