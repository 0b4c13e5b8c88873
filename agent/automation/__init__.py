"""ClearML's import paths: ``from agent.automation import PipelineController`` and
``from agent.automation.controller import PipelineDecorator``."""

from agent.pipeline import PipelineController, PipelineDecorator, RetryPolicy

__all__ = ["PipelineController", "PipelineDecorator", "RetryPolicy"]
