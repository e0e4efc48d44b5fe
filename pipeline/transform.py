"""The declared features as ONE unfitted scikit-learn ColumnTransformer (plus its one custom step).

train puts it in front of the estimator, so the saved model carries the exact training-time
transformation and `predict` cannot drift from it (no training/serving skew). Kept apart from
the features stage, which only splits rows and never needs scikit-learn (~1.8 s to import).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from pipeline.config import Features
from pipeline.errors import ConfigError

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
