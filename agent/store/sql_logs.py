"""Logs, metrics and artifacts of :class:`~agent.store.sql.SqlBackend`: a task's log
lines (kept up to a cap), scalars, plots and artifact records.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

from agent.core.errors import InvalidInput, NotFound
from agent.core.lazy import LazyModule
from agent.core.models import Artifact, LogLine, now, scalar_number
from agent.core.secrets import redact
from agent.core.values import check_json, cut_log_line
from agent.store.tx import Tx

sa = LazyModule("sqlalchemy")
t = LazyModule("agent.store.schema")
#: The largest PostgreSQL integer (the type of a log line's seq).
PG_INT_MAX = 2**31 - 1
#: A log line as an append takes it: its text, ``(ts, level, text)``, or a dict of those.
LogInput = str | tuple[float, str, str] | dict[str, Any]


class SqlLogs:
    """Mixed into SqlBackend: what a task reports as it runs."""

    # -- logs and metrics ---------------------------------------------------------
    def append_logs(self, task_id: str, lines: Iterable[str | tuple[float, str, str]]) -> int:
        rows = [_log_row(line) for line in lines]
        cap = self.max_log_lines
        if rows and not self.is_sqlite:
            last = self._append_in_one(task_id, rows, cap)
            if last is not None:
                return last
        with self._tx_write() as tx:
            if tx.first("LOCK_TASK", {"task_id": task_id}) is None:
                raise NotFound(f"no task with id '{task_id}'")
            last = tx.scalar("LAST_LOG_SEQ", {"task_id": task_id}) or 0
            if last + len(rows) < cap:
                tx.run(
                    "INSERT_LOG",
                    [dict(task_id=task_id, seq=last + i + 1, **row) for i, row in enumerate(rows)],
                )
                return last + len(rows)
            return self._append_past_cap(tx, task_id, rows, last, cap)

    def append_logs_many(
        self, appends: Sequence[tuple[str, Sequence[LogInput]]]
    ) -> list[int | Exception]:
        """Several appends (``(task_id, lines)`` each), as :meth:`append_logs` would make
        them one after another: for each, the last seq of its task's log after it, or
        the error it met. On PostgreSQL they go in as one statement
        (``statements.APPEND_LOGS_MANY``): one round trip and one commit for all (the
        server's log lane gathers the appends that arrive while it is busy); those the
        statement leaves (a task missing, a log at its cap, an empty append, another
        append of one of the tasks at the same moment) take the general path, each in
        turn."""
        answers: list[int | Exception | None] = [None] * len(appends)
        if not self.is_sqlite and len(appends) > 1:
            self._append_many_in_one(appends, answers)
        for i, (task_id, lines) in enumerate(appends):
            if answers[i] is None:
                try:
                    answers[i] = self.append_logs(task_id, lines)
                except Exception as exc:  # this append's error: the others' stand
                    answers[i] = exc
        return answers  # type: ignore[return-value]  # every one answered above

    def _append_many_in_one(
        self,
        appends: Sequence[tuple[str, Sequence[LogInput]]],
        answers: list[int | Exception | None],
    ) -> None:
        """PostgreSQL: the appends in one statement; fills ``answers`` for those in it."""
        task_ids: list[str] = []
        ts: list[float] = []
        levels: list[str] = []
        texts: list[str] = []
        counts: list[int] = []
        for task_id, lines in appends:
            try:
                rows = [_log_row(line) for line in lines]
            except Exception:  # left for the general path, which reports it
                rows = []
            counts.append(len(rows))
            for row in rows:
                task_ids.append(task_id)
                ts.append(row["ts"])
                levels.append(row["level"])
                texts.append(row["text"])
        params = {
            "task_ids": task_ids,
            "ts": ts,
            "levels": levels,
            "texts": texts,
            "cap": min(self.max_log_lines, PG_INT_MAX),
        }
        try:
            with self._pg_pool().autocommit() as tx:
                new = tx.all("APPEND_LOGS_MANY", params)
        except Exception as exc:
            import psycopg  # PostgreSQL's path: psycopg is loaded

            # Refused, and so not committed: a key taken meanwhile (see above), a deadlock
            # with a write that locks tasks in another order, a value PostgreSQL refuses.
            # Each append then goes alone, and hears its own error if it has one. A lost
            # connection may have committed the batch: that is every append's error.
            rolled_back = (getattr(exc, "sqlstate", None) or "").startswith("40")  # class 40
            if not (isinstance(exc, psycopg.IntegrityError | psycopg.DataError) or rolled_back):
                raise
            return  # all on the general path
        # Each task's lines went in after its last one, in the order of the appends: each
        # append's last seq counts up from the one before the task's first new line.
        seq: dict[str, int] = {}
        for row in new:
            task_id = row["task_id"]
            seq[task_id] = min(seq.get(task_id, row["seq"]), row["seq"] - 1)
        for i, ((task_id, _lines), count) in enumerate(zip(appends, counts, strict=True)):
            if task_id in seq and count:
                seq[task_id] += count
                answers[i] = seq[task_id]

    def _append_in_one(self, task_id: str, rows: list[dict[str, Any]], cap: int) -> int | None:
        """PostgreSQL: the lines in one statement (``statements.APPEND_LOGS``); the last
        seq, or None for the general path (no such task, a log at its cap, or another
        append of this task at the same moment)."""
        params = {
            "task_id": task_id,
            "ts": [row["ts"] for row in rows],
            "levels": [row["level"] for row in rows],
            "texts": [row["text"] for row in rows],
            "cap": min(cap, PG_INT_MAX),  # a larger cap is no cap for an integer seq
        }
        try:
            with self._pg_pool().autocommit() as tx:
                seqs = [row["seq"] for row in tx.all("APPEND_LOGS", params)]
        except Exception as exc:
            from psycopg.errors import UniqueViolation  # PostgreSQL's path: psycopg is loaded

            if not isinstance(exc, UniqueViolation):
                raise
            return None
        return max(seqs) if seqs else None

    def _append_past_cap(
        self, tx: Tx, task_id: str, rows: list[dict[str, Any]], last: int, cap: int
    ) -> int:
        """The log is full: lines up to ``cap - 1`` go in, and line ``cap`` says how many
        were dropped (updated as more are)."""
        kept = rows[: max(0, cap - 1 - last)]
        tx.run(
            "INSERT_LOG",
            [dict(task_id=task_id, seq=last + i + 1, **row) for i, row in enumerate(kept)],
        )
        dropped = len(rows) - len(kept)
        if last >= cap:  # the marker is there already: count these too
            marker = tx.first("LOG_LINE", {"task_id": task_id, "seq": cap})
            dropped += _dropped_count(marker["text"] if marker else "")
            tx.run(
                "UPDATE_LOG_TEXT",
                {"log_task": task_id, "log_seq": cap, "text": _cap_text(cap, dropped)},
            )
        elif dropped:
            marker = dict(ts=now(), level="warning", text=_cap_text(cap, dropped))
            tx.run("INSERT_LOG", [dict(task_id=task_id, seq=cap, **marker)])
        return min(cap, last + len(rows))

    def get_logs(
        self,
        task_id: str,
        after: int = 0,
        limit: int = 10000,
        before: int | None = None,
        newest: bool = False,
        contains: str | None = None,
    ) -> list[LogLine]:
        logs = t.logs
        where = [logs.c.task_id == task_id, logs.c.seq > int(after)]
        if before is not None:
            where.append(logs.c.seq < int(before))
        if contains:
            text = sa.func.lower(logs.c.text)
            where.append(text.contains(contains.lower(), autoescape=True))
        query = (
            sa.select(logs)
            .where(sa.and_(*where))
            .order_by(logs.c.seq.desc() if newest else logs.c.seq)
            .limit(max(1, min(int(limit), 100000)))
        )
        with self._read() as conn:
            self._require(conn, task_id)
            lines = [
                LogLine(seq=r["seq"], ts=r["ts"], level=r["level"], text=r["text"])
                for r in conn.execute(query).mappings()
            ]
        return lines[::-1] if newest else lines

    def report_scalars(self, task_id: str, points: Iterable[tuple[str, str, int, float]]) -> None:
        rows = []
        for title, series, iteration, value in points:
            rows.append(
                dict(
                    task_id=task_id,
                    title=str(title),
                    series=str(series),
                    iteration=int(iteration),
                    value=_scalar_value(value),
                )
            )
        with self._tx_write() as tx:
            self._require(tx, task_id)
            tx.run("INSERT_SCALAR", rows)

    def get_scalars(self, task_id: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
        query = (
            sa.select(t.scalars)
            .where(t.scalars.c.task_id == task_id)
            .order_by(t.scalars.c.title, t.scalars.c.series, t.scalars.c.iteration)
        )
        result: dict[str, dict[str, list[tuple[int, float]]]] = {}
        with self._read() as conn:
            self._require(conn, task_id)
            for r in conn.execute(query).mappings():
                value = _NAN if r["value"] is None else r["value"]
                result.setdefault(r["title"], {}).setdefault(r["series"], []).append(
                    (r["iteration"], value)
                )
        return result

    def report_plot(
        self, task_id: str, title: str, series: str, iteration: int, figure: dict[str, Any]
    ) -> None:
        if not isinstance(figure, dict):
            raise InvalidInput("a plot's figure must be a JSON object")
        check_json(figure, f"plot {title!r}/{series!r}")
        key = dict(task_id=task_id, title=str(title), series=str(series), iteration=int(iteration))
        with self._write() as conn:
            self._require(conn, task_id)
            conn.execute(
                sa.delete(t.plots).where(
                    sa.and_(*(getattr(t.plots.c, k) == v for k, v in key.items()))
                )
            )
            conn.execute(sa.insert(t.plots).values(figure=figure, reported=now(), **key))

    def get_plots(self, task_id: str) -> list[dict[str, Any]]:
        query = sa.select(t.plots).where(t.plots.c.task_id == task_id).order_by(t.plots.c.reported)
        with self._read() as conn:
            self._require(conn, task_id)
            return [
                dict(
                    title=r["title"],
                    series=r["series"],
                    iteration=r["iteration"],
                    figure=r["figure"],
                )
                for r in conn.execute(query).mappings()
            ]

    # -- artifacts ----------------------------------------------------------------
    def add_artifact(self, task_id: str, artifact: Artifact) -> Artifact:
        if (
            not artifact.name
            or "/" in artifact.name
            or "\\" in artifact.name
            or artifact.name in (".", "..")
        ):
            raise InvalidInput(
                f"bad artifact name '{artifact.name}': use a plain name without '/' or '..'"
            )
        artifact = dataclasses.replace(artifact, created=artifact.created or now())
        values = dataclasses.asdict(artifact)
        check_json(values, f"artifact {artifact.name!r}")
        with self._tx_write() as tx:
            self._require(tx, task_id, lock=True)
            tx.run("DELETE_ARTIFACT", {"task_id": task_id, "name": artifact.name})
            tx.run("INSERT_ARTIFACT", {"task_id": task_id, **values})
            tx.run("TOUCH_TASK", {"task_id": task_id, "last_update": now()})
        return artifact

    def get_artifacts(self, task_id: str) -> dict[str, Artifact]:
        with self._tx_read() as tx:
            self._require(tx, task_id)
            return self._artifacts(tx, task_id)

    def _artifacts(self, tx: Tx, task_id: str) -> dict[str, Artifact]:
        return {r["name"]: _row_to_artifact(r) for r in tx.all("ARTIFACTS", {"task_id": task_id})}

    def find_artifact_by_hash(self, sha256: str) -> Artifact | None:
        if not sha256:  # artifacts without a hash must not match each other
            return None
        with self._read() as conn:
            row = (
                conn.execute(sa.select(t.artifacts).where(t.artifacts.c.sha256 == sha256).limit(1))
                .mappings()
                .first()
            )
        return _row_to_artifact(row) if row else None


def _row_to_artifact(row: Any) -> Artifact:
    return Artifact(**{k: row[k] for k in row.keys() if k != "task_id"})


def _log_row(line: str | tuple[float, str, str] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(line, str):
        return dict(ts=now(), level="info", text=_log_text(line))
    if isinstance(line, dict):
        return dict(
            ts=float(line.get("ts") or now()),
            level=str(line.get("level", "info")),
            text=_log_text(line["text"]),
        )
    ts, level, text = line
    return dict(ts=float(ts), level=str(level), text=_log_text(text))


def _log_text(text: Any) -> str:
    # PostgreSQL text cannot hold NUL; a process printing one must not lose its log batch.
    return cut_log_line(redact(str(text)).replace("\x00", "\ufffd"))


_NAN = float("nan")


def _scalar_value(value: Any) -> float | None:
    """A scalar's column value: NaN is stored as NULL (SQLite has no NaN; PostgreSQL
    does, but one encoding serves both), infinities as they are."""
    number = scalar_number(value)
    return None if math.isnan(number) else number


#: Lines a task's log keeps (AGENT_MAX_LOG_LINES); line N says how many more were dropped.
DEFAULT_MAX_LOG_LINES = 1_000_000
_CAP_TEXT = "[agent] the log reached its cap of {cap} lines: {dropped} later line(s) dropped"
_DROPPED = re.compile(r": ([0-9]+) later line")


def _cap_text(cap: int, dropped: int) -> str:
    return _CAP_TEXT.format(cap=cap, dropped=dropped)


def _dropped_count(text: str) -> int:
    match = _DROPPED.search(text)
    return int(match.group(1)) if match else 0


def _max_log_lines() -> int:
    value = os.environ.get("AGENT_MAX_LOG_LINES", "")
    try:
        return max(2, int(value)) if value else DEFAULT_MAX_LOG_LINES
    except ValueError:
        raise InvalidInput(f"AGENT_MAX_LOG_LINES={value!r} is not a number of lines") from None
