"""DockerBackend: container arguments, and tasks run in the local base image."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from agent.config import load_settings
from agent.core.models import Script, Task
from agent.execution.docker import (
    STORE_LABEL,
    TASK_LABEL,
    ContainerArgsError,
    DockerBackend,
    gpu_device_requests,
    parse_container_args,
    remove_orphans,
    task_containers,
)
from agent.execution.runner import TaskRunner, repo_cache_from_settings
from agent.store.sql import SqlBackend
from tests.services import BASE_IMAGE, docker_available, docker_image_present, require

# -- container arguments (no engine needed) ------------------------------------------


def test_parses_docker_run_like_arguments():
    args = parse_container_args(
        "-e A=1 --env=B='two words' -v /data:/mnt/data:ro --volume /x:/y "
        "--network bridge --shm-size 1g --ipc=host --user 1000:1000"
    )
    assert args.environment == {"A": "1", "B": "two words"}
    assert args.volumes == {
        "/data": {"bind": "/mnt/data", "mode": "ro"},
        "/x": {"bind": "/y", "mode": "rw"},
    }
    assert (args.network_mode, args.shm_size, args.ipc_mode, args.user) == (
        "bridge",
        "1g",
        "host",
        "1000:1000",
    )


def test_task_arguments_go_on_top_of_the_daemons():
    merged = parse_container_args("-e A=daemon -e B=daemon --shm-size 1g").merged(
        parse_container_args("-e A=task")
    )
    assert merged.environment == {"A": "task", "B": "daemon"}
    assert merged.shm_size == "1g"


@pytest.mark.parametrize("bad", ["--privileged", "-e", "-v /only-one", "-e =x", "--rm"])
def test_refuses_what_it_does_not_support(bad):
    with pytest.raises(ContainerArgsError):
        parse_container_args(bad)


def test_gpu_device_requests():
    assert gpu_device_requests(None) == []
    (ids,) = gpu_device_requests("0, 1")
    assert ids["DeviceIDs"] == ["0", "1"] and ids["Capabilities"] == [["gpu"]]
    (every,) = gpu_device_requests("all")
    assert every["Count"] == -1


# -- real containers -------------------------------------------------------------


def docker_test(fn):
    """Marks of a test that runs containers: docker, slow, a generous timeout."""
    return pytest.mark.docker(pytest.mark.slow(pytest.mark.timeout(180)(fn)))


@pytest.fixture
def docker_client():
    require("docker", docker_available())
    require(f"docker image {BASE_IMAGE}", docker_image_present(BASE_IMAGE))
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def docker_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("AGENT_HOME", str(home))
    for name in ("AGENT_API_URL", "AGENT_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def docker_store(docker_home: Path, docker_client):
    """The test's store; containers of its tasks still there at the end are removed."""
    store = SqlBackend(f"sqlite:///{docker_home / 'agent.db'}")
    yield store
    for task in store.query_tasks():
        for container in task_containers(docker_client, task.id):
            container.remove(force=True)
    store.close()


def _claimed(store, code: str, container: dict) -> Task:
    task = store.create_task(
        Task(name="in-docker", project="p", script=Script(code=code), container=container)
    )
    store.enqueue(task.id, "docker")
    return store.claim(["docker"], "w-docker")


def _runner(store, client) -> TaskRunner:
    settings = load_settings()
    backend = DockerBackend(client, default_image=BASE_IMAGE, home=settings.home, pull=False)
    return TaskRunner(store, settings, backend, repo_cache_from_settings(settings), "w-docker")


def _logs(store, task_id: str) -> list[str]:
    return [line.text for line in store.get_logs(task_id)]


@docker_test
def test_runs_a_task_in_the_image_with_streamed_logs(docker_client, docker_store, docker_home):
    go = docker_home / "go"  # $AGENT_HOME is mounted in the container
    code = (
        "import os, sys, time\n"
        "print('first line', flush=True)\n"
        "deadline = time.time() + 60\n"
        f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "import agent\n"
        "from agent.store.sql import SqlBackend\n"
        "store = SqlBackend('sqlite:///' + os.environ['AGENT_HOME'] + '/agent.db')\n"
        "me = store.get_task(os.environ['AGENT_TASK_ID'])\n"
        "print('debian', open('/etc/debian_version').read().strip())\n"
        "print('seen from inside:', me.name, me.status)\n"
        "print('env', os.environ['GREETING'], open('from_setup').read().strip())\n"
    )
    task = _claimed(
        docker_store,
        code,
        {"image": "", "arguments": "-e GREETING=hello", "setup_script": "echo ready > from_setup"},
    )
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(status=_runner(docker_store, docker_client).run(task.id)),
        daemon=True,
    )
    thread.start()
    try:
        # The first line is in the store while the task still runs: streamed, not at exit.
        _wait(lambda: "first line" in _logs(docker_store, task.id), "the first line")
        assert docker_store.get_task(task.id).status == "in_progress"
    finally:
        go.touch()
        thread.join(90)

    done = docker_store.get_task(task.id)
    logs = _logs(docker_store, task.id)
    assert (done.status, result["status"]) == ("completed", "completed"), logs
    assert any(line.startswith("debian 12") for line in logs)
    assert "seen from inside: in-docker in_progress" in logs
    assert "env hello ready" in logs
    assert not list(task_containers(docker_client, task.id))  # removed afterwards


@docker_test
def test_exit_code_fails_the_task(docker_client, docker_store):
    task = _claimed(docker_store, "import sys\nsys.exit(3)\n", {"image": BASE_IMAGE})
    _runner(docker_store, docker_client).run(task.id)
    failed = docker_store.get_task(task.id)
    assert failed.status == "failed" and "exit code 3" in failed.status_message


@docker_test
def test_abort_stops_the_container(docker_client, docker_store):
    code = "import time\nprint('sleeping', flush=True)\ntime.sleep(120)\n"
    task = _claimed(docker_store, code, {"image": BASE_IMAGE})
    runner = _runner(docker_store, docker_client)
    thread = threading.Thread(target=runner.run, args=(task.id,), daemon=True)
    thread.start()
    _wait(lambda: "sleeping" in _logs(docker_store, task.id), "the task to start")
    (running,) = task_containers(docker_client, task.id)
    assert running.status == "running"

    docker_store.set_status(task.id, "stopped", "aborted by the test")  # as `agent abort` does
    thread.join(60)

    assert not thread.is_alive()
    assert docker_store.get_task(task.id).status == "stopped"
    assert not list(task_containers(docker_client, task.id))


@docker_test
def test_remove_orphans_sweeps_only_ended_tasks_of_its_store(docker_client, docker_store):
    ended = _claimed(docker_store, "pass", {"image": BASE_IMAGE})
    docker_store.set_status(ended.id, "failed", "worker lost")
    running = _claimed(docker_store, "pass", {"image": BASE_IMAGE})

    def sleeper(task_id: str, store_label: str):
        labels = {TASK_LABEL: task_id, STORE_LABEL: store_label}
        return docker_client.containers.run(
            BASE_IMAGE, ["sleep", "60"], labels=labels, detach=True, network_mode="none"
        )

    ours = [sleeper(ended.id, "this-store"), sleeper(running.id, "this-store")]
    theirs = sleeper(ended.id, "another-store")
    try:
        assert remove_orphans(docker_client, docker_store, "this-store") == [ended.id]
        left = {c.id for c in docker_client.containers.list(all=True)}
        assert ours[0].id not in left
        assert {ours[1].id, theirs.id} <= left
    finally:
        left = {c.id for c in docker_client.containers.list(all=True)}
        for container in (*ours, theirs):
            if container.id in left:
                container.remove(force=True)


@docker_test
def test_daemon_in_docker_mode(docker_client, docker_store, docker_home):
    from tests.daemon.daemon_support import DaemonProcess, log_text, make_task, wait_for

    task = make_task(docker_store, "import sys\nprint('python', sys.version.split()[0])", "dq")
    daemon = DaemonProcess(docker_home, ["--queue", "dq", "--docker", BASE_IMAGE]).start()
    try:
        wait_for(lambda: docker_store.get_task(task.id).task_status.is_terminal, 120, "the task")
        assert docker_store.get_task(task.id).status == "completed", log_text(docker_store, task.id)
        assert "python 3.11" in log_text(docker_store, task.id)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.stop()


def _wait(predicate, what: str, timeout: float = 60.0) -> None:
    from tests.daemon.daemon_support import wait_for

    wait_for(predicate, timeout, what)
