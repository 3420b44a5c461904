"""Which filesystems one ``syncfs`` is trusted on, and the call itself."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from postroom.filesystem_sync import LOCAL, filesystem_type, flushes_together, sync_filesystem

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid 0 0
tmpfs /tmp tmpfs rw 0 0
sshfs#me@host: /srv/mail\\040store fuse.sshfs rw 0 0
/dev/vdb /srv/mail\\040store/local xfs rw 0 0
server:/export /srv/nfs nfs4 rw 0 0
overlay /srv/nfs overlay rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/lib/postroom", "ext4"),
        ("/tmp/x", "tmpfs"),
        ("/tmpfoo", "ext4"),  # a prefix of a mount point's name is not inside it
        ("/srv/mail store/blobs", "fuse.sshfs"),
        ("/srv/mail store/local/blobs", "xfs"),
        ("/srv/nfs/blobs", "overlay"),  # of two mounts on one point, the later is on top
    ],
)
def test_the_filesystem_of_a_path_is_its_innermost_mount(path: str, expected: str) -> None:
    assert filesystem_type(path, MOUNTS) == expected


def test_network_and_fuse_filesystems_are_not_trusted_with_one_flush() -> None:
    assert {"fuse.sshfs", "nfs4", "overlay", "cifs"}.isdisjoint(LOCAL)


def test_the_type_found_here_is_the_one_findmnt_reports(tmp_path: Path) -> None:
    reported = subprocess.run(
        ["findmnt", "--noheadings", "--output", "FSTYPE", "--target", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]

    assert filesystem_type(str(tmp_path)) == reported
    assert flushes_together(str(tmp_path)) == (reported in LOCAL)


def test_sync_filesystem_flushes_a_real_file_and_reports_a_bad_descriptor(
    tmp_path: Path,
) -> None:
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"bytes")
        sync_filesystem(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as caught:
        sync_filesystem(fd)
    assert caught.value.errno == errno.EBADF
