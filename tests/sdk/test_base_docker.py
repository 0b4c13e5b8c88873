"""Task.set_base_docker / get_base_docker: the container an agent with --docker uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import Task
from agent.execution.docker import parse_container_args
from agent.store.factory import reset_backends
from tests.server.live_server import LiveServer


def test_image_arguments_and_setup_script_are_stored(backend):
    task = Task.create(project_name="p", task_name="t")

    task.set_base_docker(
        docker_image="python:3.11-slim",
        docker_arguments=["-e", "MODE=train", "--shm-size", "1g"],
        docker_setup_bash_script=["apt-get update", "apt-get install -y gcc"],
    )

    container = backend.get_task(task.id).container
    assert container == {
        "image": "python:3.11-slim",
        "arguments": "-e MODE=train --shm-size 1g",
        "setup_script": "apt-get update\napt-get install -y gcc",
    }
    # What the docker backend will read from it:
    args = parse_container_args(container["arguments"])
    assert (args.environment, args.shm_size) == ({"MODE": "train"}, "1g")
    assert task.get_base_docker() == "python:3.11-slim -e MODE=train --shm-size 1g"


def test_docker_cmd_is_split_into_image_and_arguments(backend):
    task = Task.create(project_name="p", task_name="t")

    task.set_base_docker("nvidia/cuda:12.2.0-runtime-ubuntu22.04  -e 'NOTE=a b' --ipc host")

    container = backend.get_task(task.id).container
    assert container["image"] == "nvidia/cuda:12.2.0-runtime-ubuntu22.04"
    assert container["arguments"] == "-e 'NOTE=a b' --ipc host"
    assert parse_container_args(container["arguments"]).environment == {"NOTE": "a b"}

    task.set_base_docker("img:1 -e A=1", docker_arguments="-e B=2", docker_setup_bash_script="ls")
    assert backend.get_task(task.id).container == {
        "image": "img:1",
        "arguments": "-e B=2",
        "setup_script": "ls",
    }


def test_each_call_replaces_the_whole_container(backend):
    task = Task.create(project_name="p", task_name="t")
    task.set_base_docker("img:1 -e A=1", docker_setup_bash_script="echo hi")

    task.set_base_docker(docker_image="img:2")

    assert backend.get_task(task.id).container == {
        "image": "img:2",
        "arguments": "",
        "setup_script": "",
    }
    task.set_base_docker()
    assert task.get_base_docker() is None


def test_a_clone_keeps_the_container(backend):
    source = Task.create(project_name="p", task_name="base")
    source.set_base_docker("img:1 -v /data:/data:ro", docker_setup_bash_script=["pip install x"])

    clone = Task.clone(source, name="copy")

    assert clone.get_base_docker() == "img:1 -v /data:/data:ro"
    assert backend.get_task(clone.id).container == backend.get_task(source.id).container


def test_ignored_in_the_process_an_agent_runs_for_the_task(backend, monkeypatch):
    task = Task.create(project_name="p", task_name="t")
    task.set_base_docker("img:stored")
    monkeypatch.setenv("AGENT_TASK_ID", task.id)

    task.set_base_docker("img:from-code")

    assert backend.get_task(task.id).container["image"] == "img:stored"


def test_set_base_docker_over_http(agent_home: Path, tmp_path: Path, monkeypatch):
    workdir = tmp_path / "server"
    with LiveServer(f"sqlite:///{workdir / 'server.db'}", workdir, token="t0k") as live:
        monkeypatch.setenv("AGENT_API_URL", live.url)
        monkeypatch.setenv("AGENT_API_TOKEN", "t0k")
        reset_backends()
        try:
            task = Task.create(project_name="p", task_name="t")
            task.set_base_docker("img:1 -e A=1", docker_setup_bash_script=["a", "b"])
            clone = Task.clone(task)

            fetched = Task.get_task(task_id=clone.id)
            assert fetched.get_base_docker() == "img:1 -e A=1"
            assert fetched.data.container["setup_script"] == "a\nb"
        finally:
            reset_backends()


@pytest.mark.parametrize("arguments", [("-e", "A=1"), ["-e A=1"]])
def test_argument_lists_are_joined_with_spaces_as_clearml(backend, arguments):
    task = Task.create(project_name="p", task_name="t")

    task.set_base_docker(docker_image="img", docker_arguments=arguments)

    assert backend.get_task(task.id).container["arguments"] == "-e A=1"
