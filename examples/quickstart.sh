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

say "setting up .venv (pipeline-agent + pandas, scikit-learn, pyarrow; a minute or two the first time)"
[ -x .venv/bin/python ] || "${PYTHON}" -m venv .venv
# pip's own lines, one per package it fetches, so a slow download is never a silent minute
.venv/bin/python -m pip install --progress-bar off --disable-pip-version-check \
    --root-user-action=ignore -e '.[examples]' 2>&1 \
    | { grep --line-buffered -E '^(Collecting|Downloading|Installing collected|Successfully installed|ERROR)' \
        | sed -u 's/^/    /' || true; }
export PATH="$(pwd)/.venv/bin:${PATH}"
export AGENT_HOME="${AGENT_HOME:-$(pwd)/.agent-quickstart}"
mkdir -p "${AGENT_HOME}"
echo "AGENT_HOME=${AGENT_HOME}"

stop_agents() { agent daemon --stop >/dev/null 2>&1 || true; }
trap stop_agents EXIT

newest_controller() {
    agent tasks --type controller --limit 1 --json \
        | python -c 'import json,sys; t=json.load(sys.stdin); print(t[0]["id"] if t else "")'
}

# Ctrl-C: abort the pipeline (its queued steps leave their queues, running ones are
# stopped), stop the agents at once (their running tasks are aborted), say what was done.
before=""
on_interrupt() {
    trap - INT
    echo >&2
    echo "interrupted:" >&2
    local pipeline
    pipeline="$(newest_controller 2>/dev/null || true)"
    if [ -n "${pipeline}" ] && [ "${pipeline}" != "${before}" ]; then
        if agent abort "${pipeline}" >/dev/null 2>&1; then
            echo "  pipeline ${pipeline} aborted, with its queued and running steps" >&2
        fi
    fi
    agent daemon --stop --stop-timeout 3 >/dev/null 2>&1 \
        || agent daemon --stop --stop-timeout 10 >/dev/null 2>&1 || true
    echo "  agents stopped; the store and logs are kept in ${AGENT_HOME}" >&2
    exit 130
}
trap on_interrupt INT

say "starting a services agent (pipeline controllers) and a default agent (steps)"
agent daemon --queue services --services-mode 2 --detached
agent daemon --queue default --detached

say "running examples/iris_pipeline.py (remote mode: the controller is enqueued on 'services')"
before="$(newest_controller)"
python examples/iris_pipeline.py
pipeline_id="$(newest_controller)"
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
