"""ClearML's ``task_filter`` dict of ``Task.get_tasks`` / ``Task.get_task``, read into what
the store can filter on and what is filtered afterwards.

The store filters one status list, one tag, one type and a parent; the rest (more tags,
excluded tags, several types, ids, a name pattern, the order, paging) is applied to what
it returns, newest first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.core.models import Task as TaskRecord
from agent.core.models import TaskStatus

_log = logging.getLogger("agent.sdk")

#: Keys of ClearML's filter dict that are read; ``system_tags`` and ``project`` too.
KNOWN_KEYS = frozenset(
    {
        "status",
        "type",
        "tags",
        "system_tags",
        "parent",
        "id",
        "search_text",
        "order_by",
        "page",
        "page_size",
        "project",
        "name",
        "_all_",
        "only_fields",
    }  # fmt: skip
)
#: Fields ``order_by`` may name (``-`` in front: descending).
ORDER_FIELDS = frozenset(
    {"created", "started", "completed", "last_update", "name", "status", "type", "project"}
)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value]
    return [str(value)]


@dataclass
class TaskFilter:
    statuses: list[str] | None = None
    types: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    excluded_tags: list[str] = field(default_factory=list)
    parent: str | None = None
    ids: list[str] = field(default_factory=list)
    search_text: str = ""
    name_pattern: str | None = None
    order_by: list[str] = field(default_factory=list)
    offset: int = 0
    allow_archived: bool = True

    @classmethod
    def parse(
        cls, task_filter: dict[str, Any], tags: Sequence[str] | None, allow_archived: bool
    ) -> TaskFilter:
        """Read ClearML's filter dict (and the ``tags`` argument).

        Raises:
            ValueError: a status or ``order_by`` field that does not exist.
        """
        unknown = sorted(set(task_filter) - KNOWN_KEYS)
        if unknown:
            _log.warning("task_filter: ignoring %s (supported: %s)", unknown, sorted(KNOWN_KEYS))
        statuses = _as_list(task_filter.get("status")) or None
        for status in statuses or []:
            try:
                TaskStatus(status)
            except ValueError:
                options = ", ".join(s.value for s in TaskStatus)
                raise ValueError(
                    f"task_filter: unknown status {status!r}; one of {options}"
                ) from None
        all_tags = [*(tags or []), *_as_list(task_filter.get("tags"))]
        order = _as_list(task_filter.get("order_by"))
        for item in order:
            if item.lstrip("-+") not in ORDER_FIELDS:
                raise ValueError(
                    f"task_filter: cannot order by {item!r}; one of {sorted(ORDER_FIELDS)}"
                )
        page_size = int(task_filter.get("page_size") or 0)
        page = int(task_filter.get("page") or 0)
        return cls(
            statuses=statuses,
            types=_as_list(task_filter.get("type")),
            tags=[t for t in all_tags if not t.startswith("-")],
            excluded_tags=[t[1:] for t in all_tags if t.startswith("-")],
            parent=task_filter.get("parent"),
            ids=_as_list(task_filter.get("id")),
            search_text=str(task_filter.get("search_text") or ""),
            name_pattern=task_filter.get("name"),
            order_by=order,
            offset=page * page_size if page_size else 0,
            allow_archived=allow_archived,
        )

    @property
    def selects(self) -> bool:
        """Whether the filter narrows the tasks at all (a bare listing is refused)."""
        return bool(
            self.statuses or self.types or self.tags or self.parent or self.ids or self.name_pattern
        )

    @property
    def store_tag(self) -> str | None:
        return self.tags[0] if self.tags else None

    @property
    def store_type(self) -> str | None:
        return self.types[0] if len(self.types) == 1 else None

    @property
    def filters_after_store(self) -> bool:
        return bool(
            len(self.tags) > 1
            or self.excluded_tags
            or len(self.types) > 1
            or self.ids
            or self.search_text
            or self.name_pattern
            or self.order_by
            or not self.allow_archived
        )

    def keeps(self, task: TaskRecord) -> bool:
        if not set(self.tags) <= set(task.tags) or set(self.excluded_tags) & set(task.tags):
            return False
        if self.types and task.type not in self.types:
            return False
        if self.ids and task.id not in self.ids:
            return False
        if self.search_text and self.search_text.lower() not in task.name.lower():
            return False
        if self.name_pattern and not re.search(self.name_pattern, task.name):
            return False
        return self.allow_archived or task.status != TaskStatus.archived.value

    def apply(self, records: list[TaskRecord], limit: int) -> list[TaskRecord]:
        kept = [r for r in records if self.keeps(r)]
        for item in reversed(self.order_by):  # stable sorts: the first field decides last
            kept.sort(key=_sort_key(item.lstrip("-+")), reverse=item.startswith("-"))
        return kept[self.offset : self.offset + limit]


def _sort_key(name: str) -> Any:
    text = name in ("name", "status", "type", "project")
    return lambda task: getattr(task, name, None) or ("" if text else 0.0)
