"""The task and instance lists at the API: keyset paging (`cursor`) next to page numbers, the
claimable list's refusals, the instance list's open tasks (one query for the whole page) and
the summary's counts."""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update

from engine.db import make_session_factory, transaction
from engine.models import Event, HumanTask, ProcessInstance, TaskCandidate
from engine.queries import BAD_CURSOR
from tests.webapp.test_tasks_api import start

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
LATER = datetime.now(UTC) + timedelta(days=60)
# Due dates with ties and gaps; None sorts last.
DUES = [T0, T0, T0 + timedelta(days=2), None, T0 - timedelta(days=1), T0 + timedelta(days=2), None, T0]


def sessions(app):
    return make_session_factory(app.extensions["chengxin"]["engine"])


def add_task(session, instance_id, *, due_at, assignee=None, groups=(), users=(), status="open"):
    instance = session.get(ProcessInstance, instance_id)
    task = HumanTask(
        instance_id=instance_id,
        task_guid=str(uuid.uuid4()),
        element_id="extra_review",
        name="加审",
        process_key=instance.process_key,
        business_key=instance.business_key,
        subject=instance.subject,
        assignee=assignee,
        candidate_groups=list(groups),
        candidate_users=list(users),
        status=status,
        due_at=due_at,
        completed_at=T0 if status != "open" else None,
    )
    session.add(task)
    session.flush()
    session.add_all([TaskCandidate(task_id=task.id, kind="group", name=g) for g in groups])
    session.add_all([TaskCandidate(task_id=task.id, kind="user", name=u) for u in users])
    session.flush()
    return task.id


@pytest.fixture
def worklist(app, api, deployed):
    """Three started instances (their first review offered to the office) and extra tasks:
    assigned to registrar, offered to the office or to registrar by name, offered to
    supervision, claimed by chief, closed. Returns the task ids by kind."""
    instances = [start(api)["id"] for _ in range(3)]
    kinds: dict[str, list[int]] = {k: [] for k in ("mine", "office", "by_name", "supervision", "closed")}
    with transaction(sessions(app)) as session:
        kinds["office"] = list(
            session.scalars(select(HumanTask.id).where(HumanTask.instance_id.in_(instances)))
        )
        for n, due in enumerate(DUES):
            where = instances[n % 3]
            kinds["mine"].append(add_task(session, where, due_at=due, assignee="registrar"))
            kinds["office"].append(add_task(session, where, due_at=due, groups=["office"]))
        for due in (T0, None):
            kinds["by_name"].append(add_task(session, instances[0], due_at=due, users=["registrar"]))
        for due in (T0, None, T0 + timedelta(days=1)):
            kinds["supervision"].append(add_task(session, instances[1], due_at=due, groups=["supervision"]))
        # Offered to the office but not claimable: claimed by someone else, or no longer open.
        kinds["claimed"] = [add_task(session, instances[2], due_at=T0, assignee="chief", groups=["office"])]
        for status in ("completed", "cancelled"):
            kinds["closed"].append(
                add_task(session, instances[2], due_at=T0, groups=["office"], status=status)
            )
    kinds["instances"] = instances
    return kinds


def inbox_order(app, ids) -> list[int]:
    """The ids in the lists' order: due date first (none last), then id."""
    with sessions(app)() as session:
        rows = session.execute(select(HumanTask.id, HumanTask.due_at).where(HumanTask.id.in_(ids))).all()
    return [i for i, due in sorted(rows, key=lambda r: (r.due_at is None, r.due_at or T0, r.id))]


def walk(api, user, path, per_page):
    """Every page of a list by cursor: (ids in order, the answers)."""
    sep = "&" if "?" in path else "?"
    answers = [api.get(f"{path}{sep}per_page={per_page}", user=user)]
    while answers[-1].json["next_cursor"]:
        assert answers[-1].status_code == 200, answers[-1].json
        answers.append(
            api.get(f"{path}{sep}per_page={per_page}&cursor={answers[-1].json['next_cursor']}", user=user)
        )
        assert len(answers) < 100, "the cursor does not advance"
    assert answers[-1].status_code == 200, answers[-1].json
    return [item["id"] for a in answers for item in a.json["items"]], answers


def offset_pages(api, user, path, per_page):
    sep = "&" if "?" in path else "?"
    first = api.get(f"{path}{sep}per_page={per_page}", user=user).json
    pages = [first] + [
        api.get(f"{path}{sep}per_page={per_page}&page={n}", user=user).json
        for n in range(2, math.ceil(first["total"] / per_page) + 1)
    ]
    return pages


@pytest.mark.parametrize("per_page", [1, 2, 5])
def test_cursor_walks_every_task_once_in_order(app, api, worklist, per_page):
    claimable = worklist["office"] + worklist["by_name"]
    for user, scope, ids in (
        ("registrar", "mine", worklist["mine"]),
        ("registrar", "claimable", claimable),
        ("handler", "claimable", worklist["supervision"]),
    ):
        expected = inbox_order(app, ids)
        walked, answers = walk(api, user, f"/api/v1/tasks?scope={scope}", per_page)
        assert walked == expected, (user, scope)
        assert len(answers) == math.ceil(len(expected) / per_page)
        assert answers[0].json["page"] == 1
        assert all(a.json["page"] is None for a in answers[1:])
        assert answers[0].json["total"] == len(expected)
        assert all(a.json["total"] is None for a in answers[1:])  # not counted again
        assert all(len(a.json["items"]) == per_page for a in answers[:-1])
        assert answers[-1].json["next_cursor"] is None


def test_cursor_pages_match_offset_pages(app, api, worklist):
    every_open = worklist["mine"] + worklist["office"] + worklist["by_name"] + worklist["supervision"]
    every_open += worklist["claimed"]
    for user, path in (
        ("registrar", "/api/v1/tasks?scope=claimable"),
        ("registrar", "/api/v1/tasks?scope=mine"),
        ("director", "/api/v1/tasks?scope=all"),
        ("registrar", f"/api/v1/tasks?scope=claimable&instance_id={worklist['instances'][0]}"),
    ):
        pages = offset_pages(api, user, path, 3)
        by_offset = [t["id"] for p in pages for t in p["items"]]
        assert by_offset == walk(api, user, path, 3)[0], path
        for page, following in zip(pages, pages[1:], strict=False):
            resumed = api.get(f"{path}&per_page=3&cursor={page['next_cursor']}", user=user).json
            assert resumed["items"] == following["items"]
        assert pages[-1]["next_cursor"] is None
        if path.endswith("scope=all"):
            assert by_offset == inbox_order(app, every_open)


def test_tasks_without_due_date_come_last_and_follow_each_other_by_id(app, api, worklist):
    undated = [task for task, due in zip(worklist["mine"], DUES, strict=True) if due is None]
    walked, _ = walk(api, "registrar", "/api/v1/tasks?scope=mine", 1)
    assert walked == inbox_order(app, worklist["mine"])
    assert walked[-len(undated) :] == sorted(undated)


def _cursor(*payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(payload)).encode()).decode().rstrip("=")


BAD_TASK_CURSORS = [
    "not a cursor!",
    "%%%%",
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    base64.urlsafe_b64encode(b"{not json").decode(),
    _cursor("instance", "2026-03-02T01:00:00+00:00", 5),
    _cursor("task", "yesterday", 5),
    _cursor("task", "2026-03-02T01:00:00", 5),  # no offset
    _cursor("task", None, -1),
    _cursor("task", None, 0),
    _cursor("task", None, 2**40),
    _cursor("task", None, True),
    _cursor("task", None, 1.5),
    _cursor("task", None, "7"),
    _cursor("task", None),
    _cursor("task", None, 1, 2),
    _cursor({"task": 1}),
    "A" * 201,
    "",
]


def _table_counts(app) -> tuple:
    with sessions(app)() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (HumanTask, TaskCandidate, ProcessInstance, Event)
        )


@pytest.mark.parametrize("cursor", BAD_TASK_CURSORS)
def test_bad_task_cursor_is_422_and_changes_nothing(app, api, worklist, cursor):
    before = _table_counts(app)
    listed = api.get("/api/v1/tasks?scope=claimable", user="registrar").json
    response = api.get(
        "/api/v1/tasks", user="registrar", query_string={"scope": "claimable", "cursor": cursor}
    )
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation"
    assert "cursor" in response.json["errors"]
    assert response.json["errors"]["cursor"] == [BAD_CURSOR]
    assert _table_counts(app) == before
    assert api.get("/api/v1/tasks?scope=claimable", user="registrar").json == listed


@pytest.mark.parametrize(
    "cursor",
    [_cursor("task", None, 5), _cursor("instance", None, 5), _cursor("instance", "x", 5), "garbage"],
)
def test_bad_instance_cursor_is_422(api, worklist, cursor):
    response = api.get("/api/v1/process-instances", user="director", query_string={"cursor": cursor})
    assert response.status_code == 422, response.json
    assert "cursor" in response.json["errors"]


def test_cursor_and_page_together_are_refused(api, worklist):
    first = api.get("/api/v1/tasks?scope=mine&per_page=2", user="registrar").json
    for path in ("/api/v1/tasks?scope=mine", "/api/v1/process-instances?status=running"):
        response = api.get(f"{path}&page=2&cursor={first['next_cursor']}", user="registrar")
        assert response.status_code == 422, response.json
        assert response.json["errors"]["cursor"] == ["cursor 与 page 不能同时使用"]


def test_claimable_shows_only_what_the_actor_may_claim(app, api, worklist):
    def claimable(user):
        return set(walk(api, user, "/api/v1/tasks?scope=claimable", 4)[0])

    registrar = claimable("registrar")
    assert registrar == set(worklist["office"]) | set(worklist["by_name"])
    assert not registrar & set(
        worklist["supervision"] + worklist["claimed"] + worklist["closed"] + worklist["mine"]
    )
    assert claimable("handler") == set(worklist["supervision"])
    assert claimable("chief") == set(worklist["supervision"])  # supervision and section chiefs
    assert claimable("legal") == set()
    # What the list leaves out cannot be claimed either.
    refused = api.post(f"/api/v1/tasks/{worklist['supervision'][0]}/claim", user="registrar")
    assert refused.status_code in (403, 404)  # 404: a task not visible to the caller
    with sessions(app)() as session:
        assert session.get(HumanTask, worklist["supervision"][0]).assignee is None
    # Claiming moves a task from the claimable list into the claimer's own inbox.
    [offered, *_] = inbox_order(app, worklist["office"])
    assert api.post(f"/api/v1/tasks/{offered}/claim", user="registrar").status_code == 200
    assert claimable("registrar") == registrar - {offered}
    mine = walk(api, "registrar", "/api/v1/tasks?scope=mine", 4)[0]
    assert offered in mine
    assert api.post(f"/api/v1/tasks/{offered}/claim", user="handler").status_code in (403, 404, 409)


def test_claimable_count_matches_the_walk_on_the_html_inbox(app, api, worklist):
    """The HTML inbox shares the claimable filter: its tab count is the API's total."""
    from tests.webapp.pages_client import PageClient

    total = api.get("/api/v1/tasks?scope=claimable", user="registrar").json["total"]
    assert total == len(worklist["office"]) + len(worklist["by_name"])
    page = PageClient(app, "registrar").get("/inbox?tab=claimable").text
    assert f'可认领 <span class="badge badge-info">{total}</span>' in page


# --- the instance list --------------------------------------------------------------------


@pytest.fixture
def instances(app, api, deployed):
    """Fourteen instances: ten by registrar, four by chief; some finished, some with extra open
    tasks, three started at the same instant (the tiebreak on id)."""
    made = [start(api, subject_name=f"许昌{n}号企业")["id"] for n in range(10)]
    made += [start(api, user="chief", subject_name=f"许昌{n}号矿业")["id"] for n in range(4)]
    finished = made[1]
    task = api.get(f"/api/v1/process-instances/{finished}", user="registrar").json["tasks"][0]
    done = api.post(
        f"/api/v1/tasks/{task['id']}/complete", user="registrar", json={"data": {"decision": "reject"}}
    )
    assert done.status_code == 200 and done.json["instance"]["status"] == "completed"
    with transaction(sessions(app)) as session:
        add_task(session, made[2], due_at=LATER, assignee="handler")
        add_task(session, made[2], due_at=None, groups=["legal"])
        add_task(session, made[3], due_at=LATER, groups=["office"], status="completed")
        same = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
        session.execute(
            update(ProcessInstance).where(ProcessInstance.id.in_(made[4:7])).values(started_at=same)
        )
    return made


def newest_first(app, ids) -> list[int]:
    with sessions(app)() as session:
        rows = session.execute(
            select(ProcessInstance.id, ProcessInstance.started_at).where(ProcessInstance.id.in_(ids))
        ).all()
    return [i for i, _ in sorted(rows, key=lambda r: (r.started_at, r.id), reverse=True)]


@pytest.mark.parametrize("per_page", [1, 3, 50])
def test_instance_cursor_walk_matches_offset_pages(app, api, instances, per_page):
    with sessions(app)() as session:
        running = list(session.scalars(select(ProcessInstance.id).where(ProcessInstance.status == "running")))
    for user, path, ids in (
        ("director", "/api/v1/process-instances", instances),
        ("director", "/api/v1/process-instances?status=running", running),
        ("director", "/api/v1/process-instances?process_key=simple_review&status=running", running),
        ("registrar", "/api/v1/process-instances", instances[:10]),
    ):
        walked, answers = walk(api, user, path, per_page)
        assert walked == newest_first(app, ids), path
        by_offset = [i["id"] for p in offset_pages(api, user, path, per_page) for i in p["items"]]
        assert by_offset == walked
        assert answers[0].json["total"] == len(walked)


def test_staff_see_only_their_instances_through_the_cursor(app, api, instances):
    assert walk(api, "chief", "/api/v1/process-instances", 2)[0] == newest_first(app, instances[10:])
    assert walk(api, "handler", "/api/v1/process-instances", 2)[0] == [instances[2]]  # holds a task there
    assert walk(api, "legal", "/api/v1/process-instances", 2)[0] == []  # only offered one


def test_instance_list_presents_each_instance_s_open_tasks(app, api, instances):
    listed = {
        i["id"]: i for i in api.get("/api/v1/process-instances?per_page=50", user="director").json["items"]
    }
    assert set(listed) == set(instances)
    for instance_id in instances:
        detail = api.get(f"/api/v1/process-instances/{instance_id}", user="director").json
        assert listed[instance_id]["tasks"] == detail["tasks"], instance_id
        assert {k: v for k, v in listed[instance_id].items() if k != "tasks"} == {
            k: v for k, v in detail.items() if k in listed[instance_id] and k != "tasks"
        }
    assert listed[instances[1]]["status"] == "completed" and listed[instances[1]]["tasks"] == []
    extra = listed[instances[2]]["tasks"]
    assert [t["name"] for t in extra] == ["初审", "加审", "加审"]
    assert [t["assignee"] for t in extra] == [None, "handler", None]
    assert [t["candidate_groups"] for t in extra] == [["office"], [], ["legal"]]
    assert extra[0]["id"] < extra[1]["id"] < extra[2]["id"]
    assert [t["name"] for t in listed[instances[3]]["tasks"]] == ["初审"]  # the closed one is gone


def count_selects(app, api, user, path) -> int:
    seen = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append(statement)

    db = app.extensions["chengxin"]["engine"]
    api.token(user)  # issue the token before counting
    event.listen(db, "before_cursor_execute", remember)
    try:
        response = api.get(path, user=user)
    finally:
        event.remove(db, "before_cursor_execute", remember)
    assert response.status_code == 200, response.json
    return len(seen)


def test_instance_list_queries_do_not_grow_with_the_page(app, api, instances):
    small = count_selects(app, api, "director", "/api/v1/process-instances?per_page=1")
    full = count_selects(app, api, "director", "/api/v1/process-instances?per_page=14")
    assert full == small
    assert count_selects(app, api, "registrar", "/api/v1/process-instances?per_page=14") == count_selects(
        app, api, "registrar", "/api/v1/process-instances?per_page=1"
    )
    first = api.get("/api/v1/process-instances?per_page=3", user="director").json
    deep = count_selects(
        app, api, "director", f"/api/v1/process-instances?per_page=14&cursor={first['next_cursor']}"
    )
    assert deep == small - 1  # a cursor page is not counted again


def test_openapi_shows_the_cursor(api):
    spec = api.get("/api/openapi.json").json
    for path in ("/api/v1/tasks", "/api/v1/process-instances"):
        names = [p["name"] for p in spec["paths"][path]["get"]["parameters"]]
        assert {"cursor", "page", "per_page"} <= set(names)
    schemas = spec["components"]["schemas"]
    for name in ("TaskPage", "InstanceList"):
        assert "next_cursor" in schemas[name]["properties"]


# --- the summary --------------------------------------------------------------------------


def test_summary_counts_match_the_rows(app, api, instances):
    """Open, overdue and due-soon counts and instances by status, against the rows themselves."""
    now = datetime.now(UTC)
    with transaction(sessions(app)) as session:
        late_task = session.scalar(
            select(HumanTask.id).where(HumanTask.instance_id == instances[5], HumanTask.status == "open")
        )
        session.execute(
            update(HumanTask).where(HumanTask.id == late_task).values(due_at=now - timedelta(days=1))
        )
        soon = session.scalar(
            select(HumanTask.id).where(HumanTask.instance_id == instances[6], HumanTask.status == "open")
        )
        session.execute(
            update(HumanTask)
            .where(HumanTask.id == soon)
            .values(warn_at=now - timedelta(hours=1), due_at=now + timedelta(days=1))
        )
        session.execute(
            update(ProcessInstance)
            .where(ProcessInstance.id == instances[7])
            .values(due_at=now - timedelta(days=2))
        )
    assert (
        api.post(
            f"/api/v1/process-instances/{instances[8]}/terminate",
            user="director",
            json={"reason": "重复登记"},
        ).status_code
        == 200
    )
    body = api.get("/api/v1/stats/summary", user="director").json
    with sessions(app)() as session:
        statuses = dict(
            session.execute(
                select(ProcessInstance.status, func.count()).group_by(ProcessInstance.status)
            ).all()
        )
        open_tasks = list(session.scalars(select(HumanTask).where(HumanTask.status == "open")))
    assert statuses == {"running": 12, "completed": 1, "terminated": 1}
    assert body["instances_by_status"] == {
        "running": 12,
        "waiting": 0,
        "completed": 1,
        "terminated": 1,
        "suspended": 0,
        "error": 0,
    }
    # One first review per instance, less the finished two, plus the two extra open tasks.
    assert body["open_tasks"] == len(open_tasks) == 14 - 2 + 2
    assert body["overdue_tasks"] == 1
    assert body["warning_tasks"] == 1
    assert body["overdue_instances"] == 1
    process = body["by_process"]["simple_review"]
    assert process["instances_by_status"] == body["instances_by_status"]
    assert process["open_tasks"] == body["open_tasks"] and process["overdue_instances"] == 1
