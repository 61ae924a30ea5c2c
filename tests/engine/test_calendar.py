"""Working-day calendar on real 2025/2026 schedules, yearly files, fallback and SLA rules."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
import time_machine

from engine.calendar import HolidayFileError, WorkCalendar, load_holiday_file

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    """A Shanghai wall-clock instant, e.g. at('2026-03-02 17:30')."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def days_of(first: str, last: str) -> list[date]:
    day, end = date.fromisoformat(first), date.fromisoformat(last)
    out = []
    while day <= end:
        out.append(day)
        day += timedelta(days=1)
    return out


@pytest.fixture
def cal():
    return WorkCalendar()


def write_year(directory, name: str, text: str):
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


FILE_2027 = """\
# Test data only, not the real 2027 schedule.
year: 2027
note: 测试数据
holidays: [2027-01-01, 2027-02-05, 2027-02-08, 2027-02-09, 2027-02-10, 2027-02-11, 2027-02-12]
workdays: [2027-02-20]
"""


# --- real schedules from chinese-calendar ------------------------------------------


def test_2025_national_day_and_mid_autumn(cal):
    assert not any(cal.is_workday(d) for d in days_of("2025-10-01", "2025-10-08"))
    assert cal.is_workday(date(2025, 9, 28))  # Sunday, 调休 working day
    assert cal.is_workday(date(2025, 10, 11))  # Saturday, 调休 working day
    assert cal.is_workday(date(2025, 10, 9))
    assert not cal.is_workday(date(2025, 10, 12))  # ordinary Sunday


def test_2026_mid_autumn_and_national_day(cal):
    assert not any(cal.is_workday(d) for d in days_of("2026-09-25", "2026-09-27"))
    assert not any(cal.is_workday(d) for d in days_of("2026-10-01", "2026-10-07"))
    assert cal.is_workday(date(2026, 9, 20))  # Sunday worked
    assert cal.is_workday(date(2026, 10, 10))  # Saturday worked
    assert cal.is_workday(date(2026, 10, 8))
    assert cal.is_workday(date(2026, 9, 28))


def test_2026_spring_festival(cal):
    assert not any(cal.is_workday(d) for d in days_of("2026-02-15", "2026-02-23"))
    assert cal.is_workday(date(2026, 2, 14))  # Saturday worked
    assert cal.is_workday(date(2026, 2, 28))  # Saturday worked
    assert cal.is_workday(date(2026, 2, 13))
    assert cal.is_workday(date(2026, 2, 24))
    assert not cal.is_workday(date(2026, 2, 7))  # ordinary Saturday


def test_labour_day_2025_and_2026(cal):
    assert not any(cal.is_workday(d) for d in days_of("2025-05-01", "2025-05-05"))
    assert cal.is_workday(date(2025, 4, 27))  # Sunday worked
    assert not any(cal.is_workday(d) for d in days_of("2026-05-01", "2026-05-05"))
    assert cal.is_workday(date(2026, 5, 9))  # Saturday worked
    assert cal.is_workday(date(2026, 5, 6))


def test_every_day_of_2025_and_2026_agrees_with_chinese_calendar(cal):
    for day in days_of("2025-01-01", "2026-12-31"):
        assert cal.is_workday(day) == chinese_calendar.is_workday(day), day


def test_is_workday_takes_a_datetime_in_the_calendar_zone(cal):
    # 2026-02-13 20:00 UTC is already Saturday 2026-02-14 (a worked Saturday) in Shanghai.
    assert cal.is_workday(datetime(2026, 2, 13, 20, 0, tzinfo=UTC))
    # 2026-02-14 20:00 UTC is Sunday 2026-02-15, the first day of 春节.
    assert not cal.is_workday(datetime(2026, 2, 14, 20, 0, tzinfo=UTC))


def test_year_info_2026_from_chinese_calendar(cal):
    info = cal.year_info(2026)
    assert info["year"] == 2026
    assert info["source"] == "chinese-calendar"
    assert "warning" not in info
    assert info["workdays"] == [
        "2026-01-04",
        "2026-02-14",
        "2026-02-28",
        "2026-05-09",
        "2026-09-20",
        "2026-10-10",
    ]
    assert "2026-02-15" in info["holidays"] and "2026-02-23" in info["holidays"]
    assert "2026-10-07" in info["holidays"]
    assert "2026-10-08" not in info["holidays"]
    assert info["holidays"] == sorted(info["holidays"])


# --- add_workdays / workdays_between -----------------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2026, 2, 13), 1, date(2026, 2, 14)),  # the worked Saturday before 春节
        (date(2026, 2, 13), 2, date(2026, 2, 24)),  # over 2026-02-15..23
        (date(2026, 2, 13), 6, date(2026, 2, 28)),  # the worked Saturday after
        (date(2026, 2, 13), 7, date(2026, 3, 2)),
        (date(2025, 1, 24), 1, date(2025, 1, 26)),  # worked Sunday before 2025 春节
        (date(2025, 1, 24), 3, date(2025, 2, 5)),
        (date(2025, 1, 24), 6, date(2025, 2, 8)),  # worked Saturday after
        (date(2025, 9, 26), 5, date(2025, 10, 10)),  # over 国庆 2025, via Sunday 09-28
        (date(2025, 9, 26), 15, date(2025, 10, 23)),
        (date(2026, 4, 30), 3, date(2026, 5, 8)),  # over 劳动节 2026
        (date(2025, 4, 25), 1, date(2025, 4, 27)),  # worked Sunday before 劳动节 2025
        (date(2026, 3, 6), 1, date(2026, 3, 9)),  # ordinary weekend
    ],
)
def test_add_workdays(cal, start, n, expected):
    assert cal.add_workdays(start, n) == expected


def test_add_workdays_zero_is_start_or_next_working_day(cal):
    assert cal.add_workdays(date(2026, 2, 13), 0) == date(2026, 2, 13)
    assert cal.add_workdays(date(2026, 2, 16), 0) == date(2026, 2, 24)
    assert cal.add_workdays(date(2026, 10, 10), 0) == date(2026, 10, 10)


def test_add_workdays_backwards(cal):
    assert cal.add_workdays(date(2026, 2, 24), -1) == date(2026, 2, 14)
    assert cal.add_workdays(date(2026, 2, 24), -2) == date(2026, 2, 13)
    assert cal.add_workdays(date(2026, 10, 9), -1) == date(2026, 10, 8)
    assert cal.add_workdays(date(2026, 10, 9), -2) == date(2026, 9, 30)


def test_workdays_between(cal):
    assert cal.workdays_between(date(2026, 2, 13), date(2026, 2, 24)) == 2
    assert cal.workdays_between(date(2025, 9, 26), date(2025, 10, 31)) == 21
    assert cal.workdays_between(date(2026, 1, 31), date(2026, 3, 1)) == 16
    assert cal.workdays_between(date(2026, 2, 16), date(2026, 2, 16)) == 0
    assert cal.workdays_between(date(2026, 2, 24), date(2026, 2, 13)) == -2
    # Backwards, the first day is again not counted and the last one is: [b, a).
    assert cal.workdays_between(date(2026, 2, 15), date(2026, 2, 14)) == -1
    assert cal.workdays_between(date(2026, 2, 14), date(2026, 2, 15)) == 0
    assert cal.workdays_between(date(2026, 2, 16), date(2026, 2, 22)) == 0


def test_workdays_between_inverts_add_workdays(cal):
    for start in days_of("2026-02-10", "2026-02-28"):
        for n in (-12, -3, -1, 1, 2, 9, 40):
            assert cal.workdays_between(start, cal.add_workdays(start, n)) == n, (
                start,
                n,
            )


def test_sixty_workdays_is_fast():
    started = clock.perf_counter()
    for _ in range(200):
        WorkCalendar().add_workdays(date(2026, 9, 1), 60)
    assert clock.perf_counter() - started < 1.0


# --- statutory periods (民法典 第201–204条) ----------------------------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2026, 3, 2), 15, date(2026, 3, 17)),  # ordinary working day
        (
            date(2025, 9, 25),
            10,
            date(2025, 10, 9),
        ),  # 10-05 falls in 国庆 → next working day
        (date(2026, 9, 16), 15, date(2026, 10, 8)),  # 10-01 → 10-08
        (
            date(2026, 9, 30),
            10,
            date(2026, 10, 10),
        ),  # worked Saturday is not a rest day
        (date(2026, 3, 4), 3, date(2026, 3, 9)),  # ordinary Saturday → Monday
        (date(2026, 2, 10), 0, date(2026, 2, 10)),
    ],
)
def test_add_days(cal, start, n, expected):
    assert cal.add_days(start, n) == expected


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2025, 1, 31), 1, date(2025, 2, 28)),  # no 31st → month end
        (date(2024, 1, 31), 1, date(2024, 2, 29)),  # leap year
        (date(2026, 1, 31), 1, date(2026, 2, 28)),  # month end is a worked Saturday
        (date(2025, 8, 31), 1, date(2025, 9, 30)),
        (date(2026, 1, 16), 1, date(2026, 2, 24)),  # 02-16 in 春节 → next working day
        (date(2025, 10, 1), 12, date(2026, 10, 8)),  # one year ends in 国庆
        (date(2025, 12, 15), 1, date(2026, 1, 15)),  # over the year end
        (date(2026, 3, 31), 2, date(2026, 6, 1)),  # 05-31 is a Sunday → Monday
    ],
)
def test_add_months(cal, start, n, expected):
    assert cal.add_months(start, n) == expected


def test_periods_refuse_negative_lengths(cal):
    with pytest.raises(ValueError):
        cal.add_days(date(2026, 3, 2), -1)
    with pytest.raises(ValueError):
        cal.add_months(date(2026, 3, 2), -1)


# --- years without data, yearly files ----------------------------------------------


def test_unknown_year_falls_back_to_monday_to_friday(cal):
    assert cal.is_workday(date(2031, 1, 1))  # Wednesday; no holiday data for 2031
    assert not cal.is_workday(date(2031, 1, 4))  # Saturday
    assert cal.add_workdays(date(2030, 12, 27), 3) == date(2031, 1, 1)
    info = cal.year_info(2031)
    assert info["source"] == "fallback"
    assert info["holidays"] == [] and info["workdays"] == []
    assert "2031" in info["warning"] and "周一至周五" in info["warning"]
    assert info["warning"] in cal.warnings


def test_warnings_cover_current_and_next_year():
    with time_machine.travel(at("2026-11-25 10:00"), tick=False):
        warnings = WorkCalendar().warnings
        assert len(warnings) == 1 and "2027" in warnings[0]
    with time_machine.travel(at("2025-06-01 10:00"), tick=False):
        assert WorkCalendar().warnings == []


def test_file_adds_a_year(tmp_path):
    write_year(tmp_path, "2027.yaml", FILE_2027)
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert not cal.is_workday(date(2027, 1, 1))  # a Friday, off according to the file
    assert cal.is_workday(date(2027, 2, 20))  # a Saturday, worked according to the file
    assert not cal.is_workday(date(2027, 2, 21))
    assert cal.add_workdays(date(2027, 2, 4), 1) == date(2027, 2, 15)
    info = cal.year_info(2027)
    assert info["source"] == "file"
    assert info["workdays"] == ["2027-02-20"]
    assert info["holidays"][0] == "2027-01-01" and len(info["holidays"]) == 7
    assert "warning" not in info
    assert not any("2027" in w for w in cal.warnings)


def test_file_overrides_chinese_calendar(tmp_path):
    write_year(tmp_path, "2026.yaml", "year: 2026\nholidays: ['2026-03-02']\nworkdays: []\n")
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert cal.year_info(2026)["source"] == "file"
    assert cal.is_workday(date(2026, 2, 16))
    assert not cal.is_workday(date(2026, 3, 2))
    assert not cal.is_workday(date(2026, 2, 14))


def test_broken_file_is_a_warning_and_the_year_falls_back(tmp_path):
    write_year(tmp_path, "2028.yaml", "year: 2028\nholidays: [2028-01-01\n")
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert cal.is_workday(date(2028, 1, 3))  # Monday, Mon–Fri fallback
    info = cal.year_info(2028)
    assert info["source"] == "fallback"
    assert "2028.yaml" in info["warning"] and "YAML" in info["warning"]
    assert any("2028.yaml" in w for w in cal.warnings)


def test_broken_file_for_a_known_year_falls_back_to_chinese_calendar(tmp_path):
    write_year(tmp_path, "2026.yaml", "year: 2026\nholidays: [2026-02-30]\nworkdays: []\n")
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert not cal.is_workday(date(2026, 2, 16))
    info = cal.year_info(2026)
    assert info["source"] == "chinese-calendar"
    assert "2026.yaml" in info["warning"] and "2026-02-30" in info["warning"]


def test_two_files_for_one_year_are_refused(tmp_path):
    write_year(tmp_path, "2027.yaml", FILE_2027)
    write_year(tmp_path, "2027.yml", FILE_2027)
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert cal.year_info(2027)["source"] == "fallback"
    assert any("2027.yml" in w and "只保留一个" in w for w in cal.warnings)


def test_badly_named_file_is_reported(tmp_path):
    write_year(tmp_path, "holidays-2027.yaml", FILE_2027)
    write_year(tmp_path, "README.md", "not data")
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert any("holidays-2027.yaml" in w and "四位年份" in w for w in cal.warnings)
    assert cal.year_info(2027)["source"] == "fallback"


def test_missing_directory_is_not_an_error(tmp_path):
    cal = WorkCalendar(holiday_dir=tmp_path / "absent")
    assert cal.year_info(2026)["source"] == "chinese-calendar"
    assert str(tmp_path / "absent" / "2031.yaml") in cal.year_info(2031)["warning"]


def test_reload_picks_up_a_new_file(tmp_path):
    cal = WorkCalendar(holiday_dir=tmp_path)
    assert cal.is_workday(date(2027, 1, 1))
    write_year(tmp_path, "2027.yaml", FILE_2027)
    cal.reload()
    assert not cal.is_workday(date(2027, 1, 1))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "year: 2027\nholidays: [2027-01-01]\nworkdays: [2027-01-04]\n",
            "不是周六或周日",
        ),
        ("year: 2027\nholidays: [2026-12-31]\nworkdays: []\n", "不属于 2027 年"),
        ("year: 2026\nholidays: [2027-01-01]\nworkdays: []\n", "不一致"),
        ("year: 2027\nholiday: [2027-01-01]\nworkdays: []\n", "未知的键 holiday"),
        ("year: 2027\nworkdays: []\n", "缺少 holidays"),
        ("year: 2027\nholidays: [2027-01-01]\n", "缺少 workdays"),
        ("year: 2027\nholidays: []\nworkdays: []\n", "不能为空"),
        ("year: 2027\nholidays: 2027-01-01\nworkdays: []\n", "应为日期列表"),
        ("year: 2027\nholidays: [2027-01-01, 1月2日]\nworkdays: []\n", "'1月2日'"),
        ("year: 2027\nholidays: [2027-01-01, 2027-01-01]\nworkdays: []\n", "重复"),
        ("year: 2027\nholidays: [2027-01-02]\nworkdays: [2027-01-02]\n", "同时出现"),
        (
            "year: 2027\nholidays: [2027-01-01 10:00:00]\nworkdays: []\n",
            "不是 YYYY-MM-DD",
        ),
        ("year: '2027'\nholidays: [2027-01-01]\nworkdays: []\n", "不一致"),
        ("- 2027-01-01\n", "映射"),
        ("", "映射"),
        ("year: 2027\nholidays: [2027-01-01\n", "YAML 格式错误"),
    ],
)
def test_load_holiday_file_refuses_bad_content(tmp_path, text, problem):
    path = write_year(tmp_path, "2027.yaml", text)
    with pytest.raises(HolidayFileError) as caught:
        load_holiday_file(path)
    assert isinstance(caught.value, ValueError)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_load_holiday_file_reads_a_good_file(tmp_path):
    data = load_holiday_file(write_year(tmp_path, "2027.yaml", FILE_2027))
    assert data.year == 2027 and data.source == "file"
    assert date(2027, 2, 12) in data.holidays
    assert data.workdays == frozenset({date(2027, 2, 20)})


# --- deadline helpers ----------------------------------------------------------------


def test_deadlines_are_aware_at_office_end_in_shanghai(cal):
    due = cal.workdays(3, "2026-11-25T10:00:00+08:00")
    assert due == at("2026-11-30 17:30")
    assert due.tzinfo == SHANGHAI and due.utcoffset() == timedelta(hours=8)
    assert cal.workdays(1, "2026-02-13") == at("2026-02-14 17:30")
    assert cal.days(10, date(2025, 9, 25)) == at("2025-10-09 17:30")
    assert cal.months(1, "2025-01-31") == at("2025-02-28 17:30")
    assert cal.end_of_day("2026-02-24") == at("2026-02-24 17:30")
    assert cal.end_of_day(date(2026, 2, 24)).tzinfo == SHANGHAI


def test_deadline_start_is_taken_in_the_calendar_zone(cal):
    # 17:00 UTC on Friday 02-13 is 01:00 on Saturday 02-14 in Shanghai.
    start = datetime(2026, 2, 13, 17, 0, tzinfo=UTC)
    assert cal.workdays(1, start) == at("2026-02-24 17:30")
    assert cal.workdays(1, "2026-02-13T17:00:00Z") == at("2026-02-24 17:30")


def test_deadlines_start_now_by_default(cal):
    with time_machine.travel(at("2026-09-30 10:00"), tick=False):
        assert cal.days(10) == at("2026-10-10 17:30")
        assert cal.workdays(1) == at("2026-10-08 17:30")
        assert cal.months(1) == at("2026-10-30 17:30")


def test_office_end_is_configurable():
    cal = WorkCalendar(office_end=time(18, 0))
    assert cal.workdays(1, "2026-03-02") == at("2026-03-03 18:00")


def test_bad_start_is_a_value_error(cal):
    with pytest.raises(ValueError):
        cal.workdays(1, "next monday")
    with pytest.raises(ValueError):
        cal.days(1, "2026-02-30")
    with pytest.raises(ValueError):
        cal.end_of_day(42)


def test_point_between(cal):
    start = at("2026-11-02 17:30")
    assert cal.point_between(start, "2026-11-05", 2 / 3) == at("2026-11-04 17:30")
    assert cal.point_between(start, at("2026-11-03 17:30"), 0.5) == at("2026-11-03 05:30")
    assert cal.point_between("2026-11-02", "2026-11-05", 0) == start
    point = cal.point_between(datetime(2026, 11, 2, 9, 30, tzinfo=UTC), start, 1)
    assert point == start and point.tzinfo == SHANGHAI
    with pytest.raises(ValueError):
        cal.point_between(start, "2026-11-05", 1.5)
    with time_machine.travel(at("2026-11-02 17:30"), tick=False):
        assert cal.point_between(None, "2026-11-05", 2 / 3) == at("2026-11-04 17:30")


# --- SLA -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("due", "warning_workdays", "expected"),
    [
        ("2026-03-09 17:30", 1, "2026-03-06 17:30"),  # Monday → previous Friday
        (
            "2026-03-02 17:30",
            1,
            "2026-02-28 17:30",
        ),  # Monday → the worked Saturday before
        ("2026-02-24 17:30", 1, "2026-02-14 17:30"),  # after 春节 → the worked Saturday
        ("2026-02-24 17:30", 2, "2026-02-13 17:30"),
        (
            "2026-10-03 17:30",
            1,
            "2026-09-29 17:30",
        ),  # due on a holiday: due day is 09-30
        ("2026-03-09 12:00", 1, "2026-03-06 17:30"),
        ("2026-03-02 17:30", 0, "2026-03-02 17:30"),  # no warning period
        ("2026-03-02 12:00", 0, "2026-03-02 12:00"),
    ],
)
def test_warning_start(due, warning_workdays, expected):
    cal = WorkCalendar(warning_workdays=warning_workdays)
    assert cal.warning_start(at(due)) == at(expected)


def test_sla_boundaries_with_travelling_clock(cal):
    due = at("2026-03-09 17:30")  # Monday
    steps = [
        ("2026-03-05 12:00:00", "normal", 3),
        ("2026-03-06 17:29:59", "normal", 2),
        ("2026-03-06 17:30:00", "warning", 1),
        ("2026-03-07 12:00:00", "warning", 1),
        ("2026-03-09 17:29:59", "warning", 1),
        ("2026-03-09 17:30:00", "overdue", -1),
        ("2026-03-10 10:00:00", "overdue", -1),
        ("2026-03-11 10:00:00", "overdue", -2),
    ]
    for now, state, left in steps:
        with time_machine.travel(at(now), tick=False):
            assert cal.sla(due) == state, now
            assert cal.workdays_left(due) == left, now


def test_sla_across_spring_festival(cal):
    due = at("2026-02-24 17:30")
    assert cal.sla(due, now=at("2026-02-13 18:00")) == "normal"
    assert cal.workdays_left(due, now=at("2026-02-13 18:00")) == 2
    assert cal.sla(due, now=at("2026-02-14 18:00")) == "warning"
    assert cal.workdays_left(due, now=at("2026-02-18 10:00")) == 1


def test_sla_without_due_date_is_none(cal):
    assert cal.sla(None) is None
    assert cal.sla(None, now=at("2026-03-02 10:00")) is None


def test_sla_accepts_iso_strings(cal):
    assert cal.sla("2026-03-02T17:30:00+08:00", now="2026-03-02T09:30:00Z") == "overdue"
    assert cal.sla("2026-03-02", now="2026-03-01T12:00:00+08:00") == "warning"


@pytest.mark.parametrize("warning_workdays", [0, 1, 2, 3])
def test_sla_workdays_left_and_warning_start_agree(warning_workdays):
    cal = WorkCalendar(warning_workdays=warning_workdays)
    for due in (at("2026-02-24 17:30"), at("2026-02-28 12:00"), at("2026-02-21 17:30")):
        warn_at = cal.warning_start(due)
        now = at("2026-02-05 00:15")
        while now < due + timedelta(days=5):
            state, left = cal.sla(due, now), cal.workdays_left(due, now)
            expected = "overdue" if now >= due else "warning" if now >= warn_at else "normal"
            assert state == expected, (due, now)
            assert (state == "overdue") == (left < 0), (due, now, left)
            assert (state == "warning") == (0 <= left <= warning_workdays), (
                due,
                now,
                left,
            )
            now += timedelta(minutes=30)


def test_negative_warning_workdays_is_refused():
    with pytest.raises(ValueError):
        WorkCalendar(warning_workdays=-1)
