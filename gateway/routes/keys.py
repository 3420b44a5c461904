"""API keys for REST clients: long-lived bearer secrets a user creates, lists and revokes.

The secret is in the creation answer only; afterwards just its SHA-256 is kept, so a lost key
is revoked and replaced, never recovered.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentUser, Store
from gateway.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from storage.db.models import AuthToken
from storage.repositories.tokens import create_api_key, list_api_keys, revoke_api_key

router = APIRouter(prefix="/keys", tags=["auth"])


def _out(key: AuthToken) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, name=key.name, created_at=key.created_at, revoked_at=key.revoked_at)


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(store: Store, user: CurrentUser, body: ApiKeyCreate) -> ApiKeyCreated:
    """Create a key; ``key`` is shown in this answer and never again."""
    async with store.db.session() as session, session.begin():
        secret, key = await create_api_key(session, user.id, body.name)
    return ApiKeyCreated(**_out(key).model_dump(), key=secret)


@router.get("", response_model=ApiKeyList)
async def list_keys(store: Store, user: CurrentUser) -> ApiKeyList:
    """Your keys (never their secrets), revoked ones with when."""
    async with store.db.session() as session:
        keys = await list_api_keys(session, user.id)
    return ApiKeyList(items=[_out(k) for k in keys])


@router.delete(
    "/{key_id}",
    response_model=ApiKeyOut,
    responses={404: {"description": "No such key of yours."}},
)
async def revoke_key(store: Store, user: CurrentUser, key_id: str) -> ApiKeyOut:
    """Revoke a key at once: the next request made with it gets 401."""
    async with store.db.session() as session, session.begin():
        key = await revoke_api_key(session, user.id, key_id)
    return _out(key)
