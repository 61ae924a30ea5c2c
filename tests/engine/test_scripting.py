"""Tests for engine.scripting: the sandboxed script engine run by real SpiffWorkflow workflows."""

import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.util.task import TaskState

from engine.errors import NotFound, ScriptError
from engine.scripting import (
    CHINA_TZ,
    SandboxEnvironment,
    ScriptEngine,
    check_expression,
    check_script,
    check_timer_expression,
    is_iso_timer_literal,
    normalize_expression,
    to_timer_value,
)

# --- building and running small diagrams --------------------------------------------------

DEFINITIONS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn"
    id="defs" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="proc" isExecutable="true">
    {body}
  </bpmn:process>
</bpmn:definitions>"""


def start_workflow(body: str, engine: ScriptEngine, **data) -> BpmnWorkflow:
    parser = CamundaParser()
    parser.add_bpmn_str(DEFINITIONS.format(body=body).encode())
    workflow = BpmnWorkflow(parser.get_spec("proc"), script_engine=engine)
    workflow.get_next_task(state=TaskState.READY).data.update(data)
    return workflow


def script_process(script: str) -> str:
    return f"""
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="calc"/>
    <bpmn:scriptTask id="calc" name="计算" scriptFormat="python">
      <bpmn:script><![CDATA[{script}]]></bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="calc" targetRef="end"/>
    <bpmn:endEvent id="end"/>"""


def run_script(script: str, engine: ScriptEngine | None = None, **data) -> dict:
    workflow = start_workflow(script_process(script), engine or ScriptEngine(), **data)
    workflow.do_engine_steps()
    assert workflow.is_completed()
    return workflow.data


GATEWAY_PROCESS = """
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="gw"/>
    <bpmn:exclusiveGateway id="gw" name="受理?"/>
    <bpmn:sequenceFlow id="to_accept" sourceRef="gw" targetRef="end_accept">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">${acceptance == "accept"}
      </bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_reject" sourceRef="gw" targetRef="end_reject">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">#{ acceptance == "reject" }
      </bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="to_transfer" sourceRef="gw" targetRef="end_transfer">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">
        acceptance == "transfer" and bool(transfer_to)
      </bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:endEvent id="end_accept"/>
    <bpmn:endEvent id="end_reject"/>
    <bpmn:endEvent id="end_transfer"/>"""


def timer_process(kind: str, expression: str) -> str:
    return f"""
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="wait"/>
    <bpmn:intermediateCatchEvent id="wait" name="等待">
      <bpmn:timerEventDefinition>
        <bpmn:{kind} xsi:type="bpmn:tFormalExpression">{expression}</bpmn:{kind}>
      </bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f2" sourceRef="wait" targetRef="end"/>
    <bpmn:endEvent id="end"/>"""


BOUNDARY_PROCESS = """
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review"/>
    <bpmn:userTask id="review" name="复查" camunda:candidateGroups="supervision"/>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
    <bpmn:boundaryEvent id="urge" name="催办" attachedToRef="review" cancelActivity="true">
      <bpmn:timerEventDefinition>
        <bpmn:timeDuration xsi:type="bpmn:tFormalExpression">${PT0S}</bpmn:timeDuration>
      </bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="urge" targetRef="end_urged"/>
    <bpmn:endEvent id="end_urged"/>"""


def completed_ids(workflow: BpmnWorkflow) -> set[str]:
    return {task.task_spec.name for task in workflow.get_tasks(state=TaskState.COMPLETED)}


def fire_timers(workflow: BpmnWorkflow) -> None:
    time.sleep(0.01)  # a timer due "now" fires once now has passed
    workflow.refresh_timers()
    workflow.do_engine_steps()


# --- expressions and gateways -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('${acceptance == "accept"}', 'acceptance == "accept"'),
        ("#{ x }", "x"),
        ("  \n  x > 1\n ", "x > 1"),
        ("${ {'a': 1}['a'] == 1 }", "{'a': 1}['a'] == 1"),
        ("${x", "${x"),
        ("x}", "x}"),
    ],
)
def test_normalize_expression_strips_one_camunda_wrapper(text, expected):
    assert normalize_expression(text) == expected


@pytest.mark.parametrize(
    ("data", "end"),
    [
        ({"acceptance": "accept"}, "end_accept"),
        ({"acceptance": "reject"}, "end_reject"),
        ({"acceptance": "transfer", "transfer_to": "公安局"}, "end_transfer"),
    ],
)
def test_gateway_conditions_with_camunda_wrappers_choose_the_branch(data, end):
    workflow = start_workflow(GATEWAY_PROCESS, ScriptEngine(), **data)
    workflow.do_engine_steps()

    assert workflow.is_completed()
    reached = completed_ids(workflow) & {"end_accept", "end_reject", "end_transfer"}
    assert reached == {end}


def test_gateway_condition_error_is_a_script_error_naming_the_element():
    workflow = start_workflow(GATEWAY_PROCESS, ScriptEngine())  # no `acceptance` in data

    with pytest.raises(ScriptError) as caught:
        workflow.do_engine_steps()

    assert "gw" in caught.value.message
    assert "NameError" in caught.value.message
    assert "acceptance" in caught.value.message


def test_expressions_see_task_data_helpers_and_safe_builtins():
    engine = ScriptEngine({"double": lambda n: n * 2})
    data = {"items": [3, 1, 2], "limit": 2}

    assert engine.environment.evaluate("sorted(items)[-1] + double(limit)", data) == 7
    # a generator's free names resolve through the globals, not only the top frame
    assert engine.environment.evaluate("any(i > limit for i in items)", data) is True
    assert engine.environment.evaluate("${[x for x in range(3)]}", {}) == [0, 1, 2]
    assert data == {"items": [3, 1, 2], "limit": 2}


def test_task_data_shadows_a_helper_of_the_same_name_in_expressions():
    engine = ScriptEngine({"days": lambda n: n})
    assert engine.environment.evaluate("days", {"days": 5}) == 5


# --- refusals -----------------------------------------------------------------------------

REFUSED = [
    ("__import__('os')", "__import__"),
    ("open('/etc/passwd')", "open()"),
    ("().__class__.__bases__[0].__subclasses__()", "__class__"),
    ("getattr(x, '__class__')", "getattr()"),
    ("eval('1')", "eval()"),
    ("type(x)", "type()"),
    ("x._private", "_private"),
    ("'{0.__class__}'.format(x)", "f-string"),
    ("(i for i in []).gi_frame", "gi_frame"),
    ("lambda __x: 1", "__x"),
]


@pytest.mark.parametrize(("source", "named"), REFUSED)
def test_dangerous_expressions_are_refused_before_running(source, named):
    with pytest.raises(ScriptError) as caught:
        check_expression(source)
    assert named in caught.value.message

    with pytest.raises(ScriptError):
        ScriptEngine().environment.evaluate(source, {"x": 1})


REFUSED_SCRIPTS = [
    ("import os", "import"),
    ("from os import path", "import"),
    ("x = 1\ndef f():\n    global x\n    x = 2", "global"),
    ("class A:\n    pass", "class"),
    ("try:\n    pass\nexcept:\n    pass", "except"),
    ("while True:\n    try:\n        pass\n    finally:\n        continue", "finally"),
    ("match x:\n    case str(__class__=c):\n        pass", "__class__"),
    ("items = [1]\nitems[0] *= 3", "a[i] = a[i] * n"),
    ("async def f():\n    pass", "async"),
    ("print(1)", "print()"),
]


@pytest.mark.parametrize(("script", "named"), REFUSED_SCRIPTS)
def test_dangerous_scripts_are_refused_before_running(script, named):
    with pytest.raises(ScriptError) as caught:
        check_script(script)
    assert named in caught.value.message


def test_refused_script_in_a_workflow_raises_script_error_naming_the_task():
    workflow = start_workflow(script_process("import os\nresult = os.getcwd()"), ScriptEngine())

    with pytest.raises(ScriptError) as caught:
        workflow.do_engine_steps()

    assert "计算" in caught.value.message and "calc" in caught.value.message
    assert "import" in caught.value.message
    assert not workflow.is_completed()


def test_unknown_builtins_are_not_reachable_at_run_time():
    environment = ScriptEngine().environment
    for name in ("__builtins__", "compile", "globals", "vars", "object", "input"):
        with pytest.raises(ScriptError):
            environment.evaluate(f"{name}", {})


def test_refusal_messages_carry_the_line_number():
    with pytest.raises(ScriptError) as caught:
        check_script("a = 1\nb = 2\nc = ().__class__\n")
    assert "第 3 行" in caught.value.message
    assert "__class__" in caught.value.message


def test_syntax_errors_carry_the_line_number():
    with pytest.raises(ScriptError) as caught:
        check_script("a = 1\nb = (\nc = 3 +\n")
    assert "语法错误" in caught.value.message
    assert "第 2 行" in caught.value.message or "第 3 行" in caught.value.message

    with pytest.raises(ScriptError) as caught:
        check_expression("${acceptance ==}")
    assert "第 1 行" in caught.value.message and "语法错误" in caught.value.message


def test_compile_time_errors_are_reported_too():
    with pytest.raises(ScriptError) as caught:
        check_script("x = 1\nreturn x")
    assert "第 2 行" in caught.value.message


def test_runtime_errors_carry_the_script_line():
    with pytest.raises(ScriptError) as caught:
        run_script("a = 1\nb = a / 0\n")
    assert "第 2 行" in caught.value.message
    assert "ZeroDivisionError" in caught.value.message


def test_oversized_and_empty_sources_are_refused():
    with pytest.raises(ScriptError, match="过长"):
        check_script("x = 1\n" * 5000)
    with pytest.raises(ScriptError, match="为空"):
        check_expression("${ }")
    check_script("")  # an empty script task does nothing, which is fine


def test_valid_code_passes_the_checks():
    check_expression('${acceptance == "accept"}')
    check_script(
        "total = 0\nfor _ in range(3):\n    total += 1\n"
        "try:\n    x = 1 / 0\nexcept ZeroDivisionError:\n    x = None\n"
        "names = sorted(items, key=lambda item: item['name'])\n"
        "match total:\n    case 3:\n        ok = True\n"
    )


def test_the_engine_runs_code_in_the_sandbox_environment():
    assert isinstance(ScriptEngine().environment, SandboxEnvironment)


def test_helper_names_are_validated():
    with pytest.raises(ValueError):
        ScriptEngine({"_secret": lambda: 1})
    with pytest.raises(ValueError):
        ScriptEngine({"open": lambda: 1})
    with pytest.raises(ValueError):
        ScriptEngine(time_limit=0)


# --- time and size limits -----------------------------------------------------------------


def test_endless_loop_is_stopped_after_the_time_limit():
    engine = ScriptEngine(time_limit=0.5)
    started = time.monotonic()

    with pytest.raises(ScriptError, match="超时") as caught:
        run_script("x = 1\nwhile True:\n    pass\n", engine)

    assert 0.5 <= time.monotonic() - started < 1.5
    assert "第 3 行" in caught.value.message or "第 2 行" in caught.value.message


def test_endless_loop_cannot_swallow_the_timeout():
    script = "while True:\n    try:\n        pass\n    except Exception:\n        pass\n"
    started = time.monotonic()
    with pytest.raises(ScriptError, match="超时"):
        ScriptEngine(time_limit=0.3).environment.execute(script, {})
    assert time.monotonic() - started < 1.5


def test_endless_expression_is_stopped():
    with pytest.raises(ScriptError, match="超时"):
        ScriptEngine(time_limit=0.3).environment.evaluate(
            "sum(1 for a in range(10**6) for b in range(10**6))", {}
        )


def test_time_limit_works_outside_the_main_thread():
    outcome = {}

    def run():
        try:
            ScriptEngine(time_limit=0.3).environment.execute("while True:\n    pass", {})
        except ScriptError as err:
            outcome["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=5)

    assert not worker.is_alive()
    assert "超时" in outcome["error"].message


def test_the_previous_trace_function_is_restored():
    calls = []

    def tracer(frame, event, arg):
        calls.append(event)
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        ScriptEngine().environment.evaluate("1 + 1", {})
        with pytest.raises(ScriptError):
            ScriptEngine(time_limit=0.1).environment.execute("while True:\n    pass", {})
        restored = sys.gettrace()
    finally:
        sys.settrace(previous)

    assert restored is tracer


@pytest.mark.parametrize(
    "source",
    ["'x' * 10**10", "[0] * 10**9", "2 ** 10**9", "1 << 10**10", "sum(range(10**12))", "list(range(10**8))"],
)
def test_memory_blowups_are_refused_quickly(source):
    started = time.monotonic()
    with pytest.raises(ScriptError, match="过大"):
        ScriptEngine().environment.evaluate(source, {})
    assert time.monotonic() - started < 0.5


def test_in_place_blowup_is_refused():
    with pytest.raises(ScriptError, match="过大"):
        ScriptEngine().environment.execute("s = 'ab'\ns *= 10**9", {})


def test_ordinary_arithmetic_still_works():
    environment = ScriptEngine().environment
    data = {"n": 3}
    environment.execute("a = n * 4\nb = 2 ** 10\nc = 1 << 4\nd = 'ab' * 2\nn *= 2\ne = [0] * 3", data)
    assert data == {"n": 6, "a": 12, "b": 1024, "c": 16, "d": "abab", "e": [0, 0, 0]}
    assert environment.evaluate("1.5 * 2 == 3.0 and 2 ** -1 == 0.5", {}) is True


# --- task data hygiene --------------------------------------------------------------------


def test_helpers_are_callable_but_not_left_in_task_data():
    engine = ScriptEngine({"days": lambda n: date(2026, 1, 1) + timedelta(days=n)})

    data = run_script("due = days(3)\ndef local():\n    return 1\nvalue = local()", engine, case="A1")

    assert data == {"case": "A1", "due": date(2026, 1, 4), "value": 1}


def test_datetimes_and_plain_json_values_may_stay_in_task_data():
    data = {}
    ScriptEngine().environment.execute(
        "when = datetime(2026, 1, 1, 9, 0)\nspan = timedelta(days=2)\n"
        "doc = {'a': [1, 2.5, None, True, 'x'], 'b': {'c': date(2026, 1, 1)}}",
        data,
    )
    assert data["when"] == datetime(2026, 1, 1, 9, 0)
    assert data["doc"]["b"]["c"] == date(2026, 1, 1)


@pytest.mark.parametrize(
    ("script", "variable"),
    [
        ("tags = set()", "tags"),
        ("nested = {'a': [1, {2, 3}]}", "nested"),
        ("keys = {1: 'a'}", "keys"),
        ("err = ValueError('x')", "err"),
        ("loop = []\nloop.append(loop)", "loop"),
    ],
)
def test_unstorable_values_are_refused_naming_the_variable_and_data_is_unchanged(script, variable):
    data = {"kept": 1}
    with pytest.raises(ScriptError) as caught:
        ScriptEngine().environment.execute("added = 2\n" + script, data)

    assert f"“{variable}”" in caught.value.message
    assert data == {"kept": 1}


def test_deleted_variables_leave_task_data_and_data_objects_stay_out():
    data = {"a": 1, "b": 2}
    ScriptEngine().environment.execute("del a\nc = shared + 1", data, {"shared": 10})
    assert data == {"b": 2, "c": 11}


def test_a_failed_script_leaves_task_data_as_it_was():
    data = {"a": 1}
    with pytest.raises(ScriptError):
        ScriptEngine().environment.execute("a = 2\nb = 3\nraise ValueError('坏')", data)
    assert data == {"a": 1}


def test_domain_errors_from_helpers_keep_their_type():
    def lookup(record_id):
        raise NotFound(f"信用记录 {record_id} 不存在")

    with pytest.raises(NotFound):
        ScriptEngine({"lookup": lookup}).environment.execute("record = lookup(7)", {})


def test_other_errors_from_helpers_become_script_errors():
    def broken():
        raise KeyError("missing")

    with pytest.raises(ScriptError, match="KeyError"):
        ScriptEngine({"broken": broken}).environment.evaluate("broken()", {})


# --- timers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "PT5M",
        "P3D",
        "P1Y2M",
        "P2W",
        "PT1.5S",
        "R3/PT1H",
        "R/2026-12-01T09:00:00+08:00/P1D",
        "R5/P1D/2026-12-31T00:00:00Z",
        "2026-12-01T09:00:00+08:00",
        "2026-12-01T09:00:00",
        "2026-12-01",
        "${PT5M}",
    ],
)
def test_iso_timer_literals_are_recognised(text):
    assert is_iso_timer_literal(text)
    check_timer_expression(text)


@pytest.mark.parametrize(
    "text", ["P", "PT", "P1H", "2026-13-01", "R/x", "due_date", "workdays(5)", "PT5M + 1"]
)
def test_non_literals_are_not_recognised(text):
    assert not is_iso_timer_literal(text)


def test_timer_lint_refuses_bad_literals_and_mismatched_kinds():
    with pytest.raises(ScriptError, match="ISO 8601"):
        check_timer_expression("2026-13-01")
    with pytest.raises(ScriptError, match="timeDate"):
        check_timer_expression("PT5M", "timeDate")
    with pytest.raises(ScriptError, match="timeCycle"):
        check_timer_expression("P1D", "timeCycle")
    with pytest.raises(ScriptError, match="__class__"):
        check_timer_expression("${x.__class__}", "timeDate")
    check_timer_expression("${workdays(5)}", "timeDate")
    check_timer_expression("R3/PT1H", "timeCycle")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(days=3), "P3D"),
        (timedelta(hours=1, seconds=5), "PT1H5S"),
        (timedelta(days=1, minutes=30), "P1DT30M"),
        (timedelta(seconds=0.2), "PT1S"),
        (timedelta(0), "PT0S"),
        (timedelta(hours=-2), "PT0S"),
        (date(2026, 12, 1), "2026-12-01T00:00:00+08:00"),
        (datetime(2026, 12, 1, 9, 0), "2026-12-01T09:00:00+08:00"),
        (datetime(2026, 12, 1, 1, 0, tzinfo=UTC), "2026-12-01T01:00:00+00:00"),
        ("PT5M", "PT5M"),
        ("2026-12-01", "2026-12-01T00:00:00+08:00"),
        ("R/2026-12-01T09:00/P1D", "R/2026-12-01T09:00+08:00/P1D"),
    ],
)
def test_to_timer_value(value, expected):
    assert to_timer_value(value) == expected


@pytest.mark.parametrize("value", [5, None, "soon", "2026-13-01", [1]])
def test_to_timer_value_refuses_what_is_not_a_time(value):
    with pytest.raises(ScriptError):
        to_timer_value(value)


@pytest.mark.parametrize(
    ("kind", "expression"),
    [
        ("timeDuration", "PT0S"),
        ("timeDuration", "${PT0S}"),
        ("timeDate", "2020-01-01T08:00:00+08:00"),
        ("timeDate", "2020-01-01"),
        ("timeDate", "${passed()}"),
        ("timeDuration", "${timedelta(0)}"),
        ("timeDuration", "passed()"),
    ],
)
def test_due_timers_fire_after_refresh(kind, expression):
    engine = ScriptEngine({"passed": lambda: datetime.now(CHINA_TZ) - timedelta(minutes=1)})
    workflow = start_workflow(timer_process(kind, expression), engine)
    workflow.do_engine_steps()

    fire_timers(workflow)

    assert workflow.is_completed()
    assert "wait" in completed_ids(workflow)


def test_future_timer_from_a_helper_waits_with_a_beijing_time_value():
    deadline = datetime(2099, 12, 1, 17, 30)  # naive: Beijing time
    engine = ScriptEngine({"deadline": lambda: deadline})
    workflow = start_workflow(timer_process("timeDate", "${deadline()}"), engine)
    workflow.do_engine_steps()

    fire_timers(workflow)

    assert not workflow.is_completed()
    waiting = workflow.get_next_task(spec_name="wait")
    assert waiting.state == TaskState.WAITING
    assert waiting.internal_data["event_value"] == "2099-12-01T17:30:00+08:00"


def test_timer_literal_is_returned_as_is_and_not_evaluated():
    engine = ScriptEngine({"PT5M": lambda: "never called"})
    workflow = start_workflow(timer_process("timeDuration", "${PT5M}"), engine)
    workflow.do_engine_steps()
    waiting = workflow.get_next_task(spec_name="wait")

    assert engine.evaluate(waiting, "${PT5M}") == "PT5M"
    # the same text outside a timer is Python: here, the helper's name
    assert engine.environment.evaluate("PT5M", {"PT5M": 1}) == 1


def test_timer_of_the_wrong_kind_fails_with_a_clear_error():
    workflow = start_workflow(timer_process("timeDate", "P1D"), ScriptEngine())
    with pytest.raises(ScriptError, match="timeDate") as caught:
        workflow.do_engine_steps()
    assert "wait" in caught.value.message


def test_timer_expression_of_an_unusable_type_fails_with_a_clear_error():
    workflow = start_workflow(timer_process("timeDate", "${days}"), ScriptEngine(), days=3)
    with pytest.raises(ScriptError, match="int"):
        workflow.do_engine_steps()


def test_boundary_timer_interrupts_the_task():
    workflow = start_workflow(BOUNDARY_PROCESS, ScriptEngine())
    workflow.do_engine_steps()

    fire_timers(workflow)

    assert workflow.is_completed()
    assert "end_urged" in completed_ids(workflow)
    assert "review" not in completed_ids(workflow)
