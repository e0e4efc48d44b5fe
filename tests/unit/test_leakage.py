"""Target-leak check: single-column scores, and validate refusing a leak (or allowing it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

from pipeline import ingest, leakage
from pipeline.cli import main
from pipeline.config import Task, load_params
from pipeline.errors import ConfigError
from pipeline.io import read_table, write_table
from pipeline.validate import feature_columns, load_contract
from tests.conftest import DEMO_ROOT, set_param

PARAMS = load_params(DEMO_ROOT / "params.yaml")
REGRESSION = Task(type="regression", target="y", positive_label=None, sensitive=None)
MULTICLASS = Task(type="multiclass", target="y", positive_label=None, sensitive=None)


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return ingest.generate(PARAMS.ingest.generator, PARAMS.task)


def test_scores_equal_scikit_learns() -> None:
    rng = np.random.default_rng(3)
    positive = rng.random(500) < 0.3
    score = rng.integers(0, 20, 500).astype(float)  # many ties
    assert leakage.roc_auc(positive, score) == pytest.approx(roc_auc_score(positive, score))
    actual, predicted = rng.normal(size=300), rng.normal(size=300)
    assert leakage.r2(actual, predicted) == pytest.approx(r2_score(actual, predicted))
    labels = rng.choice(np.array(["a", "b", "c"]), 400, p=[0.7, 0.2, 0.1])
    guesses = rng.choice(np.array(["a", "b", "c"]), 400)
    assert leakage.balanced_accuracy(labels, guesses) == pytest.approx(
        balanced_accuracy_score(labels, guesses)
    )


def test_honest_features_score_below_the_bound_and_leaks_above(demo: pd.DataFrame) -> None:
    target = demo[PARAMS.task.target]
    frame = demo.assign(
        paid_late=target,  # the label under another name
        outcome=target.map({0: "repaid", 1: "defaulted"}),  # the label as text
        collections=target + np.random.default_rng(1).normal(0, 0.2, len(demo)),  # noisy copy
        row_number=np.arange(len(demo)),  # an id: must not score by memorising rows
    )
    columns = [*feature_columns(PARAMS), "paid_late", "outcome", "collections", "row_number"]
    scores = leakage.single_column_scores(frame, PARAMS.task, columns)
    honest = {k: scores[k] for k in feature_columns(PARAMS)}
    assert max(honest.values()) < 0.8, honest
    assert min(scores[k] for k in ("paid_late", "outcome", "collections")) >= 0.98, scores
    assert abs(scores["row_number"] - 0.5) < 0.05
    assert abs(leakage.single_column_scores(frame, PARAMS.task, ["application_id"])[
        "application_id"] - 0.5) < 0.05  # fmt: skip


def test_regression_and_multiclass_leaks(demo: pd.DataFrame) -> None:
    rng = np.random.default_rng(2)
    y = np.exp(rng.normal(0, 1, len(demo))) * 1000  # heavy tail: binned fits alone miss it
    frame = demo.assign(y=y, doubled=y * 2, logged=np.log(y), with_income=y + demo["income"])
    scores = leakage.single_column_scores(
        frame, REGRESSION, ["doubled", "logged", "with_income", "age", "region"]
    )
    assert scores["doubled"] >= 0.98
    assert scores["logged"] >= 0.98
    assert max(scores["with_income"], scores["age"], scores["region"]) < 0.5
    labelled = demo.assign(y=demo["region"].astype(str), zone=demo["region"].astype(str) + "-z")
    multi = leakage.single_column_scores(labelled, MULTICLASS, ["zone", "age", "employment"])
    assert multi["zone"] == 1.0
    assert max(multi["age"], multi["employment"]) < 0.4  # 5 regions: chance is 0.2


def test_unlabelled_rows_are_left_out_and_constant_columns_score_chance(
    demo: pd.DataFrame,
) -> None:
    frame = demo.assign(constant=1.0)
    frame.loc[frame.index[:500], PARAMS.task.target] = np.nan
    scores = leakage.single_column_scores(frame, PARAMS.task, ["constant", "income"])
    assert abs(scores["constant"] - 0.5) < 0.02  # one bin: only the halves' means differ
    assert 0.6 < scores["income"] < 0.8


def leaky_project(workdir: Path, allow: str = "[]") -> Path:
    """The demo data plus `paid_late`, the label under another name, declared as a feature."""
    assert main(["ingest"]) == 0
    raw = workdir / PARAMS.paths.raw
    frame = read_table(raw)
    write_table(raw, frame.assign(paid_late=frame[PARAMS.task.target]))
    contract = workdir / PARAMS.paths.contract
    text = contract.read_text().replace("allow: []", f"allow: {allow}", 1)
    contract.write_text(
        text + "  paid_late: # from the collections system\n    dtype: int # 0/1\n"
        "    max_null_fraction: 0.0 # always set\n"
    )
    numeric = ", ".join([*PARAMS.features.numeric, "paid_late"])
    set_param(workdir / "params.yaml", "numeric", f"[{numeric}]")
    return workdir


def test_validate_refuses_a_leaking_feature_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leaky_project(workdir)
    raw = (workdir / PARAMS.paths.raw).read_bytes()
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "1 data contract check(s) failed" in err
    assert "paid_late: alone predicts 'default' with roc_auc 1.000 (>= target_leak.max_score" in err
    assert "list it in target_leak.allow" in err
    assert not (workdir / PARAMS.paths.validation).exists()
    assert hashlib.sha256((workdir / PARAMS.paths.raw).read_bytes()).digest() == (
        hashlib.sha256(raw).digest()
    )


def test_an_allowed_strong_feature_passes_and_is_reported(workdir: Path) -> None:
    leaky_project(workdir, allow="[paid_late]")
    assert main(["validate"]) == 0
    summary = json.loads((workdir / PARAMS.paths.validation).read_text())
    assert summary["target_leak"]["strongest_single_column"] == {
        "column": "paid_late",
        "score": 1.0,
    }


def test_bounds_of_the_leak_setting_are_schema_errors(tmp_path: Path) -> None:
    text = (DEMO_ROOT / "policies" / "contract.yaml").read_text()
    bad = tmp_path / "contract.yaml"
    bad.write_text(text.replace("max_score: 0.98", "max_score: 1.5", 1))
    with pytest.raises(ConfigError, match=r"target_leak\.max_score: 1\.5 is greater than"):
        load_contract(bad)
    assert load_contract(DEMO_ROOT / "policies" / "contract.yaml").target_leak.max_score == 0.98
