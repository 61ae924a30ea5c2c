"""Deployments: safe parsing, lint errors with file/line/element, versioning by content."""

from __future__ import annotations

import pytest

from engine import definitions
from engine.errors import DefinitionError, TooLarge
from engine.users import ensure_groups

from ..conftest import FIXTURES

BPMN_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:camunda="http://camunda.org/schema/1.0/bpmn" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d" targetNamespace="t">\n'
)


def process(body: str, pid="p1", executable="true") -> bytes:
    return (
        BPMN_HEAD + f'<bpmn:process id="{pid}" name="测试" isExecutable="{executable}">\n{body}\n'
        "</bpmn:process>\n</bpmn:definitions>\n"
    ).encode()


ONE_TASK = """
<bpmn:startEvent id="s" /><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t" />
<bpmn:userTask id="t" name="办理" {attrs} />
<bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e" /><bpmn:endEvent id="e" />
"""


def fixture_files(*names):
    return [(n, (FIXTURES / n).read_bytes()) for n in names]


def form_file():
    return fixture_files("simple_confirm.form")[0]


def errors_of(session, files):
    with pytest.raises(DefinitionError) as info:
        definitions.deploy(session, files, user="analyst")
    return info.value.errors


@pytest.fixture
def groups(session):
    ensure_groups(session)


def test_same_content_same_version_changed_content_next_version(session, groups):
    bundle = fixture_files(
        "simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form"
    )
    first = definitions.deploy(session, bundle, user="analyst")
    assert first.created and [(d.key, d.version) for d in first.definitions] == [("simple_review", 1)]
    again = definitions.deploy(session, bundle, user="analyst")
    assert not again.created and again.definitions[0].id == first.definitions[0].id
    changed = [(n, c.replace("初审".encode(), "初步审核".encode())) for n, c in bundle]
    third = definitions.deploy(session, changed, user="analyst", note="改名")
    assert third.created and third.definitions[0].version == 2
    # A changed form alone is a new version too: instances keep the form they started with.
    form_changed = [(n, c.replace("审核结论".encode(), "结论".encode())) for n, c in changed]
    assert definitions.deploy(session, form_changed, user="analyst").definitions[0].version == 3
    assert [d.version for d in definitions.list_definitions(session, all_versions=True)] == [1, 2, 3]
    assert [d.version for d in definitions.list_definitions(session)] == [3]


def test_user_task_without_form_or_group_is_reported_with_line_and_element(session, groups):
    errors = errors_of(session, [("a.bpmn", process(ONE_TASK.format(attrs="")))])
    messages = {e["message"] for e in errors}
    assert any("表单" in m for m in messages) and any("候选组" in m for m in messages)
    assert all(e["file"] == "a.bpmn" and e["element_id"] == "t" and e["line"] == 6 for e in errors)


def test_unknown_form_and_unknown_group(session, groups):
    attrs = 'camunda:candidateGroups="nobody" camunda:formRef="missing_form"'
    errors = errors_of(session, [("a.bpmn", process(ONE_TASK.format(attrs=attrs)))])
    assert {e["message"] for e in errors} == {"表单 missing_form 不存在", "用户组 nobody 不存在"}


def test_lane_name_gives_the_group(session, groups):
    lanes = (
        '<bpmn:laneSet id="ls"><bpmn:lane id="l1" name="办公室">'
        "<bpmn:flowNodeRef>t</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>"
    )
    body = lanes + ONE_TASK.format(attrs='camunda:formRef="simple_confirm"')
    result = definitions.deploy(session, [("a.bpmn", process(body)), form_file()], user="analyst")
    assert result.definitions[0].elements["t"]["candidate_groups"] == "office"


def test_bad_expressions_are_refused_at_deploy_time(session, groups):
    attrs = 'camunda:candidateGroups="office" camunda:formRef="simple_confirm" camunda:dueDate="${workdays(}"'
    body = ONE_TASK.format(attrs=attrs).replace(
        '<bpmn:endEvent id="e" />',
        '<bpmn:endEvent id="e" /><bpmn:scriptTask id="x" scriptFormat="python"><bpmn:script>import os</bpmn:script></bpmn:scriptTask>',
    )
    errors = errors_of(session, [("a.bpmn", process(body)), form_file()])
    assert {e["element_id"] for e in errors} >= {"t", "x"}


def test_all_non_executable_is_refused_with_the_reason(session, groups):
    attrs = 'camunda:candidateGroups="office" camunda:formRef="simple_confirm"'
    errors = errors_of(
        session, [("a.bpmn", process(ONE_TASK.format(attrs=attrs), executable="false")), form_file()]
    )
    assert "isExecutable" in errors[0]["message"]


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"<bpmn:definitions", "XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>',
            "DTD",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><l>&b;</l>',
            "DTD",
        ),
        (b"<a>" * 200 + b"</a>" * 200, "嵌套"),
    ],
)
def test_malicious_or_malformed_xml_is_refused_and_nothing_stored(session, groups, payload, fragment):
    errors = errors_of(session, [("evil.bpmn", payload)])
    assert fragment in errors[0]["message"]
    assert definitions.list_definitions(session) == []


def test_oversized_file_is_too_large(session, groups):
    with pytest.raises(TooLarge):
        definitions.deploy(session, [("big.bpmn", b" " * (definitions.MAX_FILE_BYTES + 1))], user="a")


def test_wrong_file_kind_and_bad_form_json(session, groups):
    errors = errors_of(session, [("notes.txt", b"hello"), ("x.form", b"{not json")])
    assert {e["file"] for e in errors} == {"notes.txt", "x.form"}


def test_call_activity_resolves_from_an_earlier_deployment(session, groups):
    attrs = 'camunda:candidateGroups="office" camunda:formRef="simple_confirm"'
    called = process(ONE_TASK.format(attrs=attrs), pid="sub")
    definitions.deploy(session, [("sub.bpmn", called), form_file()], user="a")
    caller = process(
        '<bpmn:startEvent id="s" /><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="c" />'
        '<bpmn:callActivity id="c" calledElement="sub" /><bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="e" />'
        '<bpmn:endEvent id="e" />',
        pid="main",
    )
    result = definitions.deploy(session, [("main.bpmn", caller)], user="a")
    spec, subprocesses = definitions.load_spec(session, result.definitions[0])
    assert "sub" in subprocesses
    errors = errors_of(
        session, [("m2.bpmn", caller.replace(b'calledElement="sub"', b'calledElement="nowhere"'))]
    )
    assert errors[0]["file"] == "m2.bpmn"


def test_camunda_modeler_file_deploys(session, groups):
    """Attributes Camunda Modeler writes (executionPlatform, formRefBinding) are accepted."""
    body = ONE_TASK.format(
        attrs='camunda:candidateGroups="office" camunda:formRef="simple_confirm" '
        'camunda:formRefBinding="latest" camunda:dueDate="${days(15)}"'
    )
    xml = process(body).replace(
        b'targetNamespace="t">',
        b'targetNamespace="t" xmlns:modeler="http://camunda.org/schema/modeler/1.0" '
        b'modeler:executionPlatform="Camunda Platform" modeler:executionPlatformVersion="7.21.0" '
        b'exporter="Camunda Modeler" exporterVersion="5.30.0">',
    )
    result = definitions.deploy(session, [("m.bpmn", xml), form_file()], user="a")
    assert result.definitions[0].elements["t"]["due_date"] == "${days(15)}"
