"""ClearML behaviours that ordinary scripts rely on, each from ClearML's documentation:
``connect()`` of a live dict, parameters as text, ``TaskParameters``, argparse into
``Args`` (stored values winning under an agent), ``execute_remotely``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent import Task
from agent.task_parameters import TaskParameters, param, percent_param
from tests.sdk.conftest import script_env


@pytest.fixture
def task(backend):
    task = Task.create(project_name="clearml", task_name="t")
    backend.set_status(task.id, "in_progress")
    return task


def _run_by_agent(task, monkeypatch):
    monkeypatch.setenv("AGENT_TASK_ID", task.id)


def _run(home: Path, tmp_path: Path, source: str, *args: str, **env: str):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=script_env(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _only(backend, name: str):
    (found,) = backend.query_tasks(name=name)
    return backend.get_task(found.id)


# -- connect ------------------------------------------------------------------------------
def test_connected_dict_is_live_as_in_clearmls_hyper_parameters_example(task):
    # ClearML's examples/reporting/hyper_parameters.py: changes after connect are recorded
    parameters = {"list": [1, 2, 3], "dict": {"a": 1, "b": 2}, "int": 3, "float": 2.2}
    parameters = task.connect(parameters)
    parameters["new_param"] = "this is new"
    parameters["float"] = "9.9"
    assert isinstance(parameters, dict)
    assert task.get_parameters(cast=True) == {
        "General/list": [1, 2, 3],
        "General/dict/a": 1,
        "General/dict/b": 2,
        "General/int": 3,
        "General/float": "9.9",
        "General/new_param": "this is new",
    }
    assert json.loads(json.dumps(parameters)) == dict(parameters)
    import copy
    import pickle

    assert type(pickle.loads(pickle.dumps(parameters))) is dict  # never carries its task
    assert type(copy.deepcopy(parameters)) is dict


def test_changes_to_connected_objects_are_recorded_at_flush_and_close(task):
    config = {"lr": 0.1}
    task.connect(config)  # the original, not the returned copy
    ns = task.connect(argparse.Namespace(batch=32))
    config["lr"] = 0.5
    ns.batch = 64
    task.flush()
    assert task.get_parameter("General/lr", cast=True) == 0.5
    assert task.get_parameter("Args/batch", cast=True) == 64
    config["momentum"] = 0.9
    task.close()
    assert task.get_parameter("General/momentum", cast=True) == 0.9


def test_parameters_are_text_unless_cast(task):
    task.set_parameters({"General": {"lr": 0.1, "on": True, "none": None, "n": [1, 2]}})
    assert task.get_parameters() == {
        "General/lr": "0.1",
        "General/on": "True",
        "General/none": "",
        "General/n": "[1, 2]",
    }
    assert task.get_parameters(cast=True)["General/lr"] == 0.1
    assert task.get_parameter("General/lr") == "0.1"
    assert task.get_parameter("General/lr", cast=True) == 0.1
    assert task.get_parameter("General/missing", default=7) == 7
    task.set_parameter("Args/epochs", 3)
    assert task.get_parameter("Args/epochs") == "3"
    assert task.get_parameters_as_dict() == {
        "General": {"lr": "0.1", "on": "True", "none": "", "n": "[1, 2]"},
        "Args": {"epochs": "3"},
    }


# -- TaskParameters -----------------------------------------------------------------------
class TrainParams(TaskParameters):
    iterations = param(type=int, desc="Number of iterations", range=(0, 100_000), default=500)
    target_accuracy = percent_param(desc="The target accuracy", default=0.9)
    name = param(type=str, default="run")


def test_task_parameters_validate_and_connect(task, monkeypatch):
    params = TrainParams(iterations=1000)
    assert params.to_dict() == {"iterations": 1000, "target_accuracy": 0.9, "name": "run"}
    with pytest.raises(ValueError, match=r"target_accuracy must be in range \[0, 1\]"):
        TrainParams(target_accuracy=1.5)
    with pytest.raises(TypeError, match="iterations must be int"):
        TrainParams(iterations="many")
    with pytest.raises(ValueError, match="Unknown key"):
        params.update_from_dict({"nope": 1})

    assert params.connect(task) is params
    assert task.get_parameters(cast=True) == {
        "General/iterations": 1000,
        "General/target_accuracy": 0.9,
        "General/name": "run",
    }
    task.set_parameter("General/iterations", "42")
    _run_by_agent(task, monkeypatch)
    remote = TrainParams()
    remote.connect(task)
    assert remote.iterations == 42 and type(remote.iterations) is int


# -- argparse -----------------------------------------------------------------------------
ARGS_SCRIPT = """
import argparse, json, sys
from agent import Task

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--layers", type=int, nargs="+", default=[8])
parser.add_argument("--fast", action="store_true")
parser.add_argument("data")
{before}
task = Task.init(project_name="args", task_name="{name}")
{after}
print("ARGS=" + json.dumps(vars(args)))
"""


@pytest.mark.parametrize("parse_first", [False, True], ids=["init-first", "parse-first"])
def test_argparse_into_args_and_stored_values_win_under_an_agent(
    agent_home, backend, tmp_path, parse_first
):
    parse = "args = parser.parse_args()"
    name = f"args-{parse_first}"
    source = ARGS_SCRIPT.format(
        before=parse if parse_first else "", after="" if parse_first else parse, name=name
    )
    local = _run(agent_home, tmp_path, source, "--lr", "0.5", "train.csv")
    assert local.returncode == 0, local.stderr
    task = _only(backend, name)
    assert task.hyperparams["Args"] == {
        "lr": 0.5,
        "epochs": 3,
        "layers": [8],
        "fast": False,
        "data": "train.csv",
    }
    assert task.runtime["argv"] == ["--lr", "0.5", "train.csv"]

    # what `agent clone ID --set Args/lr=0.01 --set Args/layers=[4,2]` leaves on a clone
    clone = Task.clone(task.id)
    clone.set_parameters(
        {"Args": {**task.hyperparams["Args"], "lr": "0.01", "layers": "[4, 2]", "fast": "true"}}
    )
    backend.set_status(clone.id, "in_progress")
    remote = _run(agent_home, tmp_path, source, *task.runtime["argv"], AGENT_TASK_ID=clone.id)
    assert remote.returncode == 0, remote.stderr
    line = next(x for x in remote.stdout.splitlines() if x.startswith("ARGS"))
    parsed = json.loads(line.removeprefix("ARGS="))
    assert parsed == {"lr": 0.01, "epochs": 3, "layers": [4, 2], "fast": True, "data": "train.csv"}


def test_auto_connect_arg_parser_false_and_exclusions(agent_home, backend, tmp_path):
    source = ARGS_SCRIPT.format(before="", after="args = parser.parse_args()", name="off")
    source = source.replace('task_name="off")', 'task_name="off", auto_connect_arg_parser=False)')
    assert _run(agent_home, tmp_path, source, "x.csv").returncode == 0
    assert "Args" not in _only(backend, "off").hyperparams

    source = ARGS_SCRIPT.format(before="", after="args = parser.parse_args()", name="some")
    source = source.replace(
        'task_name="some")', 'task_name="some", auto_connect_arg_parser={"lr": False})'
    )
    assert _run(agent_home, tmp_path, source, "x.csv").returncode == 0
    assert "lr" not in _only(backend, "some").hyperparams["Args"]


# -- execute_remotely ---------------------------------------------------------------------
REMOTE_SCRIPT = """
import sys
from agent import Task

task = Task.init(project_name="remote", task_name="{name}")
task.connect({{"lr": 0.1}})
print("before", flush=True)
result = task.execute_remotely({call})
print("after", result is None, flush=True)
"""


def test_execute_remotely_enqueues_this_task_and_exits_cleanly(agent_home, backend, tmp_path):
    proc = _run(agent_home, tmp_path, REMOTE_SCRIPT.format(name="r", call="queue_name='gpu'"))
    assert proc.returncode == 0, proc.stderr
    assert "before" in proc.stdout and "after" not in proc.stdout
    task = _only(backend, "r")
    assert (task.status, task.queue) == ("queued", "gpu")
    assert backend.queue_entries("gpu") == [task.id]
    assert task.hyperparams["General"] == {"lr": 0.1}
    assert "REMOTE_SCRIPT" not in task.script.code and "execute_remotely" in task.script.code

    # under an agent, for this very task, it does nothing and returns None
    backend.set_status(task.id, "in_progress")
    again = _run(
        agent_home,
        tmp_path,
        REMOTE_SCRIPT.format(name="r", call="queue_name='gpu'"),
        AGENT_TASK_ID=task.id,
    )
    assert again.returncode == 0, again.stderr
    assert "after True" in again.stdout


def test_execute_remotely_without_a_queue_leaves_a_template(agent_home, backend, tmp_path):
    proc = _run(agent_home, tmp_path, REMOTE_SCRIPT.format(name="tpl", call=""))
    assert proc.returncode == 0, proc.stderr
    task = _only(backend, "tpl")
    assert task.status == "created" and not task.queue
    assert "left as a template" in proc.stderr

    from agent.pipeline import PipelineController

    pipe = PipelineController(name="p", project="remote")
    pipe.add_step("step", base_task_project="remote", base_task_name="tpl")
    pipe._build_dag()  # the template resolves as a base task
    assert pipe._specs["step"].base_task_id == task.id


def test_execute_remotely_with_clone_keeps_this_run_and_enqueues_a_copy(
    agent_home, backend, tmp_path
):
    call = "queue_name='default', clone=True, exit_process=False"
    proc = _run(agent_home, tmp_path, REMOTE_SCRIPT.format(name="c", call=call))
    assert proc.returncode == 0, proc.stderr
    assert "after False" in proc.stdout
    original, clone = sorted(backend.query_tasks(name="c"), key=lambda t: t.created)
    assert original.status == "completed"  # this process went on and finished
    assert clone.status == "queued" and clone.hyperparams == original.hyperparams

    with pytest.raises(ValueError, match="clone=False, exit_process=False"):
        Task.init(project_name="remote", task_name="bad").execute_remotely(
            "q", clone=False, exit_process=False
        )


# -- artifacts ----------------------------------------------------------------------------
def test_wildcard_folder_and_file_list_artifacts_come_back_as_a_folder(task, tmp_path):
    samples = tmp_path / "data_samples"
    (samples / "more").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "notes.txt", "more/c.jpg"):
        (samples / name).write_bytes(name.encode())
    task.upload_artifact("jpgs", str(samples / "*.jpg"))
    task.upload_artifact("all_jpgs", str(samples / "**" / "*.jpg"))
    task.upload_artifact("folder", samples)
    task.upload_artifact("two", [samples / "a.jpg", samples / "more" / "c.jpg"])
    task.upload_artifact("no_match", "nothing/*.xyz")  # matches no file: a plain string

    def listing(name: str) -> list[str]:
        folder = Path(task.artifacts[name].get())
        assert folder.is_dir() and Path(task.artifacts[name].get_local_copy()) == folder
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    assert listing("jpgs") == ["a.jpg", "b.jpg"]
    assert listing("all_jpgs") == ["a.jpg", "b.jpg", "more/c.jpg"]
    assert listing("folder") == ["a.jpg", "b.jpg", "more/c.jpg", "notes.txt"]
    assert listing("two") == ["a.jpg", "more/c.jpg"]
    assert (Path(task.artifacts["jpgs"].get()) / "a.jpg").read_bytes() == b"a.jpg"
    assert task.artifacts["no_match"].get() == "nothing/*.xyz"


def test_a_pil_image_is_stored_as_png(task):
    from PIL import Image

    image = Image.new("RGB", (4, 3), color=(200, 10, 10))
    view = task.upload_artifact("picture", image)
    assert view.type == "image" and view.url.endswith(".png")
    with open(view.get_local_copy(), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    back = task.artifacts["picture"].get()
    assert back.size == (4, 3) and back.getpixel((0, 0)) == (200, 10, 10)


def test_a_registered_dataframe_is_uploaded_again_when_it_changed(task, backend):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2]})
    task.register_artifact("train", frame, metadata={"split": "train"})
    first = task.artifacts["train"]
    assert first.get().equals(frame) and first.metadata == {"split": "train"}
    assert task.get_registered_artifacts() == {"train": frame}

    task.flush()  # nothing changed: nothing uploaded
    assert task.artifacts["train"].record.created == first.record.created
    frame.loc[2] = [3]
    task.flush()
    assert list(task.artifacts["train"].get()["a"]) == [1, 2, 3]
    frame.loc[3] = [4]
    task.close()
    assert list(task.artifacts["train"].get()["a"]) == [1, 2, 3, 4]

    task.unregister_artifact("train")
    assert task.get_registered_artifacts() == {}
    with pytest.raises(TypeError, match="pandas DataFrames"):
        task.register_artifact("x", [1, 2])


def test_get_tasks_with_clearmls_task_filter(backend):
    made = []
    for name, tags, kind in [
        ("train_a", ["nlp"], "training"),
        ("train_b", ["nlp", "big"], "training"),
        ("eval_a", ["nlp"], "testing"),
        ("prep", ["cv"], "data_processing"),
    ]:
        made.append(Task.create(project_name="filters", task_name=name, task_type=kind))
        made[-1].set_tags(tags)
    backend.enqueue(made[1].id, "q")

    def names(**kwargs):
        return [t.name for t in Task.get_tasks(project_name="filters", **kwargs)]

    assert names(task_name="train") == ["train_b", "train_a"]  # regex, newest first
    assert names(task_name="^train_a$") == ["train_a"]
    assert names(task_filter={"status": ["queued"]}) == ["train_b"]
    assert names(task_filter={"type": ["training", "testing"], "order_by": ["name"]}) == [
        "eval_a",
        "train_a",
        "train_b",
    ]
    assert names(tags=["nlp", "-big"]) == ["eval_a", "train_a"]
    assert names(
        task_filter={"tags": ["nlp"], "order_by": ["-name"], "page": 1, "page_size": 2}
    ) == ["eval_a"]
    assert names(task_filter={"id": [made[3].id, made[0].id]}) == ["prep", "train_a"]
    task = Task.get_task(
        project_name="filters", task_filter={"status": ["created"], "tags": ["cv"]}
    )
    assert task.name == "prep"
    assert Task.get_task(project_name="filters", task_name="train_a").name == "train_a"
    with pytest.raises(ValueError, match="unknown status 'running'"):
        Task.get_tasks(project_name="filters", task_filter={"status": ["running"]})
    with pytest.raises(ValueError, match="cannot order by"):
        Task.get_tasks(project_name="filters", task_filter={"order_by": ["-size"]})
