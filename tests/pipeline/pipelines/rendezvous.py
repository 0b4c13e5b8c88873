"""Two steps that each wait for a file the other writes: they only finish if they run
at the same time. The directory comes from the pipeline argument ``where``."""

import os

from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(return_values=["seen"])
def ping(where: str):
    import os
    import time

    open(os.path.join(where, "ping"), "w").close()
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(where, "pong")):
        if time.time() > deadline:
            raise TimeoutError("pong never came: the steps did not run at the same time")
        time.sleep(0.02)
    return "ping saw pong"


@PipelineDecorator.component(return_values=["seen"])
def pong(where: str):
    import os
    import time

    open(os.path.join(where, "pong"), "w").close()
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(where, "ping")):
        if time.time() > deadline:
            raise TimeoutError("ping never came: the steps did not run at the same time")
        time.sleep(0.02)
    return "pong saw ping"


@PipelineDecorator.component(return_values=["both"])
def join(a, b):
    return [a, b]


@PipelineDecorator.pipeline(
    name="rendezvous", project="tests", version="1.0", return_value="both", default_queue="default"
)
def rendezvous(where: str = "/tmp"):
    a = ping(where)
    b = pong(where)
    return join(a, b)


if __name__ == "__main__":
    if os.environ.get("PIPELINE_MODE") == "local":
        PipelineDecorator.run_locally()
    rendezvous()
