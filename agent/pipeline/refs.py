"""``${...}`` references in step parameters, and artifact references in step kwargs.

In a step's overrides (``parameter_override``, ``configuration_overrides``,
``task_overrides``, ``function_kwargs``) a value may name:

- ``${pipeline.NAME}``: an argument of the pipeline (hyperparams section ``Args``);
  ``${pipeline.id}`` is the pipeline task's id;
- ``${STEP.id}``: the task id of another step;
- ``${STEP.artifacts.NAME.url}`` (or ``${STEP.artifacts.NAME}``): where an artifact of
  another step is stored; in ``function_kwargs`` the bare form passes the artifact
  itself, as does ``${STEP.NAME}`` (a function step's return value);
- ``${STEP.parameters.Section/name}``: a parameter of another step.

A reference to a step makes it a parent. Between steps, function steps pass
:func:`artifact_ref` values, ``{"__artifact__": {"task_id": ..., "name": ...}}``, that
the step runtime replaces with the artifact's content.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.pipeline.errors import PipelineDefinitionError

#: Key of an artifact reference in a step's kwargs.
ARTIFACT_REF = "__artifact__"

_REF = re.compile(r"\$\{([^}]*)\}")
_STEP_FIELDS = ("id", "artifacts", "parameters")


def artifact_ref(task_id: str, name: str) -> dict[str, Any]:
    """The kwargs value that stands for artifact ``name`` of task ``task_id``."""
    return {ARTIFACT_REF: {"task_id": task_id, "name": name}}


def is_artifact_ref(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(ARTIFACT_REF), dict)
        and "task_id" in value[ARTIFACT_REF]
        and "name" in value[ARTIFACT_REF]
    )


def map_artifact_refs(value: Any, fn: Callable[[str, str], Any]) -> Any:
    """``value`` with every artifact reference inside (lists, dicts) replaced by ``fn(task_id, name)``."""
    if is_artifact_ref(value):
        ref = value[ARTIFACT_REF]
        return fn(ref["task_id"], ref["name"])
    if isinstance(value, list):
        return [map_artifact_refs(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_artifact_refs(v, fn) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Reference:
    """One parsed ``${...}``: ``target`` is ``pipeline`` or a step name."""

    text: str
    target: str
    field: str  # "arg", "id", "artifact", "artifact_url", "parameter", "return"
    key: str = ""

    @property
    def step(self) -> str | None:
        return None if self.target == "pipeline" else self.target


def parse_reference(text: str) -> Reference:
    """Parse the inside of one ``${...}``.

    Raises:
        PipelineDefinitionError: the reference has no known form.
    """
    body = text.strip()
    target, dot, rest = body.partition(".")
    if not target or not dot or not rest:
        raise _bad(
            text, "expected ${pipeline.NAME} or ${STEP.id|artifacts.NAME[.url]|parameters.NAME}"
        )
    if target == "pipeline":
        return Reference(text, "pipeline", "id" if rest == "id" else "arg", rest)
    head, _, tail = rest.partition(".")
    if head == "id" and not tail:
        return Reference(text, target, "id")
    if head == "artifacts":
        if not tail:
            raise _bad(text, "name the artifact: ${STEP.artifacts.NAME.url}")
        if tail.endswith(".url"):
            return Reference(text, target, "artifact_url", tail[: -len(".url")])
        return Reference(text, target, "artifact", tail)
    if head == "parameters":
        if not tail:
            raise _bad(text, "name the parameter: ${STEP.parameters.Section/name}")
        return Reference(text, target, "parameter", tail)
    if "." not in rest:
        return Reference(text, target, "return", rest)
    raise _bad(text, f"unknown field '{head}' (use one of {list(_STEP_FIELDS)})")


def _bad(text: str, why: str) -> PipelineDefinitionError:
    return PipelineDefinitionError(f"bad reference '${{{text}}}': {why}")


def find_references(value: Any) -> list[Reference]:
    """Every reference inside ``value`` (strings in nested lists and dicts)."""
    found: list[Reference] = []
    if isinstance(value, str):
        found.extend(parse_reference(m.group(1)) for m in _REF.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(find_references(item))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(find_references(item))
    return found


def referenced_steps(value: Any) -> list[str]:
    """Names of the steps that ``value`` references, in order, without repeats."""
    names: list[str] = []
    for ref in find_references(value):
        if ref.step and ref.step not in names:
            names.append(ref.step)
    return names


def substitute(value: Any, resolve: Callable[[Reference], Any]) -> Any:
    """``value`` with its references replaced by ``resolve(ref)``.

    A string that is exactly one reference becomes the resolved value itself (which
    keeps its type: a number, an artifact reference); references inside a longer
    string are replaced by their text.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return resolve(parse_reference(whole.group(1)))
        return _REF.sub(lambda m: _as_text(resolve(parse_reference(m.group(1)))), value)
    if isinstance(value, dict):
        return {k: substitute(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolve) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, resolve) for v in value)
    return value


def _as_text(value: Any) -> str:
    if is_artifact_ref(value):
        return str(value[ARTIFACT_REF].get("url") or value[ARTIFACT_REF]["name"])
    return "" if value is None else str(value)
