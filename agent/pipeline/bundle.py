"""The code a function step carries: its function, the user's decorators around it, and
the module-level helpers and imports these name.

A step runs in a process of its own (local and remote mode), from this code alone, so it
must rebuild what debug mode calls in process:

- decorators written with ``@`` under ``@PipelineDecorator.component`` (or on a function
  given to ``add_function_step``) are applied again, as written;
- a decorator applied by a call (``add_function_step(function=timed(step))``) is found
  through ``functools.wraps``'s ``__wrapped__`` and rebuilt as ``timed(step)`` when the
  wrapper was made by a plain function of the user's (``timed.<locals>.wrapper``);
- the functions and classes of the same file that this code names travel with it, and
  the module-level imports it names are repeated, so a decorator that uses ``time`` or
  ``functools`` works in the step as in the file.

Nothing is executed to find this: the file's source is read with ``ast``.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.pipeline.errors import PipelineDefinitionError

#: Name the rebuilt step function gets in the step's script.
STEP_NAME = "_agent_step_function"


@dataclass
class _Bundle:
    """Pieces of a step script being gathered (in order, each once)."""

    module_tree: ast.Module | None
    file: str | None
    globals: dict[str, Any]
    imports: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)


def unwrap_chain(function: Callable[..., Any]) -> list[Callable[..., Any]]:
    """``[function, its __wrapped__, ...]`` down to the innermost function."""
    chain = [function]
    while hasattr(chain[-1], "__wrapped__") and len(chain) < 50:
        chain.append(chain[-1].__wrapped__)
    return chain


def _module_tree(path: str | None) -> ast.Module | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return ast.parse(handle.read())
    except (OSError, SyntaxError, ValueError):
        return None


def _definition(tree: ast.Module | None, function: Any) -> ast.FunctionDef | None:
    """The ``def`` of ``function`` in its file (found by its first line)."""
    code = getattr(function, "__code__", None)
    if tree is None or code is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            if code.co_firstlineno in (first, node.lineno):
                return node  # type: ignore[return-value]
    return None


def _is_component(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "component"


def _step_decorators(node: ast.FunctionDef | None) -> list[ast.expr]:
    """The decorators that make the step's function: those under ``@...component``
    (all of them for a function that is no component), outermost first."""
    if node is None:
        return []
    decorators = list(node.decorator_list)
    marks = [i for i, d in enumerate(decorators) if _is_component(d)]
    return decorators[marks[-1] + 1 :] if marks else decorators


def _factory_of(wrapper: Any) -> str:
    """``timed`` for a wrapper made inside ``timed``, a function of the wrapper's module
    that takes the function alone (``def timed(fn): ... return wrapper``).

    Raises:
        PipelineDefinitionError: the wrapper cannot be made again by a call.
    """
    code = getattr(wrapper, "__code__", None)
    for name, value in (getattr(wrapper, "__globals__", None) or {}).items():
        factory = getattr(value, "__code__", None)
        if code is not None and factory is not None and code in factory.co_consts:
            return name
    made_by = getattr(code, "co_qualname", None) or getattr(wrapper, "__qualname__", wrapper)
    raise PipelineDefinitionError(
        f"the step function is wrapped by {made_by!r}, which cannot be made again in the "
        "step's process: apply the decorator with @ where the function is defined (under "
        "@PipelineDecorator.component), or inside the function"
    )


def _used_names(source: str) -> set[str]:
    """Names ``source`` reads that it does not define itself (roughly: loads minus stores)."""
    tree = ast.parse(source)
    loads: set[str] = set()
    stores: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
        elif isinstance(node, ast.arg):
            stores.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stores.update((a.asname or a.name).split(".")[0] for a in node.names)
    return loads - stores - set(dir(builtins))


def _module_imports(tree: ast.Module | None) -> dict[str, str]:
    """{bound name: the import statement binding it} of a module's top level."""
    found: dict[str, str] = {}
    if tree is None:
        return found

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.asname or alias.name.split(".")[0]
                    found.setdefault(name, ast.unparse(ast.Import(names=[alias])))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    statement = ast.ImportFrom(module=node.module, names=[alias], level=0)
                    found.setdefault(alias.asname or alias.name, ast.unparse(statement))
            elif isinstance(node, (ast.If, ast.Try)):
                for child in [*node.body, *getattr(node, "orelse", [])]:
                    visit([child])

    visit(tree.body)
    return found


def function_source(obj: Callable[..., Any] | type) -> str:
    """The source of a function (or class) without its decorators, dedented.

    Raises:
        PipelineDefinitionError: the source cannot be found (a REPL or built-in function).
    """
    target = inspect.unwrap(obj) if callable(obj) else obj
    try:
        text = textwrap.dedent(inspect.getsource(target))
    except (OSError, TypeError) as exc:
        raise PipelineDefinitionError(
            f"cannot read the source of {getattr(obj, '__name__', obj)!r} ({exc}): define "
            "components and helper functions in a file"
        ) from None
    tree = ast.parse(text)
    name = getattr(target, "__name__", "")
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and (
            node.name == name or not name
        ):
            lines = text.splitlines()
            return "\n".join(lines[node.lineno - 1 : node.end_lineno]) + "\n"
    return text


def _same_file(obj: Any, file: str | None) -> bool:
    try:
        return file is not None and inspect.getsourcefile(obj) == file
    except TypeError:
        return False


def _add_names(bundle: _Bundle, names: set[str]) -> None:
    """Make ``names`` exist in the step: import them, or carry their definitions."""
    imports = _module_imports(bundle.module_tree)
    for name in sorted(names - bundle.seen):
        bundle.seen.add(name)
        value = bundle.globals.get(name)
        if name in imports:
            bundle.imports.append(imports[name])
        elif (inspect.isfunction(value) or inspect.isclass(value)) and _same_file(
            value, bundle.file
        ):
            _add_definition(bundle, value)


def _add_definition(bundle: _Bundle, obj: Any) -> None:
    name = getattr(obj, "__name__", "")
    if name in bundle.defined:
        return
    source = function_source(obj)
    bundle.defined.add(name)
    bundle.seen.add(name)
    _add_names(bundle, _used_names(source))
    bundle.definitions.append(source)


def step_script(
    function: Callable[..., Any],
    return_values: Sequence[str],
    helper_functions: Sequence[Callable[..., Any]] = (),
) -> str:
    """The standalone script of a function step (see the module doc)."""
    chain = unwrap_chain(function)
    inner = chain[-1]
    file = _source_file(inner)
    tree = _module_tree(file)
    bundle = _Bundle(tree, file, dict(getattr(inner, "__globals__", {}) or {}))
    decorators = _step_decorators(_definition(tree, inner))
    runtime = chain[: max(len(chain) - 1 - len(decorators), 0)]  # outermost first
    factories = [_factory_of(wrapper) for wrapper in runtime]
    for helper in helper_functions or ():
        _add_definition(bundle, helper)
    _add_definition(bundle, inner)
    applied = [ast.unparse(d) for d in decorators]
    for expression in applied:
        _add_names(bundle, _used_names(expression))
    _add_names(bundle, set(factories))
    call = inner.__name__
    for expression in reversed([*factories, *applied]):
        call = f"({expression})({call})"
    parts = ["from __future__ import annotations\n", *dict.fromkeys(bundle.imports)]
    parts += bundle.definitions
    parts.append(f"{STEP_NAME} = {call}\n")
    parts.append(
        'if __name__ == "__main__":\n'
        "    from agent.pipeline.step_runtime import run_step\n\n"
        f"    run_step({STEP_NAME}, return_values={list(return_values)!r})\n"
    )
    return "\n\n".join(parts)


def _source_file(function: Any) -> str | None:
    try:
        return inspect.getsourcefile(function)
    except TypeError:
        return None
