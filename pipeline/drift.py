"""Drift of a batch against the reference profile of the training data (pure functions).

The reference profile (models/reference.json, written by evaluate) holds, per feature, quantile
bin edges with the training share of each bin and 101 quantiles (numeric), or the share of each
category (categorical). Everything here compares a batch with that profile, so monitoring never
needs the training data.

Measures and why: on large batches a significance test (KS, chi-square) flags any difference,
however small, so the verdict uses distances whose size does not grow with the sample: PSI and
Jensen-Shannon over the reference bins or categories, and the Wasserstein-1 distance (from
quantiles) divided by the reference spread. Only small batches, where distances are noisy, are
judged by a test (one-sample KS against the reference quantile function, chi-square goodness of
fit against the reference category shares). All work is vectorized numpy/pandas: no Python loop
over rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.spatial import distance

from pipeline.errors import InputError
from pipeline.metrics import round_sig

FloatArray = npt.NDArray[np.float64]

# Categories outside the profiled ones (rare in training, or never seen) are counted here.
OTHER = "__other__"

# Quantile levels stored in the profile: 0%, 1%, ..., 100% (101 values).
QUANTILE_LEVELS: FloatArray = np.linspace(0.0, 1.0, 101)

Measure = Literal["psi", "jensen_shannon", "wasserstein"]
MEASURES: tuple[Measure, ...] = ("psi", "jensen_shannon", "wasserstein")

# Every float in a report is rounded like the metrics: stable JSON, no last-bit noise.
_round = round_sig


@dataclasses.dataclass(frozen=True, slots=True)
class DriftSettings:
    """Thresholds that turn measures into verdicts (built from policies/monitoring.yaml)."""

    measures: tuple[str, ...]  # a column drifts when ANY of these exceeds its threshold
    psi_threshold: float
    psi_epsilon: float  # share given to empty bins so PSI stays finite
    js_threshold: float  # Jensen-Shannon distance, base 2 (0..1)
    wasserstein_threshold: float  # W1 / reference scale
    wasserstein_scale: Literal["std", "iqr"]
    small_sample_rows: int  # fewer non-null batch values: a test decides instead
    alpha: float  # test p-value below this flags drift


# --------------------------------------------------------------------------- profiles


def _as_float(values: pd.Series) -> FloatArray:
    """Non-null values of a numeric (or boolean) column as float64."""
    numeric = pd.to_numeric(values, errors="coerce")
    array: FloatArray = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    present: FloatArray = array[~np.isnan(array)]
    return present


def profile_key(value: Any) -> str:
    """A value as a JSON object key; integral floats lose their ".0" (1.0 -> "1"), so a label
    read as float (e.g. from a CSV with gaps) keys like the same label read as int."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def label_counts(values: pd.Series) -> pd.Series:
    """Counts of the non-null values of a column, keyed as the profile keys them.

    Counted first and converted after, so the string conversion touches each distinct value
    once instead of every row (fast on millions of rows).
    """
    counts = values.value_counts(dropna=True, sort=False)
    keys = [profile_key(k) for k in counts.index]
    result = pd.Series(counts.to_numpy(dtype=np.int64), index=keys, dtype=np.int64)
    return result.groupby(level=0, sort=True).sum() if result.index.has_duplicates else result


def bin_index(edges: Sequence[float], values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Bin of each value: bin i holds edges[i] <= x < edges[i+1], the last bin also edges[-1];
    values below edges[0] or above edges[-1] count in the first or last bin."""
    bins = max(len(edges) - 1, 1)
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="right") - 1
    clipped: npt.NDArray[np.intp] = np.clip(index, 0, bins - 1)
    return clipped


def bin_shares(values: FloatArray, edges: Sequence[float]) -> FloatArray:
    """Share of values per bin (see bin_index); all zeros for no values."""
    bins = max(len(edges) - 1, 1)
    if values.size == 0:
        return np.zeros(bins)
    counts = np.bincount(bin_index(edges, values), minlength=bins).astype(np.float64)
    shares: FloatArray = counts / values.size
    return shares


def numeric_profile(values: pd.Series, bins: int) -> dict[str, Any]:
    """null_fraction, mean/std/min/max, quantile bin edges + frequencies, 101 quantiles."""
    try:
        array = values.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{values.name}: cannot profile as numeric ({exc})") from exc
    present = array[~np.isnan(array)]
    null_fraction = _round(1.0 - len(present) / len(array)) if len(array) else 0.0
    profile: dict[str, Any] = {"kind": "numeric", "null_fraction": null_fraction}
    if not len(present):
        empty: dict[str, Any] = {"mean": None, "std": None, "min": None, "max": None}
        return profile | empty | {"edges": [], "frequencies": [], "quantiles": []}
    if not np.isfinite(present).all():
        raise InputError(f"{values.name}: infinite values cannot be profiled")
    # Edges are rounded first and frequencies computed with the rounded edges, so a batch
    # binned with the written edges (bin_index) is comparable bin for bin.
    # One quantile pass (one partition of the data) for the bin edges and the 101 quantiles.
    edge_levels = np.linspace(0.0, 1.0, bins + 1)
    both = np.quantile(present, np.concatenate([edge_levels, QUANTILE_LEVELS]))
    edges = sorted({_round(e) for e in both[: bins + 1]})
    if len(edges) == 1:  # a constant column: one bin [v, v]
        edges = [edges[0], edges[0]]
    return profile | {
        "mean": _round(present.mean()),
        "std": _round(present.std()),
        "min": _round(present.min()),
        "max": _round(present.max()),
        "edges": edges,
        "frequencies": [_round(s) for s in bin_shares(present, edges)],
        "quantiles": [_round(q) for q in both[bins + 1 :]],
    }


def categorical_profile(values: pd.Series, top: int) -> dict[str, Any]:
    """null_fraction and the shares of the `top` most frequent values, the rest as OTHER."""
    counts = label_counts(values)
    counts = counts[counts > 0]  # a categorical dtype lists unused categories with count 0
    n = int(counts.sum())
    total = len(values)
    null_fraction = _round(1.0 - n / total) if total else 0.0
    # Most frequent first, ties by name, so the kept set never depends on hash order.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    frequencies = {str(k): _round(c / n) for k, c in ranked[:top]}
    frequencies[OTHER] = _round(sum(c for _, c in ranked[top:]) / n) if n else 0.0
    return {"kind": "categorical", "null_fraction": null_fraction, "frequencies": frequencies}


def profile_frame(
    frame: pd.DataFrame,
    numeric: Iterable[str],
    categorical: Iterable[str],
    *,
    bins: int,
    top_categories: int,
) -> dict[str, Any]:
    """A reference profile ({"version", "rows", "columns"}) of the given columns of a frame."""
    columns = {c: numeric_profile(frame[c], bins) for c in numeric}
    columns.update({c: categorical_profile(frame[c], top_categories) for c in categorical})
    return {"version": 1, "rows": len(frame), "columns": dict(sorted(columns.items()))}


# --------------------------------------------------------------------------- measures


def _smooth(shares: FloatArray, epsilon: float) -> FloatArray:
    """Floor every share at epsilon and renormalize, so logs and ratios stay finite."""
    floored = np.maximum(shares, epsilon)
    result: FloatArray = floored / floored.sum()
    return result


def psi(reference: FloatArray, batch: FloatArray, epsilon: float) -> float:
    """Population stability index: sum((b - r) * ln(b / r)) over smoothed shares."""
    r = _smooth(reference, epsilon)
    b = _smooth(batch, epsilon)
    return float(np.sum((b - r) * np.log(b / r)))


def jensen_shannon(reference: FloatArray, batch: FloatArray) -> float:
    """Jensen-Shannon distance with base-2 logs: 0 identical, 1 disjoint."""
    if reference.sum() <= 0 or batch.sum() <= 0:
        return 1.0
    value = float(distance.jensenshannon(reference, batch, base=2.0))
    return 0.0 if math.isnan(value) else value


def reference_scale(profile: Mapping[str, Any], kind: Literal["std", "iqr"]) -> float:
    """Spread of the reference used to normalize Wasserstein; 1.0 for a constant column."""
    if kind == "std":
        scale = float(profile["std"])
    else:
        q = profile["quantiles"]
        scale = float(q[75]) - float(q[25])
    return scale if scale > 0 else 1.0


def wasserstein_from_quantiles(reference_q: Sequence[float], batch_q: FloatArray) -> float:
    """W1 = integral over u of |F_ref^-1(u) - F_batch^-1(u)|, from the 101 quantiles.

    Trapezoid rule inside [1%, 99%]; the outer 1% on each side uses the gap at the 1st/99th
    percentile, because the minimum and maximum of a heavy-tailed sample are too noisy to
    weigh (they would bias a no-drift distance upward).
    """
    gap = np.abs(np.asarray(reference_q, dtype=np.float64) - batch_q)
    step = 1.0 / (gap.size - 1)
    inner = gap[1:-1]
    trapezoid = float(np.sum(inner[1:] + inner[:-1]) / 2.0)
    return (trapezoid + float(inner[0]) + float(inner[-1])) * step


def ks_test(
    reference_q: Sequence[float], reference_rows: int, data: FloatArray
) -> tuple[float, float]:
    """Two-sample KS statistic and p-value, the reference CDF rebuilt from its quantiles."""
    q = np.asarray(reference_q, dtype=np.float64)
    ordered = np.sort(data)
    n = ordered.size
    # Compare the two CDFs at every batch value and every reference quantile.
    points = np.concatenate([ordered, q])
    batch_cdf = np.searchsorted(ordered, points, side="right") / n
    ref_cdf = _reference_cdf(q, points)
    statistic = float(np.max(np.abs(batch_cdf - ref_cdf)))
    m = max(int(reference_rows), 1)
    effective = max(round(n * m / (n + m)), 1)
    p_value = float(stats.kstwo.sf(statistic, effective))
    return statistic, min(max(p_value, 0.0), 1.0)


def _reference_cdf(q: FloatArray, points: FloatArray) -> FloatArray:
    """Piecewise-linear CDF through (q_k, k/100); flat runs of tied quantiles jump at once."""
    levels = QUANTILE_LEVELS
    upper = np.searchsorted(q, points, side="right")  # quantiles <= point
    cdf = np.empty_like(points)
    below = upper == 0
    above = upper >= q.size
    inside = ~(below | above)
    cdf[below] = 0.0
    cdf[above] = 1.0
    hi = upper[inside]
    lo = hi - 1
    q_lo, q_hi = q[lo], q[hi]
    width = q_hi - q_lo
    frac = np.divide(points[inside] - q_lo, width, out=np.zeros_like(width), where=width > 0)
    cdf[inside] = levels[lo] + frac * (levels[hi] - levels[lo])
    return cdf


def chi_square_test(
    reference: FloatArray, counts: FloatArray, epsilon: float
) -> tuple[float, float]:
    """Chi-square goodness of fit of the batch counts against the reference shares."""
    n = counts.sum()
    expected = _smooth(reference, epsilon) * n
    result = stats.chisquare(counts, expected)
    return float(result.statistic), float(result.pvalue)


# --------------------------------------------------------------------------- one column


def _category_counts(counts: pd.Series, keys: Sequence[str]) -> FloatArray:
    """Counts per profiled category; everything else (unseen values too) lands in OTHER."""
    known = [k for k in keys if k != OTHER]
    in_known = counts.reindex(known, fill_value=0).to_numpy(dtype=np.float64)
    out = np.zeros(len(keys))
    out[[keys.index(k) for k in known]] = in_known
    if OTHER in keys:
        out[keys.index(OTHER)] = float(counts.sum()) - float(in_known.sum())
    return out


def column_drift(
    profile: Mapping[str, Any],
    values: pd.Series,
    settings: DriftSettings,
    reference_rows: int,
) -> dict[str, Any]:
    """Measures and verdict for one column of a batch against its reference profile."""
    kind = profile["kind"]
    total = len(values)
    result: dict[str, Any] = {
        "kind": kind,
        "null_fraction": {
            "reference": _round(float(profile["null_fraction"])),
            "batch": 0.0,
        },
        "psi": None,
        "jensen_shannon": None,
        "wasserstein": None,
        "test": None,
    }
    if kind == "numeric":
        data = _as_float(values)
        # inf/-inf have no place on the reference's bins or quantiles: counted, then left out
        # like nulls (they raise the batch's missing share), so the distances stay finite.
        finite = np.isfinite(data)
        result["non_finite"] = int(data.size - finite.sum())
        data = data[finite]
        n = data.size
        ref_shares = np.asarray(profile["frequencies"], dtype=np.float64)
        if n and profile["edges"]:
            shares = bin_shares(data, profile["edges"])
            batch_q = np.quantile(data, QUANTILE_LEVELS)
            w = wasserstein_from_quantiles(profile["quantiles"], batch_q)
            scale = reference_scale(profile, settings.wasserstein_scale)
            result["wasserstein"] = _round(w / scale)
    else:
        label_count = label_counts(values)
        n = int(label_count.sum())
        keys = [str(k) for k in profile["frequencies"]]
        if OTHER not in keys:
            keys.append(OTHER)
        ref_shares = np.asarray([float(profile["frequencies"].get(k, 0.0)) for k in keys])
        if n:
            counts = _category_counts(label_count, keys)
            shares = counts / n
            unseen = [k for k in label_count.index if k not in keys and label_count[k] > 0]
            # A few names are enough to act on; the OTHER share carries the size.
            result["unseen"] = sorted(unseen)[:20]
    result["null_fraction"]["batch"] = _round(1.0 - n / total if total else 0.0)
    result["rows"] = n
    if n == 0 or (kind == "numeric" and not profile["edges"]):
        # Nothing to compare: all values empty in the batch or in training. Fail closed.
        result["method"] = "none"
        result["drifted"] = True
        side = "batch" if n == 0 else "reference"
        result["reasons"] = [f"no non-null values in the {side}"]
        return result
    result["psi"] = _round(psi(ref_shares, shares, settings.psi_epsilon))
    result["jensen_shannon"] = _round(jensen_shannon(ref_shares, shares))

    reasons: list[str] = []
    if n < settings.small_sample_rows:
        result["method"] = "test"
        if kind == "numeric":
            stat, p = ks_test(profile["quantiles"], reference_rows, data)
            name = "ks"
        else:
            stat, p = chi_square_test(ref_shares, counts, settings.psi_epsilon)
            name = "chi_square"
        result["test"] = {"name": name, "statistic": _round(stat), "p_value": _round(p)}
        if p < settings.alpha:
            reasons.append(f"{name} p-value {_round(p)} < alpha {settings.alpha}")
    else:
        result["method"] = "distance"
        limits = {
            "psi": settings.psi_threshold,
            "jensen_shannon": settings.js_threshold,
            "wasserstein": settings.wasserstein_threshold,
        }
        for measure in settings.measures:
            value = result[measure]
            # Not a number means "not applicable" (Wasserstein of a category), never "passes"
            # by accident: only None is skipped.
            if value is not None and not value <= limits[measure]:
                reasons.append(f"{measure} {value} > {limits[measure]}")
    if result.get("non_finite"):  # never a value a model was trained on: fail closed
        reasons.append(f"{result['non_finite']} infinite values (inf/-inf) in the batch")
    result["drifted"] = bool(reasons)
    result["reasons"] = reasons
    return result


# --------------------------------------------------------------------------- the report


def drift_report(
    reference: Mapping[str, Any],
    batch: pd.DataFrame,
    settings: DriftSettings,
    *,
    predictions: pd.Series | None = None,
    target: str | None = None,
    prediction_settings: DriftSettings | None = None,
    target_settings: DriftSettings | None = None,
) -> dict[str, Any]:
    """Per-feature drift, share of drifted features, prediction and target drift.

    `predictions` is the model output profiled like reference["prediction"] (positive-class
    probability, predicted value or predicted label); `target` the label column name, measured
    when the batch has it and the reference profiles it. Both may have their own thresholds
    (`prediction_settings`, `target_settings`; default: `settings`).
    """
    rows = int(reference.get("rows", 0))
    profiles: Mapping[str, Any] = reference["columns"]
    features: dict[str, Any] = {}
    missing: list[str] = []
    for name in sorted(profiles):
        if name not in batch.columns:
            missing.append(name)
            continue
        features[name] = column_drift(profiles[name], batch[name], settings, rows)
    drifted = [name for name, col in features.items() if col["drifted"]]
    judged = len(features) + len(missing)
    report: dict[str, Any] = {
        "features": features,
        "missing_features": missing,
        "drifted_features": drifted,
        # A missing column cannot be judged: it counts as drifted (fail closed).
        "drifted_share": _round((len(drifted) + len(missing)) / judged) if judged else 0.0,
        "prediction": None,
        "target": None,
    }
    if predictions is not None and reference.get("prediction"):
        report["prediction"] = column_drift(
            reference["prediction"], predictions, prediction_settings or settings, rows
        )
    if target is not None and target in batch.columns and reference.get("target"):
        report["target"] = column_drift(
            reference["target"], batch[target], target_settings or settings, rows
        )
    return report
