"""Workflow state storage: the spec-free round trip and very long histories."""

from __future__ import annotations

from pathlib import Path

from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
from SpiffWorkflow.util.task import TaskState

from engine import store
from engine.scripting import ScriptEngine

LOOP = Path(__file__).resolve().parents[2] / "bench" / "fixtures" / "loop.bpmn"


def _loop_workflow():
    parser = CamundaParser()
    parser.add_bpmn_file(str(LOOP))
    spec = parser.get_spec("bench_loop")
    workflow = store.Workflow(spec, {}, script_engine=ScriptEngine(helpers={"workdays": lambda n: None}))
    workflow.do_engine_steps()
    return workflow, spec


def _complete(workflow, decision):
    [task] = workflow.get_tasks(state=TaskState.READY, manual=True)
    task.data["decision"] = decision
    task.run()
    workflow.do_engine_steps()


def test_a_task_sent_back_hundreds_of_times_stays_open():
    # SpiffWorkflow's own iterator stops at depth 1,000: after 500 loop-backs the open task
    # vanished and the instance looked finished. Our workflow searches the whole tree.
    workflow, spec = _loop_workflow()
    for _ in range(520):
        _complete(workflow, "return")
    assert not workflow.is_completed()
    assert len(workflow.get_tasks(state=TaskState.READY, manual=True)) == 1
    restored = store.load_state(store.dump_state(workflow), spec, {}, ScriptEngine())
    assert isinstance(restored, store.Workflow)
    _complete(restored, "agree")
    assert restored.is_completed()
