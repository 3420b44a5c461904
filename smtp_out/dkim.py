"""DKIM-signing outgoing mail with the key of the sender's domain.

Signing happens at delivery, not when the message is composed, so the stored message stays as
the user sent it and a domain that gets a key (or a new one) signs its queued mail too. It is
redone on every attempt, so a retried message carries a fresh ``t=`` timestamp.

dkimpy does the canonicalization and builds the header, exactly as ``postroom.dkim.sign``
has it (same headers, relaxed/relaxed, CRLF first); only the RSA operation itself goes to
OpenSSL through ``cryptography``. dkimpy's own RSA is pure Python and cost about 5 ms of CPU
a message, more than the rest of a delivery; PKCS#1 v1.5 signatures are deterministic, so the
bytes produced are the same. Parsed keys are kept per domain for ``KEY_TTL`` seconds, so a key
added or replaced with ``postroom domain`` is used within that time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from postroom import dkim as dkim_keys
from storage.registry import Storage
from storage.repositories.accounts import hosted_domain

__all__ = ["KEY_TTL", "DkimSigner", "sign_with_key"]

log = logging.getLogger(__name__)

KEY_TTL = 60.0
"""Seconds a domain's key (or its having none) is remembered between database lookups."""


@dataclass(frozen=True)
class DomainKey:
    domain: str
    selector: str
    key: rsa.RSAPrivateKey


class _OpenSslDkim(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's signer with the RSA step done by OpenSSL; everything else is dkimpy's."""

    def __init__(self, message: bytes, key: rsa.RSAPrivateKey) -> None:
        super().__init__(message)
        self._rsa_key = key

    def gen_header(
        self,
        fields: list[tuple[bytes, bytes]],
        include_headers: Any,
        canon_policy: Any,
        header_name: bytes,
        pk: Any,
        standardize: bool = False,
    ) -> bytes:
        # dkimpy 1.1's DomainSigner.gen_header for rsa-sha256 without ``standardize``
        # (which sign() never sets), but signing the header hash with OpenSSL.
        if standardize or self.signature_algorithm != b"rsa-sha256":
            raise dkim.ParameterError("only rsa-sha256 signing is supported here")
        header_value = b"; ".join(b"=".join(x) for x in fields)
        header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        header = (header_name, b" " + header_value)
        digest = dkim.HashThrough(self.hasher(), self.debug_content)
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(
            digest, canon_policy, headers, include_headers, header, dict(fields)
        )
        signature = self._rsa_key.sign(
            digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
        )
        index = next(i for i, (name, _) in enumerate(fields) if name == b"b")
        fields[index] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        folded: bytes = dkim.fold(value, namelen=len(header_name), linesep=self.linesep)
        return folded


def _load_key(private_key_pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise dkim.KeyFormatError("a DKIM key here is always RSA")
    return key


def sign_with_key(raw: bytes, key: DomainKey) -> bytes:
    """``raw`` with normalized line endings and a DKIM-Signature header in front.

    The same signature ``postroom.dkim.sign`` makes. Raises ``dkim.DKIMException`` if the
    message cannot be signed (a header line that is no header).
    """
    message = dkim_keys.normalize_line_endings(raw)
    signer = _OpenSslDkim(message, key.key)
    # dkimpy parses ``privkey`` before signing and passes the result to gen_header, which
    # signs with ``key`` instead; see _PLACEHOLDER_PEM.
    signature: bytes = signer.sign(
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        _PLACEHOLDER_PEM,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[name.encode("ascii") for name in dkim_keys.SIGNED_HEADERS],
    )
    return signature + message


@dataclass
class DkimSigner:
    """Signs for the sender's domain with its key; one per worker, caching parsed keys."""

    ttl: float = KEY_TTL
    _keys: dict[str, tuple[float, DomainKey | None]] = field(default_factory=dict)
    _loading: dict[str, asyncio.Future[DomainKey | None]] = field(default_factory=dict)

    async def sign_for_sender(self, store: Storage, sender: str, raw: bytes) -> bytes:
        """``raw`` signed for the sender's domain if it has a DKIM key, else ``raw`` unchanged.

        A message that cannot be signed (a header dkimpy cannot parse, a damaged key) still
        goes out, unsigned: receivers treat that like mail from a domain without DKIM, whereas
        holding it back would lose mail the user expects delivered.
        """
        _, at, domain_name = sender.rpartition("@")
        if not at or not domain_name:
            return raw  # the null reverse-path of a bounce: no domain to sign for
        try:
            key = await self._key(store, domain_name.lower())
            if key is None:
                return raw
            # still a millisecond or more of CPU a message (RSA, hashing): off the event loop
            return await asyncio.to_thread(sign_with_key, raw, key)
        except (dkim.DKIMException, ValueError) as exc:
            log.warning("could not DKIM-sign mail from %s; sending it unsigned: %s", sender, exc)
            return raw

    async def _key(self, store: Storage, domain_name: str) -> DomainKey | None:
        """The domain's parsed key. Parsing costs tens of milliseconds of CPU, so the
        attempts arriving while it is loaded wait for that one load (at start, or when the
        cached key expires, all the worker's concurrent attempts want it at once)."""
        now = time.monotonic()
        cached = self._keys.get(domain_name)
        if cached is not None and cached[0] > now:
            return cached[1]
        loading = self._loading.get(domain_name)
        if loading is None:
            loading = self._loading[domain_name] = asyncio.ensure_future(
                self._load(store, domain_name, now)
            )
            loading.add_done_callback(lambda _: self._loading.pop(domain_name, None))
        return await asyncio.shield(loading)

    async def _load(self, store: Storage, domain_name: str, now: float) -> DomainKey | None:
        async with store.db.reader() as session:
            domain = await hosted_domain(session, domain_name)
        key: DomainKey | None = None
        if domain is not None and domain.dkim_selector and domain.dkim_private_key:
            parsed = await asyncio.to_thread(_load_key, domain.dkim_private_key)
            key = DomainKey(domain.name, domain.dkim_selector, parsed)
        self._keys[domain_name] = (now + self.ttl, key)
        return key


_PLACEHOLDER_PEM = (
    b"-----BEGIN RSA PRIVATE KEY-----\n"
    + base64.b64encode(b"\x30\x1b" + b"\x02\x01\x01" * 9)
    + b"\n-----END RSA PRIVATE KEY-----\n"
)
"""What dkimpy's ``sign`` is given to parse: an RSAPrivateKey structure of nine ones, no key
at all. dkimpy only hands the parsed form to ``gen_header``, which ignores it and signs with
the real key; parsing the real PEM in pure Python would cost about a millisecond a message."""
