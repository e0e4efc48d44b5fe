"""Metric sets per task and the direction (higher or lower is better) of every metric name.

Pure functions: arrays in, `{name: float}` out. Every value is checked finite (a NaN or infinite
metric raises MetricError naming it) and rounded to SIGNIFICANT_DIGITS so the JSON files are
byte-stable across platforms and their git diffs stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any, Literal

import numpy as np

from pipeline.errors import MetricError

Direction = Literal["higher", "lower"]

# Digits kept in every float written by evaluate: enough to compare models, few enough that
# last-bit floating point noise never shows up as a diff.
SIGNIFICANT_DIGITS = 6

# Every metric name any output uses (metrics.json, slices, fairness, benchmark) -> which way is
# better. report and policy read this; a name missing here is a bug (tests check coverage).
DIRECTION: Mapping[str, Direction] = {
    # classification (metrics.json and slices)
    "accuracy": "higher",
    "roc_auc": "higher",
    "f1": "higher",
    "precision": "higher",
    "recall": "higher",
    "log_loss": "lower",
    # regression
    "rmse": "lower",
    "mae": "lower",
    "r2": "higher",
    # fairness.json "metrics": gaps between groups are better small, ratios better near 1
    "demographic_parity_difference": "lower",
    "demographic_parity_ratio": "higher",
    "equalized_odds_difference": "lower",
    "accuracy_difference": "lower",
    "mae_difference": "lower",
    "rmse_difference": "lower",
    # fairness.json per-group rates
    "tpr": "higher",
    "fpr": "lower",
    # benchmark.json
    "latency_ms_single_p50": "lower",
    "latency_ms_single_p95": "lower",
    "latency_ms_batch_p50": "lower",
    "latency_ms_batch_p95": "lower",
    "rows_per_second": "higher",
    "model_size_bytes": "lower",
    # batch_rows is the measured batch size (a setting echoed for context), not a score
    "batch_rows": "higher",
}

# The values each metric can take: (lowest, highest), None = unbounded on that side. The
# promotion schema bounds every threshold on these metrics by this range (a test checks the
# committed schema agrees), so `min: 1.5` on roc_auc is refused when the policy is loaded instead
# of being a rule no model can ever pass.
UNIT = (0.0, 1.0)
NON_NEGATIVE = (0.0, None)
RANGE: Mapping[str, tuple[float | None, float | None]] = {
    "accuracy": UNIT,
    "roc_auc": UNIT,
    "f1": UNIT,
    "precision": UNIT,
    "recall": UNIT,
    "log_loss": NON_NEGATIVE,
    "rmse": NON_NEGATIVE,
    "mae": NON_NEGATIVE,
    "r2": (None, 1.0),
    "demographic_parity_difference": UNIT,
    "demographic_parity_ratio": UNIT,
    "equalized_odds_difference": UNIT,
    "accuracy_difference": UNIT,
    "mae_difference": NON_NEGATIVE,
    "rmse_difference": NON_NEGATIVE,
    "tpr": UNIT,
    "fpr": UNIT,
    "latency_ms_single_p50": NON_NEGATIVE,
    "latency_ms_single_p95": NON_NEGATIVE,
    "latency_ms_batch_p50": NON_NEGATIVE,
    "latency_ms_batch_p95": NON_NEGATIVE,
    "rows_per_second": NON_NEGATIVE,
    "model_size_bytes": NON_NEGATIVE,
    "batch_rows": NON_NEGATIVE,
}

CLASSIFICATION_METRICS = ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """Round to `digits` significant digits (and turn -0.0 into 0.0)."""
    rounded = float(f"{float(value):.{digits}g}")
    return rounded + 0.0


def finite(name: str, value: Any) -> float:
    """The value as a rounded float; MetricError naming `name` if it is NaN or infinite."""
    number = float(value)
    if not math.isfinite(number):
        raise MetricError(f"metric {name!r} is not finite ({number!r})")
    return round_sig(number)


def _checked(values: Mapping[str, Callable[[], Any]]) -> dict[str, float]:
    """Evaluate each metric thunk; any failure or non-finite result is a MetricError naming it.

    Floating point warnings are silenced here because the explicit finiteness check below is
    what turns an overflow or 0/0 into an error (with the metric's name), not a warning.
    """
    out = {}
    for name, compute in values.items():
        try:
            with np.errstate(all="ignore"):
                value = compute()
        except ValueError as exc:
            raise MetricError(f"metric {name!r} cannot be computed: {exc}") from exc
        out[name] = finite(name, value)
    return out


def _precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray, **options: Any
) -> Callable[[], tuple[Any, ...]]:
    """precision, recall and f1 from ONE confusion-matrix pass (what f1_score, precision_score
    and recall_score each recompute), computed on first use and then reused."""
    from sklearn import metrics as skm

    @cache
    def compute() -> tuple[Any, ...]:
        return tuple(skm.precision_recall_fscore_support(y_true, y_pred, **options)[:3])

    return compute


def binary_metrics(
    actual: Sequence[Any] | np.ndarray,
    predicted: Sequence[Any] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[Any],
    positive_label: Any,
    *,
    require_auc: bool = True,
) -> dict[str, float]:
    """accuracy, roc_auc, f1, precision, recall (for positive_label) and log_loss.

    `proba` has one column per class in `classes` order (model.classes_). Precision/recall with
    no predicted/actual positives are 0 (sklearn's zero_division=0), never NaN. With
    `require_auc=False` roc_auc is omitted when `actual` holds a single class (slices).
    """
    from sklearn import metrics as skm  # lazily: report/policy import DIRECTION only

    labels = list(classes)
    if len(labels) != 2 or positive_label not in labels:
        raise MetricError(
            f"binary metrics need 2 classes including positive_label {positive_label!r}, "
            f"got {labels!r}"
        )
    y_true = np.asarray(actual)
    y_pred = np.asarray(predicted)
    p_all = np.asarray(proba, dtype=float)
    is_pos = y_true == positive_label
    p_pos = p_all[:, labels.index(positive_label)]
    prf = _precision_recall_f1(
        y_true, y_pred, average="binary", pos_label=positive_label, zero_division=0
    )
    out: dict[str, Callable[[], Any]] = {
        "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
        "f1": lambda: prf()[2],
        "precision": lambda: prf()[0],
        "recall": lambda: prf()[1],
        "log_loss": lambda: skm.log_loss(y_true, p_all, labels=labels),
    }
    if len(np.unique(is_pos)) == 2:
        out["roc_auc"] = lambda: skm.roc_auc_score(is_pos, p_pos)
    elif require_auc:
        raise MetricError("metric 'roc_auc' is undefined: the actual labels hold a single class")
    return _checked(out)


def multiclass_metrics(
    actual: Sequence[Any] | np.ndarray,
    predicted: Sequence[Any] | np.ndarray,
    proba: np.ndarray,
    classes: Sequence[Any],
    *,
    require_auc: bool = True,
) -> dict[str, float]:
    """accuracy, roc_auc (one-vs-rest, macro), macro f1/precision/recall, log_loss.

    With `require_auc=False` roc_auc is omitted when some class is absent from `actual` (slices).
    """
    from sklearn import metrics as skm  # lazily: report/policy import DIRECTION only

    labels = list(classes)
    y_true = np.asarray(actual)
    y_pred = np.asarray(predicted)
    p_all = np.asarray(proba, dtype=float)
    prf = _precision_recall_f1(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    out: dict[str, Callable[[], Any]] = {
        "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
        "f1": lambda: prf()[2],
        "precision": lambda: prf()[0],
        "recall": lambda: prf()[1],
        "log_loss": lambda: skm.log_loss(y_true, p_all, labels=labels),
    }
    present = {str(v) for v in np.unique(y_true)}
    missing = sorted({str(c) for c in labels} - present)
    if not missing and len(labels) > 2:
        out["roc_auc"] = lambda: skm.roc_auc_score(
            y_true, p_all, multi_class="ovr", average="macro", labels=labels
        )
    elif require_auc:
        raise MetricError(
            f"metric 'roc_auc' is undefined: classes {missing} are absent from the actual labels"
        )
    return _checked(out)


def regression_metrics(
    actual: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """rmse, mae and r2."""
    from sklearn import metrics as skm  # lazily: report/policy import DIRECTION only

    y_true = np.asarray(actual, dtype=float)
    y_pred = np.asarray(predicted, dtype=float)
    if y_true.size < 2:
        raise MetricError("metric 'r2' is undefined for fewer than 2 rows")
    return _checked(
        {
            "rmse": lambda: math.sqrt(skm.mean_squared_error(y_true, y_pred)),
            "mae": lambda: skm.mean_absolute_error(y_true, y_pred),
            "r2": lambda: skm.r2_score(y_true, y_pred),
        }
    )
