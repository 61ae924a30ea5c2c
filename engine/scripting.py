"""Evaluate analysts' expressions and scripts from BPMN diagrams in a restricted sandbox.

`ScriptEngine` is SpiffWorkflow's script engine for our workflows: restricted builtins,
whitelisted helpers as globals, a static check of the code before it runs, a time limit,
Camunda-style `${…}` wrappers, ISO 8601 timer literals, and task data that stays storable.

The sandbox is a guard against mistakes, not a security boundary (only analysts deploy).
Bounded: `*`, `**` and `<<` results (sequence length, integer size), `range()` length, and
time spent on lines of diagram code. Not bounded: time spent inside helpers or in one C-level
call (a single huge `sorted()`), and memory from C-level string methods or format widths
(`s.ljust(10**9)`, `s.replace(...)` chains, `f"{x:>1000000000}"`) or from `s = s + s` loops
that outrun the time limit. While diagram code runs, a debugger or coverage tool does not see
the lines it executes; the previous trace function is restored afterwards.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import sys
import textwrap
import time
import traceback
import types
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from functools import lru_cache
from typing import Any
from uuid import UUID

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.specs.event_definitions.multiple import MultipleEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)

from engine.errors import EngineError, ScriptError

MAX_SOURCE_CHARS = 20_000
MAX_SEQUENCE_LENGTH = 1_000_000
MAX_INT_BITS = 100_000
MAX_DATA_DEPTH = 50

# China has had no daylight saving time since 1991, so a fixed offset is Asia/Shanghai.
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

# Every frame of diagram code carries this file name; the time limit traces only those.
SCRIPT_FILENAME = "<bpmn-script>"

TIMER_KINDS = ("timeDate", "timeDuration", "timeCycle")


# --- Camunda-style wrappers -------------------------------------------------------------

_WRAPPER = re.compile(r"^[$#]\{(?P<body>.*)\}$", re.DOTALL)


def normalize_expression(text: str) -> str:
    """Strip whitespace and one surrounding `${…}` or `#{…}` wrapper."""
    stripped = text.strip()
    wrapped = _WRAPPER.match(stripped)
    return wrapped.group("body").strip() if wrapped else stripped


# --- Static rules -----------------------------------------------------------------------

# Attributes without a leading underscore that still reach frames, globals or formatting
# machinery able to read dunder attributes.
_BLOCKED_ATTRIBUTES = frozenset(
    {
        "format",
        "format_map",
        "mro",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "tb_frame",
        "tb_next",
    }
)

# Task data holds no callables, so calling one of these names can only mean the builtin:
# refuse it at deployment rather than fail with a NameError at run time.
_FORBIDDEN_CALLS = frozenset(
    {
        "breakpoint",
        "compile",
        "delattr",
        "dir",
        "eval",
        "exec",
        "exit",
        "getattr",
        "globals",
        "hasattr",
        "help",
        "input",
        "locals",
        "memoryview",
        "object",
        "open",
        "print",
        "quit",
        "setattr",
        "super",
        "type",
        "vars",
    }
)

_GUARDED_OPERATORS = {ast.Mult: "mul", ast.Pow: "pow", ast.LShift: "lshift"}


class _Violation(Exception):
    def __init__(self, node: ast.AST, reason: str):
        super().__init__(reason)
        self.line = getattr(node, "lineno", 1)
        self.reason = reason


class _SandboxRules(ast.NodeVisitor):
    """Refuse constructs that reach interpreter internals or defeat the time limit."""

    def visit_Name(self, node: ast.Name) -> None:
        _check_name(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)  # inner first: report `x.__class__` before `.__bases__`
        _check_attribute(node, node.attr)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in _FORBIDDEN_CALLS:
            raise _Violation(node, f"脚本不允许调用 {node.func.id}()")
        self.generic_visit(node)

    def visit_Import(self, node: ast.AST) -> None:
        raise _Violation(node, "脚本不允许导入模块 (import)")

    visit_ImportFrom = visit_Import

    def visit_Global(self, node: ast.AST) -> None:
        raise _Violation(node, "脚本不允许使用 global / nonlocal")

    visit_Nonlocal = visit_Global

    def visit_ClassDef(self, node: ast.AST) -> None:
        raise _Violation(node, "脚本不允许定义类 (class)")

    def visit_AsyncFunctionDef(self, node: ast.AST) -> None:
        raise _Violation(node, "脚本不允许使用异步语法 (async/await)")

    visit_Await = visit_AsyncFor = visit_AsyncWith = visit_AsyncFunctionDef

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        _check_name(node, node.name)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        _check_name(node, node.arg)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        # A bare except would swallow the time-limit interruption.
        if node.type is None:
            raise _Violation(node, "脚本不允许不带异常类型的 except:，请写明类型，如 except Exception:")
        if node.name:
            _check_name(node, node.name)
        self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> None:
        # return/break/continue in `finally` would swallow the time-limit interruption.
        for statement in node.finalbody:
            for inner in ast.walk(statement):
                if isinstance(inner, (ast.Return, ast.Break, ast.Continue)):
                    raise _Violation(inner, "脚本的 finally 块中不允许 return / break / continue")
        self.generic_visit(node)

    visit_TryStar = visit_Try

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if type(node.op) in _GUARDED_OPERATORS and not isinstance(node.target, ast.Name):
            raise _Violation(node, "脚本不支持对下标或属性使用 *=、**=、<<=，请改写为 a[i] = a[i] * n")
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # `case str(__class__=c)` reads attributes without an Attribute node.
        for attribute in node.kwd_attrs:
            _check_attribute(node, attribute)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            _check_name(node, node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            _check_name(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            _check_name(node, node.rest)
        self.generic_visit(node)


def _check_name(node: ast.AST, name: str) -> None:
    # A lone `_` is the usual throwaway variable and harmless.
    if name.startswith("_") and name != "_":
        raise _Violation(node, f"脚本不允许使用以下划线开头的名称: {name}")


def _check_attribute(node: ast.AST, attribute: str) -> None:
    if attribute.startswith("_"):
        raise _Violation(node, f"脚本不允许访问以下划线开头的属性: {attribute}")
    if attribute in ("format", "format_map"):
        raise _Violation(node, f"脚本不允许使用 str.{attribute}()，请改用 f-string")
    if attribute in _BLOCKED_ATTRIBUTES:
        raise _Violation(node, f"脚本不允许访问属性: {attribute}")


# --- Bounded operators ------------------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)


def _refuse_length(length: int) -> None:
    if length > MAX_SEQUENCE_LENGTH:
        raise ScriptError(f"结果过大（{length} 个元素，上限 {MAX_SEQUENCE_LENGTH}），已拒绝")


def _refuse_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise ScriptError(f"整数过大（约 {bits} 位二进制，上限 {MAX_INT_BITS}），已拒绝")


def _check_mul(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        _refuse_bits(left.bit_length() + right.bit_length())
    elif isinstance(left, _SEQUENCES) and isinstance(right, int):
        _refuse_length(len(left) * right)
    elif isinstance(right, _SEQUENCES) and isinstance(left, int):
        _refuse_length(len(right) * left)


def _check_pow(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        _refuse_bits(base.bit_length() * exponent)


def _check_lshift(value: Any, shift: Any) -> None:
    if isinstance(value, int) and isinstance(shift, int) and value and shift > 0:
        _refuse_bits(value.bit_length() + shift)


def _guarded(check: Callable, operation: Callable) -> Callable:
    def guarded(left, right):
        check(left, right)
        return operation(left, right)

    return guarded


# Injected as builtins under dunder names, which diagram code cannot spell.
_GUARDS = {
    "__guard_mul__": _guarded(_check_mul, operator.mul),
    "__guard_imul__": _guarded(_check_mul, operator.imul),
    "__guard_pow__": _guarded(_check_pow, operator.pow),
    "__guard_ipow__": _guarded(_check_pow, operator.ipow),
    "__guard_lshift__": _guarded(_check_lshift, operator.lshift),
    "__guard_ilshift__": _guarded(_check_lshift, operator.ilshift),
}


class _BoundOperations(ast.NodeTransformer):
    """Route `*`, `**` and `<<` (and their in-place forms) through size checks."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        operation = _GUARDED_OPERATORS.get(type(node.op))
        if operation is None:
            return node
        return ast.copy_location(_guard_call(f"__guard_{operation}__", node.left, node.right), node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        self.generic_visit(node)
        operation = _GUARDED_OPERATORS.get(type(node.op))
        if operation is None:
            return node
        current = ast.Name(id=node.target.id, ctx=ast.Load())
        value = _guard_call(f"__guard_i{operation}__", current, node.value)
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)


def _guard_call(name: str, left: ast.expr, right: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=[left, right], keywords=[])


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    try:
        length = len(numbers)
    except OverflowError:
        length = MAX_SEQUENCE_LENGTH + 1
    _refuse_length(length)
    return numbers


_SAFE_BUILTINS: dict[str, Any] = {
    **{
        function.__name__: function
        for function in (
            abs,
            all,
            any,
            bool,
            chr,
            dict,
            divmod,
            enumerate,
            filter,
            float,
            int,
            isinstance,
            len,
            list,
            map,
            max,
            min,
            next,
            ord,
            reversed,
            round,
            set,
            sorted,
            str,
            sum,
            tuple,
            zip,
        )
    },
    **{
        error.__name__: error
        for error in (
            Exception,
            ArithmeticError,
            AssertionError,
            IndexError,
            KeyError,
            LookupError,
            RuntimeError,
            StopIteration,
            TypeError,
            ValueError,
            ZeroDivisionError,
        )
    },
    "range": _bounded_range,
    "date": date,
    "datetime": datetime,
    "timedelta": timedelta,
    "None": None,
    "True": True,
    "False": False,
    **_GUARDS,
}


# --- Compilation ------------------------------------------------------------------------


def _location(source: str, mode: str, line: int) -> str:
    if mode == "exec":
        return f"脚本第 {line} 行"
    shown = source if len(source) <= 80 else source[:77] + "..."
    return f"表达式 “{shown}” 第 {line} 行"


@lru_cache(maxsize=4096)
def _compile(text: str, mode: str) -> types.CodeType:
    """Check and compile diagram code, cached per source text; raises ScriptError."""
    if not isinstance(text, str) or (mode == "eval" and not normalize_expression(text)):
        raise ScriptError("表达式为空")
    source = normalize_expression(text) if mode == "eval" else textwrap.dedent(text)
    if len(source) > MAX_SOURCE_CHARS:
        raise ScriptError(f"脚本过长（{len(source)} 个字符，上限 {MAX_SOURCE_CHARS}）")
    try:
        tree = ast.parse(source, SCRIPT_FILENAME, mode)
        _SandboxRules().visit(tree)
        tree = ast.fix_missing_locations(_BoundOperations().visit(tree))
        return compile(tree, SCRIPT_FILENAME, mode)
    except SyntaxError as err:
        message = f"{_location(source, mode, err.lineno or 1)}: 语法错误: {err.msg}"
        raise ScriptError(message) from None
    except _Violation as violation:
        raise ScriptError(f"{_location(source, mode, violation.line)}: {violation.reason}") from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise ScriptError(f"{_location(source, mode, 1)}: 无法解析: {err}") from None


def check_expression(text: str) -> None:
    """Lint an expression (a `${…}` wrapper is allowed) without running it; raises ScriptError."""
    _compile(text, "eval")


def check_script(text: str) -> None:
    """Lint a script task's script without running it; raises ScriptError."""
    _compile(text, "exec")


# --- Running with a time limit ----------------------------------------------------------


class _ScriptTimeout(BaseException):
    """Raised into diagram code when its time is up; not an Exception, so not caught there."""


def _time_limit_tracer(deadline: float) -> Callable:
    def trace_line(frame, event, arg):
        if time.monotonic() > deadline:
            raise _ScriptTimeout
        return trace_line

    def trace_call(frame, event, arg):
        # Helpers are trusted engine code: tracing their lines would only slow them down.
        if frame.f_code.co_filename != SCRIPT_FILENAME:
            return None
        return trace_line(frame, event, arg)

    return trace_call


def _run_with_time_limit(code: types.CodeType, namespace: dict, time_limit: float) -> Any:
    # sys.settrace is per thread, so this works in any thread, unlike signal.alarm.
    previous = sys.gettrace()
    sys.settrace(_time_limit_tracer(time.monotonic() + time_limit))
    try:
        return eval(code, namespace)  # noqa: S307 - checked, compiled, restricted code
    finally:
        sys.settrace(previous)


def _script_line(err: BaseException) -> int:
    line = 1
    for frame, line_number in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_filename == SCRIPT_FILENAME:
            line = line_number
    return line


def _failure_reason(err: BaseException, time_limit: float) -> str:
    if isinstance(err, _ScriptTimeout):
        return f"脚本执行超时（超过 {time_limit:g} 秒），已停止"
    if isinstance(err, ScriptError):
        return err.message
    if isinstance(err, RecursionError):
        return "递归过深"
    return f"{type(err).__name__}: {err}"


# --- Task data --------------------------------------------------------------------------

_STORABLE_SCALARS = (str, int, float, bool, type(None), datetime, date, timedelta, UUID)


def _storage_problem(value: Any, depth: int = 0) -> str | None:
    if isinstance(value, _STORABLE_SCALARS):
        return None
    if depth >= MAX_DATA_DEPTH:
        return "嵌套过深（或包含循环引用）"
    if isinstance(value, dict):
        bad_keys = [key for key in value if not isinstance(key, str)]
        if bad_keys:
            return f"字典的键必须是字符串，而 {bad_keys[0]!r} 是 {type(bad_keys[0]).__name__}"
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return (
            f"{type(value).__name__} 类型的值无法保存"
            "（只能保存字符串、数字、布尔、None、列表、字典与日期时间）"
        )
    for item in value:
        problem = _storage_problem(item, depth + 1)
        if problem:
            return problem
    return None
    return (
        f"{type(value).__name__} 类型的值无法保存（只能保存字符串、数字、布尔、None、列表、字典与日期时间）"
    )


def _check_storable(name: str, value: Any) -> None:
    problem = _storage_problem(value)
    if problem:
        raise ScriptError(f"变量 “{name}” 无法保存到任务数据: {problem}")


# --- Environment and engine -------------------------------------------------------------


class SandboxEnvironment(TaskDataEnvironment):
    """Runs diagram code with restricted builtins, helpers as globals, and a time limit."""

    def __init__(self, helpers: Mapping[str, Callable] | None = None, time_limit: float = 2.0):
        helpers = dict(helpers or {})
        for name in helpers:
            if not name.isidentifier() or name.startswith("_") or name in _FORBIDDEN_CALLS:
                raise ValueError(f"invalid helper name for diagram code: {name!r}")
        if time_limit <= 0:
            raise ValueError("time_limit must be positive")
        super().__init__(helpers)
        self.time_limit = time_limit

    def evaluate(self, expression: str, context: dict, external_context: dict | None = None) -> Any:
        """Evaluate an expression against task data; raises ScriptError."""
        code = _compile(expression, "eval")
        return self._run(code, self._namespace(context, external_context), expression, "eval")

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        """Run a script and store its variables in `context`; raises ScriptError."""
        code = _compile(script, "exec")
        namespace = self._namespace(context, external_context)
        self._run(code, namespace, script, "exec")
        self._store_results(namespace, context, external_context or {})
        return True

    def _namespace(self, context: dict, external_context: dict | None) -> dict:
        # A shallow merge: task data wins over data objects, which win over helpers.
        namespace = {**self.globals, **(external_context or {}), **context}
        namespace["__builtins__"] = _SAFE_BUILTINS
        return namespace

    def _run(self, code: types.CodeType, namespace: dict, source: str, mode: str) -> Any:
        try:
            return _run_with_time_limit(code, namespace, self.time_limit)
        except ScriptError as err:
            raise ScriptError(self._failure_message(err, source, mode)) from err
        except EngineError:
            raise  # a helper's own domain error (NotFound, Unavailable…) keeps its type
        except (Exception, _ScriptTimeout) as err:
            raise ScriptError(self._failure_message(err, source, mode)) from err

    def _failure_message(self, err: BaseException, source: str, mode: str) -> str:
        shown = normalize_expression(source) if mode == "eval" else source
        location = _location(shown, mode, _script_line(err))
        return f"{location}: {_failure_reason(err, self.time_limit)}"

    def _store_results(self, namespace: dict, context: dict, external_context: dict) -> None:
        results = {
            name: value
            for name, value in namespace.items()
            if self._belongs_in_task_data(name, value, external_context)
        }
        for name, value in results.items():
            _check_storable(name, value)
        for name in [name for name in context if name not in results]:
            del context[name]
        context.update(results)

    def _belongs_in_task_data(self, name: str, value: Any, external_context: dict) -> bool:
        if name == "__builtins__":
            return False
        if name in self.globals and value is self.globals[name]:
            return False
        if name in external_context and value is external_context[name]:
            return False
        # Like SpiffWorkflow: functions (helpers, defined in the script) never stay in data.
        return not callable(value) and not isinstance(value, types.ModuleType)


class ScriptEngine(PythonScriptEngine):
    """SpiffWorkflow script engine for Chengxin diagrams: sandboxed, time-limited, timer-aware."""

    def __init__(self, helpers: Mapping[str, Callable] | None = None, time_limit: float = 2.0):
        super().__init__(environment=SandboxEnvironment(helpers, time_limit))

    def evaluate(self, task, expression: str, external_context: dict | None = None) -> Any:
        """Evaluate an expression for a task (ISO 8601 string for timers); raises ScriptError."""
        try:
            timer = _timer_definition(task, expression)
            if timer is not None:
                return self._evaluate_timer(task, timer, expression, external_context)
            return self.environment.evaluate(expression, task.data, external_context)
        except ScriptError as err:
            raise ScriptError(f"{_task_label(task)}: {err.message}") from err

    def execute(self, task, script: str, external_context: dict | None = None) -> bool:
        """Run a script task's script on the task's data; raises ScriptError."""
        try:
            return self.environment.execute(script, task.data, external_context)
        except ScriptError as err:
            raise ScriptError(f"{_task_label(task)}: {err.message}") from err

    def _evaluate_timer(self, task, timer: TimerEventDefinition, expression: str, external_context) -> str:
        text = normalize_expression(expression)
        if _looks_like_iso_timer(text):
            value = _iso_timer_literal(text)
        else:
            result = self.environment.evaluate(text, task.data, external_context)
            value = to_timer_value(_coerce_to_timer_kind(_timer_kind(timer), result))
        _check_timer_kind(_timer_kind(timer), value)
        return value


def _task_label(task) -> str:
    spec = task.task_spec
    element_id = getattr(spec, "bpmn_id", None) or spec.name
    name = getattr(spec, "bpmn_name", None)
    return f"流程元素 “{name}” ({element_id})" if name else f"流程元素 {element_id}"


# --- Timers -----------------------------------------------------------------------------

_DATE = r"\d{4}-\d{2}-\d{2}"
_DATE_TIME = (
    rf"{_DATE}(?:T\d{{2}}(?::\d{{2}}(?::\d{{2}}(?:[.,]\d+)?)?)?(?P<offset>Z|[+-]\d{{2}}(?::?\d{{2}})?)?)?"
)
_DURATION = (
    r"P(?=\d|T\d)(?:\d+Y)?(?:\d+M)?(?:\d+W)?(?:\d+D)?(?:T(?=\d)(?:\d+H)?(?:\d+M)?(?:\d+(?:[.,]\d+)?S)?)?"
)
_POINT = re.compile(_DATE_TIME)
_ISO_DURATION = re.compile(_DURATION)
_ISO_CYCLE = re.compile(
    rf"R\d*/(?:{_DATE_TIME.replace('?P<offset>', '?:')}|{_DURATION})"
    rf"(?:/(?:{_DATE_TIME.replace('?P<offset>', '?:')}|{_DURATION}))?"
)

_KIND_OF_DEFINITION = {
    TimeDateEventDefinition: "timeDate",
    DurationTimerEventDefinition: "timeDuration",
    CycleTimerEventDefinition: "timeCycle",
}
_KIND_DESCRIPTIONS = {
    "timeDate": "日期时间（如 2026-12-01T09:00:00+08:00）",
    "timeDuration": "时长（如 PT5M、P3D）",
    "timeCycle": "循环（如 R3/PT1H）",
}


def _looks_like_iso_timer(text: str) -> bool:
    return any(pattern.fullmatch(text) for pattern in (_POINT, _ISO_DURATION, _ISO_CYCLE))


def _literal_kind(literal: str) -> str:
    if literal.startswith("R"):
        return "timeCycle"
    return "timeDuration" if literal.startswith("P") else "timeDate"


def _anchor_to_china(component: str) -> str:
    """A date or date-time without an offset means Beijing time, whatever the server's zone."""
    point = _POINT.fullmatch(component)
    if point is None or point.group("offset"):
        return component
    if len(component) == 10:
        return f"{component}T00:00:00+08:00"
    return f"{component}+08:00"


@lru_cache(maxsize=1024)
def _iso_timer_literal(text: str) -> str:
    """Validate an ISO 8601 timer literal with SpiffWorkflow's parsers; raises ScriptError."""
    literal = "/".join(_anchor_to_china(component) for component in text.split("/"))
    try:
        kind = _literal_kind(literal)
        if kind == "timeCycle":
            TimerEventDefinition.parse_iso_recurring_interval(literal)
        elif kind == "timeDuration":
            TimerEventDefinition.parse_iso_duration(literal)
        else:
            TimerEventDefinition.get_datetime(literal)
    except Exception as err:
        raise ScriptError(f"无效的 ISO 8601 定时器表达式 “{text}”: {err}") from None
    return literal


def is_iso_timer_literal(text: str) -> bool:
    """Whether `text` (a `${…}` wrapper allowed) is a valid ISO 8601 date, duration or cycle."""
    source = normalize_expression(text)
    if not _looks_like_iso_timer(source):
        return False
    try:
        _iso_timer_literal(source)
    except ScriptError:
        return False
    return True


def _iso_duration(delta: timedelta) -> str:
    # Whole seconds, rounded up so that a timer never fires early; the past means now.
    seconds = max(0, math.ceil(delta.total_seconds()))
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    clock = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


def _as_china_datetime(value: date) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)
    return datetime.combine(value, clock_time(0), CHINA_TZ)


def to_timer_value(value: Any) -> str:
    """Convert a timer expression's result to an ISO 8601 string; raises ScriptError.

    A naive datetime is Beijing time; a date is 00:00 Beijing time that day (not the end of
    the office day); a timedelta becomes a duration in whole seconds, a negative one PT0S.
    """
    if isinstance(value, str):
        source = normalize_expression(value)
        if not _looks_like_iso_timer(source):
            raise ScriptError(f"定时器表达式的结果 “{value}” 不是 ISO 8601 日期时间、时长或循环")
        return _iso_timer_literal(source)
    if isinstance(value, date):
        return _as_china_datetime(value).isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    raise ScriptError(f"定时器表达式的结果类型 {type(value).__name__} 无法用作定时器")


def _coerce_to_timer_kind(kind: str | None, value: Any) -> Any:
    # "Wait until X" and "wait X - now" are the same timer: accept either for date/duration.
    if kind == "timeDuration" and isinstance(value, date):
        return _as_china_datetime(value) - datetime.now(CHINA_TZ)
    if kind == "timeDate" and isinstance(value, timedelta):
        return datetime.now(CHINA_TZ) + value
    return value


def _check_timer_kind(kind: str | None, literal: str) -> None:
    if kind is not None and _literal_kind(literal) != kind:
        raise ScriptError(f"{kind} 定时器需要{_KIND_DESCRIPTIONS[kind]}，而表达式给出的是 “{literal}”")


def _timer_kind(timer: TimerEventDefinition) -> str | None:
    return next((kind for cls, kind in _KIND_OF_DEFINITION.items() if isinstance(timer, cls)), None)


def _timer_definition(task, expression: str) -> TimerEventDefinition | None:
    """The timer definition of `task` whose expression this is, if any."""
    definition = getattr(task.task_spec, "event_definition", None)
    if isinstance(definition, MultipleEventDefinition):
        candidates = definition.event_definitions
    else:
        candidates = [definition]
    for candidate in candidates:
        if isinstance(candidate, TimerEventDefinition) and candidate.expression == expression:
            return candidate
    return None


def check_timer_expression(text: str, kind: str | None = None) -> None:
    """Lint a timer expression: an ISO 8601 literal or a Python expression; raises ScriptError.

    `kind` is the BPMN element holding it ("timeDate", "timeDuration" or "timeCycle"); when
    given, a literal of another kind is refused.
    """
    if kind is not None and kind not in TIMER_KINDS:
        raise ValueError(f"unknown timer kind: {kind!r}")
    source = normalize_expression(text)
    if not _looks_like_iso_timer(source):
        check_expression(source)
        return
    literal = _iso_timer_literal(source)
    if kind is not None:
        _check_timer_kind(kind, literal)
