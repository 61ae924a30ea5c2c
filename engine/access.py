"""Who may do what: the one permission model used by the API, the pages and the worker."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_OF_GROUP = {"analysts": "analyst", "managers": "manager", "admins": "admin"}


@dataclass(frozen=True)
class Actor:
    username: str
    groups: frozenset[str] = field(default_factory=frozenset)
    display_name: str = ""

    @property
    def roles(self) -> frozenset[str]:
        return frozenset({"staff"} | {ROLE_OF_GROUP[g] for g in self.groups if g in ROLE_OF_GROUP})

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def is_manager(self) -> bool:
        return self.has_role("manager", "admin")


SYSTEM = Actor("system", frozenset({"admins"}), "系统")


def is_candidate(actor: Actor, task) -> bool:
    """True when the task is offered to one of the actor's groups or to the actor by name."""
    return bool(actor.groups & set(task.candidate_groups or [])) or actor.username in (
        task.candidate_users or []
    )


def can_see_task(actor: Actor, task) -> bool:
    return (
        actor.is_manager
        or task.assignee == actor.username
        or task.owner == actor.username
        or task.completed_by == actor.username
        or is_candidate(actor, task)
    )
