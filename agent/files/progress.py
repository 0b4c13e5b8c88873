"""Progress of a transfer of many files: a line on stderr now and then."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """A line on stderr at most every ``interval`` seconds: "what: n/total files (bytes)"."""

    def __init__(
        self,
        what: str,
        total_files: int,
        total_bytes: int,
        show: bool = True,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what = what
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.show, self.interval, self.clock = show, interval, clock
        self._last = clock()

    def advance(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.show and self.clock() - self._last >= self.interval:
            self._last = self.clock()
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        return (
            f"{self.what}: {self.files}/{self.total_files} files "
            f"({human_bytes(self.bytes)} of {human_bytes(self.total_bytes)})"
        )


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
