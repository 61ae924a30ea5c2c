"""待办: the inbox tabs, filters, sorting and pages."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import time_machine

from tests.webapp.pages_client import PageClient, task_ids


def start(browser, title="关于某企业安全隐患的反映", subject="许昌某化工有限公司") -> int:
    response = browser.post(
        "/start/simple_review",
        {"data": json.dumps({"title": title, "subject_name": subject}, ensure_ascii=False)},
    )
    assert response.status_code == 303, response.text
    return int(response.location.rsplit("/", 1)[1])


def rows(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def test_tabs_list_what_belongs_in_them(app, deployed):
    registrar, chief = PageClient(app, "registrar"), PageClient(app, "chief")
    first = start(registrar)
    assert task_ids(registrar.get("/inbox").text) == []  # offered, not yet mine
    assert task_ids(registrar.get("/inbox?tab=claimable").text) == [first]
    registrar.post(f"/tasks/{first}/claim")
    mine = registrar.get("/inbox")
    assert task_ids(mine.text) == [first]
    [row] = rows(mine.text)
    for cell in ("初审", "简单审核", "LC", "许昌某化工有限公司", "剩余", "个工作日"):
        assert cell in row
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", row)
    registrar.complete(first, {"decision": "approve"})
    assert task_ids(registrar.get("/inbox?tab=done").text) == [first]
    started = registrar.get("/inbox?tab=started").text
    [row] = rows(started)
    assert "复核" in row and "股室负责人" in row
    [confirm] = task_ids(chief.get("/inbox?tab=claimable").text)
    chief.post(f"/tasks/{confirm}/cc", {"usernames": ["legal"]})
    assert task_ids(PageClient(app, "legal").get("/inbox?tab=cc").text) == [confirm]
    assert task_ids(chief.get("/inbox?tab=cc").text) == []


def test_counts_on_tabs_and_in_the_header(app, deployed):
    registrar = PageClient(app, "registrar")
    for _ in range(2):
        start(registrar)
    page = registrar.get("/inbox?tab=claimable")
    assert re.search(r"可认领 <span class=\"badge badge-info\">2</span>", page.text)
    [first, _second] = task_ids(page.text)
    registrar.post(f"/tasks/{first}/claim")
    header = registrar.get("/inbox").text.split("</header>")[0]
    assert re.search(r'class="nav-badge"[^>]*>1</span>', header)


def test_text_search_on_business_key_and_subject(app, deployed):
    registrar = PageClient(app, "registrar")
    start(registrar, subject="许昌某化工有限公司")
    start(registrar, subject="魏都区某商贸公司")
    assert len(rows(registrar.get("/inbox?tab=claimable&q=商贸").text)) == 1
    assert len(rows(registrar.get("/inbox?tab=claimable&q=100%").text)) == 1  # "%" is not a wildcard
    business_key = re.search(r"(LC\d+)", registrar.get("/inbox?tab=claimable&q=商贸").text).group(1)
    found = rows(registrar.get(f"/inbox?tab=claimable&q={business_key}").text)
    assert len(found) == 1 and "魏都区某商贸公司" in found[0]
    assert "没有符合条件的事项" in registrar.get("/inbox?tab=claimable&q=不存在的单位").text


def test_process_filter(app, deployed):
    registrar = PageClient(app, "registrar")
    start(registrar)
    assert len(rows(registrar.get("/inbox?tab=claimable&process=simple_review").text)) == 1
    assert "没有符合条件的事项" in registrar.get("/inbox?tab=claimable&process=waiting_flow").text
    page = registrar.get("/inbox?tab=claimable")
    assert '<option value="simple_review">简单审核</option>' in page.text


def test_sla_filter_and_colours_follow_the_working_day_calendar(app, deployed, api):
    registrar = PageClient(app, "registrar")
    first = start(registrar)
    page = registrar.get("/inbox?tab=claimable")
    assert "badge-sla-normal" in page.text
    assert task_ids(registrar.get("/inbox?tab=claimable&sla=normal").text) == [first]
    assert task_ids(registrar.get("/inbox?tab=claimable&sla=overdue").text) == []
    due_at = datetime.fromisoformat(api.get(f"/api/v1/tasks/{first}", user="registrar").json["due_at"])
    with time_machine.travel(due_at + timedelta(hours=1), tick=False):
        late = registrar.get("/inbox?tab=claimable&sla=overdue")
        assert task_ids(late.text) == [first]
        assert "badge-sla-overdue" in late.text and "超期" in late.text
        assert task_ids(registrar.get("/inbox?tab=claimable&sla=normal").text) == []
        assert task_ids(registrar.get("/inbox?tab=started&sla=overdue").text) == [first]


def test_pages_and_sort(app, deployed):
    registrar = PageClient(app, "registrar")
    created = [start(registrar, subject=f"单位{n:02d}") for n in range(23)]
    first_page = registrar.get("/inbox?tab=claimable&sort=newest")
    assert task_ids(first_page.text) == list(reversed(created))[:20]
    assert "共 23 条" in first_page.text and 'href="/inbox?page=2&amp;tab=claimable' in first_page.text
    second = registrar.get("/inbox?tab=claimable&sort=newest&page=2")
    assert task_ids(second.text) == list(reversed(created))[20:]
    by_due = registrar.get("/inbox?tab=claimable&sort=due")
    assert task_ids(by_due.text) == created[:20]
    assert registrar.get("/inbox?tab=claimable&page=x").status_code == 200
    assert registrar.get("/inbox?tab=nonsense&sort=nonsense&sla=nonsense").status_code == 200


def test_quick_claim_from_the_list(app, deployed):
    registrar = PageClient(app, "registrar")
    first = start(registrar)
    page = registrar.get("/inbox?tab=claimable")
    assert f'action="/tasks/{first}/claim"' in page.text
    assert registrar.post(f"/tasks/{first}/claim").status_code == 303
    assert task_ids(registrar.get("/inbox").text) == [first]
