"""Task: init, lookup, create, clone, enqueue, editing and status marks (in process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import agent
from agent import Task, TaskTypes
from agent.core.errors import IllegalTransition, NotFound
from agent.sdk import TaskNotFound
from agent.sdk.task import bind_current_task


def _init(**kwargs) -> Task:
    kwargs.setdefault("capture_output", False)
    return Task.init(**kwargs)


def test_public_names_resolve_lazily():
    assert agent.Task is Task
    assert agent.TaskTypes is TaskTypes
    assert agent.Logger.__name__ == "Logger"
    assert agent.StorageManager.__name__ == "StorageManager"
    with pytest.raises(AttributeError):
        agent.NoSuchThing  # noqa: B018


def test_import_agent_is_light():
    heavy = ["sqlalchemy", "fastapi", "pandas", "numpy", "requests", "agent.store.sql"]
    code = (
        "import sys, agent; from agent import Task, TaskTypes, Logger; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_init_creates_an_in_progress_task_and_close_completes_it(backend):
    task = _init(project_name="proj", task_name="train", tags=["a"], task_type="data_processing")
    assert Task.current_task() is task
    assert Task.init(project_name="other") is task  # a second call returns the same task
    record = backend.get_task(task.id)
    assert (record.project, record.name, record.type) == ("proj", "train", "data_processing")
    assert record.status == "in_progress"
    assert record.tags == ["a"]
    task.close()
    assert task.status == "completed"
    assert Task.current_task() is None


def test_init_rejects_unknown_task_type(agent_home):
    with pytest.raises(ValueError, match="unknown task type 'nope'"):
        _init(project_name="p", task_name="t", task_type="nope")


def test_init_reuse_last_task_id(backend):
    first = _init(project_name="p", task_name="reuse")
    first.close()
    again = _init(project_name="p", task_name="reuse", reuse_last_task_id=True)
    assert again.id == first.id  # it recorded nothing: reused
    again.get_logger().report_scalar("loss", "train", 1.0, 0)
    again.close()
    third = _init(project_name="p", task_name="reuse", reuse_last_task_id=True)
    assert third.id != first.id  # it has scalars now: a new task
    third.get_logger().report_scalar("loss", "train", 2.0, 0)
    third.close()
    continued = _init(project_name="p", task_name="reuse", continue_last_task=True)
    assert continued.id == third.id  # continuing keeps what it recorded
    continued.close()
    by_id = _init(project_name="p", task_name="x", reuse_last_task_id=first.id)
    assert by_id.id == first.id and by_id.status == "in_progress"
    by_id.close()
    with pytest.raises(TaskNotFound, match="no task 'nope' to reuse"):
        _init(project_name="p", task_name="x", continue_last_task="nope")


def test_get_task_by_id_and_by_project_and_name(backend):
    old = Task.create(project_name="proj", task_name="step")
    new = Task.create(project_name="proj", task_name="step")
    Task.create(project_name="proj", task_name="other")
    assert Task.get_task(task_id=old.id).id == old.id
    assert Task.get_task(project_name="proj", task_name="step").id == new.id
    with pytest.raises(TaskNotFound, match="no task with project 'proj', name 'nope'") as info:
        Task.get_task(project_name="proj", task_name="nope")
    assert isinstance(info.value, ValueError) and isinstance(info.value, NotFound)
    with pytest.raises(ValueError):
        Task.get_task(task_id="0" * 32)
    assert {t.name for t in Task.get_tasks(project_name="proj")} == {"step", "other"}


def test_get_task_by_tags(backend):
    Task.create(project_name="tags", task_name="t").set_tags(["x"])
    both = Task.create(project_name="tags", task_name="t")
    both.add_tags(["x", "y"])
    assert Task.get_task(project_name="tags", tags=["x", "y"]).id == both.id
    assert both.get_tags() == ["x", "y"]


def test_create_from_a_script_in_a_git_repo(agent_home, tmp_path: Path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    script = repo / "src" / "train.py"
    script.write_text("print('hi')\n")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "remote", "add", "origin", "https://u:secret@example.com/org/repo.git"], check=True)  # fmt: skip
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-q", "-m", "init"], check=True)
    script.write_text("print('changed')\n")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("numpy>=1.20  # arrays\n\npkg @ git+https://h/x.git#egg=pkg\n")

    task = Task.create(
        project_name="proj",
        script=script,
        requirements=reqs,
        packages=["pandas"],
        docker="python:3.11",
        docker_args="--shm-size=1g",
        argparse_args=[("lr", 0.1), ("epochs", 3)],
    )
    record = task.data
    assert record.status == "created" and record.name == "train"
    assert record.script.repository == "https://example.com/org/repo.git"
    assert record.script.branch == "main" and len(record.script.commit) == 40
    assert record.script.entry_point == "train.py" and record.script.working_dir == "src"
    assert "changed" in record.script.diff and record.script.code == ""
    assert record.script.requirements == [
        "numpy>=1.20",
        "pkg @ git+https://h/x.git#egg=pkg",
        "pandas",
    ]
    assert record.container == {
        "image": "python:3.11",
        "arguments": "--shm-size=1g",
        "setup_script": "",
    }
    assert task.get_parameters(cast=True) == {"Args/lr": 0.1, "Args/epochs": 3}


def test_create_from_a_script_outside_git_stores_its_code(agent_home, tmp_path: Path):
    script = tmp_path / "solo.py"
    script.write_text("print('solo')\n")
    task = Task.create(project_name="p", task_name="solo", script=script)
    assert task.data.script.code == "print('solo')\n"
    assert task.data.script.entry_point == "solo.py" and task.data.script.repository == ""
    remote = Task.create(project_name="p", script="train.py", repo="https://h/r.git", branch="dev")
    assert (remote.data.script.repository, remote.data.script.branch) == ("https://h/r.git", "dev")
    with pytest.raises(FileNotFoundError):
        Task.create(project_name="p", script=tmp_path / "missing.py")


def test_create_from_a_repository_url_keeps_no_credentials(agent_home):
    url = "https://oauth2:glpat-t0k3n@gitlab.example.com/g/r.git?private_token=glpat-t0k3n"
    task = Task.create(project_name="p", script="train.py", repo=url)
    assert task.data.script.repository == "https://gitlab.example.com/g/r.git"
    assert "glpat-t0k3n" not in repr(Task.get_task(task_id=task.id).data)


def test_clone_enqueue_and_dequeue(backend):
    source = Task.create(project_name="p", task_name="base")
    source.set_parameters({"General/lr": 0.1})
    clone = Task.clone(source, name="copy", comment="tuned")
    assert clone.id != source.id and clone.name == "copy" and clone.comment == "tuned"
    assert clone.status == "created" and clone.get_parameter("lr", cast=True) == 0.1
    queued = Task.enqueue(clone, queue_name="gpu")
    assert queued.status == "queued" and backend.queue_entries("gpu") == [clone.id]
    assert Task.dequeue(clone.id).status == "created"
    queue_id = backend.get_queue("gpu").id
    Task.enqueue(clone.id, queue_id=queue_id)
    assert backend.queue_entries("gpu") == [clone.id]
    with pytest.raises(NotFound, match="no queue with id"):
        Task.enqueue(clone, queue_id="nope")


def test_editing_fields(backend):
    task = Task.create(project_name="p", task_name="t")
    parent = Task.create(project_name="p", task_name="parent")
    task.set_name("renamed")
    task.set_comment("hello")
    task.set_parent(parent)
    task.set_user_properties({"name": "owner", "value": "me"}, [("gpu", 2)], seed=7)
    assert (task.name, task.comment, task.parent) == ("renamed", "hello", parent.id)
    assert task.get_user_properties(value_only=True) == {"owner": "me", "gpu": 2, "seed": 7}
    assert task.get_user_properties()["gpu"] == {"name": "gpu", "value": 2}
    assert backend.query_tasks(runtime={"owner": "me"})[0].id == task.id


def test_mark_status(backend):
    task = Task.create(project_name="p", task_name="t")
    with pytest.raises(IllegalTransition):
        task.mark_completed()
    task.mark_completed(ignore_errors=True)  # logged, not raised
    task.mark_completed(status_message="done", force=True)
    assert task.status == "completed" and task.get_status_message() == "done"

    failing = Task.create(project_name="p", task_name="f")
    failing.mark_started()
    failing.mark_failed(status_reason="boom")
    assert (failing.status, failing.data.status_message) == ("failed", "boom")

    stopping = Task.create(project_name="p", task_name="s")
    stopping.mark_started()
    stopping.mark_stopped(status_message="aborted")
    assert stopping.status == "stopped"


def test_close_keeps_a_status_the_script_set(backend):
    task = _init(project_name="p", task_name="t")
    task.mark_failed(status_reason="my own decision")
    task.close()
    assert task.status == "failed"


def test_bind_current_task(backend):
    step = Task.create(project_name="p", task_name="step")
    with bind_current_task(step.id) as bound:
        assert Task.current_task() is bound
        agent.Logger.current_logger().report_scalar("s", "x", 1.0, 0)
    assert Task.current_task() is None
    assert backend.get_scalars(step.id) == {"s": {"x": [(0, 1.0)]}}
    assert backend.get_task(step.id).status == "created"  # status is the launcher's


def test_enqueue_on_a_queue_nobody_serves_says_so(backend, capsys):
    Task.enqueue(Task.create(project_name="p", task_name="lonely"), queue_name="nobody")
    assert capsys.readouterr().err == (
        "warning: no agent serves queue 'nobody' (start one: agent daemon --queue nobody)\n"
    )
    backend.register_worker("w-nobody", ["nobody"], stats={"heartbeat_s": 5.0})
    Task.enqueue(Task.create(project_name="p", task_name="served"), queue_name="nobody")
    assert capsys.readouterr().err == ""
