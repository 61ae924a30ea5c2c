"""`/metrics` in the Prometheus text format: request latency, open and overdue tasks, instances
by status, worker lag (age of the oldest due timer) and outbox backlog.

Who may read it (anyone else gets 401/403):
- a request made straight to the app from the loopback interface (127.0.0.1 or ::1) that carries
  no proxy header — behind nginx on the same host every request comes from 127.0.0.1, but
  nginx adds X-Forwarded-For/X-Real-IP, so proxied requests do not count as local;
- `Authorization: Bearer <API token>` of a user in the managers or admins group;
- `Authorization: Bearer <CHENGXIN_METRICS_TOKEN>` when that environment variable (or the
  METRICS_TOKEN config key) is set: for a Prometheus scraping from another host.

Gauges are read from the database at scrape time, so every web process reports the same
figures. Request latency is per process; under gunicorn set PROMETHEUS_MULTIPROC_DIR to an
empty directory to aggregate it across workers.
"""

from __future__ import annotations

import hmac
import os
import time

from flask import Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from engine import monitoring
from engine.users import actor_for

from . import database
from .auth import current_user

LOOPBACK = frozenset({"127.0.0.1", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


class DatabaseCollector:
    """Gauges computed by SQL aggregates when Prometheus scrapes (inside the /metrics request)."""

    def describe(self):
        return []  # computed on scrape: nothing to check at registration

    def collect(self):
        # The request's own session: on SQLite a second one would wait for its write lock.
        figures = monitoring.gauges(database.session())
        instances = GaugeMetricFamily("chengxin_instances", "Process instances by status", labels=["status"])
        for status, count in figures["instances_by_status"].items():
            instances.add_metric([status], count)
        yield instances
        simple = {
            "open_tasks": "Open user tasks",
            "overdue_tasks": "Open user tasks past their due time",
            "warning_tasks": "Open user tasks due soon",
            "due_timers": "Timers due but not yet fired",
            "outbox_backlog": "Outbox messages waiting for delivery",
            "outbox_dead": "Outbox messages that gave up",
        }
        for name, help_text in simple.items():
            yield GaugeMetricFamily(f"chengxin_{name}", help_text, value=figures[name])
        yield GaugeMetricFamily(
            "chengxin_worker_lag_seconds",
            "Age of the oldest due timer (0: none waiting)",
            value=figures["timer_lag_seconds"],
        )


def _registries(app: Flask) -> tuple[CollectorRegistry, Histogram]:
    """The registry /metrics renders and the latency histogram, per app (nothing global)."""
    latency_registry = CollectorRegistry(auto_describe=True)
    latency = Histogram(
        "chengxin_http_request_duration_seconds",
        "Time to answer an HTTP request",
        ["method", "endpoint", "status"],
        registry=latency_registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        exposed = CollectorRegistry()
        multiprocess.MultiProcessCollector(exposed)
    else:
        exposed = latency_registry
    exposed.register(DatabaseCollector())
    return exposed, latency


def _start_timer():
    g.metrics_started = time.perf_counter()


def _observe(response):
    started = g.pop("metrics_started", None)
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        latency = current_app.extensions["chengxin"]["metrics"][1]
        latency.labels(request.method, endpoint, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def _is_direct_local() -> bool:
    return request.remote_addr in LOOPBACK and not any(h in request.headers for h in PROXY_HEADERS)


def _allowed() -> int | None:
    """None when the caller may read the metrics, else the HTTP status to refuse with."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        secret = current_app.config.get("METRICS_TOKEN") or os.environ.get("CHENGXIN_METRICS_TOKEN")
        if secret and hmac.compare_digest(header[7:].strip().encode(), secret.encode()):
            return None
        user = current_user()
        if user is None:
            return 401
        return None if actor_for(user).is_manager else 403
    return None if _is_direct_local() else 401


def metrics_view():
    refusal = _allowed()
    if refusal:
        message = "需要督查/管理人员的令牌" if refusal == 403 else "需要认证"
        headers = {"WWW-Authenticate": "Bearer"} if refusal == 401 else {}
        return Response(message + "\n", status=refusal, mimetype="text/plain", headers=headers)
    registry = current_app.extensions["chengxin"]["metrics"][0]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.extensions["chengxin"]["metrics"] = _registries(app)
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.add_url_rule("/metrics", "metrics", metrics_view)
