"""Deployment settings shared by the web app, the CLI and the worker (environment-driven)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Settings:
    database_url: str = "sqlite:///instance/chengxin.db"
    instance_dir: Path = Path("instance")
    secret_key: str = "dev-only-secret-change-me"
    # Variables holding an instance's own deadline (the overdue flag on lists), each with the
    # variable whose presence means the deadline was met (e.g. the reply was sent), or None.
    deadline_variables: dict[str, str | None] = field(
        default_factory=lambda: {
            "reply_deadline": "sent_date",
            "objection_deadline": None,
            "decision_deadline": None,
        }
    )
    sla_warning_workdays: int = 1
    office_end: str = "17:30"
    timezone: str = "Asia/Shanghai"
    script_time_limit: float = 2.0
    platform_url: str | None = None
    outbox_max_attempts: int = 8
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "chengxin@localhost"
    worker_poll_seconds: float = 5.0
    # How long a claimed outbox message stays with its worker before another may retry it.
    outbox_lease_seconds: float = 120.0
    token_hours: int = 12
    # Fernet keys for data at rest, newest first; empty = derived from secret_key (demo only).
    data_keys: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        instance_dir = Path(os.environ.get("CHENGXIN_INSTANCE", "instance")).resolve()
        values = dict(
            database_url=os.environ.get("DATABASE_URL") or f"sqlite:///{instance_dir / 'chengxin.db'}",
            instance_dir=instance_dir,
            secret_key=os.environ.get("CHENGXIN_SECRET_KEY", cls.secret_key),
            platform_url=os.environ.get("CHENGXIN_PLATFORM_URL") or None,
            smtp_host=os.environ.get("CHENGXIN_SMTP_HOST") or None,
            smtp_port=_env_int("CHENGXIN_SMTP_PORT", 25),
            worker_poll_seconds=float(os.environ.get("CHENGXIN_WORKER_POLL", 5.0)),
            outbox_lease_seconds=float(os.environ.get("CHENGXIN_OUTBOX_LEASE", 120.0)),
            data_keys=tuple(
                k.strip() for k in os.environ.get("CHENGXIN_DATA_KEYS", "").split(",") if k.strip()
            ),
        )
        values.update(overrides)
        return cls(**values)

    @cached_property
    def cipher(self):
        from .crypto import Cipher, derived_key

        keys = [k.encode() for k in self.data_keys] or [derived_key(self.secret_key)]
        return Cipher(keys)

    @property
    def holiday_dir(self) -> Path:
        return self.instance_dir / "holidays"

    @property
    def tzinfo(self):
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)

    @cached_property
    def calendar(self):
        from datetime import time

        from .calendar import WorkCalendar

        hour, minute = (int(x) for x in self.office_end.split(":"))
        return WorkCalendar(
            holiday_dir=self.holiday_dir,
            tz=self.timezone,
            office_end=time(hour, minute),
            warning_workdays=self.sla_warning_workdays,
        )
