"""How errors reach HTTP clients: JSON naming the field and the problem, never a stack trace.

Every error body has the shape ``{"error": {"code": ..., "message": ..., "field": ...}}``;
request validation errors list each field under ``"fields"`` too. A change-log position the
server no longer covers is ``410`` with code ``resync``: the client must load its state again.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from postroom.errors import (
    AlreadyExists,
    AuthenticationFailed,
    ChangesExpired,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PostroomError,
    RateLimited,
    SchemaOutOfDate,
    StorageError,
)

__all__ = ["PayloadTooLarge", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)

# SQLSTATE classes meaning "the server is not there for you right now": 08 connection
# exception, 53 insufficient resources (too many connections), 57 operator intervention
# (shutting down, starting up: 57P01-57P03).
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def _database_unavailable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return exc.connection_invalidated or (
        isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    )


def _try_again(what: str) -> JSONResponse:
    body = error_body("unavailable", f"{what}; try again in a moment")
    return JSONResponse(body, 503, headers={"Retry-After": "1"})


class PayloadTooLarge(InvalidInput):
    """The message would exceed the size limit."""


_STATUS: list[tuple[type[PostroomError], int, str]] = [
    (PayloadTooLarge, 413, "too_large"),
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (ChangesExpired, 410, "resync"),
    (AlreadyExists, 409, "conflict"),
    (Conflict, 409, "conflict"),
    (RateLimited, 429, "rate_limited"),
    (AuthenticationFailed, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (SchemaOutOfDate, 503, "unavailable"),
    (StorageError, 503, "unavailable"),
]


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    error.update(extra)
    return {"error": error}


def _field_name(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header", "form")]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or ".".join(str(p) for p in location)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PostroomError)
    async def _postroom(request: Request, exc: PostroomError) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                field = getattr(exc, "field", None)
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                if isinstance(exc, RateLimited):
                    headers = {
                        "Retry-After": str(exc.retry_after),
                        "RateLimit-Limit": str(exc.limit),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(exc.reset),
                    }
                return JSONResponse(error_body(code, exc.message, field), status, headers=headers)
        log.error("unmapped error on %s: %s", request.url.path, exc)
        return JSONResponse(error_body("error", exc.message), 400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": _field_name(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = fields[0] if fields else {"field": "", "message": "invalid request"}
        return JSONResponse(
            error_body(
                "invalid_input",
                f"{first['field']}: {first['message']}",
                first["field"],
                fields=fields,
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        """A lost or refused database (a restart, a failover) is a 503 to retry, not a bug."""
        if _database_unavailable(exc):
            log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
            return _try_again("the database is unavailable")
        return await _unexpected(request, exc)

    @app.exception_handler(ConnectionError)
    async def _connection(request: Request, exc: ConnectionError) -> JSONResponse:
        """A backend refusing or resetting the connection (raised before any driver wraps it)."""
        log.warning("backend unreachable on %s: %r", request.url.path, exc)
        return _try_again("a backend is unreachable")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal", "something went wrong on our side; it has been logged"), 500
        )
