"""台账 (ledgers) for the district's inspections, and the CSV/XLSX writer every export uses.

One ledger per flow, one row per matter received in a date range, with the columns the
inspection asks for. Matters are chosen and checked for lateness in SQL; the flow
variables a row needs (收到日期, 事项, 办理结果) are read from each listed matter's
variables, masked like everywhere else for a reader who may not see confidential fields.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import and_, func, select

from . import queries, runtime
from .errors import NotAllowed, NotFound, TooLarge, ValidationFailed
from .models import HumanTask, ProcessInstance
from .users import GROUPS

HEADERS = ("编号", "收到日期", "事项", "承办股室", "办理结果", "办结日期", "是否超期")
FORMATS = ("xlsx", "csv")
MAX_ROWS = 5000
MAX_RANGE_DAYS = 3 * 366
SUMMARY_CHARS = 60
# Groups that register, review or sign rather than handle a matter (承办股室 leaves them out).
NON_HANDLING_GROUPS = frozenset(
    {"office", "section_chiefs", "legal", "credit_liaison", "deputies", "directors", "managers", "admins"}
)


# --- file writer ---------------------------------------------------------------------------


def _local(value, tz) -> date | datetime | str | int | float:
    if isinstance(value, datetime):
        return value.astimezone(tz).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, bool):
        return "是" if value else "否"
    if value is None:
        return ""
    return value


def _csv_text(value) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    # A cell starting like a formula is run by spreadsheet programs (CSV injection): quote it.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _xlsx_cell(sheet, value):
    cell = WriteOnlyCell(sheet, value=value)
    if isinstance(value, str):
        cell.data_type = "s"  # never a formula, whatever the text starts with
    elif isinstance(value, datetime):
        cell.number_format = "yyyy-mm-dd hh:mm"
    elif isinstance(value, date):
        cell.number_format = "yyyy-mm-dd"
    return cell


def write_table(
    headers: list[str] | tuple[str, ...], rows: Iterable[list], fmt: str, tz, *, title: str
) -> bytes:
    """A table as CSV (UTF-8 with BOM, for Excel) or XLSX; datetimes in local time, bools 是/否.

    Raises ValidationFailed for an unknown format.
    """
    if fmt not in FORMATS:
        raise ValidationFailed({"format": ["导出格式必须是 xlsx 或 csv"]})
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        for row in rows:
            writer.writerow([_csv_text(_local(v, tz)) for v in row])
        return ("\ufeff" + out.getvalue()).encode("utf-8")
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title[:31])
    for index, header in enumerate(headers, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(10, min(40, len(header) * 4))
    sheet.freeze_panes = "A2"
    bold = []
    for header in headers:
        header_cell = WriteOnlyCell(sheet, value=header)
        header_cell.font = Font(bold=True)
        bold.append(header_cell)
    sheet.append(bold)
    for row in rows:
        sheet.append([_xlsx_cell(sheet, _local(v, tz)) for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- what each flow's ledger shows -----------------------------------------------------------


def _text(variables: dict, *keys: str) -> str:
    for key in keys:
        value = variables.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _brief(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _joined(*parts: str, sep: str = "：") -> str:
    return sep.join(p for p in parts if p)


def _complaint_matter(v: dict) -> str:
    return _joined(_text(v, "subject_name"), _brief(_text(v, "content", "category")))


def _complaint_result(v: dict) -> str:
    acceptance, verification = v.get("acceptance"), v.get("verification")
    if acceptance == "reject":
        return "不予受理"
    if acceptance == "transfer":
        return _joined("转办", _text(v, "transfer_to"))
    if verification == "unfounded":
        return "经核查举报不属实"
    if verification in ("founded", "partly_founded"):
        found = "经核查举报属实" if verification == "founded" else "经核查举报部分属实"
        extras = [found]
        if v.get("review_passed") is True:
            extras.append("已整改到位")
        if v.get("credit_record") is True:
            extras.append("记入失信记录")
        if v.get("public_criticism") is True:
            extras.append("通报批评")
        return "，".join(extras)
    return ""


def _objection_matter(v: dict) -> str:
    record = v.get("record_id")
    about = f"对信用记录 {record} 提出异议" if record not in (None, "") else "信用信息异议"
    return _joined(
        _text(v, "applicant_name", "applicant") + about, _brief(_text(v, "objection_reason", "reason"))
    )


_PROPOSALS = {"correct": "更正", "revoke": "撤销", "maintain": "维持"}


def _objection_result(v: dict) -> str:
    proposal = _PROPOSALS.get(v.get("proposal"))
    if proposal and v.get("approved") is True:
        return f"异议处理完毕：{proposal}信用记录"
    return ""


def _repair_matter(v: dict) -> str:
    record = v.get("record_id")
    about = f"申请修复信用记录 {record}" if record not in (None, "") else "申请信用修复"
    return _text(v, "applicant_name", "applicant") + about


def _repair_result(v: dict) -> str:
    if v.get("eligible") is False:
        return _joined("不予受理", _text(v, "ineligible_reason"))
    if v.get("materials") == "reject":
        return _joined("材料不符合要求，不予受理", _text(v, "refusal_reason"))
    if v.get("approved") is True:
        return "准予信用修复"
    if v.get("approved") is False:
        return _joined("不予信用修复", _text(v, "refusal_reason"))
    if v.get("materials") == "supplement":
        return "未按期补正材料，视为撤回"
    return ""


_SOURCES = {"court": "司法建议", "procuratorate": "检察建议", "public_interest": "公益诉讼诉前检察建议"}


def _judicial_matter(v: dict) -> str:
    kind = _SOURCES.get(v.get("source_type"), "")
    return _joined(_text(v, "issuing_organ") + kind, _text(v, "doc_no"))


def _judicial_result(v: dict) -> str:
    if v.get("signed") is True or _text(v, "sent_date", "sent_at"):
        done = "已书面回复"
        if v.get("measures_done") is True:
            done += "，整改措施已落实"
        return done
    return ""


@dataclass(frozen=True)
class LedgerSpec:
    """One ledger: its title, its flow, and how a matter's variables fill its columns."""

    kind: str
    title: str
    process_key: str
    received: tuple[str, ...]
    matter: Callable[[dict], str]
    result: Callable[[dict], str]
    handling_variable: str | None = None


LEDGERS = {
    spec.kind: spec
    for spec in (
        LedgerSpec(
            "complaints",
            "投诉举报台账",
            "complaint_rectification",
            ("received_at",),
            _complaint_matter,
            _complaint_result,
        ),
        LedgerSpec(
            "objections",
            "信用异议台账",
            "credit_objection",
            ("received_at",),
            _objection_matter,
            _objection_result,
        ),
        LedgerSpec(
            "repairs", "信用修复台账", "credit_repair", ("received_at",), _repair_matter, _repair_result
        ),
        LedgerSpec(
            "judicial",
            "司法建议回复台账",
            "judicial_suggestion",
            ("received_at", "received_date"),
            _judicial_matter,
            _judicial_result,
            handling_variable="lead_group",
        ),
    )
}


def ledger_spec(kind: str) -> LedgerSpec:
    """Raises NotFound for an unknown ledger."""
    spec = LEDGERS.get(kind)
    if spec is None:
        raise NotFound(f"没有台账 {kind}")
    return spec


# --- rows ------------------------------------------------------------------------------------


def _check_range(first: date, last: date) -> None:
    if last < first:
        raise ValidationFailed({"to": ["结束日期不能早于开始日期"]})
    if (last - first).days > MAX_RANGE_DAYS:
        raise ValidationFailed({"to": ["日期范围不能超过三年"]})


def _received(spec: LedgerSpec, variables: dict, instance: ProcessInstance, tz) -> date:
    for key in spec.received:
        value = variables.get(key)
        try:
            if isinstance(value, str) and value.strip():
                return date.fromisoformat(value.strip()[:10])
        except ValueError:
            continue
    return instance.started_at.astimezone(tz).date()


def _late_instances(session, ids: list[int], now: datetime) -> set[int]:
    """Matters past their own deadline, or with a task done (or still open) after its due time."""
    late_task = select(HumanTask.instance_id).where(
        HumanTask.instance_id.in_(ids),
        HumanTask.due_at.is_not(None),
        HumanTask.due_at < func.coalesce(HumanTask.completed_at, now),
    )
    late_instance = select(ProcessInstance.id).where(
        ProcessInstance.id.in_(ids),
        ProcessInstance.due_at.is_not(None),
        ProcessInstance.due_at < func.coalesce(ProcessInstance.ended_at, now),
    )
    return set(session.scalars(late_task.union(late_instance)))


def _tasks_by_instance(session, ids: list[int]) -> dict[int, list[HumanTask]]:
    tasks: dict[int, list[HumanTask]] = {i: [] for i in ids}
    for task in session.scalars(
        select(HumanTask).where(HumanTask.instance_id.in_(ids)).order_by(HumanTask.id)
    ):
        tasks[task.instance_id].append(task)
    return tasks


def _handling_groups(spec: LedgerSpec, variables: dict, tasks: list[HumanTask]) -> str:
    chosen = variables.get(spec.handling_variable) if spec.handling_variable else None
    if isinstance(chosen, str) and chosen:
        names = [chosen]
    else:
        names = [g for t in tasks if t.status != "cancelled" for g in (t.candidate_groups or [])]
        names = [g for g in names if g not in NON_HANDLING_GROUPS] or names
    return "、".join(GROUPS.get(g, g) for g in dict.fromkeys(names))


def _result(spec: LedgerSpec, variables: dict, instance: ProcessInstance, tasks: list[HumanTask]) -> str:
    if instance.status == "terminated":
        return "已终止"
    if instance.status != "completed":
        current = "、".join(dict.fromkeys(t.name for t in tasks if t.status == "open"))
        return _joined("办理中", current)
    return spec.result(variables) or "已办结"


def ledger_rows(
    ctx: runtime.Context, kind: str, first: date, last: date, now: datetime | None = None
) -> list[list]:
    """The ledger's rows for matters received (started) from `first` to `last`, local dates inclusive.

    Raises NotAllowed (not a manager), NotFound (unknown ledger), ValidationFailed (bad
    range), TooLarge (more than MAX_ROWS matters: narrow the range).
    """
    if not ctx.actor.is_manager:
        raise NotAllowed("只有督查/管理人员可以导出台账")
    spec = ledger_spec(kind)
    _check_range(first, last)
    now = now or queries.now_utc()
    tz = ctx.settings.tzinfo
    start = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    matching = and_(
        ProcessInstance.process_key == spec.process_key,
        ProcessInstance.started_at >= start,
        ProcessInstance.started_at < end,
    )
    total = ctx.session.scalar(select(func.count()).select_from(ProcessInstance).where(matching)) or 0
    if total > MAX_ROWS:
        raise TooLarge(f"该时间段有 {total} 件事项，超过台账上限 {MAX_ROWS} 件，请缩小日期范围")
    instances = list(
        ctx.session.scalars(
            select(ProcessInstance).where(matching).order_by(ProcessInstance.started_at, ProcessInstance.id)
        )
    )
    ids = [i.id for i in instances]
    late = _late_instances(ctx.session, ids, now) if ids else set()
    tasks = _tasks_by_instance(ctx.session, ids) if ids else {}
    rows = []
    for instance in instances:
        variables = runtime.instance_variables(ctx, instance)
        rows.append(
            [
                instance.business_key or str(instance.id),
                _received(spec, variables, instance, tz),
                spec.matter(variables) or instance.subject,
                _handling_groups(spec, variables, tasks[instance.id]),
                _result(spec, variables, instance, tasks[instance.id]),
                instance.ended_at.astimezone(tz).date() if instance.ended_at else None,
                instance.id in late,
            ]
        )
    return rows


def ledger_file(
    ctx: runtime.Context, kind: str, first: date, last: date, fmt: str = "xlsx"
) -> tuple[str, bytes]:
    """(file name, content) of a ledger as XLSX or CSV.

    Raises NotAllowed, NotFound, ValidationFailed, TooLarge (see ledger_rows).
    """
    if fmt not in FORMATS:
        raise ValidationFailed({"format": ["导出格式必须是 xlsx 或 csv"]})
    spec = ledger_spec(kind)
    rows = ledger_rows(ctx, kind, first, last)
    content = write_table(HEADERS, rows, fmt, ctx.settings.tzinfo, title=spec.title)
    return f"{spec.title}_{first:%Y%m%d}-{last:%Y%m%d}.{fmt}", content
