"""A fleet on four hosts (network namespaces, see :mod:`tests.fleet.netns`):

- ``server``: ``agent server`` on PostgreSQL (reached through a unix socket relay: no
  other host reaches the database), moto's S3 server, and a services-mode daemon that
  runs the pipeline controllers;
- ``agent-a``, ``agent-b``: ``agent daemon --slots 2`` on the bare node, each with an
  AGENT_HOME of its own, reaching the server only over the network;
- ``client``: where pipelines are launched, with the test process's Python.

The test itself looks at the store through PostgreSQL, from the root namespace.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from agent.store.base import Backend
from agent.store.factory import backend_for_url
from tests.bare_node import bare_python
from tests.fleet.netns import Host, Network, UnixSocketRelay, netns_support
from tests.pipeline.support import Daemon, wait_for
from tests.services import agent_env, pg_database_while, require

TOKEN = "fleet-token"
BUCKET = "fleet"
SERVER_PORT = 8008
MOTO_PORT = 5000
#: Short leases: a killed agent's tasks are lost within seconds.
LEASE_S = "3"
MAKE_BUCKET = """
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1]).create_bucket(Bucket=sys.argv[2])
"""
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class Fleet:
    """The hosts, their daemons and the store (see the module doc)."""

    network: Network
    store: Backend
    server: Host
    client: Host
    agents: dict[str, Host]
    daemons: dict[str, Daemon]
    env: dict[str, str]
    homes: Path
    logs: list[Path] = field(default_factory=list)

    def client_env(self) -> dict[str, str]:
        return agent_env(self.homes / "client", **self.env)

    def log_tails(self) -> str:
        paths = [*self.logs, *(d.log_path for d in self.daemons.values())]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in paths)


@pytest.fixture(scope="module")
def fleet_homes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hosts' AGENT_HOMEs, kept for the module: their venvs stay warm between tests."""
    why = netns_support()
    require(f"network namespaces ({why})", why is None)
    moto = importlib.util.find_spec("moto") and importlib.util.find_spec("flask")
    require("moto[server] (pip install 'moto[server]')", bool(moto))
    bare_python()  # built once, before any clock runs
    return tmp_path_factory.mktemp("fleet")


@pytest.fixture
def network() -> Iterator[Network]:
    network = Network()
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def fleet_db() -> Iterator[str]:
    """A fresh PostgreSQL database for this test."""
    with pg_database_while() as url:
        yield url


def _relayed(db_url: str, relay: UnixSocketRelay) -> str:
    """``db_url`` reached through ``relay``'s unix socket."""
    url = make_url(db_url).set(host=None, port=None, query={"host": str(relay.directory)})
    return url.render_as_string(hide_password=False)


def _start_server(host: Host, home: Path, db_url: str, files: str, env: dict[str, str]) -> Path:
    argv = [sys.executable, "-m", "agent.server", "--host", host.address,
            "--port", str(SERVER_PORT), "--db", db_url, "--files", files]  # fmt: skip
    log = home / "server.log"
    host.start(argv, agent_env(home, **env), log)
    host.wait_http(f"http://{host.address}:{SERVER_PORT}/api/v1/health")
    return log


def _start_moto(host: Host, home: Path) -> Path:
    argv = [sys.executable, "-m", "moto.server", "-H", host.address, "-p", str(MOTO_PORT)]
    log = home / "moto.log"
    host.start(argv, agent_env(home), log)
    host.wait_http(f"http://{host.address}:{MOTO_PORT}/moto-api/")
    endpoint = f"http://{host.address}:{MOTO_PORT}"
    made = host.run(
        [sys.executable, "-c", MAKE_BUCKET, endpoint, BUCKET], env=agent_env(home, **AWS)
    )
    assert made.returncode == 0, made.stderr
    return log


@pytest.fixture(params=["s3", "server"])
def fleet(
    request: pytest.FixtureRequest, fleet_homes: Path, network: Network, fleet_db: str
) -> Iterator[Fleet]:
    """The fleet, with artifacts on S3 (moto on the server host) or on the server."""
    server, agent_a, agent_b, client = (
        network.add_host(name) for name in ("server", "agent-a", "agent-b", "client")
    )
    homes = fleet_homes / request.param
    for host in network.hosts:
        (homes / host.name).mkdir(parents=True, exist_ok=True)
    api_url = f"http://{server.address}:{SERVER_PORT}"
    env = {"AGENT_API_URL": api_url, "AGENT_API_TOKEN": TOKEN, **AWS}
    logs = []
    if request.param == "s3":
        logs.append(_start_moto(server, homes / "server"))
        env["AGENT_S3_ENDPOINT_URL"] = f"http://{server.address}:{MOTO_PORT}"
        env["AGENT_FILES_URL"] = files = f"s3://{BUCKET}/artifacts"
    else:
        env["AGENT_FILES_URL"] = api_url
        files = str(homes / "server" / "files")
    pg = make_url(fleet_db)
    relay = UnixSocketRelay(homes / "pg-relay", (pg.host, pg.port or 5432)).start()
    try:
        logs.append(_start_server(server, homes / "server", _relayed(fleet_db, relay), files, env))
        daemons = {
            "services": Daemon(homes / "server", "--queue", "services", "--services-mode", "2",
                               "--worker-id", "services", env=env, prefix=server.command([])),
        }  # fmt: skip
        for host in (agent_a, agent_b):
            daemons[host.name] = Daemon(
                homes / host.name, "--queue", "default", "--slots", "2", "--lease", LEASE_S,
                "--worker-id", host.name, env=env, prefix=host.command([]),
            )  # fmt: skip
        for daemon in daemons.values():
            daemon.start()
        wait_for(lambda: all("serving" in d.log() for d in daemons.values()), 60, "daemons")
        store = backend_for_url(fleet_db)
        yield Fleet(network, store, server, client, {h.name: h for h in (agent_a, agent_b)},
                    daemons, env, homes, logs)  # fmt: skip
    finally:
        network.close()
        relay.stop()
