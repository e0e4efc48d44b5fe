"""Ingest stage: the seeded loan-application generator, or a CSV/Parquet file by path or URL.

`generate` is pure: the same generator settings and task give the same frame, byte for byte.
Its drift knobs (``generator.drift``) produce "production" batches that differ from training
data in a controlled way: covariate shift moves a numeric column's mean, category shift
reweights a categorical column, prior shift moves the outcome balance, concept drift blends
the true decision function toward a different one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Generator, Params, Task, build
from pipeline.errors import ConfigError, InputError, UsageError
from pipeline.io import TABLE_SUFFIXES, download, is_url, read_table, read_table_bytes, write_table

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

# Category -> base probability weight. Employment and home ownership also depend on age (see
# `_categorical`); these are the weights before that adjustment and what category_shift edits.
CATEGORIES: dict[str, dict[str, float]] = {
    "region": {"north": 0.22, "south": 0.24, "east": 0.18, "west": 0.20, "central": 0.16},
    "employment": {
        "salaried": 0.62,
        "self_employed": 0.14,
        "unemployed": 0.07,
        "retired": 0.10,
        "student": 0.07,
    },
    "home_ownership": {"rent": 0.40, "own": 0.25, "mortgage": 0.35},
    "sex": {"female": 0.49, "male": 0.51},
}

# Numeric columns, with the bounds the values are clipped to after a covariate shift.
NUMERIC_BOUNDS: dict[str, tuple[float, float]] = {
    "age": (18, 100),
    "income": (0, math.inf),
    "debt_ratio": (0, 3),
    "credit_history_months": (0, 1000),
    "open_accounts": (0, 60),
    "loan_amount": (500, math.inf),
}
INTEGER_COLUMNS = ("age", "credit_history_months", "open_accounts")

# Multiclass labels, from least to most risky, and the latent-score cut points between them.
RISK_CLASSES = ("low", "medium", "high")
RISK_CUTS = (-1.65, 0.4)

COLUMN_ORDER = (
    "application_id",
    "applied_at",
    "age",
    "income",
    "debt_ratio",
    "credit_history_months",
    "open_accounts",
    "loan_amount",
    "region",
    "employment",
    "home_ownership",
    "sex",
)


# --------------------------------------------------------------------------- checks


def drift_problems(generator: Generator, prefix: str = "ingest.generator.") -> list[str]:
    """Knobs that name unknown columns or categories, or are out of range (schema or flags)."""
    problems = []
    for column in generator.drift.covariate_shift:
        if column not in NUMERIC_BOUNDS:
            problems.append(
                f"{prefix}drift.covariate_shift.{column}: not a numeric column "
                f"(one of {', '.join(NUMERIC_BOUNDS)})"
            )
    for column, weights in generator.drift.category_shift.items():
        if column not in CATEGORIES:
            problems.append(
                f"{prefix}drift.category_shift.{column}: not a categorical column "
                f"(one of {', '.join(CATEGORIES)})"
            )
            continue
        for category, weight in weights.items():
            if category not in CATEGORIES[column]:
                problems.append(
                    f"{prefix}drift.category_shift.{column}.{category}: unknown "
                    f"category (one of {', '.join(CATEGORIES[column])})"
                )
            elif not (math.isfinite(weight) and weight >= 0):
                problems.append(
                    f"{prefix}drift.category_shift.{column}.{category}: weight must "
                    f"be a finite number >= 0, got {weight!r}"
                )
        merged = {**CATEGORIES[column], **weights}
        if sum(merged.values()) <= 0:
            problems.append(f"{prefix}drift.category_shift.{column}: weights sum to zero")
    for column, k in generator.drift.covariate_shift.items():
        if not math.isfinite(k):
            problems.append(f"{prefix}drift.covariate_shift.{column}: must be a finite number")
    if not 0.0 <= generator.drift.concept_drift <= 1.0:
        problems.append(f"{prefix}drift.concept_drift: must be between 0 and 1")
    if not math.isfinite(generator.drift.prior_shift):
        problems.append(f"{prefix}drift.prior_shift: must be a finite number")
    if generator.rows < 1:
        problems.append(f"{prefix}rows: must be at least 1")
    return problems


# --------------------------------------------------------------------------- generator


def _code(column: str, category: str) -> int:
    """Categorical columns are generated as integer codes (fast); this is a category's code."""
    return list(CATEGORIES[column]).index(category)


def _is(values: IntArray, column: str, *categories: str) -> npt.NDArray[np.bool_]:
    """Rows whose code is one of `categories` of `column`."""
    return np.isin(values, [_code(column, c) for c in categories])


def _pick(rng: np.random.Generator, probs: FloatArray) -> IntArray:
    """One category code per row from a (rows x categories) weight matrix, vectorized."""
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cumulative[:, -1]
    index: IntArray = np.minimum((u[:, None] >= cumulative).sum(axis=1), probs.shape[1] - 1)
    return index


def _categorical(
    rng: np.random.Generator,
    column: str,
    age: FloatArray,
    shift: Mapping[str, Mapping[str, float]],
) -> IntArray:
    """Sample a categorical column; category_shift rescales each category's weight."""
    base = CATEGORIES[column]
    labels = tuple(base)
    weights = {**base, **shift.get(column, {})}
    scale = np.array([weights[c] / base[c] for c in labels])
    n = len(age)
    probs = np.tile(np.array([base[c] for c in labels]), (n, 1))
    if column == "employment":
        # Students are young and retirees old: multiply their weights by age-dependent odds.
        probs[:, labels.index("student")] *= np.exp(-(age - 20) / 4) * 6
        probs[:, labels.index("retired")] *= 1 / (1 + np.exp(-(age - 63) / 2.5)) * 8
        probs[:, labels.index("salaried")] *= np.where(age > 66, 0.15, 1.0)
    elif column == "home_ownership":
        probs[:, labels.index("own")] *= np.clip((age - 20) / 25, 0.1, 2.5)
        probs[:, labels.index("rent")] *= np.clip((60 - age) / 25, 0.3, 1.8)
    return _pick(rng, probs * scale)


def _features(rng: np.random.Generator, n: int, generator: Generator) -> dict[str, Any]:
    """The applicants' attributes; categorical columns as integer codes into CATEGORIES."""
    shift = generator.drift.category_shift
    age = np.clip(rng.normal(41, 13, n), 18, 85).round()
    sex = _categorical(rng, "sex", age, shift)
    region = _categorical(rng, "region", age, shift)
    employment = _categorical(rng, "employment", age, shift)
    home = _categorical(rng, "home_ownership", age, shift)
    male = _is(sex, "sex", "male")
    # Income peaks in mid-career; a gender pay gap makes `sex` correlate with outcomes through
    # income, as it does in real lending data, so fairness metrics have something to measure.
    career = 1.0 - ((age - 48) / 30) ** 2
    employ_factor = np.select(
        [_is(employment, "employment", e) for e in ("unemployed", "student", "retired")],
        [0.35, 0.45, 0.7],
        1.0,
    )
    region_factor = np.select(
        [_is(region, "region", r) for r in ("central", "south")], [1.15, 0.9], 1.0
    )
    income = (
        np.exp(rng.normal(10.6, 0.45, n))
        * (0.75 + 0.35 * career)
        * np.where(male, 1.1, 0.9)
        * employ_factor
        * region_factor
    )
    debt_ratio = rng.beta(2.0, 5.0, n) * 1.4 + np.where(
        _is(home, "home_ownership", "mortgage"), 0.08, 0.0
    )
    history = np.clip(rng.uniform(0.1, 1.0, n) * (age - 17) * 12, 0, 1000).round()
    open_accounts = rng.poisson(1.5 + 2.5 * np.sqrt(history / 120), n).astype(np.float64)
    loan_amount = np.maximum(500.0, np.exp(rng.normal(0, 0.5, n)) * income * 0.25).round(2)
    return {
        "age": age,
        "income": income.round(2),
        "debt_ratio": debt_ratio.round(4),
        "credit_history_months": history,
        "open_accounts": open_accounts,
        "loan_amount": loan_amount,
        "region": region,
        "employment": employment,
        "home_ownership": home,
        "sex": sex,
    }


def _covariate_shift(cols: dict[str, Any], shift: Mapping[str, float]) -> dict[str, Any]:
    """Move each named numeric column's mean by `k` of its standard deviations (then clip)."""
    out = dict(cols)
    for column, k in shift.items():
        values = cols[column]
        low, high = NUMERIC_BOUNDS[column]
        moved = np.clip(values + k * float(np.std(values)), low, high)
        out[column] = moved.round() if column in INTEGER_COLUMNS else moved.round(4)
    return out


def _risk(cols: dict[str, Any], month: Any) -> FloatArray:
    """The true (non-linear) log-odds of default: thresholds, interactions, a U-shape in age."""
    income = cols["income"]
    debt = cols["debt_ratio"]
    history = cols["credit_history_months"]
    employment = cols["employment"]
    loan_to_income = cols["loan_amount"] / np.maximum(income, 1.0)
    score = (
        -3.6
        + 6.0 * np.maximum(debt - 0.35, 0.0)  # threshold: debt is harmless up to ~35%
        + 2.2 * (loan_to_income > 0.4) * (history < 36)  # big loan AND thin file
        - 1.2 * np.log(np.maximum(income, 1000.0) / 40000.0)
        + 0.003 * (cols["age"] - 45) ** 2  # young and old borrowers are riskier
        + np.select(
            [_is(employment, "employment", e) for e in ("unemployed", "student", "self_employed")],
            [2.4, 1.0, 0.6],
            0.0,
        )
        + 0.4 * (cols["open_accounts"] > 8)
        - 0.5 * _is(cols["home_ownership"], "home_ownership", "own")
        + np.select(
            [_is(cols["region"], "region", r) for r in ("east", "central")], [0.4, -0.35], 0.0
        )
        + 0.35 * np.isin(month, (12, 1))  # holiday-season applications default more
        + 0.25 * _is(cols["sex"], "sex", "female")  # a historical bias baked into past decisions
    )
    return np.asarray(score, dtype=np.float64)


def _drifted_risk(cols: dict[str, Any], month: Any) -> FloatArray:
    """A different decision function (concept drift): history and region matter, debt less."""
    history = cols["credit_history_months"]
    score = (
        -1.3
        + 0.8 * np.maximum(cols["debt_ratio"] - 0.6, 0.0)
        - 1.1 * np.tanh((history - 90) / 60)
        + np.select([_is(cols["region"], "region", r) for r in ("west", "north")], [0.9, -0.5], 0.0)
        + 0.9 * _is(cols["employment"], "employment", "self_employed")
        - 0.9 * _is(cols["employment"], "employment", "unemployed")
        + 0.3 * np.isin(month, (6, 7, 8))
    )
    return np.asarray(score, dtype=np.float64)


def _target(rng: np.random.Generator, score: FloatArray, generator: Generator, task: Task) -> Any:
    """Turn the latent score into the task's label, then replace a fraction at random."""
    n = len(score)
    noisy = rng.random(n) < generator.label_noise
    if task.type == "binary":
        p = 1.0 / (1.0 + np.exp(-score))
        y = (rng.random(n) < p).astype(np.int64)
        return np.where(noisy, rng.integers(0, 2, n), y)
    if task.type == "multiclass":
        latent = score + rng.logistic(0.0, 0.6, n)
        classes = np.asarray(RISK_CLASSES, dtype=object)
        labels = classes[np.searchsorted(np.asarray(RISK_CUTS), latent)]
        return np.where(noisy, classes[rng.integers(0, len(classes), n)], labels)
    # regression: expected loss on a 0..100 scale plus Gaussian noise.
    value = np.clip(100.0 / (1.0 + np.exp(-score)) + rng.normal(0.0, 4.0, n), 0.0, 100.0)
    return np.round(np.where(noisy, rng.permutation(value), value), 4)


def _labels(codes: IntArray, column: str) -> pd.Series:
    """Codes (-1 = missing) -> plain string column; not pandas 'category', for portability."""
    categories = pa.array(list(CATEGORIES[column]), type=pa.string())
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    text = pa.DictionaryArray.from_arrays(indices, categories).cast(pa.string())
    return pd.Series(pd.array(text, dtype="str"))


def _ids(seed: int, n: int) -> pd.Series:
    """Unique, zero-padded application ids in time order, prefixed by the seed (S7-00000001)."""
    numbers = pc.utf8_lpad(pa.array(np.arange(1, n + 1)).cast(pa.string()), 8, "0")
    return pd.Series(pd.array(pc.binary_join_element_wise(f"S{seed}-", numbers, ""), dtype="str"))


def generate(generator: Generator, task: Task) -> pd.DataFrame:
    """Synthetic loan applications: pure and seeded (same arguments -> identical frame)."""
    problems = drift_problems(generator)
    if problems:
        raise ConfigError(problems)
    n = generator.rows
    # Independent streams, so a knob that changes how labels are drawn (noise, drift) leaves
    # timestamps, features and missing cells exactly as they were for the same seed.
    time_rng, feature_rng, label_rng, missing_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(generator.seed).spawn(4)
    )
    drift = generator.drift

    # Applications arrive uniformly over `days`, mostly during office hours; rows are in time order.
    day = time_rng.integers(0, generator.days, n)
    second = np.clip(time_rng.normal(13.5 * 3600, 3.5 * 3600, n), 0, 86399).astype(np.int64)
    offsets = np.sort(day * 86400 + second)
    start = np.datetime64(generator.start, "s")
    applied_at = (start + offsets.astype("timedelta64[s]")).astype("datetime64[us]")
    month = applied_at.astype("datetime64[M]").astype(np.int64) % 12 + 1

    # Covariate shift moves the features before labelling: P(y|x) stays the same.
    cols = _covariate_shift(_features(feature_rng, n, generator), drift.covariate_shift)
    score = _risk(cols, month)
    if drift.concept_drift > 0:
        score = (1 - drift.concept_drift) * score + drift.concept_drift * _drifted_risk(cols, month)
    score = score + drift.prior_shift
    target = _target(label_rng, score, generator, task)

    # Missing completely at random, applied after the label so the signal is unaffected.
    income = cols["income"].copy()
    income[missing_rng.random(n) < generator.missing_rate] = np.nan
    employment = cols["employment"].copy()
    employment[missing_rng.random(n) < generator.missing_rate] = -1  # code -1 is a missing category

    frame = pd.DataFrame(
        {
            "application_id": _ids(generator.seed, n),
            "applied_at": pd.Series(applied_at),
            "age": cols["age"].astype(np.int64),
            "income": income,
            "debt_ratio": cols["debt_ratio"],
            "credit_history_months": cols["credit_history_months"].astype(np.int64),
            "open_accounts": cols["open_accounts"].astype(np.int64),
            "loan_amount": cols["loan_amount"],
            "region": _labels(cols["region"], "region"),
            "employment": _labels(employment, "employment"),
            "home_ownership": _labels(cols["home_ownership"], "home_ownership"),
            "sex": _labels(cols["sex"], "sex"),
        }
    )
    frame[task.target] = pd.Series(target, dtype=str if task.type == "multiclass" else None)
    return frame


# --------------------------------------------------------------------------- batches (CLI)


def _flag_number(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag}{text}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag}{text}: must be a finite number")
    return value


def parse_covariate_shift(items: Iterable[str]) -> dict[str, float]:
    """['income=-1.5', ...] (COL=SD) -> {'income': -1.5}; UsageError naming the bad flag."""
    out: dict[str, float] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise UsageError(f"--covariate-shift {item}: expected COLUMN=SD, e.g. income=-1.5")
        out[column] = _flag_number(f"--covariate-shift {column}=", value)
    return out


def parse_category_shift(items: Iterable[str]) -> dict[str, dict[str, float]]:
    """['region:north=3', ...] (COL:CAT=W) -> {'region': {'north': 3.0}}."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        column, colon, category = key.partition(":")
        if not sep or not colon or not column or not category:
            raise UsageError(
                f"--category-shift {item}: expected COLUMN:CATEGORY=WEIGHT, e.g. region:north=0.5"
            )
        out.setdefault(column, {})[category] = _flag_number(f"--category-shift {key}=", value)
    return out


def override(
    generator: Generator,
    *,
    rows: int | None = None,
    seed: int | None = None,
    start: str | None = None,
    covariate_shift: Iterable[str] = (),
    category_shift: Iterable[str] = (),
    prior_shift: float | None = None,
    concept_drift: float | None = None,
) -> Generator:
    """params' generator with command-line overrides applied; UsageError lists bad values."""
    problems = []
    if start is not None:
        try:
            dt.date.fromisoformat(start)
        except ValueError:
            problems.append(f"--start {start}: expected an ISO date YYYY-MM-DD")
    if seed is not None and seed < 0:
        problems.append(f"--seed {seed}: must be >= 0")
    covariate = {**generator.drift.covariate_shift, **parse_covariate_shift(covariate_shift)}
    category = {k: dict(v) for k, v in generator.drift.category_shift.items()}
    for column, weights in parse_category_shift(category_shift).items():
        category.setdefault(column, {}).update(weights)
    drift = generator.drift
    result = build(
        Generator,
        {
            "rows": generator.rows if rows is None else rows,
            "seed": generator.seed if seed is None else seed,
            "start": generator.start if start is None else start,
            "days": generator.days,
            "label_noise": generator.label_noise,
            "missing_rate": generator.missing_rate,
            "drift": {
                "covariate_shift": covariate,
                "category_shift": category,
                "prior_shift": drift.prior_shift if prior_shift is None else prior_shift,
                "concept_drift": drift.concept_drift if concept_drift is None else concept_drift,
            },
        },
    )
    problems += drift_problems(result, prefix="generator.")
    if problems:
        raise UsageError("invalid generate options:\n" + "\n".join(f"  - {p}" for p in problems))
    return result


def batch(generator: Generator, task: Task, *, label: bool = True) -> pd.DataFrame:
    """A batch for the monitor or `predict`: generate, optionally without the label column."""
    frame = generate(generator, task)
    return frame if label else frame.drop(columns=[task.target])


# --------------------------------------------------------------------------- other sources


def coerce_types(frame: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Give text-format (CSV) columns the kinds the contract declares, so a CSV round-trips.

    Datetime columns are parsed only if every value parses; otherwise they are left as text
    and validate reports the column with the count of bad values.
    """
    out = frame.copy()
    for column, dtype in dtypes.items():
        if column not in out.columns:
            continue
        values = out[column]
        if dtype == "datetime" and pd.api.types.is_string_dtype(values):
            # only text is parsed: numbers are not silently read as epoch nanoseconds
            parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
            if int((parsed.isna() & values.notna()).sum()) == 0:
                out[column] = parsed
        elif dtype in {"string", "category"} and not (
            pd.api.types.is_string_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype)
        ):
            # e.g. zip codes read as numbers: keep them as text, nulls stay null.
            out[column] = values.astype(str).where(values.notna(), None).astype(str)
    return out


def load_source(source: str, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Read a CSV/Parquet path or URL; CSV columns are coerced to the contract's kinds."""
    return coerce_types(read_table(source), dtypes)


def pin_mismatch(url: str, pinned: str | None, actual: str) -> str | None:
    """Why the bytes downloaded from `url` (sha256 `actual`) are not the pinned ones, or None.

    DVC cannot hash a URL it does not download itself, so the pin in params.yaml is what makes
    `dvc status` truthful: a changed file is refused here instead of silently giving new data.
    """
    if pinned is None:
        return f"{url}: a URL source needs ingest.source_sha256 (sha256 of its bytes: {actual})"
    if pinned != actual:
        return (
            f"{url}: its bytes have sha256 {actual}, but ingest.source_sha256 pins {pinned}: "
            f"the file changed since it was pinned; check the new data, then set "
            f"ingest.source_sha256: {actual}"
        )
    return None


def read_source(source: str, pinned: str | None, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """ingest.source as a frame: a URL only if its bytes hash to the pin (nothing is parsed
    otherwise); a local file as it is (it lies in paths.source_dir, which DVC hashes)."""
    if not is_url(source):
        return load_source(source, dtypes)
    payload = download(source)
    mismatch = pin_mismatch(source, pinned, hashlib.sha256(payload).hexdigest())
    if mismatch:
        raise InputError(mismatch)
    return coerce_types(read_table_bytes(source, payload), dtypes)


def escaped_batches(batches: Sequence[Path], directory: str | Path) -> list[str]:
    """Batches in paths.extra that are symlinks to files outside it: DVC would not see those
    change (the stage depends on the folder), so they are refused like an outside source."""
    folder = Path(os.path.realpath(directory))  # realpath: never raises, on a loop either
    real = {p: Path(os.path.realpath(p)) for p in batches}
    return [
        f"{p}: is really {real[p]}, outside {directory}/, so DVC would not see it change: "
        "put the file itself there, not a symlink"
        for p in batches
        if folder not in real[p].parents
    ]


def extra_batches(directory: str | Path) -> list[Path]:
    """The labelled batches in `directory` (CSV/Parquet), in name order; none if it is absent."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)


def append_batches(base: pd.DataFrame, batches: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Append batches to the source data; each must carry exactly the source's columns."""
    if not batches:
        return base
    expected = set(base.columns)
    for name, batch in batches:
        missing, extra = (
            sorted(expected - set(batch.columns)),
            sorted(set(batch.columns) - expected),
        )
        if missing or extra:
            raise InputError(
                f"{name}: a training batch must have the source's columns "
                f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})"
            )
    frames = [base, *(batch[list(base.columns)] for _, batch in batches)]
    return pd.concat(frames, ignore_index=True)


def run(params: Params) -> None:
    """Generate (or read) the raw dataset, append the extra batches, write it to paths.raw."""
    extras = extra_batches(params.paths.extra)
    if params.ingest.source == "generator" and not extras:
        write_table(params.paths.raw, generate(params.ingest.generator, params.task))
        return
    from pipeline.validate import load_contract

    # Files carry no types (CSV): the contract says which columns are dates and categories.
    contract = load_contract(params.paths.contract)
    dtypes = {name: spec.dtype for name, spec in contract.columns.items()}
    escaped = escaped_batches(extras, params.paths.extra)
    if escaped:
        raise InputError("; ".join(escaped))
    if params.ingest.source == "generator":
        frame = generate(params.ingest.generator, params.task)
    else:
        try:
            frame = read_source(params.ingest.source, params.ingest.source_sha256, dtypes)
        except InputError as exc:
            raise InputError(f"ingest.source: {exc}") from exc
    batches = [(str(p), load_source(str(p), dtypes)) for p in extras]
    write_table(params.paths.raw, append_batches(frame, batches))
