"""Property-based fuzzing of the live server's OpenAPI schema: no input may cause a 500.

Schemathesis generates valid and invalid requests for every operation (a bounded
number each); the only check is ``not_a_server_error``: bad input must be a 4xx.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from tests.server.live_server import LiveServer

EXAMPLES_PER_OPERATION = 20
#: Longest claim long-poll a generated request may ask for (the API allows 60 s).
CLAIM_WAIT_CAP_S = 0.05


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("schemathesis")
    with LiveServer(f"sqlite:///{workdir / 'agent.db'}", workdir) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(live_server: LiveServer):
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_no_request_makes_the_server_fail(case, live_server: LiveServer) -> None:
    if case.path == "/api/v1/queues/claim" and isinstance(case.body, dict):
        timeout = case.body.get("timeout")
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            case.body["timeout"] = min(timeout, CLAIM_WAIT_CAP_S)
    case.call_and_validate(base_url=live_server.url, checks=[not_a_server_error], timeout=30)
