"""Requirement detection from imports and requirements files."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from agent.execution.requirements import (
    detect_requirements,
    imported_modules,
    read_requirements_file,
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


def test_detects_installed_third_party_imports() -> None:
    version = importlib.metadata.version
    assert detect_requirements(SOURCE) == [
        f"click=={version('click')}",
        f"psutil=={version('psutil')}",
        f"SQLAlchemy=={version('SQLAlchemy')}",
    ]


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
