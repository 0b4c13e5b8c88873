"""Base task of examples/pipeline_from_tasks.py: a noisy line, as an artifact."""

import random

from agent import Task

task = Task.init(project_name="examples", task_name="make dataset")
params = {"rows": 50, "slope": 2.0, "seed": 1}
task.connect(params)

rng = random.Random(int(params["seed"]))
points = [
    [x, float(params["slope"]) * x + 1.0 + rng.gauss(0, 0.1)] for x in range(int(params["rows"]))
]
task.upload_artifact("dataset", points)
print(f"made {len(points)} points")
