"""The model registry of :class:`~agent.store.sql.SqlBackend`: ClearML's models table.

A model is its own record (not an artifact of a task): it has an id that other tasks
name (``InputModel(model_id=...)``), it outlives the task that made it, and a task
links to models it used or made through its ``models`` runtime property (see
:mod:`agent.sdk.model`). The weights are a content-addressed blob in file storage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from agent.core.errors import InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import MODEL_UPDATABLE_FIELDS, Model, now
from agent.core.values import check_json

sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")

_BOOL_COLUMNS = ("package", "published", "archived")
_MAX_NAME = 255


class ModelRegistry:
    """Mixed into SqlBackend: create, read, change and query models (SQLAlchemy Core)."""

    def create_model(self, model: Model) -> Model:
        _validate(dataclasses.asdict(model))
        stamp = now()
        model = dataclasses.replace(model, created=model.created or stamp, last_update=stamp)
        try:
            with self._write() as conn:  # type: ignore[attr-defined]
                conn.execute(sa.insert(t.models).values(**_to_row(model)))
        except sa.exc.IntegrityError:
            # The id is there already: a client's retry of this same create (ids are fresh
            # uuids), which gets the model the first try made.
            return self.get_model(model.id)
        return model

    def get_model(self, model_id: str) -> Model:
        with self._read() as conn:  # type: ignore[attr-defined]
            row = conn.execute(sa.select(t.models).where(t.models.c.id == model_id)).mappings()
            found = row.first()
        if found is None:
            raise NotFound(f"no model with id {model_id!r}")
        return _from_row(found)

    def update_model(self, model_id: str, **fields: Any) -> Model:
        unknown = sorted(set(fields) - MODEL_UPDATABLE_FIELDS)
        if unknown:
            raise InvalidInput(
                f"cannot change model field(s) {unknown}; one of {sorted(MODEL_UPDATABLE_FIELDS)}"
            )
        _validate(fields)
        values = {k: (int(bool(v)) if k in _BOOL_COLUMNS else v) for k, v in fields.items()}
        values["last_update"] = now()
        with self._write() as conn:  # type: ignore[attr-defined]
            done = conn.execute(
                sa.update(t.models).where(t.models.c.id == model_id).values(**values)
            )
            if done.rowcount == 0:
                raise NotFound(f"no model with id {model_id!r}")
        return self.get_model(model_id)

    def query_models(
        self,
        project: str | None = None,
        name: str | None = None,
        task: str | None = None,
        ids: Sequence[str] | None = None,
        sha256: str | None = None,
        only_published: bool = False,
        include_archived: bool = False,
        limit: int | None = None,
    ) -> list[Model]:
        c = t.models.c
        query = sa.select(t.models).order_by(c.last_update.desc(), c.id)
        for column, value in ((c.project, project), (c.name, name), (c.task, task)):
            if value is not None:
                query = query.where(column == value)
        if sha256:
            query = query.where(c.sha256 == sha256)
        if ids is not None:
            query = query.where(c.id.in_(list(ids)))
        if only_published:
            query = query.where(c.published == 1)
        if not include_archived:
            query = query.where(c.archived == 0)
        if limit is not None:
            query = query.limit(max(0, int(limit)))
        with self._read() as conn:  # type: ignore[attr-defined]
            return [_from_row(r) for r in conn.execute(query).mappings()]

    def delete_model(self, model_id: str) -> None:
        with self._write() as conn:  # type: ignore[attr-defined]
            conn.execute(sa.delete(t.models).where(t.models.c.id == model_id))


def _validate(values: dict[str, Any]) -> None:
    check_json(values, "model")
    for key in ("name", "project", "filename"):
        if len(str(values.get(key) or "")) > _MAX_NAME:
            raise InvalidInput(f"model {key} is longer than {_MAX_NAME} characters")
    model_id = values.get("id")
    if model_id is not None and (not isinstance(model_id, str) or not 0 < len(model_id) <= 64):
        raise InvalidInput(f"bad model id {model_id!r}: use 1 to 64 characters")
    labels = values.get("labels")
    if labels is not None and not all(isinstance(v, int) for v in dict(labels).values()):
        raise InvalidInput("model labels map names to integer ids, e.g. {'cat': 0, 'dog': 1}")


def _to_row(model: Model) -> dict[str, Any]:
    row = dataclasses.asdict(model)
    for key in _BOOL_COLUMNS:
        row[key] = int(bool(row[key]))
    return row


def _from_row(row: Any) -> Model:
    values = dict(row)
    for key in _BOOL_COLUMNS:
        values[key] = bool(values[key])
    return Model(**values)
