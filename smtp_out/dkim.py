"""DKIM-signing outgoing mail with the key of the sender's domain.

Signing happens at delivery, not when the message is composed, so the stored message stays as
the user sent it and a domain that gets a key (or a new one) signs its queued mail too. It is
redone on every attempt: signing costs a few milliseconds, and a retried message then carries
a fresh ``t=`` timestamp.
"""

from __future__ import annotations

import asyncio
import logging

import dkim

from postroom import dkim as dkim_keys
from storage.registry import Storage
from storage.repositories.accounts import hosted_domain

__all__ = ["sign_for_sender"]

log = logging.getLogger(__name__)


async def sign_for_sender(store: Storage, sender: str, raw: bytes) -> bytes:
    """``raw`` signed for the sender's domain if it has a DKIM key, else ``raw`` unchanged.

    A message that cannot be signed (a header dkimpy cannot parse, a damaged key) still goes
    out, unsigned: receivers treat that like mail from a domain without DKIM, whereas holding
    it back would lose mail the user expects delivered.
    """
    _, at, domain_name = sender.rpartition("@")
    if not at or not domain_name:
        return raw  # the null reverse-path of a bounce: no domain to sign for
    async with store.db.session() as session:
        domain = await hosted_domain(session, domain_name)
    if domain is None or domain.dkim_selector is None or domain.dkim_private_key is None:
        return raw
    try:
        # dkimpy is pure-Python RSA and hashing: blocking CPU work, so off the event loop.
        return await asyncio.to_thread(
            dkim_keys.sign,
            raw,
            domain=domain.name,
            selector=domain.dkim_selector,
            private_key_pem=domain.dkim_private_key,
        )
    except dkim.DKIMException as exc:
        log.warning("could not DKIM-sign mail from %s; sending it unsigned: %s", sender, exc)
        return raw
