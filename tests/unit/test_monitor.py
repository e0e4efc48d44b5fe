"""pipeline.monitor: the policy file, the verdict logic, the Markdown report, the batch picker."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline import evaluate, monitor
from pipeline.config import Params, load_params
from pipeline.errors import ConfigError, InputError
from pipeline.ingest import batch, override
from tests.conftest import DEMO_ROOT, REPO_ROOT

# The demo's policy (tests/demo/): the verdict tests assume its columns and metrics.
POLICY_FILE = DEMO_ROOT / "policies" / "monitoring.yaml"
NUMERIC = ["age", "income", "debt_ratio", "credit_history_months", "open_accounts", "loan_amount"]
CATEGORICAL = ["region", "employment", "home_ownership"]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


@pytest.fixture(scope="module")
def policy() -> monitor.MonitoringPolicy:
    return monitor.load_monitoring(POLICY_FILE)


def generated(params: Params, rows: int, seed: int, **knobs: Any) -> pd.DataFrame:
    return batch(override(params.ingest.generator, rows=rows, seed=seed, **knobs), params.task)


def fake_scores(frame: pd.DataFrame, shift: float = 0.0) -> pd.DataFrame:
    """A stand-in for predict.score: P(default) rising with debt_ratio, plus `shift`."""
    p = 1.0 / (1.0 + np.exp(-(4.0 * frame["debt_ratio"].to_numpy() - 2.0 + shift)))
    return pd.DataFrame(
        {"prediction": (p > 0.5).astype(int), "proba_0": 1.0 - p, "proba_1": p},
        index=frame.index,
    )


@pytest.fixture(scope="module")
def reference(params: Params) -> dict[str, Any]:
    training = generated(params, 20000, 7)
    columns = {c: evaluate.numeric_profile(training[c], 10) for c in NUMERIC}
    columns |= {c: evaluate.categorical_profile(training[c], 20) for c in CATEGORICAL}
    return {
        "version": 1,
        "rows": len(training),
        "columns": columns,
        "target": evaluate.categorical_profile(training["default"], 20),
        "prediction": evaluate.numeric_profile(fake_scores(training)["proba_1"], 10),
    }


REFERENCE_METRICS = {"accuracy": 0.8, "roc_auc": 0.8, "f1": 0.6, "log_loss": 0.5}


def assess(
    params: Params,
    policy: monitor.MonitoringPolicy,
    reference: dict[str, Any],
    frame: pd.DataFrame,
    *,
    failures: tuple[str, ...] = (),
    metrics: dict[str, float] | None = None,
    shift: float = 0.0,
) -> dict[str, Any]:
    labelled = int(frame["default"].notna().sum()) if "default" in frame else 0
    return monitor.assess(
        source="batch.parquet",
        batch=frame,
        reference=reference,
        reference_metrics=REFERENCE_METRICS,
        contract_failures=list(failures),
        scored=None if failures else fake_scores(frame, shift),
        batch_metrics=metrics,
        labelled_rows=labelled,
        classes=[0, 1],
        policy=policy,
        task=params.task,
    )


# --------------------------------------------------------------------------- the policy file


def test_repository_policy_loads(policy: monitor.MonitoringPolicy) -> None:
    assert policy.drift.measures == ("psi", "jensen_shannon", "wasserstein")
    assert 0 < policy.drift.drifted_share <= 1
    assert policy.performance.max_relative_drop["roc_auc"] == pytest.approx(0.05)
    assert policy.target.thresholds.psi < policy.drift.thresholds.psi


@pytest.mark.parametrize("root", [REPO_ROOT, DEMO_ROOT], ids=["live", "demo"])
def test_every_key_of_the_policy_is_commented(root: Path) -> None:
    lines = (root / "policies" / "monitoring.yaml").read_text().splitlines()
    keys = [line for line in lines if re.match(r"^\s*[a-z_]+:", line)]
    assert len(keys) > 20
    uncommented = [line for line in keys if "#" not in line]
    # A section header is commented on the line(s) right below it instead.
    for line in uncommented:
        below = lines[lines.index(line) + 1].strip()
        assert below.startswith("#") or "#" in below, f"no comment for: {line!r}"


def test_bad_policy_lists_every_violation(tmp_path: Path) -> None:
    text = POLICY_FILE.read_text()
    text = text.replace("min_rows: 200", "min_rows: 0")
    text = text.replace("psi: 0.2 #", "psi: -1 #")
    text = text.replace("wasserstein_scale: std", "wasserstein_scale: mad")
    text = text.replace("roc_auc: 0.05", "auc: 0.05")
    bad = tmp_path / "monitoring.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        monitor.load_monitoring(bad)
    message = str(info.value)
    assert str(bad) in message
    for where in ("min_rows", "drift.thresholds.psi", "drift.wasserstein_scale", "auc"):
        assert where in message, where
    assert len(info.value.violations) == 4


def test_duplicate_key_in_policy_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "monitoring.yaml"
    bad.write_text(POLICY_FILE.read_text().replace("min_rows: 200", "min_rows: 200\nmin_rows: 5"))
    with pytest.raises(ConfigError, match="duplicate key"):
        monitor.load_monitoring(bad)


# --------------------------------------------------------------------------- verdicts


def test_relative_drop_follows_metric_direction() -> None:
    assert monitor.relative_drop("roc_auc", 0.8, 0.72) == pytest.approx(0.1)
    assert monitor.relative_drop("log_loss", 0.5, 0.6) == pytest.approx(0.2)
    assert monitor.relative_drop("rmse", 2.0, 1.0) == pytest.approx(-0.5)


def test_performance_check_fails_closed_on_nan() -> None:
    rows = monitor.performance_check(
        {"roc_auc": 0.8, "accuracy": 0.8, "rmse": 1.0},
        {"roc_auc": float("nan"), "accuracy": 0.79},
        {"roc_auc": 0.05, "accuracy": 0.05, "rmse": 0.1},
    )
    by_metric = {row["metric"]: row for row in rows}
    assert set(by_metric) == {"accuracy", "roc_auc"}  # rmse: not produced by the batch
    assert by_metric["roc_auc"]["passed"] is False
    assert by_metric["roc_auc"]["relative_drop"] is None
    assert by_metric["accuracy"]["passed"] is True


def test_clean_batch_no_breach(params: Params, policy: Any, reference: dict[str, Any]) -> None:
    frame = generated(params, 3000, 201)
    report = assess(params, policy, reference, frame, metrics=dict(REFERENCE_METRICS))
    assert report["breach"] is False, report["breaches"]
    assert report["breaches"] == []
    assert report["performance"]["measured"] is True
    assert report["contract"] == {"passed": True, "failures": []}


def test_covariate_shift_one_feature(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 202, covariate_shift=["loan_amount=1.0"])
    report = assess(params, policy, reference, frame)
    assert report["drift"]["drifted_features"] == ["loan_amount"]
    # One feature of nine is below the drifted-share limit, and scores did not move.
    assert report["breach"] is False


def test_many_drifted_features_breach(params: Params, policy: Any, reference: Any) -> None:
    knobs = ["age=1", "income=1", "loan_amount=1", "credit_history_months=1"]
    frame = generated(params, 3000, 203, covariate_shift=knobs)
    report = assess(params, policy, reference, frame)
    assert report["breach"] is True
    assert report["breaches"][0].startswith("feature drift: 44% of features drifted")


def test_prior_shift_breaches_on_target(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 204, prior_shift=1.5)
    report = assess(params, policy, reference, frame)
    assert report["drift"]["drifted_features"] == []
    assert [b.split(":")[0] for b in report["breaches"]] == ["target drift"]


def test_prediction_drift_breach(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 205)
    report = assess(params, policy, reference, frame, shift=1.5)
    assert report["drift"]["prediction"]["drifted"] is True
    assert any(b.startswith("prediction drift") for b in report["breaches"])


def test_performance_drop_breach(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 206)
    worse = {"accuracy": 0.79, "roc_auc": 0.70, "f1": 0.58, "log_loss": 0.52}
    report = assess(params, policy, reference, frame, metrics=worse)
    assert report["breaches"] == [
        "performance: roc_auc 0.7 vs reference 0.8 (relative drop 0.125 > 0.05)"
    ]


def test_contract_failure_breach(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 207)
    report = assess(params, policy, reference, frame, failures=("age: 3 values below min 18",))
    assert report["breach"] is True
    assert report["breaches"][0] == "data contract: 1 failing check(s)"
    assert report["performance"]["reason"] == "not scored (the data contract failed)"
    assert report["drift"]["prediction"] is None


def test_markdown_report(params: Params, policy: Any, reference: Any) -> None:
    frame = generated(params, 3000, 208, prior_shift=1.5)
    text = monitor.render_markdown(assess(params, policy, reference, frame))
    assert text.startswith(monitor.MARKER + "\n## Monitoring report: 🚨 breach")
    assert "### Why\n\n- target drift:" in text
    assert text.count("| `") == 9 + 2  # nine features, prediction and target
    assert "### Performance (3000 labelled rows)\n\nNot measured: no metrics given." in text
    assert "### Data contract\n\nPassed." in text
    assert monitor.render(assess(params, policy, reference, frame), "json").startswith("{\n")


# --------------------------------------------------------------------------- the newest batch


def test_latest_batch_by_name(tmp_path: Path) -> None:
    for name in ("2025-01-31.csv", "2025-02-28.parquet", ".2025-12-31.parquet", "zz.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "2025-12-01.csv").mkdir()
    assert monitor.latest_batch(tmp_path) == str(tmp_path / "2025-02-28.parquet")


def test_latest_batch_none(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \.csv or \.parquet batch"):
        monitor.latest_batch(tmp_path)
    with pytest.raises(InputError, match="no such directory"):
        monitor.latest_batch(tmp_path / "missing")
