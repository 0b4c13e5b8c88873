"""A small pipeline run in every mode by the tests (mode from PIPELINE_MODE).

make_numbers -> split_half -> total; make_numbers imports `sibling`, a module that sits
next to this file, so every mode must make it importable.
"""

import os

from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["numbers"], cache=True)
def make_numbers(count: int = 4):
    import sibling

    return sibling.squares(count)


@PipelineDecorator.component(return_values=["left, right"], cache=True)
def split_half(numbers):
    half = len(numbers) // 2
    return numbers[:half], numbers[half:]


@PipelineDecorator.component(return_values=["total"], cache=True)
def total(left, right, scale: int = 1):
    return (sum(left) + sum(right)) * scale


@PipelineDecorator.pipeline(
    name="basic", project="tests", version="1.0", return_value="result", default_queue="default"
)
def basic(count: int = 4, scale: int = 2):
    numbers = make_numbers(count)
    left, right = split_half(numbers)
    result = total(left, right, scale=scale)
    print(f"result={result}")
    return result


if __name__ == "__main__":
    mode = os.environ.get("PIPELINE_MODE", "remote")
    if mode == "debug":
        PipelineDecorator.debug_pipeline()
    elif mode == "local":
        PipelineDecorator.run_locally()
    basic()
