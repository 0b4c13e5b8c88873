"""pipeline-agent: ClearML-style ML pipelines on your own machines.

The public SDK, under ClearML's names::

    from agent import Task, TaskTypes, Logger, StorageManager
    from agent import PipelineController, PipelineDecorator
    from agent import OutputModel, InputModel, Model, Dataset

Every name is imported on first use (PEP 562), so ``import agent`` stays light:
no store, HTTP client, numpy or pandas until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it.
_LAZY = {
    "Task": "agent.sdk.task",
    "TaskTypes": "agent.core.models",
    "Logger": "agent.sdk.logger",
    "StorageManager": "agent.files.storage_manager",
    "PipelineController": "agent.pipeline",
    "PipelineDecorator": "agent.pipeline",
    "Model": "agent.sdk.model",
    "InputModel": "agent.sdk.model",
    "OutputModel": "agent.sdk.model",
    "Dataset": "agent.datasets",
}

__all__ = [
    "Dataset",
    "InputModel",
    "Logger",
    "Model",
    "OutputModel",
    "PipelineController",
    "PipelineDecorator",
    "StorageManager",
    "Task",
    "TaskTypes",
    "__version__",
]

if TYPE_CHECKING:
    from agent.core.models import TaskTypes
    from agent.datasets import Dataset
    from agent.files.storage_manager import StorageManager
    from agent.pipeline import PipelineController, PipelineDecorator
    from agent.sdk.logger import Logger
    from agent.sdk.model import InputModel, Model, OutputModel
    from agent.sdk.task import Task


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
