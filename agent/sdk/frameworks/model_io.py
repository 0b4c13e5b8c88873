"""Models saved by the usual libraries are registered on the current task, as ClearML's
framework bindings do: ``joblib.dump(model, path)``, ``torch.save(obj, path)`` and
``pickle.dump(obj, file)`` to a file on disk become (or update) an output model named
"{task name} - {file stem}", with the file as its weights.

A save inside the agent's own code or the saving library's own (joblib's caches), a
``pickle.dump`` from any installed library (pandas' ``to_pickle``), a save to a file in
memory, or one with no current task is left alone; a failure to register is logged and never reaches the user's code.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

from agent.sdk.frameworks.hooks import when_imported

_log = logging.getLogger("agent.sdk")
_lock = threading.Lock()
_models: dict[tuple[str, str], Any] = {}  # (task id, file path) -> OutputModel
_patched: set[str] = set()
_inside = threading.local()  # a save calling another (joblib pickles): register once


def install_joblib() -> None:
    when_imported("joblib", lambda m: _patch(m, "dump", "ScikitLearn", _path_argument))


def install_torch() -> None:
    when_imported("torch", lambda m: _patch(m, "save", "PyTorch", _path_argument))


def install_pickle() -> None:
    # pickle.dump serves every library (pandas' to_pickle, caches, ...): only the user's
    # own calls save models
    when_imported(
        "pickle", lambda m: _patch(m, "dump", "Pickle", _file_argument, user_code_only=True)
    )


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


def _saved_by_user(frame: Any, library: str, user_code_only: bool) -> bool:
    """Whether the save at ``frame`` is the user's: not the agent's, not the saving
    library's own (joblib's caches call joblib.dump), and, for ``user_code_only``, not any
    installed library's or the standard library's."""
    caller = str(frame.f_globals.get("__name__", ""))
    if caller.startswith("agent.") or caller.split(".")[0] == library:
        return False
    if not user_code_only:
        return True
    filename = os.path.realpath(frame.f_code.co_filename)
    return not filename.startswith(_library_dirs())


def _patch(
    module: Any, name: str, framework: str, where: Any, user_code_only: bool = False
) -> None:
    key = f"{module.__name__}.{name}"
    with _lock:
        if key in _patched:
            return
        _patched.add(key)
    original = getattr(module, name)

    @functools.wraps(original)
    def saving(obj: Any, target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "active", False):
            return original(obj, target, *args, **kwargs)
        _inside.active = True
        try:
            result = original(obj, target, *args, **kwargs)
        finally:
            _inside.active = False
        if _saved_by_user(sys._getframe(1), module.__name__.split(".")[0], user_code_only):
            path = where(target)
            if path is not None:
                register_saved_model(path, framework)
        return result

    setattr(module, name, saving)


def _path_argument(target: Any) -> Path | None:
    if isinstance(target, (str, os.PathLike)):
        return Path(target)
    return _file_argument(target)


def _file_argument(target: Any) -> Path | None:
    name = getattr(target, "name", None)
    if not isinstance(name, str) or not hasattr(target, "flush"):
        return None
    try:
        target.flush()
    except (OSError, ValueError):
        return None
    return Path(name)


def register_saved_model(path: Path, framework: str) -> Any:
    """Register (or update) the output model of the current task saved at ``path``."""
    from agent.sdk.model import OutputModel
    from agent.sdk.task import Task

    try:
        task = Task.current_task()
        path = path.resolve()
        if task is None or not path.is_file():
            return None
        key = (task.id, str(path))
        with _lock:
            model = _models.get(key)
        if model is None:
            model = OutputModel(task=task, name=f"{task.name} - {path.stem}", framework=framework)
            with _lock:
                _models[key] = model
        model.update_weights(path, auto_delete_file=False)
        return model
    except Exception:  # the user's save worked; only the registration failed
        _log.warning("could not register the model saved at %s", path, exc_info=True)
        return None
