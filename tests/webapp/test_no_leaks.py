"""A complaint with a reporter's phone, name and ID number goes through the bureau's flow; then
everything a user outside office/directors/deputies can get — API answers, pages, the managers'
CSV/XLSX exports and ledgers — and every log line (all loggers at DEBUG) and the audit trail
are searched for the reporter's identity, which appears nowhere."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from engine.forms import uscc_check_char
from engine.models import Event, Notification

from .pages_client import PageClient

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = sorted((ROOT / "processes").glob("*.bpmn")) + sorted((ROOT / "processes").glob("*.dmn"))
BUNDLE += sorted((ROOT / "forms").glob("*.form"))
PHONE = "13987650123"
NAME = "举报人欧阳修远"
ID_NUMBER = "11010519491231002X"
ADDRESS = "许昌市魏都区秘密街道9号院"
SECRETS = (PHONE, NAME, ID_NUMBER, ADDRESS)
INSTANCES = "/api/v1/process-instances"


class Seen:
    """Everything a non-privileged user received, as text."""

    def __init__(self):
        self.texts: list[tuple[str, str]] = []

    def add(self, what: str, response) -> None:
        assert response.status_code < 400, (what, response.status_code, response.get_data(as_text=True)[:300])
        self.texts.append((what, _as_text(response)))

    def leaks(self) -> list[str]:
        return [f"{what}: {secret}" for what, text in self.texts for secret in SECRETS if secret in text]


def _as_text(response) -> str:
    data = response.get_data()
    if data[:2] == b"PK":  # XLSX: the cell values, and the raw XML parts for good measure
        book = load_workbook(io.BytesIO(data))
        cells = [
            str(c)
            for sheet in book
            for row in sheet.iter_rows(values_only=True)
            for c in row
            if c is not None
        ]
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()]
        return "\n".join(cells + parts)
    return data.decode("utf-8", "replace")


@pytest.fixture
def every_logger_at_debug(caplog):
    """Root and every logger known so far at DEBUG, captured (restored afterwards by caplog)."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _log_text(caplog) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


def _uscc() -> str:
    base = "91411002MA44FR2K0"
    return base + uscc_check_char(base)


def _complete(api, task_id: int, user: str, data: dict, seen: Seen | None = None):
    response = api.post(f"/api/v1/tasks/{task_id}/complete", user=user, json={"data": data})
    assert response.status_code == 200, response.json
    if seen is not None:
        seen.add(f"complete as {user}", response)
    return response.json


def _open_task(api, instance_id: int) -> dict:
    [task] = api.get(f"/api/v1/tasks?scope=all&instance_id={instance_id}", user="director").json["items"]
    return task


def test_the_reporters_identity_never_reaches_unprivileged_eyes_or_logs(
    app, api, every_logger_at_debug, caplog
):
    assert api.deploy(*BUNDLE, user="analyst").status_code == 201
    seen = Seen()
    today = date.today()
    variables = {
        "channel": "hotline_12350",
        "received_at": today.isoformat(),
        "anonymous": False,
        "reporter_name": NAME,
        "reporter_phone": PHONE,
        "reporter_id_number": ID_NUMBER,
        "reporter_address": ADDRESS,
        "subject_name": "许昌某某化工有限公司",
        "subject_uscc": _uscc(),
        "category": "major_hazard",
        "content": "该公司在厂区内违规储存大量液氨，未设置泄漏报警装置。",
    }
    started = api.post(
        INSTANCES, user="registrar", json={"process_key": "complaint_rectification", "variables": variables}
    )
    assert started.status_code == 201, started.json
    iid = started.json["id"]
    # Control: the office sees the reporter, so the search below looks for something that exists.
    assert api.get(f"{INSTANCES}/{iid}", user="registrar").json["variables"]["reporter_phone"] == PHONE

    # 股室负责人 accepts: not privileged either.
    acceptance = _open_task(api, iid)["id"]
    seen.add("chief task", api.get(f"/api/v1/tasks/{acceptance}", user="chief"))
    _complete(api, acceptance, "chief", {"acceptance": "accept", "opinion": "予以受理"}, seen)

    # 承办人 verifies, through the API and the pages.
    verification = _open_task(api, iid)["id"]
    handler_page = PageClient(app, "handler")
    seen.add("handler inbox page", handler_page.get("/inbox?tab=claimable"))
    seen.add("handler claimable", api.get("/api/v1/tasks?scope=claimable", user="handler"))
    seen.add("handler claim", api.post(f"/api/v1/tasks/{verification}/claim", user="handler"))
    seen.add("handler task", api.get(f"/api/v1/tasks/{verification}", user="handler"))
    seen.add("handler task page", handler_page.get(f"/tasks/{verification}"))
    seen.add("handler instance", api.get(f"{INSTANCES}/{iid}", user="handler"))
    seen.add("handler instances", api.get(INSTANCES, user="handler"))
    refused = api.post(
        f"/api/v1/tasks/{verification}/complete", user="handler", json={"data": {"verification": "?"}}
    )
    assert refused.status_code == 422
    seen.texts.append(("handler validation error", refused.get_data(as_text=True)))
    _complete(
        api,
        verification,
        "handler",
        {"verification": "unfounded", "findings": "经现场核查，未发现所反映问题。"},
        seen,
    )
    seen.add("handler tasks done", api.get("/api/v1/tasks?scope=mine", user="handler"))
    seen.add("handler instance after", api.get(f"{INSTANCES}/{iid}", user="handler"))

    # 办公室 replies to the reporter (privileged: not collected) and the matter ends.
    reply = _open_task(api, iid)
    api_reply = api.get(f"/api/v1/tasks/{reply['id']}", user="registrar").json
    assert api_reply["data"].get("reporter_phone", PHONE) == PHONE  # the office still sees it
    done = _complete(
        api,
        reply["id"],
        "registrar",
        {
            "reply_method": "phone",
            "reply_date": today.isoformat(),
            "reply_content": "经核查，所反映问题不属实。",
        },
    )
    assert done["instance"]["status"] == "completed", done["instance"]

    # 督查 (managers, outside the three groups): lists, exports, ledgers, audit, pages.
    columns = "business_key,process,subject,status,current_tasks,assignees,started_by,id"
    period = f"from={(today - timedelta(days=1)).isoformat()}&to={(today + timedelta(days=1)).isoformat()}"
    for what, path in {
        "instances": f"{INSTANCES}/{iid}",
        "monitor list": f"/api/v1/monitor/instances?columns={columns}",
        "export csv": f"/api/v1/monitor/instances/export?format=csv&columns={columns}",
        "export xlsx": f"/api/v1/monitor/instances/export?format=xlsx&columns={columns}",
        "ledger csv": f"/api/v1/monitor/ledgers/complaints?{period}&format=csv",
        "ledger xlsx": f"/api/v1/monitor/ledgers/complaints?{period}&format=xlsx",
        "monitor tasks": "/api/v1/monitor/tasks",
        "audit": f"/api/v1/monitor/instances/{iid}/audit",
        "summary": "/api/v1/stats/summary",
        "dashboard": "/api/v1/monitor/dashboard",
    }.items():
        seen.add(f"supervisor {what}", api.get(path, user="supervisor"))
    supervisor_page = PageClient(app, "supervisor")
    seen.add("supervisor instance page", supervisor_page.get(f"/monitor/instances/{iid}"))
    seen.add(
        "supervisor export page",
        supervisor_page.get(f"/monitor/instances/export?format=csv&columns={columns}"),
    )
    assert any(
        "许昌某某化工有限公司" in text for what, text in seen.texts if "export" in what
    )  # exports have rows

    assert not seen.leaks(), seen.leaks()

    with app.app_context():
        from webapp.database import session

        events = session().scalars(select(Event)).all()
        audit_text = json.dumps(
            [[e.type, e.comment, e.details, e.task_name] for e in events], ensure_ascii=False, default=str
        )
        notices = json.dumps(
            [[n.title, n.body, n.link] for n in session().scalars(select(Notification))], ensure_ascii=False
        )
    assert events and not [s for s in SECRETS if s in audit_text], "the audit trail names the reporter"
    assert not [s for s in SECRETS if s in notices], "a notification names the reporter"

    logs = _log_text(caplog)
    assert len(caplog.records) > 10  # the logs were captured at all
    assert not [s for s in SECRETS if s in logs], [
        r.getMessage()[:300] for r in caplog.records if PHONE in _log_text_of(r)
    ]


def _log_text_of(record) -> str:
    return f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
