"""Errors that services raise and every edge (API, pages, admin, commands) turns into a clear message."""

from typing import Any


class FaroError(Exception):
    """A failure a person can act on. `extra` carries machine-readable details."""

    status_code = 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class InvalidInput(FaroError):
    status_code = 400


class NotFound(FaroError):
    status_code = 404


class Conflict(FaroError):
    status_code = 409


class PayloadTooLarge(FaroError):
    status_code = 413


class Unavailable(FaroError):
    status_code = 503
