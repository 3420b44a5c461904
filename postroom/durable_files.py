"""Writing a file so that a crash leaves either all of it or none of it.

The bytes go to a temporary file in the same directory (created by ``mkstemp``, so readable by
this user only), are fsynced, renamed into place, and the directory is fsynced so the rename
itself survives a power cut. Used for blobs and for the generated TLS key and certificate.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_durably"]


def write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
