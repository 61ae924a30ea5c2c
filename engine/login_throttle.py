"""Login rate limiting: failed attempts per user name and address, counted in the database
so that every web process on every host sees the same count."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, utcnow

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
KEEP = timedelta(days=1)


class LoginFailure(Base):
    """One failed login attempt."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failure_user_ip_at", "username", "address", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


def _key(username: str, address: str | None) -> tuple[str, str]:
    return (username or "").strip().lower()[:64], (address or "")[:64]


def login_blocked(session, username: str, address: str | None, now: datetime | None = None) -> bool:
    """True when this user name from this address failed MAX_FAILURES times within WINDOW."""
    name, addr = _key(username, address)
    since = (now or utcnow()) - WINDOW
    failures = session.scalar(
        select(func.count(LoginFailure.id)).where(
            LoginFailure.username == name, LoginFailure.address == addr, LoginFailure.at > since
        )
    )
    return (failures or 0) >= MAX_FAILURES


def record_login_failure(session, username: str, address: str | None, now: datetime | None = None) -> None:
    """Count one failed attempt, and forget attempts older than a day."""
    name, addr = _key(username, address)
    now = now or utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - KEEP))
    session.add(LoginFailure(username=name, address=addr, at=now))
    session.flush()


def clear_login_failures(session, username: str, address: str | None) -> None:
    """A successful login forgets that user's failures from that address."""
    name, addr = _key(username, address)
    session.execute(delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.address == addr))
