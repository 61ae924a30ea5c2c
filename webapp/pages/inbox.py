"""待办: the inbox tabs with filters, sorting and pages."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from engine import worklist

from . import work

bp = Blueprint("inbox", __name__)


def _page_number() -> int:
    try:
        return max(1, int(request.args.get("page", 1)))
    except ValueError:
        return 1


@bp.get("/")
def home():
    return redirect(url_for("pages.inbox.index"))


@bp.get("/inbox")
def index():
    filters = {
        "tab": request.args.get("tab", "mine"),
        "process": request.args.get("process", ""),
        "sla": request.args.get("sla", ""),
        "q": request.args.get("q", "").strip()[:100],
        "sort": request.args.get("sort", ""),
    }
    with work() as ctx:
        result = worklist.inbox(
            ctx,
            tab=filters["tab"],
            process_key=filters["process"] or None,
            sla=filters["sla"] or None,
            text=filters["q"] or None,
            sort=filters["sort"] or None,
            page=_page_number(),
        )
        filters["tab"] = filters["tab"] if filters["tab"] in worklist.TABS else "mine"
        people = worklist.display_names(
            ctx.session,
            [r.task.assignee for r in result.rows if r.task]
            + [r.copy.copied_by for r in result.rows if r.copy]
            + [t.assignee for r in result.rows for t in r.open_tasks],
        )
        return render_template(
            "inbox.html",
            nav="inbox",
            result=result,
            filters=filters,
            counts=worklist.tab_counts(ctx),
            tabs=worklist.TABS,
            processes=worklist.process_names(ctx.session),
            people=people,
            sla_levels=worklist.SLA_LEVELS,
            sorts=worklist.SORTS,
            default_sort=worklist.DEFAULT_SORT[filters["tab"]],
        )
