"""The UI end to end: a real ``agent server`` with a token, a services-mode agent and a
default-queue agent on the bare node (:mod:`tests.bare_node`) pointed at it, the iris
example launched from this test's Python, and Chromium driving the server's UI at ``/``:
log in, watch the pipeline's DAG complete, read a step's console in the side panel,
start a new run with an edited argument, abort a running task.

Screenshots of each page land in ``tests/ui/screenshots/e2e-*.png`` (not committed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agent.store.http import HttpBackend
from tests.pipeline.support import Daemon, agent_env, launch_remote, wait_finished, wait_for
from tests.server.live_server import LiveServer
from tests.services import REPO_ROOT
from tests.ui.test_browser import browser, snap  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.slow

TOKEN = "e2e-ui-token"
STEPS = ("step_one", "step_two", "step_three", "step_four")
#: How long the first run may take: each step builds its venv (pandas, scikit-learn).
PIPELINE_MS = 300_000
#: A status change shows within a few seconds (the DAG polls every second).
LIVE_MS = 15_000

SLEEPER = """
import os
import time

with open({pid_file!r}, "w") as fh:
    fh.write(str(os.getpid()))
print("sleeper is up", flush=True)
time.sleep(600)
"""


@dataclass
class Fleet:
    """The server, its agents, and a store client of it (as the test sees it)."""

    server: LiveServer
    daemons: list[Daemon]
    store: HttpBackend
    launch_home: Path

    def env(self) -> dict[str, str]:
        """Environment of a process on the user's side, talking to the server."""
        return agent_env(self.launch_home, AGENT_API_URL=self.server.url, AGENT_API_TOKEN=TOKEN)

    def logs(self) -> str:
        return "\n".join(d.log()[-3000:] for d in self.daemons) + self.server.log()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("e2e")
    server = LiveServer(f"sqlite:///{root / 'server.db'}", root / "server", token=TOKEN)
    node_home, launch_home = root / "node", root / "user"
    node_home.mkdir()
    launch_home.mkdir()
    server.start()
    remote = {"AGENT_API_URL": server.url, "AGENT_API_TOKEN": TOKEN}
    daemons = []
    try:
        for args in (("--queue", "services", "--services-mode", "4"), ("--queue", "default")):
            daemons.append(Daemon(node_home, *args, env=remote).start())
        wait_for(lambda: all("serving" in d.log() for d in daemons), 120, "the agents to start")
        store = HttpBackend(server.url, token=TOKEN)
        yield Fleet(server, daemons, store, launch_home)
        store.close()
    finally:
        for daemon in daemons:
            daemon.stop()
        server.stop()


@pytest.fixture
def page(browser):  # noqa: F811 - the imported fixture
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def launch_iris(fleet: Fleet) -> str:
    return launch_remote(REPO_ROOT / "examples" / "iris_pipeline.py", fleet.env())


def enqueue_sleeper(fleet: Fleet, workdir: Path) -> tuple[str, Path]:
    """A script task that sleeps, queued on ``default`` through the server."""
    pid_file = workdir / "sleeper.pid"
    script = workdir / "sleeper.py"
    script.write_text(SLEEPER.format(pid_file=str(pid_file)))
    code = (
        "from agent import Task\n"
        f"task = Task.create(project_name='e2e', task_name='sleeper', script={str(script)!r},"
        " packages=[])\n"
        "Task.enqueue(task, queue_name='default')\n"
        "print(task.id)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=fleet.env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()[-1], pid_file


def badge(page) -> str:
    return page.get_attribute("#task-status .status", "data-status")


def log_in(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_url("**/login**")
    snap(page, "e2e-login")
    page.fill('#login-form input[name="token"]', TOKEN)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")
    assert "/login" not in page.url
    page.wait_for_selector("h1")


def watch_pipeline(page, fleet: Fleet, pipeline_id: str) -> None:
    """From the pipelines list to the run's page; its 4 nodes turn completed."""
    from playwright.sync_api import TimeoutError as PageTimeout

    page.goto(fleet.server.url + "/pipelines")
    page.click("a:text-is('pipeline')")
    page.wait_for_url("**/pipelines/runs?**")
    snap(page, "e2e-pipeline-runs")
    page.click(f'#runs tr[data-task="{pipeline_id}"] a[href="/tasks/{pipeline_id}"]')
    page.wait_for_url(f"**/tasks/{pipeline_id}")
    page.wait_for_selector("#dag .node", timeout=PIPELINE_MS)
    for name in STEPS:
        try:
            page.wait_for_selector(
                f'[data-step="{name}"][data-status="completed"]', timeout=PIPELINE_MS
            )
        except PageTimeout:
            snap(page, "e2e-pipeline-stuck")
            task = fleet.store.get_task(pipeline_id)
            why = f"{name} not completed; the run is {task.status}: {task.status_message}"
            raise AssertionError(f"{why}\n{fleet.logs()}") from None
    assert page.locator("#dag .node").count() == 4
    snap(page, "e2e-pipeline-dag")


def read_step_console(page, fleet: Fleet, pipeline_id: str) -> None:
    from playwright.sync_api import TimeoutError as PageTimeout

    [step_two] = fleet.store.query_tasks(parent=pipeline_id, name="step_two")
    page.click('[data-step="step_two"]')
    panel = page.locator("#step-panel")
    panel.wait_for(state="visible")
    assert panel.locator(".step-name").inner_text() == "step_two"
    assert panel.locator(".full-page").get_attribute("href") == f"/tasks/{step_two.id}?tab=console"
    # step_two prints nothing itself: its console has the agent's lines about its process
    console = "#panel-console"
    try:
        page.wait_for_selector(f"{console} >> text=_agent_step_step_two.py", timeout=LIVE_MS)
        page.wait_for_selector(f"{console} >> text=task process exited with code 0")
    except PageTimeout:
        lines = [line.text for line in fleet.store.get_logs(step_two.id)]
        raise AssertionError("step_two's console lacks its lines:\n" + "\n".join(lines)) from None
    snap(page, "e2e-step-panel")
    panel.locator(".close").click()
    panel.wait_for(state="hidden")


def new_run(page, fleet: Fleet, pipeline_id: str) -> None:
    """New run with an edited ``mock_parameter``; it completes and its Args say so."""
    page.click("#new-run")
    page.wait_for_url(f"**/tasks/{pipeline_id}/new-run")
    field = 'input[name="arg:mock_parameter"]'
    assert page.input_value(field) == "mock"
    page.fill(field, "set in the browser")
    snap(page, "e2e-new-run")
    page.click("#new-run-form button[type=submit]")
    page.wait_for_url(lambda url: pipeline_id not in url and "/tasks/" in url)
    run_id = page.url.rsplit("/", 1)[1].split("?")[0]
    run = wait_finished(fleet.store, run_id, PIPELINE_MS / 1000)
    assert run.status == "completed", f"{run.status_message}\n{fleet.logs()}"
    page.goto(f"{fleet.server.url}/tasks/{run_id}?tab=configuration")
    assert badge(page) == "completed"
    value = page.locator('[data-section="Args"] tr:has(td:text-is("mock_parameter")) code')
    assert value.inner_text() == "set in the browser"
    snap(page, "e2e-new-run-configuration")
    assert fleet.store.get_task(run_id).hyperparams["Args"]["mock_parameter"] == (
        "set in the browser"
    )


def abort_sleeper(page, fleet: Fleet, workdir: Path) -> None:
    task_id, pid_file = enqueue_sleeper(fleet, workdir)
    wait_for(
        lambda: fleet.store.get_task(task_id).status == "in_progress" and pid_file.exists(),
        PIPELINE_MS / 1000,
        "the sleeper to run",
    )
    page.goto(f"{fleet.server.url}/tasks/{task_id}")
    assert badge(page) == "in_progress"
    snap(page, "e2e-task-running")
    with page.expect_navigation():
        page.click("#abort")
    page.wait_for_selector('#task-status [data-status="stopped"]')
    snap(page, "e2e-task-aborted")
    assert fleet.store.get_task(task_id).status == "stopped"
    pid = int(pid_file.read_text())
    wait_for(lambda: not _alive(pid), 60, "the agent to kill the aborted task's process")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(480)
def test_the_ui_runs_a_pipeline_end_to_end(fleet, page, tmp_path):
    pipeline_id = launch_iris(fleet)
    log_in(page, fleet.server.url)
    anonymous = requests.get(
        fleet.server.url + "/pipelines",
        headers={"Accept": "text/html"},
        allow_redirects=False,
        timeout=10,
    )
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]
    refused = requests.get(f"{fleet.server.url}/tasks/{pipeline_id}/console", timeout=10)
    assert refused.status_code == 401
    assert page.context.request.get(f"{fleet.server.url}/tasks/{pipeline_id}/console").ok

    watch_pipeline(page, fleet, pipeline_id)
    read_step_console(page, fleet, pipeline_id)
    new_run(page, fleet, pipeline_id)
    abort_sleeper(page, fleet, tmp_path)
