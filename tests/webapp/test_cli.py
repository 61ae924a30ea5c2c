"""The `chengxin` command: schema, demo data, deployment, users."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select, text

from engine.db import make_engine, make_session_factory
from engine.models import ProcessDefinition, User
from webapp.cli import main

from ..conftest import FIXTURES


def run(args, database_url, tmp_path, input=None):
    env = {"DATABASE_URL": database_url, "CHENGXIN_INSTANCE": str(tmp_path / "instance")}
    return CliRunner().invoke(main, args, env=env, input=input, catch_exceptions=False)


def test_init_seed_deploy_create_user(database_url, tmp_path):
    db = make_engine(database_url)
    if db.dialect.name == "postgresql":
        with db.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    assert run(["init-db"], database_url, tmp_path).exit_code == 0
    seeded = run(["seed-demo"], database_url, tmp_path)
    assert seeded.exit_code == 0 and "10" in seeded.output
    bundle = [
        str(FIXTURES / n)
        for n in ("simple_review.bpmn", "simple_start.form", "simple_review.form", "simple_confirm.form")
    ]
    first = run(["deploy", *bundle], database_url, tmp_path)
    assert first.exit_code == 0 and "simple_review v1" in first.output
    again = run(["deploy", *bundle], database_url, tmp_path)
    assert again.exit_code == 0 and "版本保持不变" in again.output
    broken = tmp_path / "broken.bpmn"
    broken.write_text("<nope")
    bad = run(["deploy", str(broken)], database_url, tmp_path)
    assert bad.exit_code == 1
    made = run(
        ["create-user", "zhangsan", "--password", "secret99", "--group", "legal"], database_url, tmp_path
    )
    assert made.exit_code == 0
    dup = run(["create-user", "zhangsan", "--password", "secret99"], database_url, tmp_path)
    assert dup.exit_code == 1
    with make_session_factory(db)() as s:
        user = s.scalar(select(User).where(User.username == "zhangsan"))
        assert user.group_names == ["legal"]
        assert (
            s.scalar(select(ProcessDefinition.version).where(ProcessDefinition.key == "simple_review")) == 1
        )
    db.dispose()
