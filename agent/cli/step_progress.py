"""What ``agent logs --follow`` of a pipeline says about its steps as they go.

A pipeline's own log says little while a step's agent builds the step's environment,
which can take minutes on a fresh node. :class:`StepProgress` reads each step's log until
its environment is ready and reports, on stderr, a line when the build starts ("step_one:
building environment (pandas, scikit-learn) ..."), when it is done ("... ready in 2.1 s")
or reused, and when the step ends. A step's log is not read past its environment phase,
so a chatty training step costs nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.models import TaskStatus

if TYPE_CHECKING:
    from agent.store.base import Backend

#: Seconds between looks at the steps.
INTERVAL_S = 1.0
_INSTALLING = re.compile(r"^installing \d+ requirement\(s\): (.*)$")
_CREATING = re.compile(r"^creating environment ")
_BUILT = re.compile(r"^built environment ([0-9a-f]+)")
_REUSING = re.compile(r"^reusing environment ([0-9a-f]+)")
_STARTING = re.compile(r"^starting ")
_NAME = re.compile(r"^([A-Za-z0-9_.\-]+)")
_FINAL = frozenset(s.value for s in TaskStatus if s.is_terminal)


@dataclass
class _Seen:
    seq: int = 0
    build_started: float | None = None
    env_done: bool = False
    ended: bool = False


class StepProgress:
    """Lines about the steps of pipeline ``pipeline_id``, written with ``write``."""

    def __init__(
        self,
        backend: Backend,
        pipeline_id: str,
        write: Callable[[str], None],
        interval: float = INTERVAL_S,
    ):
        self.backend = backend
        self.pipeline_id = pipeline_id
        self.write = write
        self.interval = interval
        self._seen: dict[str, _Seen] = {}
        self._next = 0.0

    def poll(self, force: bool = False) -> None:
        """Look at the steps (at most once per ``interval`` unless ``force``)."""
        clock = time.monotonic()
        if not force and clock < self._next:
            return
        self._next = clock + self.interval
        for step in reversed(self.backend.query_tasks(parent=self.pipeline_id)):
            seen = self._seen.setdefault(step.id, _Seen())
            if seen.ended:
                continue
            if not seen.env_done and step.status != TaskStatus.cached.value:
                self._read_env_lines(step.id, step.name, seen)
            if step.status in _FINAL:
                seen.ended = True
                self.write(f"{step.name}: {_ending(step.status, step.status_message)}")

    def _read_env_lines(self, step_id: str, name: str, seen: _Seen) -> None:
        for line in self.backend.get_logs(step_id, after=seen.seq):
            seen.seq = line.seq
            text = line.text.strip()
            if _CREATING.match(text):
                seen.build_started = line.ts
            elif match := _INSTALLING.match(text):
                packages = ", ".join(_package_names(match.group(1)))
                self.write(f"{name}: building environment ({packages}) ...")
                seen.build_started = seen.build_started or line.ts
            elif match := _BUILT.match(text):
                took = f" in {line.ts - seen.build_started:.1f} s" if seen.build_started else ""
                self.write(f"{name}: environment {match.group(1)} ready{took}")
                seen.env_done = True
            elif match := _REUSING.match(text):
                self.write(f"{name}: reusing environment {match.group(1)}")
                seen.env_done = True
            elif _STARTING.match(text):
                seen.env_done = True  # no environment of its own (Docker, --no-env)
            if seen.env_done:
                return


def _package_names(requirements: str) -> list[str]:
    names = []
    for requirement in requirements.split():
        match = _NAME.match(requirement)
        if match and not requirement.startswith("-"):
            names.append(match.group(1))
    return names


def _ending(status: str, message: str) -> str:
    if status == TaskStatus.cached.value:
        return f"cached ({message})" if message else "cached"
    return f"{status}: {message}" if message and status != TaskStatus.completed.value else status
