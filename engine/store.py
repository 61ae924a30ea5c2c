"""Workflow state (de)serialization with the spec left out: specs are cached per version."""

from __future__ import annotations

import json
from datetime import date
from uuid import UUID

from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG

STATE_VERSION = "chengxin-1"


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
    StateOnlyWorkflowConverter(BpmnWorkflow, registry)
    return registry


_serializer = BpmnWorkflowSerializer(_registry(), version=STATE_VERSION)


def dump_state(workflow: BpmnWorkflow) -> str:
    """The workflow's run state as JSON (no spec)."""
    return _serializer.serialize_json(workflow)


def load_state(state: str, spec, subprocess_specs, script_engine) -> BpmnWorkflow:
    """Rebuild a workflow from its stored state and its (cached) specs."""
    dct = json.loads(state)
    dct.pop(_serializer.VERSION_KEY, None)
    workflow = _serializer.registry.restore(dct, spec=spec, subprocess_specs=subprocess_specs)
    workflow.script_engine = script_engine
    return workflow
