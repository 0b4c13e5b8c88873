"""The unit files in systemd/ pass `systemd-analyze verify` and say what the design asks."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import REPO_ROOT, require

UNIT_DIR = REPO_ROOT / "systemd"
UNITS = ["agent-server.service", "agent-daemon@.service", "agent-services.service"]
INSTALLED_AGENT = "/usr/local/bin/agent"


def read_unit(name: str) -> configparser.ConfigParser:
    # strict=False: systemd allows repeated keys (Environment=, ...); the last one wins here.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case sensitive
    parser.read(UNIT_DIR / name)
    return parser


def agent_executable() -> str:
    """An executable that exists here, to stand in for /usr/local/bin/agent."""
    found = shutil.which("agent") or str(Path(sys.executable).with_name("agent"))
    return found if Path(found).is_file() else sys.executable


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_the_agent_as_a_dedicated_user(name: str) -> None:
    service = read_unit(name)["Service"]
    assert service["ExecStart"].startswith(f"{INSTALLED_AGENT} ")
    assert service["User"] == "agent"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "-/etc/pipeline-agent/agent.env"


def test_daemon_template_serves_the_instance_queue_with_a_warm_stop() -> None:
    service = read_unit("agent-daemon@.service")["Service"]
    assert "daemon --queue %i --foreground" in service["ExecStart"]
    assert service["KillMode"] == "mixed"
    assert service["KillSignal"] == "SIGTERM"
    assert service["TimeoutStopSec"] == "1h"


def test_services_unit_runs_services_mode_with_a_warm_stop() -> None:
    service = read_unit("agent-services.service")["Service"]
    assert "daemon --queue services --services-mode 8 --foreground" in service["ExecStart"]
    assert service["KillMode"] == "mixed"
    assert service["TimeoutStopSec"] == "1h"


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require("systemd-analyze", analyze is not None)
    executable = agent_executable()
    paths = []
    for name in UNITS:
        text = (UNIT_DIR / name).read_text().replace(INSTALLED_AGENT, executable)
        # A template is verified through an instance of it.
        target = tmp_path / name.replace("@.", "@default.")
        target.write_text(text)
        paths.append(str(target))

    result = subprocess.run(
        [analyze, "verify", "--man=no", *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    output = result.stdout + result.stderr
    # Complaints about system units our units pull in are not ours to fix; any about ours are.
    ours = [line for line in output.splitlines() if "agent-" in line or str(tmp_path) in line]
    assert result.returncode == 0, output
    assert ours == [], "\n".join(ours)
