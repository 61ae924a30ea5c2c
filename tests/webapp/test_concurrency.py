"""Two people completing one task at the same moment: one wins, the other gets 409."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from engine.models import Event, HumanTask


def _race(app, token, task_id, body, n=2):
    barrier = threading.Barrier(n)
    statuses = []

    def complete():
        client = app.test_client()
        barrier.wait()
        response = client.post(
            f"/api/v1/tasks/{task_id}/complete", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=complete) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(statuses)


def test_concurrent_completes_one_wins(app, api, deployed, session_factory):
    for _ in range(3):  # a few rounds: the interleaving differs each time
        start = api.post(
            "/api/v1/process-instances",
            user="registrar",
            json={"process_key": "simple_review", "variables": {"title": "并发"}},
        )
        task_id = start.json["tasks"][0]["id"]
        statuses = _race(app, api.token("registrar"), task_id, {"data": {"decision": "approve"}})
        assert statuses == [200, 409]
        with session_factory() as s:
            rows = s.scalars(select(HumanTask).where(HumanTask.instance_id == start.json["id"])).all()
            assert sorted((r.element_id, r.status) for r in rows) == [
                ("confirm", "open"),
                ("first_review", "completed"),
            ]
            completions = s.scalar(
                select(func.count())
                .select_from(Event)
                .where(Event.instance_id == start.json["id"], Event.type == "completed")
            )
            assert completions == 1


def test_concurrent_claims_one_wins(app, api, deployed):
    start = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "simple_review", "variables": {"title": "认领"}},
    )
    task_id = start.json["tasks"][0]["id"]
    barrier = threading.Barrier(2)
    results = {}

    def claim(user):
        client = app.test_client()
        barrier.wait()
        r = client.post(
            f"/api/v1/tasks/{task_id}/claim", headers={"Authorization": f"Bearer {api.token(user)}"}
        )
        results[user] = r.status_code

    # registrar and a second office member race for the same task
    from engine.db import transaction
    from engine.users import create_user

    with transaction(app.extensions["chengxin"]["sessions"]) as s:
        create_user(s, "registrar2", "demo123", groups=["office"])
    threads = [threading.Thread(target=claim, args=(u,)) for u in ("registrar", "registrar2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results.values()) == [200, 409]
    holder = api.get(f"/api/v1/tasks/{task_id}", user="director").json["assignee"]
    assert results[holder] == 200
