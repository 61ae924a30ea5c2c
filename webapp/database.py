"""Per-request database session and engine context."""

from __future__ import annotations

from contextlib import contextmanager

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from engine.config import Settings
from engine.runtime import Context


def settings() -> Settings:
    return current_app.extensions["chengxin"]["settings"]


def session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["chengxin"]["sessions"]()
    return g.db_session


def _close(_exc=None):
    db = g.pop("db_session", None)
    if db is not None:
        db.rollback()
        db.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(_close)


@contextmanager
def unit_of_work():
    """The engine context of this request; commits when the block succeeds, else rolls back."""
    from .auth import current_actor

    db = session()
    try:
        yield Context(db, current_actor(), settings())
        db.commit()
    except BaseException:
        db.rollback()
        raise
