"""The task and instance API through HTTP, with its refusals."""

from __future__ import annotations

START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}


def start(api, user="registrar", **variables):
    response = api.post(
        "/api/v1/process-instances",
        user=user,
        json={"process_key": "simple_review", "variables": {**START, **variables}},
    )
    assert response.status_code == 201, response.json
    return response.json


def test_health_needs_no_login(api):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_token_and_me(api):
    response = api.post("/api/v1/auth/token", json={"username": "chief", "password": "demo123"})
    assert response.status_code == 200
    token = response.json["token"]
    me = api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json["groups"] == ["section_chiefs", "supervision"]
    assert me.json["roles"] == ["staff"]
    assert api.get("/api/v1/me", user="director").json["roles"] == ["manager", "staff"]


def test_bad_credentials_and_missing_token_are_401(api):
    assert api.post("/api/v1/auth/token", json={"username": "chief", "password": "x"}).status_code == 401
    assert api.post("/api/v1/auth/token", json={"username": "nobody", "password": "x"}).status_code == 401
    response = api.get("/api/v1/me")
    assert response.status_code == 401 and response.json["error"] == "unauthorized"
    bad = api.client.get("/api/v1/me", headers={"Authorization": "Bearer forged.token.value"})
    assert bad.status_code == 401


def test_malformed_json_is_400_and_changes_nothing(api, deployed):
    response = api.client.post(
        "/api/v1/process-instances",
        data="{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token('registrar')}"},
    )
    assert response.status_code in (400, 422)
    assert response.json["error"] in ("bad_request", "validation")
    assert api.get("/api/v1/process-instances", user="director").json["total"] == 0


def test_start_complete_walks_to_the_end(api, deployed):
    instance = start(api)
    assert instance["status"] == "running"
    assert instance["business_key"].startswith("LC")
    [task] = instance["tasks"]
    assert task["name"] == "初审" and task["candidate_groups"] == ["office"]
    assert task["assignee"] is None and task["due_at"] is not None and task["sla"] == "normal"

    claimable = api.get("/api/v1/tasks?scope=claimable", user="registrar").json
    assert [t["id"] for t in claimable["items"]] == [task["id"]]
    assert api.get("/api/v1/tasks?scope=claimable", user="handler").json["items"] == []

    detail = api.get(f"/api/v1/tasks/{task['id']}", user="registrar").json
    assert detail["form"]["id"] == "simple_review"

    done = api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        user="registrar",
        json={"data": {"decision": "approve", "opinion": "情况属实，建议复核"}},
    )
    assert done.status_code == 200, done.json
    assert done.json["task"]["status"] == "completed"
    assert done.json["task"]["completed_by"] == "registrar"
    assert done.json["next_tasks"] == []  # the next step belongs to section chiefs
    [confirm] = done.json["instance"]["tasks"]
    assert confirm["name"] == "复核" and confirm["candidate_groups"] == ["section_chiefs"]

    final = api.post(
        f"/api/v1/tasks/{confirm['id']}/complete", user="chief", json={"data": {"confirmed": True}}
    )
    assert final.status_code == 200, final.json
    assert final.json["instance"]["status"] == "completed"

    detail = api.get(f"/api/v1/process-instances/{instance['id']}", user="registrar").json
    assert detail["variables"]["decision"] == "approve"
    types = [e["type"] for e in detail["history"]]
    assert types[0] == "instance_started" and "completed" in types and types[-1] == "instance_completed"
    opinion = next(e for e in detail["history"] if e["type"] == "completed")
    assert opinion["comment"] == "情况属实，建议复核" and opinion["user"] == "registrar"
    assert {"start", "first_review", "gw", "confirm", "end_ok"} <= set(detail["diagram"]["completed"])
    assert detail["diagram"]["active"] == []


def test_reject_branch(api, deployed):
    instance = start(api)
    task = instance["tasks"][0]
    done = api.post(
        f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {"decision": "reject"}}
    )
    assert done.json["instance"]["status"] == "completed"
    detail = api.get(f"/api/v1/process-instances/{instance['id']}", user="registrar").json
    assert (
        "end_rejected" in detail["diagram"]["completed"] and "confirm" not in detail["diagram"]["completed"]
    )


def test_invalid_form_data_is_422_with_field_messages(api, deployed):
    response = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "simple_review", "variables": {"amount": "many"}},
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) >= {"title", "amount"}
    assert api.get("/api/v1/process-instances", user="director").json["total"] == 0

    task = start(api)["tasks"][0]
    bad = api.post(
        f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {"decision": "maybe"}}
    )
    assert bad.status_code == 422 and "decision" in bad.json["errors"]
    again = api.get(f"/api/v1/tasks/{task['id']}", user="registrar").json
    assert again["status"] == "open" and again["assignee"] is None  # a failed request changes nothing


def test_unknown_things_are_404(api, deployed):
    assert (
        api.post("/api/v1/process-instances", user="registrar", json={"process_key": "nope"}).status_code
        == 404
    )
    assert api.get("/api/v1/tasks/999999", user="registrar").status_code == 404
    assert api.get("/api/v1/process-instances/999999", user="director").status_code == 404
    assert api.post("/api/v1/tasks/999999/complete", user="registrar", json={"data": {}}).status_code == 404


def test_other_peoples_tasks(api, deployed):
    task = start(api)["tasks"][0]
    # Not a candidate: the task is invisible.
    assert api.get(f"/api/v1/tasks/{task['id']}", user="handler").status_code == 404
    assert (
        api.post(f"/api/v1/tasks/{task['id']}/complete", user="handler", json={"data": {}}).status_code == 404
    )
    # A manager sees it but may not complete it.
    assert api.get(f"/api/v1/tasks/{task['id']}", user="director").status_code == 200
    assert (
        api.post(
            f"/api/v1/tasks/{task['id']}/complete", user="director", json={"data": {"decision": "approve"}}
        ).status_code
        == 403
    )


def test_claim_unclaim_and_conflicts(api, deployed):
    task = start(api)["tasks"][0]
    claimed = api.post(f"/api/v1/tasks/{task['id']}/claim", user="registrar")
    assert claimed.status_code == 200 and claimed.json["assignee"] == "registrar"
    mine = api.get("/api/v1/tasks?scope=mine", user="registrar").json["items"]
    assert [t["id"] for t in mine] == [task["id"]]
    assert api.get("/api/v1/tasks?scope=claimable", user="registrar").json["items"] == []
    # Claiming again by the holder is harmless; by anyone else it is a conflict.
    assert api.post(f"/api/v1/tasks/{task['id']}/claim", user="registrar").status_code == 200
    assert api.post(f"/api/v1/tasks/{task['id']}/claim", user="director").status_code == 409
    assert api.post(f"/api/v1/tasks/{task['id']}/unclaim", user="registrar").json["assignee"] is None
    assert api.post(f"/api/v1/tasks/{task['id']}/unclaim", user="registrar").status_code == 409


def test_completed_task_cannot_be_completed_again(api, deployed):
    task = start(api)["tasks"][0]
    body = {"data": {"decision": "approve"}}
    assert api.post(f"/api/v1/tasks/{task['id']}/complete", user="registrar", json=body).status_code == 200
    again = api.post(f"/api/v1/tasks/{task['id']}/complete", user="registrar", json=body)
    assert again.status_code == 409 and again.json["error"] == "conflict"


def test_assign_and_delegate(api, deployed):
    task = start(api)["tasks"][0]
    api.post(f"/api/v1/tasks/{task['id']}/claim", user="registrar")
    assert (
        api.post(
            f"/api/v1/tasks/{task['id']}/assign", user="registrar", json={"username": "ghost"}
        ).status_code
        == 422
    )
    moved = api.post(f"/api/v1/tasks/{task['id']}/assign", user="registrar", json={"username": "handler"})
    assert moved.status_code == 200 and moved.json["assignee"] == "handler"
    assert api.post(
        f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {"decision": "approve"}}
    ).status_code in (403, 404)

    delegated = api.post(f"/api/v1/tasks/{task['id']}/delegate", user="handler", json={"username": "legal"})
    assert delegated.json["assignee"] == "legal" and delegated.json["owner"] == "handler"
    resolved = api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        user="legal",
        json={"data": {"decision": "reject", "opinion": "建议不予通过"}},
    )
    assert resolved.status_code == 200
    assert resolved.json["task"]["status"] == "open"
    assert resolved.json["task"]["assignee"] == "handler" and resolved.json["task"]["owner"] is None
    prefill = api.get(f"/api/v1/tasks/{task['id']}", user="handler").json["data"]
    assert prefill["decision"] == "reject"  # the delegate's answer comes back as a draft
    final = api.post(
        f"/api/v1/tasks/{task['id']}/complete", user="handler", json={"data": {"decision": "approve"}}
    )
    assert final.json["task"]["status"] == "completed"


def test_send_back_reopens_previous_task_for_its_handler(api, deployed):
    first = start(api)["tasks"][0]
    done = api.post(
        f"/api/v1/tasks/{first['id']}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    second = done.json["instance"]["tasks"][0]
    assert (
        api.post(f"/api/v1/tasks/{second['id']}/send-back", user="chief", json={"comment": ""}).status_code
        == 422
    )
    back = api.post(
        f"/api/v1/tasks/{second['id']}/send-back", user="chief", json={"comment": "材料不全，请补充"}
    )
    assert back.status_code == 200, back.json
    assert back.json["task"]["status"] == "cancelled"
    [reopened] = back.json["instance"]["tasks"]
    assert reopened["element_id"] == "first_review" and reopened["assignee"] == "registrar"
    assert api.get(f"/api/v1/tasks/{second['id']}", user="chief").json["status"] == "cancelled"
    # The first step cannot be sent back further.
    assert (
        api.post(
            f"/api/v1/tasks/{reopened['id']}/send-back", user="registrar", json={"comment": "x"}
        ).status_code
        == 409
    )


def test_task_lists_by_scope_and_sla(api, deployed):
    start(api)
    assert api.get("/api/v1/tasks?scope=all", user="registrar").status_code == 403
    assert api.get("/api/v1/tasks?scope=all", user="director").json["total"] == 1
    assert api.get("/api/v1/tasks?scope=all&sla=overdue", user="director").json["total"] == 0
    assert api.get("/api/v1/tasks?scope=bogus", user="director").status_code == 422


def test_instance_list_filters(api, deployed):
    a = start(api)
    start(api)
    listing = api.get("/api/v1/process-instances?process_key=simple_review&per_page=1", user="director").json
    assert listing["total"] == 2 and len(listing["items"]) == 1
    by_key = api.get(f"/api/v1/process-instances?business_key={a['business_key']}", user="director").json
    assert [i["id"] for i in by_key["items"]] == [a["id"]]
    # Staff see only what they started or worked on.
    assert api.get("/api/v1/process-instances", user="legal").json["total"] == 0
    assert api.get(f"/api/v1/process-instances/{a['id']}", user="legal").status_code == 404
    assert api.get("/api/v1/process-instances?status=nonsense", user="director").status_code == 422


def test_suspend_resume_terminate(api, deployed):
    instance = start(api)
    task = instance["tasks"][0]
    url = f"/api/v1/process-instances/{instance['id']}"
    assert api.post(f"{url}/suspend", user="registrar", json={"reason": "x"}).status_code == 403
    assert (
        api.post(f"{url}/suspend", user="director", json={"reason": "核实中"}).json["status"] == "suspended"
    )
    assert (
        api.post(
            f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {"decision": "approve"}}
        ).status_code
        == 409
    )
    assert api.post(f"{url}/resume", user="director", json={}).json["status"] == "running"
    assert api.post(f"{url}/terminate", user="director", json={"reason": ""}).status_code == 422
    ended = api.post(f"{url}/terminate", user="director", json={"reason": "重复登记"})
    assert ended.json["status"] == "terminated" and ended.json["tasks"] == []
    assert api.get(f"/api/v1/tasks/{task['id']}", user="registrar").json["status"] == "cancelled"
    assert api.post(f"{url}/terminate", user="director", json={"reason": "again"}).status_code == 409


def test_timers_and_messages(api, deployed):
    created = api.post("/api/v1/process-instances", user="registrar", json={"process_key": "waiting_flow"})
    instance = created.json
    assert instance["status"] == "waiting" and instance["tasks"] == []
    url = f"/api/v1/process-instances/{instance['id']}"
    assert api.post(f"{url}/messages", user="registrar", json={"name": "docs_received"}).status_code == 409
    assert api.post(f"{url}/timers/fire", user="registrar", json={}).status_code == 403
    fired = api.post(f"{url}/timers/fire", user="director", json={})
    assert fired.status_code == 200, fired.json
    [task] = fired.json["tasks"]
    assert task["element_id"] == "handle"
    assert any(e["type"] == "timers_fired" and e["user"] == "director" for e in fired.json["history"])
    api.post(f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {}})
    assert api.post(f"{url}/messages", user="registrar", json={"name": "other"}).status_code == 409
    done = api.post(
        f"{url}/messages", user="registrar", json={"name": "docs_received", "payload": {"files": ["a1"]}}
    )
    assert done.status_code == 200, done.json
    assert done.json["status"] == "completed"
    assert done.json["variables"]["docs_received"] == {"files": ["a1"]}
