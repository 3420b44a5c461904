"""The one exception tree of postroom.

Every error a user can cause or act on is one of these, and its message says what to do::

    PostroomError
    ├── ConfigurationError        settings that cannot work (bad URL, unknown scheme)
    ├── SchemaOutOfDate           the database needs ``postroom migrate``
    ├── InvalidInput              bad input from a user; carries the field it concerns
    │   ├── InvalidAddress        not a usable mail address
    │   └── InvalidHeader         a header value that would allow injection
    ├── NotFound                  no such thing, or it belongs to someone else
    ├── ChangesExpired            a change-log position too old (or unknown): resync
    ├── AlreadyExists             a duplicate of something unique
    ├── Conflict                  too late or contradictory (a send gone out, a reused key)
    ├── RateLimited               over a rate limit; says when to try again
    ├── AuthenticationFailed      wrong credentials or an expired/revoked token
    ├── Forbidden                 signed in, but only an administrator may do this
    ├── ContentCheckUnavailable   the spam/virus checker failed; check again later
    └── StorageError              a backend failed; the operation may be retried
        └── BlobNotFound          a blob key the store does not hold

Services translate these at their edge: the gateway into HTTP 4xx JSON, the SMTP server into
enhanced status codes, the CLI into a one-line message and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "AuthenticationFailed",
    "BlobNotFound",
    "ChangesExpired",
    "ConfigurationError",
    "Conflict",
    "ContentCheckUnavailable",
    "Forbidden",
    "InvalidAddress",
    "InvalidHeader",
    "InvalidInput",
    "NotFound",
    "PostroomError",
    "RateLimited",
    "SchemaOutOfDate",
    "StorageError",
]


class PostroomError(Exception):
    """Base of every error postroom raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(PostroomError):
    """The settings cannot work as given."""


class SchemaOutOfDate(PostroomError):
    """The database schema is not at the revision this code needs."""


class InvalidInput(PostroomError):
    """Input a user sent is wrong; ``field`` names where, when there is a where."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidAddress(InvalidInput):
    """A mail address that is malformed or cannot be used here."""


class InvalidHeader(InvalidInput):
    """A header name or value that is malformed or would inject other headers."""


class NotFound(PostroomError):
    """The thing asked for does not exist for this caller; ``field`` names where it was asked."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ChangesExpired(PostroomError):
    """The changes after a given sequence are no longer all kept (or never existed).

    The client must drop what it holds and load its state again (``resync``).
    """


class AlreadyExists(PostroomError):
    """Creating this would duplicate something that must be unique."""


class Conflict(PostroomError):
    """The request contradicts what already happened: a send already gone out, an
    idempotency key first used for a different request."""


class RateLimited(PostroomError):
    """Over a rate limit; ``retry_after`` seconds until the window resets, ``limit`` its size."""

    def __init__(self, message: str, *, retry_after: int, limit: int, reset: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        self.reset = reset


class AuthenticationFailed(PostroomError):
    """Credentials are wrong, or a token is unknown, expired or revoked."""


class Forbidden(PostroomError):
    """The caller is known but lacks the right: platform-wide data is for administrators.

    A user's own things never raise this; someone else's are a :class:`NotFound`, so that a
    guessed id reveals nothing.
    """


class ContentCheckUnavailable(PostroomError):
    """The spam/virus checker could not give a verdict (down, timed out, garbled answer).

    Callers wait and check again instead of passing the message unchecked: a checker that
    fails open would let through exactly the mail it exists to stop.
    """


class StorageError(PostroomError):
    """A storage backend failed; retrying later may succeed."""


class BlobNotFound(StorageError):
    """The blob store holds no blob under this key."""
