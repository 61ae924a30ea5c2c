"""Errors raised by the engine; `webapp` maps each type to one HTTP status."""


class EngineError(Exception):
    """Base class: every engine error carries a message a person can act on."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


class NotFound(EngineError):
    """No such thing, or not visible to this user (HTTP 404)."""


class NotAllowed(EngineError):
    """Authenticated but not permitted (HTTP 403)."""


class Conflict(EngineError):
    """State conflict: already completed, held by someone else, concurrent update (HTTP 409)."""


class TaskConflict(Conflict):
    """A task cannot take this action in its current state (HTTP 409)."""


class ValidationFailed(EngineError):
    """Submitted data is invalid (HTTP 422); `errors` maps field -> list of messages."""

    def __init__(self, errors: dict[str, list[str]], message: str = "数据校验未通过"):
        super().__init__(message)
        self.errors = errors


class DefinitionError(EngineError):
    """A deployment bundle is invalid (HTTP 422).

    `errors` is a list of {"file", "line", "element_id", "message"} dicts.
    """

    def __init__(self, errors: list[dict], message: str = "流程定义无效"):
        super().__init__(message if not errors else f"{message}: {errors[0]['message']}")
        self.errors = errors


class ScriptError(EngineError):
    """A diagram's script or expression failed or was refused by the sandbox."""


class TooLarge(EngineError):
    """A body or upload is over its limit (HTTP 413)."""


class Unavailable(EngineError):
    """The database or another required service is unavailable (HTTP 503)."""
