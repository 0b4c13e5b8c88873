"""Base task of examples/pipeline_from_tasks.py: least-squares line through the dataset."""

import json

from agent import StorageManager, Task

task = Task.init(project_name="examples", task_name="fit line")
params = {"dataset_url": ""}
task.connect(params)

with open(StorageManager.get_local_copy(params["dataset_url"])) as fh:
    points = json.load(fh)
n = len(points)
mean_x = sum(x for x, _ in points) / n
mean_y = sum(y for _, y in points) / n
slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum(
    (x - mean_x) ** 2 for x, _ in points
)
intercept = mean_y - slope * mean_x
task.get_logger().report_scalar("fit", "slope", slope, 0)
task.upload_artifact("model", {"slope": slope, "intercept": intercept})
print(f"slope={slope:.3f} intercept={intercept:.3f}")
