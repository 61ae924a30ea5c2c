"""Calendar: check a working-day deadline rule, see which years have holiday data."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from engine.errors import ValidationFailed

from .. import database
from . import schemas

blp = Blueprint("calendar", __name__, url_prefix="/api/v1", description="工作日历")

FIRST_YEAR, LAST_YEAR = 1900, 2200


@blp.route("/calendar/add-workdays")
class AddWorkdaysView(MethodView):
    @blp.arguments(schemas.AddWorkdaysQuery, location="query")
    @blp.response(200, schemas.AddWorkdays)
    def get(self, query):
        """The date `days` working days after `start` (the first day not counted)."""
        with database.unit_of_work() as ctx:
            day = ctx.settings.calendar.add_workdays(query["start"], query["days"])
        return {"start": query["start"], "days": query["days"], "date": day}


@blp.route("/calendar/<int:year>")
class CalendarYearView(MethodView):
    @blp.response(200, schemas.CalendarYear)
    def get(self, year):
        """A year's holidays and 调休 working days, their source, and a warning when it has no data."""
        with database.unit_of_work() as ctx:
            if not FIRST_YEAR <= year <= LAST_YEAR:
                raise ValidationFailed({"year": [f"年份应在 {FIRST_YEAR} 至 {LAST_YEAR} 之间"]})
            return ctx.settings.calendar.year_info(year)
