"""The script sandbox through deployment and the runtime, over HTTP: escapes are refused at
deployment with the element named; endless loops are stopped by the time limit with a clear
422, and the instance stays as it was before the step."""

from __future__ import annotations

import io
import time
from html import escape

import pytest
from sqlalchemy import func, select

from engine.models import Event, HumanTask, ProcessInstance

from ..conftest import FIXTURES

TIME_LIMIT = 0.3
FORMS = [FIXTURES / n for n in ("simple_review.form", "simple_confirm.form")]


@pytest.fixture
def settings(settings):
    settings.script_time_limit = TIME_LIMIT
    return settings


def diagram(
    script: str = "result = 1", condition: str = 'decision == "approve"', pid: str = "sandboxed"
) -> bytes:
    """start → 填写 (office) → gateway (condition) → 计算 (script) → 复核 → end."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">
  <bpmn:process id="{pid}" name="沙箱测试" isExecutable="true">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fill" />
    <bpmn:userTask id="fill" name="填写" camunda:candidateGroups="office" camunda:formRef="simple_review" />
    <bpmn:sequenceFlow id="f2" sourceRef="fill" targetRef="gw" />
    <bpmn:exclusiveGateway id="gw" default="f_other" />
    <bpmn:sequenceFlow id="f_approve" sourceRef="gw" targetRef="calc">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition)}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_other" sourceRef="gw" targetRef="end" />
    <bpmn:scriptTask id="calc" name="计算" scriptFormat="python">
      <bpmn:script>{escape(script)}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="calc" targetRef="confirm" />
    <bpmn:userTask id="confirm" name="复核" camunda:candidateGroups="office" camunda:formRef="simple_confirm" />
    <bpmn:sequenceFlow id="f4" sourceRef="confirm" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>""".encode()


def deploy(api, bpmn: bytes):
    files = [(io.BytesIO(bpmn), "sandboxed.bpmn")] + [(io.BytesIO(p.read_bytes()), p.name) for p in FORMS]
    return api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={"files": files},
        content_type="multipart/form-data",
    )


def definition_count(api) -> int:
    return len(api.get("/api/v1/process-definitions?all_versions=true", user="analyst").json["items"])


@pytest.mark.parametrize(
    "script, condition, element, words",
    [
        ("os = __import__('os')\nresult = os.getcwd()", 'decision == "approve"', "calc", "__import__"),
        ("result = open('/etc/passwd').read()", 'decision == "approve"', "calc", "open()"),
        ("result = ().__class__.__bases__[0].__subclasses__()", 'decision == "approve"', "calc", "__class__"),
        ("result = 1", "__import__('os').system('id') == 0", "f_approve", "__import__"),
        ("result = 1", "open('/etc/passwd').read() != ''", "f_approve", "open()"),
        ("result = 1", "len(().__class__.__bases__[0].__subclasses__()) > 0", "f_approve", "__class__"),
    ],
)
def test_escapes_are_refused_at_deployment_naming_the_element(api, script, condition, element, words):
    before = definition_count(api)
    response = deploy(api, diagram(script, condition))
    assert response.status_code == 422, response.json
    assert response.json["error"] == "invalid_definition"
    [error] = [e for e in response.json["errors"] if e["element_id"] == element]
    assert words in error["message"] and error["file"] == "sandboxed.bpmn" and error["line"]
    assert definition_count(api) == before


def _snapshot(session_factory, instance_id: int) -> tuple:
    with session_factory() as s:
        instance = s.get(ProcessInstance, instance_id)
        tasks = sorted((t.id, t.element_id, t.status, t.assignee) for t in s.scalars(select(HumanTask)))
        events = s.scalar(select(func.count(Event.id)).where(Event.instance_id == instance_id))
        return instance.lock_version, instance.status, instance.state, tasks, events


@pytest.mark.parametrize("loop", ["while True:\n    pass", "n = 1\nwhile n > 0:\n    n = n + 1"])
def test_an_endless_loop_is_stopped_by_the_time_limit_and_nothing_is_half_written(api, session_factory, loop):
    assert deploy(api, diagram(loop)).status_code == 201
    started = api.post("/api/v1/process-instances", user="registrar", json={"process_key": "sandboxed"})
    assert started.status_code == 201, started.json
    instance_id, task_id = started.json["id"], started.json["tasks"][0]["id"]
    before = _snapshot(session_factory, instance_id)

    began = time.monotonic()
    response = api.post(
        f"/api/v1/tasks/{task_id}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    elapsed = time.monotonic() - began

    assert response.status_code == 422, response.json
    assert response.json["error"] == "script_error"
    assert "时间" in response.json["message"] or "超时" in response.json["message"], response.json["message"]
    assert elapsed < TIME_LIMIT + 5
    assert _snapshot(session_factory, instance_id) == before  # same state, same tasks, no events
    task = api.get(f"/api/v1/tasks/{task_id}", user="registrar").json
    assert task["status"] == "open"
    # The other branch never reaches the script: the instance itself is still usable.
    other = api.post(
        f"/api/v1/tasks/{task_id}/complete", user="registrar", json={"data": {"decision": "reject"}}
    )
    assert other.status_code == 200 and other.json["instance"]["status"] == "completed"


def test_a_loop_right_after_the_start_creates_no_instance(api, session_factory):
    bpmn = diagram("while True:\n    pass", pid="loop_at_start")
    bpmn = bpmn.replace(b'targetRef="fill"', b'targetRef="calc"', 1)
    assert deploy(api, bpmn).status_code == 201
    response = api.post("/api/v1/process-instances", user="registrar", json={"process_key": "loop_at_start"})
    assert response.status_code == 422 and response.json["error"] == "script_error"
    with session_factory() as s:
        assert s.scalar(select(func.count(ProcessInstance.id))) == 0
        assert s.scalar(select(func.count(HumanTask.id))) == 0
