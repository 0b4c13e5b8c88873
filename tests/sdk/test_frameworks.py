"""Automatic framework logging: models saved with joblib, pickle or torch are registered."""

from __future__ import annotations

import importlib.util
import json
import textwrap

import pytest

from agent.sdk.frameworks import should_connect

_REPORT = """
    from agent.sdk.task import Task as _T
    import json as _json
    _task = _T.current_task()
    print("MODELS " + _json.dumps([
        {"name": m.name, "framework": m.framework, "size": m.size, "sha256": m.sha256}
        for m in _task.models["output"]
    ]))
"""


def _with_report(source: str) -> str:
    return textwrap.dedent(source) + textwrap.dedent(_REPORT)


def _models(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("MODELS "))
    return json.loads(line[len("MODELS ") :])


def test_clearml_reading_of_auto_connect_frameworks():
    assert should_connect(True, "joblib") and not should_connect(False, "joblib")
    assert should_connect({"pytorch": False}, "joblib")  # a missing key means True
    assert not should_connect({"joblib": False}, "joblib")
    assert not should_connect({}, "joblib")  # an empty dict means none


def test_joblib_dump_in_a_task_script_registers_an_output_model(run_script):
    result = run_script(
        _with_report(
            """
        from agent import Task
        task = Task.init(project_name="zoo", task_name="fit")
        import joblib
        from sklearn.linear_model import LogisticRegression
        from sklearn.datasets import load_iris
        X, y = load_iris(return_X_y=True)
        model = LogisticRegression(max_iter=200).fit(X, y)
        joblib.dump(model, "iris.pkl")
        joblib.dump(model, "iris.pkl")  # saved again: the same model, updated
        """
        )
    )
    models = _models(result)
    assert [(m["name"], m["framework"]) for m in models] == [("fit - iris", "ScikitLearn")]
    assert models[0]["size"] > 0 and len(models[0]["sha256"]) == 64


def test_pickle_dump_to_a_file_registers_but_to_memory_does_not(run_script):
    result = run_script(
        _with_report(
            """
        import io, pickle
        from agent import Task
        task = Task.init(project_name="zoo", task_name="fit")
        with open("weights.bin", "wb") as f:
            pickle.dump({"w": [1, 2, 3]}, f)
        pickle.dump({"w": 1}, io.BytesIO())
        import pandas as pd
        pd.DataFrame({"a": [1]}).to_pickle("frame.pkl")  # a library's pickle: no model
        import joblib
        square = joblib.Memory("cache", verbose=0).cache(lambda x: x * x)
        square(3)  # joblib's own cache files: no model
        """
        )
    )
    assert [(m["name"], m["framework"]) for m in _models(result)] == [("fit - weights", "Pickle")]


@pytest.mark.parametrize("spec", ["False", "{'joblib': False, 'pickle': False}", "{}"])
def test_auto_connect_frameworks_turns_the_bindings_off(run_script, spec):
    result = run_script(
        _with_report(
            f"""
        import pickle
        from agent import Task
        task = Task.init(project_name="zoo", task_name="fit", auto_connect_frameworks={spec})
        import joblib
        joblib.dump([1, 2], "a.pkl")
        with open("b.pkl", "wb") as f:
            pickle.dump([3], f)
        """
        )
    )
    assert _models(result) == []


def test_without_a_task_a_save_is_left_alone(run_script, tmp_path):
    result = run_script(
        """
        from agent.sdk import frameworks
        frameworks.connect(True)
        import joblib
        joblib.dump([1], "x.pkl")
        print("OK", joblib.load("x.pkl"))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "OK [1]" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_save_registers_a_pytorch_model(run_script):
    result = run_script(
        _with_report(
            """
        from agent import Task
        import torch
        task = Task.init(project_name="zoo", task_name="fit")
        torch.save(torch.nn.Linear(4, 3).state_dict(), "net.pt")
        """
        )
    )
    assert [(m["name"], m["framework"]) for m in _models(result)] == [("fit - net", "PyTorch")]


_REPORTS = """
    _plots = [(p["title"], p["series"], p["iteration"], p["figure"]["media"]["kind"])
              for p in _task.get_reported_plots()]
    _scalars = {t: {s: v["y"] for s, v in ss.items()}
                for t, ss in _task.get_reported_scalars().items()}
    print("REPORTS " + _json.dumps({"plots": _plots, "scalars": _scalars}))
"""


def _reports(result) -> dict:
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("REPORTS "))
    return json.loads(line[len("REPORTS ") :])


def test_matplotlib_figures_shown_or_saved_are_reported(run_script):
    result = run_script(
        _with_report(
            """
        from agent import Task
        task = Task.init(project_name="zoo", task_name="plots")
        import matplotlib.pyplot as plt
        plt.plot([1, 2, 3], [2, 4, 3])
        plt.title("training curve")
        plt.show()
        plt.show()  # unchanged: not reported again
        plt.plot([3, 2, 1])
        plt.show()  # changed: the next iteration of the same plot
        fig, ax = plt.subplots()
        ax.scatter([1, 2], [2, 1])
        fig.savefig("scatter.png")
        """
        )
        + textwrap.dedent(_REPORTS),
        MPLBACKEND="Agg",
    )
    assert _reports(result)["plots"] == [
        ["training curve", "plot", 0, "plot_image"],
        ["training curve", "plot", 1, "plot_image"],
        ["untitled 01", "plot", 0, "plot_image"],
    ]


def test_matplotlib_binding_can_be_turned_off(run_script):
    result = run_script(
        _with_report(
            """
        from agent import Task
        task = Task.init(project_name="zoo", task_name="plots",
                         auto_connect_frameworks={"matplotlib": False})
        import matplotlib.pyplot as plt
        plt.plot([1, 2])
        plt.show()
        """
        )
        + textwrap.dedent(_REPORTS),
        MPLBACKEND="Agg",
    )
    assert _reports(result)["plots"] == []


def test_tensorboardx_scalars_and_images_are_reported(run_script, tmp_path):
    result = run_script(
        _with_report(
            f"""
        import numpy as np
        from agent import Task
        task = Task.init(project_name="zoo", task_name="tb")
        from tensorboardX import SummaryWriter
        writer = SummaryWriter({str(tmp_path / "runs")!r})
        for step, loss in enumerate([1.0, 0.5, float("nan")]):
            writer.add_scalar("loss/train", loss, step)
        writer.add_scalar("lr", 0.1, 0)
        writer.add_scalars("accuracy", {{"train": 0.9, "val": 0.8}}, 2)
        writer.add_image("inputs/first", np.zeros((3, 4, 5), dtype=np.uint8), 0)
        writer.close()
        samples = task.get_debug_samples()
        print("SAMPLES", [(s["metric"], s["variant"], s["iter"]) for s in samples])
        """
        )
        + textwrap.dedent(_REPORTS)
    )
    scalars = _reports(result)["scalars"]
    assert (
        scalars["loss"]["train"][:2] == [1.0, 0.5]
        and scalars["loss"]["train"][2] != scalars["loss"]["train"][2]
    )
    assert scalars["lr"] == {"lr": [0.1]}
    assert scalars["accuracy"] == {"train": [0.9], "val": [0.8]}
    assert "SAMPLES [('inputs', 'first', 0)]" in result.stdout
    assert list((tmp_path / "runs").iterdir())  # TensorBoard's own event files are still written
