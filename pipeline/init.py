"""The `init` command: point the template at your own table and infer its configuration.

`init` reads a CSV/Parquet file (in paths.source_dir, or a URL whose sha256 it pins; any other
file is refused before anything is read or written), infers the task from the target column,
a role for every other column (numeric, categorical, datetime feature; or left out:
identifier, constant, free text), and a data contract from the values it saw. It edits
params.yaml in place (ruamel round trip: every comment and every key it does not need to change
stays as it was), rewrites the data contract, and explains each decision.

It never overwrites a hand edit without --force. After each write it records what it wrote in
a small state file beside params.yaml (STATE_FILE: the values of the params keys it manages and
the hash of the contract's bytes). On the next run a managed key whose current value differs
from that record, or a contract whose bytes differ, is a hand edit, and init refuses (exit 2)
if it would change it. Without a state file init has never run: the template ships with the
built-in generator as its source, so params that still name the generator describe the demo
data and are replaced; any other source means the files were set up by hand, and init refuses.
The inference functions are pure (frames in, plain values out); `initialize` does the I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io as stdio
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from pipeline import io
from pipeline.config import (
    Params,
    Task,
    build,
    copy_instruction,
    cross_check_params,
    outside_the_repository,
    parse_yaml,
    source_escape,
    tracked_source,
    violations,
)
from pipeline.errors import ConfigError, InputError

TASKS = ("binary", "multiclass", "regression")

# A target with more distinct values than this (or as many as MULTICLASS_MAX_SHARE of the rows)
# is a quantity, not a set of classes: an integer target like that is a regression.
MULTICLASS_MAX_CLASSES = 20
MULTICLASS_MAX_SHARE = 0.05
# Text columns with at most this many distinct values are categorical features (allowed values
# listed in the contract); more, but few per row (CATEGORICAL_MAX_SHARE), still categorical
# (rare values grouped by features.max_categories); more than that is free text, left out.
CATEGORICAL_MAX_LEVELS = 50
CATEGORICAL_MAX_SHARE = 0.05
# Integer columns with at most this many distinct values are codes (categorical), not amounts.
INT_CATEGORICAL_MAX_LEVELS = 10
# Categorical features with 2..SLICE_MAX_LEVELS values become evaluate.slices (at most MAX_SLICES).
SLICE_MAX_LEVELS = 10
MAX_SLICES = 3
# A sensitive attribute is a grouping: more groups than this cannot be measured per group.
SENSITIVE_MAX_GROUPS = 20
# Fewer rows than this cannot be split into a training and a test set that hold every class.
MIN_ROWS = 20
# Contract margins: numeric ranges widen by RANGE_MARGIN of the observed span on each side (never
# below 0 for a column that had no negative value); a column with empty values may have up to
# NULL_MARGIN_FACTOR times the observed share, at least NULL_MARGIN_MIN more; min_rows is
# MIN_ROWS_SHARE of the rows seen, capped at MIN_ROWS_CAP so a production batch can pass too.
RANGE_MARGIN = 0.10
NULL_MARGIN_FACTOR = 2.0
NULL_MARGIN_MIN = 0.02
MIN_ROWS_SHARE = 0.5
MIN_ROWS_CAP = 1000
# Lower bounds are rounded down and upper bounds up to this many significant digits.
SIGNIFICANT_DIGITS = 3

# Beside params.yaml; committed, so a colleague's init sees the same record.
STATE_FILE = ".init-state.json"
STATE_VERSION = 1
# The params.yaml keys init writes; anything else in the file is left untouched.
MANAGED_KEYS = (
    "ingest.source",
    "ingest.source_sha256",
    "task.type",
    "task.target",
    "task.positive_label",
    "task.sensitive",
    "split.stratify",
    "features.numeric",
    "features.categorical",
    "features.datetime",
    "train.model",
    "train.kwargs",
    "evaluate.slices",
)
# Managed keys a params.yaml written before they existed may lack: absent reads as null, and
# init adds one (after the named sibling key) only when it sets a value.
OPTIONAL_KEYS: Mapping[str, str] = {"ingest.source_sha256": "source"}
GENERATOR_SOURCE = "generator"
# Longer lists of column names are written one per line in params.yaml.
FLOW_MAX_CHARS = 80

# Identifier-like names: id, uuid, *_id, *-id, "customer id", userId, "Unnamed: 0" (a saved index).
_ID_NAME = re.compile(r"^(id|uuid|guid|index|unnamed: ?\d+)$|[_\- ](id|uuid|guid)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z0-9](Id|ID|Uuid|UUID)$")
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
_POSITIVE_NAMES = ("1", "true", "yes", "y", "positive", "pos")


# --------------------------------------------------------------------------- inferred objects


@dataclasses.dataclass(frozen=True, slots=True)
class TaskChoice:
    type: str
    reason: str
    positive_label: Any
    positive_reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class ColumnRole:
    """A column's role (a feature kind, or why it is left out) and the reason shown to the user."""

    name: str
    role: (
        # numeric | categorical | datetime | target | sensitive | identifier | constant | text
        # | leak (predicts the target alone: left out, see mark_leaks)
        str
    )
    dtype: str  # contract dtype: int | float | bool | string | category | datetime
    reason: str

    @property
    def is_feature(self) -> bool:
        return self.role in {"numeric", "categorical", "datetime"}


@dataclasses.dataclass(frozen=True, slots=True)
class Inference:
    """Everything init derived from the table, before it touches any file."""

    rows: int
    task: TaskChoice
    roles: tuple[ColumnRole, ...]
    datetime_parts: Mapping[str, tuple[str, ...]]
    slices: tuple[str, ...]
    slices_reason: str
    stratify: bool
    stratify_reason: str
    contract: Mapping[str, Any]
    contract_notes: Mapping[str, Mapping[str, str]]
    sensitive: str | None


# --------------------------------------------------------------------------- small helpers


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (YAML and JSON know only the latter)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _is_bool(series: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(series.dtype)


def _is_int(series: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(series.dtype) and not _is_bool(series)


def _is_float(series: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(series.dtype)


def _is_datetime(series: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(series.dtype)


def _is_text(series: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(series.dtype)
        or pd.api.types.is_object_dtype(series.dtype)
        or isinstance(series.dtype, pd.CategoricalDtype)
    ) and not _is_bool(series)


def _is_numeric(series: pd.Series) -> bool:
    return _is_int(series) or _is_float(series)


def _integral(values: pd.Series) -> bool:
    """Every non-null value is a whole number (e.g. an integer column read with empty cells)."""
    present = values.dropna().to_numpy(dtype=np.float64)
    return bool(np.all(np.isfinite(present)) and np.all(present == np.round(present)))


def _parses_as_timestamps(series: pd.Series) -> bool:
    """Text whose every non-null value is an ISO 8601 date or timestamp (what ingest can parse)."""
    present = series.dropna().astype(str)
    if present.empty or not bool(present.str.match(_ISO_DATE).all()):
        return False
    parsed = pd.to_datetime(present, errors="coerce", format="ISO8601")
    return not bool(parsed.isna().any())


def _looks_like_id(name: str) -> bool:
    return bool(_ID_NAME.search(name) or _CAMEL_ID.search(name))


def _consecutive(series: pd.Series) -> bool:
    """Unique integers forming a run (0..n-1, 1..n): a row number."""
    values = np.sort(series.dropna().to_numpy(dtype=np.int64))
    return len(values) > 1 and bool(np.all(np.diff(values) == 1))


def _show(values: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def _sorted_values(series: pd.Series) -> list[Any]:
    values = [_plain(v) for v in series.dropna().unique()]
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


# --------------------------------------------------------------------------- task


def infer_task(target: pd.Series, override: str | None = None) -> TaskChoice:
    """binary (2 values), multiclass (few whole/text values) or regression (many numbers).

    `override` forces a task, but only one the values can support; InputError says why not.
    """
    name = str(target.name)
    if override is not None and override not in TASKS:
        raise InputError(f"--task: unknown task {override!r} (choose from {', '.join(TASKS)})")
    empty = int(target.isna().sum())
    if empty:
        raise InputError(
            f"target column {name!r} has {empty} empty value(s); drop or fill those rows first"
        )
    classes = _sorted_values(target)
    n = len(classes)
    if n < 2:
        raise InputError(
            f"target column {name!r} has a single value ({_show(classes)}): nothing to learn"
        )
    numeric = _is_numeric(target)
    whole = numeric and _integral(target)
    few = n <= MULTICLASS_MAX_CLASSES and n < MULTICLASS_MAX_SHARE * len(target)

    if override is None:
        if n == 2:
            kind, reason = "binary", f"2 distinct values: {_show(classes)}"
        elif not numeric:
            kind, reason = "multiclass", f"{n} distinct text values: {_show(classes)}"
        elif whole and few:
            kind = "multiclass"
            reason = f"{n} distinct whole numbers in {len(target)} rows: {_show(classes)}"
        else:
            kind = "regression"
            reason = f"numeric with {n} distinct values" + ("" if whole else ", not all whole")
    else:
        kind, reason = override, "set by --task"
        if kind == "binary" and n != 2:
            raise InputError(
                f"--task binary: target column {name!r} has {n} distinct values, not 2"
            )
        if kind == "multiclass" and n < 3:
            raise InputError(
                f"--task multiclass: target column {name!r} has {n} distinct values; "
                "use binary for two classes"
            )
        if kind == "multiclass" and numeric and not whole:
            raise InputError(
                f"--task multiclass: target column {name!r} holds fractional numbers; "
                "classes must be text or whole numbers"
            )
        if kind == "regression" and not numeric:
            raise InputError(
                f"--task regression: target column {name!r} is not numeric ({target.dtype})"
            )

    if kind != "binary":
        return TaskChoice(kind, reason, None, "only binary tasks have a positive class")
    positive, why = infer_positive_label(classes, target)
    return TaskChoice(kind, reason, positive, why)


def infer_positive_label(classes: Sequence[Any], target: pd.Series) -> tuple[Any, str]:
    """The class that means "yes" (1, True, "yes", ...); else the rarer class (the event)."""
    for value in classes:
        if isinstance(value, bool | np.bool_):
            if value:
                return True, "True is the positive class"
            continue
        if str(value).strip().lower() in _POSITIVE_NAMES:
            label = int(value) if isinstance(value, float) and value == 1 else value
            return label, f"{value!r} names the positive outcome"
    counts = target.value_counts()
    rarest = min(classes, key=lambda c: (int(counts[c]), str(c)))
    share = counts[rarest] / len(target)
    return rarest, f"the rarer class ({share:.0%} of rows), usually the event of interest"


# --------------------------------------------------------------------------- columns


def contract_dtype(series: pd.Series, role: str) -> str:
    """The contract's name for a column's type (what ingest coerces CSV text into)."""
    if _is_bool(series):
        return "bool"
    if _is_int(series):
        return "int"
    if _is_float(series):
        return "float"
    if _is_datetime(series) or role == "datetime":
        return "datetime"
    if role in {"categorical", "sensitive"} or (role == "target" and _is_text(series)):
        return "category"
    return "string"


def infer_role(series: pd.Series) -> tuple[str, str]:
    """(role, reason) of one non-target column; pure, from its values and its name."""
    name = str(series.name)
    rows = len(series)
    present = series.dropna()
    distinct = int(present.nunique())
    if distinct == 0:
        return "constant", "every value is empty: left out"
    if distinct == 1:
        return "constant", f"a single value ({_plain(present.iloc[0])!r}): left out"
    unique_per_row = distinct == rows
    if _is_bool(series):
        return "categorical", "true/false"
    if _is_datetime(series):
        return "datetime", f"timestamps ({series.dtype})"
    if _is_int(series) or (_is_text(series) and not _is_numeric(series)):
        if _looks_like_id(name) and (_is_int(series) or distinct > CATEGORICAL_MAX_LEVELS):
            return "identifier", "name looks like an identifier: left out (kept in the contract)"
        if _is_text(series) and unique_per_row:
            return "identifier", "a different text value on every row: left out"
        if _is_int(series) and unique_per_row and _consecutive(series):
            return "identifier", "consecutive whole numbers, one per row (a row number): left out"
    if _is_float(series):
        return "numeric", f"numbers, {distinct} distinct values"
    if _is_int(series):
        if distinct <= INT_CATEGORICAL_MAX_LEVELS:
            return "categorical", f"whole numbers with only {distinct} values: treated as codes"
        return "numeric", f"whole numbers, {distinct} distinct values"
    if _is_text(series):
        if _parses_as_timestamps(series):
            return "datetime", "text that parses as ISO 8601 timestamps"
        if distinct <= CATEGORICAL_MAX_LEVELS:
            return "categorical", f"text with {distinct} values ({_show(_sorted_values(series))})"
        if distinct <= CATEGORICAL_MAX_SHARE * rows:
            return "categorical", (
                f"text with {distinct} values (rare ones grouped by features.max_categories)"
            )
        return "text", f"free text ({distinct} distinct values in {rows} rows): left out"
    return "text", f"unsupported type {series.dtype}: left out"


def infer_roles(frame: pd.DataFrame, target: str, sensitive: str | None) -> list[ColumnRole]:
    """A role, contract dtype and reason for every column, in table order."""
    roles = []
    for column in frame.columns:
        series = frame[column]
        name = str(column)
        if name == target:
            role, reason = "target", "the label (--target)"
        elif name == sensitive:
            role, reason = (
                "sensitive",
                "sensitive attribute (--sensitive): measured, never a feature",
            )
        else:
            role, reason = infer_role(series)
        roles.append(ColumnRole(name, role, contract_dtype(series, role), reason))
    return roles


def datetime_parts(series: pd.Series) -> tuple[tuple[str, ...], str]:
    """Month and day of week always; the hour too when the times of day vary."""
    stamps = series if _is_datetime(series) else pd.to_datetime(series, format="ISO8601")
    present = stamps.dropna()
    parts: tuple[str, ...] = ("month", "dayofweek")
    if int(present.dt.hour.nunique()) > 1:
        return (*parts, "hour"), "month, day of week and hour (times of day vary)"
    return parts, "month and day of week (no time of day)"


def choose_slices(frame: pd.DataFrame, roles: Sequence[ColumnRole]) -> tuple[tuple[str, ...], str]:
    """Low-cardinality categorical features, in table order: per-slice metrics stay readable."""
    chosen = []
    for role in roles:
        if role.role != "categorical":
            continue
        levels = int(frame[role.name].nunique())
        if 2 <= levels <= SLICE_MAX_LEVELS:
            chosen.append(role.name)
        if len(chosen) == MAX_SLICES:
            break
    if not chosen:
        return (), "no categorical feature with 2 to 10 values"
    return tuple(chosen), f"categorical features with 2 to {SLICE_MAX_LEVELS} values"


def choose_stratify(target: pd.Series, task: str) -> tuple[bool, str]:
    if task == "regression":
        return False, "regression: a continuous target cannot be stratified"
    smallest = int(target.value_counts().min())
    if smallest < 2:
        return False, "a class has a single row, which stratification cannot split"
    return True, "keeps class proportions equal in the training and test sets"


# --------------------------------------------------------------------------- contract


def _round_out(value: float, down: bool) -> float:
    """Round down (lower bound) or up (upper bound) to SIGNIFICANT_DIGITS; never inward."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    exponent = math.floor(math.log10(abs(value))) - (SIGNIFICANT_DIGITS - 1)
    step = 10.0**exponent
    scaled = value / step
    whole = math.floor(scaled) if down else math.ceil(scaled)
    decimals = max(0, -exponent)
    out = round(whole * step, decimals)
    if down and out > value:
        out = round(out - step, decimals)
    if not down and out < value:
        out = round(out + step, decimals)
    return float(out)


def numeric_bounds(
    series: pd.Series, *, margin: float = RANGE_MARGIN
) -> tuple[Any, Any, dict[str, str]]:
    """(min, max, comment per bound): the seen range widened by `margin` of its span each side.

    A column that had no negative value keeps 0 as its floor (amounts, counts, ratios).
    """
    present = series.dropna().to_numpy(dtype=np.float64)
    low, high = float(present.min()), float(present.max())
    span = high - low if high > low else max(abs(high), 1.0)
    lower, upper = low - margin * span, high + margin * span
    notes = {
        "min": f"smallest seen {_fmt(low)}, minus {margin:.0%} of the seen range",
        "max": f"largest seen {_fmt(high)}, plus {margin:.0%} of the seen range",
    }
    if low >= 0 > lower:
        lower = 0.0
        notes["min"] = f"smallest seen {_fmt(low)}; no negative value seen, so not below 0"
    if _is_int(series):
        return math.floor(lower), math.ceil(upper), notes
    return _round_out(lower, down=True), _round_out(upper, down=False), notes


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def null_allowance(series: pd.Series) -> tuple[float, str]:
    """Max null fraction: 0 if never empty, else generous headroom over the observed share."""
    observed = float(series.isna().mean())
    if observed == 0:
        return 0.0, "never empty"
    allowed = max(observed * NULL_MARGIN_FACTOR, observed + NULL_MARGIN_MIN)
    allowed = min(1.0, math.ceil(allowed * 100 - 1e-9) / 100)
    return allowed, f"{observed:.1%} empty"


def column_contract(series: pd.Series, role: ColumnRole) -> tuple[dict[str, Any], dict[str, str]]:
    """One column's contract entry and a comment per key ("" for the column) saying why."""
    spec: dict[str, Any] = {"dtype": role.dtype}
    label = {
        "numeric": "numeric feature",
        "categorical": "categorical feature",
        "datetime": "timestamp feature",
        "target": "the label (task.target)",
        "sensitive": "sensitive attribute (task.sensitive): measured for fairness, never a feature",
        "identifier": "identifier: not a feature",
        "constant": "constant: not a feature",
        "text": "free text: not a feature",
        "leak": "suspected target leak: left out of the features",
    }[role.role]
    notes = {"": label, "dtype": f"read as {series.dtype}"}
    distinct = int(series.nunique())
    if role.dtype in {"int", "float"} and distinct > 0:
        if role.role == "target" and role.dtype == "int" and distinct <= MULTICLASS_MAX_CLASSES:
            values = _sorted_values(series)
            spec["min"], spec["max"] = int(values[0]), int(values[-1])
            notes["min"] = notes["max"] = f"classes seen: {_show(values)}"
        else:
            spec["min"], spec["max"], bound_notes = numeric_bounds(series)
            notes.update(bound_notes)
    elif role.dtype == "category" and distinct > 0:
        if distinct <= CATEGORICAL_MAX_LEVELS:
            spec["allowed"] = [str(v) for v in _sorted_values(series)]
            notes["allowed"] = "the values seen; any other value fails the contract"
        else:
            notes["dtype"] += f" ({distinct} values: too many to list as allowed)"
    if role.role == "identifier" and distinct == len(series):
        spec["unique"] = True
        notes["unique"] = "unique per row in the data; a repeat means duplicated rows"
    spec["max_null_fraction"], notes["max_null_fraction"] = null_allowance(series)
    return spec, notes


def infer_contract(
    frame: pd.DataFrame, roles: Sequence[ColumnRole]
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The data contract (min_rows, strict, one entry per column) and its comments per key."""
    rows = len(frame)
    columns: dict[str, Any] = {}
    notes: dict[str, dict[str, str]] = {}
    for role in roles:
        columns[role.name], notes[role.name] = column_contract(frame[role.name], role)
    min_rows = max(1, min(int(rows * MIN_ROWS_SHARE), MIN_ROWS_CAP))
    from pipeline.leakage import DEFAULT_MAX_SCORE

    leak = {"max_score": DEFAULT_MAX_SCORE, "allow": []}
    return {"min_rows": min_rows, "strict": True, "target_leak": leak, "columns": columns}, notes


def mark_leaks(frame: pd.DataFrame, roles: Sequence[ColumnRole], task: Task) -> list[ColumnRole]:
    """Numeric and categorical features that predict the target ALONE as well as validate's
    bound would refuse become role "leak": left out, with the score in the reason."""
    from pipeline.leakage import DEFAULT_MAX_SCORE, METRIC, single_column_scores

    candidates = [r.name for r in roles if r.role in {"numeric", "categorical"}]
    scores = single_column_scores(frame, task, candidates)
    out = []
    for role in roles:
        score = scores.get(role.name, math.nan)
        if math.isfinite(score) and score >= DEFAULT_MAX_SCORE:
            reason = (
                f"alone predicts {task.target!r} with {METRIC[task.type]} {score:.3f}: a target "
                "leak (the label under another name, or known only after the outcome)? Left "
                "out; if it is known when predicting, add it to params.yaml features and to "
                "target_leak.allow in policies/contract.yaml"
            )
            role = dataclasses.replace(role, role="leak", reason=reason)
        out.append(role)
    return out


# --------------------------------------------------------------------------- whole inference


def infer(
    frame: pd.DataFrame,
    target: str,
    *,
    task: str | None = None,
    sensitive: str | None = None,
) -> Inference:
    """Everything init decides about a table; InputError when the table cannot be used."""
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InputError("the table has no rows or no columns")
    names = [str(c) for c in frame.columns]
    if target not in names:
        raise InputError(
            f"--target: column {target!r} is not in the table (columns: {_show(names, 12)})"
        )
    if sensitive is not None:
        if sensitive == target:
            raise InputError("--sensitive: the sensitive attribute cannot be the target")
        if sensitive not in names:
            raise InputError(
                f"--sensitive: column {sensitive!r} is not in the table "
                f"(columns: {_show(names, 12)})"
            )
        groups = int(frame[sensitive].nunique())
        if groups > SENSITIVE_MAX_GROUPS:
            raise InputError(
                f"--sensitive: column {sensitive!r} has {groups} distinct values; fairness is "
                f"measured per group (at most {SENSITIVE_MAX_GROUPS}): bin it into a new column"
            )
    if len(frame) < MIN_ROWS:
        raise InputError(
            f"the table has {len(frame)} rows; at least {MIN_ROWS} are needed to hold out "
            "a test set"
        )
    frame = frame.set_axis(names, axis=1)
    choice = infer_task(frame[target], task)
    roles = infer_roles(frame, target, sensitive)
    labelled = build(
        Task,
        {
            "type": choice.type,
            "target": target,
            "positive_label": choice.positive_label,
            "sensitive": sensitive,
        },
    )
    roles = mark_leaks(frame, roles, labelled)
    if not any(r.is_feature for r in roles):
        raise InputError(
            "no usable feature column: every column besides the target is an identifier, "
            "constant, free text or the sensitive attribute"
        )
    parts = {r.name: datetime_parts(frame[r.name]) for r in roles if r.role == "datetime"}
    roles = [
        dataclasses.replace(r, reason=f"{r.reason}; {parts[r.name][1]}") if r.name in parts else r
        for r in roles
    ]
    slices, slices_reason = choose_slices(frame, roles)
    stratify, stratify_reason = choose_stratify(frame[target], choice.type)
    contract, notes = infer_contract(frame, roles)
    return Inference(
        rows=len(frame),
        task=choice,
        roles=tuple(roles),
        datetime_parts={name: p for name, (p, _) in parts.items()},
        slices=slices,
        slices_reason=slices_reason,
        stratify=stratify,
        stratify_reason=stratify_reason,
        contract=contract,
        contract_notes=notes,
        sensitive=sensitive,
    )


def choose_model(
    model: str, kwargs: Mapping[str, Any], task: str
) -> tuple[str, dict[str, Any], str]:
    """Keep the configured estimator when it supports the task; else gradient boosting."""
    from pipeline.train import ESTIMATORS, task_kind

    kind = task_kind(task)
    if (model, kind) in ESTIMATORS:
        return model, dict(kwargs), f"{model} supports {kind}: kept with its settings"
    fallback = "hist_gradient_boosting"
    accepted = ESTIMATORS[(fallback, kind)]().get_params(deep=False)
    kept = {k: v for k, v in kwargs.items() if k in accepted}
    return fallback, kept, f"{model} does not support {kind}: switched to {fallback}"


def managed_values(
    inference: Inference,
    source: str,
    target: str,
    current: Mapping[str, Any],
    pin: str | None = None,
) -> tuple[dict[str, Any], str]:
    """New values of MANAGED_KEYS (plain data) and the reason for the model choice; `pin` is
    the sha256 of a URL source's bytes (None for a file, which DVC hashes itself)."""
    features = [r for r in inference.roles if r.is_feature]
    model, kwargs, model_reason = choose_model(
        current["train.model"], current["train.kwargs"], inference.task.type
    )
    values = {
        "ingest.source": source,
        "ingest.source_sha256": pin,
        "task.type": inference.task.type,
        "task.target": target,
        "task.positive_label": inference.task.positive_label,
        "task.sensitive": inference.sensitive,
        "split.stratify": inference.stratify,
        "features.numeric": [r.name for r in features if r.role == "numeric"],
        "features.categorical": [r.name for r in features if r.role == "categorical"],
        "features.datetime": {k: list(v) for k, v in inference.datetime_parts.items()},
        "train.model": model,
        "train.kwargs": kwargs,
        "evaluate.slices": list(inference.slices),
    }
    return values, model_reason


# --------------------------------------------------------------------------- params.yaml edits


def _yaml() -> YAML:
    yaml = YAML()  # round trip: comments, key order, flow styles and quotes survive
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def get_key(doc: Mapping[str, Any], dotted: str) -> Any:
    node: Any = doc
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError([f"params.yaml: {dotted}: missing"])
        node = node[part]
    if isinstance(node, Mapping) and last not in node and dotted in OPTIONAL_KEYS:
        return None
    if not isinstance(node, Mapping) or last not in node:
        raise ConfigError([f"params.yaml: {dotted}: missing"])
    return node[last]


def _to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def current_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The managed keys' values in a parsed params document, as plain data."""
    return {key: _to_plain(get_key(doc, key)) for key in MANAGED_KEYS}


def _flow_seq(items: Sequence[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _set(parent: CommentedMap, key: str, value: Any) -> None:
    """Replace one value in place, keeping its comment and the node's style where it has one."""
    old = parent[key]
    if isinstance(value, list) and isinstance(old, CommentedSeq):
        old[:] = value
        if len(json.dumps(value)) > FLOW_MAX_CHARS:
            old.fa.set_block_style()  # one column per line: readable, and diffs stay small
        else:
            old.fa.set_flow_style()
    elif isinstance(value, dict) and isinstance(old, CommentedMap):
        trailing = old.ca.items.get(next(reversed(old)), None) if old else None
        for k in list(old):
            del old[k]
        for k, v in value.items():
            old[k] = _flow_seq(v) if isinstance(v, list) else v
        if not old:
            old.fa.set_flow_style()
        elif trailing is not None:  # e.g. the blank line that separated the block from the next
            old.ca.items[next(reversed(old))] = trailing
    elif isinstance(value, list):
        parent[key] = seq = _flow_seq(value)
        if len(json.dumps(value)) > FLOW_MAX_CHARS:
            seq.fa.set_block_style()
    else:
        parent[key] = value
    _reset_comment(parent, key)


def _reset_comment(parent: CommentedMap, key: str) -> None:
    """One space before a value's comment, not the alignment of the old (longer) value."""
    comment = parent.ca.items.get(key)
    if comment and comment[2] is not None and str(comment[2].value).startswith("#"):
        comment[2].column = 0


def edit_params(text: str, values: Mapping[str, Any]) -> str:
    """params.yaml text with `values` (dotted key -> plain value) set; everything else kept."""
    yaml = _yaml()
    doc = yaml.load(text)
    for dotted, value in values.items():
        *parents, last = dotted.split(".")
        node = doc
        for part in parents:
            node = node[part]
        if last not in node:  # an optional key (OPTIONAL_KEYS) this params.yaml predates
            if value is not None:
                node.insert(list(node).index(OPTIONAL_KEYS[dotted]) + 1, last, value)
        elif _to_plain(node[last]) != value:
            _set(node, last, value)
    out = stdio.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


# --------------------------------------------------------------------------- dvc.yaml plots

PLOTS_DIR = "${paths.plots}"  # how dvc.yaml names the plot folder (DVC templating)


def _plot_entry(stem: str, spec: Mapping[str, str]) -> list[str]:
    return [f"  - {PLOTS_DIR}/{stem}.json:", *(f"      {k}: {v}" for k, v in spec.items())]


def edit_dvc_plots(text: str, task: str) -> str:
    """dvc.yaml text whose top-level `plots:` declares exactly the plot files evaluate writes
    for `task` (in evaluate.PLOTS order, drawn as evaluate.PLOT_SPECS says), ahead of any plot
    of your own, which is kept as written. Edited as text, so every other line (comments
    included) stays byte for byte; a dvc.yaml without a top-level `plots:` is left alone."""
    from pipeline.evaluate import ALL_PLOTS, PLOT_SPECS, PLOTS

    lines = text.splitlines()
    if "plots:" not in lines:
        return text
    first = lines.index("plots:") + 1
    last = first  # the block ends at the next line that starts in column 0
    while last < len(lines) and (not lines[last] or lines[last][0] == " "):
        last += 1
    while last > first and not lines[last - 1].strip():
        last -= 1  # blank lines before the next section stay where they are
    entries: list[list[str]] = []
    for line in lines[first:last]:
        if line.startswith("  - ") or not entries:
            entries.append([line])
        else:
            entries[-1].append(line)
    ours = {f"  - {PLOTS_DIR}/{stem}.json:" for stem in ALL_PLOTS}
    own = [entry for entry in entries if entry[0] not in ours]
    wanted = [_plot_entry(stem, PLOT_SPECS[stem]) for stem in PLOTS[task]]
    block = [line for entry in [*wanted, *own] for line in entry]
    edited = [*lines[:first], *block, *lines[last:]]
    return "\n".join(edited) + ("\n" if text.endswith("\n") else "")


# --------------------------------------------------------------------------- promotion policy

# What evaluate writes per task: metrics.json / slices.json metrics and fairness.json "metrics".
TASK_METRICS: Mapping[str, tuple[str, ...]] = {
    "binary": ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"),
    "multiclass": ("accuracy", "roc_auc", "f1", "precision", "recall", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
FAIRNESS_METRICS: Mapping[str, tuple[str, ...]] = {
    "binary": (
        "demographic_parity_difference",
        "demographic_parity_ratio",
        "equalized_odds_difference",
        "accuracy_difference",
    ),
    "multiclass": ("accuracy_difference",),
    "regression": ("mae_difference", "rmse_difference"),
}
# Scale-free rules for a regression project whose policy only named classification metrics.
REGRESSION_ABSOLUTE = ("r2", 0.0, "better than always predicting the mean")
REGRESSION_VS_HOLDER = ("rmse", 0.05, "at most 5% worse than the version in the stage")


def adapt_promotion(
    text: str, task: str, slices: Sequence[str], sensitive: str | None
) -> tuple[str, list[str]]:
    """The promotion policy with every rule the new project could never satisfy removed.

    Rules fail closed on a missing value, so a rule on a metric this task does not produce, on
    a slice column that is no longer sliced, or on fairness without a sensitive attribute would
    refuse every model. Such rules are dropped (and regression gets scale-free replacements when
    nothing is left); rules that still apply are kept as written, comments included.
    """
    yaml = _yaml()
    doc = yaml.load(text)
    notes: list[str] = []
    produced = set(TASK_METRICS[task])
    fair = set(FAIRNESS_METRICS[task]) if sensitive is not None else set()
    every_fair_metric = {m for names in FAIRNESS_METRICS.values() for m in names}
    unknown = {m for names in TASK_METRICS.values() for m in names} - produced

    def keep(seq: CommentedSeq, ok: Any, where: str) -> None:
        dropped = [i for i, rule in enumerate(seq) if not ok(rule)]
        notes.extend(f"{where}: dropped the rule on {seq[i]['metric']}" for i in dropped)
        for i in reversed(dropped):
            del seq[i]
        if not seq:
            seq.fa.set_flow_style()

    for stage, policy in (doc.get("stages") or {}).items():
        where = f"stages.{stage}"
        keep(policy["absolute"], lambda r: r["metric"] not in unknown, f"{where}.absolute")
        keep(policy["vs_holder"], lambda r: r["metric"] not in unknown, f"{where}.vs_holder")
        if task == "regression" and not policy["absolute"]:
            metric, bound, why = REGRESSION_ABSOLUTE
            rule = CommentedMap([("metric", metric), ("min", bound)])
            rule.yaml_add_eol_comment("added by init: regression metric", "metric", column=0)
            rule.yaml_add_eol_comment(why, "min", column=0)
            policy["absolute"].append(rule)
            policy["absolute"].fa.set_block_style()
            notes.append(f"{where}.absolute: added {metric} >= {bound} ({why})")
        if task == "regression" and not policy["vs_holder"]:
            metric, tolerance, why = REGRESSION_VS_HOLDER
            rule = CommentedMap([("metric", metric), ("rel_tolerance", tolerance)])
            rule.yaml_add_eol_comment("added by init: regression metric", "metric", column=0)
            rule.yaml_add_eol_comment(why, "rel_tolerance", column=0)
            policy["vs_holder"].append(rule)
            policy["vs_holder"].fa.set_block_style()
            notes.append(f"{where}.vs_holder: added {metric} within {tolerance:.0%} ({why})")
        rules = policy["slices"]["rules"]
        gone = []
        for i, rule in enumerate(rules):
            kept = [c for c in rule["columns"] if c in slices]
            columns = ", ".join(rule["columns"])
            if rule["metric"] in unknown or not kept:
                notes.append(f"{where}.slices: dropped the rule on {rule['metric']} by {columns}")
                gone.append(i)
            elif kept != list(rule["columns"]):
                _set(rule, "columns", kept)
                notes.append(
                    f"{where}.slices: the rule on {rule['metric']} now covers {', '.join(kept)}"
                )
        for i in reversed(gone):
            del rules[i]
        if not rules:
            rules.fa.set_flow_style()
        _reset_comment(policy["slices"], "rules")
        for key in ("absolute", "vs_holder", "fairness"):
            _reset_comment(policy, key)
        keep(
            policy["fairness"],
            lambda r: r["metric"] in fair or r["metric"] not in every_fair_metric,
            f"{where}.fairness",
        )
    out = stdio.StringIO()
    yaml.dump(doc, out)
    return out.getvalue(), notes


# --------------------------------------------------------------------------- contract text


def render_contract(
    contract: Mapping[str, Any],
    notes: Mapping[str, Mapping[str, str]],
    *,
    source: str,
    rows: int,
) -> str:
    """policies/contract.yaml with a comment on every key saying where its value came from."""
    root = CommentedMap()
    root["min_rows"] = contract["min_rows"]
    root["strict"] = contract["strict"]
    leak = CommentedMap(max_score=contract["target_leak"]["max_score"])
    leak["allow"] = _flow_seq(contract["target_leak"]["allow"])
    leak.yaml_add_eol_comment("a feature scoring this ALONE fails validate", "max_score", column=0)
    leak.yaml_add_eol_comment("features known when predicting that may score this", "allow", 0)
    root["target_leak"] = leak
    root.yaml_add_eol_comment(
        f"fewer rows fail the contract ({MIN_ROWS_SHARE:.0%} of the {rows} rows init saw, "
        f"at most {MIN_ROWS_CAP})",
        "min_rows",
        column=0,
    )
    root.yaml_add_eol_comment(
        "a column not listed here (other than the label) is an error", "strict", column=0
    )
    root.yaml_add_eol_comment("single-column target-leak check of validate", "target_leak", 0)
    columns = CommentedMap()
    for name, spec in contract["columns"].items():
        entry = CommentedMap()
        for key, value in spec.items():
            entry[key] = _flow_seq(value) if isinstance(value, list) else value
            if notes[name].get(key):
                entry.yaml_add_eol_comment(notes[name][key], key, column=0)
        columns[name] = entry
        columns.yaml_add_eol_comment(notes[name][""], name, column=0)
    root["columns"] = columns
    root.yaml_set_comment_before_after_key("columns", before="\n")
    root.yaml_add_eol_comment(
        "column name -> its checks, inferred from the data", "columns", column=0
    )
    out = stdio.StringIO()
    _yaml().dump(root, out)
    body = "\n".join(_one_space_comment(line) for line in out.getvalue().splitlines())
    header = (
        "# Data contract: what the raw dataset must look like before anything trains. The\n"
        "# validate stage checks it and lists every failing check; the monitor checks production\n"
        "# batches against it. Schema: pipeline/schemas/contract.schema.json.\n"
        f"# Written by `python -m pipeline init` from {source} ({rows} rows): each value is what\n"
        "# init saw, widened by a margin. Tighten what you know (ranges, categories) by hand;\n"
        "# init will not overwrite your edits without --force.\n\n"
    )
    return header + body + "\n"


def _one_space_comment(line: str) -> str:
    """ruamel sometimes pads an end-of-line comment with two spaces; the template uses one."""
    match = re.match(r"^([^#'\"]*\S)\s{2,}(# .*)$", line)
    return f"{match.group(1)} {match.group(2)}" if match else line


# --------------------------------------------------------------------------- summary


def render_summary(
    inference: Inference,
    *,
    data: str,
    changes: Mapping[str, tuple[Any, Any]],
    model_reason: str,
    policy_notes: Mapping[str, Sequence[str]],
    written: Sequence[str],
    dry_run: bool,
) -> str:
    """What init inferred and why, as a table a person reads in a terminal."""
    task = inference.task
    lines = [f"init: {data}: {inference.rows} rows, {len(inference.roles)} columns", ""]
    lines.append(f"task: {task.type} ({task.reason})")
    if task.type == "binary":
        lines.append(f"positive_label: {task.positive_label!r} ({task.positive_reason})")
    lines.append(f"split.stratify: {str(inference.stratify).lower()} ({inference.stratify_reason})")
    slices = ", ".join(inference.slices) or "none"
    lines.append(f"evaluate.slices: {slices} ({inference.slices_reason})")
    if inference.sensitive is None:
        lines.append(
            "task.sensitive: null (no --sensitive given: fairness metrics are not computed)"
        )
    lines.append(f"train.model: {model_reason}")
    lines.append("")
    width = max([len("column"), *(len(r.name) for r in inference.roles)])
    lines.append(f"{'column':<{width}}  {'role':<11}  {'dtype':<8}  reason")
    lines.append(f"{'-' * width}  {'-' * 11}  {'-' * 8}  {'-' * 6}")
    for r in inference.roles:
        lines.append(f"{r.name:<{width}}  {r.role:<11}  {r.dtype:<8}  {r.reason}")
    lines.append("")
    if changes:
        lines.append("params.yaml changes:")
        for key, (old, new) in changes.items():
            lines.append(f"  {key}: {_brief(old)} -> {_brief(new)}")
    else:
        lines.append("params.yaml: already up to date")
    for path, notes in policy_notes.items():
        if notes:
            lines.append(f"{path}: rules on outputs this project lacks (they would fail closed):")
            lines.extend(f"  {note}" for note in notes)
    lines.append("")
    if dry_run:
        lines.append("dry run: nothing written")
    else:
        lines.append(f"wrote: {', '.join(written) if written else 'nothing (no change)'}")
        lines.append("next: review the files, then run `dvc repro`")
    return "\n".join(lines) + "\n"


def _brief(value: Any, limit: int = 70) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- edit detection


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def state_document(values: Mapping[str, Any], contract_path: str, contract_bytes: bytes) -> Any:
    """What init records after writing: the managed values and the contract's hash."""
    return {
        "version": STATE_VERSION,
        "params": dict(values),
        "contract": {"path": contract_path, "sha256": sha256(contract_bytes)},
        "note": "written by `python -m pipeline init` to detect hand edits; commit it",
    }


def hand_edits(
    state: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    new: Mapping[str, Any],
    contract_path: str,
    contract_now: bytes | None,
    contract_new: bytes,
) -> list[str]:
    """Managed keys / files that a person edited since init last wrote them and that init would
    now change. Without a record, only the template's untouched generator setup is replaceable."""
    would_change = [k for k in MANAGED_KEYS if current[k] != new[k]]
    contract_changes = contract_now is not None and contract_now != contract_new
    if state is None:
        if current["ingest.source"] == GENERATOR_SOURCE:
            return []
        edited_keys = would_change
        contract_edited = contract_changes
    else:
        # a state file older than an optional key recorded it as absent, i.e. null
        recorded = dict.fromkeys(OPTIONAL_KEYS) | dict(state.get("params", {}))
        edited_keys = [k for k in would_change if k not in recorded or recorded[k] != current[k]]
        record = state.get("contract", {})
        contract_edited = (
            contract_changes
            and contract_now is not None
            and (
                record.get("path") != contract_path or record.get("sha256") != sha256(contract_now)
            )
        )
    found = [f"params.yaml ({', '.join(edited_keys)})"] if edited_keys else []
    if contract_edited:
        found.append(contract_path)
    return found


def self_check(frame: pd.DataFrame, contract: Mapping[str, Any]) -> list[str]:
    """Failures of the inferred contract on the table it came from, read the way ingest reads
    it: a contract that rejects its own data would make the first `dvc repro` fail."""
    from pipeline.ingest import coerce_types
    from pipeline.validate import Contract, contract_failures

    typed = build(Contract, contract)
    dtypes = {name: spec.dtype for name, spec in typed.columns.items()}
    return contract_failures(coerce_types(frame, dtypes), typed)


# --------------------------------------------------------------------------- I/O


@dataclasses.dataclass(frozen=True, slots=True)
class InitResult:
    text: str
    written: tuple[str, ...]


def resolve_source(data: str, root: Path, source_dir: str) -> str:
    """The value for ingest.source: a URL as given, or the file's path relative to the
    repository, which must be in paths.source_dir (the folder DVC hashes for the ingest stage),
    also with symlinks followed. InputError saying what to do otherwise; nothing is read."""
    if io.is_url(data):
        return data
    name = Path(data).name
    absolute = Path(os.path.normpath(Path(data).absolute()))
    try:
        rel = absolute.relative_to(os.path.normpath(root.absolute())).as_posix()
    except ValueError:
        rel = ""  # outside the repository: not under source_dir either
    if not tracked_source(rel, source_dir):
        then = f"rerun init with --data {source_dir}/{name}"
        raise InputError(f"--data {copy_instruction(data, source_dir, then)}")
    escape = source_escape(root, rel, source_dir)
    if escape:
        raise InputError(f"--data {escape}")
    return rel


def read_data(data: str) -> tuple[pd.DataFrame, str | None]:
    """The table, and for a URL the sha256 of the very bytes parsed (the pin ingest checks)."""
    if not io.is_url(data):
        return io.read_table(data), None
    payload = io.download(data)
    return io.read_table_bytes(data, payload), sha256(payload)


def _read_state(path: Path) -> Mapping[str, Any] | None:
    if not path.is_file():
        return None
    state = io.read_json(path)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise InputError(f"{path}: not an init state file (version {STATE_VERSION}); delete it")
    return state


def initialize(
    data: str,
    target: str,
    *,
    params_path: str = "params.yaml",
    task: str | None = None,
    sensitive: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> InitResult:
    """Read the table, infer, check for hand edits, then write params, contract and state.

    Every check runs before the first write, so a refused or failed init writes nothing.
    """
    params_file = Path(params_path)
    root = params_file.parent
    try:
        params_text = params_file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError([f"{params_path}: file not found"]) from exc
    plain = parse_yaml(params_text, params_path)
    current = current_values(plain)
    source = resolve_source(data, root, str(get_key(plain, "paths.source_dir")))
    frame, pin = read_data(data)
    inference = infer(frame, target, task=task, sensitive=sensitive)
    new, model_reason = managed_values(inference, source, target, current, pin)

    new_params = edit_params(params_text, new)
    new_doc = parse_yaml(new_params, params_path)
    problems = violations(new_doc, "params", params_path) + cross_check_params(new_doc, params_path)
    contract_rel = str(get_key(new_doc, "paths.contract"))
    contract_file = root / contract_rel
    contract_text = render_contract(
        inference.contract, inference.contract_notes, source=source, rows=inference.rows
    )
    problems += violations(parse_yaml(contract_text, contract_rel), "contract", contract_rel)
    promotion_rel = str(get_key(new_doc, "paths.promotion"))
    promotion_file = root / promotion_rel
    promotion_now = promotion_file.read_text("utf-8") if promotion_file.is_file() else None
    promotion_new: str | None = promotion_now
    promotion_notes: list[str] = []
    if promotion_now is not None:
        promotion_new, promotion_notes = adapt_promotion(
            promotion_now, new["task.type"], new["evaluate.slices"], new["task.sensitive"]
        )
        problems += violations(parse_yaml(promotion_new, promotion_rel), "promotion", promotion_rel)
    dag_file = root / "dvc.yaml"
    dag_now = dag_file.read_text("utf-8") if dag_file.is_file() else None
    dag_new = edit_dvc_plots(dag_now, new["task.type"]) if dag_now is not None else None
    if not problems:  # the files init writes must really be in the repository too
        problems += outside_the_repository(build(Params, new_doc), root, params_path)
    if problems:
        raise ConfigError(problems)
    failures = self_check(frame, inference.contract)
    if failures:  # a bug in the inference, never the user's fault: say so and write nothing
        raise InputError(
            "init inferred a contract its own data fails (please report this): "
            + "; ".join(failures)
        )

    contract_bytes = contract_text.encode("utf-8")
    contract_now = contract_file.read_bytes() if contract_file.is_file() else None
    state_file = root / STATE_FILE
    edits = hand_edits(
        _read_state(state_file), current, new, contract_rel, contract_now, contract_bytes
    )
    if edits and not force:
        raise InputError(
            "refusing to overwrite edits made by hand since init last wrote these files: "
            f"{'; '.join(edits)}. Review them, then rerun with --force to replace them."
        )

    changes = {k: (current[k], new[k]) for k in MANAGED_KEYS if current[k] != new[k]}
    written: list[str] = []
    if not dry_run:
        if contract_now != contract_bytes:
            io.write_bytes(contract_file, contract_bytes)
            written.append(contract_rel)
        if new_params != params_text:
            io.write_text(params_file, new_params)
            written.append(params_file.name)
        if promotion_new is not None and promotion_new != promotion_now:
            io.write_text(promotion_file, promotion_new)
            written.append(promotion_rel)
        if dag_new is not None and dag_new != dag_now:
            io.write_text(dag_file, dag_new)
            written.append(dag_file.name)
        state_text = io.dumps_json(state_document(new, contract_rel, contract_bytes))
        if not state_file.is_file() or state_file.read_text(encoding="utf-8") != state_text:
            io.write_text(state_file, state_text)
            written.append(STATE_FILE)
    text = render_summary(
        inference,
        data=data,
        changes=changes,
        model_reason=model_reason,
        policy_notes={promotion_rel: promotion_notes},
        written=written,
        dry_run=dry_run,
    )
    return InitResult(text=text, written=tuple(written))
