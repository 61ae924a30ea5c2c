"""Alembic environment: migrations run against the URL given by engine.schema."""

from alembic import context

from engine.db import Base, make_engine
from engine.schema import load_models

load_models()

config = context.config
target_metadata = Base.metadata


def run_migrations_offline():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine_ = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine_.connect() as connection:
        _run(connection)
    engine_.dispose()


def _run(connection):
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
