"""Hostile and broken uploads to POST /api/v1/deployments: refused with a 4xx, never a 500,
nothing deployed, and no file content of the server (/etc/passwd) echoed back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine import definitions

from ..conftest import FIXTURES

PASSWD = Path("/etc/passwd")
PASSWD_LINE = PASSWD.read_text().splitlines()[0] if PASSWD.exists() else "root:x:0:0:"
SIMPLE = (FIXTURES / "simple_review.bpmn").read_bytes()
FORMS = [FIXTURES / n for n in ("simple_start.form", "simple_review.form", "simple_confirm.form")]

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE bpmn:definitions [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="xxe" name="&x;" isExecutable="true"><bpmn:startEvent id="s" /></bpmn:process>
</bpmn:definitions>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><d/>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE d SYSTEM "http://127.0.0.1:9/evil.dtd"><d/>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""
XINCLUDE = SIMPLE.replace(
    b'<bpmn:process id="simple_review" name="\xe7\xae\x80\xe5\x8d\x95\xe5\xae\xa1\xe6\xa0\xb8" isExecutable="true">',
    b'<bpmn:process id="simple_review" name="x" isExecutable="true">'
    b'<bpmn:documentation><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
    b'href="file:///etc/passwd" parse="text"/></bpmn:documentation>',
)


def deploy(api, *files: tuple[str, bytes], user="analyst"):
    return api.client.post(
        "/api/v1/deployments",
        headers={"Authorization": f"Bearer {api.token(user)}"},
        data={"files": [(io.BytesIO(raw), name) for name, raw in files]},
        content_type="multipart/form-data",
    )


def definitions_listed(api) -> list:
    return api.get("/api/v1/process-definitions?all_versions=true", user="analyst").json["items"]


def assert_refused(api, response, status, before):
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert response.is_json and response.json["error"] in ("invalid_definition", "too_large")
    assert PASSWD_LINE not in body and "root:x:0:0" not in body
    assert definitions_listed(api) == before


@pytest.fixture
def before(api, deployed):
    """What is deployed before the attack: the simple bundle."""
    listed = definitions_listed(api)
    assert listed
    return listed


@pytest.mark.parametrize(
    "name, payload",
    [
        ("malformed.bpmn", b"<bpmn:definitions><bpmn:process"),
        ("not-xml.bpmn", b"\x00\xff\xfe binary garbage"),
        ("empty.bpmn", b""),
        ("xxe.bpmn", XXE),
        (
            "xxe-utf16.bpmn",
            XXE.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"),
        ),
        ("parameter-entity.bpmn", PARAMETER_ENTITY),
        ("external-dtd.dmn", EXTERNAL_DTD),
        ("laughs.bpmn", LAUGHS),
        ("nested.bpmn", b"<a>" * 100 + b"</a>" * 100),
        ("deeply-nested.bpmn", b"<a>" * 100_000 + b"</a>" * 100_000),
        ("wide-open.bpmn", b"<a>" * 100_000),
        ("evil.exe", b"MZ\x90\x00"),
        ("deep.form", b'{"id": "f", "components": [' * 1000),
        ("deep-closed.form", b'{"id": "f", "c": ' + b"[" * 200 + b"]" * 200 + b"}"),
    ],
)
def test_hostile_files_are_refused_and_nothing_is_deployed(api, before, name, payload):
    response = deploy(api, (name, payload), *((p.name, p.read_bytes()) for p in FORMS))
    assert_refused(api, response, 422, before)
    assert response.json["errors"] and all("file" in e and "message" in e for e in response.json["errors"])


def test_a_bad_file_spoils_a_good_bundle(api, before):
    good = SIMPLE.replace(b'id="simple_review"', b'id="fresh_review"')
    response = deploy(
        api, ("fresh.bpmn", good), ("xxe.bpmn", XXE), *((p.name, p.read_bytes()) for p in FORMS)
    )
    assert_refused(api, response, 422, before)
    assert {e["file"] for e in response.json["errors"]} == {"xxe.bpmn"}


def test_a_file_over_the_limit_is_413(api, before):
    padding = b"<!--" + b"x" * definitions.MAX_FILE_BYTES + b"-->"
    response = deploy(
        api, ("big.bpmn", SIMPLE.replace(b"<bpmn:definitions", padding + b"<bpmn:definitions", 1))
    )
    assert_refused(api, response, 413, before)


def test_too_many_files_is_413(api, before):
    files = [(f"f{n}.form", b'{"id": "f%d", "components": []}' % n) for n in range(definitions.MAX_FILES + 1)]
    assert_refused(api, deploy(api, *files), 413, before)


def test_a_request_over_the_body_limit_is_413(api, app, before):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = deploy(api, ("huge.bpmn", b" " * (limit + 1)))
    assert response.status_code == 413 and response.json["error"] == "too_large"
    assert definitions_listed(api) == before


def test_xinclude_is_not_processed(api, before):
    response = deploy(api, ("simple_review.bpmn", XINCLUDE), *((p.name, p.read_bytes()) for p in FORMS))
    assert response.status_code in (200, 201, 422), response.get_data(as_text=True)
    assert PASSWD_LINE not in response.get_data(as_text=True)
    if response.status_code == 201:  # deployed as written: the include stays an inert element
        xml = api.get("/api/v1/process-definitions/simple_review/xml", user="analyst").get_data(as_text=True)
        assert "xi:include" in xml and PASSWD_LINE not in xml


def test_staff_cannot_deploy_even_a_harmless_file(api, before):
    response = deploy(api, ("simple_review.bpmn", SIMPLE), user="handler")
    assert response.status_code == 403
    assert definitions_listed(api) == before
