"""The whitelisted functions diagrams may call: deadline helpers and the domain connectors.

They run inside the instance's transaction; anything leaving the system goes to the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from .errors import ValidationFailed
from .forms import ATTACHMENT_ID_RE
from .models import Group, Notification, OutboxMessage, User, UserGroup

if TYPE_CHECKING:
    from .models import ProcessInstance
    from .runtime import Context


def notify_users(
    session,
    recipient: str,
    title: str,
    *,
    kind: str = "notice",
    body: str = "",
    link: str | None = None,
    instance_id: int | None = None,
) -> int:
    """In-app notice to a username or to every active member of "group:<name>"."""
    if recipient.startswith("group:"):
        names = session.scalars(
            select(User.username)
            .join(UserGroup, UserGroup.user_id == User.id)
            .join(Group, Group.id == UserGroup.group_id)
            .where(Group.name == recipient.removeprefix("group:"), User.active.is_(True))
        ).all()
    else:
        names = [recipient]
    for name in names:
        session.add(
            Notification(
                username=name, kind=kind, title=title[:256], body=body, link=link, instance_id=instance_id
            )
        )
    return len(names)


def script_helpers(ctx: Context, instance: ProcessInstance) -> dict:
    """Functions available to this instance's expressions and scripts."""
    from . import credit

    calendar = ctx.settings.calendar
    session, actor = ctx.session, ctx.actor.username
    link = f"/instances/{instance.id}"

    def notify(recipient, message):
        notify_users(session, str(recipient), str(message), link=link, instance_id=instance.id)

    def notify_applicant(name, contact, message):
        session.add(
            OutboxMessage(
                kind="applicant_notice",
                instance_id=instance.id,
                payload={
                    "name": name,
                    "contact": contact,
                    "message": message,
                    "business_key": instance.business_key,
                },
            )
        )

    def credit_lookup(record_id):
        return credit.lookup(session, int(record_id))

    def credit_create(
        subject_type, subject_name, subject_code, category, severity, doc_no, decided_at, facts
    ):
        record = credit.create_record(
            session,
            actor=actor,
            instance_id=instance.id,
            subject_type=subject_type,
            subject_name=subject_name,
            subject_code=subject_code,
            category=category,
            severity=severity,
            doc_no=doc_no,
            decided_at=decided_at,
            facts=facts,
            reason=f"流程 {instance.business_key}",
        )
        return record.id

    def credit_mark_objection(record_id, reason):
        credit.mark_under_objection(
            session, int(record_id), actor=actor, instance_id=instance.id, reason=reason
        )

    def credit_apply_outcome(record_id, outcome, corrections=None, reason=""):
        credit.apply_outcome(
            session,
            int(record_id),
            outcome,
            actor=actor,
            instance_id=instance.id,
            corrections=corrections,
            reason=reason,
        )

    def credit_repair(record_id, reason):
        credit.repair(session, int(record_id), actor=actor, instance_id=instance.id, reason=reason)

    def reject(field, message):
        """Refuse the submission with a message shown next to `field` (HTTP 422, nothing saved)."""
        raise ValidationFailed({str(field): [str(message)]})

    def today():
        """Today's date in the bureau's time zone, as 'YYYY-MM-DD' (how forms store dates)."""
        return datetime.now(calendar.tz).date().isoformat()

    def is_attachment_id(value):
        return isinstance(value, str) and ATTACHMENT_ID_RE.fullmatch(value) is not None

    def platform_sync(record_id):
        credit.queue_platform_sync(session, int(record_id), instance_id=instance.id)

    return {
        "workdays": calendar.workdays,
        "days": calendar.days,
        "months": calendar.months,
        "end_of_day": calendar.end_of_day,
        "point_between": calendar.point_between,
        "notify": notify,
        "notify_applicant": notify_applicant,
        "credit_lookup": credit_lookup,
        "credit_create": credit_create,
        "credit_mark_objection": credit_mark_objection,
        "credit_apply_outcome": credit_apply_outcome,
        "credit_repair": credit_repair,
        "platform_sync": platform_sync,
        "reject": reject,
        "is_attachment_id": is_attachment_id,
        "today": today,
    }
