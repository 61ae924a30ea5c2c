"""Whistleblower fields: encrypted at rest, masked for everyone outside office/directors/deputies."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import ProcessInstance

from ..conftest import FIXTURES

PHONE = "13912345678"
NAME = "举报人张三丰"


def _start(api):
    deployed = api.deploy(*(FIXTURES / n for n in ("tip_off.bpmn", "tip_start.form", "tip_verify.form")))
    assert deployed.status_code == 201, deployed.json
    response = api.post(
        "/api/v1/process-instances",
        user="registrar",
        json={
            "process_key": "tip_off",
            "variables": {"subject_name": "某烟花爆竹经营部", "reporter_name": NAME, "reporter_phone": PHONE},
        },
    )
    assert response.status_code == 201, response.json
    return response.json


def test_state_is_encrypted_at_rest(api, session_factory):
    instance = _start(api)
    with session_factory() as s:
        state = s.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance["id"]))
    assert state.startswith("fernet+z:")  # compressed, then encrypted
    assert PHONE not in state and "13912" not in state


def test_reporter_fields_masked_for_handlers_visible_to_office_and_directors(api):
    instance = _start(api)
    task = instance["tasks"][0]
    url = f"/api/v1/process-instances/{instance['id']}"
    assert api.post(f"/api/v1/tasks/{task['id']}/claim", user="handler").status_code == 200
    for user in ("handler", "supervisor"):  # the handler, and a manager outside the three groups
        body = api.get(url, user=user).get_data(as_text=True)
        assert PHONE not in body and NAME not in body, user
        assert api.get(url, user=user).json["variables"]["reporter_phone"] == "******"
    prefill = api.get(f"/api/v1/tasks/{task['id']}", user="handler").get_data(as_text=True)
    assert PHONE not in prefill
    for user in ("registrar", "director", "deputy"):
        assert api.get(url, user=user).json["variables"]["reporter_phone"] == PHONE, user


def test_unprivileged_submission_cannot_overwrite_hidden_fields(api):
    instance = _start(api)
    task = instance["tasks"][0]
    done = api.post(
        f"/api/v1/tasks/{task['id']}/complete",
        user="handler",
        json={"data": {"reporter_phone": "13800000000", "findings": "属实"}},
    )
    assert done.status_code == 200, done.json
    variables = api.get(f"/api/v1/process-instances/{instance['id']}", user="director").json["variables"]
    assert variables["reporter_phone"] == PHONE and variables["findings"] == "属实"


def test_key_rotation_keeps_states_readable(api, app, session_factory):
    from engine.crypto import Cipher, derived_key, generate_key, reencrypt_states

    instance = _start(api)
    settings = app.extensions["chengxin"]["settings"]
    new = generate_key().encode()
    rotated = Cipher([new, derived_key(settings.secret_key)])
    with session_factory() as s:
        assert reencrypt_states(s, rotated) >= 1
    only_new = Cipher([new])
    with session_factory() as s:
        state = s.scalar(select(ProcessInstance.state).where(ProcessInstance.id == instance["id"]))
    assert PHONE in only_new.decrypt(state)
    assert PHONE not in state
