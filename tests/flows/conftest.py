"""Fixtures for the bureau's flows driven end to end through the HTTP API.

Each test deploys processes/ and forms/ once through the API (as the analyst), seeds the demo
credit archive when it needs one (`demo_archive`), and then acts as the roles of domain.md:
registrar (office), handler (supervision), chief (supervision + section_chiefs), legal, liaison
(credit_liaison), deputy (deputies + managers), director (directors + managers). Side effects
that have no API (outbox, notifications, timers) are read from the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = ROOT / "processes"
FORMS = ROOT / "forms"
BUNDLE = sorted(PROCESSES.glob("*.bpmn")) + sorted(PROCESSES.glob("*.dmn")) + sorted(FORMS.glob("*.form"))
BPMN_NS = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL"}
CHINA = timezone(timedelta(hours=8))
INSTANCES = "/api/v1/process-instances"

# Values the forms accept (a 统一社会信用代码 with its right check character, a mobile number).
VALID_USCC = "91350100M000100Y43"
VALID_PHONE = "13800138000"


def china_today():
    return datetime.now(CHINA).date()


@pytest.fixture
def sessions(app):
    """The app's session factory: read the archive, outbox and notifications straight from the database."""
    return app.extensions["chengxin"]["sessions"]


@pytest.fixture
def flows(api, sessions):
    """processes/ and forms/ deployed through the API (as the analyst): the Flows driver."""
    deployed = api.deploy(*BUNDLE, user="analyst")
    assert deployed.status_code == 201, deployed.json
    assert {d["key"] for d in deployed.json["definitions"]} >= {
        "complaint_rectification", "credit_objection", "credit_repair", "judicial_suggestion", "notify_and_sync",
    }  # fmt: skip
    return Flows(api, sessions)


@pytest.fixture
def demo_archive(sessions):
    """The demo credit archive (about thirty records in every status), seeded as `make run` does."""
    from engine.db import transaction
    from engine.demo_archive import seed_demo_archive

    with transaction(sessions) as s:
        assert seed_demo_archive(s) > 0


class Flows:
    """Acting on instances, tasks and the archive through the API, as one user at a time."""

    def __init__(self, api, sessions):
        self.api = api
        self.sessions = sessions
        # The working-day calendar the app runs with, to state expected deadlines.
        self.calendar = api.app.extensions["chengxin"]["settings"].calendar

    # --- instances ---------------------------------------------------------------------

    def start(self, process_key: str, variables: dict, user: str) -> dict:
        """Start an instance with its start form's data; asserts 201."""
        response = self.api.post(
            INSTANCES, user=user, json={"process_key": process_key, "variables": variables}
        )
        assert response.status_code == 201, response.json
        return response.json

    def instance(self, instance_id: int, user: str = "director") -> dict:
        response = self.api.get(f"{INSTANCES}/{instance_id}", user=user)
        assert response.status_code == 200, response.json
        return response.json

    def variables(self, instance_id: int, user: str = "director") -> dict:
        return self.instance(instance_id, user)["variables"]

    def open_tasks(self, instance_id: int) -> list[dict]:
        """The instance's open tasks (the inbox projection, as a manager sees it)."""
        response = self.api.get(f"/api/v1/tasks?scope=all&instance_id={instance_id}", user="director")
        assert response.status_code == 200, response.json
        return response.json["items"]

    def open_elements(self, instance_id: int) -> list[str]:
        return sorted(t["element_id"] for t in self.open_tasks(instance_id))

    def open_task(self, instance_id: int, element_id: str) -> dict:
        """The one open task of `element_id` in the instance."""
        tasks = self.open_tasks(instance_id)
        mine = [t for t in tasks if t["element_id"] == element_id]
        assert len(mine) == 1, (
            f"expected one open {element_id}, open tasks: {[t['element_id'] for t in tasks]}"
        )
        return mine[0]

    def complete(self, instance_id: int, element_id: str, user: str, data: dict) -> dict:
        """Complete the one open task of `element_id` as `user`; asserts 200, returns the completion."""
        task = self.open_task(instance_id, element_id)
        response = self.api.post(f"/api/v1/tasks/{task['id']}/complete", user=user, json={"data": data})
        assert response.status_code == 200, (element_id, response.json)
        return response.json

    def due(self, instance_id: int, element_id: str) -> datetime | None:
        """The due instant of the open task of `element_id`."""
        value = self.open_task(instance_id, element_id)["due_at"]
        return datetime.fromisoformat(value) if value else None

    def fire(self, instance_id: int, element_id: str, user: str = "director") -> dict:
        """Fire a waiting timer now (a manager's operation); asserts 200."""
        response = self.api.post(
            f"{INSTANCES}/{instance_id}/timers/fire", user=user, json={"element_id": element_id}
        )
        assert response.status_code == 200, (element_id, response.json)
        return response.json

    def message(self, instance_id: int, name: str, payload, user: str = "liaison"):
        return self.api.post(
            f"{INSTANCES}/{instance_id}/messages", user=user, json={"name": name, "payload": payload}
        )

    def assert_waiting_at(self, instance_id: int, *element_ids: str) -> dict:
        """The instance is running or waiting at exactly these elements (diagram.active)."""
        body = self.instance(instance_id)
        assert body["status"] in ("running", "waiting"), body["status"]
        assert set(body["diagram"]["active"]) == set(element_ids), body["diagram"]
        return body

    def assert_ended_at(self, instance_id: int, end_id: str, *also_reached: str) -> dict:
        """The instance is completed at `end_id`; of its process's other end events only `also_reached`
        (the ends of non-interrupting boundary paths) were reached."""
        body = self.instance(instance_id)
        assert body["status"] == "completed", (body["status"], body["diagram"], body["tasks"])
        assert body["ended_at"] is not None
        assert body["tasks"] == []
        completed = set(body["diagram"]["completed"])
        assert {end_id, *also_reached} <= completed, body["diagram"]
        # "end" is also notify_and_sync's end event, which the call activity completes on the way.
        others = end_events(body["process_key"]) - {end_id, "end", *also_reached}
        assert not (others & completed), body["diagram"]
        return body

    # --- the archive -------------------------------------------------------------------

    def record(self, record_id: int, user: str = "liaison") -> dict:
        response = self.api.get(f"/api/v1/credit-records/{record_id}", user=user)
        assert response.status_code == 200, response.json
        return response.json

    def records(self, user: str = "liaison", **filters) -> list[dict]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        response = self.api.get(f"/api/v1/credit-records?per_page=200&{query}", user=user)
        assert response.status_code == 200, response.json
        return response.json["items"]

    def pick_record(
        self, status: str = "published", severity: str | None = None, match=None, **where
    ) -> dict:
        """A record of the demo archive with this status (and severity, field values, `match(record)`)."""
        filters = {"status": status} | ({"severity": severity} if severity else {})
        for record in self.records(**filters):
            if all(record.get(k) == v for k, v in where.items()) and (match is None or match(record)):
                return self.record(record["id"])
        raise AssertionError(f"no {status}/{severity} record with {where} {match} in the demo archive")

    def public_ids(self) -> set[int]:
        response = self.api.get("/api/v1/public/credit-records?per_page=200")
        assert response.status_code == 200, response.json
        return {r["id"] for r in response.json["items"]}

    def outbox(self, kind: str, instance_id: int | None = None) -> list:
        """Outbox rows of a kind (of one instance), oldest first."""
        from engine.models import OutboxMessage

        query = select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        if instance_id is not None:
            query = query.where(OutboxMessage.instance_id == instance_id)
        with self.sessions() as s:
            rows = list(s.scalars(query))
            s.expunge_all()
        return rows

    def platform_syncs(self, record_id: int) -> list:
        return [m for m in self.outbox("platform_sync") if m.payload.get("id") == record_id]

    def timer_due(self, instance_id: int, element_id: str) -> datetime:
        """When the instance's waiting timer on `element_id` is due (the timer projection)."""
        from engine.models import Timer

        with self.sessions() as s:
            dues = list(
                s.scalars(
                    select(Timer.due_at).where(
                        Timer.instance_id == instance_id, Timer.element_id == element_id
                    )
                )
            )
        assert len(dues) == 1, f"expected one timer on {element_id}, found {dues}"
        return dues[0]

    def notifications(self, username: str, instance_id: int | None = None) -> list:
        from engine.models import Notification

        query = select(Notification).where(Notification.username == username).order_by(Notification.id)
        if instance_id is not None:
            query = query.where(Notification.instance_id == instance_id)
        with self.sessions() as s:
            rows = list(s.scalars(query))
            s.expunge_all()
        return rows


def end_events(process_key: str) -> set[str]:
    """Ids of the end events directly in the process (not inside its sub-processes)."""
    tree = etree.parse(str(PROCESSES / f"{process_key}.bpmn"))
    return set(tree.xpath(f"//bpmn:process[@id='{process_key}']/bpmn:endEvent/@id", namespaces=BPMN_NS))
