"""Hyperparameters and configuration: connect, stored values winning under an agent, casting."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import pytest

from agent import Task
from agent.sdk.parameters import cast_like, nest, normalize


@pytest.fixture
def task(backend) -> Task:
    return Task.create(project_name="p", task_name="params")


def _run_by_agent(task: Task, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TASK_ID", task.id)


class Color(Enum):
    red = "red"
    blue = "blue"


@pytest.mark.parametrize(
    ("stored", "original", "expected"),
    [
        ("7", 1, 7),
        ("7.0", 1, 7),
        (7.0, 1, 7),
        ("1e-3", 0.5, 0.001),
        (3, 0.5, 3.0),
        ("false", True, False),
        ("True", False, True),
        ("0", True, False),
        ("yes", False, True),
        (0, True, False),
        ("text", "x", "text"),
        (5, "x", "5"),
        ("[1, 2]", [0], [1, 2]),
        ("['a', 'b']", [], ["a", "b"]),
        ([1, 2], (0,), (1, 2)),
        ('{"a": 1}', {}, {"a": 1}),
        ("None", None, None),
        ("", None, None),
        ("anything", None, "anything"),
        ("blue", Color.red, Color.blue),
        ("/tmp/x", Path("/y"), Path("/tmp/x")),
    ],
)
def test_cast_like(stored, original, expected):
    value = cast_like(stored, original)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("stored", "original"), [("abc", 1), ("1.5", 1), ("maybe", True), ("x", 0.1), ("3", [1])]
)
def test_cast_like_refuses_what_does_not_fit(stored, original):
    with pytest.raises(ValueError, match="parameter 'General/p': cannot use the stored value"):
        cast_like(stored, original, "General/p")


def test_normalize_and_nest():
    assert normalize(
        {"Args/lr": 0.1, "epochs": 3, "opt": {"name": "adam", "betas": {"b1": 0.9}}}
    ) == {
        "Args": {"lr": 0.1},
        "General": {"epochs": 3},
        "opt": {"name": "adam", "betas/b1": 0.9},
    }
    assert nest({"a/b": 1, "a/c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}


def test_connect_stores_local_values(task):
    params = {"lr": 0.1, "epochs": 10, "opt": {"name": "adam", "beta": 0.9}, "layers": (64, 32)}
    assert task.connect(params) == params
    assert task.get_parameters(cast=True) == {
        "General/lr": 0.1,
        "General/epochs": 10,
        "General/opt/name": "adam",
        "General/opt/beta": 0.9,
        "General/layers": [64, 32],
    }
    assert task.get_parameters_as_dict(cast=True)["General"]["opt"] == {"name": "adam", "beta": 0.9}
    params["lr"] = 0.2
    task.connect(params)  # connecting again stores the change
    assert task.get_parameter("General/lr", cast=True) == 0.2


def test_connect_namespace_and_object(task):
    ns = argparse.Namespace(batch=32, name="run")
    task.connect(ns)

    @dataclass
    class Config:
        depth: int = 3
        dropout: float = 0.5

    cfg = Config()
    task.connect(cfg, name="Model")
    assert task.get_parameters(cast=True) == {
        "Args/batch": 32,
        "Args/name": "run",
        "Model/depth": 3,
        "Model/dropout": 0.5,
    }
    with pytest.raises(TypeError, match="connect\\(\\) takes a dict"):
        task.connect([1, 2])


def test_connect_under_agent_stored_values_win_with_types(task, monkeypatch):
    task.set_parameters(
        {
            "General": {
                "lr": "0.5",
                "epochs": "7",
                "shuffle": "false",
                "name": "stored",
                "layers": "[8, 4]",
                "opt/beta": "0.99",
                "extra": "new",
            },
            "Args": {"batch": "64"},
        }
    )
    _run_by_agent(task, monkeypatch)
    params = {"lr": 0.1, "epochs": 1, "shuffle": True, "name": "local", "layers": [1], "opt": {"beta": 0.9}, "kept": 5}  # fmt: skip
    task.connect(params)
    assert params == {
        "lr": 0.5,
        "epochs": 7,
        "shuffle": False,
        "name": "stored",
        "layers": [8, 4],
        "opt": {"beta": 0.99},
        "kept": 5,
        "extra": "new",
    }
    assert type(params["epochs"]) is int and type(params["lr"]) is float
    assert task.get_parameter("kept", cast=True) == 5  # a name the store lacked is stored
    ns = task.connect(argparse.Namespace(batch=32))
    assert ns.batch == 64


def test_connect_under_agent_of_another_task_stores_local_values(task, monkeypatch):
    task.set_parameter("lr", "0.5")
    monkeypatch.setenv("AGENT_TASK_ID", "someone-else")
    params = {"lr": 0.1}
    task.connect(params)
    assert params == {"lr": 0.1} and task.get_parameter("lr", cast=True) == 0.1


def test_connect_under_agent_reports_bad_values(task, monkeypatch):
    task.set_parameter("General/epochs", "many")
    _run_by_agent(task, monkeypatch)
    with pytest.raises(ValueError, match="'General/epochs'.*'many' as int"):
        task.connect({"epochs": 1})


def test_set_update_get_delete_parameters(task):
    task.set_parameters({"Args/a": 1, "General": {"b": 2}})
    task.set_parameters({"Args/c": 3})  # replaces everything
    assert task.get_parameters(cast=True) == {"Args/c": 3}
    task.update_parameters({"Args/d": 4, "e": 5})
    task.set_parameter("Args/c", 30)
    task.set_parameter("f", [1, 2])
    assert task.get_parameters(cast=True) == {
        "Args/c": 30,
        "Args/d": 4,
        "General/e": 5,
        "General/f": [1, 2],
    }
    assert (
        task.get_parameter("e", cast=True) == 5
        and task.get_parameter("nope", "dflt", cast=True) == "dflt"
    )
    assert task.delete_parameter("Args/d") and not task.delete_parameter("Args/d")
    assert task.get_parameters_as_dict(cast=True) == {
        "Args": {"c": 30},
        "General": {"e": 5, "f": [1, 2]},
    }


def test_connect_configuration_dict(task, monkeypatch):
    config = {"model": {"depth": 3}, "paths": ["a", "b"]}
    assert task.connect_configuration(config, name="Model") is config
    assert json.loads(task.data.configuration["Model"]) == config
    assert task.get_configuration_object_as_dict("Model") == config

    task.set_configuration_object("Model", config_dict={"model": {"depth": 9}})
    _run_by_agent(task, monkeypatch)
    local = {"model": {"depth": 3}, "paths": ["a"]}
    task.connect_configuration(local, name="Model")
    assert local == {"model": {"depth": 9}}


def test_connect_configuration_toml_text_under_agent(task, monkeypatch):
    task.set_configuration_object("General", config_text="[train]\nlr = 0.5\n")
    _run_by_agent(task, monkeypatch)
    assert task.connect_configuration({"train": {"lr": 0.1}}) == {"train": {"lr": 0.5}}


def test_connect_configuration_file(task, monkeypatch, tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\n")
    assert task.connect_configuration(path, name="yaml") == path
    assert task.get_configuration_object("yaml") == "lr: 0.1\n"
    assert task.connect_configuration(str(path), name="yaml") == str(path)

    task.set_configuration_object("yaml", config_text="lr: 0.9\n")
    _run_by_agent(task, monkeypatch)
    local = task.connect_configuration(str(path), name="yaml")
    assert isinstance(local, str) and local != str(path) and local.endswith("config.yaml")
    assert Path(local).read_text() == "lr: 0.9\n"
    assert path.read_text() == "lr: 0.1\n"  # the local file is left alone
    with pytest.raises(FileNotFoundError):
        task.connect_configuration(tmp_path / "missing.yaml", name="other")
