"""Plots and scalars the usual libraries make are reported without the Logger, as
ClearML's matplotlib and TensorBoard bindings do.

- matplotlib: ``pyplot.show()`` reports every open figure, ``Figure.show()`` and
  ``Figure.savefig(path)`` that one, as a plot named after the figure's title (``untitled NN`` without
  one), series "plot"; a figure shown again unchanged is not reported twice.
- TensorBoard (``tensorboardX`` and ``torch.utils.tensorboard``): ``SummaryWriter``'s
  ``add_scalar`` ("title/series" tags, as ClearML splits them), ``add_scalars`` (the
  main tag is the title) and ``add_image`` become scalars and debug samples.

Reports go to ``Task.current_task()`` at the time of the call; with none, or inside the
agent's own rendering, the library runs as it would. A failure to report is logged and
never reaches the user's code.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import threading
from typing import Any

from agent.sdk.frameworks.hooks import when_imported

_log = logging.getLogger("agent.sdk")
_inside = threading.local()
_lock = threading.Lock()
_shown: dict[int, str] = {}  # id(figure) -> hash of the picture last reported
_iterations: dict[tuple[str, str], itertools.count] = {}
_untitled = itertools.count(1)
_untitled_names: dict[int, str] = {}


def install_matplotlib() -> None:
    when_imported("matplotlib.figure", _patch_figure)
    when_imported("matplotlib.pyplot", _patch_pyplot)


def install_tensorboard() -> None:
    when_imported("tensorboardX", lambda m: _patch_writer(m.SummaryWriter))
    when_imported("torch.utils.tensorboard", lambda m: _patch_writer(m.SummaryWriter))


# -- helpers ----------------------------------------------------------------------------
def _logger() -> Any:
    if getattr(_inside, "active", False):
        return None
    from agent.sdk.task import Task

    task = Task.current_task()
    return task.get_logger() if task is not None else None


def _guarded(report: Any) -> None:
    """Run ``report`` (which calls the library itself) so that it is not reported again."""
    _inside.active = True
    try:
        report()
    except Exception:  # the user's call worked; only the report failed
        _log.warning("automatic logging failed", exc_info=True)
    finally:
        _inside.active = False


def _next_iteration(title: str, series: str) -> int:
    with _lock:
        counter = _iterations.setdefault((title, series), itertools.count())
    return next(counter)


def _patch_once(owner: Any, name: str, make: Any) -> None:
    original = getattr(owner, name)
    if getattr(original, "_agent_bound", False):
        return
    patched = functools.wraps(original)(make(original))
    patched._agent_bound = True
    setattr(owner, name, patched)


# -- matplotlib -------------------------------------------------------------------------
def _figure_title(figure: Any) -> str:
    texts = [getattr(figure, "_suptitle", None)] + [ax.get_title() for ax in figure.get_axes()]
    for text in texts:
        value = text.get_text() if hasattr(text, "get_text") else text
        if value:
            return str(value)
    with _lock:
        if id(figure) not in _untitled_names:
            _untitled_names[id(figure)] = f"untitled {next(_untitled):02d}"
        return _untitled_names[id(figure)]


def report_figure(figure: Any) -> None:
    """Report ``figure`` as a plot of the current task, unless it is unchanged since it
    was last reported."""
    logger = _logger()
    if logger is None:
        return

    def report() -> None:
        from agent.sdk import media

        png = media.figure_png(figure)
        digest = hashlib.sha256(png).hexdigest()
        with _lock:
            if _shown.get(id(figure)) == digest:
                return
            _shown[id(figure)] = digest
        title = _figure_title(figure)
        logger._report_sample(
            title, "plot", _next_iteration(title, "plot"), None, png, None, ".png",
            media.PLOT_IMAGE,
        )  # fmt: skip

    _guarded(report)


def _patch_figure(module: Any) -> None:
    def make(original: Any) -> Any:
        def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(self, fname, *args, **kwargs)
            if isinstance(fname, (str, os.PathLike)):
                report_figure(self)
            return result

        return savefig

    _patch_once(module.Figure, "savefig", make)

    def make_show(original: Any) -> Any:
        def show(self: Any, *args: Any, **kwargs: Any) -> Any:
            report_figure(self)
            return original(self, *args, **kwargs)

        return show

    _patch_once(module.Figure, "show", make_show)


def _patch_pyplot(module: Any) -> None:
    def make(original: Any) -> Any:
        def show(*args: Any, **kwargs: Any) -> Any:
            for number in module.get_fignums():
                report_figure(module.figure(number))
            return original(*args, **kwargs)

        return show

    _patch_once(module, "show", make)


# -- TensorBoard ------------------------------------------------------------------------
def split_tag(tag: str) -> tuple[str, str]:
    """ClearML's reading of a TensorBoard tag: "a/b/c" is title "a_b", series "c"; a tag
    without "/" is both."""
    parts = str(tag).split("/")
    series = parts[-1]
    return "_".join(parts[:-1]) or str(tag), series


def _step(title: str, series: str, global_step: Any) -> int:
    if global_step is None:
        return _next_iteration(title, series)
    return int(global_step)


def _number(value: Any) -> float:
    if hasattr(value, "item"):
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # TensorBoard writes a NaN as a string


def _patch_writer(writer: type) -> None:
    def make_scalar(original: Any) -> Any:
        def add_scalar(
            self: Any, tag: Any, scalar_value: Any, global_step: Any = None, *a: Any, **kw: Any
        ) -> Any:
            result = original(self, tag, scalar_value, global_step, *a, **kw)
            logger = _logger()
            if logger is not None:
                title, series = split_tag(tag)
                step = _step(title, series, global_step)
                _guarded(lambda: logger.report_scalar(title, series, _number(scalar_value), step))
            return result

        return add_scalar

    def make_scalars(original: Any) -> Any:
        def add_scalars(
            self: Any,
            main_tag: Any,
            tag_scalar_dict: Any,
            global_step: Any = None,
            *a: Any,
            **kw: Any,
        ) -> Any:
            logger = _logger()
            _inside.active = True  # add_scalars may call add_scalar itself
            try:
                result = original(self, main_tag, tag_scalar_dict, global_step, *a, **kw)
            finally:
                _inside.active = False
            if logger is not None:
                for series, value in dict(tag_scalar_dict).items():
                    step = _step(str(main_tag), str(series), global_step)
                    _guarded(
                        lambda s=series, v=value, i=step: logger.report_scalar(
                            str(main_tag), str(s), _number(v), i
                        )
                    )
            return result

        return add_scalars

    def make_image(original: Any) -> Any:
        def add_image(
            self: Any,
            tag: Any,
            img_tensor: Any,
            global_step: Any = None,
            *a: Any,
            dataformats: str = "CHW",
            **kw: Any,
        ) -> Any:
            result = original(self, tag, img_tensor, global_step, *a, dataformats=dataformats, **kw)
            logger = _logger()
            if logger is not None:
                title, series = split_tag(tag)
                step = _step(title, series, global_step)
                _guarded(
                    lambda: logger.report_image(
                        title, series, step, image=_hwc(img_tensor, dataformats)
                    )
                )
            return result

        return add_image

    _patch_once(writer, "add_scalar", make_scalar)
    _patch_once(writer, "add_scalars", make_scalars)
    _patch_once(writer, "add_image", make_image)


def _hwc(image: Any, dataformats: str) -> Any:
    """An image tensor in TensorBoard's ``dataformats`` as an HxW(xC) numpy array."""
    import numpy as np

    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    formats = dataformats.upper()
    if len(formats) == 3:
        array = np.transpose(array, [formats.index(c) for c in "HWC"])
    return array
