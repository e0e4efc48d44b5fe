"""Target leaks: a feature column that predicts the label (almost) on its own.

A column that is the target under another name, or is only known after the outcome, scores
ROC AUC 1.000 and a report that calls it a triumph. Each feature column is scored ALONE: its
values are binned (quantiles for numbers, the values themselves for categories), the label's
mean (or class counts) per bin is learned on one half of the rows and scored on the other half,
and the other way round, so a high-cardinality id cannot score by memorising rows. Pure
functions: a frame in, {column: score} out; validate turns scores above the contract's bound
into failures.

What it cannot see: a leak spread over several columns (the target minus one feature, stored
as another). Those need a domain review; the single-column score is the cheap, always-on net.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from pipeline.config import Task

BINS = 64  # quantile bins for a numeric column: fine enough that a copy of the target scores ~1
SAMPLE_ROWS = 100_000  # scored on a fixed sample: the check stays cheap on millions of rows
SEED = 0

# The contract's default bound (target_leak.max_score), and the one init applies when it leaves
# a column out of the features: no honest feature of the demo data scores above 0.72.
DEFAULT_MAX_SCORE = 0.98

METRIC = {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "r2"}


def _bins(series: pd.Series) -> pd.Series:
    """Bin codes for one column; missing values get a bin of their own (-1)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.astype(float).replace([np.inf, -np.inf], np.nan)
        if values.nunique() > BINS:
            codes = pd.qcut(values.rank(method="first"), BINS, labels=False)
        else:
            codes = values.astype("category").cat.codes.where(values.notna())
    else:
        codes = series.astype("category").cat.codes.where(series.notna())
    return codes.fillna(-1).astype(int)


def _halves(n: int) -> np.ndarray:
    """A fixed random half of the rows (True) and the other half (False)."""
    return np.random.default_rng(SEED).permutation(n) < n // 2


def _out_of_half(codes: pd.Series, target: pd.Series, half: np.ndarray) -> pd.Series:
    """Each row's prediction from the bin means of the OTHER half (unseen bin: that half's mean)."""
    predictions = pd.Series(np.nan, index=codes.index)
    for learn, score in ((half, ~half), (~half, half)):
        means = target[learn].groupby(codes[learn]).mean()
        predicted = codes[score].map(means).astype(float)
        predictions[score] = predicted.fillna(float(target[learn].mean()))
    return predictions


# The three scores are written out with numpy (tests/unit/test_leakage.py checks each equals
# scikit-learn's): importing sklearn.metrics costs validate, which needs nothing else from it,
# several seconds.
def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic on average ranks (ties count half)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def r2(actual: np.ndarray, predicted: np.ndarray) -> float:
    total = float(((actual - actual.mean()) ** 2).sum())
    return math.nan if total == 0 else 1.0 - float(((actual - predicted) ** 2).sum()) / total


def balanced_accuracy(actual: np.ndarray, predicted: np.ndarray) -> float:
    """The mean over classes of the share of that class's rows predicted as it."""
    return float(np.mean([np.mean(predicted[actual == c] == c) for c in np.unique(actual)]))


def _score_binary(codes: pd.Series, positive: pd.Series, half: np.ndarray) -> float:
    predicted = _out_of_half(codes, positive.astype(float), half)
    return roc_auc(positive.to_numpy(dtype=bool), predicted.to_numpy())


def _score_regression(
    values: pd.Series, codes: pd.Series, target: pd.Series, half: np.ndarray
) -> float:
    """Binned R2, or for a numeric column the squared rank correlation when higher: a monotone
    transform of the target (its log, a rescaled copy) is a leak however its tail bins fit."""
    actual = target.astype(float)
    score = r2(actual.to_numpy(), _out_of_half(codes, actual, half).to_numpy())
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        rho = values.astype(float).corr(actual, method="spearman")
        if math.isfinite(rho):
            score = max(score, float(rho) ** 2) if math.isfinite(score) else float(rho) ** 2
    return score


def _score_multiclass(codes: pd.Series, target: pd.Series, half: np.ndarray) -> float:
    labels = target.astype(str)
    predicted = np.empty(len(labels), dtype=object)
    for learn, score in ((half, ~half), (~half, half)):
        counts = pd.crosstab(codes[learn], labels[learn])
        majority = counts.idxmax(axis=1)
        fallback = labels[learn].mode().iloc[0]
        predicted[score] = codes[score].map(majority).fillna(fallback).to_numpy()
    return balanced_accuracy(labels.to_numpy(), predicted)


def _positive(target: pd.Series, label: object) -> pd.Series:
    """Rows of the positive class; a 0/1 column read with missing labels is float (1.0 == 1)."""
    if pd.api.types.is_numeric_dtype(target) and isinstance(label, int | float):
        return target.astype(float) == float(label)
    return target.astype(str) == str(label)


def single_column_scores(
    frame: pd.DataFrame, task: Task, columns: Iterable[str]
) -> dict[str, float]:
    """How well each column alone predicts task.target (METRIC[task.type]); rows without a
    label are left out; NaN where a score is undefined."""
    labelled = frame[frame[task.target].notna()]
    if len(labelled) > SAMPLE_ROWS:
        labelled = labelled.sample(SAMPLE_ROWS, random_state=SEED)
    labelled = labelled.reset_index(drop=True)
    target = labelled[task.target]
    half = _halves(len(labelled))
    scores: dict[str, float] = {}
    for name in columns:
        if name not in labelled.columns or name == task.target:
            continue
        codes = _bins(labelled[name])
        if task.type == "binary":
            scores[name] = _score_binary(codes, _positive(target, task.positive_label), half)
        elif task.type == "multiclass":
            scores[name] = _score_multiclass(codes, target, half)
        else:
            scores[name] = _score_regression(labelled[name], codes, target, half)
    return scores


def leak_failures(
    scores: Mapping[str, float],
    task: Task,
    max_score: float,
    allow: Iterable[str],
    contract_file: str,
) -> list[str]:
    """One message per column whose score reaches `max_score`, unless the contract allows it."""
    allowed = set(allow)
    metric = METRIC[task.type]
    return [
        f"{name}: alone predicts {task.target!r} with {metric} {score:.3f} (>= target_leak."
        f"max_score {max_score:g} in {contract_file}): a target leak, i.e. the label under "
        "another name or a value known only after the outcome? Remove it from the features in "
        "params.yaml, or, if it is truly known when predicting, list it in target_leak.allow"
        for name, score in sorted(scores.items())
        if name not in allowed and math.isfinite(score) and score >= max_score
    ]
