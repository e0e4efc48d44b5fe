"""Evaluate: slices, fairness, plot data, reference profile, and `run` end to end on small frames.

Models are small real sklearn pipelines saved and loaded with the real skops model_io.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline import benchmark as bench
from pipeline import io
from pipeline.config import Evaluate, Params, Task, build, load_yaml
from pipeline.drift import OTHER as OTHER_KEY
from pipeline.drift import bin_index, categorical_profile, numeric_profile
from pipeline.errors import InputError, MetricError
from pipeline.evaluate import (
    ALL_PLOTS,
    NULL_KEY,
    PLOT_SPECS,
    PLOTS,
    fairness,
    model_classes,
    plot_data,
    reference_profile,
    run,
    sample_indices,
    slice_metrics,
    task_metrics,
)
from pipeline.metrics import DIRECTION, round_sig
from pipeline.model_io import save_model
from pipeline.predict import score
from tests.conftest import DEMO_ROOT

REGIONS = ["north", "south", "east", "west"]
OUTPUT_KEYS = ("predictions", "metrics", "slices", "fairness", "reference", "plots")


# --------------------------------------------------------------------------- fixtures


def make_frame(n: int, task_type: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = rng.normal(50.0, 15.0, n)
    income[rng.random(n) < 0.05] = np.nan
    region = rng.choice(REGIONS, n, p=[0.4, 0.3, 0.2, 0.1])
    sex = rng.choice(["female", "male"], n)
    signal = (age - 50) / 15 + np.nan_to_num(income - 50) / 15 + (region == "north") * 0.5
    signal = signal + rng.normal(0, 0.7, n)
    if task_type == "binary":
        target: Any = (signal > 0).astype(int)
    elif task_type == "multiclass":
        target = np.where(signal < -0.5, "low", np.where(signal < 0.5, "medium", "high"))
    else:
        target = signal * 10 + 100
    return pd.DataFrame(
        {"age": age, "income": income, "region": region, "sex": sex, "target": target}
    )


def make_model(frame: pd.DataFrame, task_type: str) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    columns = ColumnTransformer(
        [
            ("numeric", numeric, ["age", "income"]),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["region"]),
        ],
        sparse_threshold=0.0,
    )
    estimator = LinearRegression() if task_type == "regression" else LogisticRegression()
    model = Pipeline([("features", columns), ("model", estimator)])
    return model.fit(frame.drop(columns=["target"]), frame["target"])


def make_params(root: Path, task_type: str, **evaluate: Any) -> Params:
    """The demo's params.yaml with paths under `root` and a small feature set."""
    doc = load_yaml(DEMO_ROOT / "params.yaml")
    doc["paths"] = {key: str(root / Path(value)) for key, value in doc["paths"].items()}
    doc["task"] = {
        "type": task_type,
        "target": "target",
        "positive_label": 1 if task_type == "binary" else None,
        "sensitive": "sex",
    }
    doc["features"] |= {"numeric": ["age", "income"], "categorical": ["region"], "datetime": {}}
    doc["evaluate"] |= {"slices": ["region"], "min_slice_size": 30}
    doc["evaluate"]["benchmark"] = {"repeats": 3, "batch_rows": 50}
    doc["evaluate"] |= evaluate
    return build(Params, doc)


def prepare(root: Path, task_type: str, n: int = 400, **evaluate: Any) -> Params:
    """Write train/test parquet and a saved model under `root`; return matching params."""
    params = make_params(root, task_type, **evaluate)
    train, test = make_frame(n, task_type, seed=1), make_frame(n // 2, task_type, seed=2)
    io.write_table(params.paths.train, train)
    io.write_table(params.paths.test, test)
    save_model(make_model(train, task_type), params.paths.model)
    return params


def task_of(task_type: str) -> Task:
    positive = 1 if task_type == "binary" else None
    return Task(type=task_type, target="target", positive_label=positive, sensitive="sex")


def scored_frame(
    task_type: str, n: int = 300
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[Any, ...]]:
    frame = make_frame(n, task_type, seed=3)
    model = make_model(make_frame(400, task_type, seed=4), task_type)
    scored = score(model, frame.drop(columns=["target"]), task_of(task_type))
    classes = model_classes(model, task_of(task_type))
    return frame, scored, classes


def outputs(params: Params) -> dict[str, bytes]:
    """Every evaluate output file under the params' paths, by name relative to the plots dir."""
    found = {}
    for key in OUTPUT_KEYS:
        path = Path(getattr(params.paths, key))
        if path.is_dir():
            found |= {f"plots/{p.name}": p.read_bytes() for p in sorted(path.iterdir())}
        elif path.exists():
            found[key] = path.read_bytes()
    return found


# --------------------------------------------------------------------------- slices


def test_slices_count_rows_and_null_small_slices() -> None:
    frame, scored, classes = scored_frame("binary")
    frame.loc[frame.index[:7], "region"] = None
    out = slice_metrics(frame, frame["target"], scored, classes, task_of("binary"), ["region"], 40)
    groups = out["region"]
    assert sum(g["n"] for g in groups.values()) == len(frame)
    assert groups[NULL_KEY] == {"n": 7, "metrics": None}
    for key, group in groups.items():
        assert group["n"] == int((frame["region"].fillna(NULL_KEY) == key).sum())
        assert (group["metrics"] is None) == (group["n"] < 40)
    north = frame["region"] == "north"
    assert groups["north"]["metrics"] == task_metrics(
        frame["target"][north], scored[north], classes, task_of("binary")
    )


def test_slice_on_unknown_column_is_an_input_error() -> None:
    frame, scored, classes = scored_frame("binary", n=50)
    with pytest.raises(InputError, match=r"\['colour'\]"):
        slice_metrics(frame, frame["target"], scored, classes, task_of("binary"), ["colour"], 5)


# --------------------------------------------------------------------------- fairness


def test_binary_fairness_matches_a_direct_computation() -> None:
    frame, scored, classes = scored_frame("binary")
    out = fairness(frame["sex"], frame["target"], scored, classes, task_of("binary"))
    assert out["sensitive"] == "sex"
    assert set(out["groups"]) == {"female", "male"}
    y, p, sex = frame["target"].to_numpy(), scored["prediction"].to_numpy(), frame["sex"]
    for group, values in out["groups"].items():
        rows = (sex == group).to_numpy()
        assert values["n"] == rows.sum()
        assert values["selection_rate"] == round_sig(p[rows].mean())
        assert values["accuracy"] == round_sig((p[rows] == y[rows]).mean())
        assert values["tpr"] == round_sig(p[rows & (y == 1)].mean())
        assert values["fpr"] == round_sig(p[rows & (y == 0)].mean())
    rates = [out["groups"][g]["selection_rate"] for g in ("female", "male")]
    metrics = out["metrics"]
    assert metrics["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, p, sensitive_features=sex), abs=2e-6
    )
    assert metrics["demographic_parity_ratio"] == pytest.approx(min(rates) / max(rates), abs=2e-6)
    assert metrics["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=sex), abs=2e-6
    )


def test_group_without_positives_has_null_tpr() -> None:
    frame, scored, classes = scored_frame("binary", n=200)
    frame.loc[frame.index[:5], "sex"] = "other"
    frame.loc[frame.index[:5], "target"] = 0
    out = fairness(frame["sex"], frame["target"], scored, classes, task_of("binary"))
    assert out["groups"]["other"]["n"] == 5
    assert out["groups"]["other"]["tpr"] is None
    assert isinstance(out["groups"]["other"]["fpr"], float)
    assert math.isfinite(out["metrics"]["equalized_odds_difference"])


def test_regression_fairness_reports_error_gaps() -> None:
    frame, scored, _ = scored_frame("regression")
    out = fairness(frame["sex"], frame["target"], scored, (), task_of("regression"))
    err = (frame["target"] - scored["prediction"]).abs()
    mae = err.groupby(frame["sex"]).mean()
    for group, values in out["groups"].items():
        assert values["mae"] == round_sig(mae[group])
        assert set(values) == {"n", "mae", "rmse"}
    assert out["metrics"]["mae_difference"] == pytest.approx(mae.max() - mae.min(), abs=1e-4)
    assert set(out["metrics"]) == {"mae_difference", "rmse_difference"}


def test_zero_selection_everywhere_makes_the_ratio_an_error() -> None:
    frame, scored, classes = scored_frame("binary", n=100)
    scored = scored.assign(prediction=0)
    with pytest.raises(MetricError, match="'demographic_parity_ratio'"):
        fairness(frame["sex"], frame["target"], scored, classes, task_of("binary"))


# --------------------------------------------------------------------------- plots


def _evaluate_cfg(**changes: Any) -> Evaluate:
    doc = load_yaml(DEMO_ROOT / "params.yaml")["evaluate"] | changes
    return build(Evaluate, doc)


def test_binary_plot_data() -> None:
    frame, scored, classes = scored_frame("binary")
    plots = plot_data(
        frame["target"], scored, classes, task_of("binary"), _evaluate_cfg(curve_points=11)
    )
    assert set(plots) == set(PLOTS["binary"])
    roc = plots["roc"]
    assert len(roc) == 11
    assert (roc[0]["fpr"], roc[0]["tpr"]) == (0.0, 0.0)
    assert (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    assert all(0.0 <= r["threshold"] <= 1.0 for r in roc + plots["precision_recall"])
    assert len(plots["precision_recall"]) == 11
    assert plots["confusion"][:3] == [
        {"actual": int(a), "predicted": int(p)}
        for a, p in zip(frame["target"][:3], scored["prediction"][:3], strict=True)
    ]
    assert len(plots["confusion"]) == len(frame)
    calibration = plots["calibration"]
    assert sum(b["count"] for b in calibration) == len(frame)
    assert len(calibration) <= 10
    io.dumps_json(plots)  # all finite, JSON-ready


def test_confusion_plot_is_capped_and_keeps_the_proportions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline import evaluate

    monkeypatch.setattr(evaluate, "MAX_CONFUSION_ROWS", 100)
    n = 1000
    truth = pd.Series(np.tile([0, 1, 1, 0], n // 4))
    predicted = np.tile([0, 1, 0, 0], n // 4)  # a quarter of rows wrong, all actual 1 -> 0
    scored = pd.DataFrame(
        {"prediction": predicted, "proba_0": 1.0 - predicted, "proba_1": predicted * 1.0}
    )
    rows = plot_data(truth, scored, (0, 1), task_of("binary"), _evaluate_cfg())["confusion"]
    assert len(rows) == 100
    wrong = sum(r["actual"] != r["predicted"] for r in rows)
    assert 20 <= wrong <= 30  # ~25% as in the full test set


def test_regression_plots_are_sampled_deterministically() -> None:
    n = 2500
    actual = pd.Series(np.arange(n, dtype=float))
    scored = pd.DataFrame({"prediction": np.arange(n, dtype=float) + 0.5})
    plots = plot_data(actual, scored, (), task_of("regression"), _evaluate_cfg())
    assert set(plots) == set(PLOTS["regression"])
    assert len(plots["residuals"]) == len(plots["predicted_vs_actual"]) == 1000
    assert plots["predicted_vs_actual"][0] == {"actual": 0.0, "predicted": 0.5}
    assert plots["predicted_vs_actual"][-1] == {"actual": n - 1.0, "predicted": n - 0.5}
    assert {r["residual"] for r in plots["residuals"]} == {-0.5}
    assert plots == plot_data(actual, scored, (), task_of("regression"), _evaluate_cfg())
    assert list(sample_indices(5, 10)) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- profile


def test_numeric_profile() -> None:
    values = pd.Series(np.r_[np.arange(1000, dtype=float), [np.nan] * 10], name="x")
    profile = numeric_profile(values, 10)
    assert profile["kind"] == "numeric"
    assert profile["null_fraction"] == round_sig(10 / 1010)
    edges = profile["edges"]
    assert len(edges) == 11
    assert all(a < b for a, b in itertools.pairwise(edges))
    assert sum(profile["frequencies"]) == pytest.approx(1.0, abs=1e-5)
    assert profile["frequencies"] == [0.1] * 10
    assert len(profile["quantiles"]) == 101
    assert profile["quantiles"] == sorted(profile["quantiles"])
    assert (profile["min"], profile["max"], profile["mean"]) == (0.0, 999.0, 499.5)


def test_numeric_profile_drops_duplicate_edges() -> None:
    values = pd.Series([0.0] * 90 + list(range(1, 11)), name="skewed")
    profile = numeric_profile(values, 10)
    assert profile["edges"][0] == 0.0
    assert len(profile["edges"]) == len(set(profile["edges"])) < 11
    assert len(profile["frequencies"]) == len(profile["edges"]) - 1
    assert profile["frequencies"][0] >= 0.9
    assert sum(profile["frequencies"]) == pytest.approx(1.0, abs=1e-5)
    constant = numeric_profile(pd.Series([3.0, 3.0, 3.0], name="c"), 10)
    assert (constant["edges"], constant["frequencies"]) == ([3.0, 3.0], [1.0])


def test_bin_index_puts_outliers_in_end_bins() -> None:
    edges = [0.0, 1.0, 2.0, 3.0]
    got = bin_index(edges, np.array([-5.0, 0.0, 0.5, 1.0, 2.9, 3.0, 99.0]))
    assert got.tolist() == [0, 0, 0, 1, 2, 2, 2]


def test_categorical_profile_keeps_top_categories() -> None:
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 1 + [None] * 2, name="cat")
    profile = categorical_profile(values, 2)
    assert profile == {
        "kind": "categorical",
        "null_fraction": round_sig(2 / 12),
        "frequencies": {"a": 0.5, "b": 0.3, OTHER_KEY: 0.2},
    }
    assert sum(categorical_profile(values, 20)["frequencies"].values()) == pytest.approx(1.0)


def test_reference_profile_shape() -> None:
    frame, scored, classes = scored_frame("binary")
    params = make_params(Path("/nonexistent"), "binary")
    ref = reference_profile(
        frame, scored, classes, params.features, params.task, params.evaluate.profile
    )
    assert ref["version"] == 1
    assert ref["rows"] == len(frame)
    assert set(ref["columns"]) == {"age", "income", "region"}
    assert ref["columns"]["region"]["kind"] == "categorical"
    assert ref["target"]["frequencies"].keys() == {"0", "1", OTHER_KEY}
    assert ref["prediction"]["kind"] == "numeric"  # positive-class probability
    assert 0.0 <= ref["prediction"]["min"] <= ref["prediction"]["max"] <= 1.0


# --------------------------------------------------------------------------- run


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "regression"])
def test_run_writes_the_task_outputs_and_removes_stale_plots(
    tmp_path: Path, task_type: str
) -> None:
    params = prepare(tmp_path, task_type)
    plot_dir = Path(params.paths.plots)
    plot_dir.mkdir(parents=True)
    for stem in ALL_PLOTS:
        (plot_dir / f"{stem}.json").write_text("[]\n")
    (plot_dir / "notes.txt").write_text("not ours\n")

    run(params)

    written = sorted(p.name for p in plot_dir.iterdir())
    assert written == sorted([*(f"{s}.json" for s in PLOTS[task_type]), "notes.txt"])
    for stem in PLOTS[task_type]:
        rows = io.read_json(plot_dir / f"{stem}.json")
        assert rows != []
        # dvc.yaml draws each file with PLOT_SPECS' fields: they must be in every row
        assert {PLOT_SPECS[stem]["x"], PLOT_SPECS[stem]["y"]} <= set(rows[0]), stem
    metrics = io.read_json(params.paths.metrics)
    expected = (
        {"rmse", "mae", "r2"}
        if task_type == "regression"
        else {"accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"}
    )
    assert set(metrics) == expected
    predictions = io.read_table(params.paths.predictions)
    test = io.read_table(params.paths.test)
    assert len(predictions) == len(test)
    assert predictions["actual"].tolist() == test["target"].tolist()
    assert "prediction" in predictions
    assert not Path(params.paths.benchmark).exists()  # the benchmark stage's output
    reference = io.read_json(params.paths.reference)
    assert reference["rows"] == len(io.read_table(params.paths.train))
    assert set(reference["columns"]) == {"age", "income", "region"}
    kinds = (reference["target"]["kind"], reference["prediction"]["kind"])
    assert (
        kinds
        == {
            "binary": ("categorical", "numeric"),  # label shares; positive-class probability
            "multiclass": ("categorical", "categorical"),  # label shares; predicted-label shares
            "regression": ("numeric", "numeric"),
        }[task_type]
    )
    fair = io.read_json(params.paths.fairness)
    assert fair["sensitive"] == "sex"
    assert sum(g["n"] for g in fair["groups"].values()) == len(test)


def test_directions_cover_every_emitted_metric(tmp_path: Path) -> None:
    names: set[str] = set()
    for task_type in ("binary", "multiclass", "regression"):
        params = prepare(tmp_path / task_type, task_type)
        run(params)
        bench.run(params)
        names |= set(io.read_json(params.paths.metrics))
        names |= set(io.read_json(params.paths.benchmark))
        fair = io.read_json(params.paths.fairness)
        names |= set(fair["metrics"])
        names |= {k for g in fair["groups"].values() for k in g} - {"n", "selection_rate"}
        for groups in io.read_json(params.paths.slices).values():
            names |= {k for g in groups.values() if g["metrics"] for k in g["metrics"]}
    assert names - set(DIRECTION) == set()


def test_run_is_byte_reproducible(tmp_path: Path) -> None:
    first = prepare(tmp_path / "a", "binary")
    second = prepare(tmp_path / "b", "binary")
    run(first)
    run(second)
    a, b = outputs(first), outputs(second)
    assert set(a) == set(b)
    assert {"predictions", "metrics", "slices", "fairness", "reference", "plots/roc.json"} <= set(a)
    assert a == b
    run(first)  # and again in place
    assert outputs(first) == a


def test_non_finite_metric_fails_and_writes_nothing(tmp_path: Path) -> None:
    params = prepare(tmp_path, "regression")
    test = io.read_table(params.paths.test)
    test.loc[0, "income"] = 1e200  # prediction stays finite, its squared error overflows
    io.write_table(params.paths.test, test)
    with pytest.raises(MetricError, match="'rmse'"):
        run(params)
    assert outputs(params) == {}


def test_missing_target_fails_and_writes_nothing(tmp_path: Path) -> None:
    params = prepare(tmp_path, "binary")
    io.write_table(params.paths.test, io.read_table(params.paths.test).drop(columns=["target"]))
    with pytest.raises(InputError, match=r"missing columns \['target'\]"):
        run(params)
    assert outputs(params) == {}


def test_positive_label_must_be_a_model_class(tmp_path: Path) -> None:
    params = prepare(tmp_path, "binary")
    wrong = Task(type="binary", target="target", positive_label="yes", sensitive="sex")
    frame, scored, classes = scored_frame("binary", n=60)
    with pytest.raises(
        InputError, match=r"positive_label 'yes' is not a class of the model \[0, 1\]"
    ):
        task_metrics(frame["target"], scored, classes, wrong)
    with pytest.raises(InputError, match="positive_label 'yes'"):
        run(dataclasses.replace(params, task=wrong))
    assert outputs(params) == {}


def test_string_positive_label_matches_integer_classes() -> None:
    frame, scored, classes = scored_frame("binary", n=60)
    as_text = Task(type="binary", target="target", positive_label="1", sensitive="sex")
    assert task_metrics(frame["target"], scored, classes, as_text) == task_metrics(
        frame["target"], scored, classes, task_of("binary")
    )


def test_task_and_model_kind_must_agree(tmp_path: Path) -> None:
    params = prepare(tmp_path, "regression")
    as_binary = dataclasses.replace(params, task=task_of("binary"))
    with pytest.raises(InputError, match=r"task\.type is binary but the model is not a classifier"):
        run(as_binary)
    assert outputs(params) == {}


def test_categorical_keys_match_across_dtypes() -> None:
    as_int = categorical_profile(pd.Series([0, 1, 1, 1], name="y"), 20)
    as_float = categorical_profile(pd.Series([0.0, 1.0, 1.0, 1.0, None], name="y"), 20)
    assert (
        as_int["frequencies"] == as_float["frequencies"] == {"0": 0.25, "1": 0.75, OTHER_KEY: 0.0}
    )
    unused = pd.Series(pd.Categorical(["a", "a", "b"], categories=["a", "b", "zzz"]), name="c")
    assert set(categorical_profile(unused, 20)["frequencies"]) == {"a", "b", OTHER_KEY}
