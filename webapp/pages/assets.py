"""URLs of the built front-end bundles (webapp/static/dist), with a content hash for caching."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flask import url_for

DIST = Path(__file__).resolve().parent.parent / "static" / "dist"


@lru_cache(maxsize=4)
def _manifest(mtime: float) -> dict[str, str]:
    return json.loads((DIST / "manifest.json").read_text(encoding="utf-8"))


def _current_manifest() -> dict[str, str]:
    path = DIST / "manifest.json"
    try:
        return _manifest(path.stat().st_mtime)
    except (OSError, ValueError):
        return {}  # bundles not built yet: pages still render, without styling


def asset_url(name: str) -> str:
    """/static/dist/NAME?v=HASH (the hash changes whenever `npm run build` changes the file)."""
    version = _current_manifest().get(name)
    url = url_for("static", filename=f"dist/{name}")
    return f"{url}?v={version}" if version else url
