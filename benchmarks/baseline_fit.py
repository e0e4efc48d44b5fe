"""The minimal hand-written equivalent of the pipeline: read, split, fit, evaluate.

No validation, no DVC, no report files: the floor the template's overhead is measured against.
It fits the same estimator with the same kwargs and the same preprocessing as params.yaml.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
from ruamel.yaml import YAML
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits


def main(data_path: str, params_path: str) -> None:
    params = YAML(typ="safe", pure=True).load(open(params_path))  # noqa: SIM115
    feats, target = params["features"], params["task"]["target"]
    frame = pd.read_parquet(data_path)
    train, test = train_test_split(
        frame,
        test_size=params["split"]["test_size"],
        random_state=params["split"]["seed"],
        stratify=frame[target],
    )
    stamp = pd.to_datetime(train["applied_at"])
    for f in (train, test):
        ts = pd.to_datetime(f["applied_at"])
        f["month"], f["dow"], f["hour"] = ts.dt.month, ts.dt.dayofweek, ts.dt.hour
    del stamp
    numeric = [*feats["numeric"], "month", "dow", "hour"]
    prep = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=20),
                ),
                feats["categorical"],
            ),
        ]
    )
    model = make_pipeline(
        prep,
        HistGradientBoostingClassifier(
            random_state=params["train"]["seed"], **params["train"]["kwargs"]
        ),
    )
    # Same thread limit as pipeline/train.py, which fits single-threaded for reproducibility.
    with threadpool_limits(limits=1):
        model.fit(train.drop(columns=[target]), train[target])
    proba = model.predict_proba(test.drop(columns=[target]))[:, 1]
    pred = (proba >= 0.5).astype(int)
    y = test[target].to_numpy()
    print(
        json.dumps(
            {
                "accuracy": accuracy_score(y, pred),
                "roc_auc": roc_auc_score(y, proba),
                "f1": f1_score(y, pred),
                "log_loss": log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15)),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
