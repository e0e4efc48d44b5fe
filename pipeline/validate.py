"""Validate stage: check the raw dataset against the data contract (policies/contract.yaml).

`contract_failures` lists EVERY failing check, each naming its column and failure count. Value
checks (ranges, allowed categories, uniqueness) run through pandera with lazy validation; the
checks pandera does not express well (row count, strict column set, dtypes with readable
messages, null fractions, infinities) are done here. On failure the stage raises CheckFailed
(exit 1) and writes nothing, so nothing downstream runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.config import Params, Task, build, load_document
from pipeline.errors import CheckFailed, ConfigError
from pipeline.io import read_table, write_json
from pipeline.leakage import DEFAULT_MAX_SCORE

Dtype = Literal["int", "float", "bool", "string", "category", "datetime"]
NUMERIC: tuple[str, ...] = ("int", "float")
TEXT: tuple[str, ...] = ("string", "category")
EXAMPLES = 3  # failing values quoted per message


# Spelled out rather than @frozen (same thing) so mypy sees the fields and constructor.
@dataclasses.dataclass(frozen=True, slots=True)
class ColumnSpec:
    dtype: Dtype
    max_null_fraction: float
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    unique: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TargetLeak:
    max_score: float = DEFAULT_MAX_SCORE
    allow: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Contract:
    min_rows: int
    strict: bool
    columns: Mapping[str, ColumnSpec]
    target_leak: TargetLeak = TargetLeak()  # the schema's documented default when omitted


# --------------------------------------------------------------------------- loading


def _cross_check(doc: dict[str, Any], file: str) -> list[str]:
    """Rules the schema does not express: which keys fit which dtype, and min <= max."""
    problems = []
    for name, col in doc["columns"].items():
        where = f"{file}: columns.{name}"
        if col["dtype"] not in NUMERIC:
            problems += [
                f"{where}.{key}: only int and float columns take {key} (dtype is {col['dtype']})"
                for key in ("min", "max")
                if key in col
            ]
        if "allowed" in col and col["dtype"] not in TEXT:
            problems.append(
                f"{where}.allowed: only string and category columns take allowed "
                f"(dtype is {col['dtype']})"
            )
        if "min" in col and "max" in col and col["min"] > col["max"]:
            problems.append(f"{where}: min {col['min']} is greater than max {col['max']}")
    return problems


def load_contract(path: str | Path) -> Contract:
    """policies/contract.yaml, schema-validated, as a frozen Contract."""
    doc = load_document(path, "contract")
    problems = _cross_check(doc, str(path))
    if problems:
        raise ConfigError(problems)
    return build(Contract, doc)


def target_spec(task: Task) -> ColumnSpec:
    """The label column's check, derived from task.type (used when the contract omits it)."""
    if task.type == "regression":
        return ColumnSpec(dtype="float", max_null_fraction=0.0)
    if task.type == "binary" and isinstance(task.positive_label, bool | int):
        if task.positive_label in (0, 1):
            return ColumnSpec(dtype="int", min=0.0, max=1.0, max_null_fraction=0.0)
        return ColumnSpec(dtype="int", max_null_fraction=0.0)
    return ColumnSpec(dtype="category", max_null_fraction=0.0)


def with_target(contract: Contract, task: Task) -> Contract:
    """The contract plus a check of task.target, unless the contract already declares it."""
    if task.target in contract.columns:
        return contract
    columns = {**contract.columns, task.target: target_spec(task)}
    return dataclasses.replace(contract, columns=columns)


def count_checks(contract: Contract) -> int:
    """How many checks `contract_failures` runs (reported in validation.json)."""
    total = 1 + int(contract.strict)  # row count, column set
    for spec in contract.columns.values():
        total += 3  # presence, dtype, nulls
        total += sum(x is not None for x in (spec.min, spec.max, spec.allowed))
        total += int(spec.unique) + int(spec.dtype == "float")  # uniqueness, finiteness
    return total


# --------------------------------------------------------------------------- checks


def _examples(values: Iterable[Any]) -> str:
    shown = []
    for value in values:
        text = repr(value.item() if isinstance(value, np.generic) else value)
        if text not in shown:
            shown.append(text)
        if len(shown) == EXAMPLES:
            break
    return ", ".join(shown)


def _kind(series: pd.Series) -> str:
    return str(series.dtype)


def _dtype_problem(name: str, series: pd.Series, dtype: str) -> str | None:
    """A readable message if `series` cannot hold `dtype` values, else None.

    Lenient where a file format forces it: an int column with empty cells is read as float
    (whole numbers pass; the null check reports the gaps), and an int column passes as float.
    """
    values = series.dropna()
    if values.empty:
        return None  # an all-empty column: the null check says what is wrong
    api = pd.api.types
    is_text = api.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype)
    if dtype in NUMERIC:
        if api.is_bool_dtype(series) or not api.is_numeric_dtype(series):
            if is_text:
                bad = values[pd.to_numeric(values.astype(str), errors="coerce").isna()]
                if not bad.empty:
                    return (
                        f"{name}: expected {dtype}, got {_kind(series)} "
                        f"({len(bad)} values are not numbers, e.g. {_examples(bad)})"
                    )
            return f"{name}: expected {dtype}, got {_kind(series)}"
        if dtype == "int" and not api.is_integer_dtype(series):
            finite = values[np.isfinite(values.to_numpy(dtype=float))]
            fractional = finite[finite.to_numpy(dtype=float) % 1 != 0]
            if not fractional.empty:
                return (
                    f"{name}: expected int, got {_kind(series)} ({len(fractional)} values "
                    f"are not whole numbers, e.g. {_examples(fractional)})"
                )
        return None
    if dtype == "bool":
        return None if api.is_bool_dtype(series) else f"{name}: expected bool, got {_kind(series)}"
    if dtype == "datetime":
        if api.is_datetime64_any_dtype(series):
            return None
        if is_text:
            parsed = pd.to_datetime(values.astype(str), errors="coerce", format="ISO8601")
            bad = values[parsed.isna()]
            return (
                f"{name}: expected datetime, got {_kind(series)} ({len(bad)} values are "
                f"not ISO 8601 dates, e.g. {_examples(bad)})"
                if not bad.empty
                else f"{name}: expected datetime, got {_kind(series)}"
            )
        return f"{name}: expected datetime, got {_kind(series)}"
    # string / category: text values only (an object column may hide numbers among strings)
    if isinstance(series.dtype, pd.StringDtype):
        return None  # holds text only, by construction
    if isinstance(series.dtype, pd.CategoricalDtype):
        values = pd.Series(series.cat.categories)
    elif not api.is_object_dtype(series):
        return f"{name}: expected {dtype} (text), got {_kind(series)}"
    not_text = values[~values.map(lambda v: isinstance(v, str))]
    if not not_text.empty:
        return (
            f"{name}: expected {dtype} (text), got {_kind(series)} with {len(not_text)} "
            f"non-text values, e.g. {_examples(not_text)}"
        )
    return None


def _null_problem(name: str, series: pd.Series, limit: float) -> str | None:
    nulls = int(series.isna().sum())
    rows = len(series)
    if nulls == 0 or nulls <= limit * rows:
        return None
    if limit == 0:
        return f"{name}: {nulls} null values (NaN/empty), none allowed (max_null_fraction 0)"
    return (
        f"{name}: {nulls} null values ({nulls / rows:.2%} of {rows} rows), "
        f"above max_null_fraction {limit:g}"
    )


def _pandera_checks(spec: ColumnSpec) -> list[pa.Check]:
    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    if spec.allowed is not None:
        checks.append(pa.Check.isin(list(spec.allowed)))
    return checks


def _describe(name: str, check: str, cases: pd.Series, spec: ColumnSpec) -> str:
    """One pandera failure group -> 'column: N values <what>'."""
    count = len(cases)
    if check == "field_uniqueness":
        distinct = cases.nunique()
        return (
            f"{name}: {count} rows share {distinct} duplicated values, unique required "
            f"(e.g. {_examples(cases)})"
        )
    if check.startswith("greater_than_or_equal_to"):
        return f"{name}: {count} values below min {spec.min:g} (e.g. {_examples(cases)})"
    if check.startswith("less_than_or_equal_to"):
        return f"{name}: {count} values above max {spec.max:g} (e.g. {_examples(cases)})"
    if check.startswith("isin"):
        unseen = sorted({str(c) for c in cases})
        shown = ", ".join(repr(u) for u in unseen[:EXAMPLES])
        more = f" and {len(unseen) - EXAMPLES} more" if len(unseen) > EXAMPLES else ""
        return (
            f"{name}: {count} values in unseen categories {shown}{more} "
            f"(allowed: {', '.join(spec.allowed or ())})"
        )
    return f"{name}: {count} values fail {check} (e.g. {_examples(cases)})"


def _value_failures(frame: pd.DataFrame, specs: Mapping[str, ColumnSpec]) -> list[str]:
    """Range, category and uniqueness checks through pandera, lazily (every failure kept)."""
    columns = {
        name: pa.Column(None, _pandera_checks(spec), unique=spec.unique, nullable=True)
        for name, spec in specs.items()
        if spec.unique or _pandera_checks(spec)
    }
    if not columns:
        return []
    subset = frame[list(columns)].reset_index(drop=True)
    for name in columns:
        if pd.api.types.is_float_dtype(subset[name]):
            # infinities are reported by the finiteness check, not again as out of range
            subset[name] = subset[name].replace([np.inf, -np.inf], np.nan)
    schema = pa.DataFrameSchema(columns, strict=False, coerce=False)
    try:
        schema.validate(subset, lazy=True, inplace=True)  # subset is our own copy already
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        failures = []
        for (name, check), group in cases.groupby(["column", "check"], sort=True):
            failures.append(_describe(str(name), str(check), group["failure_case"], specs[name]))
        return failures
    return []


def contract_failures(
    frame: pd.DataFrame, contract: Contract, *, optional: Iterable[str] = ()
) -> list[str]:
    """Every way `frame` breaks `contract`, one message per failing check (empty: it passes).

    Columns in `optional` may be absent (e.g. the label in a batch to score) and, when present
    but not declared, are not an extra column.
    """
    optional = set(optional)
    failures = []
    rows = len(frame)
    if rows < contract.min_rows:
        hint = " (header only?)" if rows == 0 and len(frame.columns) else ""
        failures.append(
            f"dataset: {rows} rows{hint}, the contract requires at least {contract.min_rows} "
            "(min_rows)"
        )
    declared = contract.columns
    present = [str(c) for c in frame.columns]
    for name in declared:
        if name not in present and name not in optional:
            failures.append(f"{name}: column missing (declared in the contract)")
    if contract.strict:
        for name in present:
            if name not in declared and name not in optional:
                failures.append(f"{name}: column not in the contract (strict: true)")
    duplicated = sorted({c for c in present if present.count(c) > 1})
    failures += [f"{name}: column appears more than once" for name in duplicated]
    if rows == 0:
        return failures  # no values to check; per-column messages would be noise

    checkable: dict[str, ColumnSpec] = {}
    for name, spec in declared.items():
        if name not in present or name in duplicated:
            continue
        series = frame[name]
        problem = _dtype_problem(name, series, spec.dtype)
        if problem:
            failures.append(problem)
        elif series.notna().any():
            checkable[name] = spec
        null = _null_problem(name, series, spec.max_null_fraction)
        if null:
            failures.append(null)
        if problem is None and spec.dtype == "float":
            values = series.to_numpy(dtype=float, na_value=np.nan)
            infinite = int(np.isinf(values).sum())
            if infinite:
                failures.append(f"{name}: {infinite} infinite values (inf/-inf), none allowed")
    failures += _value_failures(frame, checkable)
    # Read column by column in contract order: frame-level first, undeclared columns last.
    order = {name: i for i, name in enumerate(["dataset", *declared])}
    return sorted(failures, key=lambda f: order.get(f.partition(": ")[0], len(order)))


def target_failures(frame: pd.DataFrame, task: Task) -> list[str]:
    """A label nothing can learn from, checked after the contract (pure): no labelled row, a
    classification target with a single class, a constant regression target. Training on it
    would run to the end and write a useless model."""
    if task.target not in frame.columns or len(frame) == 0:
        return []  # the contract already reports a missing column or no rows
    labels = frame[task.target].dropna()
    name = task.target
    if labels.empty:
        return [f"{name}: no labelled rows (every value is null): nothing to learn from"]
    distinct = labels.unique()
    if task.type in ("binary", "multiclass") and len(distinct) < 2:
        return [
            f"{name}: a single class ({_examples(distinct)}) in {len(labels)} labelled rows: "
            f"a {task.type} classifier needs at least two (check the data source and "
            "task.target)"
        ]
    if task.type == "regression" and len(distinct) < 2:
        return [
            f"{name}: constant ({_examples(distinct)}) in {len(labels)} labelled rows: a "
            "regression needs a target that varies (check the data source and task.target)"
        ]
    return []


# --------------------------------------------------------------------------- stage


def feature_columns(params: Params) -> list[str]:
    """The columns the model reads as they are (datetime columns only through their parts)."""
    return [*params.features.numeric, *params.features.categorical]


def strongest(scores: Mapping[str, float]) -> dict[str, Any] | None:
    """The feature that predicts the label best on its own, for validation.json."""
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    if not finite:
        return None
    name = max(finite, key=lambda k: (finite[k], k))
    return {"column": name, "score": round(finite[name], 4)}


def summary(
    frame: pd.DataFrame, contract: Contract, task: Task, scores: Mapping[str, float]
) -> dict[str, Any]:
    """The validation.json written when the contract passes."""
    from pipeline.leakage import METRIC

    return {
        "passed": True,
        "rows": len(frame),
        "columns": len(frame.columns),
        "checks": count_checks(contract) + len(scores),
        "target_leak": {
            "metric": METRIC[task.type],
            "max_score": contract.target_leak.max_score,
            "strongest_single_column": strongest(scores),
        },
    }


def run(params: Params) -> None:
    """Check paths.raw against the contract; write paths.validation only if it passes."""
    contract = with_target(load_contract(params.paths.contract), params.task)
    frame = read_table(params.paths.raw)
    failures = contract_failures(frame, contract) or target_failures(frame, params.task)
    scores: dict[str, float] = {}
    if not failures:  # scores need valid columns and a learnable label
        from pipeline.leakage import leak_failures, single_column_scores

        scores = single_column_scores(frame, params.task, feature_columns(params))
        leak = contract.target_leak
        failures = leak_failures(
            scores, params.task, leak.max_score, leak.allow, params.paths.contract
        )
    if failures:
        raise CheckFailed(
            f"{params.paths.raw}: {len(failures)} data contract check(s) failed "
            f"({params.paths.contract})",
            failures,
        )
    write_json(params.paths.validation, summary(frame, contract, params.task, scores))
