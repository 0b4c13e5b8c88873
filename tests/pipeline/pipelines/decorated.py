"""Steps wrapped in the user's own decorators, run in every mode (mode from PIPELINE_MODE).

``doubled`` is a component under two decorators of this file (one with an argument); the
controller's ``shifted`` function step gets a decorator applied by a call. Each
decorator uses module-level imports (``functools``, ``time``), which must travel too.
"""

import functools
import os
import sys
import time

from agent.automation.controller import PipelineDecorator
from agent.pipeline import PipelineController


def timed(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        start = time.monotonic()
        result = func(*args, **kwargs)
        print(f"{func.__name__} took {time.monotonic() - start:.3f} s")
        return result

    return wrapper


def times(factor):
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return factor * func(*args, **kwargs)

        return wrapper

    return decorate


@PipelineDecorator.component(return_values=["value"])
@timed
@times(3)
def doubled(x: int = 1):
    return x + 1


@PipelineDecorator.pipeline(name="decorated", project="tests", version="1", return_value="r")
def decorated(x: int = 1):
    return doubled(x)


def shifted(x: int = 1):
    return x + 10


def run_controller(mode: str) -> None:
    pipe = PipelineController(name="decorated-ctl", project="tests", version="1")
    pipe.add_function_step("shifted", timed(shifted), function_kwargs={"x": 5},
                           function_return=["value"], monitor_artifacts=["value"])  # fmt: skip
    if mode == "local":
        pipe.start_locally(run_pipeline_steps_locally=True)
    else:
        pipe.start()  # the controller on the services queue
    print("controller", pipe.is_successful())


if __name__ == "__main__":
    mode = os.environ.get("PIPELINE_MODE", "remote")
    if mode == "debug":
        PipelineDecorator.debug_pipeline()
    elif mode == "local":
        PipelineDecorator.run_locally()
    if "controller" in sys.argv[1:]:  # argv is passed again to a controller run by an agent
        run_controller(mode)
    else:
        decorated()
