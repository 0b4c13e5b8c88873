"""The store the CLI talks to, and task ids given as unique prefixes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.core.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from agent.core.models import Task
    from agent.store.base import Backend

#: Shortest id prefix the CLI accepts.
MIN_PREFIX = 4
#: Matches of a prefix worth listing: enough to say it is ambiguous and by how much.
MATCH_LIMIT = 100


def current_backend() -> Backend:
    """The process-wide backend (``AGENT_API_URL`` or the embedded store)."""
    from agent.store.factory import get_backend

    return get_backend()


def resolve_task_id(backend: Backend, ref: str) -> str:
    """The full id of the one task whose id is ``ref`` or starts with it.

    Raises:
        InvalidInput: ``ref`` is shorter than :data:`MIN_PREFIX` characters.
        NotFound: no task matches, or several do (the message lists some).
    """
    ref = ref.strip()
    try:
        return backend.get_task(ref).id
    except (NotFound, InvalidInput):
        pass
    if len(ref) < MIN_PREFIX:
        raise InvalidInput(
            f"task id '{ref}' is too short: give the full id or at least {MIN_PREFIX} characters"
        )
    # Ids are lowercase hex unless a caller chose one: try the prefix as typed, then lowercased.
    found = {
        task.id: task
        for prefix in dict.fromkeys([ref, ref.lower()])
        for task in backend.query_tasks(id_prefix=prefix, limit=MATCH_LIMIT)
    }
    matches = list(found.values())
    if not matches:
        raise NotFound(f"no task with id or id prefix '{ref}' (list them with `agent tasks`)")
    if len(matches) > 1:
        shown = ", ".join(f"{task.id[:12]} ({task.name or 'unnamed'})" for task in matches[:3])
        plus = "+" if len(matches) >= MATCH_LIMIT else ""
        more = f" and {len(matches) - 3}{plus} more" if len(matches) > 3 else ""
        raise NotFound(f"task id prefix '{ref}' is ambiguous: {shown}{more}; give more characters")
    return matches[0].id


def find_task(backend: Backend, ref: str) -> Task:
    """The task (with artifacts) that ``ref`` names; see :func:`resolve_task_id`."""
    return backend.get_task(resolve_task_id(backend, ref))
