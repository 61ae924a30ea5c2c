"""The `chengxin` command: database, demo data, deployment, web server and worker."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine import schema
from engine.config import Settings
from engine.db import make_engine, make_session_factory, transaction
from engine.errors import DefinitionError, EngineError


def _sessions(settings: Settings):
    return make_session_factory(make_engine(settings.database_url))


@click.group()
@click.pass_context
def main(ctx):
    """诚信 Chengxin workflow platform."""
    ctx.obj = Settings.from_env()


@main.command("init-db")
@click.pass_obj
def init_db(settings: Settings):
    """Create or upgrade the database schema (Alembic)."""
    schema.upgrade(settings.database_url)
    click.echo(f"数据库已就绪：{settings.database_url.split('@')[-1]}")


@main.command("seed-demo")
@click.pass_obj
def seed_demo(settings: Settings):
    """Create the demo organisation (demo password) and the demo credit archive."""
    from engine.demo_archive import seed_demo_archive
    from engine.users import DEMO_PASSWORD, seed_demo

    with transaction(_sessions(settings)) as session:
        created = seed_demo(session)
        records = seed_demo_archive(session)
    click.echo(f"演示用户 {len(created)} 个（密码 {DEMO_PASSWORD}），信用记录 {records} 条")


@main.command("deploy")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--note", default="", help="Change note for the new versions.")
@click.option("--user", default="cli", help="Recorded as the deployer.")
@click.pass_obj
def deploy(settings: Settings, paths, note, user):
    """Deploy the .bpmn/.dmn/.form files under PATHS (idempotent)."""
    from engine import audit
    from engine.definitions import deploy_paths

    try:
        with transaction(_sessions(settings)) as session:
            result = deploy_paths(session, list(paths), user=user, note=note)
            if result.created:
                audit.record_event(
                    session, "deployed", user=user, details={"deployment_id": result.deployment_id}
                )
    except DefinitionError as exc:
        for err in exc.errors:
            click.echo(
                f"{err['file']}:{err['line'] or '-'} [{err['element_id'] or '-'}] {err['message']}", err=True
            )
        sys.exit(1)
    for d in result.definitions:
        click.echo(f"{d.key} v{d.version}")
    click.echo("已部署新版本" if result.created else "内容未变化，版本保持不变")


@main.command("create-user")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", "display_name", default="")
@click.option("--group", "groups", multiple=True, help="Group key; repeat for several.")
@click.pass_obj
def create_user(settings: Settings, username, password, display_name, groups):
    """Create a user in the given groups."""
    from engine.users import create_user as create
    from engine.users import ensure_groups

    try:
        with transaction(_sessions(settings)) as session:
            ensure_groups(session)
            create(session, username, password, display_name=display_name, groups=list(groups))
    except EngineError as exc:
        click.echo(f"{exc.message} {getattr(exc, 'errors', '')}", err=True)
        sys.exit(1)
    click.echo(f"用户 {username} 已创建")


@main.command("backup")
@click.argument("target", type=click.Path(path_type=Path))
@click.pass_obj
def backup(settings: Settings, target):
    """Write a consistent backup of the database to TARGET (online)."""
    from engine.backup import backup as make_backup

    try:
        make_backup(settings.database_url, target)
    except EngineError as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    click.echo(f"已备份到 {target}")


@main.command("restore")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def restore(settings: Settings, source, yes):
    """Replace the database's content with the backup SOURCE (stop web and worker first)."""
    from engine.backup import restore as restore_backup

    if not yes:
        click.confirm("恢复将覆盖当前数据库的全部内容，确定继续？", abort=True)
    try:
        restore_backup(settings.database_url, source)
    except EngineError as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    click.echo(f"已从 {source} 恢复")


@main.command("generate-key")
def generate_key():
    """Print a new data key for CHENGXIN_DATA_KEYS (put it first; keep old keys until rotated)."""
    from engine.crypto import generate_key as new_key

    click.echo(new_key())


@main.command("rotate-keys")
@click.pass_obj
def rotate_keys(settings: Settings):
    """Re-encrypt every instance state with the newest data key."""
    from engine.crypto import reencrypt_states

    session = _sessions(settings)()
    try:
        count = reencrypt_states(session, settings.cipher)
    finally:
        session.close()
    click.echo(f"已用最新密钥重新加密 {count} 个流程实例")


@main.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--workers", default=0, type=int, help="gunicorn workers (0 = Flask's own server).")
@click.option("--threads", default=4, type=int, help="threads per gunicorn worker (gthread).")
@click.pass_obj
def serve(settings: Settings, host, port, workers, threads):
    """Serve the web app."""
    if workers:
        import os

        # As deploy/chengxin-web.service runs it: gthread workers (bench/RESULTS_HTTP.md).
        gunicorn = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread"]
        os.execvp(
            sys.executable, [*gunicorn, "--threads", str(threads), "-b", f"{host}:{port}", "webapp.wsgi:app"]
        )
    from webapp import create_app

    create_app(settings).run(host=host, port=port, threaded=True)


@main.command("worker")
@click.option("--once", is_flag=True, help="Process what is due now, then exit.")
@click.pass_obj
def worker(settings: Settings, once):
    """Fire due timers, deliver the outbox, send reminders; SIGTERM stops it after the current job."""
    import logging

    from engine.jobs import run_worker

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("spiff").setLevel(logging.WARNING)  # one line per task state change otherwise
    run_worker(settings, once=once)


_YEAR_SOURCES = {"chinese-calendar": "内置数据", "file": "数据文件", "fallback": "无数据，按周一至周五计算"}


def _schema_problems(connection, database_url: str) -> list[str]:
    """Print the database's Alembic revision against the newest one shipped; the problems found."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    current = MigrationContext.configure(connection).get_current_revision()
    heads = ScriptDirectory.from_config(schema.alembic_config(database_url)).get_heads()
    click.echo(f"数据库结构版本：{current or '无'}（最新 {', '.join(heads) or '无'}）")
    if not inspect(connection).has_table("process_instances"):
        return ["数据库结构未初始化：请运行 chengxin init-db"]
    if heads and current not in heads:
        return ["数据库结构不是最新版本：请运行 chengxin init-db"]
    return []


def _print_worker_status(settings: Settings, status: dict) -> None:
    from datetime import datetime

    this_year = datetime.now(settings.tzinfo).year
    years = [settings.calendar.year_info(y) for y in (this_year - 1, this_year, this_year + 1)]
    click.echo("节假日数据：" + "；".join(f"{y['year']} {_YEAR_SOURCES[y['source']]}" for y in years))
    lag = status["timer_lag_seconds"]
    click.echo(
        f"到期未触发的定时器：{status['due_timers']}（最长延迟 {'-' if lag is None else f'{lag:.0f} 秒'}）"
    )
    click.echo(
        f"待发送外发消息：{status['outbox_backlog']}，投递失败：{status['outbox_dead']}，"
        f"出错的流程实例：{status['instances_in_error']}"
    )
    for warning in status["warnings"]:
        click.echo(f"警告：{warning}")


def _doctor_checks(settings: Settings) -> list[str]:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from engine.jobs import worker_status

    url = make_url(settings.database_url)
    where = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        click.echo(f"数据库：文件不存在（{where}）")
        return ["数据库尚未创建：请运行 chengxin init-db"]
    db_engine = make_engine(settings.database_url, hide_parameters=True)
    try:
        with db_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            click.echo(f"数据库：可连接（{where}）")
            problems = _schema_problems(connection, settings.database_url)
        if problems:
            return problems
        with transaction(make_session_factory(db_engine)) as session:
            status = worker_status(session, settings)
    except SQLAlchemyError as exc:
        click.echo(f"数据库：不可用（{where}，{type(getattr(exc, 'orig', None) or exc).__name__}）")
        return ["数据库不可用"]
    finally:
        db_engine.dispose()
    _print_worker_status(settings, status)
    return status["problems"]


@main.command("doctor")
@click.pass_obj
def doctor(settings: Settings):
    """Check the database, schema, holiday data and the worker's backlog; exit 1 when something needs fixing."""
    problems = _doctor_checks(settings)
    for problem in problems:
        click.echo(f"问题：{problem}")
    click.echo(f"结论：有 {len(problems)} 个问题需要处理" if problems else "结论：正常")
    sys.exit(1 if problems else 0)


_AUDIT_PROBLEMS = {
    "content was altered": "内容被改动",
    "previous hash does not match": "与前一条记录链接不上（记录被删除、插入或调换）",
}


@main.command("verify-audit")
@click.pass_obj
def verify_audit(settings: Settings):
    """Check every instance's hash-chained audit trail; exit 1 and list the breaks if any chain is broken."""
    from engine.monitoring import verify_all_chains

    session = _sessions(settings)()
    instances = events = 0
    broken: list[tuple[int, dict]] = []
    try:
        for instance_id, count, breaks in verify_all_chains(session):
            instances += 1
            events += count
            broken.extend((instance_id, b) for b in breaks)
    finally:
        session.close()
    for instance_id, problem in broken:
        reason = _AUDIT_PROBLEMS.get(problem["problem"], problem["problem"])
        click.echo(f"流程实例 {instance_id} 审计记录 {problem['event_id']}：{reason}")
    verdict = f"发现 {len(broken)} 处断裂" if broken else "全部完整"
    click.echo(f"已校验 {instances} 个流程实例的 {events} 条审计记录：{verdict}")
    sys.exit(1 if broken else 0)


@main.command("check")
@click.pass_obj
def check(settings: Settings):
    """Check the whole database: instance states against tasks, timers and audit; exit 1 on problems."""
    from engine.consistency import check_database

    session = _sessions(settings)()
    try:
        problems = check_database(session, settings)
    finally:
        session.close()
    for problem in problems:
        click.echo(str(problem))
    click.echo(
        f"发现 {len(problems)} 处不一致" if problems else "数据一致：流程状态、待办任务、定时器与审计记录相符"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
