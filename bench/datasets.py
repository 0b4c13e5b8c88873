"""Datasets benchmark: a version of 10,000 small and 20 large files, its copies, a child.

    python bench/datasets.py [--small 10000] [--large 20] [--large-mb 50] [--change-pct 1]
                             [--no-clearml] [--workdir DIR] [--keep]

On a generated tree (``--small`` files of 1-8 KiB of random bytes in 100 folders,
``--large`` files of ``--large-mb`` MiB), with ``from agent import Dataset``:

(a) a new version: ``add_files`` (hashing), ``upload`` (blobs), ``finalize`` (state);
    "bytes stored" is the growth of the shared files store on disk.
(b) ``get_local_copy()`` on a second, fresh ``AGENT_HOME`` sharing the same store
    (metadata in one SQLite file, blobs in one folder): cold (assembled from verified
    blobs), then cached in the same process and in a new process. Target: cached
    ``Dataset.get`` + ``get_local_copy`` < 0.5 s.
(c) a child version (``parent_datasets=[first]``) after ``--change-pct`` % of the files
    changed (small files rewritten, one large file edited, a few added and removed):
    ``add_files`` of the whole tree, ``upload``, ``finalize``. Target: the blob store
    grows by exactly the bytes of the added and modified files.
(d) baselines on the same tree: ``cp -r`` and ``tar cf`` (time, size).
(e) ClearML Data (``clearml`` in ``bench/.venv``) in offline mode, as far as it goes:
    offline, its ``upload`` only writes the file list, ``finalize`` is refused with a
    warning and ``get``/``get_local_copy`` raise, so only ``add_files`` compares.

The page cache is warm throughout (the tree was just written): these are CPU and
file-system figures, not cold-disk ones. Everything lives in one temp folder, removed
at the end (``--keep`` keeps it); ``~/.agent`` and ``~/.clearml`` are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

VENV = REPO_ROOT / "bench" / ".venv"
KIB, MIB = 1024, 1024 * 1024
SMALL_DIRS = 100
CACHED_TARGET_S = 0.5
NAME, PROJECT = "bench-tree", "bench"


@dataclass
class Row:
    step: str
    seconds: float | None
    stored: int | None = None
    files: int | None = None
    note: str = ""


@dataclass
class Changes:
    modified: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed_bytes: int = 0  # the size of every added or modified file


# -- the tree -----------------------------------------------------------------------------
def make_tree(root: Path, small: int, large: int, large_mb: int, rng: random.Random) -> int:
    """Write the tree; returns its size in bytes."""
    total = 0
    for i in range(small):
        path = root / f"d{i % SMALL_DIRS:03d}" / f"f{i:05d}.bin"
        total += _write(path, rng.randbytes(rng.randint(1 * KIB, 8 * KIB)))
    for i in range(large):
        path = root / "large" / f"big{i:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            for _ in range(large_mb):
                fh.write(rng.randbytes(MIB))
        total += large_mb * MIB
    return total


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def change_tree(root: Path, small: int, large: int, pct: float, rng: random.Random) -> Changes:
    """Change ``pct`` % of the files in place: one large file gets a new MiB in its
    middle, a tenth of the count is added, a tenth removed, the rest rewritten."""
    count = max(3, round((small + large) * pct / 100))
    changes = Changes()
    if large:
        path = root / "large" / f"big{rng.randrange(large):02d}.bin"
        with path.open("r+b") as fh:
            fh.seek(path.stat().st_size // 2)
            fh.write(rng.randbytes(MIB))
        changes.modified.append(path.relative_to(root).as_posix())
        changes.changed_bytes += path.stat().st_size
        count -= 1
    added, removed = max(1, count // 10), max(1, count // 10)
    picked = rng.sample(range(small), min(small, count - added))
    for i in picked[:removed]:
        path = root / f"d{i % SMALL_DIRS:03d}" / f"f{i:05d}.bin"
        path.unlink()
        changes.removed.append(path.relative_to(root).as_posix())
    for i in picked[removed:]:
        path = root / f"d{i % SMALL_DIRS:03d}" / f"f{i:05d}.bin"
        changes.changed_bytes += _write(path, rng.randbytes(path.stat().st_size))
        changes.modified.append(path.relative_to(root).as_posix())
    for i in range(added):
        path = root / "new" / f"n{i:04d}.bin"
        changes.changed_bytes += _write(path, rng.randbytes(rng.randint(1 * KIB, 8 * KIB)))
        changes.added.append(path.relative_to(root).as_posix())
    return changes


def disk_bytes(root: Path, skip_inodes: frozenset[tuple[int, int]] = frozenset()) -> int:
    """Bytes of the files under ``root``, each inode once, less ``skip_inodes``."""
    seen: set[tuple[int, int]] = set(skip_inodes)
    total = 0
    for path in root.rglob("*") if root.exists() else []:
        st = path.lstat()
        if path.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def inodes(root: Path) -> frozenset[tuple[int, int]]:
    return frozenset((s.st_dev, s.st_ino) for s in (p.lstat() for p in root.rglob("*")))


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


# -- our Dataset --------------------------------------------------------------------------
class Store:
    """One metadata store and one files store that several AGENT_HOMEs share."""

    def __init__(self, work: Path):
        self.root = work / "store"
        self.files = self.root / "files"
        self.blobs = self.files / "blobs"
        self.root.mkdir(parents=True)

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        env.update(
            AGENT_HOME=str(home),
            AGENT_API_URL=f"sqlite:///{self.root / 'agent.db'}",
            AGENT_FILES_URL=str(self.files),
            PYTHONPATH=str(REPO_ROOT),
        )
        return env

    def use_in_process(self, home: Path) -> None:
        from agent.store.factory import reset_backends

        env = self.env(home)
        for name in [n for n in os.environ if n.startswith("AGENT_")]:
            del os.environ[name]
        os.environ.update(env)
        reset_backends()


def make_version(store: Store, tree: Path, parent=None, changes: Changes | None = None):
    """add_files / upload / finalize of a version; returns (rows, the dataset)."""
    from agent import Dataset

    label = "child" if parent else "new"
    rows = []
    ds = Dataset.create(
        dataset_name=NAME, dataset_project=PROJECT, parent_datasets=[parent] if parent else None
    )

    def add() -> int:
        count = ds.add_files(tree)
        for path in changes.removed if changes else []:
            count += ds.remove_files(path)
        return count

    seconds, count = timed(add)
    rows.append(
        Row(f"{label}: add_files" + (" + remove_files" if parent else ""), seconds, 0, count)
    )
    for step, call in (
        ("upload", lambda: ds.upload(show_progress=False)),
        ("finalize", ds.finalize),
    ):
        before = disk_bytes(store.files)
        seconds, _ = timed(call)
        rows.append(Row(f"{label}: {step}", seconds, disk_bytes(store.files) - before))
    rows[-2].files = len(ds.list_added_files()) + len(ds.list_modified_files())
    rows[-1].files = len(ds.list_files())
    return rows, ds


def copy_in_subprocess(store: Store, home: Path, dataset_id: str, again: bool) -> dict:
    """Dataset.get + get_local_copy in a new process on ``home`` (twice with ``again``)."""
    argv = [sys.executable, __file__, "--worker-get", dataset_id] + (["--again"] if again else [])
    proc = subprocess.run(argv, env=store.env(home), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"get_local_copy worker failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker_get(dataset_id: str, again: bool) -> None:
    """In the worker process: time Dataset.get and get_local_copy; print JSON."""
    from agent import Dataset

    out = {}
    for round_name in ("first", "again") if again else ("first",):
        t_get, ds = timed(lambda: Dataset.get(dataset_id=dataset_id))
        t_copy, folder = timed(ds.get_local_copy)
        out[round_name] = {"get": t_get, "copy": t_copy, "folder": folder}
    print(json.dumps(out))


def copy_rows(store: Store, home: Path, ds, what: str) -> tuple[list[Row], str]:
    """The cold copy on a fresh home, then cached (same process, new process)."""
    files = len(ds.list_files())
    shared = inodes(store.files)
    cold = copy_in_subprocess(store, home, ds.id, again=True)
    stored = disk_bytes(home, shared)
    warm = copy_in_subprocess(store, home, ds.id, again=False)["first"]
    rows = [
        Row(f"{what}: Dataset.get (fresh home)", cold["first"]["get"], None, files),
        Row(f"{what}: get_local_copy cold", cold["first"]["copy"], stored, files,
            "hard links to verified blobs; bytes = new on disk"),
        Row(f"{what}: get_local_copy cached, same process", cold["again"]["copy"], 0, files),
        Row(f"{what}: get + get_local_copy cached, new process", warm["get"] + warm["copy"],
            0, files),
    ]  # fmt: skip
    return rows, cold["first"]["folder"]


def check_copy(folder: Path, tree: Path, expected_files: int, rng: random.Random) -> None:
    """The local copy has the tree's files, and a sample of them byte for byte."""
    found = count_files(folder) - 1  # less the "complete" marker
    if found != expected_files:
        raise RuntimeError(f"local copy {folder} has {found} files, expected {expected_files}")
    sample = rng.sample(sorted(p for p in tree.rglob("*") if p.is_file()), 20)
    for path in sample:
        copy = folder / path.relative_to(tree)
        if copy.read_bytes() != path.read_bytes():
            raise RuntimeError(f"local copy differs from the tree at {copy}")


# -- baselines ----------------------------------------------------------------------------
def baselines(tree: Path, work: Path, files: int) -> list[Row]:
    rows = []
    dest = work / "cp-copy"
    seconds, _ = timed(lambda: subprocess.run(["cp", "-r", str(tree), str(dest)], check=True))
    rows.append(Row("baseline: cp -r", seconds, disk_bytes(dest), files))
    shutil.rmtree(dest)
    archive = work / "tree.tar"
    seconds, _ = timed(
        lambda: subprocess.run(["tar", "cf", str(archive), "-C", str(tree), "."], check=True)
    )
    rows.append(Row("baseline: tar cf", seconds, archive.stat().st_size, files))
    archive.unlink()
    return rows


# -- ClearML Data ------------------------------------------------------------------------
CLEARML_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from clearml import Dataset, Task
Task.set_offline(True)
tree, out = sys.argv[1], {}
t = time.perf_counter(); ds = Dataset.create(dataset_name="bench-tree", dataset_project="bench")
out["create"] = time.perf_counter() - t
# add_files edits the task's script, which a thread detects after create: wait for it
# (else an AttributeError on task.data.script, now and then)
ds._task._wait_for_repo_detection(timeout=120)
t = time.perf_counter(); out["added"] = ds.add_files(tree); out["add_files"] = time.perf_counter() - t
t = time.perf_counter(); ds.upload(show_progress=False); out["upload"] = time.perf_counter() - t
out["finalize"] = repr(ds.finalize())
for name, call in (("get_local_copy", ds.get_local_copy),
                   ("child", lambda: Dataset.create(dataset_name="c", parent_datasets=[ds.id]))):
    try:
        call(); out[name] = "ran"
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"
import clearml; out["version"] = clearml.__version__
print("BENCH-JSON " + json.dumps(out), flush=True)
"""


def clearml_python() -> Path | None:
    """bench/.venv's Python with clearml (installed there when missing); None if it fails."""
    python = VENV / "bin" / "python"
    if python.exists() and _imports_clearml(python):
        return python
    uv = shutil.which("uv")
    if not python.exists():
        make = [uv, "venv", "-q", str(VENV), "-p", sys.executable] if uv else None
        subprocess.run(make or [sys.executable, "-m", "venv", str(VENV)], check=False)
    install = [uv, "pip", "install", "-q", "-p", str(python)] if uv else [str(python), "-m", "pip"]
    install += [] if uv else ["install", "-q"]
    subprocess.run([*install, "clearml"], check=False)
    return python if python.exists() and _imports_clearml(python) else None


def _imports_clearml(python: Path) -> bool:
    return (
        subprocess.run([str(python), "-c", "import clearml"], capture_output=True).returncode == 0
    )


def clearml_rows(tree: Path, work: Path, files: int) -> tuple[list[Row], str]:
    python = clearml_python()
    if python is None:
        return [], "ClearML: could not install clearml into bench/.venv; skipped"
    home = work / "clearml-home"  # offline sessions go to ~/.clearml: keep them here
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "CLEARML_"))}
    env.update(HOME=str(home), CLEARML_OFFLINE_MODE="1")
    out, problem = run_clearml(python, tree, env, work / "clearml.log")
    if out is None:
        return [], f"ClearML: offline run failed: {problem}"
    stored = disk_bytes(home)
    rows = [
        Row("clearml offline: add_files", out["add_files"], 0, out["added"], "sha256 of each file"),
        Row("clearml offline: upload", out["upload"], stored, None,
            "offline: writes the file list only; bytes = its whole offline session"),
        Row("clearml offline: finalize", None, None, None, f"refused (returned {out['finalize']})"),
        Row("clearml offline: get_local_copy", None, None, None, out["get_local_copy"]),
        Row("clearml offline: child version", None, None, None, out["child"]),
    ]  # fmt: skip
    note = f"ClearML {out['version']}, offline mode (CLEARML_OFFLINE_MODE=1)"
    return rows, note + (f"; {problem}" if problem else "")


def run_clearml(
    python: Path, tree: Path, env: dict[str, str], log: Path, limit: float = 1800
) -> tuple[dict | None, str]:
    """Run CLEARML_SCRIPT; returns (its JSON, a problem worth saying).

    Output goes to a file and the script runs in its own session: once in a while an
    offline ClearML process (with the helper process it starts) never exits after its
    last call. Its figures are in by then, so it gets a grace period, then is stopped.
    """
    started = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(python), "-c", CLEARML_SCRIPT, str(tree)],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    out = None
    while out is None and proc.poll() is None and time.monotonic() - started < limit:
        time.sleep(0.5)
        out = _clearml_json(log)
    problem = ""
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the script and its helper
        proc.wait()
        problem = "the ClearML process did not exit within 60 s of its last call: stopped"
    out = out or _clearml_json(log)
    if out is None:
        tail = log.read_text(errors="replace")[-2000:]
        return None, f"rc {proc.returncode}, {problem or 'no figures'}:\n{tail}"
    return out, problem


def _clearml_json(log: Path) -> dict | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("BENCH-JSON "):
            return json.loads(line.removeprefix("BENCH-JSON "))
    return None


# -- report -------------------------------------------------------------------------------
def print_table(rows: list[Row]) -> None:
    print(f"\n{'step':52s} {'seconds':>9s} {'bytes stored':>14s} {'files':>7s}  note")
    for r in rows:
        seconds = f"{r.seconds:9.3f}" if r.seconds is not None else f"{'-':>9s}"
        stored = f"{r.stored:14,d}" if r.stored is not None else f"{'-':>14s}"
        files = f"{r.files:7d}" if r.files is not None else f"{'-':>7s}"
        print(f"{r.step:52s} {seconds} {stored} {files}  {r.note}")


def disk_check(work: Path, tree_bytes: int) -> str | None:
    """Why the run would not fit in ``work``'s file system (None: it fits)."""
    need = int(tree_bytes * 3.3) + 512 * MIB  # tree, blobs, one baseline copy at a time
    free = shutil.disk_usage(work).free
    if free >= need:
        return None
    return (
        f"need about {need / 2**30:.1f} GiB in {work}, {free / 2**30:.1f} GiB free: "
        "scale down with --small / --large / --large-mb, or pick --workdir elsewhere"
    )


def run(args: argparse.Namespace, work: Path) -> int:
    rng = random.Random(args.seed)
    tree, store = work / "tree", Store(work)
    seconds, size = timed(lambda: make_tree(tree, args.small, args.large, args.large_mb, rng))
    files = args.small + args.large
    print(f"tree: {files} files, {size:,d} bytes, written in {seconds:.1f} s ({tree})", flush=True)
    rows = baselines(tree, work, files)
    notes = []
    if not args.no_clearml:
        more, note = clearml_rows(tree, work, files)
        rows += more
        notes.append(note)
    else:
        notes.append("ClearML: skipped (--no-clearml)")
    store.use_in_process(work / "home-a")
    new_rows, first = make_version(store, tree)
    rows += new_rows
    got, folder = copy_rows(store, work / "home-b", first, "new")
    rows += got
    check_copy(Path(folder), tree, files, rng)
    changes = change_tree(tree, args.small, args.large, args.change_pct, rng)
    child_rows, child = make_version(store, tree, parent=first, changes=changes)
    rows += child_rows
    got, folder = copy_rows(store, work / "home-b", child, "child")
    rows += got
    check_copy(Path(folder), tree, count_files(tree), rng)
    print_table(rows)
    return report_targets(rows, changes, child_rows, notes)


def report_targets(rows: list[Row], changes: Changes, child_rows: list[Row], notes) -> int:
    cached = max(r.seconds for r in rows if "cached" in r.step)
    blob_growth = child_rows[1].stored  # the child's upload: the new blobs, nothing else
    print(
        f"\nchild changes: {len(changes.modified)} modified, {len(changes.added)} added, "
        f"{len(changes.removed)} removed; their bytes: {changes.changed_bytes:,d}"
    )
    checks = [
        (f"cached get_local_copy < {CACHED_TARGET_S} s (worst cached row)", f"{cached:.3f} s",
         cached < CACHED_TARGET_S),
        ("child stores only the changed bytes", f"{blob_growth:,d} of {changes.changed_bytes:,d}",
         blob_growth == changes.changed_bytes),
    ]  # fmt: skip
    print()
    for label, value, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value}")
    for note in notes:
        print(note)
    return 0 if all(ok for _, _, ok in checks) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000, help="small files (1-8 KiB)")
    parser.add_argument("--large", type=int, default=20, help="large files")
    parser.add_argument("--large-mb", type=int, default=50, help="MiB per large file")
    parser.add_argument(
        "--change-pct", type=float, default=1.0, help="%% of files the child changes"
    )
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--no-clearml", action="store_true", help="skip ClearML Data")
    parser.add_argument("--workdir", type=Path, help="parent of the temp folder (default: /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--worker-get", help=argparse.SUPPRESS)
    parser.add_argument("--again", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_get:
        worker_get(args.worker_get, args.again)
        return 0
    work = Path(tempfile.mkdtemp(prefix="agent-bench-datasets-", dir=args.workdir))
    size = args.small * 4608 + args.large * args.large_mb * MIB
    problem = disk_check(work, size)
    if problem:
        work.rmdir()
        print(problem, file=sys.stderr)
        return 2
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
