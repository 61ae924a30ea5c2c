"""发起: which processes a user may start, and the start form with its refusals."""

from __future__ import annotations

import io
import json

from tests.webapp.pages_client import PageClient, json_script

START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司"}
PDF = b"%PDF-1.4\n%%EOF\n"


def test_start_list_shows_processes_for_the_users_groups(app, deployed):
    registrar = PageClient(app, "registrar")
    page = registrar.get("/start")
    assert page.status_code == 200
    assert 'href="/start/simple_review"' in page.text and "简单审核" in page.text
    assert "waiting_flow" not in page.text  # no start form: started by the system, not here
    legal = PageClient(app, "legal")
    assert "/start/simple_review" not in legal.get("/start").text
    assert "没有可以发起的流程" in legal.get("/start").text
    assert legal.get("/start/simple_review").status_code == 403
    assert legal.post("/start/simple_review", {"data": json.dumps(START)}).status_code == 403
    assert registrar.get("/start/waiting_flow").status_code == 404
    assert registrar.get("/start/no_such_process").status_code == 404


def test_start_form_page_mounts_the_form_viewer(app, deployed):
    page = PageClient(app, "registrar").get("/start/simple_review")
    assert 'data-form-schema="start-form"' in page.text
    assert "/static/dist/form-viewer.js" in page.text
    assert [c["key"] for c in json_script(page.text, "start-form")["components"]] == [
        "title",
        "subject_name",
        "amount",
    ]


def test_start_with_errors_keeps_what_was_typed(app, deployed):
    browser = PageClient(app, "registrar")
    response = browser.post(
        "/start/simple_review", {"data": json.dumps({"subject_name": "某公司", "amount": "many"})}
    )
    assert response.status_code == 422
    errors = json_script(response.text, "start-errors")
    assert set(errors) == {"title", "amount"}
    assert json_script(response.text, "start-data") == {"subject_name": "某公司", "amount": "many"}
    assert "共 0 条" in browser.get("/inbox?tab=started").text


def test_start_goes_to_my_first_task_with_the_business_key(app, deployed):
    browser = PageClient(app, "registrar")
    response = browser.post("/start/simple_review", {"data": json.dumps(START, ensure_ascii=False)})
    assert response.status_code == 303 and response.location.startswith("/tasks/")
    page = browser.get(response.location)
    assert "已发起，业务编号 LC" in page.text and "初审" in page.text
    started = browser.get("/inbox?tab=started")
    assert "许昌某化工有限公司" in started.text and "初审" in started.text


def _deploy_start_with_files(api, tmp_path):
    (tmp_path / "files_start.form").write_text(
        json.dumps(
            {
                "id": "files_start",
                "type": "default",
                "schemaVersion": 16,
                "components": [
                    {"type": "textfield", "key": "title", "label": "标题", "validate": {"required": True}},
                    {"type": "filepicker", "key": "attachments", "label": "附件", "multiple": True},
                ],
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (tmp_path / "files_flow.bpmn").write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://chengxin.local/test">
  <bpmn:process id="files_flow" name="带附件登记" isExecutable="true">
    <bpmn:laneSet id="ls"><bpmn:lane id="l1" name="办公室"><bpmn:flowNodeRef>start</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l2" name="法规股"><bpmn:flowNodeRef>check</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>
    <bpmn:startEvent id="start" camunda:formRef="files_start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="check" />
    <bpmn:userTask id="check" name="审核" camunda:formRef="simple_confirm" />
    <bpmn:sequenceFlow id="f2" sourceRef="check" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>""",
        encoding="utf-8",
    )
    paths = [tmp_path / "files_flow.bpmn", tmp_path / "files_start.form"]
    assert api.deploy(*paths).status_code == 201


def test_start_rule_follows_the_start_events_lane(app, deployed, api, tmp_path):
    _deploy_start_with_files(api, tmp_path)
    # The first task is the legal section's, but the start event sits in the office's lane.
    assert "/start/files_flow" in PageClient(app, "registrar").get("/start").text
    assert "/start/files_flow" not in PageClient(app, "legal").get("/start").text


def test_start_form_files_go_into_its_filepicker(app, deployed, api, tmp_path):
    _deploy_start_with_files(api, tmp_path)
    browser = PageClient(app, "registrar")
    page = browser.get("/start/files_flow")
    assert 'name="files.attachments"' in page.text and 'enctype="multipart/form-data"' in page.text
    response = browser.post(
        "/start/files_flow",
        {"data": json.dumps({"title": "带附件"}), "files.attachments": [(io.BytesIO(PDF), "举报信.pdf")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303 and response.location == "/inbox?tab=started"
    instance = api.get("/api/v1/process-instances?process_key=files_flow", user="director").json["items"][0]
    detail = api.get(f"/api/v1/process-instances/{instance['id']}", user="director").json
    [attachment_id] = detail["variables"]["attachments"]
    assert browser.get(f"/attachments/{attachment_id}").data == PDF
    legal = PageClient(app, "legal")
    [task] = detail["tasks"]
    page = legal.get(f"/tasks/{task['id']}")
    assert "举报信.pdf" in page.text
    assert legal.get(f"/attachments/{attachment_id}").status_code == 200


def test_start_with_a_bad_file_changes_nothing(app, deployed, api, tmp_path, settings):
    _deploy_start_with_files(api, tmp_path)
    browser = PageClient(app, "registrar")
    response = browser.post(
        "/start/files_flow",
        {"data": json.dumps({"title": "带附件"}), "files.attachments": [(io.BytesIO(b"MZ"), "x.exe")]},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and "不支持的文件类型" in response.text
    assert json_script(response.text, "start-data") == {"title": "带附件"}
    assert api.get("/api/v1/process-instances?process_key=files_flow", user="director").json["total"] == 0
    store = settings.instance_dir / "files"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
    invalid = browser.post(
        "/start/files_flow",
        {"data": json.dumps({"title": ""}), "files.attachments": [(io.BytesIO(PDF), "a.pdf")]},
        content_type="multipart/form-data",
    )
    assert invalid.status_code == 422
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]
    too_big = browser.post(
        "/start/files_flow",
        {"data": "{}", "files.attachments": [(io.BytesIO(PDF + b"0" * (21 * 1024 * 1024)), "big.pdf")]},
        content_type="multipart/form-data",
    )
    assert too_big.status_code == 413
