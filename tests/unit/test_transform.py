"""pipeline/transform.py: the declaration compiled into one unfitted ColumnTransformer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer

from pipeline.config import Params, load_params
from pipeline.ingest import generate
from pipeline.transform import DatetimeParts, compile_features
from tests.conftest import DEMO_ROOT


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def sample(params: Params, rows: int = 400) -> pd.DataFrame:
    generator = dataclasses.replace(params.ingest.generator, rows=rows)
    return generate(generator, params.task)


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
