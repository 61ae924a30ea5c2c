"""Chengxin web application: a thin Flask shell over `engine`."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from flask import Flask

from engine.config import Settings
from engine.db import make_engine, make_session_factory

from .input_checks import DatabaseIdConverter


def create_app(settings: Settings | None = None, **config) -> Flask:
    """Application factory; nothing connects to the database until a request needs it."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=str(Path(settings.instance_dir).resolve()))
    app.url_map.converters["int"] = DatabaseIdConverter  # before any route is added
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        JSON_AS_ASCII=False,
        API_TITLE="诚信 Chengxin API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        # Page sessions: a signed cookie, unreadable to scripts, not sent on cross-site posts;
        # Secure when served over HTTPS (CHENGXIN_SECURE_COOKIES=1). "Remember me" makes it
        # last PERMANENT_SESSION_LIFETIME, otherwise it ends with the browser.
        SESSION_COOKIE_NAME="chengxin_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("CHENGXIN_SECURE_COOKIES", "") in ("1", "true", "yes"),
        PERMANENT_SESSION_LIFETIME=timedelta(days=14),
    )
    app.config.update(config)
    app.json.ensure_ascii = False
    db_engine = make_engine(settings.database_url)
    app.extensions["chengxin"] = {
        "settings": settings,
        "engine": db_engine,
        "sessions": make_session_factory(db_engine),
    }

    from . import csrf, database, errors, i18n, input_checks, permissions, security
    from .api import register_api
    from .pages import register_pages

    database.init_app(app)
    permissions.init_app(app)
    input_checks.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)
    register_api(app)
    from .pages import monitor  # noqa: F401  (mounts the managers' pages on the workspace blueprint)

    register_pages(app)
    from .pages import studio as studio_pages

    studio_pages.register(app)
    from . import metrics

    metrics.init_app(app)
    return app
