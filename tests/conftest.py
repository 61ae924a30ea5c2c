"""Shared fixtures: a real database (SQLite file, or PostgreSQL when DATABASE_URL is set)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.db import Base, make_engine, make_session_factory


def _reset_schema(engine):
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        Base.metadata.drop_all(engine)


@pytest.fixture
def database_url(tmp_path):
    """The database under test: PostgreSQL when DATABASE_URL is set, else a fresh SQLite file."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def db_engine(database_url):
    from engine.schema import load_models

    load_models()
    engine_ = make_engine(database_url)
    _reset_schema(engine_)
    Base.metadata.create_all(engine_)
    yield engine_
    engine_.dispose()


@pytest.fixture
def session_factory(db_engine):
    return make_session_factory(db_engine)


@pytest.fixture
def session(session_factory):
    s = session_factory()
    yield s
    s.rollback()
    s.close()


FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def demo_password_hash():
    from engine.users import DEMO_PASSWORD, hash_password

    return hash_password(DEMO_PASSWORD)


@pytest.fixture
def settings(database_url, tmp_path):
    from engine.config import Settings

    return Settings(database_url=database_url, instance_dir=tmp_path / "instance", secret_key="test-secret")


@pytest.fixture
def seeded(session_factory, demo_password_hash):
    """The demo organisation of domain.md."""
    from engine.db import transaction
    from engine.users import seed_demo

    with transaction(session_factory) as s:
        seed_demo(s, password_hash=demo_password_hash)


@pytest.fixture
def app(settings, db_engine, seeded):
    from webapp import create_app

    app = create_app(settings, TESTING=True)
    yield app
    app.extensions["chengxin"]["engine"].dispose()


class ApiClient:
    """The Flask test client with a bearer token per demo user."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self._tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self._tokens:
            from sqlalchemy import select

            from engine.models import User
            from webapp.auth import issue_token
            from webapp.database import session

            with self.app.app_context():
                user = session().scalar(select(User).where(User.username == username))
                self._tokens[username] = issue_token(user)[0]
        return self._tokens[username]

    def _headers(self, user, headers):
        headers = dict(headers or {})
        if user:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        return headers

    def get(self, path, user=None, **kw):
        return self.client.get(path, headers=self._headers(user, kw.pop("headers", None)), **kw)

    def post(self, path, user=None, json=None, **kw):
        return self.client.post(path, headers=self._headers(user, kw.pop("headers", None)), json=json, **kw)

    def deploy(self, *paths, user="analyst"):
        files = [(io.BytesIO(Path(p).read_bytes()), Path(p).name) for p in paths]
        return self.client.post(
            "/api/v1/deployments",
            headers=self._headers(user, None),
            data={"files": files},
            content_type="multipart/form-data",
        )


@pytest.fixture
def api(app):
    return ApiClient(app)


@pytest.fixture
def simple_bundle():
    return [
        FIXTURES / n
        for n in (
            "simple_review.bpmn",
            "waiting_flow.bpmn",
            "simple_start.form",
            "simple_review.form",
            "simple_confirm.form",
        )
    ]


@pytest.fixture
def deployed(api, simple_bundle):
    response = api.deploy(*simple_bundle)
    assert response.status_code == 201, response.json
    return response.json
