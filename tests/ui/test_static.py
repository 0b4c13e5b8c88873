"""The UI ships inside the package: templates and vendored JS (with licences) are found
through importlib.resources, and a wheel built from the tree holds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tests.services import REPO_ROOT

VENDORED = {
    "htmx": ["htmx.min.js", "LICENSE"],
    "dagre": ["dagre.min.js", "LICENSE"],
    "uplot": ["uPlot.iife.min.js", "uPlot.min.css", "LICENSE"],
    "plotly": ["plotly.min.js", "LICENSE"],
}
OWN = ["static/ui.js", "static/ui.css", "static/vendor/README.md", "templates/base.html"]


def test_static_files_and_templates_are_package_resources():
    root = resources.files("agent.ui")
    for library, names in VENDORED.items():
        for name in names:
            resource = root / "static" / "vendor" / library / name
            assert resource.is_file(), f"{library}/{name} is missing"
            assert resource.read_bytes(), f"{library}/{name} is empty"
    for path in OWN:
        assert (root / path).is_file(), path


@pytest.mark.slow
def test_the_wheel_holds_the_ui(tmp_path: Path):
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for package in ("agent", "services_mode"):
        shutil.copytree(
            REPO_ROOT / package, source / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )  # fmt: skip
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = tmp_path.glob("pipeline_agent-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for library, files in VENDORED.items():
        for name in files:
            assert f"agent/ui/static/vendor/{library}/{name}" in names
    for path in OWN:
        assert f"agent/ui/{path}" in names
