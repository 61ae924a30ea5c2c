"""Workflow state (de)serialization with the spec left out: specs are cached per version."""

from __future__ import annotations

import json
from datetime import date
from uuid import UUID

from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.task import BpmnTaskIterator
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.util.task import TaskIterator, TaskState

STATE_VERSION = "chengxin-1"

# SpiffWorkflow's task iterator stops at depth 1,000: after ~500 loop-backs a ready task would
# become invisible and the instance would look finished. Long-lived matters loop (退回, 复查).
MAX_TASK_DEPTH = 1_000_000


class Workflow(BpmnWorkflow):
    """BpmnWorkflow whose task searches reach the whole tree, however long the history."""

    def get_tasks_iterator(self, first_task=None, **kwargs):
        kwargs.setdefault("max_depth", MAX_TASK_DEPTH)
        return BpmnTaskIterator(first_task or self.task_tree, **kwargs)

    def is_completed(self) -> bool:
        # SpiffWorkflow's version uses a depth-limited iterator and would latch `completed`.
        if not self.completed:
            unfinished = TaskIterator(
                self.task_tree, state=TaskState.NOT_FINISHED_MASK, max_depth=MAX_TASK_DEPTH
            )
            self.completed = next(unfinished, None) is None
        return self.completed


class StateOnlyWorkflowConverter(BpmnWorkflowConverter):
    """Converts a workflow's run state only; restoring takes the specs from the caller."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _registry():
    registry = BpmnWorkflowSerializer.configure(CAMUNDA_CONFIG)
    # Scripts may leave plain dates in task data; SpiffWorkflow only registers datetimes.
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    # Registered under SpiffWorkflow's type name, so states written by either class restore.
    StateOnlyWorkflowConverter(Workflow, registry, typename="BpmnWorkflow")
    return registry


_serializer = BpmnWorkflowSerializer(_registry(), version=STATE_VERSION)


def dump_state(workflow: BpmnWorkflow) -> str:
    """The workflow's run state as JSON (no spec)."""
    return _serializer.serialize_json(workflow)


def load_state(state: str, spec, subprocess_specs, script_engine) -> Workflow:
    """Rebuild a workflow from its stored state and its (cached) specs."""
    dct = json.loads(state)
    dct.pop(_serializer.VERSION_KEY, None)
    workflow = _serializer.registry.restore(dct, spec=spec, subprocess_specs=subprocess_specs)
    workflow.script_engine = script_engine
    return workflow
