"""Schema management through Alembic (the only way tables are created outside unit tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

# Every module that declares tables on engine.db.Base; Alembic and tests load them all.
TABLE_MODULES = (
    "engine.models",
    "engine.credit",
    "engine.jobs",
    "engine.attachments",
    "engine.worklist",
    "engine.urging",
    "engine.login_throttle",
    "engine.saved_views",
    "engine.studio",
    "engine.imports",
)


def load_models() -> None:
    """Import every table-declaring module so Base.metadata knows the whole schema."""
    import importlib

    for name in TABLE_MODULES:
        importlib.import_module(name)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to `revision` (creates the SQLite file's folder if needed)."""
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)
