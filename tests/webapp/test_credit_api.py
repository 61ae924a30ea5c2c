"""The credit archive over HTTP: staff list/detail and the masked public list."""

from __future__ import annotations

import pytest

from engine.db import transaction
from engine.demo_archive import seed_demo_archive


@pytest.fixture
def archive(app):
    with transaction(app.extensions["chengxin"]["sessions"]) as s:
        return seed_demo_archive(s)


def test_staff_list_filters_and_detail(api, archive):
    assert api.get("/api/v1/credit-records").status_code == 401
    listing = api.get("/api/v1/credit-records?per_page=200", user="handler").json
    assert listing["total"] == archive == 30
    serious = api.get("/api/v1/credit-records?severity=serious&per_page=200", user="handler").json
    assert serious["total"] > 0 and all(r["severity"] == "serious" for r in serious["items"])
    revoked = api.get("/api/v1/credit-records?status=revoked", user="handler").json["items"]
    detail = api.get(f"/api/v1/credit-records/{revoked[0]['id']}", user="handler").json
    assert detail["status"] == "revoked"
    assert [h["to_status"] for h in detail["history"]][-1] == "revoked"
    assert all(
        {"at", "user", "from_status", "to_status", "reason", "instance_id"} <= set(h)
        for h in detail["history"]
    )
    assert api.get("/api/v1/credit-records?status=bogus", user="handler").status_code == 422
    assert api.get("/api/v1/credit-records/999999", user="handler").status_code == 404


def test_public_list_hides_and_masks(api, archive):
    public = api.get("/api/v1/public/credit-records?per_page=200")
    assert public.status_code == 200
    items = public.json["items"]
    assert {r["status"] for r in items} <= {"published", "under_objection", "corrected"}
    assert "under_objection" in {r["status"] for r in items}
    staff = api.get("/api/v1/credit-records?per_page=200", user="handler").json["items"]
    hidden = {r["id"] for r in staff if r["status"] in ("revoked", "repaired", "expired")}
    assert hidden and not hidden & {r["id"] for r in items}
    people = [r for r in items if r["subject_type"] == "person"]
    assert people, "the demo archive has civil servants on the public list"
    for record in people:
        code = record["subject_code"]
        assert code[4:-4] == "*" * 10, code
        full = next(r["subject_code"] for r in staff if r["id"] == record["id"])
        assert full not in public.get_data(as_text=True)
    assert all("history" not in r for r in items)
