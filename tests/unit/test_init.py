"""pipeline/init.py: task/role/contract inference, comment-preserving edits, edit detection, and
bad inputs that exit 2 and write nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import ingest, init
from pipeline.cli import main
from pipeline.config import Task, load_params, parse_yaml, violations
from pipeline.errors import InputError
from pipeline.io import write_table
from tests.conftest import DEMO_ROOT, REPO_ROOT

# The template's params.yaml as a fresh fork has it (tests/demo/), not this checkout's own.
PARAMS_TEXT = (DEMO_ROOT / "params.yaml").read_text()
# The built-in dataset's task, spelled out: a fork's params.yaml (after init) names its own.
DEMO_TASK = Task(type="binary", target="default", positive_label=1, sensitive="sex")
# A small policy in the shipped layout (the repository's own may already be adapted by init).
PROMOTION_TEXT = """\
stages: # registry stages
  production: # customer-facing
    on_first_model: absolute_only # judge absolute rules only
    on_rollback: absolute_only # skip vs_holder
    require_data_contract: true # validation.json must pass
    require_lock_up_to_date: true # dvc.lock matches
    require_verified_model: true # model bytes match dvc.lock
    absolute: # bounds on metrics.json
      - metric: roc_auc # ranking quality
        min: 0.75 # minimum
      - metric: log_loss # calibration
        max: 0.60 # maximum
      - metric: recall # share caught
        min: 0.05 # some
    vs_holder: # against the champion
      - metric: roc_auc # may not drop much
        abs_tolerance: 0.005 # absolute
    slices: # per-slice bounds
      min_size: 100 # smaller slices are not judged
      rules: # one metric, its slice columns
        - metric: roc_auc # every large group
          columns: [region, employment] # from evaluate.slices
          min: 0.65 # floor
    fairness: # bounds on fairness.json
      - metric: demographic_parity_difference # selection-rate gap
        max: 0.10 # bound
        justification: Decisions must not favour one group markedly; agreed with compliance.
    benchmark: # budgets on benchmark.json
      - metric: model_size_bytes # file size
        max: 50000000 # 50 MB
"""


def series(values: list[object], name: str = "x", dtype: str | None = None) -> pd.Series:
    return pd.Series(values, name=name, dtype=dtype)


def table(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Every role once: id, timestamp text, numbers with gaps, codes, text, constant, label."""
    rng = np.random.default_rng(seed)
    i = np.arange(rows)
    income = rng.normal(50_000, 10_000, rows).round(2)
    income[i % 10 == 0] = np.nan
    return pd.DataFrame(
        {
            "customer_id": [f"C{k:05d}" for k in i],
            "signed_up": [f"2024-{1 + k % 12:02d}-{1 + k % 28:02d}T{k % 24:02d}:15:00" for k in i],
            "income": income,
            "tenure": rng.integers(0, 120, rows),
            "plan": np.array(["basic", "plus", "pro"])[i % 3],
            "rating": i % 4 + 1,
            "note": [f"free text number {k}" for k in rng.permutation(rows) // 2],
            "source": "web",
            "gender": np.array(["f", "m"])[i % 2],
            "churned": np.array(["no", "yes"])[((i * 7) % 5 == 0).astype(int)],
        }
    )


# --------------------------------------------------------------------------- task


@pytest.mark.parametrize(
    ("values", "task", "positive"),
    [
        ([0, 1] * 50, "binary", 1),
        (["no", "yes", "no", "no"] * 25, "binary", "yes"),
        ([True, False] * 50, "binary", True),
        (["a", "a", "a", "b"] * 25, "binary", "b"),  # no "yes"-like name: the rarer class
        ([0, 1, 2] * 50, "multiclass", None),
        (["low", "mid", "high"] * 50, "multiclass", None),
        (list(np.linspace(0, 1, 100)), "regression", None),
        (list(range(100)), "regression", None),  # whole numbers, but one per row: a quantity
    ],
)
def test_infer_task(values: list[object], task: str, positive: object) -> None:
    choice = init.infer_task(series(values))
    assert choice.type == task
    assert choice.positive_label == positive
    assert choice.reason


def test_infer_task_multiclass_needs_few_classes_for_the_rows() -> None:
    # 20 classes in 200 rows is 10% of the rows: an integer quantity, not classes
    assert init.infer_task(series(list(range(20)) * 10)).type == "regression"
    assert init.infer_task(series(list(range(20)) * 30)).type == "multiclass"


def test_task_override_is_honoured_when_the_values_allow_it() -> None:
    choice = init.infer_task(series([0, 1, 2] * 20), "regression")
    assert (choice.type, choice.reason) == ("regression", "set by --task")


@pytest.mark.parametrize(
    ("values", "task", "message"),
    [
        ([0, 1, 2] * 20, "binary", "3 distinct values, not 2"),
        ([0, 1] * 20, "multiclass", "use binary"),
        ([0.5, 1.5, 2.25] * 20, "multiclass", "fractional"),
        (["a", "b", "c"] * 20, "regression", "not numeric"),
        ([0, 1] * 20, "ranking", "unknown task 'ranking'"),
        ([1] * 40, None, "single value"),
        ([0, 1, None] * 20, None, "20 empty value(s)"),
    ],
)
def test_infer_task_rejects(values: list[object], task: str | None, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        init.infer_task(series(values, name="y"), task)


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("values", "name", "role", "why"),
    [
        (list(np.linspace(0, 1, 50)), "score", "numeric", "50 distinct"),
        ([1, 2, 3] * 20, "rating", "categorical", "codes"),
        (list(range(0, 100, 2)) * 2, "tenure", "numeric", "whole numbers"),
        (["red", "blue"] * 30, "colour", "categorical", "2 values"),
        ([True, False] * 30, "flag", "categorical", "true/false"),
        ([3, 1, 2, 3] * 15, "customer_id", "identifier", "name"),
        ([f"k{i}" for i in range(60)], "key_text", "identifier", "every row"),
        (list(range(1, 61)), "row", "identifier", "row number"),
        (["same"] * 60, "source", "constant", "single value"),
        ([None] * 60, "blank", "constant", "empty"),
        (["2024-01-05", "2024-02-06"] * 30, "day", "datetime", "ISO 8601"),
        (["05/01/2024", "06/02/2024"] * 30, "day", "categorical", "2 values"),  # not ISO
        ([f"w{i}" for i in range(200)] * 2, "comment", "text", "free text"),
        ([100, 250, 75] * 20, "amount_paid", "categorical", "codes"),  # "paid" is no id
    ],
)
def test_infer_role(values: list[object], name: str, role: str, why: str) -> None:
    got_role, reason = init.infer_role(series(values, name=name))
    assert got_role == role
    assert why in reason


def test_datetime64_column_and_its_parts() -> None:
    stamps = pd.Series(pd.date_range("2024-01-01", periods=60, freq="7h"), name="at")
    assert init.infer_role(stamps)[0] == "datetime"
    assert init.datetime_parts(stamps)[0] == ("month", "dayofweek", "hour")
    days = pd.Series(pd.date_range("2024-01-01", periods=60, freq="D"), name="at")
    assert init.datetime_parts(days)[0] == ("month", "dayofweek")


def test_infer_roles_target_and_sensitive_are_never_features() -> None:
    roles = {r.name: r for r in init.infer_roles(table(), "churned", "gender")}
    assert roles["churned"].role == "target"
    assert roles["gender"].role == "sensitive"
    assert not roles["churned"].is_feature
    assert not roles["gender"].is_feature
    assert [n for n, r in roles.items() if r.is_feature] == [
        "signed_up",
        "income",
        "tenure",
        "plan",
        "rating",
    ]
    assert roles["customer_id"].role == "identifier"
    assert roles["note"].role == "text"
    assert roles["source"].role == "constant"
    assert roles["signed_up"].dtype == "datetime"
    assert roles["gender"].dtype == "category"


def test_infer_on_the_default_generator_data_recovers_the_shipped_declaration() -> None:
    generator = load_params(DEMO_ROOT / "params.yaml").ingest.generator
    frame = ingest.generate(dataclasses.replace(generator, rows=3000), DEMO_TASK)
    found = init.infer(frame, DEMO_TASK.target, sensitive=DEMO_TASK.sensitive)
    roles = {r.name: r.role for r in found.roles}
    assert found.task.type == "binary"
    assert found.task.positive_label == 1
    assert roles["application_id"] == "identifier"
    assert found.datetime_parts == {"applied_at": ("month", "dayofweek", "hour")}
    assert {c for c, r in roles.items() if r == "categorical"} == {
        "region",
        "employment",
        "home_ownership",
    }
    assert {c for c, r in roles.items() if r == "numeric"} >= {"income", "loan_amount", "age"}
    assert set(found.slices) == {"region", "employment", "home_ownership"}
    assert init.self_check(frame, found.contract) == []


def test_resolve_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    (root / "data" / "source").mkdir(parents=True)
    monkeypatch.chdir(root)
    for given in (str(root / "data" / "source" / "x.csv"), "data/source/x.csv"):
        assert init.resolve_source(given, root, "data/source") == "data/source/x.csv"
    assert init.resolve_source("data/source/../source/x.csv", root, "data/source") == (
        "data/source/x.csv"
    )
    url = "https://example.com/x.parquet"
    assert init.resolve_source(url, root, "data/source") == url
    with pytest.raises(InputError, match=r"cp data/x\.csv data/source/"):
        init.resolve_source("data/x.csv", root, "data/source")


def test_slices_are_low_cardinality_categoricals() -> None:
    found = init.infer(table(), "churned", sensitive="gender")
    assert found.slices == ("plan", "rating")
    assert found.stratify is True


def test_regression_is_never_stratified() -> None:
    frame = table().assign(spend=np.linspace(0, 99, 200))
    found = init.infer(frame.drop(columns="churned"), "spend")
    assert (found.task.type, found.stratify) == ("regression", False)


@pytest.mark.parametrize(
    ("frame", "kwargs", "message"),
    [
        (table(), {"target": "missing"}, "column 'missing' is not in the table"),
        (table(), {"target": "churned", "sensitive": "nope"}, "'nope' is not in the table"),
        (table(), {"target": "churned", "sensitive": "churned"}, "cannot be the target"),
        (table(), {"target": "churned", "sensitive": "income"}, "bin it"),
        (table(10), {"target": "churned"}, "at least 20"),
        (table().iloc[:0], {"target": "churned"}, "no rows"),
        (table()[["customer_id", "churned"]], {"target": "churned"}, "no usable feature"),
    ],
)
def test_infer_rejects(frame: pd.DataFrame, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        init.infer(frame, **kwargs)


# --------------------------------------------------------------------------- contract


def test_numeric_bounds_widen_by_the_margin_and_round_outwards() -> None:
    low, high, notes = init.numeric_bounds(series([10.0, 20.0]))
    assert (low, high) == (9.0, 21.0)
    assert "minus 10%" in notes["min"]
    assert init.numeric_bounds(series([-10.0, 10.0]))[:2] == (-12.0, 12.0)
    # no negative value seen: the floor stays at 0
    low, _, notes = init.numeric_bounds(series([1.0, 100.0]))
    assert low == 0.0
    assert "not below 0" in notes["min"]
    # ints get int bounds
    assert init.numeric_bounds(series([18, 95]))[:2] == (10, 103)
    # 3 significant digits, never inside the margin'd range
    low, high, _ = init.numeric_bounds(series([6.981, 28.11]))
    assert (low, high) == (4.86, 30.3)


def test_numeric_bounds_always_contain_the_data() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        values = rng.normal(rng.normal(0, 1000), abs(rng.normal(0, 100)) + 1e-6, 30)
        low, high, _ = init.numeric_bounds(series(list(values)))
        assert low <= values.min()
        assert values.max() <= high


@pytest.mark.parametrize(
    ("nulls", "allowed"), [(0, 0.0), (2, 0.04), (10, 0.2), (60, 1.0), (100, 1.0)]
)
def test_null_allowance(nulls: int, allowed: float) -> None:
    values = [None] * nulls + [1.0] * (100 - nulls)
    assert init.null_allowance(series(values))[0] == allowed


def test_contract_lists_every_column_with_its_checks() -> None:
    frame = table()
    roles = init.infer_roles(frame, "churned", "gender")
    contract, notes = init.infer_contract(frame, roles)
    assert contract["min_rows"] == 100
    assert contract["strict"] is True
    columns = contract["columns"]
    assert list(columns) == list(frame.columns)
    assert columns["customer_id"] == {"dtype": "string", "unique": True, "max_null_fraction": 0.0}
    assert columns["plan"]["allowed"] == ["basic", "plus", "pro"]
    assert columns["churned"]["allowed"] == ["no", "yes"]
    assert columns["income"]["max_null_fraction"] == 0.2  # 10% seen, twice that allowed
    assert columns["signed_up"]["dtype"] == "datetime"
    assert "10.0% empty" in notes["income"]["max_null_fraction"]
    rendered = init.render_contract(contract, notes, source="x.csv", rows=len(frame))
    assert violations(parse_yaml(rendered, "c"), "contract", "c") == []
    assert parse_yaml(rendered, "c") == contract
    assert init.self_check(frame, contract) == []


def test_min_rows_is_capped_so_production_batches_can_pass() -> None:
    frame = pd.concat([table()] * 15, ignore_index=True)
    contract, _ = init.infer_contract(frame, init.infer_roles(frame, "churned", None))
    assert contract["min_rows"] == init.MIN_ROWS_CAP


def test_inferred_contract_passes_on_its_own_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    write_table(path, table())
    frame = pd.read_csv(path)
    found = init.infer(frame, "churned", sensitive="gender")
    assert init.self_check(frame, found.contract) == []


# --------------------------------------------------------------------------- params.yaml edits


def comments(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def test_edit_params_keeps_every_comment_and_every_other_key() -> None:
    values = {
        "ingest.source": "data/source/mine.csv",
        "task.type": "regression",
        "task.positive_label": None,
        "task.sensitive": None,
        "split.stratify": False,
        "features.numeric": [f"column number {i}" for i in range(12)],
        "features.categorical": [],
        "features.datetime": {},
        "evaluate.slices": ["a: b"],
    }
    edited = init.edit_params(PARAMS_TEXT, values)
    assert comments(edited) == comments(PARAMS_TEXT)
    before, after = parse_yaml(PARAMS_TEXT, "p"), parse_yaml(edited, "p")
    for dotted, value in values.items():
        assert init.get_key(after, dotted) == value
    for section in ("project", "paths", "train"):
        assert after[section] == before[section]
    assert after["ingest"]["generator"] == before["ingest"]["generator"]
    assert "  positive_label: null # class" in edited
    assert "  datetime: {} # timestamp column" in edited
    assert "    - column number 11\n" in edited  # long lists: one name per line
    assert init.edit_params(PARAMS_TEXT, {}) == PARAMS_TEXT


# --------------------------------------------------------------------------- promotion policy


def test_adapt_promotion_for_regression_without_sensitive_attribute() -> None:
    text, notes = init.adapt_promotion(PROMOTION_TEXT, "regression", [], None)
    doc = parse_yaml(text, "promotion")
    assert violations(doc, "promotion", "promotion") == []
    for stage in doc["stages"].values():
        assert [r["metric"] for r in stage["absolute"]] == ["r2"]
        assert [r["metric"] for r in stage["vs_holder"]] == ["rmse"]
        assert stage["slices"]["rules"] == []
        assert stage["fairness"] == []
        assert stage["benchmark"]  # task-independent budgets stay
    assert any("dropped the rule on roc_auc" in n for n in notes)


def test_adapt_promotion_keeps_rules_that_still_apply() -> None:
    text, notes = init.adapt_promotion(PROMOTION_TEXT, "binary", ["region", "employment"], "sex")
    assert (text, notes) == (PROMOTION_TEXT, [])
    text, notes = init.adapt_promotion(PROMOTION_TEXT, "multiclass", ["region"], "sex")
    doc = parse_yaml(text, "promotion")
    production = doc["stages"]["production"]
    assert production["slices"]["rules"][0]["columns"] == ["region"]
    assert [r["metric"] for r in production["fairness"]] == []  # binary-only gaps dropped
    assert [r["metric"] for r in production["absolute"]] == ["roc_auc", "log_loss", "recall"]
    assert comments(text)[:12] == comments(PROMOTION_TEXT)[:12]


# --------------------------------------------------------------------------- edit detection


def test_hand_edits() -> None:
    current = dict.fromkeys(init.MANAGED_KEYS, 1) | {"ingest.source": "generator"}
    new = current | {"features.numeric": 2}
    # never initialised, still on the generator: the demo setup may be replaced
    assert init.hand_edits(None, current, new, "c.yaml", b"old", b"new") == []
    # never initialised, but pointed at other data by hand: refuse
    mine = current | {"ingest.source": "mine.csv"}
    assert init.hand_edits(None, mine, new, "c.yaml", b"old", b"new") == [
        "params.yaml (ingest.source, features.numeric)",
        "c.yaml",
    ]
    state = init.state_document(current, "c.yaml", b"old")
    assert init.hand_edits(state, current, new, "c.yaml", b"old", b"new") == []
    edited = current | {"features.numeric": 3, "train.kwargs": 5}
    # train.kwargs was edited too, but init does not change it: only features.numeric counts
    new = edited | {"features.numeric": 2}
    assert init.hand_edits(state, edited, new, "c.yaml", b"mine", b"new") == [
        "params.yaml (features.numeric)",
        "c.yaml",
    ]
    # an edited contract that init would leave as it is is no conflict
    assert init.hand_edits(state, current, new, "c.yaml", b"same", b"same") == []


# --------------------------------------------------------------------------- the command


def project(tmp_path: Path, source: str = "generator") -> Path:
    """params.yaml and policies/ of the template in a scratch directory, as init finds them in
    a fresh copy: the built-in generator as source and no record of an earlier init."""
    root = tmp_path / "project"
    (root / "policies").mkdir(parents=True)
    (root / "params.yaml").write_text(init.edit_params(PARAMS_TEXT, {"ingest.source": source}))
    for policy in (DEMO_ROOT / "policies").glob("*.yaml"):
        shutil.copy(policy, root / "policies" / policy.name)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "data" not in p.relative_to(root).parts
    }


def cli(root: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(root)
    return main(["init", *args])


def test_init_writes_params_contract_policy_and_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    write_table(root / "data" / "source" / "mine.parquet", table())
    args = ("--data", "data/source/mine.parquet", "--target", "churned", "--sensitive", "gender")
    before = snapshot(root)
    assert cli(root, *args, "--dry-run", monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out
    assert snapshot(root) == before

    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "customer_id" in out
    assert "identifier" in out
    assert "free text" in out
    assert "task: binary" in out
    assert "positive_label: 'yes'" in out
    params = load_params(root / "params.yaml")
    assert params.ingest.source == "data/source/mine.parquet"
    assert params.ingest.source_sha256 is None  # DVC hashes a file in data/source/ itself
    assert (params.task.target, params.task.sensitive) == ("churned", "gender")
    assert params.features.categorical == ("plan", "rating")
    assert dict(params.features.datetime) == {"signed_up": ("month", "dayofweek", "hour")}
    state = json.loads((root / init.STATE_FILE).read_text())
    assert state["params"]["task.target"] == "churned"
    contract = parse_yaml((root / "policies" / "contract.yaml").read_text(), "c")
    assert set(contract["columns"]) == set(table().columns)

    # same inputs again: nothing left to change, nothing written
    after = snapshot(root)
    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    assert "wrote: nothing" in capsys.readouterr().out
    assert snapshot(root) == after


def test_init_refuses_to_overwrite_hand_edits_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    write_table(root / "data" / "source" / "mine.csv", table())
    args = ("--data", "data/source/mine.csv", "--target", "churned", "--sensitive", "gender")
    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    params_file = root / "params.yaml"
    text = params_file.read_text()
    # a hand edit init would not touch (a model setting) is no conflict and survives
    params_file.write_text(text.replace("max_iter: 200", "max_iter: 300"))
    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    assert "max_iter: 300" in params_file.read_text()
    # hand edits to a managed key and to the contract: refused, nothing written
    edited = params_file.read_text().replace("categorical: [plan, rating]", "categorical: [plan]")
    params_file.write_text(edited)
    contract = root / "policies" / "contract.yaml"
    contract.write_text(contract.read_text() + "# my note\n")
    capsys.readouterr()
    before = snapshot(root)
    frame = table().assign(extra=1.5 * np.arange(200))
    write_table(root / "data" / "source" / "mine.csv", frame)
    assert cli(root, *args, monkeypatch=monkeypatch) == 2
    err = capsys.readouterr().err
    assert "params.yaml (features.categorical" in err
    assert "policies/contract.yaml" in err
    assert "--force" in err
    assert snapshot(root) == before
    assert cli(root, *args, "--force", monkeypatch=monkeypatch) == 0
    assert "categorical: [plan, rating]" in params_file.read_text()
    assert "extra" in contract.read_text()


def test_init_refuses_a_hand_made_setup_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path, source="x.csv")
    write_table(root / "data" / "source" / "mine.csv", table())
    before = snapshot(root)
    args = ("--data", "data/source/mine.csv", "--target", "churned", "--sensitive", "gender")
    assert cli(root, *args, monkeypatch=monkeypatch) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert snapshot(root) == before


def test_no_sensitive_attribute_sets_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Needs params.schema.json to allow `task.sensitive: null` (see the issue 7 report)."""
    root = project(tmp_path)
    write_table(root / "data" / "source" / "mine.csv", table())
    data = ("--data", "data/source/mine.csv")
    assert cli(root, *data, "--target", "churned", monkeypatch=monkeypatch) == 0
    assert "task.sensitive: null" in capsys.readouterr().out
    assert "  sensitive: null # " in (root / "params.yaml").read_text()


def _garbage(root: Path) -> Path:
    path = root / "data" / "source" / "noise.parquet"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _text(root: Path) -> Path:
    path = root / "data" / "source" / "notes.txt"
    path.write_text("not a table\n")
    return path


def _empty(root: Path) -> Path:
    path = root / "data" / "source" / "empty.csv"
    path.write_bytes(b"")
    return path


def _header_only(root: Path) -> Path:
    path = root / "data" / "source" / "header.csv"
    path.write_text("a,b,churned\n")
    return path


def _one_class(root: Path) -> Path:
    path = root / "data" / "source" / "one.csv"
    write_table(path, table().assign(churned="no"))
    return path


def _good(root: Path) -> Path:
    path = root / "data" / "source" / "good.csv"
    write_table(path, table())
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (_good, ("--target", "nope"), "column 'nope' is not in the table"),
        (_one_class, ("--target", "churned"), "single value"),
        (_garbage, ("--target", "churned"), "cannot read as parquet"),
        (_text, ("--target", "churned"), "unsupported table format '.txt'"),
        (_empty, ("--target", "churned"), "file is empty"),
        (_header_only, ("--target", "churned"), "no rows"),
        (_good, ("--target", "churned", "--task", "ranking"), "invalid choice: 'ranking'"),
        (_good, ("--target", "churned", "--task", "regression"), "not numeric"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: object,
    extra: tuple[str, ...],
    message: str,
) -> None:
    root = project(tmp_path)
    (root / "data" / "source").mkdir(parents=True)
    data = make(root)  # type: ignore[operator]
    before = snapshot(root)
    assert (
        cli(root, "--data", str(data), "--sensitive", "gender", *extra, monkeypatch=monkeypatch)
        == 2
    )
    assert message in capsys.readouterr().err
    assert snapshot(root) == before
    assert not (root / init.STATE_FILE).exists()


# --------------------------------------------------------------------------- where the data is
# Issue 17, item 6: ingest reads only what DVC hashes, a file in paths.source_dir (data/source/)
# or a URL pinned by its sha256, so init refuses any other file before it writes anything.


def files(root: Path) -> dict[str, str]:
    """Every file and symlink under `root`, data included (symlinks not followed)."""
    return {
        p.relative_to(root).as_posix(): (
            f"-> {p.readlink()}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def _outside_absolute(root: Path, outside: Path) -> str:
    return str(outside)


def _outside_relative(root: Path, outside: Path) -> str:
    return f"../{outside.name}"


def _in_the_repository_not_in_data_source(root: Path, outside: Path) -> str:
    (root / "data").mkdir()
    shutil.copy(outside, root / "data" / "x.csv")
    return "data/x.csv"


@pytest.mark.parametrize(
    "make", [_outside_absolute, _outside_relative, _in_the_repository_not_in_data_source]
)
def test_init_refuses_a_file_outside_data_source_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make: object,
) -> None:
    root = project(tmp_path)
    outside = tmp_path / "x.csv"
    write_table(outside, table())
    data = make(root, outside)  # type: ignore[operator]
    before = files(tmp_path)  # params.yaml, policies/, the data, and what lies beside the copy
    assert cli(root, "--data", data, "--target", "churned", monkeypatch=monkeypatch) == 2
    assert (
        f"error: --data {data} is not under data/source/, the folder the ingest stage depends "
        f"on in dvc.yaml, so DVC would not see it change: copy it there (cp {data} data/source/) "
        "and rerun init with --data data/source/x.csv"
    ) in capsys.readouterr().err
    assert files(tmp_path) == before
    assert not (root / init.STATE_FILE).exists()


def test_init_refuses_a_symlink_in_data_source_to_a_file_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    outside = tmp_path / "x.csv"
    write_table(outside, table())
    (root / "data" / "source").mkdir(parents=True)
    (root / "data" / "source" / "x.csv").symlink_to(outside)
    before = files(tmp_path)
    args = ("--data", "data/source/x.csv", "--target", "churned")
    assert cli(root, *args, monkeypatch=monkeypatch) == 2
    assert (
        f"error: --data data/source/x.csv is really {outside} (data/source/x.csv is a symlink "
        f"to {outside}), outside data/source/ in the repository, so DVC would not see it change: "
        "put the file itself there, not a symlink"
    ) in capsys.readouterr().err
    assert files(tmp_path) == before


def test_init_with_a_url_pins_the_sha256_of_the_bytes_it_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    http_dir: tuple[str, Path],
) -> None:
    url, served = http_dir
    write_table(served / "mine.csv", table())
    pin = hashlib.sha256((served / "mine.csv").read_bytes()).hexdigest()
    root = project(tmp_path)
    args = ("--data", f"{url}/mine.csv", "--target", "churned")
    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    assert f'ingest.source_sha256: null -> "{pin}"' in capsys.readouterr().out
    params = load_params(root / "params.yaml")
    assert (params.ingest.source, params.ingest.source_sha256) == (f"{url}/mine.csv", pin)
    assert json.loads((root / init.STATE_FILE).read_text())["params"]["ingest.source_sha256"] == pin
    # what init pinned, ingest accepts: the pipeline's first run reads the same bytes
    assert main(["ingest"]) == 0
    assert len(pd.read_parquet(root / params.paths.raw)) == len(table())


PIN_LINES = """\
  # A URL source's sha256 (64 lowercase hex; `init` writes it): required for a URL, null
  # otherwise. DVC cannot hash a URL, so ingest refuses bytes that differ from this pin.
  source_sha256: null
"""


def test_init_adds_the_pin_to_a_params_file_written_before_it_existed() -> None:
    assert PIN_LINES in PARAMS_TEXT
    older = PARAMS_TEXT.replace(PIN_LINES, "")
    assert init.current_values(parse_yaml(older, "p"))["ingest.source_sha256"] is None
    assert init.edit_params(older, {"ingest.source_sha256": None}) == older
    pin = "ab" * 32
    edited = init.edit_params(
        older, {"ingest.source": "https://example.com/x.csv", "ingest.source_sha256": pin}
    )
    doc = parse_yaml(edited, "p")
    assert list(doc["ingest"]) == ["source", "source_sha256", "generator"]
    assert doc["ingest"]["source_sha256"] == pin
    assert violations(doc, "params", "p") == []
    # a state file written before the key existed recorded it as null, not as a hand edit
    current = init.current_values(parse_yaml(older, "p"))
    state = init.state_document(current, "c.yaml", b"c")
    del state["params"]["ingest.source_sha256"]
    new = current | {"ingest.source_sha256": pin}
    assert init.hand_edits(state, current, new, "c.yaml", b"c", b"c") == []


def test_init_leaves_a_target_leak_out_of_the_features_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    frame = table()
    # the label under another name (a status code the collections system sets afterwards)
    leaky = frame.assign(closed_as=frame["churned"].map({"no": 0, "yes": 7}))
    write_table(root / "data" / "source" / "mine.csv", leaky)
    args = ("--data", "data/source/mine.csv", "--target", "churned", "--sensitive", "gender")
    assert cli(root, *args, monkeypatch=monkeypatch) == 0
    out = capsys.readouterr().out
    assert "closed_as" in out
    assert "alone predicts 'churned' with roc_auc 1.000: a target leak" in out
    params = load_params(root / "params.yaml")
    assert "closed_as" not in params.features.numeric
    assert "closed_as" not in params.features.categorical
    assert params.features.numeric  # the honest numeric features stay
    contract = parse_yaml((root / "policies" / "contract.yaml").read_text(), "c")
    assert contract["target_leak"] == {"max_score": 0.98, "allow": []}
    assert "closed_as" in contract["columns"]  # still checked as data, just not a feature
    assert "suspected target leak" in (root / "policies" / "contract.yaml").read_text()


# --------------------------------------------------------------------------- dvc.yaml plots


def declared_plots(text: str) -> list[str]:
    return [str(next(iter(entry))) for entry in parse_yaml(text, "dvc.yaml").get("plots", [])]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_dvc_plots_are_the_tasks_and_nothing_else_changes(task: str) -> None:
    from pipeline.evaluate import PLOTS

    live = (REPO_ROOT / "dvc.yaml").read_text()
    mine = "  - my_plots/lift.json:\n      x: decile\n      y: lift\n"
    text = live.replace(
        "\n\n# The model as a DVC artifact", "\n" + mine + "\n# The model as a DVC artifact"
    )
    assert text != live
    edited = init.edit_dvc_plots(text, task)
    expected = [f"${{paths.plots}}/{stem}.json" for stem in PLOTS[task]]
    assert declared_plots(edited) == [*expected, "my_plots/lift.json"]  # yours kept, last
    assert init.edit_dvc_plots(edited, task) == edited
    # every line outside the plots block is untouched, comments included
    outside = [line for line in text.splitlines() if not line.startswith(" ") or "cmd:" in line]
    assert [
        line for line in edited.splitlines() if not line.startswith(" ") or "cmd:" in line
    ] == outside
    no_plots = "stages: {}\n"
    assert init.edit_dvc_plots(no_plots, task) == no_plots


def test_the_shipped_dvc_yaml_declares_the_plots_of_its_task() -> None:
    """A declared plot file the task never writes makes every `dvc plots` call fail to load."""
    live = (REPO_ROOT / "dvc.yaml").read_text()
    task = load_params(REPO_ROOT / "params.yaml").task.type
    assert init.edit_dvc_plots(live, task) == live


def test_init_rewrites_the_plots_for_a_new_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    shutil.copy(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"size": rng.normal(100, 20, 300), "rooms": rng.integers(1, 6, 300)})
    frame["price"] = frame["size"] * 3 + rng.normal(0, 40, 300)
    write_table(root / "data" / "source" / "homes.csv", frame)
    assert cli(root, "--data", "data/source/homes.csv", "--target", "price",
               monkeypatch=monkeypatch) == 0  # fmt: skip
    assert "dvc.yaml" in capsys.readouterr().out
    plots = declared_plots((root / "dvc.yaml").read_text())
    assert plots == ["${paths.plots}/residuals.json", "${paths.plots}/predicted_vs_actual.json"]
