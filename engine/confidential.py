"""Whistleblower identity (信访工作条例 第30条): who may see the fields forms mark confidential."""

from __future__ import annotations

from .access import Actor
from .forms import confidential_keys as form_confidential_keys
from .models import ProcessDefinition

# domain.md: reporter data is shown only to the office, directors and deputies.
CONFIDENTIAL_GROUPS = frozenset({"office", "directors", "deputies"})
MASK = "******"


def may_see_confidential(actor: Actor) -> bool:
    return bool(actor.groups & CONFIDENTIAL_GROUPS)


def confidential_keys(definition: ProcessDefinition) -> set[str]:
    """Every field any form of this version marks `properties.confidential`."""
    keys: set[str] = set()
    for form in (definition.forms or {}).values():
        keys |= form_confidential_keys(form)
    return keys


def mask_for(actor: Actor, definition: ProcessDefinition, data: dict) -> dict:
    """`data` with confidential values replaced by a mask unless the actor may see them."""
    if may_see_confidential(actor):
        return data
    hidden = confidential_keys(definition)
    return {k: (MASK if k in hidden and v not in (None, "", False) else v) for k, v in data.items()}


def strip_for(actor: Actor, definition: ProcessDefinition, data: dict) -> dict:
    """A submission without the confidential fields the actor cannot see (they keep their values)."""
    if may_see_confidential(actor):
        return data
    hidden = confidential_keys(definition)
    return {k: v for k, v in data.items() if k not in hidden}
