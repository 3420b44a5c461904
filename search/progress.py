"""A progress bar on stderr for long admin commands; plain lines when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.began = time.monotonic()
        self._shown = -1

    def __call__(self, more: int) -> None:
        self.done += more
        self._show()

    def _show(self, final: bool = False) -> None:
        share = self.done / self.total if self.total else 1.0
        percent = min(int(share * 100), 100)
        if not final and not self.tty and percent // 10 == self._shown // 10:
            return
        if not final and self.tty and percent == self._shown:
            return
        self._shown = percent
        width = 30
        bar = "#" * int(width * min(share, 1.0))
        rate = self.done / max(time.monotonic() - self.began, 1e-6)
        line = (
            f"{self.label} [{bar:<{width}}] {self.done}/{self.total} {percent:3d}% ({rate:.0f}/s)"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._show(final=True)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()
