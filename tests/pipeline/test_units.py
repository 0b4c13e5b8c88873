"""Pure parts of the pipeline package: DAG checks, references, step code, cache keys."""

from __future__ import annotations

import functools

import pytest

from agent.execution.requirements import imported_modules
from agent.pipeline.bundle import STEP_NAME
from agent.pipeline.cache import cache_key
from agent.pipeline.dag import Dag, Node
from agent.pipeline.errors import PipelineDefinitionError
from agent.pipeline.refs import find_references, parse_reference, referenced_steps, substitute
from agent.pipeline.source import (
    controller_code,
    function_source,
    repo_script,
    split_return_values,
    step_script,
)
from agent.pipeline.steps import RetryPolicy


def _dag(**parents: list[str]) -> Dag:
    dag = Dag()
    for name, ps in parents.items():
        dag.add(Node(name=name, spec=None, parents=ps))
    return dag


def test_dag_refuses_cycles_and_unknown_parents_naming_them():
    with pytest.raises(
        PipelineDefinitionError, match="a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c"
    ):
        _dag(a=["c"], b=["a"], c=["b"]).validate()
    with pytest.raises(PipelineDefinitionError, match=r"'b' has unknown parent\(s\) \['x'\]"):
        _dag(a=[], b=["x"]).validate()
    with pytest.raises(PipelineDefinitionError, match="defined twice"):
        _dag(a=[]).add(Node(name="a", spec=None))


def test_dag_report_has_the_cli_shape():
    dag = _dag(a=[], b=["a"], c=["a", "b"])
    report = dag.report()
    assert report["edges"] == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert report["nodes"][0] == {
        "name": "a", "task_id": None, "status": "pending", "parents": [], "started": None,
        "completed": None, "cached": False, "queue": None,
    }  # fmt: skip
    assert [n.name for n in dag.topological()] == ["a", "b", "c"]
    assert {n.name for n in dag.descendants("a")} == {"b", "c"}


def test_references_parse_and_substitute():
    assert parse_reference("pipeline.lr").field == "arg"
    assert parse_reference("train.id").field == "id"
    ref = parse_reference("prep.artifacts.data.url")
    assert (ref.target, ref.field, ref.key) == ("prep", "artifact_url", "data")
    assert parse_reference("prep.parameters.Args/x").key == "Args/x"
    assert parse_reference("prep.data").field == "return"
    with pytest.raises(PipelineDefinitionError, match="bad reference"):
        parse_reference("nodot")
    value = {"a": "${pipeline.n}", "b": "x-${pipeline.n}-${s.id}", "c": ["${s.artifacts.m.url}"]}
    assert referenced_steps(value) == ["s"]
    assert len(find_references(value)) == 4
    out = substitute(value, lambda r: 3 if r.target == "pipeline" else f"<{r.field}>")
    assert out == {"a": 3, "b": "x-3-<id>", "c": ["<artifact_url>"]}


def _decorate(fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        return fn(*a, **k)

    return wrapper


def helper(x):
    return x * 2


@_decorate
def component(a, b=2):
    # a comment stays
    return helper(a) + b


def test_step_code_carries_the_function_its_decorators_and_helpers():
    source = function_source(component)
    assert source.startswith("def component(a, b=2):") and "# a comment stays" in source
    code = step_script(component, ["total"], [helper])
    assert "def helper(x):" in code and "def _decorate(fn):" in code
    assert "import functools" in code  # the decorator's module-level import travels too
    assert code.index("def helper") < code.index("def component")
    assert f"{STEP_NAME} = (_decorate)(component)" in code
    assert f"run_step({STEP_NAME}, return_values=['total'])" in code
    namespace: dict = {"__name__": "step"}
    exec(compile(code, "step.py", "exec"), namespace)
    assert namespace[STEP_NAME](1) == 4
    assert namespace[STEP_NAME].__wrapped__ is namespace["component"]


def _times(n):
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            return n * fn(*a, **k)

        return wrapper

    return decorate


@_times(3)
@_decorate
def tripled(a):
    return a + 1


def test_stacked_decorators_with_arguments_and_one_applied_by_a_call():
    code = step_script(_decorate(tripled), ["x"])  # one more, applied at run time
    assert f"{STEP_NAME} = (_decorate)((_times(3))((_decorate)(tripled)))" in code
    namespace: dict = {"__name__": "step"}
    exec(compile(code, "step.py", "exec"), namespace)
    assert namespace[STEP_NAME](1) == 6 == _decorate(tripled)(1)


def test_a_wrapper_that_cannot_be_made_again_is_a_clear_error():
    class Wrapper:
        def __init__(self, fn):
            functools.update_wrapper(self, fn)

        def __call__(self, *a):
            return self.__wrapped__(*a)

    with pytest.raises(PipelineDefinitionError, match="apply the decorator with @"):
        step_script(Wrapper(helper), ["x"])


def test_return_values_split_on_commas_as_clearml_does():
    assert split_return_values(["X_train, X_test, y_train, y_test"]) == [
        "X_train", "X_test", "y_train", "y_test",
    ]  # fmt: skip
    assert split_return_values(["a", "b"]) == ["a", "b"]
    assert split_return_values("model") == ["model"]
    assert split_return_values(None) == ["return_object"]
    assert split_return_values([]) == []


def test_a_component_repo_url_is_recorded_without_its_secrets():
    # component(repo=...): agents clone it with their own [agent.git] credentials.
    script, local_dir = repo_script("https://bob:t0k-123@h.example/r.git", branch="main")
    assert (script.repository, script.branch, local_dir) == (
        "https://h.example/r.git",
        "main",
        None,
    )
    script, _ = repo_script("ssh://git:t0k-123@h.example/r.git?private_token=t0k-123")
    assert script.repository == "ssh://git@h.example/r.git"


def test_controller_code_leaves_out_the_step_functions():
    code = (
        "import os\nfrom x import y\n"
        "@PipelineDecorator.component(return_values=['a'])\ndef step():\n    import pandas\n"
        "@component\ndef other():\n    import torch\n"
        "def as_function_step():\n    import sklearn\n"
        "def data_url():\n    import numpy\n"
        "if True:\n    import json\n"
        "pipe.add_function_step('s', function=as_function_step)\n"
    )
    kept = imported_modules(controller_code(code))
    assert kept == {"os", "x", "numpy", "json"}


def test_cache_key_sees_code_params_requirements_and_container():
    base = cache_key("code", {"a": 1}, ["x==1", "y"], {"image": ""})
    assert base == cache_key("code", {"a": 1}, ["y", "x==1"], {"image": "", "arguments": ""})
    assert base != cache_key("code2", {"a": 1}, ["x==1", "y"], {})
    assert base != cache_key("code", {"a": 2}, ["x==1", "y"], {})
    assert base != cache_key("code", {"a": 1}, ["x==2", "y"], {})
    assert base != cache_key("code", {"a": 1}, ["x==1", "y"], {"image": "python:3.11"})


def test_retry_policy_counts_delays_and_backs_off():
    policy = RetryPolicy.coerce(2, delay=1.0, backoff=3.0)
    assert [policy.should_retry(None, None, n) for n in range(3)] == [True, True, False]
    assert [policy.delay_for(n) for n in range(3)] == [1.0, 3.0, 9.0]
    calls = []
    custom = RetryPolicy.coerce(
        lambda pipeline, node, retries: calls.append(retries) or retries < 1
    )
    assert custom.should_retry("p", "n", 0) and not custom.should_retry("p", "n", 1)
    assert calls == [0, 1]
    assert RetryPolicy.coerce(None) is None
