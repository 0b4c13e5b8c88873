"""The services-mode tests use the daemon tests' fixtures (temp AGENT_HOME, store, daemons)."""

from tests.daemon.conftest import home, start_daemon, store  # noqa: F401
