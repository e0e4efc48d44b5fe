"""pipeline/validate.py: contract checks: every failing check listed, nothing written on failure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import ingest, validate
from pipeline.cli import main
from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.io import write_table
from pipeline.validate import ColumnSpec, Contract, contract_failures, load_contract
from tests.conftest import DEMO_ROOT, REPO_ROOT, run, set_param

# The demo's configuration (tests/demo/): these tests assume its generated columns.
PARAMS = load_params(DEMO_ROOT / "params.yaml")
CONTRACT_FILE = DEMO_ROOT / "policies" / "contract.yaml"
CONTRACT = validate.with_target(load_contract(CONTRACT_FILE), PARAMS.task)
TARGET = PARAMS.task.target


def frame(rows: int = 2000, kind: str = "binary") -> pd.DataFrame:
    task = dataclasses.replace(PARAMS.task, type=kind)
    return ingest.generate(dataclasses.replace(PARAMS.ingest.generator, rows=rows), task)


GOOD = frame()


# --------------------------------------------------------------------------- the contract file


def test_demo_contract_is_valid_and_matches_generated_data() -> None:
    contract = load_contract(CONTRACT_FILE)
    assert set(contract.columns) == set(ingest.COLUMN_ORDER)
    assert contract_failures(GOOD, CONTRACT) == []
    for name, categories in ingest.CATEGORIES.items():
        assert contract.columns[name].allowed == tuple(categories), name


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_label_is_checked_by_task_type(kind: str) -> None:
    task = dataclasses.replace(
        PARAMS.task, type=kind, positive_label=1 if kind == "binary" else None
    )
    contract = validate.with_target(load_contract(CONTRACT_FILE), task)
    assert contract.columns[TARGET] == validate.target_spec(task)
    data = frame(kind=kind)
    assert contract_failures(data, contract) == []
    broken = data.copy()
    broken[TARGET] = broken[TARGET].astype(object)
    broken.loc[3, TARGET] = None
    assert f"{TARGET}: 1 null values" in "\n".join(contract_failures(broken, contract))


def test_contract_listing_the_label_wins_over_the_task_type() -> None:
    own = ColumnSpec(dtype="category", allowed=("yes", "no"), max_null_fraction=0.0)
    contract = Contract(min_rows=1, strict=True, columns={TARGET: own})
    assert validate.with_target(contract, PARAMS.task).columns[TARGET] is own


@pytest.mark.parametrize("root", [REPO_ROOT, DEMO_ROOT], ids=["live", "demo"])
def test_every_key_in_the_contract_file_is_commented(root: Path) -> None:
    lines = (root / "policies" / "contract.yaml").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert "#" in line, f"contract.yaml:{number} has no comment: {line}"


def write_contract(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_contract_schema_errors_list_file_and_key_path(tmp_path: Path) -> None:
    bad = write_contract(
        tmp_path / "contract.yaml",
        """\
min_rows: -5
strict: yes
colums: {}
columns:
  age: {dtype: integer, max_nul_fraction: 0.0}
  income: {dtype: float, min: "zero", max_null_fraction: 1.5}
""",
    )
    with pytest.raises(ConfigError) as err:
        load_contract(bad)
    problems = err.value.violations
    text = "\n".join(problems)
    assert all(p.startswith(f"{bad}: ") for p in problems)
    assert "min_rows: -5 is less than the minimum of 0" in text
    assert "strict: 'yes' is not of type 'boolean'" in text  # YAML 1.2: `yes` is a string
    unexpected = "Additional properties are not allowed"
    assert f"(top level): {unexpected} ('colums' was unexpected)" in text
    assert f"columns.age: {unexpected} ('max_nul_fraction' was unexpected)" in text
    assert "columns.age: 'max_null_fraction' is a required property" in text
    assert "columns.age.dtype: 'integer' is not one of" in text
    assert "columns.income.min: 'zero' is not of type 'number'" in text
    assert "columns.income.max_null_fraction: 1.5 is greater than the maximum of 1" in text


def test_contract_cross_checks(tmp_path: Path) -> None:
    bad = write_contract(
        tmp_path / "contract.yaml",
        """\
min_rows: 1
strict: false
columns:
  region: {dtype: category, min: 1, max_null_fraction: 0.0}
  age: {dtype: int, allowed: ["1"], min: 10, max: 5, max_null_fraction: 0.0}
""",
    )
    with pytest.raises(ConfigError) as err:
        load_contract(bad)
    text = "\n".join(err.value.violations)
    assert "columns.region.min: only int and float columns take min" in text
    assert "columns.age.allowed: only string and category columns take allowed" in text
    assert "columns.age: min 10 is greater than max 5" in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "file is empty"),
        ("min_rows: 1\nmin_rows: 2\nstrict: true\ncolumns: {}\n", "duplicate key"),
        ("min_rows: [1\n", "invalid YAML"),
    ],
)
def test_contract_file_problems(tmp_path: Path, body: str, message: str) -> None:
    path = write_contract(tmp_path / "contract.yaml", body)
    with pytest.raises(ConfigError, match=message):
        load_contract(path)


def test_count_checks() -> None:
    spec = ColumnSpec(dtype="float", min=0.0, max=1.0, max_null_fraction=0.0)
    ids = ColumnSpec(dtype="string", unique=True, max_null_fraction=0.0)
    contract = Contract(min_rows=1, strict=True, columns={"x": spec, "id": ids})
    # rows + strict, x: presence dtype nulls min max finite, id: presence dtype nulls unique
    assert validate.count_checks(contract) == 2 + 6 + 4


# --------------------------------------------------------------------------- contract_failures


def with_values(column: str, rows: list[int], value: object) -> pd.DataFrame:
    out = GOOD.copy()
    if isinstance(value, str) and pd.api.types.is_numeric_dtype(out[column]):
        out[column] = out[column].astype(object)
    elif isinstance(value, float) and pd.api.types.is_integer_dtype(out[column]):
        out[column] = out[column].astype(float)
    out.loc[rows, column] = value
    return out


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (GOOD.drop(columns=["income"]), "income: column missing"),
        (GOOD.assign(extra=1), "extra: column not in the contract (strict: true)"),
        (with_values("age", [1, 2, 3], 150), "age: 3 values above max 100"),
        (with_values("age", [1, 2], 12), "age: 2 values below min 18"),
        (with_values("income", [4], -1.0), "income: 1 values below min 0"),
        (with_values("income", [4, 5], np.inf), "income: 2 infinite values"),
        (with_values("loan_amount", [4], -np.inf), "loan_amount: 1 infinite values"),
        (with_values("debt_ratio", [0, 9], np.nan), "debt_ratio: 2 null values"),
        (with_values("region", [7, 8], "mars"), "region: 2 values in unseen categories 'mars'"),
        (with_values("sex", [7], "x"), "sex: 1 values in unseen categories 'x'"),
        (with_values("age", [0], "forty"), "age: expected int, got object"),
        (with_values("age", [0], 40.5), "age: expected int, got float64"),
        (GOOD.assign(age=GOOD["age"].astype(str)), "age: expected int, got str"),
        (GOOD.assign(region=1), "region: expected category (text), got int64"),
        (GOOD.assign(applied_at="2025-01-01"), "applied_at: expected datetime, got str"),
        (GOOD.assign(applied_at="yesterday"), "2000 values are not ISO 8601 dates"),
        (GOOD.head(999), "dataset: 999 rows, the contract requires at least 1000"),
        (
            GOOD.assign(application_id=["dup"] * 3 + list(GOOD["application_id"][3:])),
            "application_id: 3 rows share 1 duplicated values, unique required (e.g. 'dup')",
        ),
        (GOOD.assign(**{TARGET: GOOD[TARGET] + 1}), f"{TARGET}: "),
    ],
)
def test_each_bad_data_case_names_its_column(data: pd.DataFrame, expected: str) -> None:
    failures = contract_failures(data, CONTRACT)
    assert any(expected in f for f in failures), failures


def test_null_fraction_is_a_fraction() -> None:
    data = GOOD.copy()
    data.loc[: int(0.04 * len(data)), "income"] = np.nan  # 4% + 2% from the generator > 5%
    failures = contract_failures(data, CONTRACT)
    assert any(
        f.startswith("income: ") and "above max_null_fraction 0.05" in f for f in failures
    ), failures
    fine = GOOD.copy()
    fine.loc[:10, "income"] = np.nan
    assert contract_failures(fine, CONTRACT) == []


def test_every_failing_check_is_listed_once_in_contract_order() -> None:
    data = GOOD.drop(columns=["sex"]).assign(extra=0)
    data.loc[0, "age"] = 150
    data.loc[1, "income"] = np.inf
    data.loc[2, "region"] = "mars"
    data.loc[3, "debt_ratio"] = np.nan
    failures = contract_failures(data, CONTRACT)
    assert [f.split(":")[0] for f in failures] == [
        "age",
        "income",
        "debt_ratio",
        "region",
        "sex",
        "extra",
    ]
    assert not any("above max" in f for f in failures if f.startswith("income"))  # inf once


def test_header_only_frame_reports_rows_not_dtype_noise() -> None:
    empty = GOOD.head(0).astype(object)
    failures = contract_failures(empty, CONTRACT)
    assert failures == [
        "dataset: 0 rows (header only?), the contract requires at least 1000 (min_rows)"
    ]


def test_optional_columns_may_be_absent_or_present() -> None:
    unlabeled = GOOD.drop(columns=[TARGET])
    assert contract_failures(unlabeled, CONTRACT, optional=[TARGET]) == []
    assert any(TARGET in f for f in contract_failures(unlabeled, CONTRACT))
    bare = load_contract(CONTRACT_FILE)  # no label declared: optional tolerates its presence
    assert contract_failures(GOOD, bare, optional=[TARGET]) == []
    assert contract_failures(GOOD, bare) == [f"{TARGET}: column not in the contract (strict: true)"]


def test_lenient_where_file_formats_force_it() -> None:
    data = GOOD.copy()
    data["age"] = data["age"].astype(float)  # whole numbers stored as float pass as int
    data["income"] = data["income"].fillna(0).round().astype(np.int64)  # int passes as float
    data["region"] = data["region"].astype("category")  # pandas category passes as category
    assert contract_failures(data, CONTRACT) == []


def test_contract_failures_does_not_mutate_its_input() -> None:
    data = with_values("income", [1], np.inf)
    before = data.copy()
    contract_failures(data, CONTRACT)
    pd.testing.assert_frame_equal(data, before)


def test_non_strict_contract_ignores_extra_columns() -> None:
    loose = dataclasses.replace(CONTRACT, strict=False)
    assert contract_failures(GOOD.assign(extra=1), loose) == []


# --------------------------------------------------------------------------- run() and CLI


def test_run_writes_validation_summary(workdir: Path) -> None:
    assert main(["ingest"]) == 0
    assert main(["validate"]) == 0
    summary = json.loads((workdir / PARAMS.paths.validation).read_text())
    features = validate.feature_columns(PARAMS)
    strongest = summary["target_leak"].pop("strongest_single_column")
    assert summary == {
        "passed": True,
        "rows": 2000,
        "columns": 13,
        "checks": validate.count_checks(CONTRACT) + len(features),  # one leak score per feature
        "target_leak": {"metric": "roc_auc", "max_score": 0.98},
    }
    assert strongest["column"] in features
    assert 0.5 < strongest["score"] < 0.9  # the generator's best honest feature


# In paths.source_dir: ingest refuses a source DVC would not track (tests/unit/test_ingest.py).
SOURCE = f"{PARAMS.paths.source_dir}/source.csv"


def csv_source(workdir: Path, text: str) -> str:
    (workdir / SOURCE).parent.mkdir(parents=True, exist_ok=True)
    (workdir / SOURCE).write_text(text)
    set_param(workdir / "params.yaml", "source", SOURCE)
    return SOURCE


def good_csv(rows: int = 1500) -> str:
    return GOOD.head(rows).to_csv(index=False)


def replace_cell(text: str, row: int, column: str, value: str) -> str:
    lines = text.splitlines()
    header = lines[0].split(",")
    cells = lines[row + 1].split(",")
    cells[header.index(column)] = value
    lines[row + 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


def drop_csv_column(text: str, column: str) -> str:
    lines = [line.split(",") for line in text.splitlines()]
    index = lines[0].index(column)
    return "\n".join(",".join(c for i, c in enumerate(cells) if i != index) for cells in lines)


BAD_CSVS = {
    "header only": (good_csv().splitlines()[0] + "\n", "dataset: 0 rows (header only?)"),
    "missing column": (drop_csv_column(good_csv(), "debt_ratio"), "debt_ratio: column missing"),
    "extra column": (
        good_csv().replace("\n", ",x\n").replace(",x\n", ",notes\n", 1),
        "notes: column not in the contract",
    ),
    "wrong dtype": (replace_cell(good_csv(), 5, "age", "forty"), "age: expected int, got str"),
    "nan": (replace_cell(good_csv(), 5, "age", ""), "age: 1 null values"),
    "inf": (replace_cell(good_csv(), 5, "loan_amount", "inf"), "loan_amount: 1 infinite values"),
    "unseen category": (
        replace_cell(good_csv(), 5, "region", "atlantis"),
        "region: 1 values in unseen categories 'atlantis'",
    ),
    "out of range": (
        replace_cell(good_csv(), 5, "debt_ratio", "7.5"),
        "debt_ratio: 1 values above max 3",
    ),
    "too few rows": (good_csv(rows=20), "dataset: 20 rows, the contract requires at least 1000"),
    "duplicate ids": (
        replace_cell(good_csv(), 6, "application_id", "S7-00000001"),
        "application_id: 2 rows share 1 duplicated values",
    ),
    "bad date": (
        replace_cell(good_csv(), 6, "applied_at", "31/12/2025"),
        "applied_at: expected datetime, got str (1 values are not ISO 8601 dates",
    ),
    "bad label": (replace_cell(good_csv(), 6, TARGET, "2"), f"{TARGET}: 1 values above max 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_data_exits_1_names_the_column_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    text, message = BAD_CSVS[case]
    csv_source(workdir, text)
    assert main(["ingest"]) == 0
    capsys.readouterr()
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "data contract check(s) failed" in err
    assert not (workdir / PARAMS.paths.validation).exists()


def test_empty_file_exits_2_at_ingest_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = csv_source(workdir, "")
    assert main(["ingest"]) == 2
    assert f"{source}: file is empty" in capsys.readouterr().err
    assert main(["validate"]) == 2  # no raw data: an input error, not a pass
    assert f"{PARAMS.paths.raw}: file not found" in capsys.readouterr().err
    assert [p for p in (workdir / "data").rglob("*") if p.is_file()] == [workdir / SOURCE]
    assert not (workdir / "models").exists()


def test_several_failures_are_listed_together(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = GOOD.copy()
    data.loc[0, "age"] = 200
    data.loc[1, "region"] = "mars"
    data.loc[2, "loan_amount"] = np.inf
    write_table(workdir / PARAMS.paths.raw, data)
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "3 data contract check(s) failed" in err
    for expected in ("age: 1 values above max 100", "region: 1 values", "loan_amount: 1 inf"):
        assert expected in err


def test_contract_error_exits_2_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest"]) == 0
    contract = workdir / PARAMS.paths.contract
    contract.write_text(contract.read_text().replace("min_rows:", "min_row:"))
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    where = f"{PARAMS.paths.contract}: (top level): "
    assert f"{where}Additional properties are not allowed ('min_row' was unexpected)" in err
    assert f"{where}'min_rows' is a required property" in err
    assert PARAMS.paths.contract in err
    assert not (workdir / PARAMS.paths.validation).exists()


def test_validate_through_the_real_entry_point(workdir: Path) -> None:
    csv_source(workdir, replace_cell(good_csv(), 3, "sex", "unknown"))
    env = {"PYTHONPATH": str(REPO_ROOT)}
    run(["python", "-m", "pipeline", "ingest"], workdir, env=env)
    proc = run(["python", "-m", "pipeline", "validate"], workdir, env=env, check=False)
    assert proc.returncode == 1
    assert "sex: 1 values in unseen categories 'unknown'" in proc.stderr
    assert not (workdir / PARAMS.paths.validation).exists()


# --------------------------------------------------------------------------- degenerate labels


def _task(kind: str) -> validate.Task:
    return dataclasses.replace(PARAMS.task, type=kind)


@pytest.mark.parametrize(
    ("kind", "labels", "message"),
    [
        ("binary", [1, 1, 1], f"{TARGET}: a single class (1) in 3 labelled rows: a binary"),
        ("multiclass", ["a", "a", None], f"{TARGET}: a single class ('a') in 2 labelled rows"),
        ("regression", [2.5, 2.5, 2.5], f"{TARGET}: constant (2.5) in 3 labelled rows"),
        ("binary", [None, None, None], f"{TARGET}: no labelled rows (every value is null)"),
    ],
)
def test_degenerate_targets_are_named(kind: str, labels: list[object], message: str) -> None:
    data = pd.DataFrame({TARGET: labels, "x": [1, 2, 3]})
    [failure] = validate.target_failures(data, _task(kind))
    assert failure.startswith(message)


@pytest.mark.parametrize(
    ("kind", "labels"),
    [("binary", [0, 1, 1]), ("multiclass", ["a", "b", "c"]), ("regression", [1.0, 1.5, 2.0])],
)
def test_learnable_targets_pass(kind: str, labels: list[object]) -> None:
    assert validate.target_failures(pd.DataFrame({TARGET: labels}), _task(kind)) == []


def test_single_class_data_exits_1_at_validate_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every row passes the contract, but the label has one class: refused before training."""
    data = GOOD.copy()
    data[TARGET] = 0
    write_table(workdir / PARAMS.paths.raw, data)
    assert main(["validate"]) == 1
    err = capsys.readouterr().err
    assert f"{TARGET}: a single class (0) in {len(data)} labelled rows" in err
    assert not (workdir / PARAMS.paths.validation).exists()
    assert main(["features"]) == 2  # nothing downstream can run on it
    assert not (workdir / PARAMS.paths.train).exists()
