"""Pipelines: DAG engine, controller, decorator + proxies, cache keys, ``${...}`` references.

``PipelineController`` builds a pipeline from steps (existing tasks or functions);
``PipelineDecorator`` from decorated functions. Both run on
:class:`~agent.pipeline.engine.PipelineRun` with one of three launchers (in process,
local processes, queues).

Names are imported on first use (PEP 562): a step process that only needs
:mod:`agent.pipeline.step_runtime` does not load the controller and the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "PipelineController": "agent.pipeline.controller",
    "PipelineDecorator": "agent.pipeline.decorator",
    "PipelineDefinitionError": "agent.pipeline.errors",
    "PipelineError": "agent.pipeline.errors",
    "StepFailedError": "agent.pipeline.errors",
    "RetryPolicy": "agent.pipeline.steps",
}

__all__ = [
    "PipelineController",
    "PipelineDecorator",
    "PipelineDefinitionError",
    "PipelineError",
    "RetryPolicy",
    "StepFailedError",
]

if TYPE_CHECKING:
    from agent.pipeline.controller import PipelineController
    from agent.pipeline.decorator import PipelineDecorator
    from agent.pipeline.errors import PipelineDefinitionError, PipelineError, StepFailedError
    from agent.pipeline.steps import RetryPolicy


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
