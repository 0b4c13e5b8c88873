"""Step inputs and outputs as artifacts: upload a value, load it back, check blobs exist.

Every mode (debug, local, remote) moves data between steps the same way: a
return value is serialized (:mod:`agent.sdk.serialization`), stored once with its
content hash (:func:`agent.files.artifacts.store_artifact`) and recorded on the
step's task; a consumer gets ``{"__artifact__": {"task_id", "name"}}`` and loads
it, in place where the store is local.

Strings always travel as JSON values here (unlike ``upload_artifact``, which
uploads a string naming an existing file as that file): a step that returns
``"data.csv"`` hands on the text ``"data.csv"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import reprlib
import shutil
import sys
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from agent.core.models import Artifact
from agent.store.base import Backend

#: Metadata key of the serialization format (same as ``agent.sdk.serialization.FORMAT_KEY``).
FORMAT_KEY = "_serialization"
#: Metadata key of what loading the value needs installed (``["pandas==2.2.3"]``): a step
#: that takes the artifact as an input gets these requirements too.
REQUIREMENTS_KEY = "_requirements"
#: Pickle opcodes scanned for the modules a pickled value refers to, at most.
MAX_PICKLE_OPS = 500_000


def is_json_value(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` survives a JSON round trip with the same types throughout."""
    if depth > 64:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(is_json_value(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and is_json_value(v, depth + 1) for k, v in value.items())
    return False


@lru_cache(maxsize=4)
def _file_store(url: str, token: str | None):
    from agent.files.factory import store_for_url

    return store_for_url(url, token=token)


def file_store(output_uri: str | None = None):
    """Where artifact blobs go, as for ``Task.upload_artifact``: the task's
    ``output_uri`` when given, else ``AGENT_FILES_URL``, else the server when one is
    configured, else ``$AGENT_HOME/files``."""
    from agent.config import load_settings

    settings = load_settings()
    url = output_uri or settings.files_url or settings.api_url or str(settings.home / "files")
    return _file_store(url, settings.api_token)


def upload_value(
    backend: Backend,
    task_id: str,
    name: str,
    value: Any,
    metadata: dict[str, Any] | None = None,
    output_uri: str | None = None,
) -> Artifact:
    """Store ``value`` as artifact ``name`` of task ``task_id`` (at ``output_uri``, the
    task's destination, when given) and record it.

    JSON values and plain picklable objects go to the store as bytes in one write;
    numpy arrays, DataFrames and files take :func:`agent.sdk.serialization.serialize`'s way.
    """
    encoded = _encode_simple(value)
    if encoded is None:
        return _upload_serialized(backend, task_id, name, value, metadata, output_uri)
    data, suffix, kind, preview, fmt = encoded
    from agent.files.artifacts import artifact_key

    key = artifact_key(task_id, name, f"{name}.{suffix}")
    uri = file_store(output_uri).put_bytes(data, key)
    needs = loading_requirements(pickled_modules(data) if fmt == "pickle" else set())
    artifact = Artifact(
        name=name,
        uri=uri,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        type=kind,
        preview=preview,
        metadata={
            FORMAT_KEY: {"format": fmt},
            **({REQUIREMENTS_KEY: needs} if needs else {}),
            **(metadata or {}),
        },
        created=time.time(),
    )
    return backend.add_artifact(task_id, artifact)


def pickled_modules(data: bytes) -> set[str]:
    """Top-level modules whose classes or functions a pickle refers to (read, not loaded)."""
    import pickletools

    modules: set[str] = set()
    strings: list[str] = []  # the last two strings pushed (STACK_GLOBAL's operands)
    memo: dict[int, str] = {}
    memoized = 0
    last_string: str | None = None
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(data)):
            if count > MAX_PICKLE_OPS:
                break
            pushed: str | None = None
            if op.name == "GLOBAL" and isinstance(arg, str):
                modules.add(arg.split(" ", 1)[0].split(".")[0])
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                modules.add(strings[-2].split(".")[0])
            elif "UNICODE" in op.name and isinstance(arg, str):
                pushed = arg
            elif op.name == "MEMOIZE":
                if last_string is not None:
                    memo[memoized] = last_string
                memoized += 1
                pushed = last_string  # the pushed value stays on the stack
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT") and last_string is not None:
                memo[int(arg)] = last_string
                pushed = last_string
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))
            if pushed is not None and pushed is not last_string:
                strings = [*strings[-1:], pushed]
            elif pushed is None and op.name not in ("MEMOIZE", "FRAME"):
                strings = [*strings[-1:], ""]
            last_string = pushed
    except Exception:  # a truncated or odd pickle: what was found so far
        pass
    return {m for m in modules if m}


def loading_requirements(modules: set[str]) -> list[str]:
    """Requirement lines (pinned to what is installed here) of the third-party ``modules``."""
    from agent.execution.requirements import EXCLUDED_MODULES, requirements_for_modules

    # Only modules this process imported: the value was made here, from their classes.
    wanted = {m for m in modules if m in sys.modules and m not in EXCLUDED_MODULES}
    if not wanted:
        return []
    return [line for line in requirements_for_modules(wanted, (), quick=True) if "==" in line]


def _encode_simple(value: Any) -> tuple[bytes, str, str, str, str] | None:
    """(bytes, suffix, type, preview, format) of a JSON value or a plain object, else None."""
    if is_json_value(value):
        text = json.dumps(value)
        return text.encode("utf-8"), "json", "json", text[:1024], "json"
    module = type(value).__module__.split(".")[0]
    if module in ("numpy", "pandas") or isinstance(value, os.PathLike):
        return None
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # not picklable here: serialize() says why
        return None
    preview = f"{type(value).__module__}.{type(value).__qualname__}: {reprlib.repr(value)}"
    return data, "pkl", "pickle", preview[:1024], "pickle"


def _upload_serialized(
    backend: Backend,
    task_id: str,
    name: str,
    value: Any,
    metadata: dict[str, Any] | None,
    output_uri: str | None = None,
) -> Artifact:
    from agent.files.artifacts import store_artifact
    from agent.sdk.serialization import serialize

    workdir = Path(tempfile.mkdtemp(prefix="agent-value-"))
    try:
        serialized = serialize(value, name, workdir)
        needs = loading_requirements(_serialized_modules(serialized))
        meta = {
            FORMAT_KEY: serialized.format,
            **({REQUIREMENTS_KEY: needs} if needs else {}),
            **(metadata or {}),
        }
        artifact = store_artifact(
            file_store(output_uri),
            task_id,
            name,
            serialized.path,
            type=serialized.type,
            preview=serialized.preview,
            metadata=meta,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return backend.add_artifact(task_id, artifact)


def _serialized_modules(serialized: Any) -> set[str]:
    """The modules loading a serialized value takes (its format's library, or a pickle's)."""
    fmt = (serialized.format or {}).get("format", "")
    if serialized.type == "pandas":
        return {"pandas", *(["pyarrow"] if fmt == "parquet" else [])}
    if serialized.type == "numpy":
        return {"numpy"}
    if serialized.type == "image":
        return {"PIL"}
    if fmt == "pickle" and serialized.path.stat().st_size <= 256 * 1024 * 1024:
        return pickled_modules(serialized.path.read_bytes())
    return set()


def input_requirements(artifacts: list[Artifact]) -> list[str]:
    """What loading these input artifacts needs installed, from their metadata."""
    lines: list[str] = []
    for artifact in artifacts:
        for line in (artifact.metadata or {}).get(REQUIREMENTS_KEY) or []:
            if isinstance(line, str) and line not in lines:
                lines.append(line)
    return lines


def load_artifact(artifact: Artifact) -> Any:
    """The value an artifact holds (a path for plain files)."""
    from agent.files.artifacts import fetch_artifact
    from agent.sdk.serialization import artifact_format, load

    path = fetch_artifact(artifact)
    fmt = artifact_format(artifact.type, artifact.metadata or {}, Path(path))
    if fmt in ("file", "zip", "custom"):
        return str(path)
    return load(Path(path), fmt, in_place=True)


def artifact_exists(artifact: Artifact) -> bool:
    """Whether the artifact's blob is still in its store."""
    from agent.files.factory import open_uri

    try:
        store, key = open_uri(artifact.uri)
        return bool(store.exists(key))
    except Exception:  # an unreachable or malformed store: the blob is not usable
        return False


class ArtifactIndex:
    """Artifact records of tasks, read once per task (thread-safe)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self._records: dict[str, dict[str, Artifact]] = {}
        self._lock = threading.Lock()

    def get(self, task_id: str, name: str) -> Artifact:
        """Raises KeyError with a helpful message when the task has no such artifact."""
        with self._lock:
            records = self._records.get(task_id)
        if records is None or name not in records:
            records = self.backend.get_artifacts(task_id)
            with self._lock:
                self._records[task_id] = records
        try:
            return records[name]
        except KeyError:
            raise KeyError(
                f"task {task_id} has no artifact '{name}' (it has {sorted(records)})"
            ) from None

    def cached(self, task_id: str, name: str) -> Artifact | None:
        """The record if this index holds it (no store read)."""
        with self._lock:
            return (self._records.get(task_id) or {}).get(name)

    def add(self, task_id: str, artifact: Artifact) -> None:
        """Remember a record just written (a missing name still reads the store)."""
        with self._lock:
            self._records.setdefault(task_id, {})[artifact.name] = artifact

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._records.pop(task_id, None)
