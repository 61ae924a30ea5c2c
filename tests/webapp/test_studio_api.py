"""The studio API: drafts with conflicts, validation, deployment, versions, diff, export,
migration (dry run and real, with a refused instance), imports — and 403 for non-analysts."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pytest

import engine.imports  # noqa: F401  (register the studio tables before create_all)
import engine.studio  # noqa: F401

from ..conftest import FIXTURES

START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}
SIMPLE = (FIXTURES / "simple_review.bpmn").read_text(encoding="utf-8")
WITH_EXTRA = SIMPLE.replace(
    '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="gw" />',
    '<bpmn:sequenceFlow id="f2" sourceRef="first_review" targetRef="extra_review" />\n'
    '    <bpmn:userTask id="extra_review" name="加审" camunda:candidateGroups="legal" FORM />\n'
    '    <bpmn:sequenceFlow id="f_extra" sourceRef="extra_review" targetRef="gw" />',
)
VALID_V2 = WITH_EXTRA.replace("FORM", 'camunda:formRef="simple_confirm"')
MISSING_FORM = WITH_EXTRA.replace("FORM", "")


def put_draft(api, content, base_revision=0, user="analyst", key="simple_review", base_version=1):
    return api.client.put(
        f"/api/v1/studio/drafts/bpmn/{key}",
        json={"content": content, "base_revision": base_revision, "base_version": base_version},
        headers={"Authorization": f"Bearer {api.token(user)}"},
    )


def start(api):
    response = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={"process_key": "simple_review", "variables": START},
    )
    assert response.status_code == 201, response.json
    return response.json


def deploy_v2(api, xml=VALID_V2, note="增加加审环节"):
    response = api.post(
        "/api/v1/studio/processes/simple_review/deploy", user="analyst", json={"note": note, "xml": xml}
    )
    assert response.status_code == 201, response.json
    return response.json


@pytest.mark.parametrize("user", ["registrar", "chief", "director"])
def test_non_analysts_get_403_everywhere(api, deployed, user):
    assert api.get("/api/v1/studio/processes", user=user).status_code == 403
    assert put_draft(api, SIMPLE, user=user).status_code == 403
    assert api.post("/api/v1/studio/processes/simple_review/validate", user=user, json={}).status_code == 403
    deploy = api.post(
        "/api/v1/studio/processes/simple_review/deploy", user=user, json={"note": "x", "xml": SIMPLE}
    )
    assert deploy.status_code == 403 and deploy.json["error"] == "forbidden"
    assert (
        api.get("/api/v1/studio/processes/simple_review/migration?from_version=1", user=user).status_code
        == 403
    )
    migrate = api.post(
        "/api/v1/studio/processes/simple_review/migration", user=user, json={"instance_ids": [1]}
    )
    assert migrate.status_code == 403
    assert api.get("/api/v1/studio/imports", user=user).status_code == 403
    assert api.get("/api/v1/studio/processes").status_code == 401


def test_admins_reach_the_studio(api, deployed):
    assert api.get("/api/v1/studio/processes", user="admin").status_code == 200


def test_drafts_conflict_names_who_saved_the_newer_one(api, deployed):
    first = put_draft(api, VALID_V2)
    assert first.status_code == 200 and first.json["revision"] == 1
    assert put_draft(api, VALID_V2 + "\n", base_revision=0).status_code == 200  # my own saves
    refused = put_draft(api, SIMPLE, user="admin", base_revision=0)
    assert refused.status_code == 409 and refused.json["error"] == "conflict"
    assert "业务分析员 周敏（analyst）" in refused.json["message"] and "修订 2" in refused.json["message"]
    state = api.get("/api/v1/studio/drafts/bpmn/simple_review", user="admin").json
    assert state["draft"] is None and state["latest_revision"] == 2
    assert [(o["username"], o["revision"]) for o in state["others"]] == [("analyst", 2)]
    assert put_draft(api, SIMPLE, user="admin", base_revision=2).status_code == 200
    bad = put_draft(api, SIMPLE, key="bad key!")
    assert bad.status_code == 422 and "key" in bad.json["errors"]
    missing_base = api.client.put(
        "/api/v1/studio/drafts/bpmn/simple_review",
        json={"content": SIMPLE},
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
    )
    assert missing_base.status_code == 422 and "base_revision" in missing_base.json["errors"]
    gone = api.client.delete(
        "/api/v1/studio/drafts/bpmn/simple_review",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
    )
    assert gone.status_code == 204
    assert api.get("/api/v1/studio/drafts/bpmn/simple_review", user="analyst").json["draft"] is None


def test_validate_answers_422_with_the_offending_element_then_200(api, deployed):
    put_draft(api, MISSING_FORM)
    invalid = api.post("/api/v1/studio/processes/simple_review/validate", user="analyst", json={})
    assert invalid.status_code == 422 and invalid.json["error"] == "invalid_definition"
    (problem,) = [e for e in invalid.json["errors"] if e["element_id"] == "extra_review"]
    assert problem["file"] == "simple_review.bpmn" and problem["line"] and "表单" in problem["message"]
    valid = api.post(
        "/api/v1/studio/processes/simple_review/validate", user="analyst", json={"xml": VALID_V2}
    )
    assert valid.status_code == 200 and valid.json["definitions"][0]["key"] == "simple_review"
    processes = api.get("/api/v1/studio/processes/simple_review", user="analyst").json
    assert [v["version"] for v in processes["versions"]] == [1]  # validation stored nothing


def test_validate_an_uploaded_bundle(api, deployed):
    files = [(io.BytesIO(MISSING_FORM.encode()), "simple_review.bpmn")]
    response = api.client.post(
        "/api/v1/studio/validate",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={"files": files},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and any(
        e["element_id"] == "extra_review" for e in response.json["errors"]
    )


def test_deploy_with_note_then_versions_diff_and_export(api, deployed):
    start(api)
    no_note = api.post(
        "/api/v1/studio/processes/simple_review/deploy", user="analyst", json={"note": " ", "xml": VALID_V2}
    )
    assert no_note.status_code == 422 and "note" in no_note.json["errors"]
    result = deploy_v2(api)
    assert {"key": "simple_review", "version": 2} in result["definitions"]
    again = api.post(
        "/api/v1/studio/processes/simple_review/deploy",
        user="analyst",
        json={"note": "再次", "xml": VALID_V2},
    )
    assert again.status_code == 200
    process = api.get("/api/v1/studio/processes/simple_review", user="analyst").json
    latest, first = process["versions"]
    assert (latest["version"], latest["note"], latest["deployed_by"]) == (2, "增加加审环节", "analyst")
    assert (
        first["instances"] == {"running": 1}
        and first["active_instances"] == 1
        and latest["total_instances"] == 0
    )
    assert len(latest["checksum"]) == 64
    diff = api.get("/api/v1/studio/processes/simple_review/diff", user="analyst").json
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    assert {c["element_id"] for c in diff["added"]} == {"extra_review", "f_extra"}
    assert {"element_id": "f2", "type": "sequenceFlow", "name": "", "aspects": ["连线"]} in diff["changed"]
    export = api.get("/api/v1/studio/processes/simple_review/versions/2/export", user="analyst")
    assert export.status_code == 200 and export.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(export.data))
    assert archive.read("processes/simple_review.bpmn").decode() == VALID_V2
    one = api.get(
        "/api/v1/studio/processes/simple_review/versions/1/files/simple_review.bpmn", user="analyst"
    )
    assert one.status_code == 200 and one.data.decode() == SIMPLE
    missing = api.get("/api/v1/studio/processes/simple_review/versions/7/export", user="analyst")
    assert missing.status_code == 404


def test_repository_check_flags_a_version_deployed_from_the_studio(
    api, app, deployed, simple_bundle, tmp_path
):
    repository = tmp_path / "checkout"
    (repository / "processes").mkdir(parents=True)
    (repository / "forms").mkdir()
    for path in simple_bundle:
        shutil.copy(path, repository / ("processes" if path.suffix == ".bpmn" else "forms"))
    app.config["STUDIO_REPOSITORY"] = str(repository)
    assert api.get("/api/v1/studio/repository", user="analyst").json["not_in_repository"] == []
    deploy_v2(api)
    flagged = api.get("/api/v1/studio/repository", user="analyst").json
    assert flagged["path"] == str(repository)
    assert flagged["not_in_repository"] == [
        {"key": "simple_review", "version": 2, "missing_files": ["simple_review.bpmn"]}
    ]
    versions = api.get("/api/v1/studio/processes/simple_review", user="analyst").json["versions"]
    assert [v["in_repository"] for v in versions] == [False, True]


def test_migration_dry_run_then_real_with_a_refused_instance(api, deployed):
    movable = start(api)
    stuck = start(api)
    task = stuck["tasks"][0]["id"]
    done = api.post(
        f"/api/v1/tasks/{task}/complete", user="registrar", json={"data": {"decision": "approve"}}
    )
    assert done.status_code == 200, done.json
    # v2: a review step added and 复核 (confirm) replaced by final_confirm: the stuck one waits there.
    deploy_v2(api, VALID_V2.replace('"confirm"', '"final_confirm"'))
    plan = api.get("/api/v1/studio/processes/simple_review/migration?from_version=1", user="analyst")
    assert plan.status_code == 200, plan.json
    assert (plan.json["from_version"], plan.json["to_version"]) == (1, 2)
    rows = {row["instance_id"]: row for row in plan.json["instances"]}
    assert (
        rows[movable["id"]]["can_move"] and rows[movable["id"]]["active"][0]["element_id"] == "first_review"
    )
    assert not rows[stuck["id"]]["can_move"] and "复核" in rows[stuck["id"]]["reasons"][0]
    result = api.post(
        "/api/v1/studio/processes/simple_review/migration",
        user="analyst",
        json={"instance_ids": [movable["id"], stuck["id"]], "to_version": 2},
    )
    assert result.status_code == 200, result.json
    outcomes = {o["instance_id"]: o for o in result.json["items"]}
    assert outcomes[movable["id"]]["migrated"] and outcomes[movable["id"]]["to_version"] == 2
    assert not outcomes[stuck["id"]]["migrated"] and "复核" in outcomes[stuck["id"]]["reasons"][0]
    moved = api.get(f"/api/v1/process-instances/{movable['id']}", user="registrar").json
    assert moved["version"] == 2 and "migrated" in [h["type"] for h in moved["history"]]
    assert api.get(f"/api/v1/process-instances/{stuck['id']}", user="registrar").json["version"] == 1
    empty = api.post(
        "/api/v1/studio/processes/simple_review/migration", user="analyst", json={"instance_ids": []}
    )
    assert empty.status_code == 422
    same = api.get(
        "/api/v1/studio/processes/simple_review/migration?from_version=2&to_version=2", user="analyst"
    )
    assert same.status_code == 422


def test_import_reports_and_never_500s(api, deployed):
    descriptive = SIMPLE.replace('isExecutable="true"', 'isExecutable="false"').replace(
        ' camunda:formRef="simple_confirm"', ""
    )

    def upload(name, data):
        return api.client.post(
            "/api/v1/studio/imports",
            headers={"Authorization": f"Bearer {api.token('analyst')}"},
            data={"file": [(io.BytesIO(data), name)]},
            content_type="multipart/form-data",
        )

    created = upload("review_descriptive.bpmn", descriptive.encode())
    assert created.status_code == 201, created.json
    body = created.json
    assert not body["executable"] and not body["deployable"]
    confirm = [i for i in body["report"] if i["element_id"] == "confirm"]
    assert confirm and confirm[0]["severity"] == "error" and "表单" in confirm[0]["message"]
    assert api.get(f"/api/v1/studio/imports/{body['id']}", user="analyst").json["report"] == body["report"]
    content = api.get(f"/api/v1/studio/imports/{body['id']}/content", user="analyst")
    assert content.data.decode() == descriptive
    draft = api.post(f"/api/v1/studio/imports/{body['id']}/draft", user="analyst", json={})
    assert draft.status_code == 201 and draft.json["key"] == "simple_review"
    broken = upload("broken.bpmn", b"<definitions><process")
    assert broken.status_code == 422 and broken.json["error"] == "invalid_definition"
    garbage = upload("x.bpmn", bytes(range(256)))
    assert garbage.status_code == 422
    wrong = upload("notes.txt", b"hello")
    assert wrong.status_code == 422 and "file" in wrong.json["errors"]
    nothing = api.client.post(
        "/api/v1/studio/imports",
        headers={"Authorization": f"Bearer {api.token('analyst')}"},
        data={},
        content_type="multipart/form-data",
    )
    assert nothing.status_code == 422
    assert [i["name"] for i in api.get("/api/v1/studio/imports", user="analyst").json["items"]] == [
        "review_descriptive.bpmn"
    ]


# --- the studio pages (session cookie + CSRF) -------------------------------------------------------


def page_client(app, username):
    from tests.webapp.pages_client import PageClient

    return PageClient(app, username)


def xhr_post(client, path, body, content_type="application/xml", csrf=True):
    headers = {"X-CSRFToken": client.csrf()} if csrf else {}
    return client.client.post(path, data=body, content_type=content_type, headers=headers)


def test_studio_pages_are_for_analysts_only(app, deployed):
    staff = page_client(app, "registrar")
    for path in ("/studio/", "/studio/processes/simple_review/edit", "/studio/imports", "/studio/forms"):
        assert staff.get(path).status_code == 403
    assert staff.get("/studio/processes/simple_review/source").status_code == 403
    assert xhr_post(staff, "/studio/processes/simple_review/draft?base=0", SIMPLE).status_code == 403
    from tests.webapp.pages_client import PageClient

    anonymous = PageClient(app)
    assert anonymous.get("/studio/").status_code == 302
    assert anonymous.get("/studio/processes/simple_review/source").status_code == 401


def test_studio_pages_render_versions_editor_diff_forms_and_migration(app, api, deployed):
    deploy_v2(api)
    analyst = page_client(app, "analyst")
    index = analyst.get("/studio/")
    assert index.status_code == 200 and "simple_review" in index.text and "增加加审环节" in index.text
    editor = analyst.get("/studio/processes/simple_review/edit")
    assert editor.status_code == 200
    assert (
        "data-bpmn-modeler" in editor.text
        and 'data-save-url="/studio/processes/simple_review/draft?base=0' in editor.text
    )
    assert '<option value="section_chiefs">' in editor.text  # the group picker
    source = analyst.get("/studio/processes/simple_review/source")
    assert source.mimetype == "application/xml" and "BPMNShape" in source.text  # laid out for the modeler
    diff = analyst.get("/studio/processes/simple_review/diff")
    assert diff.status_code == 200 and "extra_review" in diff.text and "data-bpmn-diff" in diff.text
    assert analyst.get("/studio/processes/simple_review/versions/2").status_code == 200
    assert analyst.get("/studio/forms/simple_confirm").status_code == 200
    migrate = analyst.get("/studio/processes/simple_review/migrate")
    assert migrate.status_code == 200
    script = analyst.get("/studio/studio.js")
    assert script.mimetype == "text/javascript" and "chengxinModeler" in script.text


def test_editor_saves_drafts_with_csrf_and_reports_conflicts_as_json(app, deployed):
    analyst = page_client(app, "analyst")
    saved = xhr_post(analyst, "/studio/processes/simple_review/draft?base=0&version=1", VALID_V2)
    assert saved.status_code == 200 and saved.json["revision"] == 1
    assert (
        xhr_post(analyst, "/studio/processes/simple_review/draft?base=0", VALID_V2, csrf=False).status_code
        == 400
    )
    admin = page_client(app, "admin")
    refused = xhr_post(admin, "/studio/processes/simple_review/draft?base=0", SIMPLE)
    assert refused.status_code == 409 and "业务分析员 周敏（analyst）" in refused.json["message"]
    invalid = xhr_post(analyst, "/studio/processes/simple_review/validate", MISSING_FORM)
    assert invalid.status_code == 422 and invalid.json["error"] == "invalid_definition"
    assert any(e["element_id"] == "extra_review" for e in invalid.json["errors"])
    deployed_v2 = xhr_post(
        analyst,
        "/studio/processes/simple_review/deploy",
        json.dumps({"xml": VALID_V2, "note": "增加加审", "base_version": 1}),
        "application/json",
    )
    assert deployed_v2.status_code == 201 and deployed_v2.json["version"] == 2
    assert deployed_v2.json["migrate_url"] == "/studio/processes/simple_review/migrate?to=2"


def test_migration_page_dry_run_and_migrate_selected(app, api, deployed):
    instance = start(api)
    deploy_v2(api)
    analyst = page_client(app, "analyst")
    plan = analyst.get("/studio/processes/simple_review/migrate?from=1&to=2")
    assert f'data-instance-id="{instance["id"]}"' in plan.text and "可以迁移" in plan.text
    done = analyst.post(
        "/studio/processes/simple_review/migrate",
        {"from": "1", "to": "2", "instance_id": str(instance["id"])},
    )
    assert done.status_code == 200 and "已迁移到版本 2" in done.text
    assert api.get(f"/api/v1/process-instances/{instance['id']}", user="registrar").json["version"] == 2


def test_import_page_shows_the_report_and_opens_a_draft(app, deployed):
    analyst = page_client(app, "analyst")
    descriptive = SIMPLE.replace('isExecutable="true"', 'isExecutable="false"')
    response = analyst.post(
        "/studio/imports",
        {"file": (io.BytesIO(descriptive.encode()), "review.bpmn")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    detail = analyst.get(response.location)
    assert "描述性模型" in detail.text and "data-bpmn-viewer" in detail.text
    broken = analyst.post(
        "/studio/imports",
        {"file": (io.BytesIO(b"<definitions"), "x.bpmn")},
        content_type="multipart/form-data",
    )
    assert broken.status_code == 422 and "XML" in broken.text
    opened = analyst.post(response.location + "/draft", {})
    assert opened.status_code == 303 and opened.location == "/studio/processes/simple_review/edit"
