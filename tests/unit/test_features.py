"""pipeline/features.py: seeded split, the compiled transformer, and the features stage's I/O."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer

from pipeline import io
from pipeline.config import Params, load_params
from pipeline.errors import ConfigError, InputError
from pipeline.features import DatetimeParts, compile_features, feature_spec, run, split
from pipeline.ingest import generate
from tests.conftest import DEMO_ROOT


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def sample(params: Params, rows: int = 400, task_type: str = "binary") -> pd.DataFrame:
    generator = dataclasses.replace(params.ingest.generator, rows=rows)
    return generate(generator, dataclasses.replace(params.task, type=task_type))


# --------------------------------------------------------------------------- split


def test_split_is_seeded_and_sized(params: Params) -> None:
    frame = sample(params)
    train_a, test_a = split(frame, params.task, params.split)
    train_b, test_b = split(frame, params.task, params.split)
    pd.testing.assert_frame_equal(train_a, train_b)
    pd.testing.assert_frame_equal(test_a, test_b)
    assert len(test_a) == round(len(frame) * params.split.test_size)
    assert sorted([*train_a.index, *test_a.index]) == list(frame.index)
    other = dataclasses.replace(params.split, seed=params.split.seed + 1)
    assert list(split(frame, params.task, other)[1].index) != list(test_a.index)


def test_split_stratifies_when_configured(params: Params) -> None:
    frame = sample(params, rows=1000)
    target = params.task.target
    overall = frame[target].mean()
    train, test = split(frame, params.task, params.split)
    # Stratified: both halves keep the class share to within one row.
    assert abs(test[target].mean() - overall) <= 1 / len(test)
    assert abs(train[target].mean() - overall) <= 1 / len(train)


def test_split_does_not_mutate_its_input(params: Params) -> None:
    frame = sample(params)
    before = frame.copy()
    split(frame, params.task, params.split)
    pd.testing.assert_frame_equal(frame, before)


def test_split_rejects_stratified_regression(params: Params) -> None:
    frame = sample(params, task_type="regression")
    task = dataclasses.replace(params.task, type="regression")
    with pytest.raises(ConfigError, match=r"split\.stratify"):
        split(frame, task, params.split)


def test_split_names_a_class_too_small_to_stratify(params: Params) -> None:
    frame = sample(params)
    frame.loc[frame.index[0], params.task.target] = 7  # a class with a single row
    with pytest.raises(InputError, match="default"):
        split(frame, params.task, params.split)


# --------------------------------------------------------------------------- transformer


def test_compile_features_is_unfitted_and_drops_undeclared(params: Params) -> None:
    transformer = compile_features(params.features)
    assert isinstance(transformer, ColumnTransformer)
    assert not hasattr(transformer, "transformers_")
    assert transformer.remainder == "drop"
    used = {c for _, _, cols in transformer.transformers for c in cols}
    assert used == {
        *params.features.numeric,
        *params.features.categorical,
        *params.features.datetime,
    }
    assert params.task.target not in used
    assert params.task.sensitive not in used


def test_transformer_output_shape_and_names(params: Params) -> None:
    frame = sample(params)
    transformer = compile_features(params.features)
    out = transformer.fit_transform(frame)
    names = list(transformer.get_feature_names_out())
    assert out.shape == (len(frame), len(names))
    assert not np.isnan(out).any()  # imputers filled income/employment gaps
    n_categories = sum(frame[c].nunique() for c in params.features.categorical)
    has_missing_category = int(frame["employment"].isna().any())
    expected = (
        len(params.features.numeric)
        + n_categories
        + has_missing_category
        + sum(len(p) for p in params.features.datetime.values())
    )
    assert len(names) == expected
    assert "numeric__age" in names
    assert "categorical__region_north" in names
    assert "datetime_applied_at__applied_at_month" in names
    assert not any("sex" in n or "application_id" in n for n in names)


def test_scaling_and_zero_imputation(params: Params) -> None:
    frame = sample(params)
    cfg = dataclasses.replace(params.features, numeric_impute="zero", scale=False)
    out = compile_features(cfg).fit_transform(frame)
    income = out[:, list(cfg.numeric).index("income")]
    assert (income[frame["income"].isna().to_numpy()] == 0).all()
    scaled = compile_features(params.features).fit_transform(frame)[:, : len(cfg.numeric)]
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-9)


def test_ordinal_encoding_maps_unknown_to_minus_one(params: Params) -> None:
    frame = sample(params)
    cfg = dataclasses.replace(params.features, categorical_encoding="ordinal", datetime={})
    transformer = compile_features(cfg).fit(frame)
    unseen = frame.head(3).assign(region="mars")
    region = list(transformer.get_feature_names_out()).index("categorical__region")
    assert (transformer.transform(unseen)[:, region] == -1).all()


def test_onehot_groups_rare_categories(params: Params) -> None:
    frame = sample(params)
    cfg = dataclasses.replace(params.features, max_categories=2, datetime={})
    names = list(compile_features(cfg).fit(frame).get_feature_names_out())
    region = [n for n in names if n.startswith("categorical__region_")]
    assert len(region) == 2
    assert "categorical__region_infrequent_sklearn" in region


def test_datetime_parts_values_and_names() -> None:
    stamps = pd.DataFrame({"at": pd.to_datetime(["2025-03-04 05:06:07", "2024-12-31 23:00:00"])})
    parts = ("year", "month", "day", "dayofweek", "hour", "dayofyear")
    transformer = DatetimeParts(parts).fit(stamps)
    assert transformer.transform(stamps).tolist() == [
        [2025, 3, 4, 1, 5, 63],
        [2024, 12, 31, 1, 23, 366],
    ]
    assert list(transformer.get_feature_names_out()) == [f"at_{p}" for p in parts]


def test_datetime_parts_parse_text_like_csv_gives() -> None:
    typed = pd.DataFrame({"at": pd.to_datetime(["2025-03-04 05:06:07"])})
    text = pd.DataFrame({"at": ["2025-03-04 05:06:07"]})
    transformer = DatetimeParts(("month", "hour")).fit(typed)
    assert transformer.transform(text).tolist() == transformer.transform(typed).tolist()


def test_datetime_parts_rejects_unknown_part() -> None:
    with pytest.raises(ValueError, match="minute"):
        DatetimeParts(("minute",)).fit(pd.DataFrame({"at": pd.to_datetime(["2025-01-01"])}))


# --------------------------------------------------------------------------- stage


def test_feature_spec_lists_dropped_columns(params: Params) -> None:
    frame = sample(params)
    spec = feature_spec(params.features, params.task, list(frame.columns))
    assert spec["dropped"] == ["application_id", "sex"]
    assert spec["target"] == "default"
    assert spec["task"] == "binary"
    assert spec["datetime"] == {"applied_at": ["month", "dayofweek", "hour"]}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: Params) -> Path:
    monkeypatch.chdir(tmp_path)
    io.write_table(params.paths.raw, sample(params))
    io.write_json(params.paths.validation, {"passed": True})
    return tmp_path


def test_run_writes_train_test_and_spec(workspace: Path, params: Params) -> None:
    run(params)
    train = io.read_table(params.paths.train)
    test = io.read_table(params.paths.test)
    raw = io.read_table(params.paths.raw)
    assert len(train) + len(test) == len(raw)
    assert list(train.columns) == list(raw.columns)
    assert set(train["application_id"]).isdisjoint(test["application_id"])
    spec = io.read_json(params.paths.feature_spec)
    assert spec == feature_spec(params.features, params.task, list(raw.columns))
    first = Path(params.paths.train).read_bytes()
    run(params)
    assert Path(params.paths.train).read_bytes() == first  # same inputs, same bytes


def test_run_names_declared_columns_missing_from_data(workspace: Path, params: Params) -> None:
    raw = io.read_table(params.paths.raw).drop(columns=["income", "region"])
    io.write_table(params.paths.raw, raw)
    with pytest.raises(InputError, match="income, region"):
        run(params)
    assert not Path(params.paths.train).exists()
    assert not Path(params.paths.feature_spec).exists()


def test_run_requires_validation(workspace: Path, params: Params) -> None:
    Path(params.paths.validation).unlink()
    with pytest.raises(InputError, match="validate"):
        run(params)
    assert not Path(params.paths.train).exists()


def test_run_refuses_sensitive_attribute_as_feature(workspace: Path, params: Params) -> None:
    features = dataclasses.replace(
        params.features, categorical=(*params.features.categorical, "sex")
    )
    with pytest.raises(ConfigError, match=r"features\.categorical: 'sex' is the sensitive"):
        run(dataclasses.replace(params, features=features))
    assert not Path(params.paths.train).exists()
