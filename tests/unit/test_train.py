"""pipeline/train.py: the estimator allowlist, checked kwargs, fitting and the train stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from pipeline import io
from pipeline.config import Params, load_params
from pipeline.errors import ConfigError, InputError
from pipeline.features import split_indices
from pipeline.ingest import generate
from pipeline.model_io import load_model
from pipeline.train import ESTIMATORS, build_model, fit, run
from tests.conftest import DEMO_ROOT

# Small, fast settings per model so every (model, task) pair trains in well under a second.
FAST: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 500},
    "linear_regression": {},
    "ridge": {"alpha": 1.0},
    "random_forest": {"n_estimators": 10, "max_depth": 4},
    "hist_gradient_boosting": {"max_iter": 10},
}


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def configured(params: Params, model: str, task_type: str, **kwargs: Any) -> Params:
    """params with another model/kwargs/task type (the label name stays `default`)."""
    train = dataclasses.replace(
        params.train, model=model, kwargs=MappingProxyType(kwargs or FAST[model])
    )
    task = dataclasses.replace(params.task, type=task_type)
    split_cfg = dataclasses.replace(params.split, stratify=task_type != "regression")
    return dataclasses.replace(params, train=train, task=task, split=split_cfg)


def sample(params: Params, rows: int = 500) -> pd.DataFrame:
    generator = dataclasses.replace(params.ingest.generator, rows=rows)
    return generate(generator, params.task)


def split(frame: pd.DataFrame, p: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The features stage's seeded split, on a DataFrame."""
    labels = frame[p.task.target].to_numpy() if p.split.stratify else None
    train, test = split_indices(labels, len(frame), p.split)
    return frame.iloc[train], frame.iloc[test]


PAIRS = sorted((name, kind) for name, kind in ESTIMATORS)


@pytest.mark.parametrize(("name", "kind"), PAIRS)
def test_every_allowlisted_model_trains_and_predicts(params: Params, name: str, kind: str) -> None:
    task_types = ["regression"] if kind == "regression" else ["binary", "multiclass"]
    for task_type in task_types:
        p = configured(params, name, task_type)
        train, test = split(sample(p), p)
        model = fit(build_model(p.features, p.train, p.task), train, p.features, p.task)
        assert isinstance(model, Pipeline)
        assert [step for step, _ in model.steps] == ["features", "model"]
        assert type(model.named_steps["model"]) is ESTIMATORS[(name, kind)]  # type: ignore[index]
        predicted = model.predict(test)
        assert len(predicted) == len(test)
        if kind == "classification":
            assert set(predicted) <= set(train[p.task.target])
            proba = model.predict_proba(test)
            np.testing.assert_allclose(proba.sum(axis=1), 1.0)
            expected = {"binary": 2, "multiclass": 3}[task_type]
            assert proba.shape == (len(test), expected)
        else:
            assert np.isfinite(predicted).all()


def test_seed_is_passed_as_random_state(params: Params) -> None:
    p = configured(params, "random_forest", "binary")
    model = build_model(p.features, p.train, p.task)
    assert model.named_steps["model"].random_state == p.train.seed
    linear = configured(params, "linear_regression", "regression")
    assert (
        "random_state"
        not in build_model(linear.features, linear.train, linear.task)
        .named_steps["model"]
        .get_params()
    )


def test_kwargs_reach_the_estimator(params: Params) -> None:
    p = configured(params, "hist_gradient_boosting", "binary", max_iter=7, learning_rate=0.05)
    estimator = build_model(p.features, p.train, p.task).named_steps["model"]
    assert (estimator.max_iter, estimator.learning_rate) == (7, 0.05)


def test_fit_is_deterministic(params: Params) -> None:
    p = configured(params, "random_forest", "binary")
    frame = sample(p)
    a = fit(build_model(p.features, p.train, p.task), frame, p.features, p.task)
    b = fit(build_model(p.features, p.train, p.task), frame, p.features, p.task)
    np.testing.assert_array_equal(a.predict_proba(frame), b.predict_proba(frame))


def test_fit_ignores_undeclared_columns(params: Params) -> None:
    p = configured(params, "logistic_regression", "binary")
    frame = sample(p)
    model = fit(build_model(p.features, p.train, p.task), frame, p.features, p.task)
    assert "sex" not in model.feature_names_in_
    assert "application_id" not in model.feature_names_in_
    assert p.task.target not in model.feature_names_in_


# --------------------------------------------------------------------------- config errors


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: Params) -> Path:
    monkeypatch.chdir(tmp_path)
    io.write_table(params.paths.train, sample(params))
    return tmp_path


@pytest.mark.parametrize(
    ("model", "task_type", "kwargs", "message"),
    [
        (
            "hist_gradient_boosting",
            "binary",
            {"max_iter": 5, "n_trees": 3},
            r"train\.kwargs\.n_trees: unknown parameter of HistGradientBoostingClassifier",
        ),
        (
            "hist_gradient_boosting",
            "binary",
            {"learning_rate": -1.0},
            r"train\.kwargs\.learning_rate: The 'learning_rate' parameter of "
            r"HistGradientBoostingClassifier must be a float in the range \(0.0, inf\)\. "
            r"Got -1\.0 instead",
        ),
        (
            "random_forest",
            "binary",
            {"max_features": "most"},
            r"train\.kwargs\.max_features: The 'max_features' parameter",
        ),
        (
            "random_forest",
            "binary",
            {"random_state": 1},
            r"train\.kwargs\.random_state: set train\.seed instead",
        ),
        (
            "logistic_regression",
            "regression",
            {},
            r"train\.model: 'logistic_regression' is not a regression model",
        ),
        (
            "linear_regression",
            "binary",
            {},
            r"train\.model: 'linear_regression' is not a classification model",
        ),
    ],
)
def test_bad_model_config_is_a_config_error_and_writes_nothing(
    workspace: Path,
    params: Params,
    model: str,
    task_type: str,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    train = dataclasses.replace(params.train, model=model, kwargs=MappingProxyType(kwargs))
    task = dataclasses.replace(params.task, type=task_type)
    with pytest.raises(ConfigError, match=message):
        run(dataclasses.replace(params, train=train, task=task))
    assert not Path(params.paths.model).exists()


def test_every_bad_kwarg_is_listed_at_once(params: Params) -> None:
    p = configured(params, "random_forest", "binary", n_estimators=0, colour="red")
    with pytest.raises(ConfigError) as info:
        build_model(p.features, p.train, p.task)
    assert len(info.value.violations) == 2
    assert any("train.kwargs.n_estimators" in v for v in info.value.violations)
    assert any("train.kwargs.colour" in v for v in info.value.violations)


def test_run_saves_a_loadable_model(workspace: Path, params: Params) -> None:
    p = configured(params, "hist_gradient_boosting", "binary")
    run(p)
    model = load_model(p.paths.model)
    frame = io.read_table(p.paths.train)
    assert model.predict(frame).shape == (len(frame),)
    first = Path(p.paths.model).read_bytes()
    run(p)
    assert Path(p.paths.model).read_bytes() == first  # same inputs -> same bytes


def test_kwargs_the_estimator_rejects_at_fit_time_are_reported(
    workspace: Path, params: Params
) -> None:
    # Each value is valid alone; the combination is not (lbfgs has no l1 penalty).
    p = configured(params, "logistic_regression", "binary", l1_ratio=1.0, solver="lbfgs")
    with pytest.raises(InputError, match="fitting LogisticRegression on 500 rows failed"):
        run(p)
    assert not Path(p.paths.model).exists()
