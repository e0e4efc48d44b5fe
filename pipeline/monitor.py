"""Monitor a production batch: contract, feature/prediction/label drift, performance, verdict.

`assess` is pure (profiles, metrics, batch, scores in; report out); `render_markdown` turns a
report into the text of the job summary and of the retraining pull request; `run_monitor` does
the I/O (policy, reference profile, reference metrics, model, batch). The CLI exits 1 when the
report says `breach`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pipeline import io
from pipeline.config import Params, Task, build, frozen, load_document
from pipeline.drift import DriftSettings, drift_report
from pipeline.errors import InputError, MetricError
from pipeline.metrics import DIRECTION, round_sig

# Hidden first line of the Markdown report: lets a workflow recognise its own text.
MARKER = "<!-- ml-gitops:monitoring-report -->"

Json = dict[str, Any]


# --------------------------------------------------------------------------- policy


@frozen
class Thresholds:
    psi: float
    jensen_shannon: float
    wasserstein: float


@frozen
class DriftPolicy:
    measures: tuple[str, ...]
    thresholds: Thresholds
    epsilon: float
    wasserstein_scale: Literal["std", "iqr"]
    drifted_share: float


@frozen
class SmallSample:
    max_rows: int
    alpha: float


@frozen
class OutputPolicy:
    breach: bool
    thresholds: Thresholds


@frozen
class PerformancePolicy:
    min_labelled_rows: int
    max_relative_drop: Mapping[str, float]


@frozen
class MonitoringPolicy:
    min_rows: int
    drift: DriftPolicy
    small_sample: SmallSample
    prediction: OutputPolicy
    target: OutputPolicy
    performance: PerformancePolicy


def load_monitoring(path: str | os.PathLike[str]) -> MonitoringPolicy:
    """policies/monitoring.yaml, schema-validated, as a frozen MonitoringPolicy."""
    return build(MonitoringPolicy, load_document(os.fspath(path), "monitoring"))


def drift_settings(policy: MonitoringPolicy, thresholds: Thresholds) -> DriftSettings:
    """The drift module's settings for one group of columns (features, prediction, target)."""
    return DriftSettings(
        measures=policy.drift.measures,
        psi_threshold=thresholds.psi,
        psi_epsilon=policy.drift.epsilon,
        js_threshold=thresholds.jensen_shannon,
        wasserstein_threshold=thresholds.wasserstein,
        wasserstein_scale=policy.drift.wasserstein_scale,
        small_sample_rows=policy.small_sample.max_rows,
        alpha=policy.small_sample.alpha,
    )


# --------------------------------------------------------------------------- pure parts


def relative_drop(metric: str, reference: float, current: float) -> float:
    """How much worse `current` is than `reference`, as a fraction of |reference|.

    Positive means worse, in the metric's direction (lower is better for losses and errors).
    """
    worse_by = (
        reference - current
        if DIRECTION.get(metric, "higher") == "higher"
        else (current - reference)
    )
    return worse_by / max(abs(reference), 1e-12)


def performance_check(
    reference: Mapping[str, float],
    current: Mapping[str, float],
    limits: Mapping[str, float],
) -> list[Json]:
    """One row per limited metric both sides have; a NaN drop fails (gates fail closed)."""
    rows = []
    for metric in sorted(limits):
        if metric not in reference or metric not in current:
            continue
        drop = relative_drop(metric, float(reference[metric]), float(current[metric]))
        passed = drop <= limits[metric]  # NaN compares False: not passed
        rows.append(
            {
                "metric": metric,
                "reference": round_sig(reference[metric]),
                "batch": round_sig(current[metric]),
                "relative_drop": round_sig(drop) if math.isfinite(drop) else None,
                "limit": limits[metric],
                "passed": bool(passed),
            }
        )
    return rows


def output_values(scored: pd.DataFrame, classes: Sequence[Any], task: Task) -> pd.Series:
    """The model output the reference profiles: P(positive), predicted value, or label."""
    if task.type == "binary":
        from pipeline.evaluate import positive_class

        positive = positive_class(classes, task.positive_label)
        return pd.Series(scored[f"proba_{positive}"], name="prediction")
    if task.type == "regression":
        return pd.Series(scored["prediction"].astype(float), name="prediction")
    return pd.Series(scored["prediction"], name="prediction")


def assess(
    *,
    source: str,
    batch: pd.DataFrame,
    reference: Mapping[str, Any],
    reference_metrics: Mapping[str, float],
    contract_failures: Sequence[str],
    scored: pd.DataFrame | None,
    batch_metrics: Mapping[str, float] | None,
    labelled_rows: int,
    classes: Sequence[Any],
    policy: MonitoringPolicy,
    task: Task,
) -> Json:
    """The monitoring report (JSON-ready) and its verdict: `breach` and every reason for it."""
    predictions = output_values(scored, classes, task) if scored is not None else None
    drift = drift_report(
        reference,
        batch,
        drift_settings(policy, policy.drift.thresholds),
        predictions=predictions,
        target=task.target,
        prediction_settings=drift_settings(policy, policy.prediction.thresholds),
        target_settings=drift_settings(policy, policy.target.thresholds),
    )
    breaches: list[str] = []
    if contract_failures:
        breaches.append(f"data contract: {len(contract_failures)} failing check(s)")
    share = drift["drifted_share"]
    if not share < policy.drift.drifted_share:
        drifted = [*drift["drifted_features"], *drift["missing_features"]]
        breaches.append(
            f"feature drift: {share:.0%} of features drifted ({', '.join(drifted)}), "
            f"limit {policy.drift.drifted_share:.0%}"
        )
    for name, rule in (("prediction", policy.prediction), ("target", policy.target)):
        column = drift[name]
        if rule.breach and column is not None and column["drifted"]:
            breaches.append(f"{name} drift: {'; '.join(column['reasons'])}")

    performance: Json = {"measured": False, "labelled_rows": labelled_rows, "metrics": []}
    if batch_metrics is None:
        if contract_failures:
            reason = "not scored (the data contract failed)"
        elif labelled_rows == 0:
            reason = "the batch has no labels"
        elif labelled_rows < policy.performance.min_labelled_rows:
            reason = f"{labelled_rows} labelled rows < {policy.performance.min_labelled_rows}"
        else:
            reason = "no metrics given"
        performance["reason"] = reason
    else:
        rows = performance_check(
            reference_metrics, batch_metrics, policy.performance.max_relative_drop
        )
        performance.update(measured=True, metrics=rows)
        for row in rows:
            if not row["passed"]:
                breaches.append(
                    f"performance: {row['metric']} {row['batch']} vs reference "
                    f"{row['reference']} (relative drop {row['relative_drop']} > {row['limit']})"
                )
    return {
        "version": 1,
        "batch": {"source": source, "rows": len(batch)},
        "reference": {"rows": int(reference.get("rows", 0))},
        "contract": {"passed": not contract_failures, "failures": list(contract_failures)},
        "drift": drift,
        "drifted_share_limit": policy.drift.drifted_share,
        "performance": performance,
        "breaches": breaches,
        "breach": bool(breaches),
    }


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _drift_row(name: str, column: Mapping[str, Any]) -> str:
    test = column.get("test")
    p_value = _num(test["p_value"]) if test else "–"
    nulls = column["null_fraction"]
    mark = "**drifted**" if column["drifted"] else "ok"
    return (
        f"| `{name}` | {column['kind']} | {column['method']} | {_num(column['psi'])} | "
        f"{_num(column['jensen_shannon'])} | {_num(column['wasserstein'])} | {p_value} | "
        f"{nulls['reference']:.2%} → {nulls['batch']:.2%} | {mark} |"
    )


_DRIFT_HEADER = (
    "| column | kind | method | PSI | Jensen-Shannon | Wasserstein | test p | nulls | verdict |\n"
    "|---|---|---|---:|---:|---:|---:|---|---|"
)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as GitHub Markdown: verdict, reasons, drift tables, performance, contract."""
    drift = report["drift"]
    verdict = "🚨 breach" if report["breach"] else "✅ no breach"
    lines = [
        MARKER,
        f"## Monitoring report: {verdict}",
        "",
        f"Batch `{report['batch']['source']}`: {report['batch']['rows']} rows, compared with "
        f"the training profile of {report['reference']['rows']} rows.",
        "",
    ]
    if report["breaches"]:
        lines += ["### Why", "", *[f"- {b}" for b in report["breaches"]], ""]
    features = drift["features"]
    lines += [
        f"### Feature drift: {len(drift['drifted_features'])} of "
        f"{len(features) + len(drift['missing_features'])} features drifted "
        f"({drift['drifted_share']:.0%}; breach at {report['drifted_share_limit']:.0%})",
        "",
        _DRIFT_HEADER,
        *[_drift_row(name, col) for name, col in features.items()],
        "",
    ]
    if drift["missing_features"]:
        lines += [f"Missing from the batch: {', '.join(drift['missing_features'])}", ""]
    outputs = [(n, drift[n]) for n in ("prediction", "target") if drift[n] is not None]
    if outputs:
        lines += ["### Prediction and label drift", "", _DRIFT_HEADER]
        lines += [_drift_row(name, col) for name, col in outputs]
        lines.append("")
    perf = report["performance"]
    lines += [f"### Performance ({perf['labelled_rows']} labelled rows)", ""]
    if perf["measured"]:
        lines += [
            "| metric | reference | batch | relative drop | limit | verdict |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in perf["metrics"]:
            mark = "ok" if row["passed"] else "**worse**"
            lines.append(
                f"| {row['metric']} | {_num(row['reference'])} | {_num(row['batch'])} | "
                f"{_num(row['relative_drop'])} | {row['limit']} | {mark} |"
            )
    else:
        lines.append(f"Not measured: {perf['reason']}.")
    lines += ["", "### Data contract", ""]
    contract = report["contract"]
    if contract["passed"]:
        lines.append("Passed.")
    else:
        lines += [f"- {f}" for f in contract["failures"]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- I/O


def latest_batch(directory: str | os.PathLike[str]) -> str:
    """The newest production batch: the last .csv/.parquet file of `directory` by name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such directory of production batches")
    names = sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in io.TABLE_SUFFIXES
    )
    if not names:
        raise InputError(f"{folder}: no .csv or .parquet batch to monitor")
    return str(folder / names[-1])


def run_monitor(params: Params, batch: str | None) -> Json:
    """Load policy, profile, metrics, model and the batch (None: the newest one); assess it."""
    from pipeline.evaluate import task_metrics
    from pipeline.ingest import coerce_types
    from pipeline.model_io import load_model
    from pipeline.predict import score
    from pipeline.validate import contract_failures, load_contract

    policy = load_monitoring(params.paths.monitoring)
    contract = load_contract(params.paths.contract)
    reference = io.read_json(params.paths.reference)
    reference_metrics = io.read_json(params.paths.metrics)
    if not isinstance(reference, dict) or "columns" not in reference:
        raise InputError(f"{params.paths.reference}: not a reference profile (no 'columns')")
    source = batch if batch is not None else latest_batch(params.paths.production)
    frame = io.read_table(source)
    if len(frame) < policy.min_rows:
        raise InputError(
            f"{source}: {len(frame)} rows, the monitoring policy needs at least {policy.min_rows}"
        )
    frame = coerce_types(frame, {name: spec.dtype for name, spec in contract.columns.items()})
    # A production batch may be smaller than a training set: the policy's min_rows applies.
    if dataclasses.is_dataclass(contract) and hasattr(contract, "min_rows"):
        contract = dataclasses.replace(contract, min_rows=policy.min_rows)
    failures = contract_failures(frame, contract, optional=(params.task.target,))
    task = params.task
    scored = None
    batch_metrics = None
    classes: Sequence[Any] = ()
    labelled = frame[task.target].notna() if task.target in frame.columns else None
    labelled_rows = int(labelled.sum()) if labelled is not None else 0
    if not failures:
        model = load_model(params.paths.model)
        classes = list(getattr(model, "classes_", []))
        scored = score(model, frame, task)
        if labelled is not None and labelled_rows >= policy.performance.min_labelled_rows:
            try:
                batch_metrics = task_metrics(
                    frame.loc[labelled, task.target],
                    scored.loc[labelled],
                    classes,
                    task,
                    require_auc=False,
                )
            except MetricError as exc:
                raise InputError(f"{source}: performance cannot be measured: {exc}") from exc
    return assess(
        source=source,
        batch=frame,
        reference=reference,
        reference_metrics=reference_metrics,
        contract_failures=failures,
        scored=scored,
        batch_metrics=batch_metrics,
        labelled_rows=labelled_rows,
        classes=classes,
        policy=policy,
        task=task,
    )


def render(report: Mapping[str, Any], fmt: Literal["md", "json"]) -> str:
    """The report in the requested format (canonical JSON or Markdown)."""
    return io.dumps_json(report) if fmt == "json" else render_markdown(report)
