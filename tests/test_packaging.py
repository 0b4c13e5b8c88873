"""packaging/: the compose file is valid, and the Dockerfile builds an image whose `agent` runs.

The image test builds offline, as CI must: the base is the local debootstrap image made by
`.ci/services.sh` and every dependency comes from a wheelhouse built on this machine
(`packaging/build_wheel.sh --wheelhouse`), so the build runs with `--network none`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.services import BASE_IMAGE, REPO_ROOT, docker_available, docker_image_present, require

PACKAGING = REPO_ROOT / "packaging"
COMPOSE_FILE = PACKAGING / "docker-compose.yml"
COMPOSE_ENV = {"AGENT_API_TOKEN": "test-token", "POSTGRES_PASSWORD": "secret"}


def compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin), else ``docker-compose`` (v1, what Debian ships)."""
    if shutil.which("docker") is not None:
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, enough for our file."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name, "")
        if op == ":?" and not current:
            raise KeyError(f"{name} must be set: {arg}")
        if op == ":-" and not current:
            return arg
        return current

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", value, text)


def load_compose() -> dict:
    import yaml

    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), COMPOSE_ENV))


def test_compose_file_is_valid_for_docker_compose() -> None:
    command = compose_command()
    require("docker compose (or docker-compose)", command is not None)
    # The build context is the wheelhouse that packaging/build_wheel.sh fills.
    (REPO_ROOT / "dist").mkdir(exist_ok=True)
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **COMPOSE_ENV},
    )
    assert result.returncode == 0, result.stderr


def test_compose_file_runs_postgres_server_and_two_agents() -> None:
    services = load_compose()["services"]

    assert set(services) == {"postgres", "server", "agent-default", "agent-services"}
    server = " ".join(services["server"]["command"])
    assert "server --host 0.0.0.0" in server
    assert "--db postgresql+psycopg://agent:secret@postgres:5432/agent" in server
    assert services["server"]["environment"]["AGENT_API_TOKEN"] == "test-token"
    assert services["agent-default"]["command"][:3] == ["daemon", "--queue", "default"]
    assert "--services-mode" in services["agent-services"]["command"]
    for name in ("agent-default", "agent-services"):
        env = services[name]["environment"]
        assert env["AGENT_API_URL"] == "http://server:8008"
        assert env["AGENT_API_TOKEN"] == "test-token"


def test_compose_services_have_healthchecks_and_wait_for_healthy_dependencies() -> None:
    services = load_compose()["services"]

    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services
            assert condition == {"condition": "service_healthy"}


def test_compose_file_insists_on_a_token() -> None:
    with pytest.raises(KeyError, match="AGENT_API_TOKEN"):
        interpolate(COMPOSE_FILE.read_text(), {})


@pytest.fixture
def wheel_dir(tmp_path: Path) -> Path:
    """dist-like build context: the project wheel plus a wheelhouse of its dependencies."""
    out = tmp_path / "dist"
    result = subprocess.run(
        ["bash", str(PACKAGING / "build_wheel.sh"), "--out", str(out), "--wheelhouse"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_dockerfile_builds_offline_on_the_local_base_image(wheel_dir: Path) -> None:
    require("Docker", docker_available())
    require(f"Docker image {BASE_IMAGE}", docker_image_present(BASE_IMAGE))
    tag = f"pipeline-agent-test:{uuid.uuid4().hex[:12]}"
    build = [
        "docker", "build", "--quiet", "--network", "none",
        "--file", str(PACKAGING / "Dockerfile"),
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
        "--build-arg", "PIP_INSTALL_ARGS=--no-index",
        "--tag", tag, str(wheel_dir),
    ]  # fmt: skip
    # The classic builder: BuildKit needs the buildx plugin, which a plain docker.io lacks.
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    try:
        built = subprocess.run(
            build, capture_output=True, text=True, timeout=1200, check=False, env=env
        )
        assert built.returncode == 0, built.stdout + built.stderr

        ran = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", tag, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "daemon" in ran.stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False)
