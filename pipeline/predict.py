"""Score raw rows with the saved model: the same code path for evaluate and the `predict` command.

The model file holds the fitted feature transformer in front of the estimator, so scoring raw
columns here applies exactly the training-time transformation (no training/serving skew).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from pipeline import io
from pipeline.config import Params, Task
from pipeline.errors import CheckFailed, InputError
from pipeline.model_io import load_model


def input_columns(model: Any) -> list[str]:
    """The raw columns the model was fit on (the declared features)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise InputError("the model does not record the columns it was fit on")
    return [str(n) for n in names]


def unseen_categories(model: Any, frame: pd.DataFrame) -> list[str]:
    """Per column, categorical values the fitted encoders never saw (nulls: the contract's job)."""
    steps = getattr(model, "named_steps", {})
    transformer = steps.get("features")
    problems: list[str] = []
    for _, fitted, columns in getattr(transformer, "transformers_", []):
        encoder = fitted.steps[-1][1] if isinstance(fitted, Pipeline) else fitted
        known_per_column = getattr(encoder, "categories_", None)
        if known_per_column is None:
            continue
        for column, known in zip(columns, known_per_column, strict=True):
            if column not in frame.columns:
                continue
            values = frame[column].dropna()
            unseen = values[~values.isin(list(known))]
            if len(unseen):
                examples = ", ".join(repr(v) for v in sorted(set(map(str, unseen)))[:5])
                problems.append(
                    f"{column}: {len(unseen)} values of categories unseen in training ({examples})"
                )
    return problems


def score(model: Any, frame: pd.DataFrame, task: Task) -> pd.DataFrame:
    """`prediction` plus, for classifiers, one `proba_<class>` per class in model.classes_ order.

    Pure: reads only the model's input columns (extra columns such as the target are ignored),
    keeps `frame`'s index, never modifies `frame`.
    """
    is_classifier = hasattr(model, "predict_proba")
    if is_classifier != (task.type != "regression"):
        kind = "classifier" if is_classifier else "regressor"
        raise InputError(f"the model is a {kind} but task.type is {task.type!r}")
    columns = input_columns(model)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"input lacks the model's column(s): {', '.join(missing)}")
    features = frame.loc[:, columns]
    out = pd.DataFrame(index=frame.index)
    if task.type == "regression":
        out["prediction"] = np.asarray(model.predict(features))
        return out
    # One pass: every allowlisted classifier's predict() is the argmax of predict_proba().
    proba = np.asarray(model.predict_proba(features), dtype=np.float64)
    out["prediction"] = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    for i, label in enumerate(model.classes_):
        out[f"proba_{label}"] = proba[:, i]
    return out


def run_predict(
    params: Params,
    input: str,
    output: str | os.PathLike[str],
    model_path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Check `input` (path or URL) against the data contract, score it, write `output`.

    The target column may be absent. Nothing is written unless every check passes.
    """
    from pipeline.ingest import coerce_types
    from pipeline.validate import contract_failures, load_contract, with_target

    if Path(os.fspath(output)).suffix.lower() not in io.TABLE_SUFFIXES:
        raise InputError(f"--output {output}: expected a .csv or .parquet file name")
    # The label is checked like in validate when present, and may be absent.
    contract = with_target(load_contract(params.paths.contract), params.task)
    frame = io.read_table(input)
    if frame.empty:
        raise InputError(f"{input}: no rows to score")
    frame = coerce_types(frame, {name: spec.dtype for name, spec in contract.columns.items()})
    # A batch to score may be small: the contract's minimum row count is for training data.
    contract = dataclasses.replace(cast(Any, contract), min_rows=0)
    failures = contract_failures(frame, contract, optional=(params.task.target,))
    if failures:
        raise CheckFailed(f"{input}: the data contract failed", failures)
    model = load_model(model_path or params.paths.model)
    unseen = unseen_categories(model, frame)
    if unseen:
        raise CheckFailed(f"{input}: categories the model was not trained on", unseen)
    scored = score(model, frame, params.task)
    io.write_table(output, scored)
    return scored
