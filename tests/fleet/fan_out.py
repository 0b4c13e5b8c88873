"""200 steps for a fleet: a seed, 196 squares that each read it, two partial sums over
half of the squares each, and a total over the partial sums (1 + 196 + 2 + 1).

Every attempt of a step records, in the step's runtime, where it ran (its host's
address) and when: key ``attempt HOST PID``, value ``{"start": t, "end": t}``, written
through the server as the attempt starts and again as its work ends. An attempt killed
with its agent keeps no end. Each output names the host that made it; the attempt's record
names the hosts that made the outputs it read (``read``).

Stdlib only. ``python fan_out.py RUN PAUSE`` enqueues the controller (remote mode) and
exits; PAUSE is how long each square sleeps.
"""

import sys

from agent.automation.controller import PipelineDecorator

SQUARES = 196


def host_address():
    """This host's address: the one it reaches the server from."""
    import os
    import socket
    from urllib.parse import urlsplit

    server = urlsplit(os.environ["AGENT_API_URL"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server.hostname, server.port))
        return sock.getsockname()[0]


def record_attempt(start, end=None, read=()):
    """Write this attempt's start (and end, and the hosts that made what it read) into the
    step's runtime, now."""
    import os

    from agent.store.factory import get_backend

    key = f"attempt {host_address()} {os.getpid()}"
    value = {"start": start, "end": end, "read": sorted(set(read))}
    get_backend().merge_runtime(os.environ["AGENT_TASK_ID"], {key: value})


HELPERS = [host_address, record_attempt]


@PipelineDecorator.component(
    return_values=["seed"], cache=False, packages=[], helper_functions=HELPERS
)
def seed(run):
    import time

    start = time.time()
    record_attempt(start)
    made = {"run": run, "host": host_address()}
    record_attempt(start, time.time())
    return made


@PipelineDecorator.component(
    return_values=["square"], cache=False, packages=[], helper_functions=HELPERS
)
def square(seed, i, pause):
    import time

    start = time.time()
    record_attempt(start)
    time.sleep(pause)
    made = {"i": i, "value": i * i, "host": host_address()}
    record_attempt(start, time.time(), read=[seed["host"]])
    return made


@PipelineDecorator.component(
    return_values=["total"], cache=False, packages=[], helper_functions=HELPERS
)
def add_up(parts):
    import time

    start = time.time()
    record_attempt(start)
    made = {"value": sum(p["value"] for p in parts), "host": host_address()}
    record_attempt(start, time.time(), read=[p["host"] for p in parts])
    return made


@PipelineDecorator.pipeline(
    name="fan out", project="fleet", version="1", default_queue="default", retry_on_failure=2
)
def fan_out(run: str = "", pause: float = 0.0):
    first = seed(run)
    squares = [square(first, i, pause) for i in range(SQUARES)]
    half = SQUARES // 2
    total = add_up([add_up(squares[:half]), add_up(squares[half:])])
    print(f"total={total['value']}")


if __name__ == "__main__":
    fan_out(run=sys.argv[1], pause=float(sys.argv[2]))
