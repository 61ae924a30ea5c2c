"""Saved views of the managers' instance list: a name, the filters and the chosen columns, per user."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column

from . import monitoring
from .db import Base, utcnow
from .errors import NotFound, ValidationFailed
from .runtime import Context

MAX_VIEWS = 50
MAX_NAME = 64


class SavedView(Base):
    """One user's named instance-list view."""

    __tablename__ = "saved_views"
    # The unique constraint's index also serves "my views, by name".
    __table_args__ = (UniqueConstraint("username", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    filters: Mapped[dict] = mapped_column(JSON, default=dict)
    columns: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def filter(self) -> monitoring.InstanceFilter:
        return monitoring.InstanceFilter.from_mapping(self.filters or {})


def list_views(ctx: Context) -> list[SavedView]:
    """The actor's saved views, by name. Raises NotAllowed."""
    monitoring.require_manager(ctx.actor)
    return list(
        ctx.session.scalars(
            select(SavedView).where(SavedView.username == ctx.actor.username).order_by(SavedView.name)
        )
    )


def _clean_name(name) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ValidationFailed({"name": ["请填写视图名称"]})
    if len(name) > MAX_NAME:
        raise ValidationFailed({"name": [f"视图名称不能超过 {MAX_NAME} 个字符"]})
    return name


def save_view(ctx: Context, name: str, filters: dict, columns) -> SavedView:
    """Create the actor's view, or replace the one of the same name.

    Raises NotAllowed, ValidationFailed (name, filters, columns, too many views).
    """
    monitoring.require_manager(ctx.actor)
    name = _clean_name(name)
    parsed = monitoring.InstanceFilter.from_mapping(filters or {})
    chosen = monitoring.parse_columns(columns)
    view = ctx.session.scalar(
        select(SavedView).where(SavedView.username == ctx.actor.username, SavedView.name == name)
    )
    if view is None:
        if len(list_views(ctx)) >= MAX_VIEWS:
            raise ValidationFailed({"name": [f"每人最多保存 {MAX_VIEWS} 个视图，请先删除不用的视图"]})
        view = SavedView(username=ctx.actor.username, name=name)
        ctx.session.add(view)
    view.filters = parsed.to_params()
    view.columns = list(chosen)
    ctx.session.flush()
    return view


def get_view(ctx: Context, view_id: int) -> SavedView:
    """One of the actor's own views. Raises NotAllowed, NotFound (missing or someone else's)."""
    monitoring.require_manager(ctx.actor)
    view = ctx.session.get(SavedView, view_id)
    if view is None or view.username != ctx.actor.username:
        raise NotFound(f"视图 {view_id} 不存在")
    return view


def delete_view(ctx: Context, view_id: int) -> None:
    """Delete one of the actor's views. Raises NotAllowed, NotFound."""
    ctx.session.delete(get_view(ctx, view_id))
    ctx.session.flush()
