"""Automatic framework logging (ClearML's ``auto_connect_frameworks``).

``connect(spec)`` installs the bindings that ``spec`` allows: True (all), False (none), or
ClearML's dict, where a missing key means True and an empty dict means False. A binding
patches its library when the library is imported (:func:`hooks.when_imported`), never
importing it itself, and reports to ``Task.current_task()`` at the time of the call, so
it serves ``Task.init`` scripts and pipeline steps alike.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

_log = logging.getLogger("agent.sdk")

#: Framework key (ClearML's) -> module whose ``install()`` binds it.
BINDINGS: dict[str, str] = {
    "joblib": "agent.sdk.frameworks.model_io:install_joblib",
    "pickle": "agent.sdk.frameworks.model_io:install_pickle",
    "pytorch": "agent.sdk.frameworks.model_io:install_torch",
    "matplotlib": "agent.sdk.frameworks.reporting:install_matplotlib",
    "tensorboard": "agent.sdk.frameworks.reporting:install_tensorboard",
}


def should_connect(spec: Any, *keys: str) -> bool:
    """ClearML's reading of ``auto_connect_frameworks`` for ``keys`` (nested dicts)."""
    value = spec
    for key in keys:
        if not isinstance(value, dict):
            return bool(value)
        if value == {}:
            return False
        value = value.get(key, True)
    return bool(value)


def connect(spec: Any = True) -> list[str]:
    """Install the bindings ``spec`` allows (each once per process); their keys."""
    installed = []
    for key, target in BINDINGS.items():
        if key == "joblib" and not should_connect(spec, "scikit"):
            continue
        if not should_connect(spec, key):
            continue
        module_name, _, function = target.partition(":")
        try:
            getattr(importlib.import_module(module_name), function)()
            installed.append(key)
        except Exception:  # a binding must never break the user's script
            _log.warning("cannot bind %s for automatic logging", key, exc_info=True)
    return installed
