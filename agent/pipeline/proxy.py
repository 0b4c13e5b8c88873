"""The value of a step that may still be running: :class:`StepProxy`.

Calling a component inside a pipeline returns proxies at once. Using a proxy's
value in any way (an operator, an attribute, ``str``/``format``/``bool``/``len``,
iteration, indexing, ``isinstance``, arithmetic such as ``100 * accuracy``) waits
for the step and loads the artifact; passing the proxy to another component does
not: it becomes a DAG edge and an artifact reference.

If the step did not succeed, using the value raises
:class:`~agent.pipeline.errors.StepFailedError` naming the step and its log.
"""

from __future__ import annotations

import operator
import threading
from typing import Any

from agent.pipeline.errors import StepFailedError

_UNSET = object()


class StepProxy:
    """Stands for return value ``name`` of pipeline step ``step`` of a run."""

    __slots__ = ("_agent_run", "_agent_step", "_agent_name", "_agent_value", "_agent_lock")

    def __init__(self, run: Any, step: str, name: str):
        object.__setattr__(self, "_agent_run", run)
        object.__setattr__(self, "_agent_step", step)
        object.__setattr__(self, "_agent_name", name)
        object.__setattr__(self, "_agent_value", _UNSET)
        object.__setattr__(self, "_agent_lock", threading.Lock())

    # -- resolution ---------------------------------------------------------------------------
    def _agent_resolve(self) -> Any:
        value = object.__getattribute__(self, "_agent_value")
        if value is not _UNSET:
            return value
        with object.__getattribute__(self, "_agent_lock"):
            value = object.__getattribute__(self, "_agent_value")
            if value is _UNSET:
                value = _load(self)
                object.__setattr__(self, "_agent_value", value)
        return value

    # -- attribute access ---------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(resolve(self), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(resolve(self), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(resolve(self), name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, DataFrame) looks at the value
        return type(resolve(self))

    def __dir__(self) -> list[str]:
        return dir(resolve(self))

    def __repr__(self) -> str:
        return repr(resolve(self))

    def __str__(self) -> str:
        return str(resolve(self))

    def __format__(self, spec: str) -> str:
        return format(resolve(self), spec)

    def __bytes__(self) -> bytes:
        return bytes(resolve(self))

    def __bool__(self) -> bool:
        return bool(resolve(self))

    def __hash__(self) -> int:
        return hash(resolve(self))

    def __len__(self) -> int:
        return len(resolve(self))

    def __iter__(self):
        return iter(resolve(self))

    def __reversed__(self):
        return reversed(resolve(self))

    def __contains__(self, item: Any) -> bool:
        return item in resolve(self)

    def __getitem__(self, key: Any) -> Any:
        return resolve(self)[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        resolve(self)[key] = value

    def __delitem__(self, key: Any) -> None:
        del resolve(self)[key]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return resolve(self)(*args, **kwargs)

    def __enter__(self) -> Any:
        return resolve(self).__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return resolve(self).__exit__(*exc)

    def __int__(self) -> int:
        return int(resolve(self))

    def __float__(self) -> float:
        return float(resolve(self))

    def __complex__(self) -> complex:
        return complex(resolve(self))

    def __index__(self) -> int:
        return operator.index(resolve(self))

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(resolve(self), ndigits) if ndigits is not None else round(resolve(self))

    def __fspath__(self) -> Any:
        import os

        return os.fspath(resolve(self))

    def __reduce_ex__(self, protocol: int) -> Any:
        return resolve(self).__reduce_ex__(protocol)

    def __copy__(self) -> Any:
        import copy

        return copy.copy(resolve(self))

    def __deepcopy__(self, memo: dict) -> Any:
        import copy

        return copy.deepcopy(resolve(self), memo)


def resolve(value: Any) -> Any:
    """The value behind a proxy (waiting for its step); anything else unchanged."""
    if type(value) is StepProxy:
        return StepProxy._agent_resolve(value)
    return value


def is_proxy(value: Any) -> bool:
    return type(value) is StepProxy


def proxy_origin(value: StepProxy) -> tuple[str, str]:
    """(step, return value name) of a proxy, without waiting for it."""
    return (
        object.__getattribute__(value, "_agent_step"),
        object.__getattribute__(value, "_agent_name"),
    )


def _load(proxy: StepProxy) -> Any:
    from agent.pipeline.values import load_artifact

    run = object.__getattribute__(proxy, "_agent_run")
    step, name = proxy_origin(proxy)
    node = run.wait_node(step)
    if not node.state.is_success:
        raise StepFailedError(step, node.state.value, node.task_id, node.status_message)
    return load_artifact(run.artifacts.get(node.task_id, name))


def _binary(op: Any, reflected: bool = False):
    if reflected:

        def method(self: StepProxy, other: Any) -> Any:
            return op(resolve(other), resolve(self))

    else:

        def method(self: StepProxy, other: Any) -> Any:
            return op(resolve(self), resolve(other))

    return method


def _unary(op: Any):
    def method(self: StepProxy) -> Any:
        return op(resolve(self))

    return method


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "matmul": operator.matmul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "divmod": divmod,
    "pow": pow,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "and": operator.and_,
    "xor": operator.xor,
    "or": operator.or_,
}
for _name, _op in _BINARY.items():
    setattr(StepProxy, f"__{_name}__", _binary(_op))
    setattr(StepProxy, f"__r{_name}__", _binary(_op, reflected=True))
for _name, _op in {"lt": operator.lt, "le": operator.le, "eq": operator.eq,
                   "ne": operator.ne, "gt": operator.gt, "ge": operator.ge}.items():  # fmt: skip
    setattr(StepProxy, f"__{_name}__", _binary(_op))
for _name, _op in {"neg": operator.neg, "pos": operator.pos, "abs": abs,
                   "invert": operator.invert}.items():  # fmt: skip
    setattr(StepProxy, f"__{_name}__", _unary(_op))
