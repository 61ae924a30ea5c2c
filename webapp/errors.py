"""One place that maps engine errors and HTTP errors to API.md's JSON bodies."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from engine import errors as engine_errors

log = logging.getLogger(__name__)

STATUS = {
    engine_errors.NotFound: (404, "not_found"),
    engine_errors.NotAllowed: (403, "forbidden"),
    engine_errors.Conflict: (409, "conflict"),
    engine_errors.ValidationFailed: (422, "validation"),
    engine_errors.DefinitionError: (422, "invalid_definition"),
    engine_errors.ScriptError: (422, "script_error"),
    engine_errors.TooLarge: (413, "too_large"),
    engine_errors.Unavailable: (503, "unavailable"),
}
HTTP_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "bad_request",
    422: "validation",
    429: "too_many_requests",
    503: "unavailable",
}


def error_body(status: int, error: str, message: str, **extra):
    response = jsonify({"error": error, "message": message, **extra})
    response.status_code = status
    return response


def _engine_error(exc: engine_errors.EngineError):
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, name = STATUS[cls]
            break
    else:
        status, name = 500, "internal"
    extra = {}
    if isinstance(exc, (engine_errors.ValidationFailed, engine_errors.DefinitionError)):
        extra["errors"] = exc.errors
    return error_body(status, name, exc.message or name, **extra)


def _webargs_errors(exc: HTTPException) -> dict:
    messages = getattr(exc, "data", {}).get("messages") or {}
    flat: dict = {}
    for location in messages.values():
        if isinstance(location, dict):
            flat.update(location)
    return flat


def _http_error(exc: HTTPException):
    status = exc.code or 500
    if status == 422:
        return error_body(422, "validation", "请求数据校验未通过", errors=_webargs_errors(exc))
    if status == 400 and _webargs_errors(exc):
        return error_body(400, "bad_request", "请求参数有误", errors=_webargs_errors(exc))
    message = {413: "请求体超过大小限制", 404: "资源不存在", 405: "不支持的请求方法"}.get(
        status, exc.description
    )
    return error_body(status, HTTP_NAMES.get(status, "error"), message)


def _conflict(_exc):
    return error_body(409, "conflict", "数据已被其他操作修改，请刷新后重试")


def _bad_value(_exc):
    # The driver refused a value (out of range, wrong encoding): the request's fault, not the database's.
    return error_body(400, "bad_request", "请求中的数据超出允许范围")


def _database_down(exc):
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return error_body(503, "unavailable", "数据库暂时不可用，请稍后重试")


def init_app(app: Flask) -> None:
    app.register_error_handler(engine_errors.EngineError, _engine_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StaleDataError, _conflict)
    app.register_error_handler(IntegrityError, _conflict)
    app.register_error_handler(OperationalError, _database_down)
    app.register_error_handler(InterfaceError, _database_down)
    app.register_error_handler(DataError, _bad_value)
