"""Benchmark stage: how long scoring takes, one row and one batch, and the model file's size.

The one output that varies run to run, so it is a stage of its own: its deps are what latency
depends on (the model, the scoring code, the benchmark settings, the test rows it scores), so
DVC re-measures only when one of them changes. A fresh clone's `dvc repro` reproduces the model
byte for byte, finds this stage unchanged and keeps the committed benchmark.json: the first
commit a user makes carries no timing noise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from pipeline import io
from pipeline.config import Benchmark, Params, Task
from pipeline.errors import InputError
from pipeline.metrics import finite, round_sig
from pipeline.model_io import load_model
from pipeline.predict import score

Json = dict[str, Any]


def _ms_percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95])
    return round_sig(p50), round_sig(p95)


def benchmark(
    model: Any, frame: pd.DataFrame, task: Task, cfg: Benchmark, model_size_bytes: int
) -> Json:
    """Latency of predict.score on one row and on a batch (p50/p95 over cfg.repeats), rows/s.

    The one output that varies run to run, hence its own file. Timing uses the same scoring
    path as `predict`, so it measures what serving pays (feature transform included). It runs
    on ONE thread: OpenMP estimators (hist gradient boosting) spin up every core per call,
    which on a shared CI runner made single-row latency ten times slower and far noisier,
    and a one-thread figure compares across machines with different core counts.
    """
    if frame.empty:
        raise InputError("benchmark needs at least one row")
    batch = frame.iloc[np.arange(cfg.batch_rows) % len(frame)]
    rows = [frame.iloc[[i % len(frame)]] for i in range(cfg.repeats)]
    single, batched = [], []
    with threadpool_limits(limits=1):
        score(model, batch, task)  # warm-up: first-call costs are not latency
        for row in rows:
            start = time.perf_counter()
            score(model, row, task)
            single.append(time.perf_counter() - start)
        for _ in range(cfg.repeats):
            start = time.perf_counter()
            score(model, batch, task)
            batched.append(time.perf_counter() - start)
    s50, s95 = _ms_percentiles(single)
    b50, b95 = _ms_percentiles(batched)
    return {
        "latency_ms_single_p50": s50,
        "latency_ms_single_p95": s95,
        "latency_ms_batch_p50": b50,
        "latency_ms_batch_p95": b95,
        "batch_rows": cfg.batch_rows,
        "rows_per_second": finite("rows_per_second", cfg.batch_rows / max(b50 / 1000.0, 1e-9)),
        "model_size_bytes": int(model_size_bytes),
    }


def run(params: Params) -> None:
    """Time predict.score on the test rows (label dropped) and write paths.benchmark."""
    paths, task = params.paths, params.task
    model = load_model(paths.model)
    features = io.read_table(paths.test).drop(columns=[task.target], errors="ignore")
    size = Path(paths.model).stat().st_size
    io.write_json(
        paths.benchmark, benchmark(model, features, task, params.evaluate.benchmark, size)
    )
