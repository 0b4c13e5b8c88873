"""The Slurm commands the glue uses (sbatch, scontrol, scancel), and their output parsed.

Only this module runs Slurm's tools. There is no ``sacct`` without an accounting
database, so a job's state comes from ``scontrol show job -o`` (slurmctld keeps a finished
job for ``MinJobAge`` seconds) and, once slurmctld has forgotten it, from the job
completion log of ``JobCompType=jobcomp/filetxt`` when this host can read it.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.core.errors import AgentError

#: Seconds a Slurm command may take before the glue gives up on it (this round).
COMMAND_TIMEOUT_S = 30.0
#: Job states in which the job has not ended yet.
ACTIVE_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
)
_KEY = r"[A-Za-z][A-Za-z0-9_/:.]*"
_FIELD = re.compile(rf"(?:^|\s)({_KEY})=(.*?)(?=\s+{_KEY}=|\s*$)")


class SlurmError(AgentError):
    """A Slurm command failed (or is not installed here)."""


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """One job as slurmctld (or the job completion log) reports it."""

    job_id: str
    state: str
    reason: str = ""
    node: str = ""
    exit_code: int = 0
    signal: int = 0

    @property
    def active(self) -> bool:
        """True while the job has not ended."""
        return self.state in ACTIVE_STATES


def parse_records(text: str) -> list[dict[str, str]]:
    """``Key=Value`` records, one a line (``scontrol show ... -o``, the jobcomp log)."""
    records = []
    for line in text.splitlines():
        fields = {m.group(1): m.group(2) for m in _FIELD.finditer(line.strip())}
        if fields:
            records.append(fields)
    return records


def job_from_record(record: Mapping[str, str]) -> SlurmJob:
    """A `SlurmJob` from one record of ``scontrol show job -o`` or the jobcomp log."""
    code, _, sig = record.get("ExitCode", "0:0").partition(":")
    state = record.get("JobState", "UNKNOWN").split()[0]
    node = record.get("BatchHost") or record.get("NodeList", "")
    return SlurmJob(
        job_id=record["JobId"],
        state=state.rstrip("+"),
        reason=record.get("Reason", "None"),
        node="" if node in ("(null)", "None") else node,
        exit_code=_int(code),
        signal=_int(sig),
    )


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


class SlurmCommands:
    """Runs Slurm's client commands on this host (a login node, or the cluster's only one).

    Args:
        jobcomp_log: the jobcomp/filetxt log to read finished jobs from; None reads its
            path from ``scontrol show config`` (when JobCompType is jobcomp/filetxt).
        timeout: seconds one command may take.
    """

    def __init__(self, jobcomp_log: str | Path | None = None, timeout: float = COMMAND_TIMEOUT_S):
        self.timeout = timeout
        self._jobcomp_log = Path(jobcomp_log) if jobcomp_log else None
        self._config_read = jobcomp_log is not None

    def submit(
        self, script: str, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> str:
        """``sbatch --parsable ARGS`` with ``script`` on stdin; the new job's id."""
        out = self._run(["sbatch", "--parsable", *args], stdin=script, env=env)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {out.strip()!r}")
        return job_id

    def jobs(self) -> dict[str, SlurmJob]:
        """Every job slurmctld knows now (pending, running, recently ended), by id."""
        out = self._run(["scontrol", "show", "job", "-o"])
        found = {}
        for record in parse_records(out):
            if "JobId" in record:
                job = job_from_record(record)
                found[job.job_id] = job
        return found

    def finished_job(self, job_id: str) -> SlurmJob | None:
        """The job's end from the job completion log, or None (not there, or no log here)."""
        path = self._jobcomp_path()
        if path is None:
            return None
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return None
        last = None
        for record in parse_records(text):
            if record.get("JobId") == job_id:
                last = record
        return job_from_record(last) if last else None

    def cancel(self, job_id: str) -> None:
        """``scancel JOB``: Slurm signals the job's processes, then kills them."""
        self._run(["scancel", job_id])

    def _jobcomp_path(self) -> Path | None:
        if not self._config_read:
            self._config_read = True
            config = {}
            for record in self._config_lines():
                config.update(record)
            if config.get("JobCompType") == "jobcomp/filetxt" and config.get("JobCompLoc"):
                self._jobcomp_log = Path(config["JobCompLoc"])
        return self._jobcomp_log

    def _config_lines(self) -> list[dict[str, str]]:
        try:
            out = self._run(["scontrol", "show", "config"])
        except SlurmError:
            return []
        pairs = []
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                pairs.append({key.strip(): value.strip()})
        return pairs

    def _run(
        self, argv: list[str], stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        try:
            result = subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=dict(env) if env is not None else None,
                check=False,
            )
        except FileNotFoundError as exc:
            raise SlurmError(
                f"`{argv[0]}` not found: run the glue where Slurm's client commands are installed"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"`{' '.join(argv)}` took over {self.timeout:g} s") from exc
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip() or f"exit code {result.returncode}"
            raise SlurmError(f"`{' '.join(argv)}` failed: {why}")
        return result.stdout
