"""The pull-request report: the workspace's results against a base revision, as Markdown or JSON.

Pure part (`compare`, `render_markdown`, `to_json`): metrics, params, dvc.lock hashes, slices,
fairness and the policy verdict in, a `Report` and its text out. I/O part (`run`, `resolve_base`,
`read_at`, `lock_status`): git and dvc at the edges. The Markdown carries a stable hidden marker
(MARKER) so CI updates one comment per PR, and stays under GitHub's comment size limit.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Params, parse_yaml
from pipeline.errors import ConfigError, InputError
from pipeline.io import dumps_json, read_json

try:  # the metric directions live with the metric definitions
    from pipeline.metrics import DIRECTION
except ImportError:  # pragma: no cover - only while pipeline/metrics.py is being written
    DIRECTION = {}

MARKER = "<!-- ml-gitops-report -->"
# GitHub rejects comment bodies over 65,536 characters; CML adds its watermark on top.
MAX_COMMENT_CHARS = 65_536
DEFAULT_MAX_CHARS = 60_000
MAX_TABLE_ROWS = 200
# Deltas smaller than this are "unchanged" (evaluate rounds to 6 significant digits).
TOLERANCE = 1e-9

BETTER, WORSE, SAME = "better", "worse", "unchanged"
ADDED, REMOVED, UNKNOWN = "new", "removed", "no direction"
MARKS = {
    BETTER: "🟢 better",
    WORSE: "🔴 worse",
    SAME: "⚪ unchanged",
    ADDED: "🆕 new",
    REMOVED: "➖ removed",
    UNKNOWN: "❔",
}


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class MetricDelta:
    name: str
    base: float | None
    new: float | None
    change: float | None
    relative: float | None  # change / |base|; None when base is 0 or missing
    verdict: str  # better | worse | unchanged | new | removed | no direction


@dataclass(frozen=True)
class ParamChange:
    key: str
    base: Any
    new: Any


@dataclass(frozen=True)
class HashChange:
    path: str
    stage: str
    kind: str  # data | model | output
    base: str | None
    new: str | None


@dataclass(frozen=True)
class SliceDelta:
    column: str
    value: str
    n_base: int | None
    n_new: int | None
    metrics: tuple[MetricDelta, ...]


@dataclass(frozen=True)
class GroupDelta:
    group: str
    n_base: int | None
    n_new: int | None
    metrics: tuple[MetricDelta, ...]


@dataclass(frozen=True)
class Revision:
    rev: str  # full sha, or "workspace"
    label: str  # what the reader sees, e.g. "merge-base of HEAD and origin/main (abc1234)"


@dataclass(frozen=True)
class Inputs:
    """Everything the report compares, for one side (base or workspace); None = absent."""

    metrics: Mapping[str, float] | None = None
    slices: Mapping[str, Any] | None = None
    fairness: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    lock: Mapping[str, Any] | None = None
    curves: Mapping[str, Any] | None = None  # plot stem -> its rows (CURVES only)


@dataclass(frozen=True)
class Curve:
    """A curve of both sides on the same x grid, for a Mermaid line chart."""

    name: str
    title: str
    x: str
    y: str
    base: tuple[float, ...] | None
    new: tuple[float, ...]


# The plot files drawn in the comment: (title, x field, y field, axis labels). GitHub renders
# Mermaid, not Vega, so each curve is resampled on CURVE_POINTS evenly spaced x values.
CURVES: Mapping[str, tuple[str, str, str, str, str]] = {
    "roc": ("ROC curve", "fpr", "tpr", "false positive rate", "true positive rate"),
    "precision_recall": ("Precision-recall", "recall", "precision", "recall", "precision"),
    "calibration": (
        "Calibration",
        "mean_predicted",
        "fraction_positive",
        "predicted probability",
        "observed frequency",
    ),
}
CURVE_POINTS = 21


@dataclass(frozen=True)
class Report:
    base: Revision
    head: Revision
    metrics: tuple[MetricDelta, ...]
    params: tuple[ParamChange, ...]
    hashes: tuple[HashChange, ...]
    slices: tuple[SliceDelta, ...]
    fairness_metrics: tuple[MetricDelta, ...]
    fairness_groups: tuple[GroupDelta, ...]
    sensitive: str | None
    lock_stale: tuple[str, ...] | None  # None = unknown; () = dvc.lock up to date
    policy: Mapping[str, Any] | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    curves: tuple[Curve, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- comparison


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def metric_delta(
    name: str, base: Any, new: Any, direction: Mapping[str, str] = DIRECTION
) -> MetricDelta:
    """One metric's change and whether it is better, by the metric's direction."""
    b, n = _number(base), _number(new)
    if b is None and n is None:
        return MetricDelta(name, None, None, None, None, UNKNOWN)
    if b is None:
        return MetricDelta(name, None, n, None, None, ADDED)
    if n is None:
        return MetricDelta(name, b, None, None, None, REMOVED)
    change = n - b
    relative = change / abs(b) if b != 0 else None
    way = direction.get(name)
    if abs(change) <= TOLERANCE * max(1.0, abs(b)):
        verdict = SAME
    elif way == "higher":
        verdict = BETTER if change > 0 else WORSE
    elif way == "lower":
        verdict = BETTER if change < 0 else WORSE
    else:
        verdict = UNKNOWN
    return MetricDelta(name, b, n, change, relative, verdict)


def compare_metrics(
    base: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    direction: Mapping[str, str] = DIRECTION,
) -> tuple[MetricDelta, ...]:
    """Deltas for every metric on either side: workspace order first, then removed ones."""
    base, new = base or {}, new or {}
    names = [*new, *(k for k in base if k not in new)]
    return tuple(metric_delta(k, base.get(k), new.get(k), direction) for k in names)


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as {"a.b.c": leaf}; lists and scalars are leaves; {} is a leaf too."""
    if isinstance(doc, Mapping) and doc:
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: doc} if prefix else {}


def compare_params(
    base: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[ParamChange, ...]:
    """Every flattened key whose value differs (added and removed keys included), sorted."""
    missing = object()
    b, n = flatten(base or {}), flatten(new or {})
    changes = []
    empty: tuple[Any, ...] = ({}, [])  # a key added or removed empty changes nothing
    for key in sorted(set(b) | set(n)):
        old, cur = b.get(key, missing), n.get(key, missing)
        if (old is missing and cur in empty) or (cur is missing and old in empty):
            continue
        if old != cur or type(old) is not type(cur):
            changes.append(
                ParamChange(key, None if old is missing else old, None if cur is missing else cur)
            )
    return tuple(changes)


def lock_outputs(lock: Mapping[str, Any] | None) -> dict[str, tuple[str, str]]:
    """{path: (stage, md5)} of every stage output recorded in a dvc.lock document."""
    found: dict[str, tuple[str, str]] = {}
    for stage, spec in ((lock or {}).get("stages") or {}).items():
        for out in (spec or {}).get("outs") or []:
            if isinstance(out, Mapping) and "path" in out:
                found[str(out["path"])] = (str(stage), str(out.get("md5") or ""))
    return found


def _kind(path: str, model_path: str) -> str:
    if path == model_path:
        return "model"
    if path.startswith("data/") or path.endswith((".parquet", ".csv", ".pq")):
        return "data"
    return "output"


def compare_locks(
    base: Mapping[str, Any] | None, new: Mapping[str, Any] | None, *, model_path: str
) -> tuple[HashChange, ...]:
    """Outputs of dvc.lock whose hash changed between the two revisions (model first)."""
    b, n = lock_outputs(base), lock_outputs(new)
    changes = []
    for path in sorted(set(b) | set(n)):
        old, cur = b.get(path), n.get(path)
        if (old and old[1]) != (cur and cur[1]):
            stage = (cur or old or ("", ""))[0]
            changes.append(
                HashChange(
                    path,
                    stage,
                    _kind(path, model_path),
                    old[1] if old else None,
                    cur[1] if cur else None,
                )
            )
    order = {"model": 0, "data": 1, "output": 2}
    return tuple(sorted(changes, key=lambda c: (order[c.kind], c.path)))


def _slice_metrics(entry: Any) -> Mapping[str, Any] | None:
    if isinstance(entry, Mapping) and isinstance(entry.get("metrics"), Mapping):
        return entry["metrics"]  # type: ignore[no-any-return]
    return None


def _n(entry: Any) -> int | None:
    if isinstance(entry, Mapping) and isinstance(entry.get("n"), int):
        return int(entry["n"])
    return None


def compare_slices(
    base: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    direction: Mapping[str, str] = DIRECTION,
) -> tuple[SliceDelta, ...]:
    """Per column and value: sizes and metric deltas (metrics absent when a slice is small)."""
    base, new = base or {}, new or {}
    out = []
    for column in [*new, *(c for c in base if c not in new)]:
        b_col, n_col = base.get(column) or {}, new.get(column) or {}
        for value in [*n_col, *(v for v in b_col if v not in n_col)]:
            b_entry, n_entry = b_col.get(value), n_col.get(value)
            metrics = compare_metrics(_slice_metrics(b_entry), _slice_metrics(n_entry), direction)
            out.append(SliceDelta(str(column), str(value), _n(b_entry), _n(n_entry), metrics))
    return tuple(out)


def compare_fairness(
    base: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    direction: Mapping[str, str] = DIRECTION,
) -> tuple[tuple[MetricDelta, ...], tuple[GroupDelta, ...]]:
    """Fairness summary metrics and per-group rates, each with deltas."""
    base, new = base or {}, new or {}
    metrics = compare_metrics(base.get("metrics"), new.get("metrics"), direction)
    b_groups, n_groups = base.get("groups") or {}, new.get("groups") or {}
    groups = []
    for group in [*n_groups, *(g for g in b_groups if g not in n_groups)]:
        b_entry, n_entry = b_groups.get(group) or {}, n_groups.get(group) or {}
        b_rates = {k: v for k, v in b_entry.items() if k != "n"}
        n_rates = {k: v for k, v in n_entry.items() if k != "n"}
        groups.append(
            GroupDelta(
                str(group), _n(b_entry), _n(n_entry), compare_metrics(b_rates, n_rates, direction)
            )
        )
    return metrics, tuple(groups)


def resample(rows: Any, x: str, y: str, points: int = CURVE_POINTS) -> tuple[float, ...] | None:
    """y at `points` evenly spaced x in [0, 1], linearly interpolated between the plot rows
    (sorted by x); None when the rows are not a list of finite (x, y) pairs."""
    if not isinstance(rows, list) or not rows:
        return None
    pairs = []
    for row in rows:
        if not isinstance(row, Mapping):
            return None
        a, b = _number(row.get(x)), _number(row.get(y))
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return None
        pairs.append((a, b))
    import numpy as np  # here: the report's other commands start without it

    pairs.sort()
    grid = np.linspace(0.0, 1.0, points)
    values = np.interp(grid, [a for a, _ in pairs], [b for _, b in pairs])
    return tuple(round(float(v), 4) for v in values)


def compare_curves(
    base: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[Curve, ...]:
    """The CURVES this PR's evaluate wrote, each with the base's when the base has it."""
    out = []
    for name, (title, x, y, x_label, y_label) in CURVES.items():
        mine = resample((new or {}).get(name), x, y)
        if mine is None:
            continue
        theirs = resample((base or {}).get(name), x, y)
        out.append(Curve(name, title, x_label, y_label, theirs, mine))
    return tuple(out)


def compare(
    base: Inputs,
    new: Inputs,
    *,
    base_rev: Revision,
    head_rev: Revision,
    model_path: str,
    lock_stale: Sequence[str] | None,
    policy: Mapping[str, Any] | None,
    direction: Mapping[str, str] = DIRECTION,
) -> Report:
    """The whole comparison (pure)."""
    notes = []
    if new.metrics is None:
        notes.append("The workspace has no metrics file: run `dvc repro` first.")
    if base.metrics is None:
        notes.append("The base revision has no metrics yet: every metric shows as new.")
    fairness_metrics, fairness_groups = compare_fairness(base.fairness, new.fairness, direction)
    sensitive = (new.fairness or base.fairness or {}).get("sensitive")
    return Report(
        base=base_rev,
        head=head_rev,
        metrics=compare_metrics(base.metrics, new.metrics, direction),
        params=compare_params(base.params, new.params),
        hashes=compare_locks(base.lock, new.lock, model_path=model_path),
        slices=compare_slices(base.slices, new.slices, direction),
        fairness_metrics=fairness_metrics,
        fairness_groups=fairness_groups,
        sensitive=str(sensitive) if sensitive is not None else None,
        lock_stale=tuple(lock_stale) if lock_stale is not None else None,
        policy=policy,
        notes=tuple(notes),
        curves=compare_curves(base.curves, new.curves),
    )


# --------------------------------------------------------------------------- formatting


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) >= 100_000 or abs(value) < 0.0001):
        return f"{value:.4g}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def fmt_change(delta: MetricDelta) -> str:
    return (
        "—"
        if delta.change is None
        else ("+" if delta.change >= 0 else "−") + fmt(abs(delta.change))
    )


# Beyond ±1000% a relative change says only that the base was near zero: "+19864181.18%" read
# as news; the absolute change beside it is the figure to read.
MAX_RELATIVE = 10.0


def fmt_relative(delta: MetricDelta) -> str:
    if delta.relative is None:
        return "—"
    sign = "+" if delta.relative >= 0 else "−"
    if abs(delta.relative) >= MAX_RELATIVE:
        return f"{sign}>{MAX_RELATIVE * 100:.0f}%"
    return f"{sign}{abs(delta.relative) * 100:.2f}%"


def _cell(value: Any) -> str:
    """A value safe inside a Markdown table cell (no pipes, no newlines, bounded length)."""
    text = "∅" if value is None else json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")
    return text if len(text) <= 120 else text[:117] + "..."


def _inline(text: str) -> str:
    """One line of our own text (labels we built from git revisions)."""
    return " ".join(text.split())[:200]


def _short(rev: str) -> str:
    return rev[:7] if len(rev) == 40 else rev


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, what: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        lines.append(f"\n_{len(rows) - MAX_TABLE_ROWS} more {what} not shown._")
    return "\n".join(lines)


def _metric_table(deltas: Sequence[MetricDelta], *, what: str = "metrics") -> str:
    rows = [
        [f"`{d.name}`", fmt(d.base), fmt(d.new), fmt_change(d), fmt_relative(d), MARKS[d.verdict]]
        for d in deltas
    ]
    return _table(["Metric", "Base", "New", "Change", "Relative", ""], rows, what=what)


def _compact(delta: MetricDelta) -> str:
    """`new (±change marker)` for the wide slice/group tables."""
    if delta.new is None:
        return "—" if delta.base is None else f"— (was {fmt(delta.base)})"
    if delta.change is None:
        return f"{fmt(delta.new)} 🆕"
    icon = MARKS[delta.verdict].split(" ")[0]
    return f"{fmt(delta.new)} ({fmt_change(delta)} {icon})"


def _label(text: str) -> str:
    """A Mermaid string literal: double quotes only, nothing that can close the fence."""
    return '"' + text.replace('"', "'").replace("`", "'").replace("\n", " ")[:40] + '"'


def mermaid_bars(
    title: str, labels: Sequence[str], base: Sequence[float | None], new: Sequence[float]
) -> str:
    """An xychart-beta: bars are this PR, the line is the base (GitHub renders it natively)."""
    values = [v for v in [*base, *new] if v is not None]
    low = min(0.0, *values)
    high = max(values)
    top = 1.0 if low >= 0 and high <= 1 else high * 1.1 if high > 0 else 1.0
    x_axis = ", ".join(_label(label) for label in labels)
    lines = [
        "```mermaid",
        "xychart-beta",
        f"    title {_label(title)}",
        f"    x-axis [{x_axis}]",
        f"    y-axis {_label('value')} {low:.4g} --> {top:.4g}",
        f"    bar [{', '.join(f'{v:.6g}' for v in new)}]",
    ]
    if all(v is not None for v in base):
        lines.append(f"    line [{', '.join(f'{v:.6g}' for v in base if v is not None)}]")
    lines.append("```")
    return "\n".join(lines)


# Mermaid's xychart has no legend: the colours are fixed here and named in the title.
CURVE_COLOURS = (
    '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "#0969da, #bf8700"}}}}%%'
)


def curve_chart(curve: Curve) -> str:
    """A Mermaid line chart of one curve: blue this PR, yellow the base."""
    series = [curve.new, *([curve.base] if curve.base is not None else [])]
    legend = "blue PR, yellow base" if curve.base is not None else "this PR, no base yet"
    lines = [
        "```mermaid",
        CURVE_COLOURS,
        "xychart-beta",
        f"    title {_label(f'{curve.title}: {legend}')}",
        f"    x-axis {_label(curve.x)} 0 --> 1",
        f"    y-axis {_label(curve.y)} 0 --> 1",
        *(f"    line [{', '.join(f'{v:.4g}' for v in values)}]" for values in series),
        "```",
    ]
    return "\n".join(lines)


def metrics_chart(deltas: Sequence[MetricDelta]) -> str | None:
    """Bar chart of the metrics on a 0..1 scale (the scores), base as a line."""
    shown = [
        d
        for d in deltas
        if d.new is not None and 0 <= d.new <= 1 and (d.base is None or 0 <= d.base <= 1)
    ]
    if not shown:
        shown = [d for d in deltas if d.new is not None]
    if not shown:
        return None
    return mermaid_bars(
        "Metrics: this PR (bars) vs base (line)",
        [d.name for d in shown],
        [d.base for d in shown],
        [d.new for d in shown if d.new is not None],
    )


def slice_chart(slices: Sequence[SliceDelta], column: str, metric: str) -> str | None:
    entries = []
    for s in slices:
        if s.column != column:
            continue
        for d in s.metrics:
            if d.name == metric and d.new is not None:
                entries.append((s.value, d))
    if len(entries) < 2:
        return None
    return mermaid_bars(
        f"{metric} by {column}: this PR (bars) vs base (line)",
        [value for value, _ in entries],
        [d.base for _, d in entries],
        [d.new for _, d in entries if d.new is not None],
    )


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    name: str
    text: str
    priority: int  # lower is dropped first when the body is too long; 100 = never dropped


def _policy_section(policy: Mapping[str, Any] | None) -> str:
    if policy is None:
        return "### Promotion policy\n\nNot evaluated."
    passed = policy.get("passed") is True
    stage = _cell(str(policy.get("stage", "?")))
    head = f"### Promotion policy (`{stage}`): " + ("✅ passed" if passed else "❌ failed")
    rows = [
        [
            _cell(str(rule.get("rule", "?"))),
            "✅ pass" if rule.get("passed") is True else "❌ fail",
            _cell(str(rule.get("reason", ""))),
        ]
        for rule in policy.get("rules") or []
        if isinstance(rule, Mapping)
    ]
    parts = [head]
    holder = policy.get("holder")
    if isinstance(holder, Mapping) and holder:
        who = holder.get("version") or holder.get("rev") or holder.get("ref")
        if who:
            parts.append(f"Compared with the current holder of the stage: `{_cell(str(who))}`.")
    parts.append(_table(["Rule", "Result", "Reason"], rows, what="rules") if rows else "No rules.")
    return "\n\n".join(parts)


def _status_line(report: Report) -> str:
    if report.lock_stale is None:
        lock = "❔ `dvc.lock` status unknown (dvc status failed)"
    elif report.lock_stale:
        stages = ", ".join(f"`{_cell(s)}`" for s in report.lock_stale)
        lock = f"⚠️ `dvc.lock` is stale ({stages}): {STALE_ADVICE}"
    else:
        lock = "✅ `dvc.lock` is up to date with code, params and data"
    if report.policy is None:
        policy = "policy: not evaluated"
    elif report.policy.get("passed") is True:
        policy = "✅ policy passed"
    else:
        policy = "❌ policy failed"
    better = sum(d.verdict == BETTER for d in report.metrics)
    worse = sum(d.verdict == WORSE for d in report.metrics)
    return f"{lock} · {policy} · metrics: {better} better, {worse} worse"


def _params_section(report: Report) -> str:
    if not report.params:
        return "### Parameters changed\n\nNone."
    rows = [[f"`{_cell(c.key)}`", _cell(c.base), _cell(c.new)] for c in report.params]
    return "### Parameters changed\n\n" + _table(["Key", "Base", "New"], rows, what="params")


def _hashes_section(report: Report) -> str:
    """Data and model outputs with their md5s; git-tracked outputs only by name."""
    versioned = [h for h in report.hashes if h.kind != "output"]
    others = [h for h in report.hashes if h.kind == "output"]
    if versioned:
        rows = [
            [
                f"`{_cell(h.path)}`",
                h.kind,
                f"`{_cell(h.stage)}`",
                f"`{h.base[:8]}`" if h.base else "—",
                f"`{h.new[:8]}`" if h.new else "—",
            ]
            for h in versioned
        ]
        text = "### Data and model versions changed\n\n" + _table(
            ["Output", "Kind", "Stage", "Base md5", "New md5"], rows, what="outputs"
        )
    else:
        text = "### Data and model versions changed\n\nNone: same data and model as the base."
    if others:
        listed = ", ".join(f"`{_cell(h.path)}`" for h in others[:20])
        more = f" and {len(others) - 20} more" if len(others) > 20 else ""
        text += f"\n\nGit-tracked outputs also changed: {listed}{more}."
    return text


def _wide_table(
    first: str, keyed: Sequence[tuple[str, int | None, int | None, Sequence[MetricDelta]]]
) -> str:
    """One row per slice value / group: n, then `new (change marker)` per metric."""
    names = list(dict.fromkeys(d.name for *_, deltas in keyed for d in deltas))
    rows = []
    for key, n_base, n_new, deltas in keyed:
        by_name = {d.name: d for d in deltas}
        rows.append(
            [f"`{_cell(key)}`", fmt_n(n_base, n_new)]
            + [_compact(by_name[n]) if n in by_name else "—" for n in names]
        )
    return _table([first, "n", *(f"`{n}`" for n in names)], rows, what="rows")


def _fairness_section(report: Report) -> str:
    who = f" over `{_cell(report.sensitive)}`" if report.sensitive else ""
    parts = [f"### Fairness{who}", _metric_table(report.fairness_metrics)]
    if report.fairness_groups:
        groups = [(g.group, g.n_base, g.n_new, g.metrics) for g in report.fairness_groups]
        parts.append(
            "<details><summary>Per group</summary>\n\n"
            + _wide_table("Group", groups)
            + "\n\n</details>"
        )
    return "\n\n".join(parts)


def _slices_section(report: Report) -> str:
    parts = ["### Slices"]
    for column in dict.fromkeys(s.column for s in report.slices):
        col = [s for s in report.slices if s.column == column]
        worse = sum(d.verdict == WORSE for s in col for d in s.metrics)
        parts.append(
            f"<details><summary>By <code>{_cell(column)}</code> "
            f"({len(col)} values, {worse} worse)</summary>\n\n"
            + _wide_table("Value", [(s.value, s.n_base, s.n_new, s.metrics) for s in col])
            + "\n\n</details>"
        )
    return "\n\n".join(parts)


def sections(report: Report) -> list[Section]:
    """The report's Markdown sections in document order, each with a drop priority."""
    header = (
        f"{MARKER}\n## 📊 Model report\n\n"
        f"**{_inline(report.head.label)}** compared with **{_inline(report.base.label)}**.\n\n"
        + _status_line(report)
        + "".join(f"\n\n> {note}" for note in report.notes)
    )
    out = [
        Section("header", header, 100),
        Section("metrics", "### Metrics\n\n" + _metric_table(report.metrics), 100),
    ]
    chart = metrics_chart(report.metrics)
    if chart:
        out.append(Section("metrics chart", chart, 20))
    if report.curves:
        charts = "\n\n".join(curve_chart(c) for c in report.curves)
        out.append(Section("curves", "### Curves\n\n" + charts, 15))
    out.append(Section("policy", _policy_section(report.policy), 100))
    out.append(Section("params", _params_section(report), 90))
    out.append(Section("hashes", _hashes_section(report), 80))
    if report.fairness_metrics or report.fairness_groups:
        out.append(Section("fairness", _fairness_section(report), 60))
    if report.slices:
        out.append(Section("slices", _slices_section(report), 40))
        headline = next((d.name for d in report.metrics if d.new is not None), None)
        chart = slice_chart(report.slices, report.slices[0].column, headline) if headline else None
        if chart:
            out.append(Section("slices chart", chart, 10))
    return out


def fmt_n(base: int | None, new: int | None) -> str:
    if base is None or base == new:
        return "—" if new is None else str(new)
    return f"{new if new is not None else '—'} (was {base})"


def truncation_note(dropped: Sequence[str], cut: bool) -> str:
    what = ", ".join(dropped) if dropped else "the end of the report"
    tail = " and the text was cut" if cut and dropped else ""
    return (
        f"\n\n> ✂️ Truncated to fit a GitHub comment: omitted {what}{tail}. "
        "The full report is in the workflow run's job summary and `pr-report` artifact."
    )


def render_markdown(report: Report, *, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The report as GitHub Markdown, at most `max_chars` characters, marker first."""
    secs = sections(report)
    body = "\n\n".join(s.text for s in secs) + "\n"
    if len(body) <= max_chars:
        return body
    dropped: list[str] = []
    # Drop whole sections, least important first, until it fits with the note.
    for victim in sorted((s for s in secs if s.priority < 100), key=lambda s: s.priority):
        secs = [s for s in secs if s is not victim]
        dropped.append(victim.name)
        body = "\n\n".join(s.text for s in secs)
        if len(body) + len(truncation_note(dropped, False)) + 1 <= max_chars:
            return body + truncation_note(dropped, False) + "\n"
    note = truncation_note(dropped, True)
    keep = max(0, max_chars - len(note) - 1)
    text = body[:keep]
    if text.count("```") % 2:  # never leave a code fence open
        text = text[: text.rfind("```")]
    return text + note + "\n"


def to_json(report: Report) -> str:
    """The report as canonical JSON (same content as the Markdown, machine-readable)."""
    doc = asdict(report)
    doc["marker"] = MARKER
    doc["lock_up_to_date"] = None if report.lock_stale is None else not report.lock_stale
    return dumps_json(doc)


STALE_ADVICE = (
    "the committed lock was not made from this code, params and data; update the branch from "
    "its base, run `make run` and commit `dvc.lock` and `models/`"
)


def gate(doc: Mapping[str, Any]) -> list[str]:
    """Why a PR's required check fails, from its JSON report (pure); [] when it passes.

    Fails closed: a policy that was not evaluated, or a lock status that is unknown, fails.
    """
    reasons = []
    policy = doc.get("policy")
    if not isinstance(policy, Mapping):
        reasons.append("the staging policy was not evaluated (see the policy step's log)")
    elif policy.get("passed") is not True:
        failed = [
            str(rule.get("name") or rule.get("rule") or "?")
            for rule in policy.get("rules") or []
            if isinstance(rule, Mapping) and rule.get("passed") is False
        ]
        reasons.append("the staging policy failed" + (f" ({', '.join(failed)})" if failed else ""))
    stale = doc.get("lock_stale")
    if doc.get("lock_up_to_date") is not True:
        if isinstance(stale, list | tuple) and stale:
            reasons.append(f"dvc.lock is stale ({', '.join(map(str, stale))}): {STALE_ADVICE}")
        else:
            reasons.append("the dvc.lock status is unknown (`dvc status` failed)")
    return reasons


def gate_markdown(reasons: Sequence[str]) -> str:
    """The required check's verdict as a Markdown section (pure)."""
    if not reasons:
        return "### Required check: ✅ passed\n\nThe policy passed and `dvc.lock` is committed.\n"
    items = "\n".join(f"- {reason}" for reason in reasons)
    return f"### Required check: ❌ failed\n\n{items}\n"


# --------------------------------------------------------------------------- I/O edges

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=False)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(["git", *args], cwd)


def _verify(cwd: Path, rev: str) -> str | None:
    proc = _git(cwd, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    return proc.stdout.strip() if proc.returncode == 0 else None


def _is_shallow(cwd: Path) -> bool:
    return _git(cwd, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def resolve_base(
    cwd: Path, base: str | None, *, remote: str = "origin", target: str = "main"
) -> Revision:
    """The explicit `base`, or the merge-base of HEAD with <remote>/<target>.

    In a shallow clone (actions/checkout's default) the target branch and enough history are
    fetched first: --deepen in steps, then --unshallow as a last resort.
    """
    if base:
        sha = _verify(cwd, base)
        if sha is None:
            _git(cwd, "fetch", "--no-tags", "--quiet", remote, base)
            sha = _verify(cwd, base) or _verify(cwd, "FETCH_HEAD")
        if sha is None:
            raise InputError(f"base revision {base!r} not found")
        return Revision(sha, f"`{base}` ({_short(sha)})")
    ref = f"{remote}/{target}"
    if _verify(cwd, ref) is None:
        refspec = f"+refs/heads/{target}:refs/remotes/{remote}/{target}"
        depth = ["--depth=50"] if _is_shallow(cwd) else []
        _git(cwd, "fetch", "--no-tags", "--quiet", *depth, remote, refspec)
        if _verify(cwd, ref) is None:
            raise InputError(f"target branch {ref} not found (is the remote {remote!r} set?)")
    for attempt in range(6):
        proc = _git(cwd, "merge-base", "HEAD", ref)
        if proc.returncode == 0:
            sha = proc.stdout.strip()
            return Revision(sha, f"merge-base with `{ref}` ({_short(sha)})")
        if not _is_shallow(cwd):
            break
        if attempt < 5:
            _git(cwd, "fetch", "--no-tags", "--quiet", f"--deepen={100 * 2**attempt}", remote)
        else:
            _git(cwd, "fetch", "--no-tags", "--quiet", "--unshallow", remote)
    raise InputError(f"HEAD and {ref} have no common ancestor: pass --base REV")


def read_at(cwd: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision (`git show rev:path`), or None when it does not exist."""
    proc = _git(cwd, "show", f"{rev}:{path}")
    return proc.stdout if proc.returncode == 0 else None


def _json_or_none(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what}: not valid JSON ({exc})") from exc


def _yaml_or_none(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return parse_yaml(text, what)
    except ConfigError as exc:
        raise InputError(str(exc)) from exc


def read_inputs_at(cwd: Path, rev: str, params: Params, params_file: str) -> Inputs:
    p = params.paths
    curves = {
        stem: _json_or_none(read_at(cwd, rev, f"{p.plots}/{stem}.json"), f"{rev}:{stem}")
        for stem in CURVES
    }
    return Inputs(
        curves=curves,
        metrics=_json_or_none(read_at(cwd, rev, p.metrics), f"{rev}:{p.metrics}"),
        slices=_json_or_none(read_at(cwd, rev, p.slices), f"{rev}:{p.slices}"),
        fairness=_json_or_none(read_at(cwd, rev, p.fairness), f"{rev}:{p.fairness}"),
        params=_yaml_or_none(read_at(cwd, rev, params_file), f"{rev}:{params_file}"),
        lock=_yaml_or_none(read_at(cwd, rev, "dvc.lock"), f"{rev}:dvc.lock"),
    )


def _read_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def read_workspace(cwd: Path, params: Params, params_file: str) -> Inputs:
    p = params.paths
    curves = {
        stem: _json_or_none(_read_file(cwd / p.plots / f"{stem}.json"), f"{p.plots}/{stem}.json")
        for stem in CURVES
    }
    return Inputs(
        curves=curves,
        metrics=_json_or_none(_read_file(cwd / p.metrics), p.metrics),
        slices=_json_or_none(_read_file(cwd / p.slices), p.slices),
        fairness=_json_or_none(_read_file(cwd / p.fairness), p.fairness),
        params=_yaml_or_none(_read_file(cwd / params_file), params_file),
        lock=_yaml_or_none(_read_file(cwd / "dvc.lock"), "dvc.lock"),
    )


def _lock_inputs(entry: Any) -> Any:
    """What a dvc.lock stage entry says the stage ran on: its command, deps and params."""
    if not isinstance(entry, Mapping):
        return entry
    return {key: entry.get(key) for key in ("cmd", "deps", "params")}


def uncommitted_stages(
    committed: Mapping[str, Any] | None, workspace: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """Stages whose inputs in the workspace's dvc.lock (command, deps, params) are not the
    committed ones (pure).

    After `dvc repro` this is what `dvc status` cannot see: the committed dvc.lock was not made
    from the code, params and data it sits beside. Outputs are left out on purpose: a lock
    made on another platform may pin other bytes for the same inputs (floating point), and
    the report shows output hashes anyway.
    """
    before = (committed or {}).get("stages") or {}
    after = (workspace or {}).get("stages") or {}
    return tuple(
        sorted(
            name
            for name in {*before, *after}
            if _lock_inputs(before.get(name)) != _lock_inputs(after.get(name))
        )
    )


def lock_status(cwd: Path) -> tuple[str, ...] | None:
    """Stages `dvc status --json` reports as changed; () when up to date; None if it failed."""
    # The interpreter running this code has dvc installed: no reliance on PATH.
    proc = _run([sys.executable, "-m", "dvc", "status", "--json"], cwd)
    if proc.returncode != 0:
        return None
    try:
        status = json.loads(proc.stdout.strip() or "{}")
    except json.JSONDecodeError:
        return None
    return tuple(sorted(str(k) for k in status)) if isinstance(status, dict) else None


def stale_stages(cwd: Path) -> tuple[str, ...] | None:
    """Stages out of date: changed for `dvc status`, or whose inputs in the workspace's
    dvc.lock differ from the committed one's (HEAD). None when `dvc status` failed."""
    changed = lock_status(cwd)
    if changed is None:
        return None
    committed = _yaml_or_none(read_at(cwd, "HEAD", "dvc.lock"), "HEAD:dvc.lock")
    workspace = _yaml_or_none(_read_file(cwd / "dvc.lock"), "dvc.lock")
    return tuple(sorted({*changed, *uncommitted_stages(committed, workspace)}))


def load_verdict(path: str | Path) -> dict[str, Any]:
    """A `policy check --format json` verdict; its shape is checked, not trusted."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("passed"), bool):
        raise InputError(f"{path}: not a policy verdict (expected an object with 'passed')")
    if not isinstance(doc.get("rules", []), list):
        raise InputError(f"{path}: 'rules' must be a list")
    return doc


def build_report(
    params: Params,
    *,
    params_file: str = "params.yaml",
    base: str | None = None,
    target: str = "main",
    policy_file: str | None = None,
    cwd: Path | None = None,
) -> Report:
    """Read both sides (git and the workspace), ask dvc whether dvc.lock is current, compare."""
    root = Path(cwd or Path.cwd())
    base_rev = resolve_base(root, base, target=target)
    head = _verify(root, "HEAD")
    head_rev = Revision(
        "workspace", f"this PR (workspace at {_short(head)})" if head else "workspace"
    )
    return compare(
        read_inputs_at(root, base_rev.rev, params, params_file),
        read_workspace(root, params, params_file),
        base_rev=base_rev,
        head_rev=head_rev,
        model_path=params.paths.model,
        lock_stale=stale_stages(root),
        policy=load_verdict(policy_file) if policy_file else None,
    )


def run(
    params: Params,
    *,
    params_file: str = "params.yaml",
    base: str | None = None,
    target: str = "main",
    policy_file: str | None = None,
    output_format: str = "md",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The report text, Markdown or JSON (the CLI prints or writes it)."""
    report = build_report(
        params, params_file=params_file, base=base, target=target, policy_file=policy_file
    )
    if output_format == "json":
        return to_json(report)
    return render_markdown(report, max_chars=max_chars)
