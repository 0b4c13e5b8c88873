from tests.sdk.conftest import agent_home, backend, run_script  # noqa: F401
