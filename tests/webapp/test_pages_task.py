"""The task page and its actions through the test client, with every refusal."""

from __future__ import annotations

import io
import re

import pytest

from tests.webapp.pages_client import PageClient, buttons, json_script, task_ids

START = {"title": "关于某企业安全隐患的反映", "subject_name": "许昌某化工有限公司", "amount": 3}
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def start(browser, **data):
    response = browser.post(
        "/start/simple_review", {"data": __import__("json").dumps({**START, **data}, ensure_ascii=False)}
    )
    assert response.status_code == 303, response.text
    return response


@pytest.fixture
def registrar(app, deployed):
    return PageClient(app, "registrar")


@pytest.fixture
def chief(app, deployed):
    return PageClient(app, "chief")


@pytest.fixture
def first_task(registrar):
    """A started simple_review: its first task (初审) is offered to the office (registrar)."""
    response = start(registrar)
    return int(response.location.rsplit("/", 1)[1])


def reviewed(registrar, first_task) -> int:
    """Registrar approves 初审; returns the 复核 task offered to the section chiefs."""
    response = registrar.complete(first_task, {"decision": "approve", "opinion": "情况属实"})
    assert response.status_code == 303 and response.location == "/inbox"
    with registrar.app.app_context():
        from engine.models import HumanTask
        from webapp.database import session

        return session().query(HumanTask).filter_by(element_id="confirm", status="open").one().id


def test_task_page_shows_form_prefill_history_and_the_holders_buttons(registrar, first_task):
    page = registrar.get(f"/tasks/{first_task}")
    assert page.status_code == 200
    form = json_script(page.text, "task-form")
    assert [c["key"] for c in form["components"]] == ["decision", "opinion"]
    data = json_script(page.text, "task-data")
    assert data["title"] == START["title"]  # instance variables feed the form's text templates
    assert "初审" in page.text and "发起" in page.text  # history
    assert 'data-form-schema="task-form"' in page.text
    # Offered to the registrar's group, not yet claimed: complete (claims it), claim, transfer, copy.
    assert buttons(page.text) == {"complete", "attachments", "claim", "assign", "cc"}
    assert (
        "剩余" in page.text and "个工作日" in page.text and re.search(r"\d{4}年\d{1,2}月\d{1,2}日", page.text)
    )


def test_claimed_task_buttons_and_unclaim(registrar, first_task):
    assert registrar.post(f"/tasks/{first_task}/claim").status_code == 303
    page = registrar.get(f"/tasks/{first_task}")
    assert "已认领，请办理。" in page.text
    assert buttons(page.text) == {"complete", "attachments", "unclaim", "assign", "delegate", "cc"}
    response = registrar.post(f"/tasks/{first_task}/unclaim")
    assert response.status_code == 303 and response.location == "/inbox"
    assert first_task in task_ids(registrar.get("/inbox?tab=claimable").text)


def test_complete_goes_to_the_inbox_with_a_confirmation_when_the_next_step_is_not_mine(
    registrar, chief, first_task
):
    confirm = reviewed(registrar, first_task)
    inbox = registrar.get("/inbox")
    assert "已办理“初审”" in inbox.text
    assert first_task in task_ids(registrar.get("/inbox?tab=done").text)
    assert confirm in task_ids(chief.get("/inbox?tab=claimable").text)


def test_complete_goes_to_my_next_task_of_the_same_instance(app, deployed):
    from engine.db import transaction
    from engine.users import create_user

    with transaction(app.extensions["chengxin"]["sessions"]) as db:
        create_user(db, "allround", "demo123", display_name="全能 员", groups=["office", "section_chiefs"])
    browser = PageClient(app, "allround")
    first = int(start(browser).location.rsplit("/", 1)[1])
    response = browser.complete(first, {"decision": "approve"})
    assert response.status_code == 303
    next_task = int(response.location.rsplit("/", 1)[1])
    assert next_task != first
    page = browser.get(response.location)
    assert "下一步仍由您办理" in page.text and "复核" in page.text


def test_validation_errors_keep_what_was_typed(registrar, first_task):
    response = registrar.complete(first_task, {"decision": "maybe", "opinion": "我写的意见"})
    assert response.status_code == 422
    assert "填写有误" in response.text
    errors = json_script(response.text, "task-errors")
    assert list(errors) == ["decision"]
    data = json_script(response.text, "task-data")
    assert data["decision"] == "maybe" and data["opinion"] == "我写的意见"
    malformed = registrar.post(f"/tasks/{first_task}/complete", {"data": "{not json"})
    assert malformed.status_code == 422 and "表单数据无效" in malformed.text


def test_completing_a_completed_task_is_409_with_a_friendly_page(registrar, first_task):
    reviewed(registrar, first_task)
    again = registrar.complete(first_task, {"decision": "approve"})
    assert again.status_code == 409
    assert "该任务已办结" in again.text and "返回待办" in again.text


def test_someone_elses_task_is_403(registrar, chief, first_task, app):
    from engine.db import transaction
    from engine.users import create_user

    # Not offered to the chief's groups at all: the page and every action are refused.
    page = chief.get(f"/tasks/{first_task}")
    assert page.status_code == 403 and "无权" in page.text
    assert chief.complete(first_task, {"decision": "approve"}).status_code == 403
    assert chief.post(f"/tasks/{first_task}/claim").status_code == 403
    # Offered to a colleague's group but claimed by the registrar: visible, not actionable.
    with transaction(app.extensions["chengxin"]["sessions"]) as db:
        create_user(db, "clerk", "demo123", display_name="收发员", groups=["office"])
    registrar.post(f"/tasks/{first_task}/claim")
    clerk = PageClient(app, "clerk")
    page = clerk.get(f"/tasks/{first_task}")
    assert page.status_code == 200 and buttons(page.text) == set()
    assert "由 登记员 王芳 办理中" in page.text
    refused = clerk.complete(first_task, {"decision": "approve"})
    assert refused.status_code == 403 and "该任务不由您办理" in refused.text
    assert clerk.post(f"/tasks/{first_task}/claim").status_code == 403
    assert clerk.post(f"/tasks/{first_task}/send-back", {"comment": "x"}).status_code == 403
    assert registrar.get(f"/tasks/{first_task}").status_code == 200


def test_unknown_task_is_404_page(registrar):
    response = registrar.get("/tasks/999999")
    assert response.status_code == 404 and "<html" in response.text


def test_assign_hands_the_task_over_and_tells_the_new_holder(registrar, first_task, app):
    response = registrar.post(f"/tasks/{first_task}/assign", {"username": "handler", "comment": "请协助"})
    assert response.status_code == 303 and response.location == "/inbox"
    assert "已转办给 承办人 李强" in registrar.get("/inbox").text
    handler = PageClient(app, "handler")
    assert first_task in task_ids(handler.get("/inbox").text)
    assert "转办给您：初审" in handler.get("/notifications").text
    history = handler.get(f"/tasks/{first_task}").text
    assert "转办" in history and "请协助" in history
    empty = handler.post(f"/tasks/{first_task}/assign", {"username": ""})
    assert empty.status_code == 303 and "请选择人员" in handler.get(f"/tasks/{first_task}").text
    unknown = handler.post(f"/tasks/{first_task}/assign", {"username": "ghost"})
    assert unknown.status_code == 303 and "用户 ghost 不存在" in handler.get(f"/tasks/{first_task}").text


def test_delegate_comes_back_to_the_owner_with_the_answer(registrar, first_task, app):
    registrar.post(f"/tasks/{first_task}/claim")
    response = registrar.post(f"/tasks/{first_task}/delegate", {"username": "legal"})
    assert response.status_code == 303
    legal = PageClient(app, "legal")
    page = legal.get(f"/tasks/{first_task}")
    assert buttons(page.text) == {"complete", "attachments", "cc"}  # a delegate cannot pass it on
    assert legal.complete(first_task, {"decision": "reject", "opinion": "建议不予通过"}).status_code == 303
    back = registrar.get(f"/tasks/{first_task}")
    assert json_script(back.text, "task-data")["decision"] == "reject"
    assert "委派的任务已办理，请审核" in registrar.get("/notifications").text
    assert "complete" in buttons(back.text)


def test_send_back_returns_the_matter_to_the_previous_person(registrar, chief, first_task):
    confirm = reviewed(registrar, first_task)
    page = chief.get(f"/tasks/{confirm}")
    assert "send-back" in buttons(page.text)
    no_reason = chief.post(f"/tasks/{confirm}/send-back", {"comment": "  "})
    assert no_reason.status_code == 303
    assert "退回必须填写理由" in chief.get(f"/tasks/{confirm}").text
    response = chief.post(f"/tasks/{confirm}/send-back", {"comment": "请补充现场照片"})
    assert response.status_code == 303 and response.location == "/inbox"
    reopened = task_ids(registrar.get("/inbox").text)
    assert len(reopened) == 1
    page = registrar.get(f"/tasks/{reopened[0]}")
    assert "请补充现场照片" in page.text and "退回" in page.text
    assert "新待办：初审" in registrar.get("/notifications").text
    assert confirm in task_ids(chief.get("/inbox?tab=done").text)


def test_first_step_offers_no_send_back(registrar, first_task):
    assert "send-back" not in buttons(registrar.get(f"/tasks/{first_task}").text)


def test_urge_is_for_managers_and_the_starter_and_not_repeated_at_once(registrar, chief, first_task, app):
    confirm = reviewed(registrar, first_task)
    assert "urge" in buttons(registrar.get(f"/tasks/{confirm}").text)
    assert "urge" not in buttons(chief.get(f"/tasks/{confirm}").text)  # the chief holds it
    response = registrar.post(f"/tasks/{confirm}/urge", {"message": "请尽快复核"})
    assert response.status_code == 303
    assert "已催办" in registrar.get(f"/tasks/{confirm}").text
    notices = chief.get("/notifications").text
    assert "催办：复核" in notices and "请尽快复核" in notices
    again = registrar.post(f"/tasks/{confirm}/urge", {})
    assert again.status_code == 303
    assert "刚刚已催办过" in registrar.get(f"/tasks/{confirm}").text
    legal = PageClient(app, "legal")
    assert legal.post(f"/tasks/{confirm}/urge", {}).status_code == 403
    director = PageClient(app, "director")
    assert "urge" in buttons(director.get(f"/tasks/{confirm}").text)


def test_cc_gives_a_read_only_copy(registrar, first_task, app):
    response = registrar.post(
        f"/tasks/{first_task}/cc", {"usernames": ["legal", "handler"], "note": "供参阅"}
    )
    assert response.status_code == 303
    assert "已抄送给" in registrar.get(f"/tasks/{first_task}").text
    legal = PageClient(app, "legal")
    cc_tab = legal.get("/inbox?tab=cc")
    assert first_task in task_ids(cc_tab.text) and "未读" in cc_tab.text
    page = legal.get(f"/tasks/{first_task}")
    assert page.status_code == 200 and "只读副本" in page.text
    assert buttons(page.text) == set() and "data-form-readonly" in page.text
    assert "未读" not in legal.get("/inbox?tab=cc").text
    assert legal.complete(first_task, {"decision": "approve"}).status_code == 403
    to_self = registrar.post(f"/tasks/{first_task}/cc", {"usernames": ["registrar"]})
    assert to_self.status_code == 303 and "不能抄送给自己" in registrar.get(f"/tasks/{first_task}").text
    nobody = PageClient(app, "deputy").post(f"/tasks/{first_task}/cc", {"usernames": ["legal"]})
    assert nobody.status_code == 303  # a manager is involved in every matter
    assert (
        PageClient(app, "analyst").post(f"/tasks/{first_task}/cc", {"usernames": ["legal"]}).status_code
        == 403
    )


def _upload(browser, task_id, name, content, field="files"):
    return browser.post(
        f"/tasks/{task_id}/attachments",
        {field: (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_attachments_upload_download_and_visibility(registrar, first_task, app):
    response = _upload(registrar, first_task, "现场照片说明.pdf", PDF)
    assert response.status_code == 303
    page = registrar.get(f"/tasks/{first_task}")
    assert "已上传 1 个附件" in page.text and "现场照片说明.pdf" in page.text
    [link] = re.findall(r'href="(/attachments/[0-9a-f]+)"', page.text)
    download = registrar.get(link)
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert "attachment" in download.headers["Content-Disposition"]
    legal = PageClient(app, "legal")
    assert legal.get(link).status_code == 404
    registrar.post(f"/tasks/{first_task}/cc", {"usernames": ["legal"]})
    assert legal.get(link).status_code == 200
    assert legal.get("/attachments/doesnotexist").status_code == 404


def test_upload_refuses_wrong_types_disguised_files_and_nothing(registrar, first_task):
    wrong = _upload(registrar, first_task, "脚本.exe", b"MZ\x90\x00")
    assert wrong.status_code == 422 and "不支持的文件类型" in wrong.text
    disguised = _upload(registrar, first_task, "伪装.pdf", b"<html>not a pdf</html>")
    assert disguised.status_code == 422 and "内容与扩展名不符" in disguised.text
    nothing = registrar.post(f"/tasks/{first_task}/attachments", {}, content_type="multipart/form-data")
    assert nothing.status_code == 422 and "请选择要上传的文件" in nothing.text
    assert "暂无附件" in registrar.get(f"/tasks/{first_task}").text


def test_upload_over_the_limit_is_413(registrar, first_task, settings):
    big = PDF + b"0" * (20 * 1024 * 1024)
    response = _upload(registrar, first_task, "大文件.pdf", big)
    assert response.status_code == 413
    assert "文件过大" in response.text and "<html" in response.text
    store = settings.instance_dir / "files"
    assert not store.exists() or not [p for p in store.rglob("*") if p.is_file()]


def test_the_store_refuses_a_file_over_its_own_limit_and_leaves_nothing(settings, session):
    from engine.attachments import UploadBatch
    from engine.errors import TooLarge

    batch = UploadBatch(settings)
    with pytest.raises(TooLarge):
        batch.save(session, "registrar", io.BytesIO(PDF * 100), "a.pdf", max_bytes=len(PDF) * 10)
    assert not [p for p in (settings.instance_dir / "files").rglob("*") if p.is_file()]


def test_upload_keeps_what_was_typed_as_a_draft(registrar, first_task):
    response = registrar.post(
        f"/tasks/{first_task}/attachments",
        {"files": (io.BytesIO(PDF), "a.pdf"), "data": '{"opinion": "先写一半"}'},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    assert json_script(registrar.get(f"/tasks/{first_task}").text, "task-data")["opinion"] == "先写一半"


def test_files_sent_with_complete_go_into_the_filepicker_field(app, tmp_path, api):
    form = tmp_path / "with_files.form"
    form.write_text(
        '{"id": "with_files", "type": "default", "schemaVersion": 16, "components": ['
        '{"type": "filepicker", "key": "evidence", "label": "证据材料", "multiple": true,'
        ' "validate": {"required": true}},'
        '{"type": "textarea", "key": "opinion", "label": "审批意见"}]}',
        encoding="utf-8",
    )
    start_form = tmp_path / "plain_start.form"
    start_form.write_text(
        '{"id": "plain_start", "type": "default", "schemaVersion": 16, "components": ['
        '{"type": "textfield", "key": "title", "label": "标题"}]}',
        encoding="utf-8",
    )
    bpmn = tmp_path / "evidence_flow.bpmn"
    bpmn.write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://chengxin.local/test">
  <bpmn:process id="evidence_flow" name="材料收集" isExecutable="true">
    <bpmn:startEvent id="start" camunda:formRef="plain_start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="collect" />
    <bpmn:userTask id="collect" name="收集材料" camunda:candidateGroups="office" camunda:formRef="with_files" />
    <bpmn:sequenceFlow id="f2" sourceRef="collect" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>""",
        encoding="utf-8",
    )
    assert api.deploy(bpmn, form, start_form).status_code == 201
    browser = PageClient(app, "registrar")
    response = browser.post("/start/evidence_flow", {"data": '{"title": "材料"}'})
    task_id = int(response.location.rsplit("/", 1)[1])
    page = browser.get(f"/tasks/{task_id}")
    assert 'name="files.evidence"' in page.text
    assert [c["key"] for c in json_script(page.text, "task-form")["components"]] == ["opinion"]
    missing = browser.complete(task_id, {"opinion": "无"})
    assert missing.status_code == 422 and "此项为必填项" in missing.text
    done = browser.complete(task_id, {"opinion": "齐全"}, **{"files.evidence": (io.BytesIO(PDF), "证据.pdf")})
    assert done.status_code == 303
    instance = api.get("/api/v1/process-instances?process_key=evidence_flow", user="director").json["items"][
        0
    ]
    detail = api.get(f"/api/v1/process-instances/{instance['id']}", user="director").json
    [attachment_id] = detail["variables"]["evidence"]
    assert browser.get(f"/attachments/{attachment_id}").data == PDF
