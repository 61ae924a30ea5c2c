"""The header shows each area only to the roles that may use it."""

from __future__ import annotations

import pytest

from .pages_client import PageClient

AREAS = {"/monitor/": "督查", "/studio/": "流程设计", "/admin/": "系统管理"}


@pytest.mark.parametrize(
    "user, visible",
    [
        ("handler", set()),
        ("director", {"/monitor/"}),
        ("analyst", {"/studio/"}),
        ("admin", {"/monitor/", "/studio/", "/admin/"}),
    ],
)
def test_navigation_by_role(app, user, visible):
    page = PageClient(app, user).get("/inbox").get_data(as_text=True)
    shown = {path for path, label in AREAS.items() if f'href="{path}"' in page and label in page}
    assert shown == visible
