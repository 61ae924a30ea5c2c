"""Tables of the workflow core: people, definitions, instances and their projections."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, utcnow


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(128), default="")


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    groups: Mapped[list[Group]] = relationship(secondary="user_groups", lazy="selectin")

    @property
    def group_names(self) -> list[str]:
        return sorted(g.name for g in self.groups)


class Deployment(Base):
    """A bundle of .bpmn/.dmn/.form files deployed together."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    checksum: Mapped[str] = mapped_column(String(64), index=True)
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)
    deployed_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[list[DeploymentFile]] = relationship(
        back_populates="deployment", order_by="DeploymentFile.name"
    )


class DeploymentFile(Base):
    __tablename__ = "deployment_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(8))  # bpmn | dmn | form
    checksum: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(128), index=True)  # a form's id
    content: Mapped[str] = mapped_column(Text)
    deployment: Mapped[Deployment] = relationship(back_populates="files")


class ProcessDefinition(Base):
    """One version of one process key; instances stay on the version they started on."""

    __tablename__ = "process_definitions"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(256), default="")
    checksum: Mapped[str] = mapped_column(String(64))
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    deployed_at: Mapped[datetime] = mapped_column(default=utcnow)
    deployed_by: Mapped[str | None] = mapped_column(String(64))
    # What the runtime needs besides the spec: forms by id, per-element metadata, start form.
    forms: Mapped[dict] = mapped_column(JSON, default=dict)
    elements: Mapped[dict] = mapped_column(JSON, default=dict)
    start_form: Mapped[str | None] = mapped_column(String(128))
    file_ids: Mapped[list] = mapped_column(JSON, default=list)  # files the spec is parsed from
    deployment: Mapped[Deployment] = relationship()


class ProcessInstance(Base):
    """One running matter: its serialized workflow state and the columns lists filter on."""

    __tablename__ = "process_instances"
    __table_args__ = (
        # Lists sort on (started_at, id) newest first; with id in the index a cursor's
        # (started_at, id) < (…) is an index range, however deep the page (migration 0006).
        Index("ix_instance_key_status_started", "process_key", "status", "started_at", "id"),
        Index("ix_instance_status_started", "status", "started_at", "id"),
        Index("ix_instance_started", "started_at", "id"),
        # Counts per status and process (summary, dashboard) as index-only scans; due_at and id
        # for the overdue flag of open instances.
        Index("ix_instance_status_key_due", "status", "process_key", "due_at", "id"),
        Index("ix_instance_ended", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definitions.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    business_key: Mapped[str | None] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(512), default="")
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column()
    started_by: Mapped[str | None] = mapped_column(String(64), index=True)
    # The instance's own deadline (e.g. reply_deadline), for the overdue flag on lists.
    due_at: Mapped[datetime | None] = mapped_column()
    state: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    lock_version: Mapped[int] = mapped_column(Integer, default=1)
    # The hash of the instance's last audit event: the next event chains to it without a query,
    # and the version-checked UPDATE that writes it serializes the chain's writers.
    last_event_hash: Mapped[str] = mapped_column(String(64), default="", server_default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    definition: Mapped[ProcessDefinition] = relationship(lazy="joined")

    # Optimistic locking: an UPDATE with a stale version touches no row and raises StaleDataError.
    __mapper_args__ = {"version_id_col": lock_version}


class HumanTask(Base):
    """Inbox projection of a user task, kept in step with the instance state."""

    __tablename__ = "human_tasks"
    __table_args__ = (
        Index("ix_task_guid", "task_guid"),
        Index("ix_task_assignee_status_due", "assignee", "status", "due_at"),
        # The inbox's exact ORDER BY, so a page is an index range scan however long the backlog.
        Index("ix_task_inbox_order", "assignee", "status", text("(due_at IS NULL)"), "due_at", "id"),
        Index("ix_task_status_due", "status", "due_at"),
        Index("ix_task_status_warn", "status", "warn_at"),
        Index("ix_task_instance_status", "instance_id", "status"),
        Index("ix_task_completed_by", "completed_by", "completed_at"),
        Index("ix_task_status_completed", "status", "completed_at"),
        # Open, unassigned tasks in inbox order: the claimable list walks it and probes
        # task_candidates per row, so a page stops after per_page offered tasks.
        Index(
            "ix_task_claimable_order",
            text("(due_at IS NULL)"),
            "due_at",
            "id",
            postgresql_where=text("status = 'open' AND assignee IS NULL"),
            sqlite_where=text("status = 'open' AND assignee IS NULL"),
        ),
        # Open tasks only, covering the summary's and dashboard's counts (index-only scans).
        Index(
            "ix_task_open_key_due",
            "process_key",
            "due_at",
            "warn_at",
            "assignee",
            "instance_id",
            "id",
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    task_guid: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256), default="")
    process_key: Mapped[str] = mapped_column(String(128))
    business_key: Mapped[str | None] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(512), default="")
    form_key: Mapped[str | None] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(64))  # set while delegated (委派)
    candidate_groups: Mapped[list] = mapped_column(JSON, default=list)
    candidate_users: Mapped[list] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|completed|cancelled
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime | None] = mapped_column()
    warn_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    completed_by: Mapped[str | None] = mapped_column(String(64))
    draft: Mapped[dict | None] = mapped_column(JSON)  # a delegate's answer, prefilled for the owner
    # Written with new tasks and deleted in bulk when a task closes; never read through here.
    candidates: Mapped[list[TaskCandidate]] = relationship(cascade="all, delete-orphan", lazy="raise")


class TaskCandidate(Base):
    """One candidate group or user of an open task; lets the claimable list use an index."""

    __tablename__ = "task_candidates"
    __table_args__ = (Index("ix_candidate_kind_name", "kind", "name", "task_id"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # group | user
    name: Mapped[str] = mapped_column(String(64), primary_key=True)


class Timer(Base):
    """A waiting timer of an instance, so workers can find due work without loading states."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timer_due", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(
        ForeignKey("process_instances.id", ondelete="CASCADE"), index=True
    )
    task_guid: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(128))
    due_at: Mapped[datetime] = mapped_column()


class Event(Base):
    """Append-only audit trail; each row is chained to the previous one of its instance."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_event_instance_id", "instance_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(32))
    user: Mapped[str | None] = mapped_column(String(64))
    element_id: Mapped[str | None] = mapped_column(String(128))
    task_name: Mapped[str | None] = mapped_column(String(256))
    task_id: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")


class OutboxMessage(Base):
    """Something that must leave the system, written in the instance's transaction."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # platform_sync | applicant_notice | email
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    instance_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    """An in-app message for one user (new task, urging, CC, deadline)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notification_user_read", "username", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(256))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(512))
    instance_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column()
