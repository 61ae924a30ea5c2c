"""The background worker: fires due timers, delivers the outbox, sends deadline reminders.

Every job takes its work in short transactions, so any number of workers on any number of
hosts can run side by side on one PostgreSQL database:

- Timers fire exactly once. One instance per transaction, its row taken with
  ``SELECT … FOR UPDATE SKIP LOCKED``. The lock is on the instance, not on a timer row: the
  instance's state is what a step changes and all its due timers fire in one step; a web
  request that loaded the instance meanwhile loses the optimistic-lock race (HTTP 409)
  instead of overwriting the step. Fired timers leave the timer projection in the same
  commit, and a worker killed mid-step leaves nothing behind (its transaction rolls back).
  SQLite ignores FOR UPDATE: its BEGIN IMMEDIATE already serialises writers on one host.
- The outbox is delivered at least once. A message is claimed (attempts + 1, next attempt
  pushed ``outbox_lease_seconds`` ahead) and committed, delivered with no transaction open,
  then its outcome is recorded. A worker killed between delivery and recording leaves the
  message due again once the lease runs out, so a receiver may see it twice: every delivery
  carries the message's idempotency key (``Idempotency-Key`` header and ``idempotency_key``
  field; the e-mail Message-ID) for the receiver to drop repeats.
  Applicant notices go by e-mail when SMTP is configured and the contact is an address;
  otherwise they are marked delivered on channel "letter": the office prints and posts them.
  Platform syncs wait while no platform URL is configured, e-mails while no SMTP host is.
- Deadline reminders go out once per task and kind, guaranteed by the primary key of
  ``task_reminders``.

Nothing here logs variables, payloads or exception messages: they may hold a whistleblower's
identity. Logs name ids and exception classes only; messages go to the database.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import signal
import smtplib
import threading
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import ForeignKey, String, exists, func, or_, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from . import audit, runtime
from .access import SYSTEM
from .config import Settings
from .connectors import notify_users
from .db import Base, make_engine, make_session_factory, transaction, utcnow
from .errors import Conflict, NotFound, ScriptError
from .models import Group, HumanTask, OutboxMessage, ProcessInstance, Timer, User, UserGroup

log = logging.getLogger(__name__)

ACTIVE = ("running", "waiting")
HTTP_TIMEOUT = 5.0
SMTP_TIMEOUT = 10.0
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 6 * 3600.0
DB_BACKOFF_CAP_SECONDS = 60.0
REMINDER_BATCH = 200
# PostgreSQL: deadlock detected, serialization failure, lock not available — this row, this time.
_TRANSIENT_SQLSTATES = {"40P01", "40001", "55P03"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

HttpPost = Callable[[str, bytes, dict, float], int]


class TaskReminder(Base):
    """A deadline reminder already sent for a task, so each kind goes out once."""

    __tablename__ = "task_reminders"

    task_id: Mapped[int] = mapped_column(ForeignKey("human_tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # warning | overdue
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


def _stopping(stop_event: threading.Event | None) -> bool:
    return stop_event is not None and stop_event.is_set()


def _describe(exc: BaseException) -> str:
    """Exception class and where it was raised, never its message (it may carry data)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


def _db_error(exc: DBAPIError) -> str:
    """The driver's error class, plus its first line when that cannot quote data."""
    orig = getattr(exc, "orig", None)
    name = type(orig or exc).__name__
    # Connection and schema errors say what is wrong without values; integrity and data errors may quote them.
    if isinstance(exc, (OperationalError, ProgrammingError)) and orig is not None:
        lines = str(orig).strip().splitlines()
        return f"{name}: {lines[0][:200]}" if lines else name
    return name


def _lock_instance(session: Session, instance_id: int) -> bool:
    """Lock an instance row (no-op on SQLite); False if it is gone."""
    query = select(ProcessInstance.id).where(ProcessInstance.id == instance_id).with_for_update()
    return session.scalar(query) is not None


# --- timers -------------------------------------------------------------------------------


def _next_due_instance(now: datetime, skip: set[int]):
    # Oldest due timer first; a row another worker holds is skipped, not waited for.
    query = (
        select(Timer.instance_id)
        .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
        .where(Timer.due_at <= now, ProcessInstance.status.in_(ACTIVE))
        .order_by(Timer.due_at, Timer.id)
        .limit(1)
        .with_for_update(of=ProcessInstance, skip_locked=True)
    )
    if skip:
        query = query.where(Timer.instance_id.not_in(skip))
    return query


def _still_due(session: Session, instance_id: int, now: datetime) -> bool:
    # A fresh statement: the lock may have been granted just after another worker's commit,
    # whose changes the locking statement's join did not see.
    return bool(
        session.scalar(
            select(
                exists().where(
                    Timer.instance_id == instance_id,
                    Timer.due_at <= now,
                    ProcessInstance.id == Timer.instance_id,
                    ProcessInstance.status.in_(ACTIVE),
                )
            )
        )
    )


def fire_due_timers(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = 50,
    stop_event: threading.Event | None = None,
) -> int:
    """Step up to `limit` instances whose timers are due, one transaction each; returns how many stepped.

    A failing script parks its instance in status "error"; raises DBAPIError when the
    database fails (the caller backs off).
    """
    now = now or utcnow()
    seen: set[int] = set()
    stepped = 0
    while len(seen) < limit and not _stopping(stop_event):
        result = _fire_next(sessions, settings, now, seen)
        if result is None:
            break
        instance_id, fired = result
        seen.add(instance_id)
        stepped += fired
    return stepped


def _fire_next(sessions, settings: Settings, now: datetime, seen: set[int]) -> tuple[int, bool] | None:
    """Take the next due instance and step it: (instance id, stepped) or None when none is due."""
    session = sessions()
    try:
        instance_id = session.scalar(_next_due_instance(now, seen))
        if instance_id is None:
            session.rollback()
            return None
        if not _still_due(session, instance_id, now):
            session.rollback()
            return instance_id, False
        try:
            runtime.run_due_timers(runtime.Context(session, SYSTEM, settings), instance_id)
            session.commit()
            log.info("instance %s: due timers fired", instance_id)
            return instance_id, True
        except (StaleDataError, IntegrityError, DataError, Conflict, NotFound) as exc:
            # Changed, suspended or ended by someone else meanwhile: look again next round.
            session.rollback()
            log.info("instance %s: timers retried later (%s)", instance_id, type(exc).__name__)
            return instance_id, False
        except DBAPIError as exc:
            session.rollback()
            if getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
                log.info("instance %s: timers retried later (%s)", instance_id, _db_error(exc))
                return instance_id, False
            raise
        except ScriptError as exc:  # the diagram's own fault: park the instance for a person
            session.rollback()
            _park_instance(sessions, instance_id, exc)
            return instance_id, False
        except Exception as exc:
            # A defect or a configuration fault (e.g. a wrong data key) is not the instance's:
            # leave it as it was and try again next round.
            session.rollback()
            log.error("instance %s: timer step failed (%s); retried later", instance_id, _describe(exc))
            return instance_id, False
    finally:
        session.close()


def _park_instance(sessions, instance_id: int, exc: ScriptError) -> None:
    """Set a failing instance to "error" with the reason, audited, and tell the administrators."""
    message = exc.message
    log.error("instance %s: timer step failed (%s); status set to error", instance_id, _describe(exc))
    with transaction(sessions) as session:
        if not _lock_instance(session, instance_id):
            return
        instance = session.get(ProcessInstance, instance_id)
        if instance.status not in ACTIVE:
            return
        instance.status = "error"
        instance.error = message
        audit.record_event(
            session,
            "error",
            user=SYSTEM.username,
            instance_id=instance_id,
            comment=message,
            details={"job": "timer"},
        )
        notify_users(
            session,
            "group:admins",
            f"流程实例 {instance.business_key or instance_id} 执行出错",
            kind="instance_error",
            body=message,
            link=f"/instances/{instance_id}",
            instance_id=instance_id,
        )


# --- outbox -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """An outbox message taken by this worker, read before its transaction ended."""

    id: int
    kind: str
    payload: dict
    attempts: int
    created_at: datetime

    @property
    def idempotency_key(self) -> str:
        return f"chengxin-outbox-{self.id}"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    permanent: bool = False  # retrying cannot help (unknown kind, bad address)
    channel: str | None = None


def post_json(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST a body and return the HTTP status; raises OSError when no answer comes."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def send_mail(settings: Settings, to: str, subject: str, body: str, message_id: str) -> None:
    """Send one plain-text e-mail through the configured SMTP host; raises OSError or SMTPException."""
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = to
    message["Subject"] = subject
    # A stable Message-ID lets mail systems drop a repeated delivery.
    message["Message-ID"] = f"<{message_id}@chengxin>"
    message.set_content(body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(message)


def retry_delay(attempts: int) -> timedelta:
    """Wait before the next try after `attempts` failed ones: 30 s doubling, capped at 6 h, +0–10 %."""
    seconds = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return timedelta(seconds=seconds * (1 + random.uniform(0, 0.1)))


def _waiting_kinds(settings: Settings) -> list[str]:
    """Kinds that cannot go anywhere yet: they stay pending, untried, until configured."""
    kinds = []
    if not settings.platform_url:
        kinds.append("platform_sync")
    if not settings.smtp_host:
        kinds.append("email")
    return kinds


def _claim_next(sessions, settings: Settings, now: datetime) -> Claimed | None:
    with transaction(sessions) as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        waiting = _waiting_kinds(settings)
        if waiting:
            query = query.where(OutboxMessage.kind.not_in(waiting))
        message = session.scalars(query).first()
        if message is None:
            return None
        message.attempts += 1
        message.next_attempt_at = now + timedelta(seconds=settings.outbox_lease_seconds)
        return Claimed(
            message.id, message.kind, dict(message.payload or {}), message.attempts, message.created_at
        )


def _deliver(claim: Claimed, settings: Settings, http_post: HttpPost) -> Outcome:
    try:
        if claim.kind == "platform_sync":
            return _post_to_platform(claim, settings, http_post)
        if claim.kind == "applicant_notice":
            return _notify_applicant(claim, settings)
        if claim.kind == "email":
            return _send_email(claim, settings)
    except (OSError, http.client.HTTPException, smtplib.SMTPException, ValueError) as exc:
        # Refused, timed out, malformed answer, bad URL: worth another try later.
        return Outcome(False, f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"[:500])
    return Outcome(False, f"未知的消息类型 {claim.kind}", permanent=True)


def _post_to_platform(claim: Claimed, settings: Settings, http_post: HttpPost) -> Outcome:
    body = json.dumps(
        {
            "idempotency_key": claim.idempotency_key,
            "kind": claim.kind,
            "created_at": claim.created_at.isoformat(),
            "payload": claim.payload,
        },
        ensure_ascii=False,
        default=str,
    ).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": claim.idempotency_key}
    status = http_post(settings.platform_url, body, headers, HTTP_TIMEOUT)
    if 200 <= status < 300:
        return Outcome(True, channel="platform")
    return Outcome(False, f"区平台返回 HTTP {status}")


def _notify_applicant(claim: Claimed, settings: Settings) -> Outcome:
    contact = str(claim.payload.get("contact") or "").strip()
    if not settings.smtp_host or not _EMAIL.fullmatch(contact):
        return Outcome(True, channel="letter")
    subject = f"关于 {claim.payload.get('business_key') or ''} 的告知".replace("  ", " ")
    send_mail(settings, contact, subject, str(claim.payload.get("message") or ""), claim.idempotency_key)
    return Outcome(True, channel="email")


def _send_email(claim: Claimed, settings: Settings) -> Outcome:
    to = str(claim.payload.get("to") or "").strip()
    if not _EMAIL.fullmatch(to):
        return Outcome(False, "收件地址无效", permanent=True)
    send_mail(
        settings,
        to,
        str(claim.payload.get("subject") or "诚信平台通知"),
        str(claim.payload.get("body") or ""),
        claim.idempotency_key,
    )
    return Outcome(True, channel="email")


def _record(sessions, settings: Settings, claim: Claimed, outcome: Outcome, now: datetime) -> None:
    with transaction(sessions) as session:
        message = session.get(OutboxMessage, claim.id)
        if message is None or message.status != "pending":
            return
        if outcome.ok:
            log.info("outbox %s (%s): delivered by %s", message.id, message.kind, outcome.channel)
            message.status = "delivered"
            message.delivered_at = utcnow()
            message.last_error = None
            message.payload = {**(message.payload or {}), "channel": outcome.channel}
            return
        message.last_error = outcome.error
        log.warning("outbox %s (%s): attempt %s failed", message.id, message.kind, message.attempts)
        if outcome.permanent or message.attempts >= settings.outbox_max_attempts:
            _dead_letter(session, message)
        else:
            message.next_attempt_at = now + retry_delay(message.attempts)


def _dead_letter(session: Session, message: OutboxMessage) -> None:
    message.status = "dead"
    log.error("outbox %s (%s): dead after %s attempts", message.id, message.kind, message.attempts)
    audit.record_event(
        session,
        "outbox_dead",
        user=SYSTEM.username,
        instance_id=message.instance_id,
        comment=message.last_error,
        details={"outbox_id": message.id, "kind": message.kind, "attempts": message.attempts},
    )
    notify_users(
        session,
        "group:admins",
        f"外发消息 #{message.id} 投递失败，已停止重试",
        kind="outbox_dead",
        body=f"类型 {message.kind}，已尝试 {message.attempts} 次：{message.last_error or ''}",
        instance_id=message.instance_id,
    )


def deliver_outbox(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    limit: int = 50,
    http_post: HttpPost | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Deliver up to `limit` due outbox messages (at least once); returns how many were delivered.

    Failures are retried with backoff, then dead-lettered; raises DBAPIError when the database fails.
    """
    now = now or utcnow()
    http_post = http_post or post_json
    delivered = 0
    for _ in range(limit):
        if _stopping(stop_event):
            break
        claim = _claim_next(sessions, settings, now)
        if claim is None:
            break
        outcome = _deliver(claim, settings, http_post)
        _record(sessions, settings, claim, outcome, now)
        delivered += outcome.ok
    return delivered


def requeue_dead(session: Session, message_ids: list[int] | None = None) -> int:
    """Give dead-lettered messages (all, or the given ids) a fresh set of attempts; returns how many."""
    query = select(OutboxMessage).where(OutboxMessage.status == "dead")
    if message_ids is not None:
        query = query.where(OutboxMessage.id.in_(message_ids))
    messages = session.scalars(query.with_for_update()).all()
    for message in messages:
        message.status, message.attempts, message.next_attempt_at = "pending", 0, utcnow()
    session.flush()
    return len(messages)


# --- reminders ----------------------------------------------------------------------------

_REMINDER_TEXT = {"warning": ("task_warning", "任务即将到期"), "overdue": ("task_overdue", "任务已逾期")}


def _tasks_to_remind(kind: str, now: datetime):
    due = (
        HumanTask.due_at <= now
        if kind == "overdue"
        else (HumanTask.warn_at <= now) & (HumanTask.due_at > now)
    )
    sent = exists().where(TaskReminder.task_id == HumanTask.id, TaskReminder.kind == kind)
    return (
        select(HumanTask)
        .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
        .where(HumanTask.status == "open", due, ~sent, ProcessInstance.status.in_(ACTIVE))
        .order_by(HumanTask.id)
        .limit(REMINDER_BATCH)
        .with_for_update(of=HumanTask, skip_locked=True)
    )


def _recipients(session: Session, task: HumanTask) -> list[User]:
    """The assignee, or else every active candidate (named users and group members)."""
    if task.assignee:
        match = User.username == task.assignee
    else:
        members = (
            select(UserGroup.user_id)
            .join(Group, Group.id == UserGroup.group_id)
            .where(Group.name.in_(task.candidate_groups or []))
        )
        match = or_(User.username.in_(task.candidate_users or []), User.id.in_(members))
    return list(session.scalars(select(User).where(match, User.active.is_(True)).order_by(User.username)))


def _remind(session: Session, settings: Settings, task: HumanTask, kind: str) -> None:
    notice_kind, label = _REMINDER_TEXT[kind]
    title = f"{label}：{task.name}"
    due = task.due_at.astimezone(settings.tzinfo)
    body = f"{task.business_key or ''} {task.subject or ''}".strip() + f"，办理期限 {due:%Y-%m-%d %H:%M}"
    link = f"/tasks/{task.id}"
    for user in _recipients(session, task):
        notify_users(
            session,
            user.username,
            title,
            kind=notice_kind,
            body=body,
            link=link,
            instance_id=task.instance_id,
        )
        if settings.smtp_host and user.email:
            session.add(
                OutboxMessage(
                    kind="email",
                    instance_id=task.instance_id,
                    payload={"to": user.email, "subject": title, "body": f"{body}\n{link}"},
                )
            )
    session.add(TaskReminder(task_id=task.id, kind=kind))


def _remind_batch(sessions, settings: Settings, kind: str, now: datetime) -> int:
    try:
        with transaction(sessions) as session:
            tasks = session.scalars(_tasks_to_remind(kind, now)).all()
            for task in tasks:
                _remind(session, settings, task, kind)
            return len(tasks)
    except IntegrityError:
        # Another worker sent some of these just now; whatever is left goes next round.
        log.info("reminders (%s): sent concurrently by another worker", kind)
        return 0


def send_reminders(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    now: datetime | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Notify about open tasks that entered SLA warning or became overdue, once each; returns the count.

    Goes to the assignee, or else to the candidates; also by e-mail when SMTP is configured.
    Raises DBAPIError when the database fails.
    """
    now = now or utcnow()
    sent = 0
    for kind in ("overdue", "warning"):
        while not _stopping(stop_event):
            count = _remind_batch(sessions, settings, kind, now)
            sent += count
            if count < REMINDER_BATCH:
                break
    return sent


# --- status -------------------------------------------------------------------------------


def worker_status(session: Session, settings: Settings | None = None, *, now: datetime | None = None) -> dict:
    """What the jobs have to do and what needs an administrator (admin page, `chengxin doctor`)."""
    now = now or utcnow()
    due_timers = (
        select(Timer.due_at)
        .join(ProcessInstance, ProcessInstance.id == Timer.instance_id)
        .where(Timer.due_at <= now, ProcessInstance.status.in_(ACTIVE))
        .subquery()
    )
    due_count, oldest_due = session.execute(select(func.count(), func.min(due_timers.c.due_at))).one()
    outbox = dict(
        session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()
    )
    errored = session.scalar(
        select(func.count()).select_from(ProcessInstance).where(ProcessInstance.status == "error")
    )
    lag = _seconds_since(oldest_due, now)
    status = {
        "due_timers": due_count,
        "timer_lag_seconds": lag,
        "outbox_backlog": outbox.get("pending", 0),
        "outbox_dead": outbox.get("dead", 0),
        "instances_in_error": errored,
        "calendar_warnings": list(settings.calendar.warnings) if settings else [],
        "problems": [],
        "warnings": [],
    }
    _judge(session, settings, status, now)
    return status


def _seconds_since(value, now: datetime) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):  # in case an aggregate skips the column type on SQLite
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=now.tzinfo)
    return round(max(0.0, (now - value).total_seconds()), 1)


def _judge(session: Session, settings: Settings | None, status: dict, now: datetime) -> None:
    problems, warnings = status["problems"], status["warnings"]
    poll = settings.worker_poll_seconds if settings else 5.0
    if status["timer_lag_seconds"] is not None and status["timer_lag_seconds"] > max(60.0, 3 * poll):
        problems.append(
            f"有 {status['due_timers']} 个到期定时器未触发，最早的已延迟 {status['timer_lag_seconds']:.0f} 秒："
            "请检查 chengxin worker 是否在运行"
        )
    if status["outbox_dead"]:
        problems.append(f"有 {status['outbox_dead']} 条外发消息投递失败已停止重试，请检查后重新投递")
    if status["instances_in_error"]:
        warnings.append(f"有 {status['instances_in_error']} 个流程实例处于出错状态")
    if settings is None:
        return
    this_year = now.astimezone(settings.tzinfo).year
    if settings.calendar.year_info(this_year)["source"] == "fallback":
        problems.append(f"{this_year} 年没有节假日数据，当前期限按周一至周五计算")
    warnings.extend(status["calendar_warnings"])
    for kind in _waiting_kinds(settings):
        count = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == "pending", OutboxMessage.kind == kind)
        )
        if count:
            setting = "CHENGXIN_PLATFORM_URL" if kind == "platform_sync" else "CHENGXIN_SMTP_HOST"
            warnings.append(f"{count} 条 {kind} 消息在等待配置 {setting}")


# --- the loop -----------------------------------------------------------------------------


@dataclass
class _Round:
    """What the loop remembers between rounds."""

    expired_on: date | None = None
    failures: int = 0


def _expire_credit_records(sessions, settings: Settings, state: _Round) -> None:
    from . import credit

    today = utcnow().astimezone(settings.tzinfo).date()
    if state.expired_on == today:
        return
    with transaction(sessions) as session:
        expired = credit.expire_due(session, today)
    state.expired_on = today
    if expired:
        log.info("credit records expired: %s", expired)


def run_jobs(sessions, settings: Settings, *, stop_event: threading.Event | None = None, state=None) -> bool:
    """One round of every job; a failing job does not stop the others. False after a database error."""
    state = state or _Round()
    jobs = (
        ("timers", lambda: fire_due_timers(sessions, settings, stop_event=stop_event)),
        ("credit expiry", lambda: _expire_credit_records(sessions, settings, state)),
        ("reminders", lambda: send_reminders(sessions, settings, stop_event=stop_event)),
        # Last, so that what the other jobs queued leaves in the same round.
        ("outbox", lambda: deliver_outbox(sessions, settings, stop_event=stop_event)),
    )
    ok = True
    for name, job in jobs:
        if _stopping(stop_event):
            break
        try:
            job()
        except DBAPIError as exc:
            ok = False
            log.warning("%s: database error (%s)", name, _db_error(exc))
        except Exception as exc:  # a defect must not stop the other jobs or the loop
            log.error("%s: failed (%s)", name, _describe(exc))
    return ok


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM/SIGINT ask the loop to stop after the current job (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def request_stop(signum, _frame):
        log.info("signal %s: stopping after the current job", signum)
        stop.set()

    for sig in signals:
        signal.signal(sig, request_stop)
    return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]


def run_worker(settings: Settings, *, once: bool = False, stop_event: threading.Event | None = None) -> None:
    """Poll and run the jobs until SIGTERM/SIGINT or `stop_event` (`once`: a single round).

    Database outages are logged and waited out with exponential backoff (capped at 60 s); never raises for them.
    """
    stop = stop_event or threading.Event()
    restore_signals = _install_signal_handlers(stop)
    # hide_parameters: a failed statement's message would otherwise carry instance data.
    db_engine = make_engine(settings.database_url, hide_parameters=True)
    sessions = make_session_factory(db_engine)
    state = _Round()
    log.info("worker started, polling every %.1f s", settings.worker_poll_seconds)
    try:
        while not stop.is_set():
            if run_jobs(sessions, settings, stop_event=stop, state=state):
                state.failures = 0
                delay = settings.worker_poll_seconds
            else:
                state.failures += 1
                delay = min(
                    DB_BACKOFF_CAP_SECONDS, max(1.0, settings.worker_poll_seconds) * 2**state.failures
                )
                log.warning("retrying in %.0f s", delay)
            if once:
                break
            stop.wait(delay)
    finally:
        restore_signals()
        db_engine.dispose()
        log.info("worker stopped")
