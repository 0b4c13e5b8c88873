"""Property-based fuzzing of the live server against its own OpenAPI schema.

Schemathesis generates valid and invalid requests for every operation (a bounded
number each) and runs every check it has on each answer: no 5xx, only documented
status codes, content types and headers, answers that match their schema, invalid
input refused (4xx), valid input not refused with a 422.
``schemathesis run URL/openapi.json --checks all``, run from the repository (it reads
./schemathesis.toml), runs the same with more examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from agent.server.schemas import MAX_CLAIM_TIMEOUT_S
from tests.server.live_server import LiveServer

EXAMPLES_PER_OPERATION = 20
#: Every check there is. The stateful ones (use_after_free, ensure_resource_availability)
#: look at a chain of calls and pass on single ones; ignored_auth passes where the schema
#: declares no auth, as this server's does (its token is optional, the test runs without).
ALL_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.use_after_free,
    checks.ensure_resource_availability,
    checks.ignored_auth,
]
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
def test_the_server_does_what_its_schema_says(case, live_server: LiveServer) -> None:
    if case.path == "/api/v1/queues/claim" and isinstance(case.body, dict):
        timeout = case.body.get("timeout")
        # Shorten only a wait the server would take: one out of range must stay out of it.
        valid = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if valid and 0 <= timeout <= MAX_CLAIM_TIMEOUT_S:
            case.body["timeout"] = min(timeout, CLAIM_WAIT_CAP_S)
    case.call_and_validate(base_url=live_server.url, checks=ALL_CHECKS, timeout=30)


def test_the_cli_config_waits_out_the_claims_long_poll(api_schema) -> None:
    """``schemathesis run --checks all`` from the repository reads ./schemathesis.toml: the
    claim's longest long poll fits in its request timeout and response time limit (the
    default 10 s of both does not)."""
    path = Path(__file__).resolve().parents[2] / "schemathesis.toml"
    project = SchemathesisConfig.from_path(path).projects.get_default()
    claim = api_schema["/api/v1/queues/claim"]["POST"]
    assert project.request_timeout_for(operation=claim) > MAX_CLAIM_TIMEOUT_S
    limit = project.operations.get_for_operation(claim).checks.max_response_time.limit
    assert limit > MAX_CLAIM_TIMEOUT_S
    other = api_schema["/api/v1/queues"]["GET"]
    assert project.request_timeout_for(operation=other) is None  # the default elsewhere
