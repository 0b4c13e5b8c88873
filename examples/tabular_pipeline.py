"""ClearML's tabular data-processing pipeline example, ported to pipeline-agent.

create_dataset -> preprocess_dataset (a child dataset version) -> verify_dataset_integrity
-> train_model (two trainings in parallel) -> select_best_model (the best model becomes an
output model of the pipeline).

Changes from ClearML's ``examples/pipeline/full_tabular_data_process_pipeline_example.py``:
the imports (``agent`` for ``clearml``); the mode comes from the flags below, as in the
iris example, not from ``Task.running_locally()``; f-strings for ``str.format``;
scikit-learn's ``GradientBoostingRegressor`` for XGBoost (``n_estimators`` for
``num_boost_round``), saved with ``joblib.dump``, which registers it as the step's output
model as ``bst.save_model`` does in ClearML; and the data: instead of downloading the UCI
adult CSV, the script makes a synthetic one in the same format (15 columns, no header)
and uploads it to the files store (``StorageManager.get_files_server()``), so that steps
read it alike on every node. Steps write ``dataset.csv`` and ``a_model.pkl`` where they
run (in --debug and --local mode: this folder). Run it::

    python examples/tabular_pipeline.py --debug    # in this process, steps as plain calls
    python examples/tabular_pipeline.py --local    # controller here, steps as processes
    python examples/tabular_pipeline.py            # controller on the services queue
"""

import sys

from agent import PipelineDecorator


@PipelineDecorator.component(cache=True)
def create_dataset(source_url: str, project: str, dataset_name: str) -> str:
    print("starting create_dataset")
    import pandas as pd

    from agent import Dataset, StorageManager

    local_file = StorageManager.get_local_copy(source_url)
    df = pd.read_csv(local_file, header=None)
    df.to_csv(path_or_buf="./dataset.csv", index=False)
    dataset = Dataset.create(dataset_project=project, dataset_name=dataset_name)
    dataset.add_files("./dataset.csv")
    dataset.get_logger().report_table(title="sample", series="head", table_plot=df.head())
    dataset.finalize(auto_upload=True)

    print("done create_dataset")
    return dataset.id


@PipelineDecorator.component(cache=True)
def preprocess_dataset(dataset_id: str):
    print("starting preprocess_dataset")
    from pathlib import Path

    import pandas as pd

    from agent import Dataset

    dataset = Dataset.get(dataset_id=dataset_id)
    local_folder = dataset.get_local_copy()
    df = pd.read_csv(Path(local_folder) / "dataset.csv", header=None)
    # "preprocessing" - adding columns
    df.columns = [
        "age", "workclass", "fnlwgt", "degree", "education-yrs", "marital-status",
        "occupation", "relationship", "ethnicity", "gender", "capital-gain",
        "capital-loss", "hours-per-week", "native-country", "income-cls",
    ]  # fmt: skip
    df.to_csv(path_or_buf="./dataset.csv", index=False)

    # store in a new dataset
    new_dataset = Dataset.create(
        dataset_project=dataset.project,
        dataset_name=f"{dataset.name} v2",
        parent_datasets=[dataset],
    )
    new_dataset.add_files("./dataset.csv")
    new_dataset.get_logger().report_table(title="sample", series="head", table_plot=df.head())
    new_dataset.finalize(auto_upload=True)

    print("done preprocess_dataset")
    return new_dataset.id


@PipelineDecorator.component(cache=True)
def verify_dataset_integrity(dataset_id: str, expected_num_columns: int):
    print("starting verify_dataset_integrity")
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from agent import Dataset, Logger

    dataset = Dataset.get(dataset_id=dataset_id)
    local_folder = dataset.get_local_copy()
    df = pd.read_csv(Path(local_folder) / "dataset.csv")
    print("Verifying dataset")
    assert len(df.columns) == expected_num_columns
    print("PASSED")
    # log some stats on the age column
    Logger.current_logger().report_histogram(
        title="histogram", series="age", values=np.histogram(df["age"])
    )

    print("done verify_dataset_integrity")
    return True


@PipelineDecorator.component(output_uri=True)
def train_model(dataset_id: str, training_args: dict):
    print("starting train_model")
    from pathlib import Path

    import joblib
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.model_selection import train_test_split

    from agent import Dataset, Task

    dataset = Dataset.get(dataset_id=dataset_id)
    local_folder = dataset.get_local_copy()
    df = pd.read_csv(Path(local_folder) / "dataset.csv")

    # prepare data (i.e. select specific columns)
    columns = ["age", "fnlwgt", "education-yrs", "capital-gain", "capital-loss", "hours-per-week"]
    X = df[columns].drop("age", axis=1)
    y = df["age"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

    # train with scikit-learn's gradient boosting
    model = GradientBoostingRegressor(
        loss="squared_error",
        n_estimators=training_args.get("num_boost_round", 100),
        random_state=0,
    )
    model.fit(X_train, y_train)
    # evaluate
    y_pred = model.predict(X_test)
    plt.plot(y_test, "r")
    plt.plot(y_pred, "b")

    # let's store the eval score
    error = np.linalg.norm(y_test - y_pred)
    joblib.dump(model, "a_model.pkl")

    Task.current_task().reload()
    model_id = Task.current_task().models["output"][-1].id
    print("done train_model")
    return dict(error=error, model_id=model_id)


@PipelineDecorator.component(monitor_models=["best"])
def select_best_model(models_score: list):
    print("starting select_best_model:", models_score)
    from agent import OutputModel, Task

    best_model = None
    for m in models_score:
        if not best_model or m["error"] < best_model["error"]:
            best_model = m

    print(f"The best model is {best_model}")
    # lets store it on the pipeline
    best_model = OutputModel(base_model_id=best_model["model_id"])
    # let's make sure we have it
    best_model.connect(task=Task.current_task(), name="best")

    print("done select_best_model")
    return best_model.id


@PipelineDecorator.pipeline(name="tabular_pipeline", project="tabular_pipe_demo", version="0.1")
def pipeline(data_url: str, project: str):
    dataset_id = create_dataset(source_url=data_url, project=project, dataset_name="mock")

    preprocessed_dataset_id = preprocess_dataset(dataset_id=dataset_id)

    if not bool(
        verify_dataset_integrity(dataset_id=preprocessed_dataset_id, expected_num_columns=15)
    ):
        print("Verification Failed!")
        return False

    print("start training models")
    models_score = []
    for i in [100, 150]:
        model_score = train_model(
            dataset_id=preprocessed_dataset_id, training_args=dict(num_boost_round=i)
        )
        models_score.append(model_score)

    model_id = select_best_model(models_score=models_score)
    print(f"selected model_id = {model_id}")


def adult_csv_url(rows: int = 1500, seed: int = 7) -> str:
    """Make a synthetic CSV in the format of the UCI adult data (15 columns, no header),
    upload it to the files store, and return its URL (readable on every node)."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from agent import StorageManager

    rng = np.random.default_rng(seed)
    age = rng.integers(17, 80, rows)
    education_yrs = np.clip(rng.normal(10, 2.5, rows).round(), 1, 16).astype(int)
    hours = np.clip(rng.normal(45 - 0.3 * np.maximum(age - 45, 0), 8, rows).round(), 1, 99)
    has_gain = rng.random(rows) < 0.02 + age / 800
    capital_gain = np.where(has_gain, (age * rng.uniform(50, 200, rows)).round(), 0)
    capital_loss = np.where(rng.random(rows) < 0.04, rng.integers(100, 2500, rows), 0)
    fnlwgt = np.clip(rng.normal(190_000, 100_000, rows), 12_000, None).round()

    def pick(*values: str) -> np.ndarray:
        return rng.choice(values, rows)

    columns = [
        age,
        pick("Private", "Self-emp-not-inc", "Local-gov", "State-gov", "Federal-gov"),
        fnlwgt.astype(int),
        pick("HS-grad", "Some-college", "Bachelors", "Masters", "Assoc-voc", "11th"),
        education_yrs,
        pick("Married-civ-spouse", "Never-married", "Divorced", "Widowed", "Separated"),
        pick("Prof-specialty", "Craft-repair", "Exec-managerial", "Adm-clerical", "Sales"),
        pick("Husband", "Not-in-family", "Own-child", "Unmarried", "Wife"),
        pick("White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"),
        pick("Male", "Female"),
        capital_gain.astype(int),
        capital_loss,
        hours.astype(int),
        pick("United-States", "Mexico", "Philippines", "Germany", "Canada"),
        np.where((education_yrs > 12) & (age > 30), ">50K", "<=50K"),
    ]
    path = Path(tempfile.mkdtemp()) / "adult.data"
    with open(path, "w") as fh:
        for row in zip(*columns, strict=True):
            fh.write(", ".join(str(v) for v in row) + "\n")
    remote = f"{StorageManager.get_files_server()}/examples/tabular_pipeline/adult.data"
    return StorageManager.upload_file(str(path), remote)


if __name__ == "__main__":
    if "--debug" in sys.argv:
        PipelineDecorator.debug_pipeline()
    elif "--local" in sys.argv:
        PipelineDecorator.run_locally()
    pipeline(data_url=adult_csv_url(), project="tabular_pipe_demo")
    print("pipeline completed")
