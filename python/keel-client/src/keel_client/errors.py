"""Errors a keel server answers, as exceptions carrying its message and stable code."""

from __future__ import annotations

from typing import Any, Optional


class KeelError(Exception):
    """A request the server refused or failed.

    ``status`` is the HTTP status, ``code`` the server's stable error code (``not_found``,
    ``hash_mismatch``, ``payload_too_large``...), ``message`` its explanation (what was wrong and
    what to do) and ``body`` the whole JSON answer when there was one.
    """

    def __init__(self, status: int, code: str, message: str, body: Optional[Any] = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class InvalidRequestError(KeelError):
    """400 or 422: the request is wrong (bad input, hash mismatch, unknown field)."""


class AuthenticationError(KeelError):
    """401: no credential, or one the server does not accept (expired, revoked)."""


class PermissionDeniedError(KeelError):
    """403: the credential lacks the scope the route needs."""


class NotFoundError(KeelError):
    """404: no such model, version, alias, deployment or decision."""


class ConflictError(KeelError):
    """409: the change conflicts with the current state (e.g. the same bytes pushed twice)."""


class PayloadTooLargeError(KeelError):
    """413: the body, model or batch is over the server's limit."""


class ServerError(KeelError):
    """5xx: the server is overloaded (503, retry later) or failed."""


def error_for(status: int, code: str, message: str, body: Optional[Any] = None) -> KeelError:
    """The exception class of an HTTP status, built with the server's code and message."""
    cls: type[KeelError]
    if status in (400, 422):
        cls = InvalidRequestError
    elif status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = PermissionDeniedError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif status == 413:
        cls = PayloadTooLargeError
    elif status >= 500:
        cls = ServerError
    else:
        cls = KeelError
    return cls(status, code, message, body)
