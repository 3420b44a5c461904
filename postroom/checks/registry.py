"""The one place that maps ``POSTROOM_CONTENT_CHECK_URL`` to a checker, by URL scheme.

Like ``storage.registry`` for the storage backends (which the core cannot import): unset means
the embedded default, the no-op check, so ``postroom up`` needs no SpamAssassin; a URL's scheme
picks the implementation. Adding a checker (say ``clamd://`` for ClamAV) is one line below.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.checks import ContentCheck
from postroom.checks.noop import NoopCheck
from postroom.checks.spamd import SpamdCheck
from postroom.errors import ConfigurationError
from postroom.settings import Settings

__all__ = ["CONTENT_CHECKS", "open_content_check"]

CONTENT_CHECKS: dict[str, Callable[[str], ContentCheck]] = {
    "none": lambda _url: NoopCheck(),
    "spamd": SpamdCheck.from_url,
}


def open_content_check(settings: Settings) -> ContentCheck:
    """The checker the settings ask for; ConfigurationError for a scheme not in the table."""
    url = settings.content_check_url or "none://"
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        make = CONTENT_CHECKS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in CONTENT_CHECKS)
        raise ConfigurationError(
            f"content check URL {url!r} has an unknown scheme {scheme!r}; "
            f"leave POSTROOM_CONTENT_CHECK_URL unset for none, or use one of: {known}"
        ) from None
    return make(url)
