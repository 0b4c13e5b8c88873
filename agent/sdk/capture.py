"""Copy what a script prints to its task's log (when no agent already streams it).

``sys.stdout``/``sys.stderr`` are wrapped by a tee that writes through to the
console and hands each complete line to a sink (the task's Logger, which batches
them). A carriage-return redraw (progress bars) keeps only its final state. Only
Python-level writes are seen: output of child processes and C code writing to the
file descriptors directly is not.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

#: A partial line longer than this is handed over without waiting for its newline.
MAX_PARTIAL_CHARS = 64 * 1024

#: Receives (level, lines) for complete lines.
LineSink = Callable[[str, list[str]], None]

_active: OutputCapture | None = None


def console() -> TextIO:
    """stdout, bypassing an active capture (for text the Logger already records)."""
    if _active is not None:
        return _active.stdout_target
    return sys.stdout


class TeeStream:
    """A text stream that writes through to ``target`` and reports complete lines."""

    def __init__(self, target: TextIO, sink: LineSink, level: str):
        self.target = target
        self._sink = sink
        self._level = level
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        written = self.target.write(text)
        with self._lock:
            buffered = self._partial + text
            *lines, self._partial = buffered.split("\n")
            if len(self._partial) > MAX_PARTIAL_CHARS:
                lines.append(self._partial)
                self._partial = ""
        if lines:
            self._sink(self._level, [_final_state(line) for line in lines])
        return written

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self.target.flush()

    def flush_partial(self) -> None:
        """Hand over a last line that never got its newline."""
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest.strip("\r"):
            self._sink(self._level, [_final_state(rest)])

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty, fileno, buffer, ... of the real stream.
        return getattr(self.target, name)


def _final_state(line: str) -> str:
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


class OutputCapture:
    """Tees ``sys.stdout`` (level ``info``) and ``sys.stderr`` (level ``error``) to a sink.

    Nothing happens until :meth:`start`; :meth:`stop` puts the streams back where
    they are still ours.
    """

    def __init__(self, sink: LineSink):
        self._sink = sink
        self._stdout: TeeStream | None = None
        self._stderr: TeeStream | None = None

    @property
    def stdout_target(self) -> TextIO:
        return self._stdout.target if self._stdout else sys.stdout

    def start(self) -> None:
        global _active
        if self._stdout is not None:
            return
        self._stdout = TeeStream(sys.stdout, self._sink, "info")
        self._stderr = TeeStream(sys.stderr, self._sink, "error")
        sys.stdout, sys.stderr = self._stdout, self._stderr
        _active = self

    def stop(self) -> None:
        """Hand over partial lines and restore the original streams."""
        global _active
        for tee, attr in ((self._stdout, "stdout"), (self._stderr, "stderr")):
            if tee is None:
                continue
            tee.flush_partial()
            if getattr(sys, attr) is tee:
                setattr(sys, attr, tee.target)
        self._stdout = self._stderr = None
        if _active is self:
            _active = None
