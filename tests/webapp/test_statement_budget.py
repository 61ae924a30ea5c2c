"""SQL statements per API request: a ceiling for the hot requests (start, task detail, claim,
complete), and no growth with the number of open tasks an instance has (an N+1 in a presenter
or in the engine would make the count follow the tasks)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

# Measured on PostgreSQL (SQLite sends the same or fewer; its BEGIN is not counted):
# the caller's identity is 1, the rest is the engine's work and the answer's open tasks.
CEILING = {"start": 9, "task": 2, "claim": 5, "complete": 9, "me": 1}

PARALLEL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
                  id="defs_{key}" targetNamespace="http://chengxin.local/test">
  <bpmn:process id="{key}" name="并行会签 {n}" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="fork" />
    <bpmn:parallelGateway id="fork" />
    {branches}
    <bpmn:parallelGateway id="join" />
    <bpmn:sequenceFlow id="f_end" sourceRef="join" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""
BRANCH = """
    <bpmn:sequenceFlow id="in{i}" sourceRef="fork" targetRef="sign{i}" />
    <bpmn:userTask id="sign{i}" name="会签 {i}" camunda:candidateGroups="office" camunda:formRef="countersign" />
    <bpmn:sequenceFlow id="out{i}" sourceRef="sign{i}" targetRef="join" />"""
FORM = """{"id": "countersign", "type": "default", "schemaVersion": 16, "components": [
  {"type": "textarea", "key": "opinion", "label": "会签意见"}]}"""


class Statements:
    """Counts the statements the app sends during `with counter:` (BEGIN excluded)."""

    def __init__(self, app):
        self.sent: list[str] = []
        self.on = False
        event.listen(app.extensions["chengxin"]["engine"], "before_cursor_execute", self._collect)

    def _collect(self, conn, cursor, statement, parameters, context, executemany):
        if self.on and not statement.lstrip().upper().startswith("BEGIN"):
            self.sent.append(" ".join(statement.split())[:160])

    def __enter__(self):
        self.sent, self.on = [], True
        return self

    def __exit__(self, *exc):
        self.on = False

    def __len__(self):
        return len(self.sent)

    @property
    def reads(self) -> int:
        return sum(1 for s in self.sent if s.upper().startswith("SELECT"))


@pytest.fixture
def statements(app):
    return Statements(app)


def start(api, key="simple_review", user="registrar"):
    body = {"process_key": key, "variables": {"title": "计数", "amount": 1}}
    response = api.post("/api/v1/process-instances", user=user, json=body)
    assert response.status_code == 201, response.json
    return response.json


def complete(api, task_id, data, user="registrar"):
    response = api.post(f"/api/v1/tasks/{task_id}/complete", user=user, json={"data": data})
    assert response.status_code == 200, response.json
    return response.json


def test_hot_requests_stay_within_their_statement_ceiling(api, deployed, statements):
    start(api)  # warm: the version's files are loaded and cached once per process
    api.get("/api/v1/me", user="chief")
    with statements:
        instance = start(api)
    assert len(statements) <= CEILING["start"], statements.sent
    task_id = instance["tasks"][0]["id"]

    with statements:
        detail = api.get(f"/api/v1/tasks/{task_id}", user="registrar")
    assert detail.status_code == 200 and detail.json["form"]["id"] == "simple_review"
    assert len(statements) <= CEILING["task"], statements.sent

    with statements:
        claimed = api.post(f"/api/v1/tasks/{task_id}/claim", user="registrar")
    assert claimed.status_code == 200 and claimed.json["assignee"] == "registrar"
    assert len(statements) <= CEILING["claim"], statements.sent

    with statements:
        done = complete(api, task_id, {"decision": "approve"})
    assert done["task"]["status"] == "completed" and done["instance"]["tasks"]
    assert len(statements) <= CEILING["complete"], statements.sent

    with statements:
        last = complete(api, done["instance"]["tasks"][0]["id"], {"confirmed": True}, user="chief")
    assert last["instance"]["status"] == "completed" and last["instance"]["tasks"] == []
    assert len(statements) <= CEILING["complete"], statements.sent

    with statements:
        assert api.get("/api/v1/me", user="chief").status_code == 200
    assert len(statements) == CEILING["me"], statements.sent


def _deploy_parallel(api, tmp_path, n: int) -> str:
    key = f"countersign_{n}"
    path = tmp_path / f"{key}.bpmn"
    branches = "".join(BRANCH.format(i=i) for i in range(1, n + 1))
    path.write_text(PARALLEL.format(key=key, n=n, branches=branches), encoding="utf-8")
    form = tmp_path / "countersign.form"
    form.write_text(FORM, encoding="utf-8")
    response = api.deploy(path, form)
    assert response.status_code == 201, response.json
    return key


def _counts_for(api, statements, key: str, n: int) -> dict:
    instance = start(api, key)
    assert len(instance["tasks"]) == n
    with statements:
        start(api, key)
    counts = {"start": (len(statements), statements.reads)}
    first, second = instance["tasks"][0]["id"], instance["tasks"][1]["id"]
    with statements:
        assert api.get(f"/api/v1/tasks/{first}", user="registrar").status_code == 200
    counts["task"] = (len(statements), statements.reads)
    with statements:
        done = complete(api, first, {"opinion": "同意"})
    assert len(done["instance"]["tasks"]) == n - 1 and len(done["next_tasks"]) == n - 1
    counts["complete"] = (len(statements), statements.reads)
    with statements:
        assert api.post(f"/api/v1/tasks/{second}/claim", user="registrar").status_code == 200
    counts["claim"] = (len(statements), statements.reads)
    return counts


def test_statements_do_not_follow_the_number_of_open_tasks(app, api, tmp_path, statements):
    """(statements, of which SELECTs) per request, for instances with 2 and 6 parallel tasks."""
    few = _counts_for(api, statements, _deploy_parallel(api, tmp_path, 2), 2)
    many = _counts_for(api, statements, _deploy_parallel(api, tmp_path, 6), 6)
    assert {k: reads for k, (_, reads) in many.items()} == {k: reads for k, (_, reads) in few.items()}
    if app.extensions["chengxin"]["engine"].dialect.name == "postgresql":
        assert many == few  # new rows go in one INSERT each table (SQLite: one per row)
