"""Fuzz the API with schemathesis from its own OpenAPI document, in-process through WSGI.

For every operation of /api/openapi.json, a bounded number of generated requests (valid by the
schema, then invalid ones), as a manager and as an analyst: no answer is a server error (5xx)
and every answer matches the schema documented for its status code. The data behind it is
real: a deployed process with instances and tasks, so generated small ids hit real rows.
"""

from __future__ import annotations

import io
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

EXAMPLES = int(os.environ.get("CHENGXIN_FUZZ_EXAMPLES", 6))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# schemathesis reports check failures as an exception group (a BaseExceptionGroup).
FAILURES = (Exception, BaseExceptionGroup)
START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}


@pytest.fixture
def running(api, deployed):
    """A few instances in different states, so generated ids find real rows."""
    for _ in range(3):
        started = api.post(
            "/api/v1/process-instances",
            user="registrar",
            json={"process_key": "simple_review", "variables": START},
        )
        assert started.status_code == 201
    task = started.json["tasks"][0]["id"]
    done = api.post(
        f"/api/v1/tasks/{task}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    assert done.status_code == 200


def _operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    for result in schema.get_all_operations():
        yield result.ok()


def _fuzz(operation, headers: dict, mode: GenerationMode) -> list[str]:
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FAILURES as exc:  # keep the description for the report; Hypothesis then shrinks
            failures.append(f"{operation.label} [{mode.value}] {case.method} {case.formatted_path}: {exc}")
            raise

    try:
        run()
    except Unsatisfiable:
        pass
    except FAILURES as exc:
        if not failures:
            failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return failures[-1:]


@pytest.mark.parametrize("user", ["supervisor", "analyst"])
def test_no_server_errors_and_answers_match_the_schema(app, api, running, user):
    headers = {"Authorization": f"Bearer {api.token(user)}"}
    operations = list(_operations(app))
    assert len(operations) > 40
    failures = []
    for operation in operations:
        if operation.label == "POST /api/v1/auth/token":
            continue  # fuzzed failures would lock the names out; covered by test_token_lockout.py
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, headers, mode)
    assert not failures, "\n\n".join(failures)


HUGE = 10**20  # past every integer column: SQLite refuses it, PostgreSQL raises a DataError


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", f"/api/v1/process-instances/{HUGE}", None),
        ("GET", f"/api/v1/tasks/{2**31}", None),
        ("POST", "/api/v1/process-instances", {"process_key": "simple_review", "version": HUGE}),
        ("GET", f"/api/v1/process-definitions/simple_review/xml?version={HUGE}", None),
        ("GET", f"/api/v1/tasks?instance_id={HUGE}", None),
        ("GET", f"/api/v1/monitor/instances?version={HUGE}", None),
        ("GET", f"/api/v1/monitor/heatmap/simple_review?version={HUGE}", None),
        ("GET", f"/api/v1/studio/processes/simple_review/diff?from_version={HUGE}", None),
        (
            "POST",
            "/api/v1/studio/processes/simple_review/migration",
            {"from_version": 1, "instance_ids": [HUGE]},
        ),
    ],
)
def test_out_of_range_ids_are_client_errors(api, deployed, method, path, body):
    """What the fuzz found first: ids past the database's integer range answered 500."""
    response = api.client.open(
        path, method=method, json=body, headers={"Authorization": f"Bearer {api.token('admin')}"}
    )
    assert response.status_code in (404, 422), (response.status_code, response.get_data(as_text=True))


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/v1/monitor/instances?subject=a%00b", None),
        ("GET", "/api/v1/tasks?process_key=%00", None),
        ("GET", "/api/v1/process-definitions/a%00b/xml", None),
        ("POST", "/api/v1/process-instances", {"process_key": "simple_review", "business_key": "TS\x00"}),
        (
            "POST",
            "/api/v1/process-instances",
            {"process_key": "simple_review", "variables": {"title": "\x00"}},
        ),
        ("POST", "/api/v1/monitor/views", {"name": "v", "filters": {"\x00": "x"}}),
    ],
)
def test_nul_characters_are_refused_before_the_database(api, deployed, method, path, body):
    """What the fuzz found on PostgreSQL: NUL in text answered 503 (the driver's DataError)."""
    response = api.client.open(
        path, method=method, json=body, headers={"Authorization": f"Bearer {api.token('admin')}"}
    )
    assert response.status_code == 400 and response.json["error"] == "bad_request", response.json
    assert api.get("/api/v1/process-instances", user="admin").json["total"] == 0


def test_nul_characters_in_pages_and_uploads_are_refused(app, api, deployed):
    from .pages_client import PageClient

    registrar = PageClient(app, "registrar")
    page = registrar.post("/start/simple_review", {"data": '{"title": "a\\u0000"}'})
    assert page.status_code in (400, 422) and "text/html" in page.content_type
    upload = api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={"files": [(io.BytesIO(b"<x/>"), "a\x00.bpmn")]},
        content_type="multipart/form-data",
    )
    assert upload.status_code in (400, 422)
    assert api.get("/api/v1/process-instances", user="admin").json["total"] == 0
