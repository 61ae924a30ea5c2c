"""Languages (Flask-Babel): Chinese by default, English chosen by a cookie; dates as 2026年11月25日.

Source strings are Chinese; `translations/en` holds the English catalogue. Compile it at
setup with `pybabel compile -d webapp/translations`.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from flask import Flask, current_app, request
from flask_babel import Babel, format_date, get_locale

LANGUAGES = {"zh_CN": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh_CN"
COOKIE = "chengxin_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
TRANSLATIONS = Path(__file__).parent / "translations"


def current_language() -> str:
    chosen = request.cookies.get(COOKIE) if request else None
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def _timezone() -> str:
    return current_app.extensions["chengxin"]["settings"].timezone


def remember_language(response, language: str):
    """Set the language cookie on `response` (unknown languages are ignored)."""
    if language in LANGUAGES:
        response.set_cookie(
            COOKIE,
            language,
            max_age=COOKIE_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=current_app.config.get("SESSION_COOKIE_SECURE", False),
        )
    return response


def _local(value) -> date | datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(current_app.extensions["chengxin"]["settings"].tzinfo)
    return value


def format_day(value) -> str:
    """2026年11月25日 in Chinese, the locale's medium date otherwise; '' for no date."""
    value = _local(value)
    if value is None:
        return ""
    day = value.date() if isinstance(value, datetime) else value
    if str(get_locale()).startswith("zh"):
        return f"{day.year}年{day.month}月{day.day}日"
    return format_date(day, "medium")


def format_moment(value) -> str:
    """The day as in `format_day`, then the local time: 2026年11月25日 14:30."""
    local = _local(value)
    if local is None:
        return ""
    if not isinstance(local, datetime):
        return format_day(local)
    return f"{format_day(local)} {local:%H:%M}"


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=current_language, timezone_selector=_timezone)
    app.jinja_env.filters["day"] = format_day
    app.jinja_env.filters["moment"] = format_moment
    app.jinja_env.globals["languages"] = LANGUAGES
    app.jinja_env.globals["current_language"] = current_language
