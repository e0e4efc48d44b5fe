"""Metric sets against hand-computable examples; non-finite metrics are errors naming the metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.errors import MetricError, PipelineError
from pipeline.metrics import (
    CLASSIFICATION_METRICS,
    DIRECTION,
    REGRESSION_METRICS,
    binary_metrics,
    finite,
    multiclass_metrics,
    regression_metrics,
    round_sig,
)


def _two_columns(p_pos: list[float]) -> np.ndarray:
    p = np.asarray(p_pos, dtype=float)
    return np.column_stack([1 - p, p])


def test_perfect_binary_predictions_score_one() -> None:
    y = [0, 1, 1, 0]
    out = binary_metrics(y, y, _two_columns([0.0, 1.0, 1.0, 0.0]), [0, 1], 1)
    assert set(out) == set(CLASSIFICATION_METRICS)
    assert out["accuracy"] == out["f1"] == out["precision"] == out["recall"] == 1.0
    assert out["roc_auc"] == 1.0
    assert out["log_loss"] < 1e-6


def test_known_confusion_matrix() -> None:
    # tp=2 fn=1 fp=1 tn=4
    y = [1, 1, 1, 0, 0, 0, 0, 0]
    pred = [1, 1, 0, 1, 0, 0, 0, 0]
    proba = _two_columns([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.1, 0.1])
    out = binary_metrics(y, pred, proba, [0, 1], 1)
    assert out["accuracy"] == 0.75
    assert out["precision"] == round_sig(2 / 3) == 0.666667
    assert out["recall"] == 0.666667
    assert out["f1"] == 0.666667


def test_roc_auc_and_log_loss_by_hand() -> None:
    # positives scored 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs ordered right
    out = binary_metrics([0, 0, 1, 1], [0, 0, 0, 1], _two_columns([0.1, 0.4, 0.35, 0.8]), [0, 1], 1)
    assert out["roc_auc"] == 0.75
    two = binary_metrics([1, 0], [1, 0], _two_columns([0.8, 0.2]), [0, 1], 1)
    assert two["log_loss"] == round_sig(-math.log(0.8)) == 0.223144


def test_positive_label_selects_the_class() -> None:
    # "no" as positive: the roles flip, so precision/recall are about "no"
    y = ["yes", "yes", "no", "no"]
    pred = ["yes", "no", "no", "no"]
    proba = np.array([[0.1, 0.9], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])  # columns: no, yes
    as_yes = binary_metrics(y, pred, proba, ["no", "yes"], "yes")
    as_no = binary_metrics(y, pred, proba, ["no", "yes"], "no")
    assert as_yes["precision"] == 1.0
    assert as_yes["recall"] == 0.5
    assert as_no["precision"] == 0.666667
    assert as_no["recall"] == 1.0
    assert as_yes["roc_auc"] == as_no["roc_auc"] == 1.0


def test_binary_needs_positive_label_among_classes() -> None:
    with pytest.raises(MetricError, match="positive_label 2"):
        binary_metrics([0, 1], [0, 1], _two_columns([0.2, 0.8]), [0, 1], 2)


def test_single_class_auc_is_an_error_unless_optional() -> None:
    proba = _two_columns([0.2, 0.3])
    with pytest.raises(MetricError, match="'roc_auc'"):
        binary_metrics([0, 0], [0, 0], proba, [0, 1], 1)
    out = binary_metrics([0, 0], [0, 0], proba, [0, 1], 1, require_auc=False)
    assert "roc_auc" not in out
    assert out["precision"] == 0.0  # no predicted positives: 0 by convention, never NaN


def test_multiclass_macro_metrics() -> None:
    classes = ["high", "low", "medium"]
    y = ["low", "low", "medium", "high"]
    pred = ["low", "medium", "medium", "high"]
    proba = np.array(
        [[0.1, 0.8, 0.1], [0.1, 0.3, 0.6], [0.2, 0.1, 0.7], [0.7, 0.2, 0.1]], dtype=float
    )
    out = multiclass_metrics(y, pred, proba, classes)
    assert set(out) == set(CLASSIFICATION_METRICS)
    assert out["accuracy"] == 0.75
    # recall: high 1, low 1/2, medium 1 -> macro 5/6; precision: high 1, low 1, medium 1/2
    assert out["recall"] == round_sig(5 / 6)
    assert out["precision"] == round_sig(5 / 6)
    assert out["f1"] == round_sig((1 + 2 / 3 + 2 / 3) / 3)
    assert out["roc_auc"] == 1.0  # every class's own probability ranks its rows first
    assert out["log_loss"] == round_sig(-np.mean(np.log([0.8, 0.3, 0.7, 0.7])))


def test_multiclass_auc_undefined_when_class_absent() -> None:
    proba = np.full((2, 3), 1 / 3)
    with pytest.raises(MetricError, match=r"'roc_auc'.*\['c'\]"):
        multiclass_metrics(["a", "b"], ["a", "a"], proba, ["a", "b", "c"])
    assert "roc_auc" not in multiclass_metrics(
        ["a", "b"], ["a", "a"], proba, ["a", "b", "c"], require_auc=False
    )


def test_regression_by_hand() -> None:
    perfect = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert perfect == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}
    out = regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert out == {"rmse": round_sig(math.sqrt(2 / 3)), "mae": 0.666667, "r2": 0.0}


def test_nan_prediction_names_the_metric() -> None:
    with pytest.raises(MetricError, match="'rmse'") as info:
        regression_metrics([1.0, 2.0], [math.nan, 1.0])
    assert isinstance(info.value, PipelineError)
    assert info.value.exit_code == 2
    with pytest.raises(MetricError, match="'log_loss'"):
        binary_metrics([0, 1], [0, 1], _two_columns([math.nan, 0.9]), [0, 1], 1)


def test_overflow_is_an_error_not_a_warning() -> None:
    # finite predictions whose squared error overflows: an infinite rmse is caught by name
    with pytest.raises(MetricError, match=r"'rmse' is not finite \(inf\)"):
        regression_metrics([0.0, 0.0], [1e200, 1e200])


def test_regression_needs_two_rows() -> None:
    with pytest.raises(MetricError, match="'r2'"):
        regression_metrics([1.0], [1.0])


def test_rounding_is_to_significant_digits() -> None:
    assert round_sig(0.123456789) == 0.123457
    assert round_sig(123456789.0) == 123457000.0
    assert round_sig(1.5e-9) == 1.5e-9
    assert str(round_sig(-0.0)) == "0.0"
    assert finite("x", 2) == 2.0
    with pytest.raises(MetricError, match="'x'"):
        finite("x", math.inf)


def test_directions_cover_both_tasks() -> None:
    assert set(DIRECTION.values()) == {"higher", "lower"}
    assert set(CLASSIFICATION_METRICS) | set(REGRESSION_METRICS) <= set(DIRECTION)
    for lower in ("log_loss", "rmse", "mae", "latency_ms_single_p95", "model_size_bytes"):
        assert DIRECTION[lower] == "lower"
    for name, direction in DIRECTION.items():
        if name.endswith("_difference"):
            assert direction == "lower", name
