"""Backup and restore of the whole database: SQLite's online backup API, pg_dump/pg_restore."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url

from .errors import EngineError


class BackupError(EngineError):
    """A backup or restore could not be made; the message says why."""


def _sqlite_path(url) -> str:
    if not url.database or url.database == ":memory:":
        raise BackupError("内存数据库无法备份")
    return url.database


def _libpq(url) -> str:
    """The URL as pg_dump/pg_restore expect it (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _run(args: list[str]) -> None:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    except FileNotFoundError as exc:
        raise BackupError(f"找不到 {args[0]}：请安装 PostgreSQL 客户端工具") from exc
    if result.returncode != 0:
        raise BackupError(f"{args[0]} 失败：{result.stderr.strip()[:500]}")


def backup(database_url: str, target: str | Path) -> Path:
    """Write a consistent copy of the database to `target` while it stays in use."""
    url, target = make_url(database_url), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "sqlite":
        source = sqlite3.connect(_sqlite_path(url))
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    elif url.get_backend_name() == "postgresql":
        _run(["pg_dump", "--format=custom", "--no-owner", f"--file={target}", _libpq(url)])
    else:
        raise BackupError(f"不支持备份 {url.get_backend_name()} 数据库")
    return target


def restore(database_url: str, source: str | Path) -> None:
    """Replace the database's content with a backup made by `backup` (stop web and worker first)."""
    url, source = make_url(database_url), Path(source)
    if not source.is_file():
        raise BackupError(f"备份文件不存在：{source}")
    if url.get_backend_name() == "sqlite":
        backup_db = sqlite3.connect(source)
        live = sqlite3.connect(_sqlite_path(url))
        try:
            backup_db.backup(live)
        finally:
            live.close()
            backup_db.close()
    elif url.get_backend_name() == "postgresql":
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={_libpq(url)}",
                str(source),
            ]
        )
    else:
        raise BackupError(f"不支持恢复 {url.get_backend_name()} 数据库")
