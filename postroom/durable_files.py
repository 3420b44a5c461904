"""Writing a file so that a crash leaves either all of it or none of it.

The bytes go to a temporary file in the same directory (created by ``mkstemp``, so readable by
this user only), are fsynced, renamed into place, and the directory is fsynced so the rename
itself survives a power cut. A directory this call had to make (or met for the first time) is
fsynced in its parent too, else the new directory, and every file in it, could vanish. Used
for blobs and for the generated TLS key and certificate.

:func:`write_all_durably` writes many files at once, in the order that lets the filesystem's
journal fold their commits together: every temporary file written, then each fsynced, each
renamed, and each distinct directory fsynced once. ext4 commits every pending metadata change
with the first fsync (all the files' creations, all the renames), so the later fsyncs find
little left to commit; files written one after another pay a journal commit or two each.
Where ``syncfs`` is known to be enough (:mod:`postroom.filesystem_sync`), a batch asks for
one flush before its renames and one after, whatever the number of files.

:func:`sync_all` makes durable files that were created under their final names: the blob
store's small blobs, whose names (their SHA-256) let a later writer tell a file cut short by
a crash from a whole one, so they need no temporary name and one flush instead of two.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from postroom.filesystem_sync import sync_filesystem

__all__ = ["create_exclusive", "sync_all", "write_all_durably", "write_durably"]


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, making missing directories; raises the OSError."""
    (error,) = write_all_durably([(os.fspath(path), data)])
    if error is not None:
        raise error


@dataclass
class _Temp:
    index: int
    path: str
    parent: str
    tmp: str
    fd: int | None
    renamed: bool = False


def write_all_durably(
    items: Sequence[tuple[str, bytes]],
    known_dirs: set[str] | None = None,
    *,
    flush_together: bool = False,
) -> list[OSError | None]:
    """Write each ``(path, bytes)`` durably; per item, ``None`` or the OSError that failed it.

    One item failing (its directory is a file, the disk is full) fails only itself, and
    leaves no temporary file behind: its path is untouched, unless only the fsync of its
    directory failed (then it is in place, whole, but may not survive a power cut, so it is
    reported failed all the same). An item is answered ``None`` only once its bytes, its
    name and every directory made for it are fsynced.

    ``known_dirs`` are directories known to exist with their entries durable: they are
    neither made nor fsynced in their parents, so a caller writing into the same
    directories again and again (the blob store) pays no ``mkdir`` a file. Directories this
    call makes or meets are added to it once fsynced in their parents. A known directory
    deleted since is noticed (``mkstemp`` finds no directory) and made again. Of two items
    with one path, the later one wins.

    ``flush_together`` (the caller checked :func:`filesystem_sync.flushes_together` for these
    paths): more than one item is made durable by two ``syncfs`` calls, one before the renames
    and one after, instead of an fsync per file and per directory. If either reports an
    error, the fsyncs are done after all, so each item gets its own answer.
    """
    known: set[str] = set() if known_dirs is None else known_dirs
    fresh: dict[str, None] = {}
    """Directories made (or met, not known) by this call: their parents need an fsync."""
    errors: list[OSError | None] = [None] * len(items)
    temps: list[_Temp] = []
    try:
        for index, (path, data) in enumerate(items):
            parent = _parent(path)
            try:
                fd, tmp = _create_temp(parent, known, fresh)
            except OSError as exc:
                errors[index] = exc
                continue
            temps.append(_Temp(index, path, parent, tmp, fd))
            try:
                _write_all(fd, data)
            except OSError as exc:
                errors[index] = exc
        together = flush_together and len(temps) > 1 and _flushed(temps)
        if not together:
            _fsync_each(temps, errors)
        for temp in temps:
            if temp.fd is not None:
                fd, temp.fd = temp.fd, None
                try:
                    os.close(fd)
                except OSError as exc:  # NFS and FUSE may report a failed write only here
                    errors[temp.index] = errors[temp.index] or exc
        for temp in temps:
            if errors[temp.index] is None:
                try:
                    os.replace(temp.tmp, temp.path)
                except OSError as exc:
                    errors[temp.index] = exc
                else:
                    temp.renamed = True
        renamed = [t for t in temps if t.renamed]
        if together and renamed and _flushed(renamed, directory=True):
            known.update(fresh)  # every directory made, and every name in it, is durable
        else:
            _sync_directories(renamed, errors, known, fresh)
    finally:
        for temp in temps:
            _discard(temp)
    return errors


def create_exclusive(path: str, data: bytes) -> None:
    """Create ``path`` (and missing directories) holding ``data``, not yet durable
    (:func:`sync_all`); FileExistsError if it is there already, and nothing is left behind
    by a write that fails."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(_parent(path), exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        _write_all(fd, data)
    except OSError:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)


def sync_all(paths: Sequence[str], *, flush_together: bool = False) -> list[OSError | None]:
    """Make files already written in place durable, with the directories above them (up to
    three levels: a blob's ``ab/cd`` and the store's root); per path, ``None`` or the error.

    For files created under their final names (the blob store's small blobs, whose names say
    what they must hold). ``flush_together``: one ``syncfs`` for them all; if it reports an
    error, or without it, each file is fsynced and each directory once.
    """
    if flush_together and paths:
        try:
            fd = os.open(_parent(paths[0]), os.O_RDONLY | os.O_DIRECTORY)
            try:
                sync_filesystem(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
        else:
            return [None] * len(paths)
    errors: list[OSError | None] = [None] * len(paths)
    synced: dict[str, OSError | None] = {}
    """Each directory fsynced so far: ``None``, or the error its fsync gave."""
    for index, path in enumerate(paths):
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            errors[index] = exc
            continue
        directory = path
        for _level in range(3):
            directory = _parent(directory)
            if directory not in synced:
                try:
                    _fsync_dir(directory)
                    synced[directory] = None
                except OSError as exc:
                    synced[directory] = exc
            errors[index] = errors[index] or synced[directory]
    return errors


def _fsync_each(temps: list[_Temp], errors: list[OSError | None]) -> None:
    for temp in temps:
        if temp.fd is not None and errors[temp.index] is None:
            try:
                os.fsync(temp.fd)
            except OSError as exc:
                errors[temp.index] = exc


def _flushed(temps: list[_Temp], *, directory: bool = False) -> bool:
    """One ``syncfs`` for the filesystem of ``temps``: whether it succeeded. It is called on
    a descriptor opened in this batch, so it reports errors since then, ours included."""
    try:
        if directory:
            fd = os.open(temps[0].parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                sync_filesystem(fd)
            finally:
                os.close(fd)
        else:
            fd = next(t.fd for t in temps if t.fd is not None)
            sync_filesystem(fd)
    except (OSError, StopIteration):
        return False
    return True


def _parent(path: str) -> str:
    return os.path.dirname(path) or os.curdir


def _create_temp(parent: str, known: set[str], fresh: dict[str, None]) -> tuple[int, str]:
    _make_dir(parent, known, fresh, trust=True)
    try:
        return tempfile.mkstemp(dir=parent, prefix=".tmp-")
    except FileNotFoundError:  # deleted behind our back since we last made it
        _make_dir(parent, known, fresh, trust=False)
        return tempfile.mkstemp(dir=parent, prefix=".tmp-")


def _make_dir(path: str, known: set[str], fresh: dict[str, None], *, trust: bool) -> None:
    """Make ``path`` and missing parents; each one not known is recorded in ``fresh``.

    A directory found already there is recorded too: another process may have just made it
    and not yet fsynced its parent, and our file in it must not depend on that process.
    """
    if trust and (path in known or path in fresh):
        return
    known.discard(path)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        parent = _parent(path)
        if parent == path:
            raise
        _make_dir(parent, known, fresh, trust=False)  # missing: whatever we thought of it
        try:
            os.mkdir(path)
        except FileExistsError:
            pass
    fresh[path] = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_directories(
    renamed: list[_Temp], errors: list[OSError | None], known: set[str], fresh: dict[str, None]
) -> None:
    """Fsync each directory a renamed file needs once: its own, and the parents of the fresh
    directories above it. A failed fsync fails every file that needed that directory."""
    needs: list[tuple[_Temp, list[str]]] = []
    wanted: dict[str, None] = {}
    for temp in renamed:
        chain = [temp.parent]
        while chain[-1] in fresh and _parent(chain[-1]) != chain[-1]:
            chain.append(_parent(chain[-1]))
        needs.append((temp, chain))
        wanted.update(dict.fromkeys(chain))
    failed: dict[str, OSError] = {}
    for directory in wanted:
        try:
            _fsync_dir(directory)
        except OSError as exc:
            failed[directory] = exc
    for temp, chain in needs:
        for directory in chain:
            if directory in failed:
                errors[temp.index] = failed[directory]
                break
    for directory in sorted(fresh, key=len):  # parents before children
        parent = _parent(directory)
        parent_durable = parent not in failed and (parent not in fresh or parent in known)
        if directory in wanted and directory not in failed and parent_durable:
            known.add(directory)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(temp: _Temp) -> None:
    """Close and remove what a failed (or interrupted) item left; a renamed file stays."""
    if temp.fd is not None:
        fd, temp.fd = temp.fd, None
        try:
            os.close(fd)
        except OSError:
            pass
    if not temp.renamed:
        try:
            os.unlink(temp.tmp)
        except OSError:
            pass
