"""Signing in and out: the OAuth2 password flow hands out opaque bearer tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm

from gateway.deps import CurrentUser, Store, bearer_token
from gateway.schemas import TokenOut
from postroom.errors import AuthenticationFailed
from storage.repositories.accounts import find_user, verify_password
from storage.repositories.tokens import issue_token, revoke_token

router = APIRouter(prefix="/auth", tags=["auth"])

_WRONG = "wrong address or password"


@router.post("/token", response_model=TokenOut, responses={401: {"description": _WRONG}})
async def sign_in(store: Store, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenOut:
    """Exchange an address and password (form fields ``username``, ``password``) for a token."""
    ttl = store.settings.token_ttl_seconds
    async with store.db.session() as session, session.begin():
        user = await find_user(session, form.username.strip())
        if user is None or not await verify_password(user, form.password):
            raise AuthenticationFailed(_WRONG)
        secret, _ = await issue_token(session, user.id, ttl_seconds=ttl)
    return TokenOut(access_token=secret, expires_in=ttl)


@router.post("/logout", status_code=204)
async def sign_out(
    store: Store, user: CurrentUser, token: Annotated[str, Depends(bearer_token)]
) -> Response:
    """Revoke the token this request carries."""
    async with store.db.session() as session, session.begin():
        await revoke_token(session, token)
    return Response(status_code=204)
