"""消息: notifications of new tasks, the unread counter, opening and marking read."""

from __future__ import annotations

import json
import re

from tests.webapp.pages_client import PageClient, task_ids


def test_new_task_notifies_the_candidates_and_opens_the_task(app, deployed):
    registrar, chief = PageClient(app, "registrar"), PageClient(app, "chief")
    response = registrar.post("/start/simple_review", {"data": json.dumps({"title": "测试"})})
    first = int(response.location.rsplit("/", 1)[1])
    assert "没有消息" in registrar.get("/notifications").text  # nobody is told of their own work
    registrar.complete(first, {"decision": "approve"})
    assert chief.get("/notifications/unread-count").json == {"count": 1}
    page = chief.get("/notifications")
    assert "新待办：复核" in page.text and "未读" in page.text
    header = chief.get("/inbox").text.split("</header>")[0]
    assert re.search(r'data-unread-url="/notifications/unread-count"[^>]*>1</span>', header)
    [link] = re.findall(r'href="(/notifications/\d+)"', page.text)
    opened = chief.get(link)
    [confirm] = task_ids(chief.get("/inbox?tab=claimable").text)
    assert opened.status_code == 302 and opened.location == f"/tasks/{confirm}"
    assert chief.get("/notifications/unread-count").json == {"count": 0}
    assert "已读" in chief.get("/notifications").text
    assert registrar.get(link).status_code == 404  # someone else's message


def test_mark_all_read_and_unread_filter(app, deployed):
    registrar, chief = PageClient(app, "registrar"), PageClient(app, "chief")
    for n in range(3):
        response = registrar.post("/start/simple_review", {"data": json.dumps({"title": f"测试{n}"})})
        registrar.complete(int(response.location.rsplit("/", 1)[1]), {"decision": "approve"})
    assert chief.get("/notifications/unread-count").json == {"count": 3}
    assert len(re.findall(r'href="/notifications/\d+"', chief.get("/notifications?unread=1").text)) == 3
    response = chief.post("/notifications/read", {"all": "1"})
    assert response.status_code == 303
    assert "已将 3 条消息标为已读" in chief.get("/notifications").text
    assert "没有消息" in chief.get("/notifications?unread=1").text
    assert chief.get("/notifications/unread-count").json == {"count": 0}
