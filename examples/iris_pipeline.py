"""The 4-step pipeline of ClearML's pipelines page, ported to pipeline-agent.

Changes from the page: the imports (``agent`` for ``clearml``), what today's pandas and
scikit-learn refuse (pandas 3 rejects ``data_frame.columns += ['target']``: the column is
added by assignment only; scikit-learn 1.9 has no liblinear multi-class: the model is
``OneVsRestClassifier(LogisticRegression(solver='liblinear'))``), the page's slips
(step_three's unused ``data`` parameter, the indentation of ``main``'s last lines), and
the data: the iris pickle is made here from ``sklearn.datasets.load_iris()`` and passed
as a ``file://`` URL (no internet needed).

It prints ``Accuracy=3200%`` as the page's does: step_four's
``accuracy_score(normalize=False)`` returns the count of correctly classified test
samples (32 of iris' 32), not a fraction, and ``main`` multiplies it by 100. The line says
so, and step_four's log has the fraction (``32 of 32 test samples correct (100.0%)``).

Run it::

    python examples/iris_pipeline.py --debug    # in this process, steps as plain calls
    python examples/iris_pipeline.py --local    # controller here, steps as processes
    python examples/iris_pipeline.py            # controller on the services queue
"""

import sys

from agent import TaskTypes
from agent.automation.controller import PipelineDecorator


@PipelineDecorator.component(
    return_values=["data_frame"], cache=True, task_type=TaskTypes.data_processing
)
def step_one(pickle_data_url: str, extra: int = 43):
    import pickle

    import pandas as pd
    import sklearn  # noqa

    from agent import StorageManager

    local_iris_pkl = StorageManager.get_local_copy(remote_url=pickle_data_url)
    with open(local_iris_pkl, "rb") as f:
        iris = pickle.load(f)
    data_frame = pd.DataFrame(iris["data"], columns=iris["feature_names"])
    data_frame["target"] = iris["target"]
    return data_frame


@PipelineDecorator.component(
    return_values=["X_train, X_test, y_train, y_test"],
    cache=True,
    task_type=TaskTypes.data_processing,
)
def step_two(data_frame, test_size=0.21, random_state=421):
    import pandas as pd  # noqa
    from sklearn.model_selection import train_test_split

    y = data_frame["target"]
    X = data_frame[(c for c in data_frame.columns if c != "target")]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=random_state
    )
    return X_train, X_test, y_train, y_test


@PipelineDecorator.component(return_values=["model"], cache=True, task_type=TaskTypes.training)
def step_three(X_train, y_train):
    print("step_three")
    # make sure we have pandas for this step, we need it to use the data_frame
    import pandas as pd  # noqa
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = OneVsRestClassifier(LogisticRegression(solver="liblinear"))
    model.fit(X_train, y_train)
    return model


@PipelineDecorator.component(return_values=["accuracy"], cache=True, task_type=TaskTypes.qc)
def step_four(model, X_data, Y_data):
    from sklearn.linear_model import LogisticRegression  # noqa
    from sklearn.metrics import accuracy_score

    Y_pred = model.predict(X_data)
    # As in ClearML's example: normalize=False counts the correct samples (not a fraction).
    correct = accuracy_score(Y_data, Y_pred, normalize=False)
    print(f"{correct} of {len(Y_data)} test samples correct ({100 * correct / len(Y_data):.1f}%)")
    return correct


@PipelineDecorator.pipeline(name="pipeline", project="examples", version="0.1")
def main(pickle_url, mock_parameter="mock"):
    data_frame = step_one(pickle_url)
    X_train, X_test, y_train, y_test = step_two(data_frame)
    model = step_three(X_train, y_train)
    correct = step_four(model, X_data=X_test, Y_data=y_test)
    accuracy = 100 * correct
    # ClearML's pipelines example prints this "accuracy": 100 x the count of correct samples.
    print(
        f"Accuracy={accuracy}% ({correct} test samples correct: accuracy_score(normalize=False)"
        " counts them, as on ClearML's pipelines page; step_four's log has the fraction)"
    )


def iris_pickle_url() -> str:
    """Pickle scikit-learn's iris data set into a local file; its ``file://`` URL."""
    import pickle
    import tempfile
    from pathlib import Path

    from sklearn.datasets import load_iris

    iris = load_iris()
    path = Path(tempfile.gettempdir()) / "iris_dataset.pkl"
    with open(path, "wb") as fh:
        pickle.dump(
            {
                "data": iris["data"],
                "target": iris["target"],
                "feature_names": iris["feature_names"],
            },
            fh,
        )
    return path.as_uri()


if __name__ == "__main__":
    if "--debug" in sys.argv:
        PipelineDecorator.debug_pipeline()
    elif "--local" in sys.argv:
        PipelineDecorator.run_locally()
    main(pickle_url=iris_pickle_url())
    print("pipeline completed")
