"""The model registry's part of the Backend contract, on every backend kind (conftest)."""

from __future__ import annotations

import pytest

from agent.core.errors import InvalidInput, NotFound
from agent.core.models import Model, Task
from agent.store.base import Backend


def test_a_model_is_registered_read_back_and_changed(backend: Backend, uid: str) -> None:
    task = backend.create_task(Task(name=f"train-{uid}", project=f"p-{uid}"))
    sha = (uid * 9)[:64].ljust(64, "0")
    made = backend.create_model(
        Model(
            name="resnet", project=f"p-{uid}", framework="PyTorch", task=task.id,
            uri="file:///blobs/x", sha256=sha, size=42, filename="model.pt",
            tags=["best"], design="layers: 3", labels={"cat": 0, "dog": 1},
            metadata={"epochs": {"value": 3}}, iteration=7,
        )
    )  # fmt: skip
    assert made.created > 0 and made.last_update >= made.created
    got = backend.get_model(made.id)
    assert got == made
    assert got.labels == {"cat": 0, "dog": 1} and got.package is False

    changed = backend.update_model(made.id, published=True, tags=["best", "prod"], comment="ok")
    assert changed.published is True and changed.tags == ["best", "prod"]
    assert changed.comment == "ok" and changed.name == "resnet"
    assert changed.last_update >= made.last_update
    # a retried create (same id) gets the model that is there
    assert backend.create_model(made).id == made.id


def test_models_are_queried_by_project_name_task_ids_and_hash(backend: Backend, uid: str) -> None:
    project = f"q-{uid}"
    task = backend.create_task(Task(name="t", project=project))
    a = backend.create_model(Model(name="a", project=project, task=task.id, sha256="1" * 64))
    b = backend.create_model(Model(name="b", project=project, published=True))
    c = backend.create_model(Model(name="a", project=project, archived=True))
    backend.update_model(a.id, comment="touched")  # now the last updated

    assert [m.id for m in backend.query_models(project=project)] == [a.id, b.id]
    assert {m.id for m in backend.query_models(project=project, include_archived=True)} == {
        a.id, b.id, c.id,
    }  # fmt: skip
    assert [m.id for m in backend.query_models(project=project, name="a")] == [a.id]
    assert [m.id for m in backend.query_models(task=task.id)] == [a.id]
    assert [m.id for m in backend.query_models(project=project, only_published=True)] == [b.id]
    assert {m.id for m in backend.query_models(ids=[b.id, c.id], include_archived=True)} == {
        b.id, c.id,
    }  # fmt: skip
    assert backend.query_models(ids=[]) == []
    assert [m.id for m in backend.query_models(sha256="1" * 64, project=project)] == [a.id]
    assert len(backend.query_models(project=project, limit=1)) == 1

    backend.delete_model(b.id)
    with pytest.raises(NotFound):
        backend.get_model(b.id)
    backend.delete_model(b.id)  # gone already: not an error


def test_bad_model_changes_are_refused(backend: Backend, uid: str) -> None:
    model = backend.create_model(Model(name=f"m-{uid}"))
    with pytest.raises(InvalidInput):
        backend.update_model(model.id, id="other")
    with pytest.raises(InvalidInput):
        backend.update_model(model.id, name="x" * 300)
    with pytest.raises(NotFound):
        backend.update_model("0" * 32, comment="x")
    with pytest.raises(NotFound):
        backend.get_model("0" * 32)
