"""Request dependencies: the storage handle and the authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from postroom.errors import AuthenticationFailed, Forbidden
from storage.db.models import User
from storage.registry import Storage
from storage.repositories.tokens import authenticate_recent

__all__ = [
    "AdminUser",
    "CurrentUser",
    "Store",
    "admin_user",
    "bearer",
    "bearer_token",
    "change_seq_read",
    "current_user",
    "get_store",
]

bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")
"""The ``Authorization`` header's credentials, if any: a dependency, or awaited with the request
by a route that resolves its user itself (``POST /send``)."""


async def get_store(request: Request) -> Storage:
    """Async, like every dependency here: FastAPI runs a plain ``def`` in a worker thread."""
    store: Storage = request.app.state.store
    return store


Store = Annotated[Storage, Depends(get_store)]


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("sign in first: send 'Authorization: Bearer <token>'")
    return credentials.credentials


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    return _token(credentials)


async def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The token's user, looked up on every request unless ``POSTROOM_TOKEN_CACHE_SECONDS`` lets
    this process trust a token it validated that recently (revocation elsewhere then takes up
    to that long here). The user may be shared between requests: read it, never change it.

    The lookup reads the user's ``change_seq`` in the same statement; it is kept for the
    request (:func:`change_seq_read`) so a route that needs it spends no second query. The
    token and the store are taken here directly, not through the ``bearer_token`` and
    ``Store`` dependencies: every dependency FastAPI resolves costs on every request.
    """
    token = _token(credentials)  # no token: 401 before any storage is touched
    store: Storage = request.app.state.store
    found = await authenticate_recent(
        store.db.lone, token, remember=store.settings.token_cache_seconds
    )
    request.state.change_seq = found.change_seq
    return found.user


def change_seq_read(request: Request) -> int | None:
    """The user's ``change_seq`` as read with the token at the start of this request, or
    ``None`` when the token was trusted from memory (then it must be read again).

    Read before anything else of the request, so a page rendered after it is never older than
    it: what :mod:`gateway.page_cache` needs.
    """
    seq: int | None = getattr(request.state, "change_seq", None)
    return seq


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    """The signed-in user, if an administrator: for platform-wide data, not one user's."""
    if not user.is_admin:
        raise Forbidden("only an administrator may do this")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
