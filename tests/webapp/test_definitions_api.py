"""Definitions and deployments over HTTP."""

from __future__ import annotations

from ..conftest import FIXTURES


def test_deploy_is_for_analysts_and_admins(api, simple_bundle):
    for user in ("registrar", "director"):
        assert api.deploy(*simple_bundle, user=user).status_code == 403
    assert api.deploy(*simple_bundle, user=None).status_code == 401
    assert api.get("/api/v1/process-definitions", user="director").json["items"] == []
    assert api.deploy(*simple_bundle, user="admin").status_code == 201


def test_deploy_twice_is_idempotent_and_listed(api, simple_bundle):
    first = api.deploy(*simple_bundle)
    assert first.status_code == 201
    assert {(d["key"], d["version"]) for d in first.json["definitions"]} == {
        ("simple_review", 1),
        ("waiting_flow", 1),
    }
    again = api.deploy(*simple_bundle)
    assert again.status_code == 200 and again.json["definitions"] == first.json["definitions"]
    items = api.get("/api/v1/process-definitions", user="registrar").json["items"]
    assert [(i["key"], i["version"]) for i in items] == [("simple_review", 1), ("waiting_flow", 1)]
    assert all(len(i["checksum"]) == 64 and i["deployed_at"] for i in items)


def test_invalid_bundle_is_422_with_locations(api):
    broken = FIXTURES / "simple_review.bpmn"
    response = api.deploy(broken)  # its forms are missing
    assert response.status_code == 422
    assert response.json["error"] == "invalid_definition"
    assert {e["element_id"] for e in response.json["errors"]} >= {"start", "first_review"}
    assert all(e["file"] == "simple_review.bpmn" and e["line"] for e in response.json["errors"])
    no_files = api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={},
        content_type="multipart/form-data",
    )
    assert no_files.status_code == 422


def test_xml_and_start_form(api, deployed):
    xml = api.get("/api/v1/process-definitions/simple_review/xml", user="registrar")
    assert xml.status_code == 200 and xml.mimetype == "application/xml"
    assert b'id="simple_review"' in xml.data
    assert (
        api.get("/api/v1/process-definitions/simple_review/xml?version=9", user="registrar").status_code
        == 404
    )
    assert api.get("/api/v1/process-definitions/nope/xml", user="registrar").status_code == 404
    form = api.get("/api/v1/process-definitions/simple_review/start-form", user="registrar").json["form"]
    assert form["id"] == "simple_start"
    assert api.get("/api/v1/process-definitions/waiting_flow/start-form", user="registrar").json == {
        "form": None
    }
    assert (
        api.get(
            "/api/v1/process-definitions/simple_review/start-form?version=x", user="registrar"
        ).status_code
        == 422
    )


def test_openapi_document_lists_the_contract(api):
    spec = api.get("/api/openapi.json").json
    for path in (
        "/api/v1/tasks/{task_id}/complete",
        "/api/v1/process-instances",
        "/api/v1/deployments",
        "/api/v1/process-instances/{instance_id}/timers/fire",
        "/api/v1/public/credit-records",
    ):
        assert path in spec["paths"], path
