"""Tests for engine.forms: form-js schemas, domain formats, lint."""

import copy

import pytest
from marshmallow import Schema

from engine.errors import DefinitionError, ValidationFailed
from engine.forms import (
    MAX_DEPTH,
    MAX_STRING_LENGTH,
    MAX_VALUES,
    build_schema,
    confidential_keys,
    form_fields,
    id_card_check_char,
    is_valid_id_card,
    is_valid_phone,
    is_valid_uscc,
    lint_form,
    uscc_check_char,
    validate_submission,
)

# Check characters below were computed by a separate script (weights 3**i mod 31 and
# 2**(17-i) mod 11), not by engine.forms; 11010519491231002X is the standard's sample.
VALID_USCC = "91411002MA40A1B2C2"
OTHER_VALID_USCC = ("91110000100000000R", "124110020057732297")
VALID_ID = "41100219850312001X"
OTHER_VALID_IDS = ("11010519491231002X", "411002200002290029", "411002198512310472")


def complaint_form() -> dict:
    """A trimmed 投诉举报登记 form using most component types."""
    return {
        "id": "complaint_register",
        "type": "default",
        "schemaVersion": 17,
        "components": [
            {"type": "text", "text": "# 投诉举报登记"},
            {
                "type": "select",
                "key": "channel",
                "label": "来源渠道",
                "validate": {"required": True},
                "values": [
                    {"label": "12350 热线", "value": "hotline_12350"},
                    {"label": "12345 工单", "value": "order_12345"},
                    {"label": "来信", "value": "letter"},
                ],
            },
            {
                "type": "datetime",
                "key": "received_at",
                "label": "收到时间",
                "subtype": "datetime",
                "validate": {"required": True},
            },
            {"type": "checkbox", "key": "anonymous", "label": "匿名举报"},
            {
                "type": "group",
                "label": "举报人信息",
                "properties": {"confidential": "true"},
                "conditional": {"hide": "=anonymous"},
                "components": [
                    {
                        "type": "textfield",
                        "key": "reporter_name",
                        "label": "举报人姓名",
                        "validate": {"required": True, "maxLength": 20},
                    },
                    {
                        "type": "textfield",
                        "key": "reporter_phone",
                        "label": "联系电话",
                        "properties": {"format": "phone"},
                    },
                    {
                        "type": "textfield",
                        "key": "reporter_id_number",
                        "label": "身份证号码",
                        "properties": {"format": "id_card"},
                    },
                ],
            },
            {
                "type": "textfield",
                "key": "subject_name",
                "label": "被举报单位",
                "validate": {"required": True, "minLength": 2, "maxLength": 50},
            },
            {
                "type": "textfield",
                "key": "subject_uscc",
                "label": "统一社会信用代码",
                "properties": {"format": "uscc"},
            },
            {
                "type": "radio",
                "key": "category",
                "label": "类别",
                "validate": {"required": True},
                "values": [
                    {"label": "安全生产违法", "value": "safety"},
                    {"label": "失信行为", "value": "credit"},
                ],
            },
            {
                "type": "checklist",
                "key": "tags",
                "label": "标签",
                "values": [{"label": "紧急", "value": "urgent"}, {"label": "重复", "value": "repeat"}],
            },
            {
                "type": "textarea",
                "key": "content",
                "label": "举报内容",
                "validate": {"required": True},
            },
            {
                "type": "number",
                "key": "people_affected",
                "label": "涉及人数",
                "decimalDigits": 0,
                "validate": {"min": 0, "max": 10000},
            },
            {
                "type": "datetime",
                "key": "incident_date",
                "label": "发生日期",
                "subtype": "date",
            },
            {"type": "filepicker", "key": "attachments", "label": "附件", "multiple": True},
            {"type": "separator"},
            {"type": "button", "action": "submit", "label": "提交"},
        ],
    }


def complete_submission() -> dict:
    return {
        "channel": "hotline_12350",
        "received_at": "2026-03-02T09:30:00+08:00",
        "anonymous": False,
        "reporter_name": "张三",
        "reporter_phone": "13800138000",
        "reporter_id_number": VALID_ID,
        "subject_name": "某某化工有限公司",
        "subject_uscc": VALID_USCC,
        "category": "safety",
        "tags": ["urgent"],
        "content": "仓库违规存放危险化学品。",
        "people_affected": 12,
        "incident_date": "2026-02-28",
        "attachments": ["att_001", "att-002"],
    }


def errors_of(form: dict, data, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationFailed) as caught:
        validate_submission(form, data, **kwargs)
    return caught.value.errors


def one_field_form(component: dict) -> dict:
    return {"id": "single", "type": "default", "components": [component]}


# --- domain formats -----------------------------------------------------------


def test_uscc_check_char_matches_independently_computed_values():
    assert uscc_check_char("91411002MA40A1B2C") == "2"
    assert uscc_check_char("91110000100000000") == "R"


@pytest.mark.parametrize("code", (VALID_USCC, *OTHER_VALID_USCC))
def test_valid_uscc_accepted(code):
    assert is_valid_uscc(code)


@pytest.mark.parametrize(
    "code",
    [
        "91411002MA40A1B2C3",  # check character changed
        "91411002MA40A1B2CR",
        "91110000100000000S",  # S is not in the charset at all
        "91110000100000000A",
        "91411002ma40a1b2c2",  # lower case
        "91411002MA40A1B2C",  # 17 characters
        "91411002MA40A1B2C22",  # 19 characters
        "91411002MI40A1B2C2",  # I is excluded from the charset
        "",
        None,
    ],
)
def test_invalid_uscc_refused(code):
    assert not is_valid_uscc(code)


def test_id_card_check_char_matches_standard_sample():
    assert id_card_check_char("11010519491231002") == "X"


@pytest.mark.parametrize("number", (VALID_ID, *OTHER_VALID_IDS))
def test_valid_id_card_accepted(number):
    assert is_valid_id_card(number)


@pytest.mark.parametrize(
    "number",
    [
        "411002198503120010",  # check digit changed
        "411002198512310473",
        "41100219850312001x",  # lower-case x
        "411002200102290034",  # right check digit, but 2001-02-29 does not exist
        "411002198513010041",  # right check digit, month 13
        "411002850312001",  # old 15-digit form
        "41100219850312002X",  # a body digit changed
        "",
    ],
)
def test_invalid_id_card_refused(number):
    assert not is_valid_id_card(number)


@pytest.mark.parametrize(
    "phone",
    [
        "13800138000",
        "19912345678",
        "+8613800138000",
        "0374-1234567",
        "03741234567",
        "010-12345678",
        "0374-1234567-8001",
        "0374-1234567转8001",
    ],
)
def test_valid_phone_accepted(phone):
    assert is_valid_phone(phone)


@pytest.mark.parametrize(
    "phone",
    ["12800138000", "1380013800", "138001380001", "3741234567", "0374-123", "电话", "", None],
)
def test_invalid_phone_refused(phone):
    assert not is_valid_phone(phone)


# --- schema building ----------------------------------------------------------


def test_build_schema_returns_marshmallow_schema_that_loads_data():
    schema = build_schema(complaint_form())
    assert isinstance(schema, Schema)
    assert schema.load({"subject_name": "某公司"}, partial=True) == {"subject_name": "某公司"}


def test_build_schema_is_cached_by_content_not_identity():
    first = build_schema(complaint_form())
    assert build_schema(complaint_form()) is first
    changed = complaint_form()
    changed["components"][5]["validate"]["maxLength"] = 10
    assert build_schema(changed) is not first


def test_build_schema_refuses_a_form_that_fails_lint():
    form = complaint_form()
    form["components"][6]["properties"]["format"] = "tax_number"
    with pytest.raises(DefinitionError) as caught:
        build_schema(form)
    assert "tax_number" in caught.value.errors[0]["message"]
    assert caught.value.errors[0]["element_id"] == "complaint_register"


def test_validate_submission_refuses_with_an_invalid_form():
    with pytest.raises(DefinitionError):
        validate_submission({"components": []}, {})


def test_keys_named_like_schema_methods_work():
    form = {
        "id": "odd_keys",
        "components": [
            {"type": "textfield", "key": "load", "validate": {"required": True}},
            {"type": "textfield", "key": "fields"},
        ],
    }
    assert validate_submission(form, {"load": "a", "fields": "b"}) == {"load": "a", "fields": "b"}
    assert errors_of(form, {"fields": "b"}) == {"load": ["此项为必填项"]}


# --- whole submissions --------------------------------------------------------


def test_complete_submission_is_returned_cleaned():
    data = complete_submission()
    assert validate_submission(complaint_form(), data) == data


def test_values_are_normalised():
    data = complete_submission() | {
        "received_at": "2026-03-02 09:30",
        "anonymous": "true",
        "people_affected": "12",
        "subject_uscc": " 91411002ma40a1b2c2 ",
        "reporter_id_number": "41100219850312001x",
        "tags": ["urgent", "repeat", "urgent"],
        "attachments": "att_001",
    }
    cleaned = validate_submission(complaint_form(), data)
    assert cleaned["received_at"] == "2026-03-02T09:30:00+08:00"
    assert cleaned["anonymous"] is True
    assert cleaned["people_affected"] == 12 and isinstance(cleaned["people_affected"], int)
    assert cleaned["subject_uscc"] == VALID_USCC
    assert cleaned["reporter_id_number"] == VALID_ID
    assert cleaned["tags"] == ["urgent", "repeat"]
    assert cleaned["attachments"] == ["att_001"]


def test_empty_optional_values_come_back_as_none_or_empty_list():
    data = complete_submission() | {
        "subject_uscc": "",
        "people_affected": None,
        "tags": [],
        "incident_date": "  ",
        "attachments": None,
    }
    cleaned = validate_submission(complaint_form(), data)
    assert cleaned["subject_uscc"] is None
    assert cleaned["people_affected"] is None
    assert cleaned["incident_date"] is None
    assert cleaned["tags"] == []
    assert cleaned["attachments"] == []


def test_missing_optional_keys_are_not_added():
    data = complete_submission()
    for key in ("tags", "attachments", "incident_date", "reporter_phone"):
        del data[key]
    cleaned = validate_submission(complaint_form(), data)
    assert "tags" not in cleaned and "incident_date" not in cleaned


def test_data_must_be_an_object():
    assert errors_of(complaint_form(), ["not", "a", "dict"]) == {"_schema": ["必须是对象"]}


# --- required -----------------------------------------------------------------


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_required_field_blank_is_refused(blank):
    data = complete_submission() | {"subject_name": blank, "channel": blank}
    assert errors_of(complaint_form(), data) == {
        "subject_name": ["此项为必填项"],
        "channel": ["此项为必填项"],
    }


def test_required_field_missing_is_refused():
    data = complete_submission()
    del data["content"]
    del data["received_at"]
    assert errors_of(complaint_form(), data) == {
        "content": ["此项为必填项"],
        "received_at": ["此项为必填项"],
    }


def test_required_list_field_empty_is_refused():
    form = one_field_form(
        {
            "type": "checklist",
            "key": "measures",
            "validate": {"required": True},
            "values": [{"label": "停产整顿", "value": "halt"}],
        }
    )
    assert errors_of(form, {"measures": []}) == {"measures": ["此项为必填项"]}
    assert validate_submission(form, {"measures": ["halt"]}) == {"measures": ["halt"]}


def test_required_checkbox_must_be_ticked():
    form = one_field_form({"type": "checkbox", "key": "promise", "validate": {"required": True}})
    assert errors_of(form, {"promise": False}) == {"promise": ["此项为必填项"]}
    assert validate_submission(form, {"promise": True}) == {"promise": True}


def test_conditional_fields_are_not_required():
    # reporter_name is required but sits in a group hidden when anonymous.
    data = complete_submission()
    del data["reporter_name"]
    assert "reporter_name" not in validate_submission(complaint_form(), data)
    form = one_field_form(
        {"type": "textfield", "key": "x", "validate": {"required": True}, "conditional": {"hide": "=y"}}
    )
    assert validate_submission(form, {}) == {}


def test_conditional_fields_are_still_type_checked():
    data = complete_submission() | {"reporter_name": "很" * 21}
    assert errors_of(complaint_form(), data) == {"reporter_name": ["长度不能超过 20 个字符"]}


def test_disabled_fields_are_not_required():
    form = one_field_form({"type": "textfield", "key": "x", "disabled": True, "validate": {"required": True}})
    assert validate_submission(form, {}) == {}


# --- text ---------------------------------------------------------------------


def test_text_length_limits():
    too_long = complete_submission() | {"subject_name": "公" * 51}
    assert errors_of(complaint_form(), too_long) == {"subject_name": ["长度不能超过 50 个字符"]}
    too_short = complete_submission() | {"subject_name": "公 "}
    assert errors_of(complaint_form(), too_short) == {"subject_name": ["长度不能少于 2 个字符"]}


def test_text_pattern_searches_like_javascript():
    form = one_field_form(
        {"type": "textfield", "key": "doc_no", "validate": {"pattern": r"法建〔\d{4}〕\d+号"}}
    )
    assert validate_submission(form, {"doc_no": "魏法建〔2026〕3号"}) == {"doc_no": "魏法建〔2026〕3号"}
    assert errors_of(form, {"doc_no": "2026-3"}) == {"doc_no": ["格式不正确"]}


def test_validation_type_email():
    form = one_field_form({"type": "textfield", "key": "mail", "validate": {"validationType": "email"}})
    assert validate_submission(form, {"mail": "xuchang.yjj@example.cn"})["mail"] == "xuchang.yjj@example.cn"
    assert errors_of(form, {"mail": "not-an-email"}) == {"mail": ["电子邮箱格式不正确"]}
    assert errors_of(form, {"mail": "a@localhost"}) == {"mail": ["电子邮箱格式不正确"]}


def test_validation_type_phone_accepts_mainland_and_international():
    form = one_field_form({"type": "textfield", "key": "tel", "validate": {"validationType": "phone"}})
    assert validate_submission(form, {"tel": "0374-1234567"}) == {"tel": "0374-1234567"}
    assert validate_submission(form, {"tel": "+4930664040900"}) == {"tel": "+4930664040900"}
    assert list(errors_of(form, {"tel": "12345"})) == ["tel"]


def test_format_messages_name_the_problem():
    data = complete_submission() | {
        "subject_uscc": "91411002MA40A1B2C3",
        "reporter_id_number": "411002198503120010",
        "reporter_phone": "1380013800",
    }
    errors = errors_of(complaint_form(), data)
    assert errors["subject_uscc"] == ["统一社会信用代码校验位错误"]
    assert errors["reporter_id_number"] == ["身份证号码校验位错误"]
    assert errors["reporter_phone"] == ["电话号码格式不正确（应为手机号码或带区号的固定电话）"]


def test_format_shape_and_birth_date_messages():
    data = complete_submission() | {"subject_uscc": "9141100", "reporter_id_number": "411002200102290034"}
    errors = errors_of(complaint_form(), data)
    assert errors["subject_uscc"] == ["统一社会信用代码应为 18 位数字或大写字母（不含 I、O、Z、S、V）"]
    assert errors["reporter_id_number"] == ["身份证号码中的出生日期无效"]


@pytest.mark.parametrize("value", [["张三"], 42, {"name": "张三"}, True])
def test_text_refuses_non_strings(value):
    data = complete_submission() | {"subject_name": value}
    assert errors_of(complaint_form(), data) == {"subject_name": ["必须是文本"]}


# --- numbers ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "12abc", True, [12], {"n": 1}, float("nan"), float("inf"), "1e3"])
def test_number_refuses_non_numbers(value):
    data = complete_submission() | {"people_affected": value}
    assert errors_of(complaint_form(), data) == {"people_affected": ["必须是数字"]}


def test_number_range_and_integer_rules():
    form = complaint_form()
    assert errors_of(form, complete_submission() | {"people_affected": -1}) == {
        "people_affected": ["不能小于 0"]
    }
    assert errors_of(form, complete_submission() | {"people_affected": 10001}) == {
        "people_affected": ["不能大于 10000"]
    }
    assert errors_of(form, complete_submission() | {"people_affected": 2.5}) == {
        "people_affected": ["必须是整数"]
    }


def test_number_decimals_increment_and_float_output():
    form = one_field_form({"type": "number", "key": "fine", "decimalDigits": 2, "increment": "0.05"})
    assert validate_submission(form, {"fine": "1500.25"}) == {"fine": 1500.25}
    assert validate_submission(form, {"fine": 0}) == {"fine": 0}
    assert errors_of(form, {"fine": 1.234}) == {"fine": ["最多保留 2 位小数", "必须是 0.05 的整数倍"]}
    assert errors_of(form, {"fine": "1.02"}) == {"fine": ["必须是 0.05 的整数倍"]}


def test_number_serialize_to_string_keeps_text():
    form = one_field_form({"type": "number", "key": "amount", "serializeToString": True})
    assert validate_submission(form, {"amount": "12345678901.50"}) == {"amount": "12345678901.50"}
    assert validate_submission(form, {"amount": 7}) == {"amount": "7"}


def test_number_too_large_is_refused():
    form = one_field_form({"type": "number", "key": "n"})
    assert errors_of(form, {"n": 10**15}) == {"n": ["数值超出允许范围"]}
    assert errors_of(form, {"n": "9" * 5000}) == {"n": ["数值超出允许范围"]}


# --- checkbox, options --------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, 0, ["true"]])
def test_checkbox_refuses_non_booleans(value):
    data = complete_submission() | {"anonymous": value}
    assert errors_of(complaint_form(), data) == {"anonymous": ["必须是 true 或 false"]}


def test_option_not_in_list_lists_the_labels():
    data = complete_submission() | {"channel": "email", "category": "other"}
    errors = errors_of(complaint_form(), data)
    assert errors["channel"] == ["必须是以下选项之一：12350 热线、12345 工单、来信"]
    assert errors["category"] == ["必须是以下选项之一：安全生产违法、失信行为"]


def test_option_type_must_match():
    form = one_field_form({"type": "select", "key": "level", "values": [{"label": "一级", "value": "1"}]})
    assert validate_submission(form, {"level": "1"}) == {"level": "1"}
    assert errors_of(form, {"level": 1}) == {"level": ["必须是以下选项之一：一级"]}
    assert errors_of(form, {"level": True}) == {"level": ["必须是文本或数字"]}
    assert errors_of(form, {"level": ["1"]}) == {"level": ["必须是文本或数字"]}


def test_multi_choice_checks_every_item_and_type():
    data = complete_submission() | {"tags": ["urgent", "vip"]}
    assert errors_of(complaint_form(), data) == {"tags": ["必须是以下选项之一：紧急、重复"]}
    assert errors_of(complaint_form(), complete_submission() | {"tags": "urgent"}) == {"tags": ["必须是列表"]}
    assert errors_of(complaint_form(), complete_submission() | {"tags": [{"v": 1}]}) == {
        "tags": ["必须是文本或数字"]
    }


def test_dynamic_options_accept_any_scalar():
    form = one_field_form({"type": "select", "key": "lead_group", "valuesKey": "group_options"})
    assert validate_submission(form, {"lead_group": "supervision"}) == {"lead_group": "supervision"}
    assert errors_of(form, {"lead_group": {"a": 1}}) == {"lead_group": ["必须是文本或数字"]}


# --- dates and times ----------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2026-02-30", "2026/03/01", "20260301", "2026-03-01T00:00", "明天", 20260301]
)
def test_date_refuses_other_formats(value):
    data = complete_submission() | {"incident_date": value}
    assert errors_of(complaint_form(), data) == {"incident_date": ["日期格式不正确，应为 YYYY-MM-DD"]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-02T09:30+08:00", "2026-03-02T09:30:00+08:00"),
        ("2026-03-02T01:30Z", "2026-03-02T01:30:00+00:00"),
        ("2026-03-02T09:30:15", "2026-03-02T09:30:15+08:00"),
        ("2026-03-02 09:30", "2026-03-02T09:30:00+08:00"),
    ],
)
def test_datetime_normalised_to_iso_with_offset(value, expected):
    cleaned = validate_submission(complaint_form(), complete_submission() | {"received_at": value})
    assert cleaned["received_at"] == expected


@pytest.mark.parametrize(
    "value", ["2026-03-02", "2026-03-02T25:00", "09:30", "2026-03-02T09:30+8", 1772415000]
)
def test_datetime_refuses_other_formats(value):
    errors = errors_of(complaint_form(), complete_submission() | {"received_at": value})
    assert errors == {"received_at": ["日期时间格式不正确，应为 ISO 8601 格式，如 2026-03-01T09:30+08:00"]}


def test_time_subtype():
    form = one_field_form({"type": "datetime", "key": "at", "subtype": "time"})
    assert validate_submission(form, {"at": "09:30"}) == {"at": "09:30"}
    assert validate_submission(form, {"at": "09:30+08:00"}) == {"at": "09:30+08:00"}
    assert validate_submission(form, {"at": "09:30:15"}) == {"at": "09:30:15"}
    assert errors_of(form, {"at": "9:30"}) == {"at": ["时间格式不正确，应为 HH:MM"]}
    assert errors_of(form, {"at": "24:10"}) == {"at": ["时间格式不正确，应为 HH:MM"]}


# --- attachments, expressions -------------------------------------------------


def test_filepicker_ids_are_checked():
    data = complete_submission() | {"attachments": ["att_001", "../etc/passwd"]}
    assert errors_of(complaint_form(), data) == {"attachments": ["附件标识格式不正确"]}
    data = complete_submission() | {"attachments": ["a" * 65]}
    assert errors_of(complaint_form(), data) == {"attachments": ["附件标识格式不正确"]}
    data = complete_submission() | {"attachments": {"id": "att_001"}}
    assert errors_of(complaint_form(), data) == {"attachments": ["必须是列表"]}


def test_single_filepicker_takes_one_file():
    form = one_field_form({"type": "filepicker", "key": "receipt"})
    assert validate_submission(form, {"receipt": "r1"}) == {"receipt": ["r1"]}
    assert errors_of(form, {"receipt": ["r1", "r2"]}) == {"receipt": ["只能选择一个文件"]}


def test_expression_values_are_kept():
    form = one_field_form({"type": "expression", "key": "total", "expression": "=a + b"})
    assert validate_submission(form, {"total": {"sum": 3}}) == {"total": {"sum": 3}}


# --- groups and dynamic lists -------------------------------------------------


def judicial_form() -> dict:
    return {
        "id": "judicial_register",
        "components": [
            {"type": "textfield", "key": "doc_no", "validate": {"required": True}},
            {
                "type": "group",
                "path": "issuer",
                "label": "发文机关",
                "components": [
                    {"type": "textfield", "key": "name", "validate": {"required": True}},
                    {"type": "textfield", "key": "contact_phone", "properties": {"format": "phone"}},
                ],
            },
            {
                "type": "dynamiclist",
                "path": "problems",
                "label": "问题与建议",
                "isRepeating": True,
                "components": [
                    {"type": "textarea", "key": "problem", "validate": {"required": True}},
                    {
                        "type": "textarea",
                        "key": "suggestion",
                        "validate": {"required": True, "maxLength": 200},
                    },
                    {"type": "datetime", "key": "due", "subtype": "date"},
                ],
            },
        ],
    }


def test_group_path_nests_data():
    data = {
        "doc_no": "魏法建〔2026〕3号",
        "issuer": {"name": "魏都区人民法院", "contact_phone": "0374-1234567"},
    }
    assert validate_submission(judicial_form(), data) == data


def test_group_path_errors_use_dotted_keys():
    assert errors_of(judicial_form(), {"doc_no": "x", "issuer": {"name": "", "fax": "1"}}) == {
        "issuer.name": ["此项为必填项"],
        "issuer.fax": ["未知字段"],
    }
    assert errors_of(judicial_form(), {"doc_no": "x"}) == {"issuer.name": ["此项为必填项"]}
    assert errors_of(judicial_form(), {"doc_no": "x", "issuer": "法院"}) == {"issuer": ["必须是对象"]}


def test_dynamiclist_items_are_validated_and_normalised():
    data = {
        "doc_no": "x",
        "issuer": {"name": "法院"},
        "problems": [
            {"problem": "台账不全", "suggestion": "建立台账", "due": "2026-04-30"},
            {"problem": "培训不足", "suggestion": "组织培训"},
        ],
    }
    assert validate_submission(judicial_form(), data) == data


def test_dynamiclist_item_errors_use_flat_dotted_keys():
    data = {
        "doc_no": "x",
        "issuer": {"name": "法院"},
        "problems": [
            {"problem": "台账不全", "suggestion": "建立台账"},
            {"problem": "培训不足", "suggestion": "", "due": "2026-13-01"},
            "not an item",
            {"problem": "p", "suggestion": "s" * 201, "owner": "handler"},
        ],
    }
    assert errors_of(judicial_form(), data) == {
        "problems.1.suggestion": ["此项为必填项"],
        "problems.1.due": ["日期格式不正确，应为 YYYY-MM-DD"],
        "problems.2": ["必须是对象"],
        "problems.3.suggestion": ["长度不能超过 200 个字符"],
        "problems.3.owner": ["未知字段"],
    }


def test_dynamiclist_must_be_a_list_and_may_be_empty():
    base = {"doc_no": "x", "issuer": {"name": "法院"}}
    assert errors_of(judicial_form(), base | {"problems": {"problem": "p"}}) == {"problems": ["必须是列表"]}
    assert validate_submission(judicial_form(), base | {"problems": []})["problems"] == []
    assert validate_submission(judicial_form(), base | {"problems": None})["problems"] == []


def test_group_without_path_keeps_data_flat():
    form = one_field_form(
        {
            "type": "group",
            "components": [{"type": "textfield", "key": "inner", "validate": {"required": True}}],
        }
    )
    assert validate_submission(form, {"inner": "v"}) == {"inner": "v"}
    assert errors_of(form, {}) == {"inner": ["此项为必填项"]}


# --- unknown keys -------------------------------------------------------------


def test_unknown_keys_are_refused():
    data = complete_submission() | {"is_admin": True, "comment": "同意"}
    assert errors_of(complaint_form(), data) == {"is_admin": ["未知字段"], "comment": ["未知字段"]}


def test_display_components_take_no_data():
    data = complete_submission() | {"submit": True}
    assert errors_of(complaint_form(), data) == {"submit": ["未知字段"]}


def test_extra_allowed_system_keys_pass_through_unchanged():
    data = complete_submission() | {"comment": {"text": "同意"}}
    cleaned = validate_submission(complaint_form(), data, extra_allowed={"comment"})
    assert cleaned["comment"] == {"text": "同意"}
    errors = errors_of(complaint_form(), data | {"other": 1}, extra_allowed={"comment"})
    assert errors == {"other": ["未知字段"]}


def test_extra_allowed_does_not_switch_off_a_form_field():
    data = complete_submission() | {"subject_name": ""}
    assert errors_of(complaint_form(), data, extra_allowed={"subject_name"}) == {
        "subject_name": ["此项为必填项"]
    }


def test_extra_allowed_is_top_level_only():
    data = {"doc_no": "x", "issuer": {"name": "法院", "comment": "c"}}
    assert errors_of(judicial_form(), data, extra_allowed={"comment"}) == {"issuer.comment": ["未知字段"]}


# --- size guard ---------------------------------------------------------------


def nested(levels: int):
    value = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_depth_at_the_limit_passes_the_guard():
    form = one_field_form({"type": "expression", "key": "calc"})
    data = {"calc": nested(MAX_DEPTH - 1)}  # the top-level dict is level 1
    assert validate_submission(form, data) == data


def test_too_deep_data_is_refused():
    form = one_field_form({"type": "expression", "key": "calc"})
    assert errors_of(form, {"calc": nested(MAX_DEPTH)}) == {
        "calc" + ".0" * (MAX_DEPTH - 1): [f"数据嵌套层级过深（最多 {MAX_DEPTH} 层）"]
    }


def test_very_deep_data_is_refused_without_crashing():
    errors = errors_of(complaint_form(), complete_submission() | {"junk": nested(100_000)})
    assert list(errors) == ["junk" + ".0" * (MAX_DEPTH - 1)]


def test_long_strings_are_refused():
    form = one_field_form({"type": "textarea", "key": "content"})
    assert (
        validate_submission(form, {"content": "字" * MAX_STRING_LENGTH})["content"]
        == "字" * MAX_STRING_LENGTH
    )
    errors = errors_of(form, {"content": "字" * (MAX_STRING_LENGTH + 1)})
    assert errors == {"content": [f"内容过长，不能超过 {MAX_STRING_LENGTH} 个字符"]}


def test_too_many_values_are_refused():
    form = one_field_form({"type": "expression", "key": "calc"})
    errors = errors_of(form, {"calc": list(range(MAX_VALUES))})
    assert errors == {"_schema": [f"提交的数据项过多（最多 {MAX_VALUES} 项）"]}


# --- field listing ------------------------------------------------------------


def test_form_fields_lists_data_fields_flattened():
    by_key = {f["key"]: f for f in form_fields(complaint_form())}
    assert list(by_key) == [
        "channel",
        "received_at",
        "anonymous",
        "reporter_name",
        "reporter_phone",
        "reporter_id_number",
        "subject_name",
        "subject_uscc",
        "category",
        "tags",
        "content",
        "people_affected",
        "incident_date",
        "attachments",
    ]
    assert by_key["channel"] == {
        "key": "channel",
        "label": "来源渠道",
        "type": "select",
        "required": True,
        "options": [
            {"label": "12350 热线", "value": "hotline_12350"},
            {"label": "12345 工单", "value": "order_12345"},
            {"label": "来信", "value": "letter"},
        ],
        "format": None,
        "confidential": False,
    }
    assert by_key["subject_uscc"]["format"] == "uscc"
    assert by_key["received_at"]["format"] == "datetime"
    assert by_key["reporter_name"]["required"] is False  # inside a conditional group
    assert by_key["reporter_name"]["confidential"] is True


def test_form_fields_paths_for_groups_and_lists():
    keys = [(f["key"], f["type"], f["required"]) for f in form_fields(judicial_form())]
    assert keys == [
        ("doc_no", "textfield", True),
        ("issuer", "group", False),
        ("issuer.name", "textfield", True),
        ("issuer.contact_phone", "textfield", False),
        ("problems", "dynamiclist", False),
        ("problems.*.problem", "textarea", True),
        ("problems.*.suggestion", "textarea", True),
        ("problems.*.due", "datetime", False),
    ]


def test_form_fields_without_dots_are_the_top_level_data_keys():
    top_level = {f["key"] for f in form_fields(judicial_form()) if "." not in f["key"]}
    assert top_level == {"doc_no", "issuer", "problems"}
    assert {f.data_key for f in build_schema(judicial_form()).load_fields.values()} == top_level


def test_confidential_keys():
    assert confidential_keys(complaint_form()) == {"reporter_name", "reporter_phone", "reporter_id_number"}
    form = judicial_form()
    form["components"][2]["components"][0]["properties"] = {"confidential": "true"}
    form["components"][0]["properties"] = {"confidential": "false"}
    assert confidential_keys(form) == {"problems.*.problem"}


# --- lint ---------------------------------------------------------------------


def test_clean_forms_have_no_lint_findings():
    assert lint_form(complaint_form()) == []
    assert lint_form(judicial_form()) == []


def test_lint_missing_id():
    form = complaint_form()
    del form["id"]
    assert lint_form(form) == ["表单缺少 id"]


def test_lint_duplicate_keys_within_one_data_scope():
    form = complaint_form()
    # reporter_name sits in a group without path: it shares the top-level scope.
    form["components"].append({"type": "textfield", "key": "reporter_name"})
    assert lint_form(form) == ["字段“reporter_name”：字段键“reporter_name”重复"]


def test_lint_same_key_in_separate_scopes_is_fine():
    form = judicial_form()
    form["components"].append({"type": "textfield", "key": "name"})
    form["components"][2]["components"].append({"type": "textfield", "key": "doc_no"})
    assert lint_form(form) == []


def test_lint_select_without_values():
    form = one_field_form({"type": "select", "key": "s", "label": "受理意见", "values": []})
    assert lint_form(form) == ["字段“s”（受理意见）：选项列表（values）为空"]
    form = one_field_form({"type": "radio", "key": "r", "valuesKey": "options"})
    assert lint_form(form) == []


def test_lint_duplicate_and_malformed_options():
    form = one_field_form(
        {
            "type": "radio",
            "key": "r",
            "values": [{"label": "是", "value": "y"}, {"label": "是", "value": "y"}, "n"],
        }
    )
    assert lint_form(form) == ["字段“r”：选项值“y”重复", "字段“r”：每个选项必须有文本或数字的 value"]


def test_lint_unknown_format_and_format_on_non_text():
    form = one_field_form({"type": "textfield", "key": "t", "properties": {"format": "mobile"}})
    assert lint_form(form) == ["字段“t”：未知的格式（format）“mobile”，可用：uscc、id_card、phone"]
    form = one_field_form({"type": "number", "key": "n", "properties": {"format": "phone"}})
    assert lint_form(form) == ["字段“n”：格式（format）只适用于文本字段（textfield、textarea）"]


def test_lint_invalid_regex():
    form = one_field_form({"type": "textfield", "key": "t", "validate": {"pattern": "[0-9"}})
    [finding] = lint_form(form)
    assert finding.startswith("字段“t”：正则表达式“[0-9”无效")


def test_lint_components_without_a_needed_key():
    form = {
        "id": "f",
        "components": [
            {"type": "textfield", "id": "Field_1", "label": "姓名"},
            {"type": "dynamiclist", "id": "List_1", "components": []},
            {"type": "text", "text": "说明"},
            {"type": "group", "components": []},
        ],
    }
    assert lint_form(form) == ["组件“Field_1”：缺少字段键（key）", "组件“List_1”：缺少字段键（path）"]


def test_lint_unknown_type_dotted_key_and_subtype():
    form = {
        "id": "f",
        "components": [
            {"type": "signature", "key": "sig"},
            {"type": "textfield", "key": "a.b"},
            {"type": "datetime", "key": "d", "subtype": "week"},
            {"key": "no_type"},
        ],
    }
    assert lint_form(form) == [
        "字段“sig”：未知的组件类型“signature”",
        "字段“a.b”：字段键“a.b”不能包含“.”（本系统不支持点号路径）",
        "字段“d”：未知的日期时间子类型“week”，可用：date、time、datetime",
        "字段“no_type”：缺少组件类型（type）",
    ]


def test_lint_contradictory_limits():
    form = {
        "id": "f",
        "components": [
            {"type": "textfield", "key": "t", "validate": {"minLength": 5, "maxLength": 2}},
            {"type": "number", "key": "n", "validate": {"min": 10, "max": 1}},
            {"type": "number", "key": "m", "validate": {"min": "ten"}, "decimalDigits": -1},
            {"type": "textfield", "key": "v", "validate": {"validationType": "fax"}},
        ],
    }
    assert lint_form(form) == [
        "字段“t”：最小长度大于最大长度",
        "字段“n”：最小值大于最大值",
        "字段“m”：校验参数 min 必须是数字",
        "字段“m”：小数位数（decimalDigits）必须是非负整数",
        "字段“v”：未知的校验类型（validationType）“fax”，可用：email、phone",
    ]


def test_lint_data_nested_deeper_than_the_guard_allows():
    inner = {"type": "textfield", "key": "leaf"}
    for level in range(4):
        inner = {"type": "dynamiclist", "path": f"l{level}", "components": [inner]}
    assert lint_form(one_field_form(copy.deepcopy(inner))) == [
        "字段“l3.*.l2.*.l1.*.l0”：数据嵌套层级过深（最多 8 层）"
    ]


def test_lint_survives_junk():
    assert lint_form(["not", "a", "form"]) == ["表单必须是 JSON 对象"]
    assert lint_form({"id": "f"}) == ["表单缺少组件列表（components）"]
    findings = lint_form(
        {"id": "f", "components": ["x", {"type": ["textfield"]}, {"type": "group", "path": 3}]}
    )
    assert findings == [
        "表单第 1 个组件不是 JSON 对象",
        "第 2 个组件（['textfield']）：缺少组件类型（type）",
        "第 3 个组件（group）：字段键（path）必须是不含首尾空格的文本",
        "第 3 个组件（group）：缺少子组件列表（components）",
    ]
