"""Hyperparameters and configuration objects of a task (ClearML's ``connect`` family).

Hyperparameters live in ``task.hyperparams`` as ``{section: {name: value}}``;
nested dicts are flattened with ``/`` (``{"opt": {"lr": 1}}`` -> ``opt/lr``). Values
are stored as JSON values where they are JSON-able and as text otherwise. Stored
values may also be text written by hand (``agent clone --set General/lr=0.1``), so
:func:`cast_like` converts a stored value back to the type the code expects.
"""

from __future__ import annotations

import ast
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.core.models import Task as TaskRecord

#: Section of ``connect``/``set_parameter`` when none is named.
DEFAULT_SECTION = "General"
#: Section of a connected ``argparse.Namespace`` when none is named (as in ClearML).
ARGS_SECTION = "Args"

_UNSET = object()
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off", ""})
_NONE = frozenset({"", "none", "null"})


# -- values -----------------------------------------------------------------------------
def to_stored(value: Any, non_finite: Callable[[float], Any] = str) -> Any:
    """``value`` as it goes into the store: a JSON value (tuples as lists), else text.

    A NaN or infinite float becomes ``non_finite(value)``: by default its text ("nan",
    "inf", as ClearML stores it), which :func:`cast_like` reads back as a float; JSON has
    no NaN, and the store refuses one.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return to_stored(value.value, non_finite)
    if isinstance(value, (list, tuple)):
        return [to_stored(v, non_finite) for v in value]
    if isinstance(value, dict):
        return {str(k): to_stored(v, non_finite) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return to_stored(value.tolist(), non_finite)  # numpy scalars and arrays
    return str(value)


def cast_like(stored: Any, original: Any, name: str = "") -> Any:
    """Convert a stored value to the type of the ``original`` value from the code.

    int, float and bool parse text (``"false"``, ``"0"``, ``"no"`` are False); lists,
    tuples and dicts parse JSON (or Python literals); other types are built with
    ``type(original)(stored)`` where that works and returned as stored otherwise.

    Raises:
        ValueError: a stored value that cannot be read as the int, float, bool, list
            or dict the code expects.
    """
    if original is None:
        return None if _is_none(stored) else stored
    kind = type(original)
    try:
        if isinstance(original, Enum):
            return stored if isinstance(stored, kind) else kind(stored)
        if isinstance(original, bool):
            return _to_bool(stored)
        if isinstance(original, int):
            return _to_int(stored)
        if isinstance(original, float):
            return _to_float(stored)
        if isinstance(original, str):
            return stored if isinstance(stored, str) else _text(stored)
        if isinstance(original, (list, tuple, dict)):
            return _to_container(stored, kind)
    except (ValueError, TypeError, SyntaxError) as exc:
        where = f"parameter {name!r}" if name else "a parameter"
        raise ValueError(
            f"{where}: cannot use the stored value {stored!r} as {kind.__name__} ({exc}); "
            "fix the value on the task (e.g. `agent clone ID --set Section/name=value`)"
        ) from None
    try:
        return stored if isinstance(stored, kind) else kind(stored)
    except Exception:  # an unknown type that cannot parse it: the stored value is the best we have
        return stored


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _to_int(value: Any) -> int:
    if isinstance(value, (bool, int)):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("not a whole number")
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        number = float(text)
        if not number.is_integer():
            raise ValueError("not a whole number") from None
        return int(number)


def _to_float(value: Any) -> float:
    if isinstance(value, str):
        return float(value.strip())
    if isinstance(value, (bool, int, float)):
        return float(value)
    raise TypeError(f"a {type(value).__name__} is not a number")


def _text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _to_container(value: Any, kind: type) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = ast.literal_eval(value)  # "['a', 'b']" as older tools write lists
    want = dict if issubclass(kind, dict) else (list, tuple)
    if not isinstance(value, want):
        raise ValueError(f"expected a {'dict' if want is dict else 'list'}")
    if issubclass(kind, tuple):
        return tuple(value)
    if issubclass(kind, list):
        return list(value)
    return value


def as_text(value: Any) -> str:
    """A stored value as ClearML's SDK returns parameters: ``str()`` of it, ``""`` for None."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


class ConnectedDict(dict):
    """The dict ``Task.connect`` returns: a copy whose changes go to the task at once.

    Pickled or deep-copied, it is a plain dict (it never carries its task along).
    """

    def __init__(self, data: dict[Any, Any], task: Any, section: str):
        super().__init__(data)
        self._task = task
        self._section = section

    def _push(self) -> None:
        values = {n: to_stored(v) for n, (_, v) in params_of(dict(self)).items()}
        self._task._record_section(self._section, values)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self._push()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._push()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        had = key in self
        value = super().setdefault(key, default)
        if not had:
            self._push()
        return value

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))

    def __copy__(self) -> dict[Any, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[Any, Any]:
        import copy

        return copy.deepcopy(dict(self), memo)


# -- names ------------------------------------------------------------------------------
def walk(mapping: dict[Any, Any], prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple, Any]]:
    """(key path, value) of every leaf of a nested dict; an empty dict is a leaf."""
    for key, value in mapping.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from walk(value, path)
        else:
            yield path, value


def flat_name(path: tuple[Any, ...]) -> str:
    return "/".join(str(part) for part in path)


def split_name(name: str, default_section: str = DEFAULT_SECTION) -> tuple[str, str]:
    """``"Section/name"`` -> (section, name); a bare name belongs to ``default_section``."""
    section, sep, rest = name.partition("/")
    return (section, rest) if sep else (default_section, name)


def normalize(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat ``{"Section/name": v}`` or nested ``{"Section": {"name": v}}`` -> sections.

    A key without ``/`` whose value is a dict is a section; one with a plain value
    belongs to ``General``.
    """
    sections: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        key = str(key)
        if "/" not in key and isinstance(value, dict):
            target = sections.setdefault(key, {})
            for path, leaf in walk(value):
                target[flat_name(path)] = to_stored(leaf)
        else:
            section, name = split_name(key)
            sections.setdefault(section, {})[name] = to_stored(value)
    return sections


def nest(section: dict[str, Any]) -> dict[str, Any]:
    """``{"opt/lr": 1}`` -> ``{"opt": {"lr": 1}}`` (the inverse of the flattening)."""
    out: dict[str, Any] = {}
    for name, value in section.items():
        *parents, leaf = name.split("/")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return out


# -- connected objects ------------------------------------------------------------------
def is_namespace(obj: Any) -> bool:
    """Whether ``obj`` is an ``argparse.Namespace`` (without importing argparse)."""
    argparse = sys.modules.get("argparse")
    return argparse is not None and isinstance(obj, argparse.Namespace)


def default_section(obj: Any) -> str:
    return ARGS_SECTION if is_namespace(obj) else DEFAULT_SECTION


def params_of(obj: Any) -> dict[str, tuple[tuple, Any]]:
    """{flat name: (key path, value)} of a dict, a Namespace or an object's attributes.

    Raises:
        TypeError: ``obj`` has no parameters to connect.
    """
    if isinstance(obj, dict):
        return {flat_name(path): (path, value) for path, value in walk(obj)}
    attrs = _public_attributes(obj)
    if attrs is None:
        raise TypeError(
            f"connect() takes a dict, an argparse.Namespace or an object with attributes, "
            f"not {type(obj).__name__}"
        )
    return {name: ((name,), value) for name, value in attrs.items()}


def _public_attributes(obj: Any) -> dict[str, Any] | None:
    try:
        attrs = vars(obj)
    except TypeError:
        return None
    skip = (staticmethod, classmethod, property)
    return {
        k: v
        for k, v in attrs.items()
        if not k.startswith("_") and not callable(v) and not isinstance(v, skip)
    }


def apply_stored(obj: Any, stored: dict[str, Any], section: str) -> None:
    """Write a section's stored values into ``obj``, cast to the types it holds.

    Stored names that ``obj`` lacks are added to dicts and Namespaces (as stored),
    not to other objects.
    """
    local = params_of(obj)
    for name, value in stored.items():
        qualified = f"{section}/{name}"
        if name in local:
            path, original = local[name]
            _set_path(obj, path, cast_like(value, original, qualified))
        elif isinstance(obj, dict) or is_namespace(obj):
            _set_path(obj, (name,), value)


def _set_path(obj: Any, path: tuple, value: Any) -> None:
    if isinstance(obj, dict):
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    else:
        setattr(obj, path[0], value)


# -- configuration objects --------------------------------------------------------------
def config_text_of(configuration: dict[str, Any]) -> str:
    """A configuration dict as the text stored on the task (indented JSON)."""
    return json.dumps(to_stored(configuration), indent=2)


def parse_config(text: str, name: str) -> dict[str, Any]:
    """A stored configuration's text as a dict: JSON, else TOML.

    Raises:
        ValueError: the text is neither a JSON object nor TOML.
    """
    try:
        value = json.loads(text)
    except ValueError:
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            value = None
    if not isinstance(value, dict):
        raise ValueError(
            f"configuration {name!r} is neither a JSON object nor TOML; "
            "store a dict, or connect it as a file to read it yourself"
        )
    return value


def write_config_copy(text: str, like: Path) -> Path:
    """The stored text of a file configuration in a fresh local file named like ``like``."""
    directory = Path(tempfile.mkdtemp(prefix="agent-config-"))
    path = directory / (like.name or "configuration.txt")
    path.write_text(text, encoding="utf-8")
    return path


# -- the Task methods -------------------------------------------------------------------
class ParametersMixin:
    """Hyperparameters and configuration objects of :class:`agent.sdk.task.Task`."""

    # Provided by Task.
    id: str
    _stored_values_win: bool

    def _fresh(self) -> TaskRecord:
        raise NotImplementedError

    def _update(self, **fields: Any) -> TaskRecord:
        raise NotImplementedError

    def connect(
        self, mutable: Any, name: str | None = None, ignore_remote_overrides: bool = False
    ) -> Any:
        """Connect a dict, an ``argparse.Namespace``, a :class:`~agent.task_parameters.
        TaskParameters` or an object's attributes to a hyperparameter section (``General``;
        ``Args`` for a Namespace).

        Run by an agent (``AGENT_TASK_ID`` is this task), the stored values win: they
        are written into ``mutable`` in place, cast to the types it holds (stored
        names it lacks are added to dicts and Namespaces). Otherwise ``mutable``'s
        values are stored. Later changes are recorded too: at once through the dict
        this returns for a dict (as in ClearML), and for anything connected when the
        task is flushed or closed.

        Returns:
            For a dict, a live copy (a ``dict``; writes to it go to the task); else
            ``mutable`` itself.

        Raises:
            TypeError: ``mutable`` is not a dict or an object with attributes.
            ValueError: a stored value cannot be cast to the type the code uses.
        """
        from agent.sdk.model import BaseModel

        if isinstance(mutable, BaseModel):  # InputModel: an input, OutputModel: an output
            mutable.connect(self, name)  # type: ignore[attr-defined]
            return mutable
        section = name or default_section(mutable)
        local = {n: to_stored(v) for n, (_, v) in params_of(mutable).items()}
        hyperparams = self._fresh().hyperparams
        stored = dict(hyperparams.get(section, {}))
        if self._stored_values_win and not ignore_remote_overrides:
            apply_stored(mutable, stored, section)
            merged = {**local, **stored}
        else:
            merged = {**stored, **local}
        if merged != stored:
            self._update(hyperparams={**hyperparams, section: merged})
        snapshot = {n: to_stored(v) for n, (_, v) in params_of(mutable).items()}
        self.__dict__.setdefault("_connected", []).append([section, mutable, snapshot])
        if isinstance(mutable, dict):
            return ConnectedDict(mutable, self, section)
        return mutable

    def _record_section(self, section: str, values: dict[str, Any]) -> None:
        """Store ``values`` (flat names) in ``section``, keeping its other names."""
        hyperparams = self._fresh().hyperparams
        stored = dict(hyperparams.get(section, {}))
        merged = {**stored, **values}
        if merged != stored:
            self._update(hyperparams={**hyperparams, section: merged})

    def _record_connected(self) -> None:
        """Record what changed in the objects connected here since they were connected
        (or last recorded); untouched values are left as they are stored."""
        for entry in self.__dict__.get("_connected", []):
            section, obj, snapshot = entry
            now = {n: to_stored(v) for n, (_, v) in params_of(obj).items()}
            changed = {n: v for n, v in now.items() if snapshot.get(n, _UNSET) != v}
            if changed:
                self._record_section(section, changed)
            entry[2] = now

    def get_parameters(
        self, backwards_compatibility: bool = True, cast: bool = False
    ) -> dict[str, Any]:
        """All hyperparameters as ``{"Section/name": value}``: text, as ClearML returns
        them (``str()`` of the value, ``""`` for None), or, with ``cast``, the values
        as stored (numbers, booleans, lists ...)."""
        return {
            f"{section}/{name}": value if cast else as_text(value)
            for section, values in self._fresh().hyperparams.items()
            for name, value in values.items()
        }

    def get_parameters_as_dict(self, cast: bool = False) -> dict[str, Any]:
        """All hyperparameters as ``{section: {name: value}}``, ``a/b`` names nested
        (text unless ``cast``, as :meth:`get_parameters`)."""
        return {
            section: nest({k: v if cast else as_text(v) for k, v in values.items()})
            for section, values in self._fresh().hyperparams.items()
        }

    def set_parameters(self, params: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Replace ALL hyperparameters (as ClearML does) with flat ``{"Section/name": v}``
        or nested ``{"Section": {"name": v}}`` ones; see :meth:`update_parameters`."""
        self._update(hyperparams=normalize({**(params or {}), **kwargs}))

    set_parameters_as_dict = set_parameters

    def update_parameters(self, params: dict[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Set the given hyperparameters, keeping the others."""
        hyperparams = self._fresh().hyperparams
        for section, values in normalize({**(params or {}), **kwargs}).items():
            hyperparams[section] = {**hyperparams.get(section, {}), **values}
        self._update(hyperparams=hyperparams)

    def set_parameter(self, name: str, value: Any, description: str | None = None) -> None:
        """Set one hyperparameter, ``"Section/name"`` (a bare name goes to ``General``)."""
        section, key = split_name(name)
        self.update_parameters({f"{section}/{key}": value})

    def get_parameter(self, name: str, default: Any = None, cast: bool = False) -> Any:
        """One hyperparameter by ``"Section/name"`` (a bare name: ``General``): text, or
        with ``cast`` the value as stored; ``default`` when there is none."""
        section, key = split_name(name)
        values = self._fresh().hyperparams.get(section, {})
        if key not in values:
            return default
        return values[key] if cast else as_text(values[key])

    def delete_parameter(self, name: str) -> bool:
        """Remove one hyperparameter; False when there was none."""
        section, key = split_name(name)
        hyperparams = self._fresh().hyperparams
        if key not in hyperparams.get(section, {}):
            return False
        del hyperparams[section][key]
        if not hyperparams[section]:
            del hyperparams[section]
        self._update(hyperparams=hyperparams)
        return True

    # -- configuration objects ----------------------------------------------------------
    def connect_configuration(
        self,
        configuration: dict[str, Any] | str | os.PathLike[str],
        name: str = DEFAULT_SECTION,
        description: str | None = None,
        ignore_remote_overrides: bool = False,
    ) -> Any:
        """Connect a configuration dict or file as ``task.configuration[name]`` (text).

        A dict is stored as JSON; a file path stores the file's text. Run by an agent,
        a stored configuration wins: a dict is updated in place to equal it, and for a
        file the stored text is written to a fresh local file whose path is returned.

        Returns:
            The dict itself, or the path to read the configuration from (same type as given).

        Raises:
            FileNotFoundError: the file does not exist (and nothing is stored to use).
            TypeError: neither a dict nor a path.
            ValueError: a stored configuration connected as a dict is not a JSON
                object (nor TOML).
        """
        if not isinstance(configuration, (dict, str, os.PathLike)):
            raise TypeError(
                "connect_configuration() takes a dict or a file path, "
                f"not {type(configuration).__name__}"
            )
        stored = self._fresh().configuration.get(name)
        use_stored = stored is not None and self._stored_values_win and not ignore_remote_overrides
        if isinstance(configuration, dict):
            if use_stored:
                parsed = parse_config(stored, name)
                configuration.clear()
                configuration.update(parsed)
            else:
                self.set_configuration_object(name, config_dict=configuration)
            return configuration
        path = Path(configuration)
        if use_stored:
            copy = write_config_copy(stored, path)
            return copy if isinstance(configuration, Path) else str(copy)
        if not path.is_file():
            raise FileNotFoundError(f"cannot connect configuration {name!r}: no file {str(path)!r}")
        self.set_configuration_object(name, config_text=path.read_text(encoding="utf-8"))
        return configuration

    def get_configuration_object(self, name: str) -> str | None:
        """The stored text of configuration ``name`` (None when there is none)."""
        return self._fresh().configuration.get(name)

    def get_configuration_object_as_dict(self, name: str) -> dict[str, Any] | None:
        """Configuration ``name`` parsed (JSON, else TOML); None when there is none."""
        text = self.get_configuration_object(name)
        return None if text is None else parse_config(text, name)

    def set_configuration_object(
        self,
        name: str,
        config_text: str | None = None,
        description: str | None = None,
        config_type: str | None = None,
        config_dict: dict[str, Any] | None = None,
    ) -> None:
        """Store configuration ``name`` from text, or from a dict (as JSON)."""
        if config_dict is not None:
            config_text = config_text_of(config_dict)
        if config_text is None:
            raise ValueError("set_configuration_object needs config_text or config_dict")
        configuration = self._fresh().configuration
        configuration[name] = str(config_text)
        self._update(configuration=configuration)
