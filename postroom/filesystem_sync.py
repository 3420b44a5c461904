"""One flush for many files: ``syncfs(2)``, where it is known to make them durable.

A file is durable once it is fsynced and so is its directory. On a disk without a journal
shared by its files (this project's ext4 test machines have none), every fsync is a cache
flush of its own: a batch of 20 blobs, each fsynced with its directory, was 40 flushes, took
50-90 ms under load and held API sends to about 300 a second. ``syncfs`` writes back every
dirty page and inode of the filesystem, then flushes once.

It is used only where that is known to hold: on Linux (glibc's ``syncfs``), on a local disk
filesystem (:data:`LOCAL`). FUSE and network filesystems may not pass it on to their storage,
so there each file is fsynced as before. The price: ``syncfs`` also waits for dirty pages
that are not ours, so on a disk busy with other writers it can take longer than our own
fsyncs would. Since Linux 5.8 it reports writeback errors of the whole filesystem; a caller
that gets one falls back to fsyncing each file, which says which of its files failed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

__all__ = ["LOCAL", "filesystem_type", "flushes_together", "sync_filesystem"]

LOCAL = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "bcachefs", "tmpfs"})
"""Filesystems whose ``syncfs`` makes every file written before it durable (tmpfs: nothing
is durable there anyway)."""


def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux, or a libc without it
        return None
    return function


_SYNCFS = _libc_syncfs()


def filesystem_type(path: str, mounts: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is on, from ``/proc/self/mounts`` (or ``mounts``,
    in its format); ``None`` when it cannot be told."""
    if mounts is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="replace") as file:
                mounts = file.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape(fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[2])  # the later of equal mounts is the one on top
    return None if best is None else best[1]


def _unescape(field: str) -> str:
    """Mount points in ``/proc/self/mounts`` write space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def flushes_together(path: str) -> bool:
    """Whether files under ``path`` can be made durable together by :func:`sync_filesystem`."""
    return _SYNCFS is not None and filesystem_type(path) in LOCAL


def sync_filesystem(fd: int) -> None:
    """``syncfs`` on the filesystem holding ``fd``; raises the OSError it reports."""
    if _SYNCFS is None:
        raise OSError(0, "syncfs is not available here")
    if _SYNCFS(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"syncfs: {os.strerror(code)}")
