"""Every answer carries the security headers; pages and API answers are never cached."""

from __future__ import annotations


def test_headers_on_api_and_errors(api):
    for response in (api.get("/api/v1/health"), api.get("/api/v1/me"), api.get("/api/v1/nowhere")):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
