"""The README is true about the quickstart: where its data lives and how to use `agent` after."""

from __future__ import annotations

import re

from tests.services import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
QUICKSTART = (REPO_ROOT / "examples" / "quickstart.sh").read_text()


def test_the_quickstart_data_dir_is_where_the_readme_says() -> None:
    default = re.search(r'AGENT_HOME="\$\{AGENT_HOME:-\$\(pwd\)/([^}]+)\}"', QUICKSTART)
    assert default is not None, "quickstart.sh sets no default AGENT_HOME"
    data_dir = default.group(1)
    assert f"keeps its store, artifacts and caches in `{data_dir}/`" in README
    assert f'export AGENT_HOME="$PWD/{data_dir}"' in README


def test_the_readme_and_the_quickstart_say_how_to_use_agent_afterwards() -> None:
    assert "source .venv/bin/activate" in README
    assert 'echo "  source .venv/bin/activate"' in QUICKSTART
