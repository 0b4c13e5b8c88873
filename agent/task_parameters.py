"""Typed parameter classes to connect to a task (ClearML's ``clearml.task_parameters``).

::

    from agent.task_parameters import TaskParameters, param, percent_param

    class Params(TaskParameters):
        iterations = param(type=int, desc="Number of iterations", range=(0, 100_000), default=500)
        target_accuracy = percent_param(desc="The target accuracy", default=0.9)

    params = Params(iterations=1000)
    params.connect(task)        # here: stored on the task; under an agent: updated from it

A subclass gets a keyword ``__init__`` (a parameter without a default is required), and
its values are checked (type, range, validators) when made and when updated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TaskParameters", "param", "percent_param", "range_validator"]

Validator = Callable[[Any, "Param", Any], None]
_MISSING = object()


def range_validator(min_value: float | None, max_value: float | None) -> Validator:
    """A validator: the value lies in ``[min_value, max_value]`` (None: no limit)."""

    def check(instance: Any, attribute: Param, value: Any) -> None:
        if value is None:
            return
        if (min_value is not None and value < min_value) or (
            max_value is not None and value > max_value
        ):
            raise ValueError(f"{attribute.name} must be in range [{min_value}, {max_value}]")

    return check


@dataclass
class Param:
    """One parameter of a :class:`TaskParameters` class (made by :func:`param`)."""

    validators: list[Validator] = field(default_factory=list)
    type: type | None = None
    desc: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    default: Any = _MISSING
    factory: Callable[[], Any] | None = None
    name: str = ""

    def initial(self) -> Any:
        if self.factory is not None:
            return self.factory()
        return self.default

    def check(self, instance: Any, value: Any) -> None:
        if self.type is not None and value is not None and not isinstance(value, self.type):
            if not (self.type is float and isinstance(value, int) and not isinstance(value, bool)):
                raise TypeError(
                    f"{self.name} must be {self.type.__name__}, not {type(value).__name__} "
                    f"({value!r})"
                )
        for validator in self.validators:
            validator(instance, self, value)


def _as_list(value: Any) -> list[Validator]:
    if not value:
        return []
    if isinstance(value, Iterable) and not callable(value):
        return list(value)
    return [value]


def param(
    validator: Validator | Iterable[Validator] | None = None,
    range: tuple[float | None, float | None] | None = None,
    type: type | None = None,
    desc: str | None = None,
    metadata: dict[str, Any] | None = None,
    default: Any = _MISSING,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A parameter of a :class:`TaskParameters` class.

    Args:
        validator: a callable ``(instance, attribute, value)`` (or several) that raises
            on a bad value.
        range: ``(min, max)``, inclusive; None for no limit on a side.
        type: the value's type (``int``, ``float``, ``str`` ...); None for any.
        desc: what the parameter means.
        metadata: anything else to keep with it.
        default: its value when none is given (none: the parameter is required).
        factory: makes the default (for mutable values).
    """
    validators = _as_list(validator)
    if range is not None:
        validators.append(range_validator(*range))
    return Param(
        validators=validators,
        type=type,
        desc=desc,
        metadata={**(metadata or {}), "desc": desc},
        default=default,
        factory=factory,
    )


def percent_param(*args: Any, **kwargs: Any) -> Any:
    """A float parameter in ``[0, 1]``."""
    return param(*args, range=(0, 1), type=float, **kwargs)


class TaskParameters:
    """Base class of a set of typed parameters to connect to a task (see the module doc)."""

    _params: dict[str, Param] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params = dict(getattr(cls, "_params", {}))
        for name, value in list(vars(cls).items()):
            if isinstance(value, Param):
                value.name = name
                params[name] = value
                delattr(cls, name)
        cls._params = params

    def __init__(self, **values: Any):
        unknown = set(values) - set(self._params)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameter(s) {sorted(unknown)}")
        for name, spec in self._params.items():
            value = values[name] if name in values else spec.initial()
            if value is _MISSING:
                raise TypeError(f"{type(self).__name__}: parameter {name!r} is required")
            spec.check(self, value)
            setattr(self, name, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every parameter."""
        return {name: getattr(self, name) for name in self._params}

    def update_from_dict(self, source_dict: dict[str, Any]) -> None:
        """Set parameters from ``source_dict`` (checked like the constructor's).

        Raises:
            ValueError: a key names no parameter.
        """
        for key, value in source_dict.items():
            if key not in self._params:
                raise ValueError(f"Unknown key {key} in {type(self).__name__} object")
            self._params[key].check(self, value)
            setattr(self, key, value)

    def connect(self, task: Any, name: str | None = None) -> TaskParameters:
        """Connect to ``task``: store these values here; under an agent, take the stored
        ones (cast to each parameter's type)."""
        return task.connect(self, name=name)
