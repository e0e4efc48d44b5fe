"""The train stage: the declared features plus an allowlisted estimator, fit, saved with skops.

Estimators are chosen by name from ESTIMATORS (per task kind), never imported by a name taken
from params, and their keyword arguments are checked against the estimator's own parameter
constraints before anything is fit, so a typo is a config error rather than a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints
from threadpoolctl import threadpool_limits

from pipeline import io
from pipeline.config import Features, Params, Task
from pipeline.errors import ConfigError, InputError
from pipeline.features import check_declaration, feature_columns
from pipeline.model_io import save_model
from pipeline.transform import compile_features

Kind = Literal["classification", "regression"]

# Threads used while fitting. Fixed, not "all cores": hist_gradient_boosting sums gradients in
# per-thread chunks, so its floats (and the model's md5 in dvc.lock) depend on the thread count.
# One thread makes the model a function of its inputs on any machine (and avoids OpenMP
# oversubscription on busy CI runners).
FIT_THREADS = 1

# The allowlist: (name in params.yaml, task kind) -> estimator class. Adding a model is one line
# here, one enum value in pipeline/schemas/params.schema.json and its types in trusted_types.txt.
ESTIMATORS: Mapping[tuple[str, Kind], type[Any]] = {
    ("logistic_regression", "classification"): LogisticRegression,
    ("random_forest", "classification"): RandomForestClassifier,
    ("hist_gradient_boosting", "classification"): HistGradientBoostingClassifier,
    ("linear_regression", "regression"): LinearRegression,
    ("ridge", "regression"): Ridge,
    ("random_forest", "regression"): RandomForestRegressor,
    ("hist_gradient_boosting", "regression"): HistGradientBoostingRegressor,
}


def task_kind(task_type: str) -> Kind:
    return "regression" if task_type == "regression" else "classification"


def estimator_class(name: str, task_type: str) -> type[Any]:
    """The allowlisted class for `name` on this task, or ConfigError naming train.model."""
    kind = task_kind(task_type)
    try:
        return ESTIMATORS[(name, kind)]
    except KeyError:
        valid = sorted(n for n, k in ESTIMATORS if k == kind)
        problem = f"{name!r} is not a {kind} model for task {task_type!r} (choose from {valid})"
        raise ConfigError([f"train.model: {problem}"]) from None


def build_estimator(name: str, kwargs: Mapping[str, Any], seed: int, task_type: str) -> Any:
    """An unfitted estimator with checked kwargs; ConfigError lists every bad `train.kwargs.*`."""
    cls = estimator_class(name, task_type)
    defaults = cls().get_params(deep=False)
    constraints: dict[str, Any] = getattr(cls, "_parameter_constraints", {})
    problems = []
    for key, value in kwargs.items():
        where = f"train.kwargs.{key}"
        if key not in defaults:
            valid = ", ".join(sorted(defaults))
            problems.append(f"{where}: unknown parameter of {cls.__name__} (valid: {valid})")
        elif key == "random_state":
            problems.append(f"{where}: set train.seed instead (it is passed as random_state)")
        elif key in constraints:
            try:
                validate_parameter_constraints(
                    {key: constraints[key]}, {key: value}, caller_name=cls.__name__
                )
            except InvalidParameterError as exc:
                problems.append(f"{where}: {exc}")
    if problems:
        raise ConfigError(problems)
    chosen = dict(kwargs)
    if "random_state" in defaults:
        chosen["random_state"] = seed
    return cls(**chosen)


def build_model(features_cfg: Features, train_cfg: Any, task: Task) -> Pipeline:
    """Unfitted Pipeline([("features", compiled declaration), ("model", allowlisted estimator)])."""
    check_declaration(features_cfg, task)
    estimator = build_estimator(train_cfg.model, train_cfg.kwargs, train_cfg.seed, task.type)
    return Pipeline([("features", compile_features(features_cfg)), ("model", estimator)])


def fit(model: Pipeline, frame: pd.DataFrame, features_cfg: Features, task: Task) -> Pipeline:
    """Fit a clone of `model` on the declared columns of `frame` (target excluded)."""
    wanted = [*feature_columns(features_cfg), task.target]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise InputError(f"training data lacks declared column(s): {', '.join(missing)}")
    if frame.empty:
        raise InputError("training data has no rows")
    fitted: Pipeline = clone(model)
    X = frame[feature_columns(features_cfg)]  # noqa: N806 - sklearn convention
    y = frame[task.target]
    try:
        with threadpool_limits(limits=FIT_THREADS):
            fitted.fit(X, y)
    except InvalidParameterError as exc:
        raise ConfigError([f"train.kwargs: {exc}"]) from exc
    except ValueError as exc:  # e.g. a kwargs combination the estimator rejects, or a bad label
        name = type(model.named_steps["model"]).__name__
        raise InputError(
            f"fitting {name} on {len(frame)} rows failed: {exc} "
            "(check train.kwargs and the training data)"
        ) from exc
    return fitted


def run(params: Params) -> None:
    """Fit the model on paths.train and save it to paths.model (canonical skops bytes)."""
    model = build_model(params.features, params.train, params.task)
    wanted = [*feature_columns(params.features), params.task.target]
    frame = io.read_table(params.paths.train, columns=wanted)
    fitted = fit(model, frame, params.features, params.task)
    save_model(fitted, params.paths.model)
