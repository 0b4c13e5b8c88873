"""A PipelineController over existing tasks (ClearML's "pipelines from tasks").

The base tasks are made first with ``Task.create`` from the scripts in ``tasks/``; each
step clones one, overrides its parameters (``${...}`` references to the pipeline's
arguments and to other steps' artifacts) and runs the clone.

Run it::

    python examples/pipeline_from_tasks.py --local   # controller and steps here
    python examples/pipeline_from_tasks.py           # controller on the services queue,
                                                     # steps on "default" (needs agents)
"""

import sys
from pathlib import Path

from agent import Task
from agent.automation.controller import PipelineController

PROJECT = "examples"
TASKS = Path(__file__).resolve().parent / "tasks"
BASE_TASKS = {
    "make dataset": "make_dataset.py",
    "fit line": "fit_line.py",
    "evaluate": "evaluate.py",
}


def create_base_tasks() -> None:
    """Store the three scripts as tasks (their code inline, so no checkout is needed)."""
    for name, script in BASE_TASKS.items():
        Task.create(
            project_name=PROJECT,
            task_name=name,
            script=str(TASKS / script),
            detect_repository=False,
        )


def build_pipeline() -> PipelineController:
    pipe = PipelineController(name="line fit from tasks", project=PROJECT, version="1.0")
    pipe.set_default_execution_queue("default")
    pipe.add_parameter("rows", 50, "how many points to make")
    pipe.add_parameter("slope", 2.0, "slope of the true line")
    pipe.add_step(
        name="make_dataset",
        base_task_project=PROJECT,
        base_task_name="make dataset",
        parameter_override={
            "General/rows": "${pipeline.rows}",
            "General/slope": "${pipeline.slope}",
        },
        cache_executed_step=True,
    )
    pipe.add_step(
        name="fit_line",
        base_task_project=PROJECT,
        base_task_name="fit line",
        parameter_override={"General/dataset_url": "${make_dataset.artifacts.dataset.url}"},
        monitor_metrics=[("fit", "slope")],
        cache_executed_step=True,
    )
    pipe.add_step(
        name="evaluate",
        base_task_project=PROJECT,
        base_task_name="evaluate",
        parameter_override={
            "General/dataset_url": "${make_dataset.artifacts.dataset.url}",
            "General/model_url": "${fit_line.artifacts.model.url}",
        },
        monitor_metrics=[("evaluation", "mse")],
        monitor_artifacts=["mse"],
    )
    return pipe


if __name__ == "__main__":
    if Task.running_locally():  # run by an agent, the base tasks exist already
        create_base_tasks()
    pipeline = build_pipeline()
    if "--local" in sys.argv:
        pipeline.start_locally(run_pipeline_steps_locally=True)
    else:
        pipeline.start(queue="services")
    print("pipeline", pipeline.id, "succeeded" if pipeline.is_successful() else "failed")
