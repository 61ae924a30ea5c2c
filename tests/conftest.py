"""Shared fixtures: a real database (SQLite file, or PostgreSQL when DATABASE_URL is set)."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from engine.db import Base, make_engine, make_session_factory


def _reset_schema(engine):
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        Base.metadata.drop_all(engine)


@pytest.fixture
def database_url(tmp_path):
    """The database under test: PostgreSQL when DATABASE_URL is set, else a fresh SQLite file."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def db_engine(database_url):
    import engine.models  # noqa: F401  (register every table on Base.metadata)

    try:
        import engine.credit  # noqa: F401
    except ImportError:
        pass
    engine_ = make_engine(database_url)
    _reset_schema(engine_)
    Base.metadata.create_all(engine_)
    yield engine_
    engine_.dispose()


@pytest.fixture
def session_factory(db_engine):
    return make_session_factory(db_engine)


@pytest.fixture
def session(session_factory):
    s = session_factory()
    yield s
    s.rollback()
    s.close()
