"""What a stored JSON value may hold, checked before anything is written.

Every store keeps hyperparameters, configuration, runtime properties, artifact and model
metadata and plots as JSON. JSON has no NaN or infinities (PostgreSQL refuses them, and an
HTTP answer holding one cannot be rendered), a value nested thousands of levels deep
breaks every reader that recurses, and a string with a lone surrogate cannot be encoded
as UTF-8. :func:`check_json` refuses all three with :class:`InvalidInput` (HTTP 422), so
that every backend answers alike and nothing half-written is left behind.

The SDK stores a non-finite float of the user's as text ("nan", "inf", as ClearML does)
and reads it back as a float where the code expects one; scalars keep NaN as a number
(see ``agent.store.sql``).
"""

from __future__ import annotations

import math
from typing import Any

from agent.core.errors import InvalidInput

#: Deepest nesting of lists and objects a stored value may have.
MAX_DEPTH = 64


def check_json(value: Any, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``value`` (about to be stored as ``what``) unless every number in it is
    finite, it is nested at most ``max_depth`` levels, and its text encodes as UTF-8.

    Raises:
        InvalidInput: naming where in ``value`` the problem is and what to do.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(
                    f"{what}{path} is {item}: a stored value cannot be NaN or infinite "
                    "(JSON has neither); store it as text, e.g. 'nan', or report it as a "
                    "scalar, which keeps NaN"
                )
        elif isinstance(item, str):
            _check_text(item, what, path)
        elif isinstance(item, (dict, list, tuple)):
            if depth >= max_depth:
                raise InvalidInput(
                    f"{what} is nested more than {max_depth} levels deep (at {path or '(top)'}); "
                    "flatten it or store it as text"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(str(key), what, path)
                    stack.append((child, f"{path}[{key!r}]", depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def check_text(text: str, what: str) -> None:
    """Refuse a string that cannot be stored as UTF-8 (a lone surrogate).

    Raises:
        InvalidInput: naming ``what``.
    """
    _check_text(text, what, "")


def _check_text(text: str, what: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{what}{path} holds {text[exc.start : exc.end]!r}, which is not valid Unicode "
            "(a lone surrogate); send text that encodes as UTF-8"
        ) from None


def without_non_finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (for measurements, such
    as a worker's stats, where a missing reading is better than a refused heartbeat)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: without_non_finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_non_finite(v) for v in value]
    return value


#: Longest log line kept, in characters: the rest of a longer one is cut, and it says so.
MAX_LOG_LINE_CHARS = 1 << 20


def cut_log_line(text: str) -> str:
    """``text`` as a log line: at most :data:`MAX_LOG_LINE_CHARS`, ending in
    "[... N characters cut]" when it was longer."""
    if len(text) <= MAX_LOG_LINE_CHARS:
        return text
    return f"{text[:MAX_LOG_LINE_CHARS]}[... {len(text) - MAX_LOG_LINE_CHARS} characters cut]"
