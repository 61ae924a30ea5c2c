"""Refuse input no column can hold before a view runs, instead of failing in the database driver:

- NUL characters anywhere in a request's path, query, form (also JSON-escaped, as pages post
  form data as JSON), upload names or JSON body: PostgreSQL text cannot store them (the
  driver raises a DataError) and nothing of ours has a use for them — a 400;
- `<int:…>` path values past the integer columns (PostgreSQL int4) — a 404 at routing.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

NUL = "\x00"
JSON_NUL = "\\u0000"
MAX_ID = 2**31 - 1


class DatabaseIdConverter(IntegerConverter):
    """The app's `int` converter: non-negative and at most MAX_ID (set before any route is added)."""

    def __init__(self, map, fixed_digits=0, min=None, max=MAX_ID, signed=False):
        super().__init__(map, fixed_digits, min, max, signed)


def _has_nul(value) -> bool:
    """True when a JSON value holds a NUL in any string, key or item (walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _text_has_nul(text: str) -> bool:
    # Pages post their forms' data as JSON in a form field, where a NUL arrives escaped.
    return NUL in text or JSON_NUL in text.lower()


def _multidict_has_nul(values) -> bool:
    return any(_text_has_nul(key) or any(_text_has_nul(v) for v in values.getlist(key)) for key in values)


def refuse_nul_characters() -> None:
    """Raise BadRequest (400) when the request carries a NUL character."""
    found = (
        NUL in request.path
        or _multidict_has_nul(request.args)
        or (request.method not in ("GET", "HEAD") and _body_has_nul())
    )
    if found:
        raise BadRequest("请求中含有不允许的控制字符（NUL）")


def _body_has_nul() -> bool:
    if request.is_json:
        return _has_nul(request.get_json(silent=True))
    if _multidict_has_nul(request.form):
        return True
    return any(NUL in (upload.filename or "") for _, upload in request.files.items(multi=True))


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_characters)
