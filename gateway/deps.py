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
    "bearer_token",
    "current_user",
    "get_store",
]

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/token")


async def get_store(request: Request) -> Storage:
    """Async, like every dependency here: FastAPI runs a plain ``def`` in a worker thread."""
    store: Storage = request.app.state.store
    return store


Store = Annotated[Storage, Depends(get_store)]


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("sign in first: send 'Authorization: Bearer <token>'")
    return credentials.credentials


async def current_user(store: Store, token: Annotated[str, Depends(bearer_token)]) -> User:
    """The token's user, looked up on every request unless ``POSTROOM_TOKEN_CACHE_SECONDS`` lets
    this process trust a token it validated that recently (revocation elsewhere then takes up
    to that long here). The user may be shared between requests: read it, never change it.
    """
    return await authenticate_recent(
        store.db.reader, token, remember=store.settings.token_cache_seconds
    )


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    """The signed-in user, if an administrator: for platform-wide data, not one user's."""
    if not user.is_admin:
        raise Forbidden("only an administrator may do this")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
