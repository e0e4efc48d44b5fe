"""pipeline/features.py: the seeded (stratified) split and the features stage's I/O."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline import io
from pipeline.config import Params, Split, load_params
from pipeline.errors import ConfigError, InputError
from pipeline.features import (
    _test_counts,
    feature_spec,
    label_codes,
    run,
    split,
    split_indices,
)
from pipeline.ingest import generate
from tests.conftest import DEMO_ROOT, REPO_ROOT


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


def sample(params: Params, rows: int = 400, task_type: str = "binary") -> pd.DataFrame:
    generator = dataclasses.replace(params.ingest.generator, rows=rows)
    return generate(generator, dataclasses.replace(params.task, type=task_type))


def table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


# --------------------------------------------------------------------------- split indices


def test_split_indices_are_seeded_sized_sorted_and_partition_the_rows() -> None:
    cfg = Split(test_size=0.25, seed=3, stratify=False)
    train, test = split_indices(None, 101, cfg)
    again = split_indices(None, 101, cfg)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    assert len(test) == 26  # ceil(0.25 * 101), as train_test_split sizes it
    assert sorted([*train, *test]) == list(range(101))
    assert (np.diff(train) > 0).all()
    assert (np.diff(test) > 0).all()
    other = split_indices(None, 101, dataclasses.replace(cfg, seed=4))[1]
    assert list(other) != list(test)


def test_split_indices_stratify_every_class_in_proportion() -> None:
    labels = np.array(["a"] * 600 + ["b"] * 300 + ["c"] * 100, dtype=object)
    np.random.default_rng(0).shuffle(labels)
    cfg = Split(test_size=0.2, seed=1, stratify=True)
    train, test = split_indices(labels, len(labels), cfg)
    assert len(test) == 200
    counts = {c: int((labels[test] == c).sum()) for c in "abc"}
    assert counts == {"a": 120, "b": 60, "c": 20}
    assert set(labels[train]) == {"a", "b", "c"}


def test_test_counts_split_the_remainder_by_largest_fraction() -> None:
    # exact shares 1.5, 0.9, 0.6: floors 1, 0, 0; the 2 left go to the largest fractions
    assert _test_counts(np.array([5, 3, 2]), 3).tolist() == [1, 1, 1]
    assert _test_counts(np.array([10, 10]), 5).tolist() == [3, 2]  # a tie: the first class
    assert _test_counts(np.array([7, 2, 1]), 10).tolist() == [7, 2, 1]


def test_split_indices_refuse_too_few_rows() -> None:
    with pytest.raises(InputError, match=r"cannot split 1 rows with test_size 0\.2"):
        split_indices(None, 1, Split(test_size=0.2, seed=0, stratify=False))


def test_split_indices_name_a_class_too_small_to_stratify() -> None:
    labels = np.array([0, 1, 0, 1, 0, 7])
    cfg = Split(test_size=0.5, seed=0, stratify=True)
    with pytest.raises(InputError, match=r"class\(es\) 7 have a single row"):
        split_indices(labels, len(labels), cfg)
    codes = np.array([0, 1, 0, 1, 0, 2])
    with pytest.raises(InputError, match=r"class\(es\) 'rare' have a single row"):
        split_indices(codes, len(codes), cfg, names=["no", "yes", "rare"])


def test_label_codes_number_values_in_first_seen_order() -> None:
    column = pa.chunked_array([["b", "a", "b", "c", "a"], ["c"]])
    codes, names = label_codes(column.slice(1))  # an offset into the first chunk
    assert names == ["a", "b", "c"]
    assert codes.tolist() == [0, 1, 2, 0, 2]
    codes, names = label_codes(column.slice(1, 3))  # one chunk, still offset
    assert names == ["a", "b", "c"]
    assert codes.tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- split a table


def test_split_keeps_columns_and_file_order_and_stratifies(params: Params) -> None:
    frame = sample(params, rows=1000)
    train, test = split(table(frame), params.task, params.split)
    assert train.column_names == test.column_names == list(frame.columns)
    assert train.num_rows + test.num_rows == len(frame)
    position = {key: i for i, key in enumerate(frame["application_id"])}
    for part in (train, test):
        rows = [position[k] for k in part.column("application_id").to_pylist()]
        assert rows == sorted(rows)  # file order kept
    target = params.task.target
    overall = frame[target].mean()
    share = np.mean(test.column(target).to_numpy())
    assert abs(share - overall) <= 1 / test.num_rows


def test_split_rejects_stratified_regression(params: Params) -> None:
    frame = sample(params, task_type="regression")
    task = dataclasses.replace(params.task, type="regression")
    with pytest.raises(ConfigError, match=r"split\.stratify"):
        split(table(frame), task, params.split)


def test_split_refuses_empty_labels_when_stratifying(params: Params) -> None:
    frame = sample(params).astype({params.task.target: "float64"})
    frame.loc[frame.index[:3], params.task.target] = np.nan
    with pytest.raises(InputError, match="target 'default' has 3 empty values"):
        split(table(frame), params.task, params.split)


def test_split_names_a_missing_target(params: Params) -> None:
    frame = sample(params).drop(columns=[params.task.target])
    with pytest.raises(InputError, match="target column 'default' is missing"):
        split(table(frame), params.task, params.split)


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
    # Raw values and dtypes survive the Arrow round trip unchanged.
    both = pd.concat([train, test]).set_index("application_id").loc[raw["application_id"]]
    pd.testing.assert_frame_equal(both.reset_index(), raw)
    spec = io.read_json(params.paths.feature_spec)
    assert spec == feature_spec(params.features, params.task, list(raw.columns))
    first = Path(params.paths.train).read_bytes()
    run(params)
    assert Path(params.paths.train).read_bytes() == first  # same inputs, same bytes


def test_run_reads_and_writes_csv_like_parquet(workspace: Path, params: Params) -> None:
    paths = dataclasses.replace(params.paths, raw="raw.csv", train="train.csv", test="test.csv")
    csv_params = dataclasses.replace(params, paths=paths)
    io.write_table(paths.raw, io.read_table(params.paths.raw))
    run(params)
    run(csv_params)
    from_parquet = io.read_table(params.paths.test)
    from_csv = io.read_table(paths.test)
    assert list(from_csv["application_id"]) == list(from_parquet["application_id"])
    assert list(from_csv.columns) == list(from_parquet.columns)


def test_run_names_declared_columns_missing_from_data(workspace: Path, params: Params) -> None:
    raw = io.read_table(params.paths.raw).drop(columns=["income", "region"])
    io.write_table(params.paths.raw, raw)
    with pytest.raises(InputError, match="income, region"):
        run(params)
    assert not Path(params.paths.train).exists()
    assert not Path(params.paths.feature_spec).exists()


def test_run_names_an_unreadable_raw_file(workspace: Path, params: Params) -> None:
    Path(params.paths.raw).write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"dataset\.parquet: cannot read as parquet"):
        run(params)
    assert not Path(params.paths.train).exists()


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


def test_stage_imports_neither_pandas_nor_sklearn(workspace: Path) -> None:
    # The stage's speed depends on it: those two imports cost more than a 1M-row split.
    code = (
        "import sys; from pipeline.cli import main; code = main(['features']); "
        "print(code, sorted(m for m in ('pandas', 'sklearn') if m in sys.modules))"
    )
    shutil.copy(REPO_ROOT / "tests/demo/params.yaml", workspace / "params.yaml")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=workspace, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "0 []"
    assert Path(workspace / "data/processed/train.parquet").is_file()
