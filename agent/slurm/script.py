"""The batch script of one task's Slurm job: a template with the task filled in.

A template is a shell script with ``#SBATCH`` lines for resources (``--gres=gpu:N``,
``--time``, ``--mem``) and these placeholders:

- ``{{agent_execute}}``: the command that runs the task on the node (required);
- ``{{exports}}``: ``export AGENT_HOME=...`` (and the server's URL) for that command;
- ``{{task_id}}``, ``{{task_name}}``, ``{{queue}}``, ``{{job_name}}``.

Options given to ``sbatch`` on its command line (``--partition``, ``--sbatch-args``) win
over the template's ``#SBATCH`` lines.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from agent.core.errors import InvalidInput

DEFAULT_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={{job_name}}
#SBATCH --output=slurm-agent-%j.out
{{exports}}
exec {{agent_execute}}
"""
#: Environment variables the job needs to reach the store, exported by ``{{exports}}``.
EXPORTED = ("AGENT_HOME", "AGENT_API_URL", "AGENT_FILES_URL")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_NAMES = frozenset({"agent_execute", "exports", "task_id", "task_name", "queue", "job_name"})


def load_template(path: str | Path) -> str:
    """A template file's text, checked for ``{{agent_execute}}`` and unknown placeholders."""
    text = Path(path).read_text()
    unknown = sorted(set(_PLACEHOLDER.findall(text)) - _NAMES)
    if unknown:
        raise InvalidInput(
            f"template {path}: unknown placeholder(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_NAMES))}"
        )
    if "agent_execute" not in _PLACEHOLDER.findall(text):
        raise InvalidInput(
            f"template {path} has no {{{{agent_execute}}}}: the job would not run the task"
        )
    return text


def render_script(template: str, values: Mapping[str, str], env: Mapping[str, str]) -> str:
    """The template with ``values`` filled in and ``{{exports}}`` made from ``env``."""
    exports = "\n".join(
        f"export {name}={shlex.quote(env[name])}" for name in EXPORTED if env.get(name)
    )
    filled = {**values, "exports": exports}
    return _PLACEHOLDER.sub(lambda m: filled.get(m.group(1), m.group(0)), template)
