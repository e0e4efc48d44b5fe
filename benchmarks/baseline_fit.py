"""The minimal hand-written equivalent of the pipeline: read, split, fit, evaluate; one process.

No data contract, no DVC, no error handling, one file written (the model, in a temporary
directory, for its size): the floor the template's overhead is measured against. It splits
with the template's seeded split and fits the same estimator with the same kwargs,
preprocessing and thread limit as params.yaml and pipeline/train.py (the same model:
pipeline_scale.py checks its metrics equal models/metrics.json), then computes the same
evaluation as the evaluate stage, the straightforward way: the six metrics, per-slice
metrics, per-group fairness rates, the ROC/PR/calibration/confusion plot data, the reference
profile of the training features, the latency benchmark (same repeats and batch size) and the
model file size. It prints its figures as JSON.

With --headline-only it stops after the six overall metrics (a narrower floor).

    python benchmarks/baseline_fit.py data/raw/dataset.parquet params.yaml [--headline-only]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
from ruamel.yaml import YAML
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    log_loss,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.config import Split
from pipeline.features import split_indices


def add_date_parts(frame: pd.DataFrame) -> pd.DataFrame:
    ts = pd.to_datetime(frame["applied_at"])
    parts = {"month": ts.dt.month, "dow": ts.dt.day_of_week, "hour": ts.dt.hour}
    return frame.assign(**{k: v.astype("float64") for k, v in parts.items()})


def six_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    out = {"accuracy": accuracy_score(y, pred), "precision": p, "recall": r, "f1": f}
    out["log_loss"] = log_loss(y, np.c_[1 - proba, proba], labels=[0, 1])
    if len(np.unique(y)) == 2:
        out["roc_auc"] = roc_auc_score(y, proba)
    return out


def profile(values: pd.Series, bins: int) -> dict[str, list[float]]:
    v = values.dropna().to_numpy(dtype=float)
    edges = np.quantile(v, np.linspace(0, 1, bins + 1))
    shares = np.bincount(np.clip(np.searchsorted(edges, v, "right") - 1, 0, bins - 1)) / len(v)
    quantiles = np.quantile(v, np.linspace(0, 1, 101))
    return {"edges": edges.tolist(), "shares": shares.tolist(), "q": quantiles.tolist()}


def latency_ms(model: object, frame: pd.DataFrame, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(frame)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - start) * 1000)
    return np.percentile(out, [50, 95]).tolist()


def main(data_path: str, params_path: str, headline_only: bool) -> None:
    params = YAML(typ="safe", pure=True).load(open(params_path))  # noqa: SIM115
    feats, task, ev = params["features"], params["task"], params["evaluate"]
    target = task["target"]
    frame = pd.read_parquet(data_path)
    # The template's own seeded split, so both fit the same rows: the same model, the same
    # number of boosting iterations (early stopping), hence a like-for-like fit time.
    split = params["split"]
    train_rows, test_rows = split_indices(
        frame[target].to_numpy(), len(frame), Split(split["test_size"], split["seed"], True)
    )
    train, test = add_date_parts(frame.iloc[train_rows]), add_date_parts(frame.iloc[test_rows])
    # Same columns, order and steps as pipeline.transform.compile_features.
    prep = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                feats["numeric"],
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=feats["max_categories"],
                        sparse_output=False,
                    ),
                ),
                feats["categorical"],
            ),
            ("dates", "passthrough", ["month", "dow", "hour"]),
        ]
    )
    model = make_pipeline(
        prep,
        HistGradientBoostingClassifier(
            random_state=params["train"]["seed"], **params["train"]["kwargs"]
        ),
    )
    x_test = test.drop(columns=[target])
    # Same thread limit as pipeline/train.py, which fits single-threaded for reproducibility.
    with threadpool_limits(limits=1):
        model.fit(train.drop(columns=[target]), train[target])
        proba = model.predict_proba(x_test)[:, 1]
    pred = (proba >= 0.5).astype(int)
    y = test[target].to_numpy()
    result: dict[str, object] = {"metrics": six_metrics(y, pred, proba)}
    if headline_only:
        print(json.dumps(result))
        return

    result["slices"] = {
        column: {
            str(key): six_metrics(y[idx], pred[idx], proba[idx])
            for key, idx in test.groupby(column, dropna=False).indices.items()
            if len(idx) >= ev["min_slice_size"]
        }
        for column in ev["slices"]
    }
    rates = pd.DataFrame(
        {"group": test[task["sensitive"]].to_numpy(), "y": y, "pred": pred, "hit": y == pred}
    )
    by_group = rates.groupby("group").apply(
        lambda g: pd.Series(
            {
                "selection_rate": g["pred"].mean(),
                "tpr": g.loc[g["y"] == 1, "pred"].mean(),
                "fpr": g.loc[g["y"] == 0, "pred"].mean(),
                "accuracy": g["hit"].mean(),
                "n": len(g),
            }
        ),
        include_groups=False,
    )
    result["fairness"] = {
        "groups": by_group.to_dict(),
        "gap": (by_group.max() - by_group.min()).to_dict(),
    }
    fpr, tpr, _ = roc_curve(y, proba)
    precision, recall, _ = precision_recall_curve(y, proba)
    fraction, mean_predicted = calibration_curve(y, proba, n_bins=ev["calibration_bins"])
    result["plots"] = {
        "roc": [fpr.tolist()[:5], tpr.tolist()[:5]],
        "pr": [precision.tolist()[:5], recall.tolist()[:5]],
        "calibration": [fraction.tolist(), mean_predicted.tolist()],
        "confusion": confusion_matrix(y, pred).tolist(),
    }
    bins, top = ev["profile"]["bins"], ev["profile"]["top_categories"]
    result["reference"] = {
        **{c: profile(train[c], bins) for c in feats["numeric"]},
        **{
            c: train[c].value_counts(normalize=True).head(top).to_dict()
            for c in feats["categorical"]
        },
        target: train[target].value_counts(normalize=True).to_dict(),
        "prediction": profile(pd.Series(proba), bins),
    }
    repeats, batch_rows = ev["benchmark"]["repeats"], ev["benchmark"]["batch_rows"]
    with threadpool_limits(limits=1):
        model.predict_proba(x_test.iloc[:batch_rows])  # warm-up
        result["latency_ms"] = {
            "single": latency_ms(model, x_test.iloc[[0]], repeats),
            "batch": latency_ms(model, x_test.iloc[:batch_rows], repeats),
        }
    # The model file size is one of evaluate's figures: write the model as train does (skops;
    # pickle is not allowed here) and measure it. Imported here: --headline-only needs none.
    import skops.io

    with tempfile.TemporaryDirectory() as tmp:
        skops.io.dump(model, os.path.join(tmp, "model.skops"))
        result["model_size_bytes"] = os.path.getsize(os.path.join(tmp, "model.skops"))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("params")
    parser.add_argument("--headline-only", action="store_true")
    args = parser.parse_args()
    main(args.data, args.params, args.headline_only)
