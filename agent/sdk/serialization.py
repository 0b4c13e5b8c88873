"""Turn Python objects into artifact files and back.

numpy arrays -> ``.npy``, pandas DataFrames -> ``.parquet`` (``.pkl`` without pyarrow),
PIL images -> ``.png``, JSON values -> ``.json``, a path -> that file (a directory
zipped), a wildcard (``"data/*.jpg"``) or a list of paths -> one zip of the files,
anything else -> ``.pkl``; a user's ``serialization_function`` wins (``.bin``). numpy and pandas
are never imported here unless the object is one of theirs (so already imported)
or an artifact of theirs is loaded.

How an artifact was written is kept in its metadata under :data:`FORMAT_KEY`, so
that loading does not guess from file names.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import reprlib
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.errors import InvalidInput

#: Metadata key holding how the artifact was serialized ({"format": ...}).
FORMAT_KEY = "_serialization"
#: Longest preview text kept on an artifact record.
PREVIEW_MAX_CHARS = 1024
#: numpy arrays at least this large load memory-mapped (copy-on-write) from a local store.
MMAP_MIN_BYTES = 1024 * 1024

_PANDAS_FORMATS = {"parquet": "parquet", "csv": "csv", "csv.gz": "csv.gz", "pkl": "pickle"}
_NUMPY_FORMATS = {"npy": "npy", "pkl": "pickle"}


@dataclass
class Serialized:
    """An object written to a file, ready for :func:`agent.files.artifacts.store_artifact`."""

    path: Path
    type: str
    preview: str
    format: dict[str, Any] = field(default_factory=dict)


def serialize(
    obj: Any,
    name: str,
    workdir: Path,
    serialization_function: Callable[[Any], bytes] | None = None,
    extension_name: str | None = None,
) -> Serialized:
    """Write ``obj`` to a file in ``workdir`` named after the artifact.

    Raises:
        InvalidInput: an ``extension_name`` that does not fit the object, or a
            ``serialization_function`` that does not return bytes.
        FileNotFoundError: ``obj`` is a ``Path`` to nothing.
    """
    ext = (extension_name or "").lower().lstrip(".").replace("pickle", "pkl")
    if serialization_function is not None:
        return _custom(obj, workdir / f"{name}.{ext or 'bin'}", serialization_function)
    files = _file_list(obj)
    if files is not None:
        return _files(files, name, workdir)
    local = _local_path(obj)
    if local is not None:
        return _file(local, name, workdir)
    if _is_instance(obj, "PIL.Image", "Image"):
        return _image(obj, name, workdir)
    if _is_instance(obj, "numpy", "ndarray"):
        return _numpy(obj, name, workdir, ext)
    if _is_instance(obj, "pandas", "DataFrame"):
        return _pandas(obj, name, workdir, ext)
    if ext not in ("", "json", "pkl"):
        raise InvalidInput(
            f"artifact {name!r}: extension_name {extension_name!r} does not fit a "
            f"{type(obj).__name__}; use '.json' (JSON values) or '.pkl', or pass a "
            "serialization_function"
        )
    if ext != "pkl" and _json_roundtrips(obj):
        path = workdir / f"{name}.json"
        text = json.dumps(obj)
        path.write_text(text, encoding="utf-8")
        return Serialized(path, "json", clip(text), {"format": "json"})
    return _pickle(obj, workdir / f"{name}.pkl", "pickle")


def _is_instance(obj: Any, module: str, cls: str) -> bool:
    """isinstance against a class of a module that is only looked up if already imported."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(obj, getattr(mod, cls))


def _local_path(obj: Any) -> Path | None:
    """A path to an existing file or directory (a str counts only if it exists, as in ClearML)."""
    if isinstance(obj, os.PathLike):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"cannot upload {str(path)!r} as an artifact: no such file")
        return path
    if isinstance(obj, str) and 0 < len(obj) < 4096 and "\n" not in obj:
        try:
            path = Path(obj).expanduser()
            return path if path.exists() else None
        except OSError:
            return None
    return None


_GLOB_CHARS = frozenset("*?[")


def _file_list(obj: Any) -> tuple[list[Path], Path] | None:
    """(files, the directory their archive names are relative to) for a wildcard
    (``"data/*.jpg"``, ``"data/**/*.png"``) that matches files, or a list of paths; None
    for anything else."""
    if isinstance(obj, str) and 0 < len(obj) < 4096 and _GLOB_CHARS & set(obj):
        import glob

        pattern = os.path.expanduser(obj)
        matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            return None
        fixed = [part for part in Path(pattern).parts if not _GLOB_CHARS & set(part)]
        prefix = Path(pattern).parts[: len(fixed)] if fixed else ()
        base = Path(*prefix) if prefix else Path(".")
        while not base.is_dir():
            base = base.parent
        return matches, base
    if (
        isinstance(obj, (list, tuple))
        and obj
        and all(isinstance(p, (str, os.PathLike)) for p in obj)
    ):
        paths = [Path(p).expanduser() for p in obj]
        if not all(p.is_file() for p in paths):
            return None
        base = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
        return [p.resolve() for p in paths], base
    return None


def _files(found: tuple[list[Path], Path], name: str, workdir: Path) -> Serialized:
    """Several files as one zip archive (names relative to their common directory)."""
    import zipfile

    files, base = found
    archive = workdir / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            try:
                arcname = file.resolve().relative_to(base.resolve())
            except ValueError:
                arcname = Path(file.name)
            zf.write(file, arcname.as_posix())
    preview = clip(f"{len(files)} files, zipped: " + ", ".join(f.name for f in files[:20]))
    return Serialized(archive, "file", preview, {"format": "zip"})


def _image(image: Any, name: str, workdir: Path) -> Serialized:
    path = workdir / f"{name}.png"
    image.save(path, format="PNG")
    preview = f"image {image.width}x{image.height} {image.mode}"
    return Serialized(path, "image", preview, {"format": "png"})


def _custom(obj: Any, path: Path, function: Callable[[Any], bytes]) -> Serialized:
    data = function(obj)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(
            f"serialization_function returned {type(data).__name__}, not bytes: "
            "make it return the serialized bytes"
        )
    path.write_bytes(bytes(data))
    preview = f"{type(obj).__name__} ({len(data)} bytes, custom serialization)"
    return Serialized(path, "custom", preview, {"format": "custom"})


def _file(local: Path, name: str, workdir: Path) -> Serialized:
    if local.is_dir():
        archive = shutil.make_archive(str(workdir / name), "zip", root_dir=local)
        count = sum(1 for p in local.rglob("*") if p.is_file())
        preview = f"directory {local.name}/ ({count} files, zipped)"
        return Serialized(Path(archive), "file", preview, {"format": "zip"})
    preview = f"file {local.name} ({local.stat().st_size} bytes)"
    return Serialized(local, "file", preview, {"format": "file"})


def _numpy(array: Any, name: str, workdir: Path, ext: str) -> Serialized:
    if ext not in ("", "npy", "pkl"):
        raise InvalidInput(
            f"artifact {name!r}: extension_name {ext!r} does not fit a numpy array; use .npy or .pkl"
        )
    preview = clip(f"ndarray shape={array.shape} dtype={array.dtype}\n{array!r}")
    if ext == "pkl" or array.dtype.hasobject:
        # Object arrays hold Python objects that .npy can only store by pickling anyway.
        return _pickle(array, workdir / f"{name}.pkl", "numpy", preview)
    import numpy as np

    path = workdir / f"{name}.npy"
    np.save(path, array, allow_pickle=False)
    return Serialized(path, "numpy", preview, {"format": "npy"})


def _pandas(frame: Any, name: str, workdir: Path, ext: str) -> Serialized:
    if ext and ext not in _PANDAS_FORMATS:
        raise InvalidInput(
            f"artifact {name!r}: extension_name {ext!r} does not fit a DataFrame; "
            f"use one of {sorted('.' + e for e in _PANDAS_FORMATS)}"
        )
    fmt = _PANDAS_FORMATS[ext] if ext else _default_pandas_format(frame)
    rows, cols = frame.shape
    preview = clip(f"DataFrame {rows} rows x {cols} columns\n{frame.head(5).to_string()}")
    if fmt == "parquet":
        path = workdir / f"{name}.parquet"
        try:
            frame.to_parquet(path)
            return Serialized(path, "pandas", preview, {"format": "parquet"})
        except (ValueError, TypeError, NotImplementedError):
            if ext:  # asked for parquet explicitly: say why it cannot be
                raise
            path.unlink(missing_ok=True)  # e.g. non-string column names: pickle keeps it whole
            fmt = "pickle"
    if fmt == "pickle":
        return _pickle(frame, workdir / f"{name}.pkl", "pandas", preview)
    path = workdir / f"{name}.{fmt}"
    frame.to_csv(path)
    return Serialized(path, "pandas", preview, {"format": fmt})


def _default_pandas_format(frame: Any) -> str:
    # Parquet turns non-string column names into strings: such frames are pickled whole.
    if _has_pyarrow() and all(isinstance(c, str) for c in frame.columns):
        return "parquet"
    return "pickle"


def _has_pyarrow() -> bool:
    return "pyarrow" in sys.modules or importlib.util.find_spec("pyarrow") is not None


def _pickle(obj: Any, path: Path, artifact_type: str, preview: str | None = None) -> Serialized:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    if preview is None:
        preview = clip(f"{type(obj).__module__}.{type(obj).__qualname__}: {reprlib.repr(obj)}")
    return Serialized(path, artifact_type, preview, {"format": "pickle"})


def _json_roundtrips(obj: Any, depth: int = 0) -> bool:
    """Whether ``json.loads(json.dumps(obj)) == obj`` with the same types throughout."""
    if depth > 64:
        return False
    if obj is None or type(obj) in (bool, int, float, str):
        return True
    if type(obj) is list:
        return all(_json_roundtrips(v, depth + 1) for v in obj)
    if type(obj) is dict:
        return all(type(k) is str and _json_roundtrips(v, depth + 1) for k, v in obj.items())
    return False


def clip(text: str) -> str:
    return text if len(text) <= PREVIEW_MAX_CHARS else text[: PREVIEW_MAX_CHARS - 1] + "…"


# -- loading ----------------------------------------------------------------------------
def artifact_format(artifact_type: str, metadata: dict[str, Any], path: Path) -> str:
    """How an artifact's file is to be read: its recorded format, else a guess by type/suffix."""
    recorded = (metadata.get(FORMAT_KEY) or {}).get("format")
    if recorded:
        return str(recorded)
    suffixes = "".join(path.suffixes[-2:]).lower()
    by_suffix = {".npy": "npy", ".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv.gz"}
    by_suffix.update({".json": "json", ".pkl": "pickle", ".pickle": "pickle", ".zip": "zip"})
    for suffix, fmt in by_suffix.items():
        if suffixes.endswith(suffix):
            return fmt
    return {"custom": "custom", "json": "json", "pickle": "pickle"}.get(artifact_type, "file")


def load(path: Path, fmt: str, in_place: bool = False) -> Any:
    """Read an artifact file written in format ``fmt`` ("file"/"zip" are left to the caller).

    ``in_place``: the file is the stored blob itself (a local store), so a large
    numpy array is memory-mapped copy-on-write instead of read into memory.
    """
    if fmt == "npy":
        import numpy as np

        big = in_place and path.stat().st_size >= MMAP_MIN_BYTES
        return np.load(path, mmap_mode="c" if big else None, allow_pickle=False)
    if fmt == "parquet":
        import pandas as pd

        return pd.read_parquet(path)
    if fmt in ("csv", "csv.gz"):
        import pandas as pd

        return pd.read_csv(path, index_col=0)
    if fmt == "json":
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    if fmt == "pickle":
        with path.open("rb") as fh:
            return pickle.load(fh)
    if fmt == "png":
        from PIL import Image

        with Image.open(path) as image:
            image.load()
            return image.copy()
    raise InvalidInput(f"cannot load an artifact of format {fmt!r} ({path.name})")
