"""pipeline.drift: measures, verdicts and the reference-profile format it shares with evaluate."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline import drift, evaluate
from pipeline.config import Params, load_params
from pipeline.ingest import batch, override
from pipeline.io import dumps_json
from tests.conftest import DEMO_ROOT

NUMERIC = ["age", "income", "debt_ratio", "credit_history_months", "open_accounts", "loan_amount"]
CATEGORICAL = ["region", "employment", "home_ownership"]

SETTINGS = drift.DriftSettings(
    measures=("psi", "jensen_shannon", "wasserstein"),
    psi_threshold=0.2,
    psi_epsilon=1e-4,
    js_threshold=0.1,
    wasserstein_threshold=0.1,
    wasserstein_scale="std",
    small_sample_rows=1000,
    alpha=0.01,
)
# Labels have two categories: a prior shift moves few bins, so the monitor uses tighter limits.
TARGET_SETTINGS = drift.DriftSettings(
    measures=SETTINGS.measures,
    psi_threshold=0.05,
    psi_epsilon=1e-4,
    js_threshold=0.05,
    wasserstein_threshold=0.1,
    wasserstein_scale="std",
    small_sample_rows=1000,
    alpha=0.01,
)


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def generated(params: Params, rows: int, seed: int, **knobs: Any) -> pd.DataFrame:
    """A batch of the default generator; knobs are `generate`'s CLI overrides."""
    return batch(override(params.ingest.generator, rows=rows, seed=seed, **knobs), params.task)


@pytest.fixture(scope="module")
def training(params: Params) -> pd.DataFrame:
    return generated(params, 20000, 7)


@pytest.fixture(scope="module")
def reference(training: pd.DataFrame, params: Params) -> dict[str, Any]:
    """A profile written by evaluate's own profile functions (the real reference.json format)."""
    columns = {c: evaluate.numeric_profile(training[c], 10) for c in NUMERIC}
    columns |= {c: evaluate.categorical_profile(training[c], 20) for c in CATEGORICAL}
    target = evaluate.categorical_profile(training[params.task.target], 20)
    return {"version": 1, "rows": len(training), "columns": columns, "target": target}


# --------------------------------------------------------------------------- profile format


def test_profiles_match_evaluate_exactly(training: pd.DataFrame) -> None:
    """drift's vectorized profile is byte-for-byte evaluate's, so either can write the file."""
    ours = drift.profile_frame(training, NUMERIC, CATEGORICAL, bins=10, top_categories=20)
    for column in NUMERIC:
        assert ours["columns"][column] == evaluate.numeric_profile(training[column], 10), column
    for column in CATEGORICAL:
        theirs = evaluate.categorical_profile(training[column], 20)
        assert ours["columns"][column] == theirs, column


def test_batch_binned_like_reference(training: pd.DataFrame, reference: dict[str, Any]) -> None:
    """Binning the training data with the stored edges gives the stored frequencies back."""
    for column in NUMERIC:
        profile = reference["columns"][column]
        values = training[column].dropna().to_numpy(dtype=float)
        shares = drift.bin_shares(values, profile["edges"])
        np.testing.assert_allclose(shares, profile["frequencies"], atol=1e-6, err_msg=column)


def test_top_categories_rest_counted_as_other() -> None:
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d"] + [None])
    profile = drift.categorical_profile(values, top=2)
    assert profile["frequencies"] == {"a": 0.5, "b": 0.3, "__other__": 0.2}
    assert profile["null_fraction"] == pytest.approx(1 / 11, rel=1e-5)


# --------------------------------------------------------------------------- measures


def test_psi_zero_for_identical_and_finite_with_empty_bins() -> None:
    p = np.array([0.25, 0.25, 0.5])
    assert drift.psi(p, p, 1e-4) == pytest.approx(0.0, abs=1e-12)
    empty = np.array([0.0, 0.5, 0.5])
    value = drift.psi(p, empty, 1e-4)
    assert np.isfinite(value)
    assert value > 0.2


def test_jensen_shannon_bounds() -> None:
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.5, 0.5])
    assert drift.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-9)
    assert drift.jensen_shannon(p, q) == pytest.approx(1.0)


def test_wasserstein_from_quantiles_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.gamma(2.0, 3.0, 50000)
    b = rng.gamma(2.0, 3.0, 50000) + 1.5
    qa = np.quantile(a, drift.QUANTILE_LEVELS)
    qb = np.quantile(b, drift.QUANTILE_LEVELS)
    ours = drift.wasserstein_from_quantiles(qa.tolist(), qb)
    assert ours == pytest.approx(stats.wasserstein_distance(a, b), rel=0.05)
    # A pure location shift is recovered exactly.
    assert drift.wasserstein_from_quantiles(qa.tolist(), qa + 2.0) == pytest.approx(2.0)


def test_ks_from_reference_quantiles_close_to_two_sample_ks() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20000)
    q = np.quantile(ref, drift.QUANTILE_LEVELS).tolist()
    same = rng.normal(size=400)
    shifted = rng.normal(0.5, 1.0, size=400)
    stat_same, p_same = drift.ks_test(q, len(ref), same)
    stat_shift, p_shift = drift.ks_test(q, len(ref), shifted)
    assert stat_same == pytest.approx(stats.ks_2samp(ref, same).statistic, abs=0.02)
    assert stat_shift == pytest.approx(stats.ks_2samp(ref, shifted).statistic, abs=0.02)
    assert p_same > 0.05
    assert p_shift < 1e-6


# --------------------------------------------------------------------------- verdicts


def test_no_drift_flags_nothing(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 5000, 101)
    report = drift.drift_report(
        reference, current, SETTINGS, target="default", target_settings=TARGET_SETTINGS
    )
    assert report["drifted_features"] == []
    assert report["drifted_share"] == 0.0
    assert report["target"]["drifted"] is False
    for name, column in report["features"].items():
        assert column["method"] == "distance", name
        assert column["psi"] < 0.05, name


def test_covariate_shift_flags_only_that_feature(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 5000, 102, covariate_shift=["debt_ratio=1.0"])
    report = drift.drift_report(reference, current, SETTINGS)
    assert report["drifted_features"] == ["debt_ratio"]
    shifted = report["features"]["debt_ratio"]
    assert shifted["wasserstein"] > 0.5
    assert any(r.startswith("wasserstein") for r in shifted["reasons"])
    assert report["drifted_share"] == pytest.approx(1 / 9, rel=1e-5)


def test_category_shift_and_unseen_categories(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 5000, 103, category_shift=["region:north=6"]).copy()
    current.loc[current.index[:600], "home_ownership"] = "houseboat"
    report = drift.drift_report(reference, current, SETTINGS)
    assert sorted(report["drifted_features"]) == ["home_ownership", "region"]
    assert report["features"]["home_ownership"]["unseen"] == ["houseboat"]
    assert report["features"]["region"]["wasserstein"] is None


def test_prior_shift_flags_target_not_features(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 5000, 104, prior_shift=1.5)
    report = drift.drift_report(
        reference, current, SETTINGS, target="default", target_settings=TARGET_SETTINGS
    )
    assert report["drifted_features"] == []
    assert report["target"]["drifted"] is True
    assert report["target"]["psi"] > 0.05


def test_small_batch_uses_tests(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 400, 105, covariate_shift=["loan_amount=1.0"])
    report = drift.drift_report(reference, current, SETTINGS)
    loan = report["features"]["loan_amount"]
    assert loan["method"] == "test"
    assert loan["test"]["name"] == "ks"
    assert loan["drifted"] is True
    assert report["features"]["region"]["test"]["name"] == "chi_square"
    assert report["drifted_features"] == ["loan_amount"]


def test_missing_and_empty_columns_count_as_drifted(
    params: Params, reference: dict[str, Any]
) -> None:
    current = generated(params, 3000, 106).drop(columns=["age"])
    current["income"] = np.nan
    report = drift.drift_report(reference, current, SETTINGS)
    assert report["missing_features"] == ["age"]
    assert report["features"]["income"]["drifted"] is True
    assert report["features"]["income"]["reasons"] == ["no non-null values in the batch"]
    assert report["drifted_share"] == pytest.approx(2 / 9, rel=1e-5)


def test_infinite_values_are_counted_not_a_crash(params: Params, reference: dict[str, Any]) -> None:
    """inf/-inf in a batch (a broken upstream join, a division by zero) are reported and the
    report stays writable JSON; they count as missing values for the column's verdict."""
    current = generated(params, 3000, 107)
    current["income"] = current["income"].astype(float)
    current.loc[: len(current) // 2, "income"] = np.inf
    current.loc[0, "debt_ratio"] = -np.inf
    report = drift.drift_report(reference, current, SETTINGS)
    income = report["features"]["income"]
    assert income["non_finite"] == len(current) // 2 + 1
    assert income["null_fraction"]["batch"] == pytest.approx(0.5, abs=0.01)
    assert income["drifted"] is True
    assert report["features"]["debt_ratio"]["non_finite"] == 1
    assert all(np.isfinite(v) for v in (income["psi"], income["wasserstein"]))
    dumps_json(report)  # raised "non-finite value nan at $.drift.features.income..." before


def test_prediction_drift_uses_its_own_settings(reference: dict[str, Any]) -> None:
    """Model scores are judged with prediction_settings, independently of the features'."""
    rng = np.random.default_rng(3)
    profile = dict(
        reference, prediction=evaluate.numeric_profile(pd.Series(rng.beta(2, 5, 20000)), 10)
    )
    frame = pd.DataFrame({"unrelated": np.zeros(3000)})
    shifted = pd.Series(rng.beta(2, 3, 3000))
    lenient = dataclasses.replace(
        SETTINGS, psi_threshold=5.0, js_threshold=1.0, wasserstein_threshold=5.0
    )
    strict = drift.drift_report(
        profile, frame, lenient, predictions=shifted, prediction_settings=SETTINGS
    )
    loose = drift.drift_report(
        profile, frame, SETTINGS, predictions=shifted, prediction_settings=lenient
    )
    assert strict["prediction"]["drifted"] is True
    assert loose["prediction"]["drifted"] is False


def test_does_not_mutate_inputs(params: Params, reference: dict[str, Any]) -> None:
    current = generated(params, 2000, 107)
    before = current.copy()
    snapshot = repr(reference)
    drift.drift_report(reference, current, SETTINGS, target="default")
    pd.testing.assert_frame_equal(current, before)
    assert repr(reference) == snapshot


def test_integral_float_labels_match_integer_keys() -> None:
    """A CSV label column read as float (1.0) still matches the profile key "1"."""
    counts = drift.label_counts(pd.Series([1.0, 0.0, 1.0, np.nan]))
    assert counts.to_dict() == {"0": 1, "1": 2}
