"""No training/serving skew: `predict` on raw rows gives exactly evaluate's predictions."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_params
from tests.conftest import git, run

pytestmark = pytest.mark.e2e


def raw_test_rows(repo: Path) -> pd.DataFrame:
    """The held-out rows as ingest wrote them (raw file, raw columns), without the label,
    in the order of the test split."""
    params = load_params(repo / "params.yaml")
    raw = pd.read_parquet(repo / params.paths.raw)
    test_ids = pd.read_parquet(repo / params.paths.test)["application_id"]
    rows = raw.set_index("application_id").loc[test_ids].reset_index()[list(raw.columns)]
    return rows.drop(columns=[params.task.target])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_predict_on_raw_test_rows_equals_evaluate(
    reproduced_repo: Path, tmp_path: Path, fmt: str
) -> None:
    params = load_params(reproduced_repo / "params.yaml")
    rows = raw_test_rows(reproduced_repo)
    source = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        rows.to_csv(source, index=False)
    else:
        rows.to_parquet(source, index=False)
    output = tmp_path / "predictions.parquet"

    run(
        [sys.executable, "-m", "pipeline", "predict", "--input", source, "--output", output],
        reproduced_repo,
    )

    got = pd.read_parquet(output)
    evaluated = pd.read_parquet(reproduced_repo / params.paths.predictions)
    assert "actual" in evaluated.columns
    pd.testing.assert_frame_equal(got, evaluated.drop(columns=["actual"]), check_exact=True)
    assert git(reproduced_repo, "status", "--porcelain") == ""  # predict changed nothing
