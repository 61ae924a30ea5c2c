"""Chinese working-day calendar: statutory holidays, 调休 make-up days and deadlines.

A year's data comes from, in order of precedence:

1. a YAML file ``<year>.yaml`` (or ``.yml``) in the holiday directory, written by an
   administrator (format: ``engine/holidays/README.md``);
2. the ``chinesecalendar`` package (years 2004–2026 in version 1.11);
3. nothing: Monday–Friday are working days, and a warning says so.

A broken file never breaks a request: it is reported in ``WorkCalendar.warnings`` and
the year falls back to the next source.

Deadlines are instants at office end (17:30 by default) in the calendar's time zone.
SLA rule (see ``WorkCalendar.warning_start``): a task is in "warning" once at most
``warning_workdays`` whole working days remain before its due date.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

SOURCE_FILE = "file"
SOURCE_PACKAGE = "chinese-calendar"
SOURCE_FALLBACK = "fallback"

_FILE_SUFFIXES = (".yaml", ".yml")
_FILE_KEYS = {"year", "holidays", "workdays", "note"}
_ONE_DAY = timedelta(days=1)


class HolidayFileError(ValueError):
    """A yearly holiday file cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problems: str | list[str]):
        self.path = str(path)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(f"节假日文件 {self.path}：{'；'.join(self.problems)}")


@dataclass(frozen=True)
class YearData:
    """The days off and make-up working days of one year, and where they came from."""

    year: int
    source: str
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)
    warning: str | None = None


def load_holiday_file(path: str | Path) -> YearData:
    """Read and check one yearly holiday file; raises HolidayFileError."""
    path = Path(path)
    year = _year_from_filename(path)
    content = _read_yaml(path)
    problems = _check_keys(content, year)
    holidays, holiday_problems = _parse_dates(content.get("holidays"), "holidays", year)
    workdays, workday_problems = _parse_dates(content.get("workdays"), "workdays", year)
    problems += holiday_problems + workday_problems
    if "holidays" in content and not holidays and not holiday_problems:
        problems.append("holidays 不能为空：每年都有法定节假日")
    problems += _check_overlap(holidays, workdays)
    problems += [
        f"workdays 中的 {d.isoformat()} 不是周六或周日（调休上班日应为周末）"
        for d in sorted(workdays)
        if d.weekday() < 5
    ]
    if problems:
        raise HolidayFileError(path, problems)
    return YearData(year, SOURCE_FILE, frozenset(holidays), frozenset(workdays))


class _DatesAsTextLoader(yaml.SafeLoader):
    """Safe YAML that keeps dates as text, so a bad date is reported by its value."""


_DatesAsTextLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def _year_from_filename(path: Path) -> int:
    if path.suffix not in _FILE_SUFFIXES or not re.fullmatch(r"\d{4}", path.stem):
        raise HolidayFileError(path, "文件名应为四位年份加 .yaml，例如 2027.yaml")
    return int(path.stem)


def _read_yaml(path: Path) -> dict:
    try:
        content = yaml.load(path.read_text(encoding="utf-8"), Loader=_DatesAsTextLoader)
    except OSError as exc:
        raise HolidayFileError(path, f"无法读取（{exc.strerror or exc}）") from exc
    except UnicodeDecodeError as exc:
        raise HolidayFileError(path, "不是 UTF-8 编码的文本") from exc
    except yaml.YAMLError as exc:
        # The YAML message carries the line and column of the problem.
        detail = " ".join(str(exc).split())
        raise HolidayFileError(path, f"YAML 格式错误：{detail}") from exc
    if not isinstance(content, dict):
        raise HolidayFileError(path, "内容应为包含 year、holidays、workdays 的映射")
    return content


def _check_keys(content: dict, year: int) -> list[str]:
    problems = []
    unknown = sorted(str(key) for key in content if key not in _FILE_KEYS)
    if unknown:
        problems.append(f"未知的键 {', '.join(unknown)}（允许：year、holidays、workdays、note）")
    for key in ("year", "holidays", "workdays"):
        if key not in content:
            problems.append(f"缺少 {key}")
    if "year" in content and content["year"] != year:
        problems.append(f"year 为 {content['year']!r}，与文件名中的年份 {year} 不一致")
    return problems


def _parse_dates(values, key: str, year: int) -> tuple[set[date], list[str]]:
    if values is None:
        return set(), []
    if not isinstance(values, list):
        return set(), [f"{key} 应为日期列表，例如 [{year}-01-01]"]
    dates, problems = set(), []
    for value in values:
        day = _as_date(value)
        if day is None:
            problems.append(f"{key} 中的 {value!r} 不是 YYYY-MM-DD 格式的日期")
        elif day.year != year:
            problems.append(f"{key} 中的 {day.isoformat()} 不属于 {year} 年")
        elif day in dates:
            problems.append(f"{key} 中的 {day.isoformat()} 重复出现")
        else:
            dates.add(day)
    return dates, problems


def _as_date(value) -> date | None:
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _check_overlap(holidays: set[date], workdays: set[date]) -> list[str]:
    return [f"{d.isoformat()} 同时出现在 holidays 和 workdays 中" for d in sorted(holidays & workdays)]


@functools.cache
def _package_years() -> dict[int, YearData]:
    """The chinesecalendar package's data, indexed by year once per process."""
    holidays: dict[int, set[date]] = {}
    workdays: dict[int, set[date]] = {}
    for day in chinese_calendar.holidays:
        holidays.setdefault(day.year, set()).add(day)
    for day in chinese_calendar.workdays:
        workdays.setdefault(day.year, set()).add(day)
    return {
        year: YearData(
            year,
            SOURCE_PACKAGE,
            frozenset(holidays[year]),
            frozenset(workdays.get(year, ())),
        )
        for year in holidays
    }


def _scan_holiday_dir(
    directory: Path | None,
) -> tuple[dict[int, YearData], dict, list[str]]:
    """Load every yearly file: (data by year, error by year, errors without a year)."""
    files: dict[int, YearData] = {}
    errors_by_year: dict[int, HolidayFileError] = {}
    other_errors: list[str] = []
    if directory is None or not directory.exists():
        return files, errors_by_year, other_errors
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix in _FILE_SUFFIXES)
    except OSError as exc:
        return files, errors_by_year, [f"无法读取节假日数据目录 {directory}：{exc}"]
    for path in paths:
        year = int(path.stem) if re.fullmatch(r"\d{4}", path.stem) else None
        try:
            if year in files or year in errors_by_year:
                raise HolidayFileError(path, f"{year} 年已有另一个数据文件，请只保留一个")
            data = load_holiday_file(path)
        except HolidayFileError as exc:
            if year is None:
                other_errors.append(str(exc))
            else:
                files.pop(year, None)
                errors_by_year[year] = exc
        else:
            files[data.year] = data
    return files, errors_by_year, other_errors


class WorkCalendar:
    """Working days, statutory periods (民法典 第201–204条) and SLA deadlines.

    Years are loaded lazily and cached; create one per process and call `reload()`
    after an administrator adds or changes a yearly file.
    """

    def __init__(
        self,
        holiday_dir: str | Path | None = None,
        tz: str = "Asia/Shanghai",
        office_end: time = time(17, 30),
        warning_workdays: int = 1,
    ):
        if not isinstance(warning_workdays, int) or warning_workdays < 0:
            raise ValueError("warning_workdays must be a non-negative integer")
        self.holiday_dir = Path(holiday_dir) if holiday_dir is not None else None
        self.tz = ZoneInfo(tz)
        self.office_end = office_end
        self.warning_workdays = warning_workdays
        self.reload()

    def reload(self) -> None:
        """Forget cached years and read the holiday directory again."""
        self._files, self._file_errors, self._other_errors = _scan_holiday_dir(self.holiday_dir)
        self._years: dict[int, YearData] = {}

    # --- years ---------------------------------------------------------------------

    def _year(self, year: int) -> YearData:
        data = self._years.get(year)
        if data is None:
            data = self._years[year] = self._resolve_year(year)
        return data

    def _resolve_year(self, year: int) -> YearData:
        if year in self._files:
            return self._files[year]
        file_error = self._file_errors.get(year)
        package = _package_years().get(year)
        if package is not None:
            if file_error is None:
                return package
            warning = f"{file_error}。已忽略该文件，{year} 年改用 chinese-calendar 内置数据。"
            return YearData(year, SOURCE_PACKAGE, package.holidays, package.workdays, warning)
        if file_error is not None:
            warning = f"{file_error}。{year} 年暂按周一至周五计算工作日。"
        else:
            warning = (
                f"{year} 年没有法定节假日和调休数据，暂按周一至周五计算工作日；"
                f"请添加 {self._file_hint(year)}。"
            )
        return YearData(year, SOURCE_FALLBACK, warning=warning)

    def _file_hint(self, year: int) -> str:
        if self.holiday_dir is None:
            return f"节假日数据目录（未配置）中的 {year}.yaml"
        return str(self.holiday_dir / f"{year}.yaml")

    def year_info(self, year: int) -> dict:
        """The year's days off and make-up working days, with their source (as API.md)."""
        data = self._year(year)
        info = {
            "year": year,
            "source": data.source,
            "holidays": [d.isoformat() for d in sorted(data.holidays)],
            "workdays": [d.isoformat() for d in sorted(data.workdays)],
        }
        if data.warning:
            info["warning"] = data.warning
        return info

    @property
    def warnings(self) -> list[str]:
        """Problems an administrator should fix: broken files and years without data.

        Covers every year used so far, every year with a broken file, and the current
        and next year (a deadline counted today can reach into next year).
        """
        this_year = datetime.now(self.tz).year
        years = set(self._years) | set(self._file_errors) | {this_year, this_year + 1}
        messages = list(self._other_errors)
        for year in sorted(years):
            warning = self._year(year).warning
            if warning:
                messages.append(warning)
        return messages

    # --- working days ----------------------------------------------------------------

    def is_workday(self, d: date) -> bool:
        """True if `d` is a working day (weekday not off, or a 调休 make-up day)."""
        return self._is_workday(self._as_day(d))

    def _is_workday(self, day: date) -> bool:
        data = self._year(day.year)
        if day in data.workdays:
            return True
        return day.weekday() < 5 and day not in data.holidays

    def _next_workday(self, day: date) -> date:
        """`day` itself if it is a working day, else the next one."""
        while not self._is_workday(day):
            day += _ONE_DAY
        return day

    def add_workdays(self, start: date, n: int) -> date:
        """The date n working days after `start`, `start` not counted (n<0 goes back)."""
        day = self._as_day(start)
        if n == 0:
            return self._next_workday(day)
        step = _ONE_DAY if n > 0 else -_ONE_DAY
        remaining = abs(n)
        while remaining:
            day += step
            if self._is_workday(day):
                remaining -= 1
        return day

    def workdays_between(self, a: date, b: date) -> int:
        """Working days after `a` up to and including `b`; negative (days in [b, a)) if b < a.

        The inverse of `add_workdays`: workdays_between(a, add_workdays(a, n)) == n for n != 0.
        """
        a, b = self._as_day(a), self._as_day(b)
        if b < a:
            return -self._count_workdays(b, a - _ONE_DAY)
        return self._count_workdays(a + _ONE_DAY, b)

    def _count_workdays(self, first: date, last: date) -> int:
        count, day = 0, first
        while day <= last:
            count += self._is_workday(day)
            day += _ONE_DAY
        return count

    # --- statutory periods (民法典 第201–204条) --------------------------------------

    def add_days(self, start: date, n: int) -> date:
        """Last day of an n-day period from `start`; raises ValueError if n < 0.

        The first day is not counted; a last day that is a rest day moves to the next
        working day.
        """
        if n < 0:
            raise ValueError("a period cannot have a negative length")
        return self._next_workday(self._as_day(start) + timedelta(days=n))

    def add_months(self, start: date, n: int) -> date:
        """Last day of an n-month period from `start`; raises ValueError if n < 0.

        The corresponding day n months later (that month's last day if it has none);
        a last day that is a rest day moves to the next working day.
        """
        if n < 0:
            raise ValueError("a period cannot have a negative length")
        return self._next_workday(_same_day_months_later(self._as_day(start), n))

    # --- deadlines -------------------------------------------------------------------

    def end_of_day(self, d) -> datetime:
        """Office end of the date `d` (date, datetime or ISO string); raises ValueError."""
        return datetime.combine(self._as_day(d), self.office_end, tzinfo=self.tz)

    def workdays(self, n: int, start=None) -> datetime:
        """Deadline n working days after `start` (None = now) at office end; raises ValueError."""
        return self.end_of_day(self.add_workdays(self._start_day(start), n))

    def days(self, n: int, start=None) -> datetime:
        """Deadline of an n-day period from `start` (None = now); raises ValueError."""
        return self.end_of_day(self.add_days(self._start_day(start), n))

    def months(self, n: int, start=None) -> datetime:
        """Deadline of an n-month period from `start` (None = now); raises ValueError."""
        return self.end_of_day(self.add_months(self._start_day(start), n))

    def point_between(self, start, end, fraction: float) -> datetime:
        """The instant at `fraction` (0..1) of the way from `start` (None = now) to `end`.

        A plain date stands for its office end. Raises ValueError on a bad value.
        """
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be between 0 and 1")
        first = self._now() if start is None else self._as_instant(start)
        last = self._as_instant(end)
        return (first + (last - first) * fraction).astimezone(self.tz)

    # --- SLA -------------------------------------------------------------------------

    def warning_start(self, due_at: datetime) -> datetime:
        """The instant from which a task due at `due_at` is in SLA "warning".

        Its due day is the date of `due_at`, or the working day before it when that date
        is a rest day. Warning starts at the office end of the working day
        `warning_workdays` working days before the due day: from then on at most that many
        whole working days remain. Example (warning_workdays=1): due Mon 17:30 → warning
        from the previous working day (Fri) 17:30. Never later than `due_at`.
        """
        due = self._as_instant(due_at)
        warn_day = self.add_workdays(self._due_day(due), -self.warning_workdays)
        return min(due, self.end_of_day(warn_day))

    def sla(self, due_at, now=None) -> str | None:
        """'normal', 'warning' or 'overdue' for a task due at `due_at` (None if no due date)."""
        if due_at is None:
            return None
        due = self._as_instant(due_at)
        current = self._now(now)
        if current >= due:
            return "overdue"
        if current >= self.warning_start(due):
            return "warning"
        return "normal"

    def workdays_left(self, due_at, now=None) -> int:
        """Working days left before `due_at` (today counts while the office is open).

        Consistent with `sla`: "warning" exactly when 0 <= workdays_left <= warning_workdays
        and not overdue. When overdue: minus the working days since the due day, at least 1.
        """
        due = self._as_instant(due_at)
        current = self._now(now)
        due_day = self._due_day(due)
        today = current.date()
        if current >= due:
            return -max(1, self.workdays_between(due_day, today))
        if today > due_day:
            return 0
        left = self.workdays_between(today, due_day)
        if self._is_workday(today) and current < self.end_of_day(today):
            left += 1
        return left

    def _due_day(self, due: datetime) -> date:
        day = due.astimezone(self.tz).date()
        return day if self._is_workday(day) else self.add_workdays(day, -1)

    # --- coercion --------------------------------------------------------------------

    def _now(self, now=None) -> datetime:
        if now is None:
            return datetime.now(self.tz)
        return self._as_instant(now)

    def _start_day(self, start) -> date:
        return self._now().date() if start is None else self._as_day(start)

    def _as_day(self, value) -> date:
        """A local date from a date, a datetime (in the calendar's zone) or an ISO string."""
        if isinstance(value, str):
            value = _parse_iso(value)
        if isinstance(value, datetime):
            return self._localize(value).date()
        if isinstance(value, date):
            return value
        raise ValueError(f"不是日期：{value!r}")

    def _as_instant(self, value) -> datetime:
        """An aware datetime in the calendar's zone; a plain date means its office end."""
        if isinstance(value, str):
            value = _parse_iso(value)
        if isinstance(value, datetime):
            return self._localize(value)
        if isinstance(value, date):
            return self.end_of_day(value)
        raise ValueError(f"不是日期或时间：{value!r}")

    def _localize(self, value: datetime) -> datetime:
        # A naive datetime is taken to be local time in the calendar's zone.
        if value.tzinfo is None:
            return value.replace(tzinfo=self.tz)
        return value.astimezone(self.tz)


def _parse_iso(text: str) -> date | datetime:
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"无法识别的日期或时间：{text!r}（应为 YYYY-MM-DD 或 ISO 8601）") from None


def _same_day_months_later(start: date, n: int) -> date:
    """The corresponding day n months later, or that month's last day (民法典 第202条)."""
    month_index = start.year * 12 + start.month - 1 + n
    year, month = divmod(month_index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - _ONE_DAY).day
    return date(year, month, min(start.day, last_day))
