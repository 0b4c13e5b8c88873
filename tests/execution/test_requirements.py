"""Requirement detection from imports and requirements files."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from agent.execution.requirements import (
    detect_requirements,
    detect_script_requirements,
    distribution_name,
    environment_freeze,
    imported_modules,
    read_pyproject_requirements,
    read_requirements_file,
    repository_requirements,
)

SOURCE = """
import os, json
import psutil
from sqlalchemy.orm import Session
from . import sibling
import agent
from services_mode import host
import not_installed_anywhere_xyz

def step():
    import click
    return click
"""


def test_detects_installed_third_party_imports_pinned_and_others_by_name() -> None:
    version = importlib.metadata.version
    assert detect_requirements(SOURCE) == [
        f"click=={version('click')}",
        "not_installed_anywhere_xyz",  # not installed here: recorded by its name
        f"psutil=={version('psutil')}",
        f"SQLAlchemy=={version('SQLAlchemy')}",
    ]


def test_modules_that_are_not_installed_are_recorded_by_their_distribution_name() -> None:
    source = "import sklearn\nimport cv2\nfrom PIL import Image\nimport yaml\nimport skimage.io\n"
    found = detect_requirements(source)
    names = {line.split("==")[0].lower() for line in found}
    # sklearn, PIL and yaml are installed here (pinned); cv2 and skimage are not
    assert names == {"scikit-learn", "opencv-python", "pillow", "pyyaml", "scikit-image"}
    assert f"scikit-learn=={importlib.metadata.version('scikit-learn')}" in found
    assert "opencv-python" in found and "scikit-image" in found
    assert distribution_name("sklearn") == "scikit-learn"
    assert distribution_name("cv2") == "opencv-python"
    assert distribution_name("PIL") == "pillow"
    assert distribution_name("yaml") == "pyyaml"


def test_optional_imports_count_only_when_installed() -> None:
    source = (
        "try:\n    import ujson_not_here as json\nexcept ImportError:\n    import json\n"
        "try:\n    import psutil\nexcept (ImportError, OSError):\n    psutil = None\n"
        "try:\n    import must_have_xyz\nfinally:\n    pass\n"
    )
    found = detect_requirements(source)
    assert found == ["must_have_xyz", f"psutil=={importlib.metadata.version('psutil')}"]


def test_local_modules_are_followed_not_recorded(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import helpers\nfrom lib.models import net\n")
    (tmp_path / "helpers.py").write_text("import psutil\n")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "models.py").write_text("def net():\n    import click\n")
    found = detect_script_requirements(tmp_path / "train.py")
    version = importlib.metadata.version
    assert found == [f"click=={version('click')}", f"psutil=={version('psutil')}"]


def test_repository_requirements_file_then_pyproject(tmp_path: Path) -> None:
    assert repository_requirements(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert repository_requirements(tmp_path) is None  # declares no dependencies
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["numpy>=1.26", "pandas"]\n'
    )
    assert repository_requirements(tmp_path) == (["numpy>=1.26", "pandas"], "pyproject.toml")
    (tmp_path / "requirements.txt").write_text("torch==2.1\n")
    assert repository_requirements(tmp_path) == (["torch==2.1"], "requirements.txt")


def test_poetry_dependencies(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.poetry.dependencies]\n"
        'python = "^3.10"\n'
        'numpy = "^1.26.0"\n'
        'requests = "~2.31"\n'
        'click = "*"\n'
        'rich = "13.7.0"\n'
        'tqdm = "~=4.66"\n'
        'pandas = { version = "^0.25", extras = ["parquet"] }\n'
        'mylib = { path = "../mylib" }\n'
    )
    assert read_pyproject_requirements(tmp_path / "pyproject.toml") == [
        "numpy>=1.26.0,<2",
        "requests>=2.31,<2.32",
        "click",
        "rich==13.7.0",
        "tqdm~=4.66",
        "pandas[parquet]>=0.25,<0.26",
    ]


def test_environment_freeze_pins_what_is_installed_but_not_local_code() -> None:
    frozen = environment_freeze()
    assert f"psutil=={importlib.metadata.version('psutil')}" in frozen
    names = {line.split("==")[0].lower() for line in frozen}
    assert "pipeline-agent" not in names and "pip" not in names


def test_imported_modules_are_top_level_names() -> None:
    assert imported_modules(SOURCE) >= {"os", "json", "psutil", "sqlalchemy", "click", "agent"}
    assert "sibling" not in imported_modules(SOURCE)


def test_source_that_does_not_parse() -> None:
    assert detect_requirements("def broken(:\n") == []


def test_read_requirements_file(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("numpy>=1.24  # arrays\n")
    (tmp_path / "requirements.txt").write_text(
        "# comment\n"
        "\n"
        "-r base.txt\n"
        "--index-url https://example.com/simple\n"
        "pandas==2.1.0\n"
        "scikit-learn \\\n"
        "  >=1.3\n"
        'tomli; python_version < "3.11"\n'
    )
    assert read_requirements_file(tmp_path / "requirements.txt") == [
        "numpy>=1.24",
        "pandas==2.1.0",
        "scikit-learn   >=1.3",
        'tomli; python_version < "3.11"',
    ]
