"""Evaluate stage: metrics, slices, fairness, plot data, reference profile, predictions.

Everything except `run` is pure (frames and objects in, JSON-ready dicts out). `run` computes
every output in memory first and writes only when all of them are finite, so a NaN metric
leaves no file behind. Every output is byte-identical run to run: floats are rounded to
metrics.SIGNIFICANT_DIGITS, sampling is by fixed index, JSON is canonical. Latency, which is
not, is measured by the benchmark stage (pipeline/benchmark.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.metrics import (
    precision_recall_curve,
    roc_curve,
)

from pipeline import io
from pipeline.config import Evaluate, Features, Params, Profile, Task
from pipeline.drift import categorical_profile, numeric_profile, profile_key
from pipeline.errors import InputError, MetricError
from pipeline.metrics import (
    binary_metrics,
    finite,
    multiclass_metrics,
    regression_metrics,
    round_sig,
)
from pipeline.model_io import load_model
from pipeline.predict import score

# Plot files (stems under paths.plots) each task writes; files of other tasks are removed.
PLOTS: Mapping[str, tuple[str, ...]] = {
    "binary": ("roc", "precision_recall", "confusion", "calibration"),
    "multiclass": ("confusion", "calibration"),
    "regression": ("residuals", "predicted_vs_actual"),
}
ALL_PLOTS = tuple(sorted({stem for stems in PLOTS.values() for stem in stems}))
# How DVC draws each plot file (dvc.yaml's top-level `plots:`, which `init` rewrites to the
# task's PLOTS: a declared file a task never writes makes every `dvc plots` call fail to load).
PLOT_SPECS: Mapping[str, Mapping[str, str]] = {
    "roc": {"x": "fpr", "y": "tpr", "title": "ROC curve"},
    "precision_recall": {"x": "recall", "y": "precision", "title": "Precision-recall curve"},
    "confusion": {
        "template": "confusion",
        "x": "actual",
        "y": "predicted",
        "title": "Confusion matrix",
    },
    "calibration": {"x": "mean_predicted", "y": "fraction_positive", "title": "Calibration"},
    "residuals": {"x": "predicted", "y": "residual", "title": "Residuals"},
    "predicted_vs_actual": {"x": "actual", "y": "predicted", "title": "Predicted vs actual"},
}

# Regression scatter plots keep at most this many points (git diffs and DVC renders stay small).
MAX_SCATTER_POINTS = 1000
# The confusion plot is a git-tracked row per test row: cap it (an even sample of the shuffled
# test set keeps the proportions) so a 1M-row dataset does not put 10 MB of JSON in git.
MAX_CONFUSION_ROWS = 5000
# Key standing for a missing value in slices and fairness groups.
NULL_KEY = "__null__"
# Format version of models/reference.json (profiles built by pipeline.drift).
PROFILE_VERSION = 1

Json = dict[str, Any]


# --------------------------------------------------------------------------- small helpers


def _py(value: Any) -> Any:
    """A numpy/pandas scalar as the plain Python value json can write."""
    return value.item() if isinstance(value, np.generic) else value


def _opt(value: Any) -> float | None:
    """Rounded float, or None where the value is undefined (NaN)."""
    number = float(value)
    return None if math.isnan(number) else round_sig(number)


def _keys(values: pd.Series) -> np.ndarray:
    """Values as string keys (JSON object keys), missing values as NULL_KEY."""
    # Key each distinct value once (not each row): code -1 (missing) picks the appended NULL_KEY.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    keys = np.array([*(profile_key(u) for u in uniques), NULL_KEY], dtype=object)
    return keys[codes]


def sample_indices(n: int, limit: int) -> np.ndarray:
    """At most `limit` evenly spread positions of range(n), first and last included."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))


def positive_class(classes: Sequence[Any], positive_label: Any) -> Any:
    """The entry of model.classes_ that is task.positive_label (int 1 matches "1" and 1)."""
    for cls in classes:
        if _py(cls) == positive_label or str(cls) == str(positive_label):
            return _py(cls)
    known = [_py(c) for c in classes]
    raise InputError(
        f"task.positive_label {positive_label!r} is not a class of the model {known!r}"
    )


def model_classes(model: Any, task: Task) -> tuple[Any, ...]:
    """model.classes_ as plain values for a classification task, () for regression."""
    found = getattr(model, "classes_", None)
    if task.type == "regression":
        if found is not None:
            raise InputError("task.type is regression but the model is a classifier")
        return ()
    if found is None:
        raise InputError(f"task.type is {task.type} but the model is not a classifier")
    return tuple(_py(c) for c in found)


def proba_matrix(scored: pd.DataFrame, classes: Sequence[Any]) -> np.ndarray:
    """The proba_<class> columns of predict.score's output, in `classes` order."""
    names = [f"proba_{c}" for c in classes]
    missing = [n for n in names if n not in scored.columns]
    if missing:
        raise InputError(f"scored frame lacks probability columns {missing}")
    return scored[names].to_numpy(dtype=float)


# --------------------------------------------------------------------------- metrics


def task_metrics(
    actual: pd.Series,
    scored: pd.DataFrame,
    classes: Sequence[Any],
    task: Task,
    *,
    require_auc: bool = True,
) -> dict[str, float]:
    """The task's metric set (see pipeline.metrics) for actual labels vs predict.score output."""
    predicted = scored["prediction"].to_numpy()
    if task.type == "regression":
        return regression_metrics(actual.to_numpy(dtype=float), predicted.astype(float))
    proba = proba_matrix(scored, classes)
    if task.type == "binary":
        positive = positive_class(classes, task.positive_label)
        return binary_metrics(
            actual.to_numpy(), predicted, proba, classes, positive, require_auc=require_auc
        )
    return multiclass_metrics(actual.to_numpy(), predicted, proba, classes, require_auc=require_auc)


def slice_metrics(
    frame: pd.DataFrame,
    actual: pd.Series,
    scored: pd.DataFrame,
    classes: Sequence[Any],
    task: Task,
    columns: Sequence[str],
    min_size: int,
) -> Json:
    """{column: {value: {"n", "metrics"}}}; metrics null when n < min_size.

    Within a slice, roc_auc is left out when the slice lacks a class (it is undefined there);
    any other non-finite metric is an error as everywhere else.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"evaluate.slices: columns {missing} are not in the test data")
    out: Json = {}
    for column in columns:
        keys = _keys(frame[column])
        groups: Json = {}
        for key in sorted(set(keys.tolist())):
            mask = keys == key
            n = int(mask.sum())
            metrics = None
            if n >= min_size:
                try:
                    metrics = task_metrics(
                        actual[mask], scored[mask], classes, task, require_auc=False
                    )
                except MetricError as exc:
                    raise MetricError(f"slice {column}={key}: {exc}") from exc
            groups[key] = {"n": n, "metrics": metrics}
        out[column] = groups
    return out


# --------------------------------------------------------------------------- fairness


# Every per-group metric takes sample weights. For classification the test rows are first
# collapsed to their distinct (group, actual, predicted) combinations with counts as weights:
# exactly the same values, but fairlearn then loops over a handful of rows instead of 200k
# (its per-call input handling is per element, and dominated evaluate's time at 1M rows).
def _count(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    return float(np.sum(sample_weight))


def _selection(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    return float(np.average(np.asarray(y_pred, dtype=bool), weights=sample_weight))


def _rate(y_true: Any, y_pred: Any, sample_weight: Any, given: bool) -> float:
    """Share of predicted positives among rows whose actual label is `given` (NaN if none)."""
    rows = np.asarray(y_true, dtype=bool) == given
    weights = np.asarray(sample_weight, dtype=float)[rows]
    if weights.sum() == 0:
        return math.nan
    return float(np.average(np.asarray(y_pred, dtype=bool)[rows], weights=weights))


def _tpr(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    return _rate(y_true, y_pred, sample_weight, True)


def _fpr(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    return _rate(y_true, y_pred, sample_weight, False)


def _accuracy(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    hit = np.asarray(y_true) == np.asarray(y_pred)
    return float(np.average(hit, weights=sample_weight))


def _mae(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    err = np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))
    return float(np.average(err, weights=sample_weight))


def _rmse(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
    err = (np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2
    return math.sqrt(float(np.average(err, weights=sample_weight)))


def _collapse(groups: Any, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any, Any]:
    """Distinct (group, actual, predicted) rows and how often each occurs."""
    counts = pd.DataFrame({"g": groups, "t": y_true, "p": y_pred}).value_counts(sort=False)
    index = counts.index.to_frame(index=False)
    return index["g"].to_numpy(), index["t"].to_numpy(), index["p"].to_numpy(), counts.to_numpy()


def _gap(frame: MetricFrame, name: str) -> float:
    """Largest between-group difference of one metric (groups where it is undefined skipped)."""
    return float(frame.difference(method="between_groups")[name])


def _ratio(frame: MetricFrame, name: str) -> float:
    """Smallest over largest group value of one metric (NaN when the largest is 0)."""
    return float(frame.ratio(method="between_groups")[name])


def fairness(
    sensitive: pd.Series,
    actual: pd.Series,
    scored: pd.DataFrame,
    classes: Sequence[Any],
    task: Task,
) -> Json:
    """fairlearn MetricFrame over the sensitive attribute: per-group rates and their gaps.

    binary: selection_rate, accuracy, tpr, fpr per group (tpr/fpr null where a group lacks
    that actual class); demographic parity difference/ratio, equalized odds difference,
    accuracy difference. multiclass: accuracy per group and its difference. regression: mae
    and rmse per group and their differences.
    """
    groups = _keys(sensitive)
    predicted = scored["prediction"].to_numpy()
    fns: dict[str, Callable[..., float]]
    if task.type == "binary":
        positive = positive_class(classes, task.positive_label)
        y_true: Any = actual.to_numpy() == positive
        y_pred: Any = predicted == positive
        fns = {
            "n": _count,
            "selection_rate": _selection,
            "accuracy": _accuracy,
            "tpr": _tpr,
            "fpr": _fpr,
        }
    elif task.type == "multiclass":
        y_true, y_pred = actual.to_numpy(), predicted
        fns = {"n": _count, "accuracy": _accuracy}
    else:
        y_true, y_pred = actual.to_numpy(dtype=float), predicted.astype(float)
        fns = {"n": _count, "mae": _mae, "rmse": _rmse}
    if task.type == "regression":
        weights: Any = np.ones(len(y_true))
    else:
        groups, y_true, y_pred, weights = _collapse(groups, y_true, y_pred)
    try:
        with np.errstate(all="ignore"):
            frame = MetricFrame(
                metrics=fns,
                y_true=y_true,
                y_pred=y_pred,
                sensitive_features=groups,
                sample_params={name: {"sample_weight": weights} for name in fns},
            )
    except ValueError as exc:
        raise MetricError(f"fairness metrics cannot be computed: {exc}") from exc

    if task.type == "binary":
        values = {
            "demographic_parity_difference": _gap(frame, "selection_rate"),
            "demographic_parity_ratio": float(
                frame.ratio(method="between_groups")["selection_rate"]
            ),
            "equalized_odds_difference": max(_gap(frame, "tpr"), _gap(frame, "fpr")),
            "accuracy_difference": _gap(frame, "accuracy"),
        }
    elif task.type == "multiclass":
        values = {"accuracy_difference": _gap(frame, "accuracy")}
    else:
        values = {"mae_difference": _gap(frame, "mae"), "rmse_difference": _gap(frame, "rmse")}

    by_group: Json = {}
    for key, row in frame.by_group.iterrows():
        entry: Json = {"n": int(row["n"])}
        entry.update({name: _opt(row[name]) for name in fns if name != "n"})
        by_group[str(key)] = entry
    return {
        "sensitive": str(sensitive.name),
        "metrics": {name: finite(name, value) for name, value in values.items()},
        "groups": by_group,
    }


# --------------------------------------------------------------------------- plots


def _curve(columns: Mapping[str, np.ndarray], points: int) -> list[Json]:
    """Rows of a curve kept at `points` evenly spread positions (small, stable git diffs)."""
    n = len(next(iter(columns.values())))
    keep = sample_indices(n, points)
    return [{name: round_sig(values[i]) for name, values in columns.items()} for i in keep]


def _calibration(confidence: np.ndarray, hit: np.ndarray, bins: int) -> list[Json]:
    """Equal-width bins over [0, 1]: mean confidence vs observed frequency, empty bins omitted."""
    index = np.clip(np.floor(confidence * bins).astype(int), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append(
                {
                    "mean_predicted": round_sig(confidence[mask].mean()),
                    "fraction_positive": round_sig(hit[mask].mean()),
                    "count": int(mask.sum()),
                }
            )
    return rows


def plot_data(
    actual: pd.Series,
    scored: pd.DataFrame,
    classes: Sequence[Any],
    task: Task,
    cfg: Evaluate,
) -> dict[str, list[Json]]:
    """{plot stem: rows} for the task's DVC plots (see PLOTS).

    binary: roc and precision_recall (curve points at evaluate.curve_points evenly spread
    positions; the threshold "above every score" is written as 1.0), confusion (one row per test
    row, at most MAX_CONFUSION_ROWS evenly spread), calibration of the positive-class
    probability. multiclass: confusion, and calibration of the top-class probability against
    accuracy. regression: residuals (actual - predicted)
    and predicted_vs_actual, at most MAX_SCATTER_POINTS evenly spread rows.
    """
    predicted = scored["prediction"].to_numpy()
    if task.type == "regression":
        y = actual.to_numpy(dtype=float)
        p = predicted.astype(float)
        keep = sample_indices(len(y), MAX_SCATTER_POINTS)
        return {
            "residuals": [
                {"predicted": round_sig(p[i]), "residual": round_sig(y[i] - p[i])} for i in keep
            ],
            "predicted_vs_actual": [
                {"actual": round_sig(y[i]), "predicted": round_sig(p[i])} for i in keep
            ],
        }
    truth = actual.to_numpy()
    keep = sample_indices(len(truth), MAX_CONFUSION_ROWS)
    confusion = [{"actual": _py(truth[i]), "predicted": _py(predicted[i])} for i in keep]
    proba = proba_matrix(scored, classes)
    if task.type == "multiclass":
        hit = (predicted == truth).astype(float)
        return {
            "confusion": confusion,
            "calibration": _calibration(proba.max(axis=1), hit, cfg.calibration_bins),
        }
    positive = positive_class(classes, task.positive_label)
    is_pos = truth == positive
    p_pos = proba[:, list(map(_py, classes)).index(positive)]
    fpr, tpr, roc_thr = roc_curve(is_pos, p_pos)
    precision, recall, pr_thr = precision_recall_curve(is_pos, p_pos)
    # precision_recall_curve's last point (recall 0) has no threshold: it is "above every score".
    pr_thr = np.append(pr_thr, 1.0)
    return {
        "roc": _curve(
            {"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thr, 1.0)}, cfg.curve_points
        ),
        "precision_recall": _curve(
            {"recall": recall, "precision": precision, "threshold": np.minimum(pr_thr, 1.0)},
            cfg.curve_points,
        ),
        "confusion": confusion,
        "calibration": _calibration(p_pos, is_pos.astype(float), cfg.calibration_bins),
    }


# --------------------------------------------------------------------------- reference profile


def reference_profile(
    train: pd.DataFrame,
    scored: pd.DataFrame,
    classes: Sequence[Any],
    features: Features,
    task: Task,
    cfg: Profile,
) -> Json:
    """The drift reference: profiles of the training features and target, and of predictions.

    Predictions are profiled on the held-out test rows (`scored`): predictions on training rows
    are overconfident, so they would not resemble what the model does in production.
    """
    missing = [c for c in (*features.numeric, *features.categorical, task.target) if c not in train]
    if missing:
        raise InputError(f"training data lacks columns {missing}")
    columns: Json = {name: numeric_profile(train[name], cfg.bins) for name in features.numeric}
    columns |= {
        name: categorical_profile(train[name], cfg.top_categories) for name in features.categorical
    }
    predicted = scored["prediction"]
    if task.type == "regression":
        target = numeric_profile(train[task.target], cfg.bins)
        prediction = numeric_profile(predicted.astype(float), cfg.bins)
    else:
        target = categorical_profile(train[task.target], cfg.top_categories)
        if task.type == "binary":
            positive = positive_class(classes, task.positive_label)
            p_pos = pd.Series(scored[f"proba_{positive}"], name="prediction")
            prediction = numeric_profile(p_pos, cfg.bins)
        else:
            prediction = categorical_profile(predicted, cfg.top_categories)
    return {
        "version": PROFILE_VERSION,
        "rows": len(train),
        "columns": columns,
        "target": target,
        "prediction": prediction,
    }


# --------------------------------------------------------------------------- stage


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}: missing columns {missing}")
    if frame.empty:
        raise InputError(f"{what}: no rows")


def run(params: Params) -> None:
    """Score the test set and write predictions, metrics, slices, fairness, reference profile
    and the task's plot files. Nothing is written unless all are valid."""
    paths, task, cfg = params.paths, params.task, params.evaluate
    model = load_model(paths.model)
    test = io.read_table(paths.test)
    profiled = [*params.features.numeric, *params.features.categorical, task.target]
    train = io.read_table(paths.train, columns=profiled)  # only what the reference profiles
    sensitive = [task.sensitive] if task.sensitive is not None else []
    _require(test, [task.target, *sensitive, *cfg.slices], paths.test)
    _require(train, [task.target], paths.train)

    actual = test[task.target]
    if actual.isna().any():
        raise InputError(f"{paths.test}: target {task.target!r} has empty values")
    classes = model_classes(model, task)
    features = test.drop(columns=[task.target])
    scored = score(model, features, task)

    metrics = task_metrics(actual, scored, classes, task)
    slices = slice_metrics(test, actual, scored, classes, task, cfg.slices, cfg.min_slice_size)
    fair: dict[str, Any] = (
        fairness(test[task.sensitive], actual, scored, classes, task)
        if task.sensitive is not None
        else {
            "sensitive": None,
            "metrics": {},
            "groups": {},
        }  # no attribute named: nothing to measure
    )
    plots = plot_data(actual, scored, classes, task, cfg)
    reference = reference_profile(train, scored, classes, params.features, task, cfg.profile)

    # Serialise everything before writing anything: dumps_json rejects NaN/inf.
    texts = {
        paths.metrics: io.dumps_json(metrics),
        paths.slices: io.dumps_json(slices),
        paths.fairness: io.dumps_json(fair),
        paths.reference: io.dumps_json(reference),
    }
    plot_dir = Path(paths.plots)
    texts |= {str(plot_dir / f"{stem}.json"): io.dumps_json(rows) for stem, rows in plots.items()}

    predictions = scored.reset_index(drop=True).assign(actual=actual.to_numpy())
    io.write_table(paths.predictions, predictions)
    for path, text in texts.items():
        io.write_text(path, text)
    for stem in ALL_PLOTS:
        if stem not in plots:  # a plot of another task type left from an earlier run
            (plot_dir / f"{stem}.json").unlink(missing_ok=True)
