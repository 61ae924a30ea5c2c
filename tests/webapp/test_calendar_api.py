"""The calendar endpoints on real dates: 国庆 2025, 春节 2026, a year from a file, a year without data."""

from __future__ import annotations

import pytest


def add_workdays(api, start, days, user="handler"):
    return api.get(f"/api/v1/calendar/add-workdays?start={start}&days={days}", user=user)


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        ("2025-09-30", 1, "2025-10-09"),  # 国庆 and 中秋 2025: Oct 1–8 off
        ("2025-09-26", 1, "2025-09-28"),  # Sunday 2025-09-28 is a 调休 working day
        ("2025-10-09", -1, "2025-09-30"),
        ("2025-10-01", 0, "2025-10-09"),  # 0 days: the day itself, or the next working day
        ("2026-02-13", 1, "2026-02-14"),  # 春节 2026: Saturday 2026-02-14 is worked
        ("2026-02-14", 1, "2026-02-24"),  # then Feb 15–23 off
    ],
)
def test_add_workdays_counts_chinese_working_days(api, start, days, expected):
    response = add_workdays(api, start, days)
    assert response.status_code == 200, response.json
    assert response.json == {"start": start, "days": days, "date": expected}


def test_a_year_with_package_data(api):
    response = api.get("/api/v1/calendar/2025", user="registrar")
    assert response.status_code == 200
    body = response.json
    assert body["year"] == 2025 and body["source"] == "chinese-calendar"
    assert "warning" not in body
    assert {"2025-10-01", "2025-10-08", "2025-01-28"} <= set(body["holidays"])
    assert "2025-09-30" not in body["holidays"]
    assert {"2025-09-28", "2025-10-11"} <= set(body["workdays"])


def test_a_year_without_data_falls_back_to_weekdays_with_a_warning(api):
    response = api.get("/api/v1/calendar/2031", user="handler")
    assert response.status_code == 200
    body = response.json
    assert body["source"] == "fallback" and body["holidays"] == [] and body["workdays"] == []
    assert "2031" in body["warning"] and "周一至周五" in body["warning"]
    # Deadlines still work in such a year: Friday 2031-01-03 + 1 → Monday 2031-01-06.
    assert add_workdays(api, "2031-01-03", 1).json["date"] == "2031-01-06"


def test_a_year_from_the_administrators_file(settings, app, api):
    settings.holiday_dir.mkdir(parents=True, exist_ok=True)
    (settings.holiday_dir / "2031.yaml").write_text(
        "year: 2031\nholidays: [2031-01-01, 2031-01-02]\nworkdays: [2031-01-04]\n", encoding="utf-8"
    )
    settings.calendar.reload()
    body = api.get("/api/v1/calendar/2031", user="handler").json
    assert body == {
        "year": 2031,
        "source": "file",
        "holidays": ["2031-01-01", "2031-01-02"],
        "workdays": ["2031-01-04"],
    }
    assert add_workdays(api, "2030-12-31", 1).json["date"] == "2031-01-03"
    assert add_workdays(api, "2031-01-03", 1).json["date"] == "2031-01-04"


def test_login_is_required(api):
    for path in ("/api/v1/calendar/2025", "/api/v1/calendar/add-workdays?start=2025-09-30&days=1"):
        response = api.get(path)
        assert response.status_code == 401 and response.json["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start=2025-09-30&days=abc", "days"),
        ("start=2025-09-30&days=3651", "days"),
        ("start=2025-09-30&days=-3651", "days"),
        ("start=2025-13-01&days=1", "start"),
        ("start=1899-12-31&days=1", "start"),
        ("start=2201-01-01&days=1", "start"),
        ("days=1", "start"),
        ("start=2025-09-30", "days"),
    ],
)
def test_bad_add_workdays_input_is_422(api, query, field):
    response = api.get(f"/api/v1/calendar/add-workdays?{query}", user="handler")
    assert response.status_code == 422
    assert response.json["error"] == "validation" and field in response.json["errors"]


@pytest.mark.parametrize("year", [1899, 2201, 99999])
def test_a_year_out_of_range_is_422(api, year):
    response = api.get(f"/api/v1/calendar/{year}", user="handler")
    assert response.status_code == 422
    assert response.json["errors"] == {"year": ["年份应在 1900 至 2200 之间"]}


def test_the_largest_allowed_span_answers(api):
    response = add_workdays(api, "2025-01-01", 3650)
    assert response.status_code == 200 and response.json["date"] > "2038-01-01"
