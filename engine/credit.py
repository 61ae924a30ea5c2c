"""The government credit archive (政务信用档案): records, disclosure periods and their operations.

Every state change is one function below: it checks the transition, changes the row, writes
one `CreditHistory` row (who, when, why, which instance) and queues a sync to the district
public credit platform through the outbox. Operations flush and never commit: the caller
(a request, a connector inside an instance's transaction, the worker) owns the transaction.
"""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from .db import Base, utcnow
from .errors import Conflict, NotFound, ValidationFailed
from .forms import is_valid_id_card, is_valid_phone, is_valid_uscc
from .models import OutboxMessage

SUBJECT_TYPES = {"unit": "单位", "organ": "机关", "person": "个人"}
CATEGORIES = ("行政处罚", "司法判决", "政务处分", "纪律处分", "问责处理", "投诉核实")
SEVERITIES = {"minor": "轻微", "general": "一般", "serious": "严重"}
STATUSES = {
    "published": "已公示",
    "under_objection": "异议处理中",
    "corrected": "已更正",
    "revoked": "已撤销",
    "repaired": "已修复",
    "expired": "公示期满",
}
# domain.md: corrected records stay public with their correction; the other three are hidden.
PUBLIC_STATUSES = ("published", "under_objection", "corrected")
OUTCOMES = {"correct": "corrected", "revoke": "revoked", "maintain": "published"}
CORRECTABLE_FIELDS = (
    "facts",
    "doc_no",
    "decided_at",
    "severity",
    "category",
    "subject_name",
)
SYNC_KIND = "platform_sync"
SYSTEM_ACTOR = "system"
MAX_PER_PAGE = 200

# How a refusal names the record's state: "该信用记录{phrase}，不能{action}".
_STATE_PHRASES = {
    "published": "处于公示状态",
    "under_objection": "正在异议处理中",
    "corrected": "已更正",
    "revoked": "已撤销",
    "repaired": "已信用修复",
    "expired": "公示期已满",
}

# China keeps no daylight saving time, so a fixed offset needs no tz database.
CHINA_TZ = timezone(timedelta(hours=8))


def local_today() -> date:
    """Today's date in the bureau's time zone (UTC+8)."""
    return datetime.now(CHINA_TZ).date()


# --- tables ---------------------------------------------------------------------------------


class CreditRecord(Base):
    """One entry of the archive about a unit, a government organ or a civil servant."""

    __tablename__ = "credit_records"
    __table_args__ = (
        # Staff list filters and the public list (status IN … ORDER BY decided_at DESC).
        Index("ix_credit_status_decided", "status", "decided_at"),
        Index("ix_credit_severity_status", "severity", "status"),
        # expire_due and the public list's "still within its period" test.
        Index("ix_credit_status_end", "status", "disclosure_end"),
        Index("ix_credit_decided_id", "decided_at", "id"),
        Index("ix_credit_subject_code", "subject_code"),
        Index("ix_credit_subject_name", "subject_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(8))  # unit | organ | person
    subject_name: Mapped[str] = mapped_column(String(200))
    subject_code: Mapped[str] = mapped_column(String(18))  # 统一社会信用代码 or 身份证号
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))  # minor | general | serious
    doc_no: Mapped[str] = mapped_column(String(100))  # 文号
    decided_at: Mapped[date] = mapped_column()  # 认定日期
    facts: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="published")
    disclosure_start: Mapped[date] = mapped_column()
    repairable_from: Mapped[date] = mapped_column()
    disclosure_end: Mapped[date] = mapped_column()
    # What corrections changed: {"at", "user", "reason", "instance_id", "fields": {f: {old, new}}}.
    correction: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    history: Mapped[list[CreditHistory]] = relationship(
        back_populates="record",
        order_by="(CreditHistory.at, CreditHistory.id)",
        cascade="all, delete-orphan",
    )

    @property
    def is_public(self) -> bool:
        return self.status in PUBLIC_STATUSES


class CreditHistory(Base):
    """One change of a credit record: who, when, why, from which instance, what changed."""

    __tablename__ = "credit_record_history"
    __table_args__ = (Index("ix_credit_history_record", "record_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("credit_records.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))  # None when the record is created
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    instance_id: Mapped[int | None] = mapped_column(Integer)
    changes: Mapped[dict] = mapped_column(JSON, default=dict)

    record: Mapped[CreditRecord] = relationship(back_populates="history")


# --- disclosure periods ---------------------------------------------------------------------


@dataclass(frozen=True)
class DisclosurePolicy:
    """Disclosure and repair periods in calendar months from 认定日期; each is a setting."""

    # 信用修复管理办法 (国家发改委令第36号), in force from 2026-04-01: minor records are
    # repairable at once (when duties are fulfilled) and shown at most 3 months; general ones
    # repairable after 3 months, shown at most 1 year; serious ones after 1 year, at most 3.
    minor_repair_months: int = 0
    minor_disclosure_months: int = 3
    general_repair_months: int = 3
    general_disclosure_months: int = 12
    serious_repair_months: int = 12
    serious_disclosure_months: int = 36
    # 河南省社会信用条例 第19条: no disclosure lasts longer than five years.
    cap_months: int = 60
    # Our reading of "before that rule, safety-production penalties had a 1-year minimum":
    # a 行政处罚 decided before 36号令 took effect keeps the minimum disclosure period of the
    # rules it was decided under — it can neither be repaired nor leave disclosure earlier
    # than one year after 认定日期, whatever its severity. 36号令's shorter periods govern
    # decisions made from 2026-04-01 on; periods already running are not shortened.
    rules_effective: date = date(2026, 4, 1)
    legacy_categories: tuple[str, ...] = ("行政处罚",)
    legacy_minimum_months: int = 12

    def repair_months(self, severity: str) -> int:
        return getattr(self, f"{severity}_repair_months")

    def disclosure_months(self, severity: str) -> int:
        return getattr(self, f"{severity}_disclosure_months")


DEFAULT_POLICY = DisclosurePolicy()


@dataclass(frozen=True)
class DisclosureDates:
    """`end` is the day disclosure stops: from that day on the record is no longer shown."""

    start: date
    repairable_from: date
    end: date


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later, clamped to the end of a shorter month."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    last_day = monthrange(year, month_index + 1)[1]
    return date(year, month_index + 1, min(day.day, last_day))


def months_between(start: date, end: date) -> int:
    """Whole calendar months from `start` to `end` (0 when `end` is before `start`)."""
    months = (end.year - start.year) * 12 + end.month - start.month
    if add_months(start, months) > end:
        months -= 1
    return max(months, 0)


def disclosure_dates(
    severity: str,
    category: str,
    decided_at: date,
    policy: DisclosurePolicy | None = None,
) -> DisclosureDates:
    """Disclosure start, earliest repair date and disclosure end of a record."""
    policy = policy or DEFAULT_POLICY
    repair = policy.repair_months(severity)
    disclosure = policy.disclosure_months(severity)
    if decided_at < policy.rules_effective and category in policy.legacy_categories:
        repair = max(repair, policy.legacy_minimum_months)
        disclosure = max(disclosure, policy.legacy_minimum_months)
    disclosure = min(disclosure, policy.cap_months)
    repair = min(repair, disclosure)
    return DisclosureDates(
        start=decided_at,
        repairable_from=add_months(decided_at, repair),
        end=add_months(decided_at, disclosure),
    )


# --- masking of personal data -------------------------------------------------------------


def mask_id_number(number: str) -> str:
    """Keep the first 4 and last 4 characters, stars between: 4110**********123X."""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]


def mask_phone(phone: str) -> str:
    """Keep the first 3 and last 4 characters, stars between: 138****5678."""
    if len(phone) <= 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE_IN_TEXT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def mask_personal_data(text: str) -> str:
    """Mask 身份证号 and mobile numbers written inside free text (facts, corrections)."""

    def mask_id(match: re.Match) -> str:
        number = match.group(0).upper()
        return mask_id_number(number) if is_valid_id_card(number) else match.group(0)

    text = _ID_IN_TEXT.sub(mask_id, text)
    return _MOBILE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


# --- validation of submitted values ---------------------------------------------------------


def _text(label: str, limit: int):
    def check(value) -> str:
        value = "" if value is None else str(value).strip()
        if not value:
            raise ValueError(f"请填写{label}")
        if len(value) > limit:
            raise ValueError(f"{label}不能超过{limit}个字")
        return value

    return check


def _choice(label: str, allowed):
    names = "、".join(allowed.values() if isinstance(allowed, dict) else allowed)

    def check(value) -> str:
        if value not in allowed:
            raise ValueError(f"{label}必须是{names}之一")
        return value

    return check


def _parse_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("认定日期格式应为YYYY-MM-DD")


_FIELD_CHECKS = {
    "subject_type": _choice("主体类型", SUBJECT_TYPES),
    "subject_name": _text("主体名称", 200),
    "category": _choice("信用记录类别", CATEGORIES),
    "severity": _choice("失信程度", SEVERITIES),
    "doc_no": _text("文号", 100),
    "facts": _text("失信事实", 5000),
}


def _check_decided_at(value, today: date) -> date:
    decided = _parse_date(value)
    if decided > today:
        raise ValueError("认定日期不能晚于今天")
    return decided


def _check_subject_code(value, subject_type: str | None) -> str:
    code = value.strip().upper() if isinstance(value, str) else ""
    if not code:
        raise ValueError("请填写统一社会信用代码或身份证号码")
    if subject_type == "person":
        if not is_valid_id_card(code):
            raise ValueError("身份证号码格式或校验位不正确")
    elif not is_valid_uscc(code):
        raise ValueError("统一社会信用代码格式或校验位不正确")
    return code


def _check_phone(value) -> str | None:
    phone = value.strip() if isinstance(value, str) else value
    if phone is None or phone == "":
        return None
    if not is_valid_phone(phone):
        raise ValueError("联系电话格式不正确（应为手机号码或带区号的固定电话）")
    return phone


def _clean(values: dict, today: date) -> dict:
    """Validated, normalised values; ValidationFailed with every field's errors at once."""
    clean, errors = {}, {}
    for field, value in values.items():
        try:
            if field == "decided_at":
                clean[field] = _check_decided_at(value, today)
            elif field == "subject_code":
                clean[field] = _check_subject_code(value, values.get("subject_type"))
            elif field == "contact_phone":
                clean[field] = _check_phone(value)
            else:
                clean[field] = _FIELD_CHECKS[field](value)
        except ValueError as error:
            errors[field] = [str(error)]
    if errors:
        raise ValidationFailed(errors)
    return clean


def _require_reason(reason) -> str:
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise ValidationFailed({"reason": ["请填写理由"]})
    return reason


# --- reading --------------------------------------------------------------------------------


def get_record(session: Session, record_id: int) -> CreditRecord:
    """The record with this id; NotFound when there is none."""
    record = session.get(CreditRecord, _as_id(record_id))
    if record is None:
        raise NotFound(f"信用记录不存在：{record_id}")
    return record


def _locked_record(session: Session, record_id: int) -> CreditRecord:
    # FOR UPDATE serialises two operations on one record on PostgreSQL (SQLite takes the write
    # lock at BEGIN); populate_existing makes the second one see the first one's result.
    record = session.scalars(
        select(CreditRecord)
        .where(CreditRecord.id == record_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if record is None:
        raise NotFound(f"信用记录不存在：{record_id}")
    return record


def lookup(session: Session, record_id: int, *, today: date | None = None) -> dict:
    """What flows (DMN eligibility, gateways) need to know of a record; NotFound."""
    record = get_record(session, record_id)
    today = today or local_today()
    return {
        "id": record.id,
        "status": record.status,
        "severity": record.severity,
        "category": record.category,
        "subject_name": record.subject_name,
        "subject_code": record.subject_code,
        "decided_at": record.decided_at.isoformat(),
        "months_since_decided": months_between(record.decided_at, today),
        "repairable_from": record.repairable_from.isoformat(),
        "disclosure_end": record.disclosure_end.isoformat(),
    }


def _as_id(record_id) -> int:
    # Flows hand over form values, so "12" is as good as 12.
    try:
        return int(record_id)
    except (TypeError, ValueError):
        raise NotFound(f"信用记录不存在：{record_id}") from None


def _page_bounds(page: int, per_page: int) -> tuple[int, int]:
    errors = {}
    if not isinstance(page, int) or page < 1:
        errors["page"] = ["页码必须是大于0的整数"]
    if not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        errors["per_page"] = [f"每页条数必须在1到{MAX_PER_PAGE}之间"]
    if errors:
        raise ValidationFailed(errors)
    return (page - 1) * per_page, per_page


def _paginate(session: Session, query, page: int, per_page: int, *options):
    offset, limit = _page_bounds(page, per_page)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    ordered = query.order_by(CreditRecord.decided_at.desc(), CreditRecord.id.desc())
    items = session.scalars(ordered.offset(offset).limit(limit).options(*options)).all()
    return list(items), total


def list_records(
    session: Session,
    *,
    status: str | None = None,
    severity: str | None = None,
    subject: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> tuple[list[CreditRecord], int]:
    """Staff list, newest 认定日期 first, with the total; ValidationFailed for bad filters."""
    errors = {}
    if status and status not in STATUSES:
        errors["status"] = ["状态必须是" + "、".join(STATUSES.values()) + "之一"]
    if severity and severity not in SEVERITIES:
        errors["severity"] = ["失信程度必须是轻微、一般、严重之一"]
    if errors:
        raise ValidationFailed(errors)
    query = select(CreditRecord)
    if status:
        query = query.where(CreditRecord.status == status)
    if severity:
        query = query.where(CreditRecord.severity == severity)
    if subject and subject.strip():
        term = subject.strip()
        query = query.where(
            or_(
                CreditRecord.subject_name.icontains(term, autoescape=True),
                CreditRecord.subject_code.icontains(term, autoescape=True),
            )
        )
    return _paginate(session, query, page, per_page, selectinload(CreditRecord.history))


def public_records(
    session: Session,
    *,
    subject: str | None = None,
    page: int = 1,
    per_page: int = 50,
    today: date | None = None,
) -> tuple[list[CreditRecord], int]:
    """Records the public may see (published, under objection, corrected, within their period)."""
    today = today or local_today()
    # A record past its end is hidden even before the worker's expire_due has run.
    query = select(CreditRecord).where(
        CreditRecord.status.in_(PUBLIC_STATUSES), CreditRecord.disclosure_end > today
    )
    if subject and subject.strip():
        term = subject.strip()
        # A person's 身份证号 is never searchable: the public page must not confirm one.
        query = query.where(
            or_(
                CreditRecord.subject_name.icontains(term, autoescape=True),
                and_(
                    CreditRecord.subject_type != "person",
                    CreditRecord.subject_code.icontains(term, autoescape=True),
                ),
            )
        )
    return _paginate(session, query, page, per_page)


# --- views ----------------------------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def history_to_dict(entry: CreditHistory) -> dict:
    return {
        "at": _iso(entry.at),
        "user": entry.user,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "reason": entry.reason,
        "instance_id": entry.instance_id,
    }


def _common_fields(record: CreditRecord) -> dict:
    return {
        "id": record.id,
        "subject_type": record.subject_type,
        "subject_name": record.subject_name,
        "subject_code": record.subject_code,
        "category": record.category,
        "severity": record.severity,
        "doc_no": record.doc_no,
        "decided_at": _iso(record.decided_at),
        "facts": record.facts,
        "status": record.status,
        "disclosure_start": _iso(record.disclosure_start),
        "repairable_from": _iso(record.repairable_from),
        "disclosure_end": _iso(record.disclosure_end),
    }


def record_to_dict(record: CreditRecord, *, history: bool = True) -> dict:
    """The staff view of a record (API.md's shape plus `correction`), history oldest first."""
    data = _common_fields(record)
    data["correction"] = record.correction
    if history:
        data["history"] = [history_to_dict(entry) for entry in record.history]
    return data


def public_record_to_dict(record: CreditRecord) -> dict:
    """The public view: 身份证号 and phone numbers masked, no history, no contact phone."""
    data = _common_fields(record)
    # ✱ A 统一社会信用代码 is public registration data (printed on every licence and shown by
    # 国家企业信用信息公示系统), so units' and organs' codes stay whole; a person's is masked.
    if record.subject_type == "person":
        data["subject_code"] = mask_id_number(record.subject_code)
    data["facts"] = mask_personal_data(record.facts)
    data["correction"] = _public_correction(record.correction)
    return data


def _public_correction(correction: dict | None) -> dict | None:
    # The public sees what was corrected and the corrected values, not the withdrawn ones.
    if not correction:
        return None
    fields = {
        name: mask_personal_data(change["new"]) if isinstance(change["new"], str) else change["new"]
        for name, change in correction.get("fields", {}).items()
    }
    return {"at": correction.get("at"), "fields": fields}


# --- outbox ---------------------------------------------------------------------------------


def queue_platform_sync(
    session: Session,
    record_id: int,
    *,
    instance_id: int | None = None,
    action: str = "update",
) -> OutboxMessage:
    """Queue (or refresh the queued) push of a record's public view to the district platform."""
    record = get_record(session, record_id)
    payload = {
        **public_record_to_dict(record),
        "action": action,
        "public": record.is_public,
    }
    message = _unsent_sync(session, record.id)
    if message is None:
        message = OutboxMessage(kind=SYNC_KIND, payload=payload, instance_id=instance_id)
        session.add(message)
    else:
        message.payload = payload
        message.instance_id = instance_id if instance_id is not None else message.instance_id
    session.flush()
    return message


def _unsent_sync(session: Session, record_id: int) -> OutboxMessage | None:
    # Only a row no worker has tried yet is refreshed; SKIP LOCKED leaves a row a worker holds
    # right now alone (PostgreSQL), so a change never lands in a message already on its way.
    return session.scalars(
        select(OutboxMessage)
        .where(
            OutboxMessage.kind == SYNC_KIND,
            OutboxMessage.status == "pending",
            OutboxMessage.attempts == 0,
            OutboxMessage.payload["id"].as_integer() == record_id,
        )
        .order_by(OutboxMessage.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()


# --- operations -----------------------------------------------------------------------------


def _require_status(record: CreditRecord, allowed: tuple[str, ...], action: str) -> None:
    if record.status not in allowed:
        raise Conflict(f"该信用记录{_STATE_PHRASES[record.status]}，不能{action}")


def _change(
    session: Session,
    record: CreditRecord,
    to_status: str,
    *,
    actor: str,
    instance_id: int | None,
    reason: str,
    action: str,
    changes: dict | None = None,
) -> CreditRecord:
    """Move a record to `to_status`, write its history row and queue the platform sync."""
    now = utcnow()
    entry = CreditHistory(
        at=now,
        user=actor,
        from_status=record.status,
        to_status=to_status,
        reason=reason or "",
        instance_id=instance_id,
        changes=changes or {},
    )
    record.status = to_status
    record.updated_at = now
    record.history.append(entry)
    session.flush()
    queue_platform_sync(session, record.id, instance_id=instance_id, action=action)
    return record


def create_record(
    session: Session,
    *,
    actor: str,
    instance_id: int | None = None,
    subject_type: str,
    subject_name: str,
    subject_code: str,
    category: str,
    severity: str,
    doc_no: str,
    decided_at: date | str,
    facts: str,
    contact_phone: str | None = None,
    reason: str = "",
    policy: DisclosurePolicy | None = None,
    today: date | None = None,
) -> CreditRecord:
    """Publish a new record with its disclosure dates; ValidationFailed (field errors)."""
    values = _clean(
        {
            "subject_type": subject_type,
            "subject_name": subject_name,
            "subject_code": subject_code,
            "category": category,
            "severity": severity,
            "doc_no": doc_no,
            "decided_at": decided_at,
            "facts": facts,
            "contact_phone": contact_phone,
        },
        today or local_today(),
    )
    dates = disclosure_dates(values["severity"], values["category"], values["decided_at"], policy)
    record = CreditRecord(
        **values,
        disclosure_start=dates.start,
        repairable_from=dates.repairable_from,
        disclosure_end=dates.end,
    )
    session.add(record)
    # Status still unset here, so the creation's history row has no previous status.
    return _change(
        session,
        record,
        "published",
        actor=actor,
        instance_id=instance_id,
        reason=reason or "登记信用记录",
        action="create",
        changes={
            "disclosure_start": dates.start.isoformat(),
            "repairable_from": dates.repairable_from.isoformat(),
            "disclosure_end": dates.end.isoformat(),
        },
    )


def mark_under_objection(
    session: Session,
    record_id: int,
    *,
    actor: str,
    instance_id: int | None = None,
    reason: str,
) -> CreditRecord:
    """Mark a shown record as under objection (异议标注); NotFound, Conflict, ValidationFailed."""
    reason = _require_reason(reason)
    record = _locked_record(session, _as_id(record_id))
    _require_status(record, ("published", "corrected"), "提出异议")
    return _change(
        session,
        record,
        "under_objection",
        actor=actor,
        instance_id=instance_id,
        reason=reason,
        action="mark_under_objection",
    )


def apply_outcome(
    session: Session,
    record_id: int,
    outcome: str,
    *,
    actor: str,
    instance_id: int | None = None,
    corrections: dict | None = None,
    reason: str = "",
    policy: DisclosurePolicy | None = None,
    today: date | None = None,
) -> CreditRecord:
    """Close an objection: correct, revoke or maintain; NotFound, Conflict, ValidationFailed.

    `corrections` is used only when `outcome` is "correct".
    """
    if outcome not in OUTCOMES:
        raise ValidationFailed({"outcome": ["处理结果必须是更正、撤销、维持之一"]})
    record = _locked_record(session, _as_id(record_id))
    _require_status(record, ("under_objection",), "作出异议处理决定")
    changes = None
    if outcome == "correct":
        changes = _apply_corrections(
            record,
            corrections,
            actor=actor,
            instance_id=instance_id,
            reason=reason,
            policy=policy,
            today=today or local_today(),
        )
    return _change(
        session,
        record,
        _outcome_status(record, outcome),
        actor=actor,
        instance_id=instance_id,
        reason=reason,
        action=outcome,
        changes=changes,
    )


def _outcome_status(record: CreditRecord, outcome: str) -> str:
    # Maintaining keeps what the record was before the objection: a corrected record stays corrected.
    if outcome == "maintain" and record.correction:
        return "corrected"
    return OUTCOMES[outcome]


def _apply_corrections(
    record: CreditRecord,
    corrections: dict | None,
    *,
    actor: str,
    instance_id: int | None,
    reason: str,
    policy: DisclosurePolicy | None,
    today: date,
) -> dict:
    """Change the corrected fields, keep old and new values; returns the history's changes."""
    if not isinstance(corrections, dict) or not corrections:
        raise ValidationFailed({"corrections": ["更正时请填写需要更正的内容"]})
    refused = sorted(set(corrections) - set(CORRECTABLE_FIELDS))
    if refused:
        raise ValidationFailed({name: ["该字段不能更正"] for name in refused})
    clean = _clean(corrections, today)
    changed = {
        name: {"old": _jsonable(getattr(record, name)), "new": _jsonable(value)}
        for name, value in clean.items()
        if getattr(record, name) != value
    }
    if not changed:
        raise ValidationFailed({"corrections": ["更正内容与原记录相同"]})
    for name, value in clean.items():
        setattr(record, name, value)
    history_changes = dict(changed)
    if {"severity", "decided_at", "category"} & changed.keys():
        history_changes.update(_recompute_dates(record, policy))
    record.correction = _merged_correction(record.correction, changed, actor, instance_id, reason)
    return history_changes


def _recompute_dates(record: CreditRecord, policy: DisclosurePolicy | None) -> dict:
    dates = disclosure_dates(record.severity, record.category, record.decided_at, policy)
    new = {
        "disclosure_start": dates.start,
        "repairable_from": dates.repairable_from,
        "disclosure_end": dates.end,
    }
    changes = {}
    for name, value in new.items():
        if getattr(record, name) != value:
            changes[name] = {
                "old": _jsonable(getattr(record, name)),
                "new": _jsonable(value),
            }
            setattr(record, name, value)
    return changes


def _merged_correction(
    previous: dict | None,
    changed: dict,
    actor: str,
    instance_id: int | None,
    reason: str,
) -> dict:
    # A second correction keeps each field's original value as "old", so the record shows
    # everything that differs from what was first published.
    fields = dict((previous or {}).get("fields", {}))
    for name, change in changed.items():
        original = fields.get(name, change)["old"]
        fields[name] = {"old": original, "new": change["new"]}
    return {
        "at": utcnow().isoformat(),
        "user": actor,
        "reason": reason or "",
        "instance_id": instance_id,
        "fields": fields,
    }


def _jsonable(value):
    return value.isoformat() if isinstance(value, date) else value


def repair(
    session: Session,
    record_id: int,
    *,
    actor: str,
    instance_id: int | None = None,
    reason: str,
    today: date | None = None,
) -> CreditRecord:
    """Repair a record (信用修复): disclosure ends today; NotFound, Conflict, ValidationFailed."""
    reason = _require_reason(reason)
    today = today or local_today()
    record = _locked_record(session, _as_id(record_id))
    _require_status(record, ("published", "corrected"), "申请信用修复")
    if today < record.repairable_from:
        raise Conflict(f"该信用记录最早可于{record.repairable_from.isoformat()}起申请信用修复，目前尚未到期")
    old_end = record.disclosure_end
    record.disclosure_end = today
    return _change(
        session,
        record,
        "repaired",
        actor=actor,
        instance_id=instance_id,
        reason=reason,
        action="repair",
        changes={"disclosure_end": {"old": old_end.isoformat(), "new": today.isoformat()}},
    )


def expire_due(session: Session, today: date | None = None) -> int:
    """Stop showing records whose disclosure period has ended; returns how many expired."""
    today = today or local_today()
    # SKIP LOCKED: two workers running this at once each take different records.
    due = session.scalars(
        select(CreditRecord)
        .where(
            CreditRecord.status.in_(("published", "corrected")),
            CreditRecord.disclosure_end <= today,
        )
        .order_by(CreditRecord.id)
        .with_for_update(skip_locked=True)
    ).all()
    for record in due:
        _change(
            session,
            record,
            "expired",
            actor=SYSTEM_ACTOR,
            instance_id=None,
            reason="公示期满，停止公示",
            action="expire",
        )
    return len(due)
