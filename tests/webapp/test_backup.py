"""Backup and restore: a restored database carries on running its instances to the end."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from engine.db import make_engine
from webapp import create_app
from webapp.cli import main

from ..conftest import ApiClient


@pytest.fixture
def fresh_target(database_url, tmp_path):
    """An empty database next to the one under test."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    name = f"{url.database}_restore"
    admin = make_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _cli(args, database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "CHENGXIN_INSTANCE": str(tmp_path / "instance")}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def test_backup_restore_then_finish_an_instance(
    api, deployed, settings, database_url, fresh_target, tmp_path
):
    started = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "simple_review", "variables": {"title": "备份前登记"}},
    )
    first = started.json["tasks"][0]
    api.post(
        f"/api/v1/tasks/{first['id']}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )

    archive = tmp_path / "backup.dump"
    made = _cli(["backup", str(archive)], database_url, tmp_path)
    assert made.exit_code == 0, made.output
    assert archive.stat().st_size > 0
    restored = _cli(["restore", "--yes", str(archive)], fresh_target, tmp_path)
    assert restored.exit_code == 0, restored.output

    settings.database_url = fresh_target
    other = ApiClient(create_app(settings, TESTING=True))
    detail = other.get(f"/api/v1/process-instances/{started.json['id']}", user="chief").json
    [confirm] = detail["tasks"]
    assert confirm["element_id"] == "confirm"
    done = other.post(
        f"/api/v1/tasks/{confirm['id']}/complete", user="chief", json={"data": {"confirmed": True}}
    )
    assert done.status_code == 200, done.json
    assert done.json["instance"]["status"] == "completed"
    other.app.extensions["chengxin"]["engine"].dispose()


def test_restore_refuses_a_missing_file(database_url, tmp_path):
    result = _cli(["restore", "--yes", str(tmp_path / "nope.dump")], database_url, tmp_path)
    assert result.exit_code != 0
