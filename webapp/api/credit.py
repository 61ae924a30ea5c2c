"""The credit archive: staff list and detail, and the public list (masked)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from engine import credit

from .. import database
from . import schemas

blp = Blueprint("credit", __name__, url_prefix="/api/v1", description="信用档案")


def _page(items, total, query, present):
    return {
        "items": [present(r) for r in items],
        "total": total,
        "page": query["page"],
        "per_page": query["per_page"],
    }


@blp.route("/credit-records")
class CreditRecordsView(MethodView):
    @blp.arguments(schemas.CreditQuery, location="query")
    @blp.response(200, schemas.CreditRecordList)
    def get(self, query):
        """Credit records for staff, filtered by status, severity and subject (name or code)."""
        with database.unit_of_work() as ctx:
            items, total = credit.list_records(ctx.session, **query)
            return _page(items, total, query, lambda r: credit.record_to_dict(r, history=False))


@blp.route("/credit-records/<int:record_id>")
class CreditRecordView(MethodView):
    @blp.response(200, schemas.CreditRecord)
    def get(self, record_id):
        """One record with its full history."""
        with database.unit_of_work() as ctx:
            return credit.record_to_dict(credit.get_record(ctx.session, record_id))


@blp.route("/public/credit-records")
class PublicCreditRecordsView(MethodView):
    @blp.arguments(schemas.PublicCreditQuery, location="query")
    @blp.response(200, schemas.PublicCreditRecordList)
    def get(self, query):
        """Published records (no login): published, under objection and corrected; identities masked."""
        db = database.session()
        items, total = credit.public_records(db, **query)
        return _page(items, total, query, credit.public_record_to_dict)
