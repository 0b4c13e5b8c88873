"""Step caching: a key that sees code, inputs, requirements and container; a hit that
still has its outputs.

The key is the sha256 of the canonical JSON (sorted keys, no spaces) of::

    {"code": ..., "params": ..., "requirements": [...], "container": {...}}

where ``code`` is the function and helper sources (inline steps) or the repository
url, commit, diff and entry point (steps from a repository), and ``params`` the
resolved parameters with every input artifact replaced by its content hash, so a
re-made identical input still hits and a changed one misses.

A hit is the newest task with that key that ended ``completed``, ``cached`` or
``published`` (archived tasks are not searched) and whose artifact blobs all still
exist. ``AGENT_PIPELINE_FORCE_RERUN=1`` (or ``force_rerun=True``) skips the lookup.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from agent.core.models import Task, TaskStatus
from agent.pipeline.values import artifact_exists
from agent.store.base import Backend

#: Runtime property holding a step task's cache key (an indexed lookup in the store).
CACHE_KEY = "cache_key"
#: Runtime property of a cached step: the task whose outputs it reuses.
CACHED_FROM = "cached_from"
#: Environment variable that turns every cache lookup off.
FORCE_RERUN_ENV = "AGENT_PIPELINE_FORCE_RERUN"

_HIT_STATES = (TaskStatus.completed.value, TaskStatus.cached.value, TaskStatus.published.value)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(code: Any, params: Any, requirements: list[str], container: dict[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of a step's definition."""
    payload = {
        "code": code,
        "params": params,
        "requirements": sorted(str(r).strip() for r in requirements or [] if str(r).strip()),
        "container": {k: v for k, v in (container or {}).items() if v},
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def force_rerun_requested(flag: bool | None = None) -> bool:
    """``flag`` when given, else whether ``AGENT_PIPELINE_FORCE_RERUN`` is set true."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(FORCE_RERUN_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def find_cached(
    backend: Backend, key: str, outputs: list[str] | None = None, exclude: set[str] | None = None
) -> Task | None:
    """The newest reusable task with ``key``, or None.

    Args:
        outputs: artifact names the step must have produced (its return values).
        exclude: task ids not to reuse (the steps of the running pipeline).
    """
    candidates = backend.query_tasks(runtime={CACHE_KEY: key}, status=list(_HIT_STATES), limit=20)
    for candidate in candidates:
        if exclude and candidate.id in exclude:
            continue
        artifacts = backend.get_artifacts(candidate.id)
        if outputs and any(name not in artifacts for name in outputs):
            continue
        if all(artifact_exists(a) for a in artifacts.values()):
            candidate.artifacts = artifacts
            return candidate
    return None


def record_cached_step(backend: Backend, definition: Task, source: Task) -> Task:
    """Create the step's task in status ``cached``, pointing at ``source`` and owning
    copies of its artifact records (same blobs, no copy of the data)."""
    definition.runtime = {
        **definition.runtime,
        CACHED_FROM: source.runtime.get(CACHED_FROM) or source.id,
    }
    task = backend.create_task(definition)
    artifacts = source.artifacts or backend.get_artifacts(source.id)
    for artifact in artifacts.values():
        backend.add_artifact(task.id, artifact)
    return backend.set_status(
        task.id, TaskStatus.cached.value, message=f"reused {definition.runtime[CACHED_FROM]}"
    )
