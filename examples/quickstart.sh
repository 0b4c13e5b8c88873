#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, start agents, run the iris pipeline
# remotely (controller on the services queue, steps on the default queue, each step in its
# own venv built by the agent), print the accuracy and the pipeline's DAG, stop the agents.
#
#   bash examples/quickstart.sh
#
# Needs Python 3.10+ and git. Creates .venv/ (the SDK, the agent and the example's libraries)
# and keeps the store, artifacts and venv cache in .agent-quickstart/ (AGENT_HOME).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "setting up .venv (pipeline-agent + pandas, scikit-learn, pyarrow)"
[ -x .venv/bin/python ] || "${PYTHON}" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -e '.[examples]' 2>&1 | { grep -v '^WARNING: Location' || true; }  # this machine's pip.conf noise
export PATH="$(pwd)/.venv/bin:${PATH}"
export AGENT_HOME="${AGENT_HOME:-$(pwd)/.agent-quickstart}"
mkdir -p "${AGENT_HOME}"
echo "AGENT_HOME=${AGENT_HOME}"

stop_agents() { agent daemon --stop >/dev/null 2>&1 || true; }
trap stop_agents EXIT

say "starting a services agent (pipeline controllers) and a default agent (steps)"
agent daemon --queue services --services-mode 2 --detached
agent daemon --queue default --detached

say "running examples/iris_pipeline.py (remote mode: the controller is enqueued on 'services')"
before="$(agent tasks --type controller --limit 1 --json | python -c 'import json,sys; t=json.load(sys.stdin); print(t[0]["id"] if t else "")')"
python examples/iris_pipeline.py
pipeline_id="$(agent tasks --type controller --limit 1 --json | python -c 'import json,sys; t=json.load(sys.stdin); print(t[0]["id"] if t else "")')"
if [ -z "${pipeline_id}" ] || [ "${pipeline_id}" = "${before}" ]; then
    echo "error: the pipeline task was not created" >&2
    exit 1
fi

say "pipeline ${pipeline_id}: controller log (the first run builds the steps' venv)"
agent logs "${pipeline_id}" --follow

say "pipeline ${pipeline_id}"
agent show "${pipeline_id}"
status="$(agent show "${pipeline_id}" --json | python -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
if [ "${status}" != "completed" ]; then
    echo "error: the pipeline ended ${status} (see agent logs ${pipeline_id})" >&2
    exit 1
fi
echo
echo "Done. Look around with:"
echo "  source .venv/bin/activate"
echo "  export AGENT_HOME=\"${AGENT_HOME}\""
echo "  agent tasks"
