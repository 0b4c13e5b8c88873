"""``Task.init(auto_connect_arg_parser=True)``: what ``argparse`` parses is recorded in
hyperparameter section ``Args``, and under an agent the stored values win (ClearML's
behaviour), so ``agent clone ID --set Args/lr=0.01`` changes what ``parse_args()`` returns.

``ArgumentParser.parse_known_args`` (which ``parse_args`` calls) is wrapped once per
process, when ``Task.init`` runs or when the SDK is imported after ``argparse``. A parse
that happened before ``Task.init`` is remembered and connected when the task starts; its
namespace is updated in place, so the script sees the stored values either way.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from agent.sdk.task import Task

SECTION = "Args"

_state = threading.local()
_lock = threading.Lock()
_installed = False
#: (parser, namespace) of the last top-level parse, for a Task.init that comes later.
_last_parse: tuple[Any, Any] | None = None
#: The task whose run connects parses (set by Task.init), and what it leaves out.
_task: Task | None = None
_ignored: frozenset[str] = frozenset()


def install() -> None:
    """Wrap ``ArgumentParser.parse_known_args`` (once; importing argparse if needed)."""
    global _installed
    with _lock:
        if _installed:
            return
        import argparse

        original = argparse.ArgumentParser.parse_known_args

        def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
            depth = getattr(_state, "depth", 0)
            _state.depth = depth + 1  # sub-command parsers parse inside the top one
            try:
                result = original(self, args, namespace)
            finally:
                _state.depth = depth
            if depth == 0 and _called_from_user_code():
                _parsed(self, result[0])
            return result

        parse_known_args.__wrapped__ = original  # type: ignore[attr-defined]
        argparse.ArgumentParser.parse_known_args = parse_known_args  # type: ignore[method-assign]
        _installed = True


def _library_dirs() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(os.path.join(d, "") for d in dirs)


def _called_from_user_code() -> bool:
    """Whether the parse was asked for by the program's own code, not by a library (a
    test runner's or a framework's parser is not the script's command line)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.endswith(("argparse.py", __file__)):
        frame = frame.f_back
    if frame is None:
        return False
    return not os.path.abspath(frame.f_code.co_filename).startswith(_library_dirs())


def install_if_imported() -> None:
    """Wrap argparse now if the program already imported it (cheap otherwise)."""
    if "argparse" in sys.modules:
        install()


def connect_task(task: Task, setting: bool | dict[str, bool]) -> None:
    """Connect the parses of this process to ``task`` (``auto_connect_arg_parser``):
    True for every argument, a dict to leave some out (``{"seed": False}``), or False."""
    global _task, _ignored
    if setting is False or setting is None:
        return
    _ignored = (
        frozenset(k for k, v in setting.items() if not v)
        if isinstance(setting, dict)
        else frozenset()
    )
    if isinstance(setting, dict) and setting.get("*") is False:
        return
    install()
    _task = task
    if _last_parse is not None:
        _connect(task, *_last_parse)


def disconnect(task: Task) -> None:
    global _task
    if _task is task:
        _task = None


def _parsed(parser: argparse.ArgumentParser, namespace: Any) -> None:
    global _last_parse
    _last_parse = (parser, namespace)
    task = _task
    if task is not None:
        _connect(task, parser, namespace)


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's arguments that hold a value, by ``dest`` (sub-commands' too)."""
    import argparse

    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.update({k: v for k, v in _actions(sub).items() if k not in found})
            found.setdefault(action.dest, action)
        elif isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        elif action.dest and action.dest != argparse.SUPPRESS:
            found.setdefault(action.dest, action)
    return found


def _connect(task: Task, parser: argparse.ArgumentParser, namespace: Any) -> None:
    """Record the parsed values, or (run by an agent) write the stored ones into them."""
    from agent.sdk.parameters import to_stored

    actions = {k: v for k, v in _actions(parser).items() if k not in _ignored}
    values = {dest: getattr(namespace, dest) for dest in actions if hasattr(namespace, dest)}
    hyperparams = task._fresh().hyperparams
    stored = dict(hyperparams.get(SECTION) or {})
    if task._stored_values_win:
        for dest, value in stored.items():
            if dest in actions and hasattr(namespace, dest):
                setattr(namespace, dest, _cast(value, values.get(dest), actions[dest]))
        merged = {**{k: to_stored(v) for k, v in values.items()}, **stored}
    else:
        merged = {**stored, **{k: to_stored(v) for k, v in values.items()}}
    if merged != stored:
        task._update(hyperparams={**hyperparams, SECTION: merged})


def _cast(stored: Any, parsed: Any, action: argparse.Action) -> Any:
    """A stored value as the type the argument has (its ``type=``, else the parsed value's)."""
    from agent.sdk.parameters import cast_like

    convert = action.type if callable(action.type) else None
    if isinstance(stored, list) and convert is not None:
        return [convert(v) if isinstance(v, str) else v for v in stored]
    if isinstance(stored, str) and convert is not None and not _is_none(stored):
        if action.nargs in ("*", "+") or isinstance(action.nargs, int):
            import json

            try:
                items = json.loads(stored)
            except ValueError:
                items = stored.split()
            return [convert(v) if isinstance(v, str) else v for v in items]
        return convert(stored)
    if parsed is None and isinstance(action.const, bool):  # store_true/false with no default
        parsed = not action.const
    return cast_like(stored, parsed, f"{SECTION}/{action.dest}")


def _is_none(value: str) -> bool:
    return value.strip().lower() in ("", "none", "null")
