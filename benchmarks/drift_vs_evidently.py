"""Drift computation: this template's `pipeline.drift` against Evidently's DataDriftPreset.

Same reference and current data (default 1M rows x 20 columns, 5 of them drifted), each side run
in its own subprocess so peak memory (ru_maxrss) is its own. Evidently is told to use the same
measures with the same thresholds as the comparison: normalized Wasserstein (0.1) for numeric
columns, PSI (0.2) for categorical ones; the per-column verdicts are compared side by side.

"ours (profile + drift)" includes building the reference profile from the raw reference rows,
as Evidently has to; "ours (drift only)" is what the monitor does in production (the profile is
the small models/reference.json written at training time).

Evidently is a benchmark-only dependency (benchmarks/requirements-bench.txt), never a runtime
one. Run:

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install -r benchmarks/requirements-bench.txt -e .
    /tmp/bench-venv/bin/python benchmarks/drift_vs_evidently.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMERIC = [f"num_{i:02d}" for i in range(14)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(6)]
# Columns that drift in the current data, and how (documented in the output).
DRIFTED = {
    "num_00": "mean +0.5 sd",
    "num_03": "scale x1.6",
    "num_07": "lognormal, median x1.5",
    "cat_01": "one category's weight x4",
    "cat_04": "a new category on 15% of rows",
}
WASSERSTEIN_THRESHOLD = 0.1
PSI_THRESHOLD = 0.2
OUT = Path(__file__).resolve().parent / "out"


def make_data(rows: int, seed: int, *, drifted: bool) -> pd.DataFrame:
    """20 columns of mixed shapes; `drifted` applies DRIFTED to a fresh sample."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        kind = i % 4
        if kind == 0:
            values = rng.normal(50.0 + i, 10.0, rows)
        elif kind == 1:
            values = rng.gamma(2.0, 3.0 + i, rows)
        elif kind == 2:
            values = rng.poisson(3.0 + i, rows).astype(np.float64)  # integer-valued
        else:
            values = rng.lognormal(1.0, 0.6, rows)
        cols[name] = values
    for i, name in enumerate(CATEGORICAL):
        k = 3 + 5 * i  # 3 to 28 categories
        weights = np.linspace(1.0, 3.0, k)
        if drifted and name == "cat_01":
            weights[0] *= 4.0
        labels = np.array([f"{name}_v{j}" for j in range(k)], dtype=object)
        cols[name] = labels[rng.choice(k, rows, p=weights / weights.sum())]
    frame = pd.DataFrame(cols)
    if drifted:
        frame["num_00"] = frame["num_00"] + 0.5 * 10.0
        mean = frame["num_03"].mean()
        frame["num_03"] = mean + (frame["num_03"] - mean) * 1.6
        frame["num_07"] = frame["num_07"] * 1.5
        new = rng.random(rows) < 0.15
        frame.loc[new, "cat_04"] = "cat_04_unseen"
    return frame


# --------------------------------------------------------------------------- workers


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker_ours(data: Path) -> dict[str, Any]:
    from pipeline import drift

    reference = pd.read_parquet(data / "reference.parquet")
    current = pd.read_parquet(data / "current.parquet")
    loaded = _maxrss_mb()
    settings = drift.DriftSettings(
        measures=("psi", "jensen_shannon", "wasserstein"),
        psi_threshold=PSI_THRESHOLD,
        psi_epsilon=1e-4,
        js_threshold=0.1,
        wasserstein_threshold=WASSERSTEIN_THRESHOLD,
        wasserstein_scale="std",
        small_sample_rows=1000,
        alpha=0.01,
    )
    start = time.perf_counter()
    profile = drift.profile_frame(reference, NUMERIC, CATEGORICAL, bins=10, top_categories=50)
    profiled = time.perf_counter()
    report = drift.drift_report(profile, current, settings)
    done = time.perf_counter()
    verdicts = {}
    for name, column in report["features"].items():
        if column["kind"] == "numeric":
            verdicts[name] = {"measure": "wasserstein", "value": column["wasserstein"]}
            verdicts[name]["drifted"] = column["wasserstein"] >= WASSERSTEIN_THRESHOLD
        else:
            verdicts[name] = {"measure": "psi", "value": column["psi"]}
            verdicts[name]["drifted"] = column["psi"] >= PSI_THRESHOLD
    return {
        "seconds_total": done - start,
        "seconds_drift_only": done - profiled,
        "peak_rss_mb": _maxrss_mb(),
        "loaded_rss_mb": loaded,
        "profile_bytes": len(json.dumps(profile)),
        "verdicts": verdicts,
    }


def worker_evidently(data: Path) -> dict[str, Any]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(data / "reference.parquet")
    current = pd.read_parquet(data / "current.parquet")
    loaded = _maxrss_mb()
    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    report = Report(
        [
            DataDriftPreset(
                num_method="wasserstein",
                cat_method="psi",
                num_threshold=WASSERSTEIN_THRESHOLD,
                cat_threshold=PSI_THRESHOLD,
            )
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    done = time.perf_counter()
    verdicts = {}
    for metric in result["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            verdicts[config["column"]] = {
                "measure": config["method"],
                "value": value,
                "drifted": value >= float(config["threshold"]),
            }
    return {
        "seconds_total": done - start,
        "peak_rss_mb": _maxrss_mb(),
        "loaded_rss_mb": loaded,
        "verdicts": verdicts,
    }


# --------------------------------------------------------------------------- driver


def run_worker(which: str, data: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", which, "--data", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{which} worker failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--worker", choices=("ours", "evidently"))
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.worker:
        work = worker_ours if args.worker == "ours" else worker_evidently
        print(json.dumps(work(args.data)))
        return 0

    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        data = Path(tmp)
        make_data(args.rows, 1, drifted=False).to_parquet(data / "reference.parquet")
        make_data(args.rows, 2, drifted=True).to_parquet(data / "current.parquet")
        ours = run_worker("ours", data)
        theirs = run_worker("evidently", data)

    columns = [*NUMERIC, *CATEGORICAL]
    agree = [
        c for c in columns if ours["verdicts"][c]["drifted"] == theirs["verdicts"][c]["drifted"]
    ]
    expected = [c for c in columns if ours["verdicts"][c]["drifted"] == (c in DRIFTED)]
    print(f"rows: {args.rows:,} reference + {args.rows:,} current, {len(columns)} columns")
    print(f"drifted on purpose: {', '.join(f'{c} ({how})' for c, how in DRIFTED.items())}")
    print()
    print(f"{'':28}{'wall s':>10}{'peak RSS MB':>14}{'RSS after load MB':>20}")
    print(
        f"{'ours (profile + drift)':28}{ours['seconds_total']:>10.2f}"
        f"{ours['peak_rss_mb']:>14.0f}{ours['loaded_rss_mb']:>20.0f}"
    )
    print(f"{'ours (drift only)':28}{ours['seconds_drift_only']:>10.2f}")
    print(
        f"{'Evidently DataDriftPreset':28}{theirs['seconds_total']:>10.2f}"
        f"{theirs['peak_rss_mb']:>14.0f}{theirs['loaded_rss_mb']:>20.0f}"
    )
    speedup = theirs["seconds_total"] / ours["seconds_total"]
    print(
        f"speed-up (profile + drift): {speedup:.1f}x; drift only: "
        f"{theirs['seconds_total'] / ours['seconds_drift_only']:.1f}x"
    )
    extra_ours = ours["peak_rss_mb"] - ours["loaded_rss_mb"]
    extra_theirs = theirs["peak_rss_mb"] - theirs["loaded_rss_mb"]
    print(
        f"memory above the loaded data: ours {extra_ours:.0f} MB, Evidently {extra_theirs:.0f} MB"
    )
    print(f"reference profile size: {ours['profile_bytes']:,} bytes of JSON")
    print(
        f"verdict agreement: {len(agree)}/{len(columns)}; "
        f"ours matches the planted drift on {len(expected)}/{len(columns)}"
    )
    print()
    print(f"{'column':10}{'measure':>13}{'ours':>12}{'Evidently':>12}{'ours':>9}{'Evidently':>11}")
    for c in columns:
        o, t = ours["verdicts"][c], theirs["verdicts"][c]
        print(
            f"{c:10}{o['measure']:>13}{o['value']:>12.4f}{t['value']:>12.4f}"
            f"{'drift' if o['drifted'] else '-':>9}{'drift' if t['drifted'] else '-':>11}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "drift_vs_evidently.json").write_text(
        json.dumps({"rows": args.rows, "ours": ours, "evidently": theirs}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
