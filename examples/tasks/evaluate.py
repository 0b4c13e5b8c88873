"""Base task of examples/pipeline_from_tasks.py: mean squared error of the fitted line."""

import json

from agent import StorageManager, Task

task = Task.init(project_name="examples", task_name="evaluate")
params = {"dataset_url": "", "model_url": ""}
task.connect(params)

with open(StorageManager.get_local_copy(params["dataset_url"])) as fh:
    points = json.load(fh)
with open(StorageManager.get_local_copy(params["model_url"])) as fh:
    model = json.load(fh)
mse = sum((y - (model["slope"] * x + model["intercept"])) ** 2 for x, y in points) / len(points)
task.get_logger().report_scalar("evaluation", "mse", mse, 0)
task.upload_artifact("mse", mse)
print(f"mse={mse:.5f}")
