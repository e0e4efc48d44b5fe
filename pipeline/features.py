"""The features stage: split the validated rows and compile the declared features.

The declaration in `params.features` compiles into ONE unfitted scikit-learn ColumnTransformer
that train puts in front of the estimator, so the saved model carries the exact training-time
transformation and `predict` cannot drift from it (no training/serving skew).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipeline import io
from pipeline.config import Features, Params, Split, Task
from pipeline.errors import ConfigError, InputError

# Fill value for empty categorical cells: a category of its own, so "missing" can carry signal.
MISSING_CATEGORY = "__missing__"

# The parts a datetime column can be split into (the params schema lists the same names),
# mapped to the pandas `.dt` attribute that computes each.
DATETIME_PARTS = {
    "year": "year",
    "month": "month",
    "day": "day",
    "dayofweek": "day_of_week",
    "hour": "hour",
    "dayofyear": "day_of_year",
}


class DatetimeParts(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Turn datetime columns into numeric parts (month, dayofweek, ...), one column per part.

    Strings (a CSV carries no types) are parsed; unparsable or empty cells become NaN, which the
    contract check rejects before scoring. Defined here, listed in trusted_types.txt, so skops
    loads it without trusting anything else.
    """

    def __init__(self, parts: tuple[str, ...] = ("month",)) -> None:
        self.parts = parts

    def fit(self, X: Any, y: Any = None) -> DatetimeParts:  # noqa: N803 - sklearn convention
        unknown = [p for p in self.parts if p not in DATETIME_PARTS]
        if unknown or not self.parts:
            raise ValueError(
                f"unknown datetime parts {unknown} (choose from {list(DATETIME_PARTS)})"
            )
        frame = _as_frame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray[Any, np.dtype[np.float64]]:  # noqa: N803
        frame = _as_frame(X, names=getattr(self, "feature_names_in_", None))
        if frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"expected {self.n_features_in_} datetime columns, got {frame.shape[1]}"
            )
        out = np.empty((len(frame), frame.shape[1] * len(self.parts)), dtype=np.float64)
        for i, column in enumerate(frame.columns):
            stamps = pd.to_datetime(frame[column], errors="coerce")
            for j, part in enumerate(self.parts):
                values = getattr(stamps.dt, DATETIME_PARTS[part])
                out[:, i * len(self.parts) + j] = values.astype("float64").to_numpy()
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        names = self.feature_names_in_ if input_features is None else input_features
        return np.asarray([f"{c}_{p}" for c in names for p in self.parts], dtype=object)


def _as_frame(X: Any, names: Any = None) -> pd.DataFrame:  # noqa: N803
    if isinstance(X, pd.DataFrame):
        return X
    array = np.asarray(X, dtype=object)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    columns = list(names) if names is not None and len(names) == array.shape[1] else None
    return pd.DataFrame(array, columns=columns)


# --------------------------------------------------------------------------- pure functions


def feature_columns(features_cfg: Features) -> list[str]:
    """Every declared raw column, in declaration order (numeric, categorical, datetime)."""
    return [*features_cfg.numeric, *features_cfg.categorical, *features_cfg.datetime]


def check_declaration(features_cfg: Features, task: Task) -> None:
    """The target and the sensitive attribute are never features."""
    problems = []
    for group in ("numeric", "categorical", "datetime"):
        declared = getattr(features_cfg, group)
        for name in (task.target, task.sensitive):
            if name in declared:
                role = "target" if name == task.target else "sensitive attribute"
                problems.append(f"features.{group}: {name!r} is the {role}; it cannot be a feature")
    if problems:
        raise ConfigError(problems)


def missing_columns(frame: pd.DataFrame, features_cfg: Features, task: Task) -> list[str]:
    """Declared columns (and the target) absent from `frame`."""
    wanted = [*feature_columns(features_cfg), task.target]
    return [c for c in wanted if c not in frame.columns]


def split(frame: pd.DataFrame, task: Task, split_cfg: Split) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/test split, stratified by the target when configured. Index preserved."""
    if split_cfg.stratify and task.type == "regression":
        raise ConfigError(["split.stratify: must be false for a regression task"])
    if task.target not in frame.columns:
        raise InputError(f"target column {task.target!r} is missing from the data")
    stratify = frame[task.target] if split_cfg.stratify else None
    try:
        train, test = train_test_split(
            frame,
            test_size=split_cfg.test_size,
            random_state=split_cfg.seed,
            shuffle=True,
            stratify=stratify,
        )
    except ValueError as exc:  # e.g. a class with a single row cannot be stratified
        raise InputError(f"cannot split {len(frame)} rows by {task.target!r}: {exc}") from exc
    return train, test


def compile_features(features_cfg: Features) -> ColumnTransformer:
    """The declaration as an UNFITTED ColumnTransformer; undeclared columns are dropped."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if features_cfg.numeric:
        if features_cfg.numeric_impute == "zero":
            imputer = SimpleImputer(strategy="constant", fill_value=0, keep_empty_features=True)
        else:
            imputer = SimpleImputer(strategy=features_cfg.numeric_impute, keep_empty_features=True)
        steps: list[tuple[str, Any]] = [("impute", imputer)]
        if features_cfg.scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), list(features_cfg.numeric)))
    if features_cfg.categorical:
        encoder: Any
        if features_cfg.categorical_encoding == "onehot":
            encoder = OneHotEncoder(
                handle_unknown="infrequent_if_exist",
                max_categories=features_cfg.max_categories,
                sparse_output=False,
                dtype=np.float64,
            )
        else:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float64
            )
        fill = SimpleImputer(
            strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True
        )
        categorical = Pipeline([("impute", fill), ("encode", encoder)])
        transformers.append(("categorical", categorical, list(features_cfg.categorical)))
    for column, parts in features_cfg.datetime.items():
        transformers.append((f"datetime_{column}", DatetimeParts(tuple(parts)), [column]))
    if not transformers:
        raise ConfigError(["features: no feature declared (numeric, categorical, datetime)"])
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def feature_spec(features_cfg: Features, task: Task, columns: list[str]) -> dict[str, Any]:
    """The resolved declaration written to paths.feature_spec (git-tracked, reviewed in PRs)."""
    used = {*feature_columns(features_cfg), task.target}
    return {
        "numeric": list(features_cfg.numeric),
        "categorical": list(features_cfg.categorical),
        "datetime": {k: list(v) for k, v in features_cfg.datetime.items()},
        "target": task.target,
        "task": task.type,
        "dropped": [c for c in columns if c not in used],
    }


# --------------------------------------------------------------------------- stage


def run(params: Params) -> None:
    """Read paths.raw (validated), write paths.train, paths.test and paths.feature_spec."""
    check_declaration(params.features, params.task)
    if not Path(params.paths.validation).is_file():
        raise InputError(
            f"{params.paths.validation}: not found; the data has not passed validate "
            "(run `python -m pipeline validate` first)"
        )
    frame = io.read_table(params.paths.raw)
    missing = missing_columns(frame, params.features, params.task)
    if missing:
        raise InputError(
            f"{params.paths.raw}: declared column(s) missing from the data: {', '.join(missing)}"
        )
    train, test = split(frame, params.task, params.split)
    spec = feature_spec(params.features, params.task, [str(c) for c in frame.columns])
    io.write_table(params.paths.train, train)
    io.write_table(params.paths.test, test)
    io.write_json(params.paths.feature_spec, spec)
