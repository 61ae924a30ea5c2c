"""With the database unreachable, requests fail with 503 and a clear message, never 500."""

from __future__ import annotations

import pytest

from engine.config import Settings
from webapp import create_app


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
        "sqlite:////nonexistent-dir/for/chengxin.db",
    ],
)
def test_unreachable_database_answers_503(url, tmp_path):
    app = create_app(Settings(database_url=url, instance_dir=tmp_path, secret_key="x"), TESTING=True)
    client = app.test_client()
    health = client.get("/api/v1/health")
    assert health.status_code == 503 and health.json["database"] == "unavailable"
    token = client.post("/api/v1/auth/token", json={"username": "chief", "password": "demo123"})
    assert token.status_code == 503
    assert token.json["error"] == "unavailable" and "数据库" in token.json["message"]
