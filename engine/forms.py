"""Server-side validation of form-js forms.

A form is bpmn-io form-js JSON (schemaVersion 16-18). `build_schema` turns it into a
marshmallow schema; `validate_submission` checks a task's data against it and returns
the cleaned data; `lint_form` lists what a deployer must fix.

Rules worth knowing:

- `key` is a flat data key (no dotted paths: lint refuses "." in keys and paths).
  A group with `path` nests its children's data under that path; a group without
  `path` keeps them in its parent's data. A `dynamiclist` keeps a list of dicts
  under its `path`, each validated by its child components.
- Error keys are flat dotted paths: "reporter_phone", "group_path.child",
  "problems.0.suggestion". "_schema" holds errors about the data as a whole.
- A field is required when `validate.required` is set and neither it nor an
  enclosing group has a `conditional` (we cannot evaluate FEEL, and form-js does
  not submit hidden fields) and it is not `disabled` (form-js does not submit those).
- None, "", whitespace-only text and (for list fields) [] count as "not filled". A
  required checkbox must be true. An empty optional value comes back as None ([] for
  list fields); keys not sent are not added.
- Data deeper than MAX_DEPTH levels, text over MAX_STRING_LENGTH characters or more
  than MAX_VALUES values are refused before validation (ValidationFailed).
- Unknown keys are refused with "未知字段", except top-level keys in `extra_allowed`,
  which are passed through unchanged.
- Options from `valuesKey` / `valuesExpression` are only known at run time: any
  text or number is accepted for them.
- `readonly` / `disabled` values are validated like others; the caller decides
  whether to trust them.
"""

import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, missing

from engine.errors import DefinitionError, ValidationFailed

MAX_DEPTH = 8
MAX_STRING_LENGTH = 100_000
MAX_VALUES = 20_000
MAX_NUMBER = Decimal(10) ** 15  # beyond this a browser's float loses digits
CHINA_TZ = timezone(timedelta(hours=8))  # no DST in China since 1991

TEXT_TYPES = frozenset({"textfield", "textarea"})
SINGLE_CHOICE_TYPES = frozenset({"select", "radio"})
MULTI_CHOICE_TYPES = frozenset({"checklist", "taglist"})
CHOICE_TYPES = SINGLE_CHOICE_TYPES | MULTI_CHOICE_TYPES
VALUE_TYPES = (
    TEXT_TYPES | CHOICE_TYPES | frozenset({"number", "checkbox", "datetime", "filepicker", "expression"})
)
CONTAINER_TYPES = frozenset({"group", "dynamiclist"})
DISPLAY_TYPES = frozenset(
    {
        "text",
        "html",
        "spacer",
        "separator",
        "image",
        "button",
        "iframe",
        "table",
        "documentPreview",
    }
)
KNOWN_TYPES = VALUE_TYPES | CONTAINER_TYPES | DISPLAY_TYPES
DATETIME_SUBTYPES = frozenset({"date", "time", "datetime"})
VALIDATION_TYPES = (None, "", "email", "phone", "custom")

REQUIRED = "此项为必填项"
UNKNOWN_FIELD = "未知字段"
NOT_OBJECT = "必须是对象"
NOT_LIST = "必须是列表"
NOT_TEXT = "必须是文本"
NOT_NUMBER = "必须是数字"
NOT_BOOLEAN = "必须是 true 或 false"
NOT_CHOICE = "必须是文本或数字"
NUMBER_TOO_LARGE = "数值超出允许范围"
PATTERN_MISMATCH = "格式不正确"
EMAIL_INVALID = "电子邮箱格式不正确"
PHONE_INVALID = "电话号码格式不正确（应为手机号码或带区号的固定电话）"
USCC_SHAPE = "统一社会信用代码应为 18 位数字或大写字母（不含 I、O、Z、S、V）"
USCC_CHECK = "统一社会信用代码校验位错误"
ID_CARD_SHAPE = "身份证号码应为 18 位，末位可为 X"
ID_CARD_BIRTH = "身份证号码中的出生日期无效"
ID_CARD_CHECK = "身份证号码校验位错误"
DATE_INVALID = "日期格式不正确，应为 YYYY-MM-DD"
TIME_INVALID = "时间格式不正确，应为 HH:MM"
DATETIME_INVALID = "日期时间格式不正确，应为 ISO 8601 格式，如 2026-03-01T09:30+08:00"
ATTACHMENT_ID_INVALID = "附件标识格式不正确"
ONE_FILE_ONLY = "只能选择一个文件"
TOO_DEEP = f"数据嵌套层级过深（最多 {MAX_DEPTH} 层）"
TOO_LONG_TEXT = f"内容过长，不能超过 {MAX_STRING_LENGTH} 个字符"
TOO_MANY_VALUES = f"提交的数据项过多（最多 {MAX_VALUES} 项）"


# --- Domain formats -----------------------------------------------------------

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
USCC_SHAPE_RE = re.compile(f"[{USCC_CHARSET}]{{18}}")
ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CARD_CHECK_CHARS = "10X98765432"
ID_CARD_SHAPE_RE = re.compile(r"\d{17}[\dX]")
MOBILE_RE = re.compile(r"(?:\+86[- ]?)?1[3-9]\d{9}")
LANDLINE_RE = re.compile(r"0\d{2,3}-?\d{7,8}(?:(?:-|转|#)\d{1,6})?")
INTERNATIONAL_PHONE_RE = re.compile(r"(?:\+|00)[1-9]\d{6,14}")
EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
ATTACHMENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def uscc_check_char(first17: str) -> str:
    """Check character of a 统一社会信用代码 (GB 32100-2015) for its first 17 characters."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    """True for an 18-character 统一社会信用代码 (upper case) whose check character is right."""
    return _uscc_problem(code) is None


def _uscc_problem(code: str) -> str | None:
    if not isinstance(code, str) or not USCC_SHAPE_RE.fullmatch(code):
        return USCC_SHAPE
    if uscc_check_char(code[:17]) != code[17]:
        return USCC_CHECK
    return None


def id_card_check_char(first17: str) -> str:
    """Check character of an 18-digit 身份证号码 (GB 11643-1999) for its first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, ID_CARD_WEIGHTS, strict=True))
    return ID_CARD_CHECK_CHARS[total % 11]


def is_valid_id_card(number: str) -> bool:
    """True for an 18-digit 身份证号码 (final X upper case) with a real birth date and right check."""
    return _id_card_problem(number) is None


def _id_card_problem(number: str) -> str | None:
    if not isinstance(number, str) or not ID_CARD_SHAPE_RE.fullmatch(number):
        return ID_CARD_SHAPE
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return ID_CARD_BIRTH
    if id_card_check_char(number[:17]) != number[17]:
        return ID_CARD_CHECK
    return None


def is_valid_phone(s: str) -> bool:
    """True for a mainland mobile (optionally +86) or a landline with area code and extension."""
    return isinstance(s, str) and bool(MOBILE_RE.fullmatch(s) or LANDLINE_RE.fullmatch(s))


def _format_problem(fmt: str, value: str) -> str | None:
    if fmt == "uscc":
        return _uscc_problem(value)
    if fmt == "id_card":
        return _id_card_problem(value)
    if fmt == "phone":
        return None if is_valid_phone(value) else PHONE_INVALID
    raise AssertionError(f"unlinted format {fmt!r}")


FORMATS = ("uscc", "id_card", "phone")
UPPER_CASE_FORMATS = frozenset({"uscc", "id_card"})


# --- Reading components -------------------------------------------------------


def _kind(component: Mapping) -> str | None:
    kind = component.get("type")
    return kind if isinstance(kind, str) else None


def _validate_rules(component: Mapping) -> Mapping:
    rules = component.get("validate")
    return rules if isinstance(rules, Mapping) else {}


def _properties(component: Mapping) -> Mapping:
    props = component.get("properties")
    return props if isinstance(props, Mapping) else {}


def _format_of(component: Mapping) -> str | None:
    return _properties(component).get("format") or None


def _is_confidential(component: Mapping) -> bool:
    flag = _properties(component).get("confidential")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def _is_conditional(component: Mapping) -> bool:
    conditional = component.get("conditional")
    return isinstance(conditional, Mapping) and bool(conditional.get("hide"))


def _children(component: Mapping) -> list:
    children = component.get("components")
    return children if isinstance(children, list) else []


def _static_options(component: Mapping) -> list[dict] | None:
    """The component's fixed options, or None when they come from data or an expression."""
    values = component.get("values")
    if isinstance(values, list) and values:
        return [
            {"label": v.get("label", v.get("value")), "value": v.get("value")}
            for v in values
            if isinstance(v, Mapping)
        ]
    return None


def _data_name(component: Mapping) -> str | None:
    """The data key a component writes to: `key` for fields, `path` for containers."""
    name = component.get("path") if _kind(component) in CONTAINER_TYPES else component.get("key")
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class _Scope:
    """Where a component sits: its data path prefix and what enclosing containers impose."""

    prefix: str = ""
    conditional: bool = False
    confidential: bool = False
    depth: int = 1  # data nesting level of the dict the component writes into

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def enter(self, container: Mapping) -> "_Scope":
        name = _data_name(container)
        prefix, depth = self.prefix, self.depth
        if _kind(container) == "dynamiclist":
            prefix, depth = f"{prefix}{name}.*.", depth + 2
        elif name:
            prefix, depth = f"{prefix}{name}.", depth + 1
        return _Scope(
            prefix=prefix,
            conditional=self.conditional or _is_conditional(container),
            confidential=self.confidential or _is_confidential(container),
            depth=depth,
        )

    def must_fill(self, component: Mapping) -> bool:
        return bool(
            _validate_rules(component).get("required")
            and not self.conditional
            and not _is_conditional(component)
            and not component.get("disabled")
        )


# --- marshmallow fields -------------------------------------------------------


def _is_blank(value, holds_list: bool) -> bool:
    """form-js's "not filled": None, blank text, and [] for list-valued fields."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    return holds_list and isinstance(value, list) and not value


def _fail_unless(condition: bool, message: str) -> None:
    if not condition:
        raise ValidationError(message)


class _FormField(fields.Field):
    """A form-js value: Chinese messages, and None / "" / [] count as not filled."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "required": REQUIRED,
        "null": REQUIRED,
        "validator_failed": "取值无效",
    }
    holds_list = False  # an empty optional value comes back as [] rather than None

    def __init__(self, component: Mapping, *, must_fill: bool, **kwargs):
        super().__init__(required=must_fill, allow_none=True, **kwargs)
        self.component = component
        self.must_fill = must_fill

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is not missing and _is_blank(value, self.holds_list):
            if self.must_fill:
                raise ValidationError(REQUIRED)
            return [] if self.holds_list else None
        return super().deserialize(value, attr, data, **kwargs)


class _TextField(_FormField):
    def __init__(self, component: Mapping, *, must_fill: bool):
        self.format = _format_of(component)
        rules = _validate_rules(component)
        super().__init__(
            component,
            must_fill=must_fill,
            validate=_text_validators(rules, self.format),
        )

    def _deserialize(self, value, attr, data, **kwargs):
        _fail_unless(isinstance(value, str), NOT_TEXT)
        if self.format in UPPER_CASE_FORMATS:
            return value.strip().upper()
        if self.format == "phone":
            return value.strip()
        return value


def _text_validators(rules: Mapping, fmt: str | None) -> list:
    checks = []
    if rules.get("minLength") is not None:
        least = int(rules["minLength"])
        # form-js measures trimmed length; so do we, so both sides agree.
        checks.append(lambda v: _fail_unless(len(v.strip()) >= least, f"长度不能少于 {least} 个字符"))
    if rules.get("maxLength") is not None:
        most = int(rules["maxLength"])
        checks.append(lambda v: _fail_unless(len(v.strip()) <= most, f"长度不能超过 {most} 个字符"))
    if rules.get("pattern"):
        pattern = re.compile(rules["pattern"])
        # JavaScript's RegExp.test searches, it does not anchor.
        checks.append(lambda v: _fail_unless(bool(pattern.search(v)), PATTERN_MISMATCH))
    if rules.get("validationType") == "email":
        checks.append(lambda v: _fail_unless(bool(EMAIL_RE.fullmatch(v)), EMAIL_INVALID))
    if rules.get("validationType") == "phone":
        # form-js only knows international numbers; the bureau's users type mainland ones.
        checks.append(
            lambda v: _fail_unless(
                is_valid_phone(v) or bool(INTERNATIONAL_PHONE_RE.fullmatch(v)),
                PHONE_INVALID,
            )
        )
    if fmt:
        checks.append(functools.partial(_check_format, fmt))
    return checks


def _check_format(fmt: str, value: str) -> None:
    problem = _format_problem(fmt, value)
    if problem:
        raise ValidationError(problem)


NUMBER_TEXT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _to_decimal(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and NUMBER_TEXT_RE.fullmatch(value.strip()):
        return Decimal(value.strip())
    return None


def _decimal_places(number: Decimal) -> int:
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _plain(number: Decimal) -> str:
    return format(number.normalize(), "f")


class _NumberField(_FormField):
    def __init__(self, component: Mapping, *, must_fill: bool):
        as_text = bool(component.get("serializeToString"))
        super().__init__(
            component,
            must_fill=must_fill,
            validate=_number_validators(component),
            post_load=_decimal_as_text if as_text else _decimal_as_number,
        )

    def _deserialize(self, value, attr, data, **kwargs):
        number = _to_decimal(value)
        _fail_unless(number is not None, NOT_NUMBER)
        _fail_unless(abs(number) < MAX_NUMBER, NUMBER_TOO_LARGE)
        return number


def _decimal_as_number(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def _decimal_as_text(number: Decimal) -> str:
    return format(number, "f")


def _number_validators(component: Mapping) -> list:
    rules = _validate_rules(component)
    checks = []
    if rules.get("min") is not None:
        low = _to_decimal(rules["min"])
        checks.append(lambda n: _fail_unless(n >= low, f"不能小于 {_plain(low)}"))
    if rules.get("max") is not None:
        high = _to_decimal(rules["max"])
        checks.append(lambda n: _fail_unless(n <= high, f"不能大于 {_plain(high)}"))
    digits = component.get("decimalDigits")
    if digits is not None and digits != "":
        places = int(digits)
        message = "必须是整数" if places == 0 else f"最多保留 {places} 位小数"
        checks.append(lambda n: _fail_unless(_decimal_places(n) <= places, message))
    step = _to_decimal(component.get("increment"))
    if step:  # None or 0: no step
        checks.append(lambda n: _fail_unless(n % step == 0, f"必须是 {_plain(step)} 的整数倍"))
    return checks


class _CheckboxField(_FormField):
    def __init__(self, component: Mapping, *, must_fill: bool):
        # A required checkbox (e.g. a 信用承诺) must be ticked, as in form-js.
        checks = [lambda v: _fail_unless(v is True, REQUIRED)] if must_fill else []
        super().__init__(component, must_fill=must_fill, validate=checks)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValidationError(NOT_BOOLEAN)


def _is_choice_scalar(value) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _choice_message(options: list[dict]) -> str:
    labels = [str(o["label"]) for o in options[:10]]
    more = f" 等 {len(options)} 项" if len(options) > 10 else ""
    return "必须是以下选项之一：" + "、".join(labels) + more


class _ChoiceField(_FormField):
    def __init__(self, component: Mapping, *, must_fill: bool):
        self.options = _static_options(component)
        checks = []
        if self.options is not None:
            allowed = [o["value"] for o in self.options]
            message = _choice_message(self.options)
            checks.append(lambda v: _fail_unless(v in allowed, message))
        super().__init__(component, must_fill=must_fill, validate=checks)

    def _deserialize(self, value, attr, data, **kwargs):
        _fail_unless(_is_choice_scalar(value), NOT_CHOICE)
        return value


class _MultiChoiceField(_FormField):
    holds_list = True

    def __init__(self, component: Mapping, *, must_fill: bool):
        self.options = _static_options(component)
        checks = []
        if self.options is not None:
            allowed = [o["value"] for o in self.options]
            message = _choice_message(self.options)
            checks.append(lambda vs: _fail_unless(all(v in allowed for v in vs), message))
        super().__init__(component, must_fill=must_fill, validate=checks)

    def _deserialize(self, value, attr, data, **kwargs):
        _fail_unless(isinstance(value, list), NOT_LIST)
        _fail_unless(all(_is_choice_scalar(v) for v in value), NOT_CHOICE)
        unique = []
        for v in value:
            if v not in unique:
                unique.append(v)
        return unique


DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
TIME_RE = re.compile(r"\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})?")
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?")


def _parse_date(value: str) -> str:
    _fail_unless(bool(DATE_RE.fullmatch(value)), DATE_INVALID)
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValidationError(DATE_INVALID) from None


def _parse_time(value: str) -> str:
    _fail_unless(bool(TIME_RE.fullmatch(value)), TIME_INVALID)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise ValidationError(TIME_INVALID) from None
    return parsed.isoformat(timespec="seconds" if parsed.second else "minutes")


def _parse_datetime(value: str) -> str:
    _fail_unless(bool(DATETIME_RE.fullmatch(value)), DATETIME_INVALID)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(DATETIME_INVALID) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=CHINA_TZ)  # form-js "no_timezone": local (Beijing) time
    return parsed.isoformat()


DATETIME_PARSERS = {
    "date": _parse_date,
    "time": _parse_time,
    "datetime": _parse_datetime,
}
DATETIME_MESSAGES = {
    "date": DATE_INVALID,
    "time": TIME_INVALID,
    "datetime": DATETIME_INVALID,
}


class _DateTimeField(_FormField):
    def __init__(self, component: Mapping, *, must_fill: bool):
        self.subtype = component.get("subtype")
        super().__init__(component, must_fill=must_fill)

    def _deserialize(self, value, attr, data, **kwargs):
        _fail_unless(isinstance(value, str), DATETIME_MESSAGES[self.subtype])
        return DATETIME_PARSERS[self.subtype](value.strip())


class _FilePickerField(_FormField):
    holds_list = True

    def __init__(self, component: Mapping, *, must_fill: bool):
        checks = [] if component.get("multiple") else [lambda ids: _fail_unless(len(ids) <= 1, ONE_FILE_ONLY)]
        super().__init__(component, must_fill=must_fill, validate=checks)

    def _deserialize(self, value, attr, data, **kwargs):
        ids = [value] if isinstance(value, str) else value
        _fail_unless(isinstance(ids, list), NOT_LIST)
        _fail_unless(
            all(isinstance(i, str) and ATTACHMENT_ID_RE.fullmatch(i) for i in ids),
            ATTACHMENT_ID_INVALID,
        )
        return list(ids)


class _ExpressionField(_FormField):
    """Computed in the browser from FEEL we cannot run: kept as sent (the size guard applies)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return value


FIELD_CLASSES: dict[str, type[_FormField]] = {
    "textfield": _TextField,
    "textarea": _TextField,
    "number": _NumberField,
    "checkbox": _CheckboxField,
    "select": _ChoiceField,
    "radio": _ChoiceField,
    "checklist": _MultiChoiceField,
    "taglist": _MultiChoiceField,
    "datetime": _DateTimeField,
    "filepicker": _FilePickerField,
    "expression": _ExpressionField,
}


class _FormSchema(Schema):
    """Base of generated schemas: unknown keys refused, messages in Chinese."""

    error_messages: ClassVar[dict[str, str]] = {
        "unknown": UNKNOWN_FIELD,
        "type": NOT_OBJECT,
    }

    class Meta:
        unknown = RAISE


class _GroupField(fields.Nested):
    """A group with `path`: missing data is checked as {} so required children report."""

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is missing or value is None:
            loaded = super().deserialize({}, attr, data, **kwargs)
            return loaded or missing
        return super().deserialize(value, attr, data, **kwargs)


class _DynamicListField(fields.Nested):
    default_error_messages: ClassVar[dict[str, str]] = {"type": NOT_LIST}

    def deserialize(self, value, attr=None, data=None, **kwargs):
        if value is None:
            return []
        return super().deserialize(value, attr, data, **kwargs)


def _scope_fields(components: list, scope: _Scope) -> dict[str, fields.Field]:
    """marshmallow fields, by data key, for the components writing into one dict."""
    result: dict[str, fields.Field] = {}
    for component in components:
        kind = _kind(component)
        if kind == "group":
            inner = _scope_fields(_children(component), scope.enter(component))
            if _data_name(component):
                result[_data_name(component)] = _GroupField(_make_schema(inner))
            else:
                result.update(inner)
        elif kind == "dynamiclist":
            inner = _scope_fields(_children(component), scope.enter(component))
            result[_data_name(component)] = _DynamicListField(_make_schema(inner), many=True)
        elif kind in FIELD_CLASSES:
            result[component["key"]] = FIELD_CLASSES[kind](component, must_fill=scope.must_fill(component))
    return result


def _make_schema(fields_by_key: dict[str, fields.Field]) -> Schema:
    # Attribute names are synthetic so that a key like "load" or "fields" cannot
    # shadow a Schema method; data_key and attribute carry the real key.
    declared = {}
    for index, (key, field) in enumerate(fields_by_key.items()):
        field.data_key = key
        field.attribute = key
        declared[f"field_{index}"] = field
    return _FormSchema.from_dict(declared, name="FormSchema")()


# --- Public API ---------------------------------------------------------------


def build_schema(form: dict) -> Schema:
    """A marshmallow schema validating submissions of `form` (cached); raises DefinitionError."""
    try:
        canonical = json.dumps(form, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        raise DefinitionError([_definition_error(form, "表单不是有效的 JSON 对象")]) from None
    return _schema_for(canonical)


@functools.lru_cache(maxsize=256)
def _schema_for(canonical: str) -> Schema:
    form = json.loads(canonical)
    problems = lint_form(form)
    if problems:
        # A form we cannot fully check is refused, rather than checked in part.
        raise DefinitionError([_definition_error(form, p) for p in problems])
    return _make_schema(_scope_fields(form["components"], _Scope()))


def _definition_error(form, message: str) -> dict:
    form_id = form.get("id") if isinstance(form, Mapping) else None
    return {"file": None, "line": None, "element_id": form_id, "message": message}


def validate_submission(
    form: dict,
    data: dict,
    extra_allowed: set[str] | frozenset[str] = frozenset(),
    context: Mapping | None = None,
) -> dict:
    """Check `data` against `form`, return it cleaned; raises ValidationFailed, DefinitionError.

    `context` holds the instance's current variables, for `conditional.hide` expressions that
    refer to values not on this form.
    """
    schema = build_schema(form)
    if not isinstance(data, Mapping):
        raise ValidationFailed({"_schema": [NOT_OBJECT]})
    _check_size(data)
    form_keys = {f.data_key for f in schema.load_fields.values()}
    passthrough = {k: v for k, v in data.items() if k in extra_allowed and k not in form_keys}
    submitted = {k: v for k, v in data.items() if k not in passthrough}
    try:
        cleaned = schema.load(submitted)
    except ValidationError as error:
        raise ValidationFailed(_flatten_errors(error.messages)) from None
    missing = _shown_but_empty(form, {**(context or {}), **cleaned})
    if missing:
        raise ValidationFailed({key: [REQUIRED] for key in missing})
    return {**cleaned, **passthrough}


# --- conditional fields ---------------------------------------------------------
# form-js hides fields with FEEL conditions. We evaluate the simple forms analysts write
# (`=name = "value"`, `!=`, `<`…, `and`/`or`, true/false/null/number/string literals), so a
# required field that is shown must be filled; a condition we cannot read stays unenforced.

_FEEL_COMPARISON = re.compile(
    r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|<=|>=|=|<|>)\s*("(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?)\s*'
)
_FEEL_OPERATORS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a is not None and b is not None and a < b,
    ">": lambda a, b: a is not None and b is not None and a > b,
    "<=": lambda a, b: a is not None and b is not None and a <= b,
    ">=": lambda a, b: a is not None and b is not None and a >= b,
}


def _feel_literal(text: str):
    return json.loads(text)


def feel_condition(expression: str):
    """A predicate over variables for a simple FEEL condition, or None when it is not simple."""
    if not isinstance(expression, str) or not expression.strip().startswith("="):
        return None
    alternatives = []
    for alternative in re.split(r"\s+or\s+", expression.strip()[1:]):
        terms = []
        for term in re.split(r"\s+and\s+", alternative):
            match = _FEEL_COMPARISON.fullmatch(term)
            if match is None:
                return None
            name, operator, literal = match.groups()
            terms.append((name, _FEEL_OPERATORS[operator], _feel_literal(literal)))
        alternatives.append(terms)

    def holds(variables: Mapping) -> bool:
        return any(all(op(variables.get(name), value) for name, op, value in terms) for terms in alternatives)

    return holds


def _shown_but_empty(form: dict, variables: Mapping) -> list[str]:
    """Required top-level fields whose hide condition is false (so shown) but left empty."""
    missing = []
    for component, scope in _data_components(form):
        hide = (component.get("conditional") or {}).get("hide") if _is_conditional(component) else None
        key = component.get("key")
        if scope.prefix or not hide or not key or not _validate_rules(component).get("required"):
            continue
        hidden = feel_condition(hide)
        if hidden is not None and not hidden(variables):
            holds_list = _kind(component) in ("checklist", "taglist", "filepicker", "dynamiclist")
            value = variables.get(key)
            if _is_blank(value, holds_list) or (_kind(component) == "checkbox" and value is not True):
                missing.append(key)
    return missing


def _check_size(data: Mapping) -> None:
    """Refuse data too deep, too long or too many, before anything recurses into it."""
    errors: dict[str, list[str]] = {}
    stack: list[tuple[object, str, int]] = [(data, "", 1)]
    seen = 0
    while stack:
        value, path, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ValidationFailed({"_schema": [TOO_MANY_VALUES]})
        if isinstance(value, str) and len(value) > MAX_STRING_LENGTH:
            errors.setdefault(path or "_schema", []).append(TOO_LONG_TEXT)
        elif isinstance(value, (Mapping, list, tuple)):
            if depth > MAX_DEPTH:
                errors.setdefault(path or "_schema", []).append(TOO_DEEP)
                continue
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and len(key) > MAX_STRING_LENGTH:
                    errors.setdefault(path or "_schema", []).append(TOO_LONG_TEXT)
                    continue
                stack.append((item, _join(path, key), depth + 1))
    if errors:
        raise ValidationFailed(errors)


def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _flatten_errors(messages, path: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as {"a.0.b": [messages]}; "_schema" folds into its parent."""
    flat: dict[str, list[str]] = {}

    def visit(node, at: str) -> None:
        if isinstance(node, Mapping):
            for key, child in node.items():
                visit(child, at if key == "_schema" else _join(at, key))
        elif isinstance(node, list):
            for child in node:
                visit(child, at)
        else:
            flat.setdefault(at or "_schema", []).append(str(node))

    visit(messages, path)
    return flat


def form_fields(form: dict) -> list[dict]:
    """The form's data fields, flattened: {key, label, type, required, options, format, confidential}.

    `key` is the dotted data path; a dynamic list's item level is "*" ("problems.*.suggestion").
    Containers holding data (a dynamiclist, a group with `path`) are listed before their
    children, so the entries without "." are exactly the top-level data keys.
    `format` is properties.format, else validate.validationType, else the datetime subtype.
    """
    return [_describe_field(component, scope) for component, scope in _data_components(form)]


def confidential_keys(form: dict) -> set[str]:
    """Dotted keys (as in `form_fields`) of fields marked confidential, or inside a confidential container."""
    return {f["key"] for f in form_fields(form) if f["confidential"]}


def _data_components(form: dict) -> Iterator[tuple[Mapping, _Scope]]:
    components = form.get("components") if isinstance(form, Mapping) else None
    yield from _walk(components if isinstance(components, list) else [], _Scope())


def _walk(components: list, scope: _Scope) -> Iterator[tuple[Mapping, _Scope]]:
    for component in components:
        if not isinstance(component, Mapping):
            continue
        kind = _kind(component)
        if (kind in VALUE_TYPES or kind in CONTAINER_TYPES) and _data_name(component):
            yield component, scope
        if kind in CONTAINER_TYPES:
            yield from _walk(_children(component), scope.enter(component))


def _describe_field(component: Mapping, scope: _Scope) -> dict:
    kind = component["type"]
    name = _data_name(component)
    fmt = _format_of(component) or _validate_rules(component).get("validationType") or None
    if kind == "datetime":
        fmt = fmt or component.get("subtype")
    return {
        "key": scope.path(name),
        "label": component.get("label") or name,
        "type": kind,
        "required": scope.must_fill(component),
        "options": _static_options(component) if kind in CHOICE_TYPES else None,
        "format": fmt,
        "confidential": scope.confidential or _is_confidential(component),
    }


# --- Lint ---------------------------------------------------------------------


def lint_form(form: dict) -> list[str]:
    """Problems, in Chinese, a deployer must fix before `form` can be used; never raises."""
    if not isinstance(form, Mapping):
        return ["表单必须是 JSON 对象"]
    problems = []
    if not isinstance(form.get("id"), str) or not form["id"].strip():
        problems.append("表单缺少 id")
    components = form.get("components")
    if not isinstance(components, list):
        problems.append("表单缺少组件列表（components）")
        return problems
    _lint_scope(components, _Scope(), set(), problems)
    return problems


def _lint_scope(components: list, scope: _Scope, taken: set[str], problems: list[str]) -> None:
    """Lint components writing into one data dict; `taken` holds the keys already used there."""
    for index, component in enumerate(components, start=1):
        if not isinstance(component, Mapping):
            problems.append(f"{scope.prefix or '表单'}第 {index} 个组件不是 JSON 对象")
            continue
        where = _where(component, scope, index)
        kind = _kind(component)
        if not kind:
            problems.append(f"{where}：缺少组件类型（type）")
            continue
        if kind not in KNOWN_TYPES:
            problems.append(f"{where}：未知的组件类型“{kind}”")
            continue
        problems.extend(f"{where}：{p}" for p in _component_problems(component, scope))
        name = _data_name(component)
        if name and (kind in VALUE_TYPES or kind in CONTAINER_TYPES):
            if name in taken:
                problems.append(f"{where}：字段键“{name}”重复")
            taken.add(name)
        inner = scope.enter(component)
        if kind in CONTAINER_TYPES and inner.depth <= MAX_DEPTH:  # deeper: reported above
            inner_taken = taken if kind == "group" and not name else set()
            _lint_scope(_children(component), inner, inner_taken, problems)


def _where(component: Mapping, scope: _Scope, index: int) -> str:
    name = _data_name(component)
    label = component.get("label")
    if name:
        return f"字段“{scope.path(name)}”" + (f"（{label}）" if isinstance(label, str) and label else "")
    if isinstance(component.get("id"), str):
        return f"组件“{component['id']}”"
    return f"{scope.prefix}第 {index} 个组件（{component.get('type')}）"


def _component_problems(component: Mapping, scope: _Scope) -> list[str]:
    kind = component["type"]
    problems = _key_problems(component, scope)
    if component.get("validate") is not None and not isinstance(component.get("validate"), Mapping):
        problems.append("校验设置（validate）必须是对象")
    if component.get("properties") is not None and not isinstance(component.get("properties"), Mapping):
        problems.append("自定义属性（properties）必须是对象")
    problems += _format_problems(component)
    if kind in TEXT_TYPES:
        problems += _text_rule_problems(_validate_rules(component))
    if kind == "number":
        problems += _number_rule_problems(component)
    if kind in CHOICE_TYPES:
        problems += _option_problems(component)
    if kind == "datetime" and component.get("subtype") not in DATETIME_SUBTYPES:
        problems.append(f"未知的日期时间子类型“{component.get('subtype')}”，可用：date、time、datetime")
    if kind in CONTAINER_TYPES and not isinstance(component.get("components"), list):
        problems.append("缺少子组件列表（components）")
    return problems


def _key_problems(component: Mapping, scope: _Scope) -> list[str]:
    kind = component["type"]
    attribute = "path" if kind in CONTAINER_TYPES else "key"
    value = component.get(attribute)
    needs_name = kind in VALUE_TYPES or kind == "dynamiclist"
    if value is None or value == "":
        return [f"缺少字段键（{attribute}）"] if needs_name else []
    if kind not in VALUE_TYPES | CONTAINER_TYPES:
        return []
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        return [f"字段键（{attribute}）必须是不含首尾空格的文本"]
    if "." in value:
        return [f"字段键“{value}”不能包含“.”（本系统不支持点号路径）"]
    if scope.depth + _levels_below(kind) > MAX_DEPTH:
        return [f"数据嵌套层级过深（最多 {MAX_DEPTH} 层）"]
    return []


def _levels_below(kind: str) -> int:
    """How many data levels a component adds under the dict it writes into."""
    if kind == "dynamiclist":
        return 2  # the list, then each item's dict
    if kind in MULTI_CHOICE_TYPES or kind in ("group", "filepicker"):
        return 1
    return 0


def _format_problems(component: Mapping) -> list[str]:
    fmt = _properties(component).get("format")
    if fmt in (None, ""):
        return []
    if fmt not in FORMATS:
        return [f"未知的格式（format）“{fmt}”，可用：{'、'.join(FORMATS)}"]
    if component["type"] not in TEXT_TYPES:
        return ["格式（format）只适用于文本字段（textfield、textarea）"]
    return []


def _is_number(value) -> bool:
    return _to_decimal(value) is not None


def _text_rule_problems(rules: Mapping) -> list[str]:
    problems = []
    for name in ("minLength", "maxLength"):
        value = rules.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(f"校验参数 {name} 必须是非负整数")
    low, high = rules.get("minLength"), rules.get("maxLength")
    if not problems and low is not None and high is not None and low > high:
        problems.append("最小长度大于最大长度")
    pattern = rules.get("pattern")
    if pattern not in (None, ""):
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            problems.append(f"正则表达式“{pattern}”无效：{error}")
    if rules.get("validationType", "") not in VALIDATION_TYPES:
        problems.append(
            f"未知的校验类型（validationType）“{rules.get('validationType')}”，可用：email、phone"
        )
    return problems


def _number_rule_problems(component: Mapping) -> list[str]:
    rules = _validate_rules(component)
    problems = [
        f"校验参数 {name} 必须是数字"
        for name in ("min", "max")
        if name in rules and not _is_number(rules[name])
    ]
    low, high = _to_decimal(rules.get("min")), _to_decimal(rules.get("max"))
    if not problems and low is not None and high is not None and low > high:
        problems.append("最小值大于最大值")
    digits = component.get("decimalDigits")
    if digits not in (None, "") and (isinstance(digits, bool) or not isinstance(digits, int) or digits < 0):
        problems.append("小数位数（decimalDigits）必须是非负整数")
    increment = component.get("increment")
    if increment not in (None, "") and not _is_number(increment):
        problems.append("步长（increment）必须是数字")
    return problems


def _option_problems(component: Mapping) -> list[str]:
    values = component.get("values")
    dynamic = component.get("valuesKey") or component.get("valuesExpression")
    if not values:
        return [] if dynamic else ["选项列表（values）为空"]
    if not isinstance(values, list):
        return ["选项列表（values）必须是列表"]
    problems, seen = [], []
    for option in values:
        if not isinstance(option, Mapping) or not _is_choice_scalar(option.get("value")):
            problems.append("每个选项必须有文本或数字的 value")
            continue
        if option["value"] in seen:
            problems.append(f"选项值“{option['value']}”重复")
        seen.append(option["value"])
    return problems
