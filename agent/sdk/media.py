"""Images and other media a task reports (ClearML's "debug samples").

A sample's file is stored once, content-addressed, in the task's file store (the same
blobs as models and datasets); the record that points to it is kept with the task's
plots under its title, series and iteration, as ``{"data": [], "layout": ...,
"media": {...}}``. ``media["kind"]`` says which it is: ``"debug_sample"`` for
``report_image`` / ``report_media``, ``"plot_image"`` for a matplotlib figure reported
as a plot. A numpy array becomes a PNG without any imaging library.
"""

from __future__ import annotations

import io
import mimetypes
import os
import struct
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.sdk import plots

if TYPE_CHECKING:
    from agent.files.base import FileStore

DEBUG_SAMPLE = "debug_sample"
PLOT_IMAGE = "plot_image"
KINDS = (DEBUG_SAMPLE, PLOT_IMAGE)


def kind_of(figure: dict[str, Any]) -> str | None:
    """A stored plot record's media kind (one of :data:`KINDS`), None for a plotly figure."""
    media = figure.get("media")
    kind = media.get("kind") if isinstance(media, dict) else None
    return kind if kind in KINDS else None


def image_bytes(image: Any) -> bytes:
    """PNG bytes of a PIL image or a numpy array (HxW, HxWx1, HxWx3 or HxWx4).

    uint8 values are kept; floats up to 1.0 are read as 0..1 and scaled to 0..255;
    booleans are black and white.

    Raises:
        ValueError: the array's shape is not an image's.
    """
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    return _png(*_pixels(image))


def _pixels(image: Any) -> tuple[int, int, int, bytes]:
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"an image is an HxW, HxWx3 or HxWx4 array; this one has shape {array.shape}"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        values = np.nan_to_num(array.astype(np.float64))
        if values.size and values.max() <= 1.0:
            values = values * 255.0
        array = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    height, width = array.shape[:2]
    return width, height, channels, np.ascontiguousarray(array).tobytes()


def _png(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def store_sample(
    store: FileStore,
    title: str,
    *,
    kind: str = DEBUG_SAMPLE,
    local_path: str | os.PathLike[str] | None = None,
    data: bytes | None = None,
    url: str | None = None,
    file_extension: str | None = None,
) -> dict[str, Any]:
    """The record of one sample: its file stored (from ``local_path`` or ``data``), or an
    ``url`` recorded as it is.

    Raises:
        ValueError: none, or more than one, of local_path, data and url was given.
        NotFound: ``local_path`` does not exist.
    """
    from agent.files import blobs

    given = [x is not None for x in (local_path, data, url)]
    if sum(given) != 1:
        raise ValueError("a sample needs exactly one of local_path, an image/stream, or url")
    if url is not None:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        media = {"kind": kind, "url": url, "filename": name, "content_type": _type_of(name)}
        return _record(title, media)
    if local_path is not None:
        path = Path(local_path)
        stored = blobs.put_blob(store, path)
        name = path.name
    else:
        name = f"sample{_extension(file_extension)}"
        with tempfile.TemporaryDirectory(prefix="agent-sample-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(data or b"")
            stored = blobs.put_blob(store, path)
    media = {
        "kind": kind,
        "url": stored.uri,
        "sha256": stored.sha256,
        "size": stored.size,
        "filename": name,
        "content_type": _type_of(name),
    }
    return _record(title, media)


def _record(title: str, media: dict[str, Any]) -> dict[str, Any]:
    if media["content_type"].startswith("image/"):
        figure = plots.image_figure(title, media["url"])
    else:
        figure = {"data": [], "layout": {"title": title}}
    figure["media"] = media
    return figure


def _extension(file_extension: str | None) -> str:
    if not file_extension:
        return ".bin"
    return file_extension if file_extension.startswith(".") else f".{file_extension}"


def _type_of(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def figure_png(figure: Any, dpi: int | None = None) -> bytes:
    """PNG bytes of a matplotlib figure (or of pyplot's current figure, given ``pyplot``)."""
    if hasattr(figure, "gcf"):
        figure = figure.gcf()  # ClearML accepts the pyplot module itself
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi or "figure")
    return buffer.getvalue()
