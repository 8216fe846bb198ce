"""Errors a request gets: each problem names its row and field, in MLflow's error body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_REPORTED_ERRORS = 20
_SHOWN = 60  # characters of a client's value or field name quoted back in a message


def shown(value: Any) -> str:
    """A client's value as quoted in a message, cut short (a fuzzer sends megabytes)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass
class Problem:
    field: str | None
    row: int | None
    message: str

    def text(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field[:_SHOWN]}'")
        return (", ".join(where) + ": " if where else "") + self.message

    def as_dict(self) -> dict[str, Any]:
        name = None if self.field is None else self.field[:_SHOWN]
        return {"row": self.row, "field": name, "message": self.message}


class RequestError(ValueError):
    """A request the server refuses; `status` is the HTTP status (400, 413, 422, 503)."""

    def __init__(self, status: int, problems: list[Problem], error_code: str | None = None):
        self.status = status
        self.problems = problems
        self.error_code = error_code or {
            400: "BAD_REQUEST",
            413: "REQUEST_TOO_LARGE",
            422: "INVALID_PARAMETER_VALUE",
            503: "NOT_READY",
        }.get(status, "BAD_REQUEST")
        super().__init__(self.message)

    @property
    def message(self) -> str:
        shown_ = [p.text() for p in self.problems[:MAX_REPORTED_ERRORS]]
        more = len(self.problems) - len(shown_)
        return "; ".join(shown_) + (f"; and {more} more problem(s)" if more > 0 else "")

    def body(self) -> dict[str, Any]:
        """MLflow's error shape ({error_code, message}) plus the problems one by one."""
        return {
            "error_code": self.error_code,
            "message": self.message,
            "errors": [p.as_dict() for p in self.problems[:MAX_REPORTED_ERRORS]],
        }


def fail(status: int, message: str, field: str | None = None, row: int | None = None):
    raise RequestError(status, [Problem(field, row, message)])
