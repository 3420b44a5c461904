"""SpamAssassin's spamd, spoken to directly over an asyncio stream (the SPAMC/1.5 protocol).

The protocol is small enough that a client library would add a dependency for a few lines:
one connection per message, a request line (``SYMBOLS SPAMC/1.5``), a ``Content-length``
header, the message; spamd answers ``SPAMD/1.1 0 EX_OK``, a ``Spam: True ; 1003.3 / 5.0``
header and, for ``SYMBOLS``, the names of the rules that matched. Asking for the rules costs
spamd nothing extra and lets the verdict say why a message was judged spam.

Every failure to get a verdict (refused connection, timeout, a non-zero spamd status, an
answer that does not parse) raises :class:`ContentCheckUnavailable`, never a clean verdict.

Large messages are cut before they are sent, as amavisd-new does with SpamAssassin: spam is
small, SpamAssassin's cost grows with size, and the headers and first part of the body carry
what its rules look at. Sending 25 MB would only make the check time out, again and again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from urllib.parse import parse_qsl, urlsplit

from postroom.checks import Verdict
from postroom.errors import ConfigurationError, ContentCheckUnavailable

__all__ = ["DEFAULT_PORT", "SpamdCheck"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 783
MAX_ANSWER = 1024 * 1024
"""spamd's answer to SYMBOLS is a few headers and a line of rule names; more is garbage."""
RULES_IN_REASON = 8

_STATUS = re.compile(rb"SPAMD/(\d+\.\d+) +(\d+) *(.*)")
_SPAM = re.compile(
    r"\s*(true|false|yes|no)\s*;\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*", re.I
)


class _Garbled(Exception):
    """spamd's answer does not follow the protocol."""


class SpamdCheck:
    """A :class:`postroom.checks.ContentCheck` asking a spamd at ``host:port``.

    ``timeout`` bounds one whole check (connect, send, scan, answer); ``max_size`` is how many
    bytes of a message are sent at most.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        timeout: float = 30.0,
        max_size: int = 512 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_size = max_size

    @classmethod
    def from_url(cls, url: str) -> SpamdCheck:
        """``spamd://host[:port][?timeout=SECONDS&max_size=BYTES]``; port 783 by default."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ConfigurationError(f"content check URL {url!r} has an invalid port") from None
        if parts.scheme != "spamd" or not parts.hostname or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"content check URL {url!r} is not of the form spamd://host:port"
            )
        options: dict[str, float | int] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            try:
                if name == "timeout":
                    options[name] = float(value)
                elif name == "max_size":
                    options[name] = int(value)
                else:
                    raise ConfigurationError(
                        f"content check URL {url!r}: unknown option {name!r}; "
                        "use timeout=SECONDS or max_size=BYTES"
                    )
            except ValueError:
                raise ConfigurationError(
                    f"content check URL {url!r}: {name}={value!r} is not a number"
                ) from None
            if options[name] <= 0:
                raise ConfigurationError(f"content check URL {url!r}: {name} must be positive")
        return cls(
            parts.hostname,
            port or DEFAULT_PORT,
            timeout=float(options.get("timeout", 30.0)),
            max_size=int(options.get("max_size", 512 * 1024)),
        )

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def check(self, raw: bytes) -> Verdict:
        body = _truncate(raw, self.max_size)
        if len(body) < len(raw):
            log.debug("spamd check: sending the first %d of %d bytes", len(body), len(raw))
        request = b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n%b" % (len(body), body)
        answer = await self._exchange(request)
        try:
            return _verdict(answer, self.address)
        except _Garbled as exc:
            raise ContentCheckUnavailable(
                f"spamd at {self.address} gave an answer that is not SPAMD protocol ({exc}); "
                "check that the content check URL names a spamd"
            ) from None

    async def ping(self) -> None:
        """Raise ContentCheckUnavailable unless spamd answers PING with PONG."""
        answer = await self._exchange(b"PING SPAMC/1.5\r\n\r\n")
        first = answer.split(b"\r\n", 1)[0]
        match = _STATUS.fullmatch(first)
        if match is None or match[3].strip() != b"PONG":
            raise ContentCheckUnavailable(
                f"spamd at {self.address} answered PING with {first[:80]!r}"
            )

    async def close(self) -> None:
        """Nothing to release: every check opens and closes its own connection."""
        return None

    async def _exchange(self, request: bytes) -> bytes:
        """Send one request and read the whole answer (spamd closes after answering)."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                writer.write(request)
                await writer.drain()
                chunks: list[bytes] = []
                size = 0
                while chunk := await reader.read(65536):
                    size += len(chunk)
                    if size > MAX_ANSWER:
                        raise ContentCheckUnavailable(
                            f"spamd at {self.address} answered with more than "
                            f"{MAX_ANSWER} bytes; check that the URL names a spamd"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except TimeoutError:  # before OSError: TimeoutError is one
            raise ContentCheckUnavailable(
                f"spamd at {self.address} did not answer within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise ContentCheckUnavailable(
                f"spamd at {self.address} cannot be reached ({exc.strerror or exc}); "
                "is it running, and does its --allowed-ips include us?"
            ) from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


def _truncate(raw: bytes, max_size: int) -> bytes:
    """At most ``max_size`` bytes of ``raw``, cut after a line end when there is one."""
    if len(raw) <= max_size:
        return raw
    cut = raw.rfind(b"\n", 0, max_size)
    return raw[: cut + 1] if cut >= 0 else raw[:max_size]


def _verdict(answer: bytes, address: str) -> Verdict:
    """Parse spamd's answer to SYMBOLS (or CHECK) into a verdict."""
    head, _, body = answer.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    status = _STATUS.fullmatch(first)
    if status is None:
        raise _Garbled(f"status line {first[:80]!r}")
    if int(status[2]) != 0:
        message = status[3].decode("ascii", "replace")
        raise ContentCheckUnavailable(
            f"spamd at {address} could not check: {status[2].decode()} {message}"
        )
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise _Garbled(f"header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    if "spam" not in headers:
        raise _Garbled("no Spam header")
    spam_header = _SPAM.fullmatch(headers["spam"])
    if spam_header is None:
        raise _Garbled(f"Spam header {headers['spam'][:80]!r}")
    if "content-length" in headers:
        try:
            body = body[: int(headers["content-length"])]
        except ValueError:
            raise _Garbled(f"Content-length {headers['content-length'][:20]!r}") from None
    spam = spam_header[1].lower() in ("true", "yes")
    # + 0.0 turns spamd's "-0.0" into 0.0, which is what a reader expects to see.
    score, threshold = float(spam_header[2]) + 0.0, float(spam_header[3]) + 0.0
    rules = tuple(r.strip() for r in body.decode("ascii", "replace").split(",") if r.strip())
    return Verdict(
        spam=spam,
        score=score,
        threshold=threshold,
        reason=_reason(spam, score, threshold, rules),
        rules=rules,
    )


def _reason(spam: bool, score: float, threshold: float, rules: tuple[str, ...]) -> str:
    """E.g. ``spam (score 1003.3, threshold 5.0; rules GTUBE, MISSING_DATE)``."""
    text = f"{'spam' if spam else 'clean'} (score {score:.1f}, threshold {threshold:.1f}"
    if spam and rules:
        shown = ", ".join(rules[:RULES_IN_REASON])
        more = f" and {len(rules) - RULES_IN_REASON} more" if len(rules) > RULES_IN_REASON else ""
        text += f"; rules {shown}{more}"
    return text + ")"
