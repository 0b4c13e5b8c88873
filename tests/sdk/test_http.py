"""The SDK through a real ``agent server`` (HttpBackend, server-hosted artifact files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent import Task
from agent.store.factory import get_backend, reset_backends
from tests.server.live_server import LiveServer

TOKEN = "sdk-test-token"


@pytest.fixture
def server(
    agent_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LiveServer]:
    workdir = tmp_path / "server"
    with LiveServer(f"sqlite:///{workdir / 'server.db'}", workdir, token=TOKEN) as live:
        monkeypatch.setenv("AGENT_API_URL", live.url)
        monkeypatch.setenv("AGENT_API_TOKEN", TOKEN)
        reset_backends()
        yield live
        reset_backends()


def test_task_over_http(server: LiveServer):
    assert type(get_backend()).__name__ == "HttpBackend"
    task = Task.init(project_name="http", task_name="run", capture_output=False)
    params = task.connect({"lr": 0.1, "opt": {"name": "adam"}})
    view = task.upload_artifact("weights", np.arange(5))
    assert view.url.startswith(server.url + "/api/v1/files/")
    task.get_logger().report_scalar("loss", "train", 0.25, 3)
    task.close()

    again = Task.get_task(project_name="http", task_name="run")
    assert again.status == "completed" and params == {"lr": 0.1, "opt": {"name": "adam"}}
    assert again.get_parameters(cast=True) == {"General/lr": 0.1, "General/opt/name": "adam"}
    assert np.array_equal(again.artifacts["weights"].get(), np.arange(5))
    assert again.get_reported_scalars() == {"loss": {"train": {"x": [3], "y": [0.25]}}}


def test_script_under_agent_over_http(server: LiveServer, run_script):
    task = Task.create(project_name="http", task_name="remote")
    task.set_parameter("General/epochs", "4")
    task.mark_started()
    result = run_script(
        """
        import json
        from agent import Task
        task = Task.init()
        params = task.connect({"epochs": 1})
        task.upload_artifact("out", {"epochs": params["epochs"]})
        print(json.dumps(params))
        """,
        AGENT_TASK_ID=task.id,
        AGENT_API_URL=server.url,
        AGENT_API_TOKEN=TOKEN,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip()) == {"epochs": 4}
    assert task.artifacts["out"].get() == {"epochs": 4}


def test_models_over_http(server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from agent import InputModel, Model, OutputModel

    task = Task.create(project_name="http", task_name="train")
    weights = tmp_path / "model.pkl"
    weights.write_bytes(b"w" * 1000)
    model = OutputModel(task=task, name="m", framework="ScikitLearn")
    model.update_weights(weights, auto_delete_file=False)
    assert model.url.startswith(server.url + "/api/v1/files/blobs/sha256/")

    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "other-machine"))
    reset_backends()
    got = InputModel(model_id=model.id)
    local = Path(got.get_weights())
    assert local.read_bytes() == b"w" * 1000
    assert str(local).startswith(str(tmp_path / "other-machine"))
    assert [m.id for m in Model.query_models(project_name="http")] == [model.id]
    assert Task.get_task(task.id).models["output"]["m"].framework == "ScikitLearn"


def test_images_and_nan_scalars_over_http(server: LiveServer, tmp_path: Path, monkeypatch):
    import math

    import numpy as np

    from agent.files import blobs

    task = Task.create(project_name="http", task_name="reports")
    logger = task.get_logger()
    logger.report_scalar("loss", "train", float("nan"), 0)
    logger.report_scalar("loss", "train", float("-inf"), 1)
    logger.report_image("samples", "grid", 0, image=np.eye(3, dtype=np.uint8) * 255)
    task.flush()

    monkeypatch.setenv("AGENT_HOME", str(tmp_path / "other-machine"))
    reset_backends()
    again = Task.get_task(task.id)
    y = again.get_reported_scalars()["loss"]["train"]["y"]
    assert math.isnan(y[0]) and y[1] == float("-inf")
    [sample] = again.get_debug_samples()
    assert sample["url"].startswith(server.url + "/api/v1/files/blobs/sha256/")
    local = blobs.blob_path(sample["url"], sample["sha256"], sample["size"], "sample")
    assert str(local).startswith(str(tmp_path / "other-machine"))
    assert local.read_bytes()[:4] == b"\x89PNG"


def test_non_finite_parameters_and_metadata_round_trip_over_http(server: LiveServer):
    import math

    import numpy as np

    task = Task.create(project_name="http", task_name="nan params")
    params = task.connect({"lr": float("nan"), "clip": float("inf"), "ok": 1.5})
    task.upload_artifact("stats", {"n": 1}, metadata={"best": float("-inf")})
    task.get_logger().report_histogram("h", "s", np.array([1.0, np.nan, 3.0]), 0)
    task.close()
    assert math.isnan(params["lr"]) and params["clip"] == float("inf")
    again = Task.get_task(task.id)
    assert again.get_parameters()["General/lr"] == "nan"  # as text, as ClearML stores it
    from agent.sdk.parameters import cast_like

    assert cast_like(again.get_parameters(cast=True)["General/clip"], 1.0) == float("inf")
    assert again.artifacts["stats"].metadata == {"best": "-inf"}
    [plot] = again.get_reported_plots()
    assert plot["figure"]["data"][0]["y"] == [1.0, None, 3.0]  # a gap, as plotly draws it
