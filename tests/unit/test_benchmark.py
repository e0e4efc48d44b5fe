"""Benchmark stage: latency and throughput of the scoring path, and the model's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import benchmark, io
from pipeline.errors import InputError
from pipeline.metrics import DIRECTION
from tests.unit.test_evaluate import prepare


@pytest.mark.parametrize("task_type", ["binary", "multiclass", "regression"])
def test_run_measures_the_scoring_path(tmp_path: Path, task_type: str) -> None:
    params = prepare(tmp_path, task_type)
    benchmark.run(params)
    figures = io.read_json(params.paths.benchmark)
    assert set(figures) <= set(DIRECTION)  # every figure has a direction for the report
    assert figures["batch_rows"] == 50  # evaluate.benchmark.batch_rows of prepare()
    assert figures["model_size_bytes"] == Path(params.paths.model).stat().st_size
    assert 0 < figures["latency_ms_single_p50"] <= figures["latency_ms_single_p95"]
    assert 0 < figures["latency_ms_batch_p50"] <= figures["latency_ms_batch_p95"]
    assert figures["rows_per_second"] == pytest.approx(
        50 / (figures["latency_ms_batch_p50"] / 1000), rel=1e-4
    )


def test_no_test_rows_is_an_input_error_and_writes_nothing(tmp_path: Path) -> None:
    params = prepare(tmp_path, "binary")
    test = io.read_table(params.paths.test)
    io.write_table(params.paths.test, test.head(0))
    with pytest.raises(InputError, match="benchmark needs at least one row"):
        benchmark.run(params)
    assert not Path(params.paths.benchmark).exists()
