"""The worker's jobs on a real database: timers under time travel, outbox to real peers, reminders."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import func, select

from engine import jobs, runtime
from engine.access import SYSTEM, Actor
from engine.db import transaction
from engine.definitions import deploy_paths
from engine.models import Event, HumanTask, Notification, OutboxMessage, ProcessInstance, Timer
from tests.jobs_peers import PlatformServer, SmtpSink

FIXTURES = Path(__file__).parent.parent / "fixtures"
# Monday 2025-09-22 10:00 in Shanghai: a plain working week before 国庆.
MONDAY = datetime(2025, 9, 22, 2, 0, tzinfo=UTC)


@pytest.fixture
def flows(session_factory, seeded):
    names = [
        "waiting_flow.bpmn",
        "jobs_failing_script.bpmn",
        "jobs_boundary_timers.bpmn",
        "simple_review.bpmn",
        "simple_start.form",
        "simple_review.form",
        "simple_confirm.form",
    ]
    with transaction(session_factory) as session:
        deploy_paths(session, [FIXTURES / n for n in names], user="analyst")


def start(session_factory, settings, key, **variables) -> int:
    with transaction(session_factory) as session:
        return runtime.start_instance(runtime.Context(session, SYSTEM, settings), key, variables=variables).id


def instance_view(session_factory, instance_id) -> dict:
    with transaction(session_factory) as session:
        instance = session.get(ProcessInstance, instance_id)
        tasks = session.scalars(
            select(HumanTask.element_id).where(
                HumanTask.instance_id == instance_id, HumanTask.status == "open"
            )
        ).all()
        timers = session.scalars(select(Timer.element_id).where(Timer.instance_id == instance_id)).all()
        events = session.scalars(
            select(Event.type).where(Event.instance_id == instance_id).order_by(Event.id)
        ).all()
        return {
            "status": instance.status,
            "error": instance.error,
            "tasks": list(tasks),
            "timers": list(timers),
            "events": list(events),
        }


def queue(session_factory, kind, payload, **columns) -> int:
    """Put a message in the outbox the way connectors do: a row in the caller's transaction."""
    with transaction(session_factory) as session:
        message = OutboxMessage(kind=kind, payload=payload, **columns)
        session.add(message)
        session.flush()
        return message.id


def outbox_row(session_factory, message_id) -> OutboxMessage:
    with transaction(session_factory) as session:
        return session.get(OutboxMessage, message_id)


def notifications(session_factory, **filters) -> list[Notification]:
    with transaction(session_factory) as session:
        query = select(Notification).filter_by(**filters).order_by(Notification.id)
        return list(session.scalars(query))


# --- timers -------------------------------------------------------------------------------


def test_a_timer_moves_the_instance_on_once_its_time_has_come_and_not_before(
    session_factory, settings, flows
):
    with time_machine.travel(MONDAY, tick=False):
        instance_id = start(session_factory, settings, "waiting_flow")
    assert instance_view(session_factory, instance_id) | {"events": None} == {
        "status": "waiting",
        "error": None,
        "tasks": [],
        "timers": ["wait_hour"],
        "events": None,
    }

    with time_machine.travel(MONDAY + timedelta(minutes=59), tick=False):
        assert jobs.fire_due_timers(session_factory, settings) == 0
    assert instance_view(session_factory, instance_id)["timers"] == ["wait_hour"]

    with time_machine.travel(MONDAY + timedelta(minutes=61), tick=False):
        assert jobs.fire_due_timers(session_factory, settings) == 1
        assert jobs.fire_due_timers(session_factory, settings) == 0  # fired once, not again
    view = instance_view(session_factory, instance_id)
    assert view["status"] == "running"
    assert view["tasks"] == ["handle"] and view["timers"] == []
    assert view["events"] == ["instance_started", "timers_fired"]


def test_boundary_timers_urge_then_escalate_a_user_task(session_factory, settings, flows):
    with time_machine.travel(MONDAY, tick=False):
        instance_id = start(session_factory, settings, "jobs_boundary_timers")
    assert sorted(instance_view(session_factory, instance_id)["timers"]) == ["too_late", "urge"]

    with time_machine.travel(MONDAY + timedelta(hours=2, minutes=1), tick=False):
        assert jobs.fire_due_timers(session_factory, settings) == 1
    view = instance_view(session_factory, instance_id)
    assert view["tasks"] == ["handle"]  # non-interrupting: the task stays, the chief is urged
    assert view["timers"] == ["too_late"]
    assert [n.username for n in notifications(session_factory, title="请督促办理")] == ["chief"]

    with time_machine.travel(MONDAY + timedelta(hours=4, minutes=1), tick=False):
        assert jobs.fire_due_timers(session_factory, settings) == 1
    view = instance_view(session_factory, instance_id)
    assert view["tasks"] == ["escalate"] and view["timers"] == []  # interrupting: handed to the director
    assert view["events"].count("timers_fired") == 2


def test_due_timers_fire_oldest_first_within_the_limit(session_factory, settings, flows):
    ids = []
    for minutes in (0, 5, 10):
        with time_machine.travel(MONDAY + timedelta(minutes=minutes), tick=False):
            ids.append(start(session_factory, settings, "waiting_flow"))
    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False):
        assert jobs.fire_due_timers(session_factory, settings, limit=2) == 2
        assert [instance_view(session_factory, i)["status"] for i in ids] == ["running", "running", "waiting"]
        assert jobs.fire_due_timers(session_factory, settings, limit=2) == 1


def test_suspended_instances_are_skipped_until_resumed(session_factory, settings, flows):
    with time_machine.travel(MONDAY, tick=False):
        instance_id = start(session_factory, settings, "waiting_flow")
        with transaction(session_factory) as session:
            runtime.suspend_instance(runtime.Context(session, SYSTEM, settings), instance_id, "核实情况")
    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False):
        assert jobs.fire_due_timers(session_factory, settings) == 0
        view = instance_view(session_factory, instance_id)
        assert view["status"] == "suspended" and view["timers"] == ["wait_hour"] and view["tasks"] == []
        with transaction(session_factory) as session:
            assert jobs.worker_status(session)["due_timers"] == 0  # not work the worker could do

        with transaction(session_factory) as session:
            runtime.resume_instance(runtime.Context(session, SYSTEM, settings), instance_id)
        assert jobs.fire_due_timers(session_factory, settings) == 1
    assert instance_view(session_factory, instance_id)["tasks"] == ["handle"]


def test_a_script_error_parks_its_instance_and_the_others_move_on(session_factory, settings, flows, caplog):
    with time_machine.travel(MONDAY, tick=False):
        failing = start(session_factory, settings, "jobs_failing_script", secret="举报人张三")
        healthy = [start(session_factory, settings, "waiting_flow") for _ in range(2)]

    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False), caplog.at_level(logging.INFO):
        assert jobs.fire_due_timers(session_factory, settings) == 2
        assert jobs.fire_due_timers(session_factory, settings) == 0  # the parked one is not retried

    for instance_id in healthy:
        assert instance_view(session_factory, instance_id)["tasks"] == ["handle"]
    view = instance_view(session_factory, failing)
    assert view["status"] == "error"
    assert "undefined_amount" in view["error"]
    assert view["events"] == ["instance_started", "error"]  # the failed step left nothing behind
    assert view["tasks"] == [] and view["timers"] == ["wait_hour"]
    [notice] = notifications(session_factory, kind="instance_error")
    assert notice.username == "admin" and notice.instance_id == failing
    assert "举报人张三" not in caplog.text and "undefined_amount" not in caplog.text
    assert f"instance {failing}" in caplog.text
    with transaction(session_factory) as session:
        status = jobs.worker_status(session, settings)
    assert status["instances_in_error"] == 1 and status["due_timers"] == 0


def test_worker_status_reports_timer_lag_as_a_problem(session_factory, settings, flows):
    with time_machine.travel(MONDAY, tick=False):
        start(session_factory, settings, "waiting_flow")
    with transaction(session_factory) as session:
        early = jobs.worker_status(session, settings, now=MONDAY + timedelta(minutes=30))
        late = jobs.worker_status(session, settings, now=MONDAY + timedelta(hours=3))
    assert early["due_timers"] == 0 and early["timer_lag_seconds"] is None
    assert not [p for p in early["problems"] if "定时器" in p]
    assert late["due_timers"] == 1
    assert late["timer_lag_seconds"] == pytest.approx(2 * 3600, abs=5)
    assert any("定时器" in p for p in late["problems"])


# --- outbox -------------------------------------------------------------------------------


def test_platform_syncs_are_posted_once_with_their_idempotency_key(session_factory, settings):
    ids = [queue(session_factory, "platform_sync", {"id": n, "subject_name": f"单位{n}"}) for n in range(3)]
    with PlatformServer() as server:
        settings.platform_url = server.url
        assert jobs.deliver_outbox(session_factory, settings) == 3
        assert jobs.deliver_outbox(session_factory, settings) == 0
    assert server.keys() == {f"chengxin-outbox-{i}": 1 for i in ids}
    first = server.requests[0]
    assert first["content_type"].startswith("application/json")
    assert first["json"]["idempotency_key"] == first["key"]
    assert first["json"]["kind"] == "platform_sync"
    assert first["json"]["payload"] == {"id": 0, "subject_name": "单位0"}
    for message_id in ids:
        row = outbox_row(session_factory, message_id)
        assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
        assert row.delivered_at is not None


def test_a_failing_platform_is_retried_with_backoff_then_dead_lettered(session_factory, settings, seeded):
    settings.outbox_max_attempts = 3
    message_id = queue(session_factory, "platform_sync", {"id": 7}, instance_id=None)
    now = datetime.now(UTC)
    with PlatformServer(status=503) as server:
        settings.platform_url = server.url
        assert jobs.deliver_outbox(session_factory, settings, now=now) == 0
        row = outbox_row(session_factory, message_id)
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "区平台返回 HTTP 503")
        wait = (row.next_attempt_at - now).total_seconds()
        assert 30 <= wait <= 33

        assert jobs.deliver_outbox(session_factory, settings, now=now + timedelta(seconds=20)) == 0
        assert len(server.requests) == 1  # not due yet: nobody asked again

        second = now + timedelta(seconds=wait + 1)
        jobs.deliver_outbox(session_factory, settings, now=second)
        row = outbox_row(session_factory, message_id)
        assert row.attempts == 2 and 60 <= (row.next_attempt_at - second).total_seconds() <= 66

        jobs.deliver_outbox(session_factory, settings, now=second + timedelta(hours=1))
        jobs.deliver_outbox(session_factory, settings, now=second + timedelta(hours=2))
    assert len(server.requests) == 3
    assert len(set(server.keys())) == 1
    row = outbox_row(session_factory, message_id)
    assert (row.status, row.attempts) == ("dead", 3)
    with transaction(session_factory) as session:
        [event] = session.scalars(select(Event).where(Event.type == "outbox_dead")).all()
        assert event.details["outbox_id"] == message_id
        status = jobs.worker_status(session, settings)
    assert [n.username for n in notifications(session_factory, kind="outbox_dead")] == ["admin"]
    assert status["outbox_dead"] == 1 and status["outbox_backlog"] == 0
    assert any("投递失败" in p for p in status["problems"])

    with transaction(session_factory) as session:
        assert jobs.requeue_dead(session) == 1
    with PlatformServer() as server:
        settings.platform_url = server.url
        assert jobs.deliver_outbox(session_factory, settings) == 1
    assert outbox_row(session_factory, message_id).status == "delivered"


def test_an_unreachable_platform_is_a_retryable_failure(session_factory, settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.platform_url = f"http://127.0.0.1:{port}/sync"
    message_id = queue(session_factory, "platform_sync", {"id": 1})
    assert jobs.deliver_outbox(session_factory, settings) == 0
    row = outbox_row(session_factory, message_id)
    assert row.status == "pending" and row.attempts == 1
    assert "Connection refused" in row.last_error or "URLError" in row.last_error


def test_messages_wait_for_their_channel_to_be_configured(session_factory, settings):
    sync = queue(session_factory, "platform_sync", {"id": 1})
    mail = queue(session_factory, "email", {"to": "a@example.org", "subject": "s", "body": "b"})
    assert jobs.deliver_outbox(session_factory, settings) == 0
    for message_id in (sync, mail):
        row = outbox_row(session_factory, message_id)
        assert (row.status, row.attempts) == ("pending", 0)
    with transaction(session_factory) as session:
        warnings = jobs.worker_status(session, settings)["warnings"]
    assert any("CHENGXIN_PLATFORM_URL" in w for w in warnings)
    assert any("CHENGXIN_SMTP_HOST" in w for w in warnings)


def test_applicant_notices_go_by_letter_without_smtp_and_by_mail_with_it(session_factory, settings):
    notice = {
        "name": "李四",
        "contact": "lisi@example.org",
        "message": "您的异议已受理",
        "business_key": "YY2026000001",
    }
    by_letter = queue(session_factory, "applicant_notice", notice)
    assert jobs.deliver_outbox(session_factory, settings) == 1
    row = outbox_row(session_factory, by_letter)
    assert row.status == "delivered" and row.payload["channel"] == "letter"

    by_mail = queue(session_factory, "applicant_notice", notice)
    phone_only = queue(session_factory, "applicant_notice", {**notice, "contact": "13800138000"})
    with SmtpSink() as sink:
        settings.smtp_host, settings.smtp_port = "127.0.0.1", sink.port
        assert jobs.deliver_outbox(session_factory, settings) == 2
    assert outbox_row(session_factory, by_mail).payload["channel"] == "email"
    assert outbox_row(session_factory, phone_only).payload["channel"] == "letter"
    [mail] = sink.messages
    assert mail["to"] == ["lisi@example.org"]
    assert f"chengxin-outbox-{by_mail}@chengxin" in mail["data"]


def test_an_email_with_a_bad_address_is_dead_at_once(session_factory, settings):
    message_id = queue(session_factory, "email", {"to": "not an address", "subject": "s", "body": "b"})
    settings.smtp_host = "127.0.0.1"
    assert jobs.deliver_outbox(session_factory, settings) == 0
    row = outbox_row(session_factory, message_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "收件地址无效")


# --- reminders ----------------------------------------------------------------------------


def test_reminders_go_out_once_on_warning_and_once_when_overdue(session_factory, settings, flows):
    # 初审 is due in 3 working days: Thursday 17:30; warning from Wednesday 17:30.
    with time_machine.travel(MONDAY, tick=False):
        start(session_factory, settings, "simple_review", title="关于某企业的反映")
        assert jobs.send_reminders(session_factory, settings) == 0
    wednesday_evening = datetime(2025, 9, 24, 10, 0, tzinfo=UTC)  # 18:00 in Shanghai
    assert jobs.send_reminders(session_factory, settings, now=wednesday_evening) == 1
    assert jobs.send_reminders(session_factory, settings, now=wednesday_evening) == 0
    [warning] = notifications(session_factory, kind="task_warning")
    assert warning.username == "registrar"  # unassigned: the office's members
    assert warning.title == "任务即将到期：初审"
    assert "2025-09-25 17:30" in warning.body and warning.link.startswith("/tasks/")

    friday = datetime(2025, 9, 26, 2, 0, tzinfo=UTC)
    assert jobs.send_reminders(session_factory, settings, now=friday) == 1
    assert jobs.send_reminders(session_factory, settings, now=friday + timedelta(days=3)) == 0
    assert [n.title for n in notifications(session_factory, kind="task_overdue")] == ["任务已逾期：初审"]


def test_a_claimed_task_reminds_its_assignee_only_and_mails_when_smtp_is_set(
    session_factory, settings, flows
):
    from engine.users import create_user

    with transaction(session_factory) as session:
        create_user(session, "clerk2", "secret99", groups=["office"], email="clerk2@example.org")
    with time_machine.travel(MONDAY, tick=False):
        instance_id = start(session_factory, settings, "simple_review", title="反映")
    with transaction(session_factory) as session:
        task = session.scalar(select(HumanTask).where(HumanTask.instance_id == instance_id))
        clerk = Actor("clerk2", frozenset({"office"}))
        runtime.claim_task(runtime.Context(session, clerk, settings), task.id)
    settings.smtp_host = "127.0.0.1"
    friday = datetime(2025, 9, 26, 2, 0, tzinfo=UTC)
    assert jobs.send_reminders(session_factory, settings, now=friday) == 1
    assert [n.username for n in notifications(session_factory, kind="task_overdue")] == ["clerk2"]
    with transaction(session_factory) as session:
        [mail] = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).all()
    assert mail.payload["to"] == "clerk2@example.org" and mail.payload["subject"] == "任务已逾期：初审"


# --- the loop -----------------------------------------------------------------------------


def test_one_round_of_the_worker_runs_every_job(session_factory, settings, flows):
    from engine import credit
    from engine.demo_archive import seed_demo_archive

    with transaction(session_factory) as session:
        seed_demo_archive(session, today=date(2019, 1, 2))  # disclosure periods long over by now
        published_before = session.scalar(
            select(func.count())
            .select_from(credit.CreditRecord)
            .where(credit.CreditRecord.status == "published")
        )
    assert published_before
    instance_id = start(session_factory, settings, "waiting_flow")
    with PlatformServer() as server:
        settings.platform_url = server.url
        with time_machine.travel(datetime.now(UTC) + timedelta(hours=2)):
            jobs.run_worker(settings, once=True)
    assert instance_view(session_factory, instance_id)["tasks"] == ["handle"]
    with transaction(session_factory) as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(credit.CreditRecord)
                .where(credit.CreditRecord.status == "published")
            )
            == 0
        )
        pending = session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
        )
    assert server.requests and pending == 0


def test_the_worker_waits_out_a_database_outage_and_stops_on_request(tmp_path, settings, caplog):
    settings.database_url = f"sqlite:///{tmp_path}/missing/dir/chengxin.db"  # cannot be opened
    settings.worker_poll_seconds = 0.05
    stop = threading.Event()
    thread = threading.Thread(target=jobs.run_worker, args=(settings,), kwargs={"stop_event": stop})
    with caplog.at_level(logging.INFO, logger="engine.jobs"):
        thread.start()
        thread.join(1.5)
        assert thread.is_alive()  # backing off, not crashed
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert "database error (OperationalError: unable to open database file)" in caplog.text
    assert "retrying in 2 s" in caplog.text
    assert "worker stopped" in caplog.text


def test_retry_delays_double_and_are_capped():
    assert 30 <= jobs.retry_delay(1).total_seconds() <= 33
    assert 240 <= jobs.retry_delay(4).total_seconds() <= 264
    assert 6 * 3600 <= jobs.retry_delay(30).total_seconds() <= 6.6 * 3600


def test_a_configuration_fault_leaves_instances_as_they_were(session_factory, settings, flows, caplog):
    from dataclasses import replace

    with time_machine.travel(MONDAY, tick=False):
        instance_id = start(session_factory, settings, "waiting_flow")
    wrong_key = replace(settings, secret_key="not-the-key-the-states-were-written-with")
    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False), caplog.at_level(logging.INFO):
        assert jobs.fire_due_timers(session_factory, wrong_key) == 0
        view = instance_view(session_factory, instance_id)
        assert view["status"] == "waiting" and view["timers"] == ["wait_hour"]  # not parked
        assert "retried later" in caplog.text
        assert jobs.fire_due_timers(session_factory, settings) == 1  # the right key: it moves on
