"""Reading a posted page form: the form-js data (JSON in the `data` field) and the files."""

from __future__ import annotations

import json

from flask import request

from engine.errors import ValidationFailed

FILE_FIELD = "files"  # plain uploads; "files.<key>" names a filepicker field


def posted_data():
    """The `data` field parsed as JSON (None when absent). Raises ValidationFailed when malformed."""
    raw = request.form.get("data")
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ValidationFailed({"_schema": ["表单数据无效，请刷新页面后重试"]}) from None


def posted_files() -> list[tuple[str | None, object, str]]:
    """(filepicker key or None, stream, file name) for every non-empty file input."""
    found = []
    for name in request.files:
        if name != FILE_FIELD and not name.startswith(FILE_FIELD + "."):
            continue
        key = name.partition(".")[2] or request.form.get("field") or None
        for upload in request.files.getlist(name):
            if upload and upload.filename:
                found.append((key, upload.stream, upload.filename))
    return found
