"""The Task SDK: what user scripts and pipeline steps import (ClearML's names).

``Task`` (:mod:`agent.sdk.task`), ``Logger`` (:mod:`agent.sdk.logger`) and
``ArtifactView`` (:mod:`agent.sdk.artifacts`). Importing this package does not
touch the store: it is opened on first use.
"""

from agent.core.models import TaskTypes
from agent.sdk.artifacts import ArtifactView
from agent.sdk.definition import TaskNotFound
from agent.sdk.logger import Logger
from agent.sdk.task import Task

__all__ = ["ArtifactView", "Logger", "Task", "TaskNotFound", "TaskTypes"]
