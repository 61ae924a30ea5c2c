"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from engine import schema
from engine.db import Base, make_engine


def test_migrations_match_the_models(database_url):
    schema.load_models()
    db = make_engine(database_url)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    schema.upgrade(database_url)
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    db.dispose()
    assert diff == [], f"models changed without a migration: {diff}"


def _fresh(database_url):
    db = make_engine(database_url)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    return db


def test_chain_heads_are_backfilled_and_a_downgrade_keeps_the_rows(database_url):
    schema.load_models()
    db = _fresh(database_url)
    schema.upgrade(database_url, "0004")
    rows = [
        "INSERT INTO deployments (id, checksum, deployed_at, note) VALUES (1, 'c', CURRENT_TIMESTAMP, '')",
        "INSERT INTO process_definitions (id, key, version, name, checksum, deployment_id, deployed_at,"
        " forms, elements, file_ids) VALUES (1, 'p', 1, 'p', 'c', 1, CURRENT_TIMESTAMP, '{}', '{}', '[]')",
        *(
            "INSERT INTO process_instances (id, definition_id, process_key, version, subject, status,"
            f" started_at, state, lock_version, updated_at) VALUES ({i}, 1, 'p', 1, '', 'running',"
            " CURRENT_TIMESTAMP, '', 1, CURRENT_TIMESTAMP)"
            for i in (1, 2)
        ),
        *(
            "INSERT INTO events (id, instance_id, at, type, details, prev_hash, hash)"
            f" VALUES ({n}, 1, CURRENT_TIMESTAMP, 'note', '{{}}', '', '{h * 64}')"
            for n, h in ((1, "a"), (2, "b"))
        ),
    ]
    with db.begin() as conn:
        for row in rows:
            conn.execute(text(row))
    schema.upgrade(database_url)
    with db.connect() as conn:
        heads = dict(conn.execute(text("SELECT id, last_event_hash FROM process_instances")).all())
    assert heads == {1: "b" * 64, 2: ""}  # the newest event's hash; no events, no head
    command.downgrade(schema.alembic_config(database_url), "0004")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM process_instances")).scalar() == 2
    db.dispose()
