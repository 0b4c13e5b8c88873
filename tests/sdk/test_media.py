"""Logger reports beyond scalars: matrices, 3-D plots, images and media (debug samples)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent import Task
from agent.files import blobs


@pytest.fixture
def task(backend) -> Task:
    return Task.create(project_name="p", task_name="reports")


def _figures(task: Task) -> dict[tuple[str, str, int], dict]:
    return {
        (p["title"], p["series"], p["iteration"]): p["figure"] for p in task.get_reported_plots()
    }


def _local(sample: dict) -> Path:
    return blobs.blob_path(sample["url"], sample["sha256"], sample["size"], "sample")


def test_confusion_matrix_surface_and_scatter3d(task):
    logger = task.get_logger()
    matrix = np.array([[5, 1], [2, 7]])
    logger.report_confusion_matrix(
        "eval", "cm", matrix, 3, xaxis="predicted", yaxis="true",
        xlabels=["cat", "dog"], ylabels=["cat", "dog"], yaxis_reversed=True,
    )  # fmt: skip
    logger.report_surface(
        "terrain", "h", np.arange(6).reshape(2, 3), 0, zaxis="height", camera=(1, 2, 3)
    )
    logger.report_scatter3d("cloud", "pts", [(0, 0, 0), (1, 2, 3)], 0, labels=["a", "b"])
    figures = _figures(task)
    cm = figures[("eval", "cm", 3)]
    assert cm["data"][0] == {
        "type": "heatmap",
        "name": "cm",
        "z": [[5, 1], [2, 7]],
        "x": ["cat", "dog"],
        "y": ["cat", "dog"],
    }
    assert cm["layout"]["yaxis"] == {"title": "true", "autorange": "reversed"}
    surface = figures[("terrain", "h", 0)]
    assert surface["data"][0]["type"] == "surface" and surface["data"][0]["z"] == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    assert surface["layout"]["scene"]["zaxis"] == {"title": "height"}
    assert surface["layout"]["scene"]["camera"] == {"eye": {"x": 1.0, "y": 2.0, "z": 3.0}}
    cloud = figures[("cloud", "pts", 0)]["data"][0]
    assert (cloud["type"], cloud["x"], cloud["z"], cloud["text"]) == (
        "scatter3d",
        [0, 1],
        [0, 3],
        ["a", "b"],
    )
    with pytest.raises(ValueError, match="2-D matrix"):
        logger.report_confusion_matrix("eval", "bad", [1, 2, 3])
    with pytest.raises(ValueError, match=r"\(x, y, z\)"):
        logger.report_scatter3d("cloud", "bad", [(1, 2)])


def test_images_from_an_array_a_pil_image_a_file_and_an_url(task, tmp_path):
    logger = task.get_logger()
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[:, :, 0] = 255
    logger.report_image("samples", "array", 1, image=rgb)
    logger.report_image("samples", "floats", 1, image=np.full((3, 3), 0.5))
    logger.report_image("samples", "pil", 2, image=Image.new("RGB", (5, 2), (0, 0, 255)))
    path = tmp_path / "pic.png"
    Image.new("L", (2, 2), 128).save(path)
    logger.report_image("samples", "file", 3, local_path=path, delete_after_upload=True)
    logger.report_image("samples", "link", 4, url="https://example.com/x.jpg")
    assert not path.exists()

    samples = {s["variant"]: s for s in task.get_debug_samples(title="samples")}
    assert sorted(samples) == ["array", "file", "floats", "link", "pil"]
    array = np.asarray(Image.open(_local(samples["array"])))
    assert (
        array.shape == (4, 6, 3) and (array[:, :, 0] == 255).all() and (array[:, :, 1] == 0).all()
    )
    assert np.asarray(Image.open(_local(samples["floats"]))).tolist() == [[128] * 3] * 3
    assert Image.open(_local(samples["pil"])).size == (5, 2)
    assert (
        samples["file"]["filename"] == "pic.png" and samples["file"]["content_type"] == "image/png"
    )
    assert samples["link"]["url"] == "https://example.com/x.jpg" and "sha256" not in samples["link"]
    assert [s["iter"] for s in task.get_debug_samples(n_last_iterations=2)] == [3, 4]
    assert task.get_reported_plots() == []  # debug samples are not plots
    with pytest.raises(ValueError, match="shape"):
        logger.report_image("samples", "bad", 0, image=np.zeros((2, 2, 2)))


def test_report_media_from_a_stream_and_a_file(task, tmp_path):
    logger = task.get_logger()
    logger.report_media(
        "pages", "report", 0, stream=io.StringIO("<h1>hi</h1>"), file_extension="html"
    )
    audio = tmp_path / "clip.wav"
    audio.write_bytes(b"RIFF....WAVE")
    logger.report_media("audio", "clip", 7, local_path=audio)
    samples = {s["metric"]: s for s in task.get_debug_samples()}
    page = samples["pages"]
    assert page["content_type"] == "text/html" and _local(page).read_text() == "<h1>hi</h1>"
    assert (
        samples["audio"]["iter"] == 7 and _local(samples["audio"]).read_bytes() == b"RIFF....WAVE"
    )
    with pytest.raises(ValueError, match="exactly one"):
        logger.report_media("pages", "none", 0)


def test_png_encoder_writes_a_valid_grayscale_png(task):
    from agent.sdk.media import image_bytes

    png = image_bytes(np.array([[0, 255], [255, 0]], dtype=np.uint8))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (width, height, depth, color) == (2, 2, 8, 0)
    assert zlib.decompress(png[41:-16]) == b"\x00\x00\xff\x00\xff\x00"
    assert np.asarray(Image.open(io.BytesIO(png))).tolist() == [[0, 255], [255, 0]]


def test_matplotlib_figure_as_a_plot_or_a_debug_sample(task):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    logger = task.get_logger()
    logger.report_matplotlib_figure("curve", "line", fig, 0)
    logger.report_matplotlib_figure("curve", "picture", fig, 0, report_image=True)
    plt.close(fig)
    [plot] = task.get_reported_plots()
    assert (plot["title"], plot["series"]) == ("curve", "line")
    assert plot["figure"]["media"]["kind"] == "plot_image"
    assert plot["figure"]["layout"]["images"][0]["source"] == plot["figure"]["media"]["url"]
    [sample] = task.get_debug_samples()
    assert sample["variant"] == "picture" and _local(sample).read_bytes()[:4] == b"\x89PNG"
