"""pipeline/ingest.py: the seeded generator, its drift knobs, file/URL sources, `generate` CLI."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from pipeline import ingest
from pipeline.cli import STAGES, main
from pipeline.config import Generator, Params, Task, load_params
from pipeline.errors import ConfigError, InputError, UsageError
from pipeline.io import write_table
from tests.conftest import DEMO_ROOT, REPO_ROOT, run, set_param

PARAMS = load_params(DEMO_ROOT / "params.yaml")
TASK = PARAMS.task
BASE = dataclasses.replace(PARAMS.ingest.generator, rows=6000)
FEATURES = [
    "age",
    "income",
    "debt_ratio",
    "credit_history_months",
    "open_accounts",
    "loan_amount",
    "region",
    "employment",
    "home_ownership",
]


def gen(rows: int = 6000, seed: int = 7, task: Task = TASK, **drift: object) -> pd.DataFrame:
    generator = dataclasses.replace(
        BASE, rows=rows, seed=seed, drift=dataclasses.replace(BASE.drift, **drift)
    )
    return ingest.generate(generator, task)


def task_of(kind: str) -> Task:
    return dataclasses.replace(TASK, type=kind, positive_label=1 if kind == "binary" else None)


@functools.cache
def model() -> HistGradientBoostingClassifier:
    """Gradient boosting fit once on clean training data (one thread: the test box is shared)."""
    frame = gen(rows=12000, seed=1)
    estimator = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=100, random_state=0
    )
    with threadpool_limits(1):
        return estimator.fit(design(frame), frame[TASK.target])


def design(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame[FEATURES].copy()
    x["month"] = frame["applied_at"].dt.month
    for column in ("region", "employment", "home_ownership"):
        x[column] = pd.Categorical(x[column], categories=list(ingest.CATEGORIES[column]))
    return x


def auc(frame: pd.DataFrame) -> float:
    with threadpool_limits(1):
        proba = model().predict_proba(design(frame))[:, 1]
    return float(roc_auc_score(frame[TASK.target], proba))


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frame_and_bytes(tmp_path: Path) -> None:
    first, second = gen(), gen()
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    write_table(tmp_path / "a.parquet", first)
    write_table(tmp_path / "b.parquet", second)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_different_seed_gives_different_data() -> None:
    a, b = gen(seed=1), gen(seed=2)
    assert not a["income"].equals(b["income"])
    assert not a["applied_at"].equals(b["applied_at"])
    assert set(a["application_id"]).isdisjoint(b["application_id"])  # batches never collide


def test_generate_does_not_depend_on_global_numpy_state() -> None:
    np.random.seed(0)
    a = gen(rows=500)
    np.random.seed(99)
    pd.testing.assert_frame_equal(a, gen(rows=500))


# --------------------------------------------------------------------------- shape and kinds


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_columns_and_kinds(kind: str) -> None:
    frame = gen(rows=3000, task=task_of(kind))
    assert list(frame.columns) == [*ingest.COLUMN_ORDER, TASK.target]
    assert len(frame) == 3000
    assert frame["application_id"].is_unique
    assert pd.api.types.is_string_dtype(frame["application_id"])
    assert pd.api.types.is_datetime64_dtype(frame["applied_at"])
    assert frame["applied_at"].is_monotonic_increasing  # rows arrive in time order
    start = pd.Timestamp(BASE.start)
    assert frame["applied_at"].min() >= start
    assert frame["applied_at"].max() < start + pd.Timedelta(days=BASE.days)
    for column in ingest.INTEGER_COLUMNS:
        assert pd.api.types.is_integer_dtype(frame[column]), column
    for column in ("income", "debt_ratio", "loan_amount"):
        assert pd.api.types.is_float_dtype(frame[column]), column
    for column, categories in ingest.CATEGORIES.items():
        # plain strings, not pandas 'category': identical through CSV and Parquet
        assert pd.api.types.is_string_dtype(frame[column]), column
        assert set(frame[column].dropna()) == set(categories), column
    assert frame["age"].between(18, 100).all()
    assert (frame["loan_amount"] >= 500).all()
    target = frame[TASK.target]
    assert target.notna().all()
    if kind == "binary":
        assert pd.api.types.is_integer_dtype(target)
        assert set(target) == {0, 1}
        assert 0.15 < target.mean() < 0.40  # imbalanced like real defaults, not degenerate
    elif kind == "multiclass":
        assert pd.api.types.is_string_dtype(target)
        shares = target.value_counts(normalize=True)
        assert set(shares.index) == {"low", "medium", "high"}
        assert shares.min() > 0.1
    else:
        assert pd.api.types.is_float_dtype(target)
        assert target.between(0, 100).all()
        assert target.std() > 5


def test_missing_values_follow_missing_rate() -> None:
    frame = gen(rows=20000)
    for column in ("income", "employment"):
        assert frame[column].isna().mean() == pytest.approx(BASE.missing_rate, abs=0.005)
    others = frame.drop(columns=["income", "employment"])
    assert not others.isna().any().any()
    none = ingest.generate(dataclasses.replace(BASE, rows=2000, missing_rate=0.0), TASK)
    assert not none.isna().any().any()


def test_binary_problem_is_learnable_but_not_trivial() -> None:
    score = auc(gen(rows=6000, seed=2))
    assert 0.78 < score < 0.92


def test_sensitive_attribute_correlates_moderately_with_outcome() -> None:
    frame = gen(rows=20000)
    rates = frame.groupby("sex")[TASK.target].mean()
    gap = rates["female"] - rates["male"]
    assert 0.02 < gap < 0.15  # measurable for fairness metrics, not a proxy for the label


def test_label_noise_makes_labels_less_predictable() -> None:
    clean = dataclasses.replace(BASE, rows=8000, label_noise=0.0)
    noisy = dataclasses.replace(BASE, rows=8000, label_noise=0.4)
    a, b = ingest.generate(clean, TASK), ingest.generate(noisy, TASK)
    pd.testing.assert_frame_equal(a[FEATURES], b[FEATURES])
    assert auc(b) < auc(a) - 0.1


# --------------------------------------------------------------------------- drift knobs


@pytest.mark.parametrize(("column", "k"), [("age", 0.5), ("debt_ratio", -0.5), ("income", 1.0)])
def test_covariate_shift_moves_the_mean_by_k_std(column: str, k: float) -> None:
    base = gen(rows=20000)
    shifted = gen(rows=20000, covariate_shift={column: k})
    moved = (shifted[column].mean() - base[column].mean()) / base[column].std()
    assert moved == pytest.approx(k, abs=0.1)
    others = [c for c in FEATURES if c != column]
    pd.testing.assert_frame_equal(base[others], shifted[others])  # only that column moves


def test_covariate_shift_keeps_labels_tied_to_the_same_rule() -> None:
    # P(y|x) is unchanged: riskier debt ratios raise the default rate instead of leaving it.
    base = gen(rows=20000)
    shifted = gen(rows=20000, covariate_shift={"debt_ratio": 1.0})
    assert shifted[TASK.target].mean() > base[TASK.target].mean() + 0.05


def test_category_shift_reweights_categories() -> None:
    base = gen(rows=20000)
    shifted = gen(rows=20000, category_shift={"region": {"north": 2.0, "south": 0.0}})
    share = shifted["region"].value_counts(normalize=True)
    others = sum(w for c, w in ingest.CATEGORIES["region"].items() if c not in {"north", "south"})
    assert share["north"] == pytest.approx(2.0 / (2.0 + others), abs=0.02)
    assert "south" not in share.index
    assert base["region"].value_counts(normalize=True)["north"] < 0.3


def test_category_shift_on_age_dependent_column() -> None:
    shifted = gen(rows=20000, category_shift={"employment": {"unemployed": 0.5}})
    base = gen(rows=20000)
    assert (shifted["employment"] == "unemployed").mean() > 3 * (
        base["employment"] == "unemployed"
    ).mean()


def test_prior_shift_moves_the_positive_rate() -> None:
    base = gen(rows=20000)[TASK.target].mean()
    up = gen(rows=20000, prior_shift=1.0)[TASK.target].mean()
    down = gen(rows=20000, prior_shift=-1.0)[TASK.target].mean()
    assert up > base + 0.08
    assert down < base - 0.06


def test_prior_shift_moves_multiclass_and_regression_targets() -> None:
    multi = task_of("multiclass")
    base = gen(rows=20000, task=multi)[TASK.target]
    up = gen(rows=20000, task=multi, prior_shift=1.0)[TASK.target]
    assert (up == "high").mean() > (base == "high").mean() + 0.08
    reg = task_of("regression")
    assert (
        gen(rows=5000, task=reg, prior_shift=1.0)[TASK.target].mean()
        > gen(rows=5000, task=reg)[TASK.target].mean() + 5
    )


def test_concept_drift_changes_the_label_relationship_not_the_features() -> None:
    fresh = gen(rows=8000, seed=12)
    drifted = gen(rows=8000, seed=12, concept_drift=1.0)
    pd.testing.assert_frame_equal(fresh[FEATURES], drifted[FEATURES])
    assert (fresh[TASK.target] != drifted[TASK.target]).mean() > 0.15
    before, after = auc(fresh), auc(drifted)
    assert before > 0.78
    assert after < before - 0.15
    half = auc(gen(rows=8000, seed=12, concept_drift=0.5))
    assert after < half < before  # a blend: more drift, worse model


def test_unknown_drift_column_or_category_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        gen(
            covariate_shift={"salary": 1.0, "region": 1.0},
            category_shift={"region": {"mars": 1.0}, "planet": {"x": 1.0}},
        )
    text = "\n".join(err.value.violations)
    for expected in (
        "covariate_shift.salary: not a numeric column",
        "covariate_shift.region: not a numeric column",
        "category_shift.region.mars: unknown category",
        "category_shift.planet: not a categorical column",
    ):
        assert expected in text


def test_generate_scales_to_many_rows() -> None:
    frame = ingest.generate(dataclasses.replace(BASE, rows=200_000), TASK)
    assert len(frame) == 200_000
    assert frame["application_id"].is_unique
    assert frame["application_id"].iloc[-1] == "S7-00200000"


# --------------------------------------------------------------------------- run() and sources


def params_in(work: Path) -> Params:
    return load_params(work / "params.yaml")


def test_run_writes_the_generated_frame(workdir: Path) -> None:
    assert main(["ingest"]) == 0
    params = params_in(workdir)
    written = pd.read_parquet(workdir / params.paths.raw)
    expected = ingest.generate(params.ingest.generator, params.task)
    pd.testing.assert_frame_equal(written, expected, check_exact=True)


def test_extra_batches_are_appended_in_name_order(workdir: Path) -> None:
    params = params_in(workdir)
    extra = workdir / params.paths.extra
    first = ingest.generate(
        ingest.override(params.ingest.generator, rows=300, seed=101), params.task
    )
    second = ingest.generate(
        ingest.override(params.ingest.generator, rows=200, seed=102), params.task
    )
    write_table(extra / "2025-02.csv", second)  # CSV: types restored from the contract
    write_table(extra / "2025-01.parquet", first)
    (extra / "README.md").write_text("not a batch")
    assert main(["ingest"]) == 0
    written = pd.read_parquet(workdir / params.paths.raw)
    base = ingest.generate(params.ingest.generator, params.task)
    assert len(written) == len(base) + 300 + 200
    pd.testing.assert_frame_equal(written.iloc[: len(base)], base, check_exact=True)
    tail = written.iloc[len(base) :].reset_index(drop=True)
    assert tail["application_id"].tolist() == [
        *first["application_id"].tolist(),
        *second["application_id"].tolist(),
    ]
    assert tail.dtypes.equals(base.dtypes)


def test_extra_batch_without_the_label_is_refused_and_nothing_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = params_in(workdir)
    unlabelled = ingest.generate(
        ingest.override(params.ingest.generator, rows=50, seed=5), params.task
    )
    write_table(workdir / params.paths.extra / "b.parquet", unlabelled.drop(columns=["default"]))
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert "b.parquet" in err
    assert "missing: ['default']" in err
    assert not (workdir / params.paths.raw).exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_source_round_trips(workdir: Path, suffix: str) -> None:
    params = params_in(workdir)
    expected = ingest.generate(params.ingest.generator, params.task)
    source = f"{params.paths.source_dir}/mydata{suffix}"
    write_table(workdir / source, expected)
    set_param(workdir / "params.yaml", "source", source)
    assert main(["ingest"]) == 0
    written = pd.read_parquet(workdir / params.paths.raw)
    # CSV loses dtypes; the contract's datetime/category columns are restored at ingest
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=1e-12)
    assert written.dtypes.equals(expected.dtypes)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_spreadsheet_export_dialect_ingests_without_hand_edits(workdir: Path, sep: str) -> None:
    """';' (or tab, or '|') between values, a space after each separator, '?' for missing: as
    European spreadsheets and UCI-style exports write them. Ingest reads the same table."""
    params = params_in(workdir)
    expected = ingest.generate(params.ingest.generator, params.task)
    text = expected.to_csv(index=False, sep=sep, na_rep="?").replace(sep, f"{sep} ")
    assert "?" in text  # the generator leaves ~2% of income and employment empty
    source = f"{params.paths.source_dir}/export.csv"
    (workdir / source).parent.mkdir(parents=True, exist_ok=True)
    (workdir / source).write_text(text)
    set_param(workdir / "params.yaml", "source", source)
    assert main(["ingest"]) == 0
    written = pd.read_parquet(workdir / params.paths.raw)
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=1e-12)
    assert main(["validate"]) == 0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(root: Path, name: str, frame: pd.DataFrame) -> str:
    """Write `frame` into the served directory; the sha256 of the bytes served."""
    write_table(root / name, frame)
    return sha256((root / name).read_bytes())


def test_url_source_with_the_right_pin_ingests(workdir: Path, http_dir: tuple[str, Path]) -> None:
    url, root = http_dir
    params = params_in(workdir)
    expected = ingest.generate(params.ingest.generator, params.task)
    pin = serve(root, "applications.csv", expected)
    set_param(workdir / "params.yaml", "source", f"{url}/applications.csv")
    set_param(workdir / "params.yaml", "source_sha256", pin)
    assert main(["ingest"]) == 0
    written = pd.read_parquet(workdir / params.paths.raw)
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=1e-12)


def test_url_source_not_found_is_an_input_error(
    workdir: Path, http_dir: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = http_dir
    set_param(workdir / "params.yaml", "source", f"{url}/missing.parquet")
    set_param(workdir / "params.yaml", "source_sha256", "ab" * 32)
    assert main(["ingest"]) == 2
    assert "missing.parquet: cannot download" in capsys.readouterr().err
    assert not (workdir / params_in(workdir).paths.raw).exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nowhere.csv", None, "nowhere.csv: file not found"),
        ("empty.csv", b"", "empty.csv: file is empty"),
        ("data.txt", b"a,b\n1,2\n", "unsupported table format '.txt'"),
        ("broken.parquet", b"not parquet at all", "broken.parquet: cannot read as parquet"),
    ],
)
def test_bad_source_file_is_an_input_error_and_writes_nothing(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | None,
    message: str,
) -> None:
    source = workdir / params_in(workdir).paths.source_dir / name
    source.parent.mkdir(parents=True)
    if content is not None:
        source.write_bytes(content)
    set_param(workdir / "params.yaml", "source", f"data/source/{name}")
    before = tree(workdir)
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "ingest.source" in err
    assert tree(workdir) == before


# --------------------------------------------------------------------------- paths that escape
# Issue 17, item 6: a source DVC does not hash (outside paths.source_dir, or a URL without a
# pin) gave "up to date" from `dvc status` while a rerun gave other data; a data/ symlinked out
# of the repository was written through. Each is refused (exit 2), with nothing written.


def tree(root: Path) -> dict[str, str]:
    """Every file and symlink under `root` (symlinks not followed) -> its sha256 or target."""
    return {
        p.relative_to(root).as_posix(): (
            f"-> {p.readlink()}" if p.is_symlink() else sha256(p.read_bytes())
        )
        for p in sorted(root.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must exit 2; its stderr."""
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def _absolute(work: Path, outside: Path) -> tuple[str, list[str]]:
    source = str(outside / "x.csv")
    return source, [
        f"ingest.source: {source} is not under data/source/, the folder the ingest stage depends "
        f"on in dvc.yaml, so DVC would not see it change: copy it there (cp {source} "
        "data/source/) and set ingest.source: data/source/x.csv"
    ]


def _parent(work: Path, outside: Path) -> tuple[str, list[str]]:
    source = f"../{outside.name}/x.csv"
    return source, [
        f"ingest.source: {source} is not under data/source/, the folder the ingest stage depends "
        f"on in dvc.yaml, so DVC would not see it change: copy it there (cp {source} "
        "data/source/) and set ingest.source: data/source/x.csv"
    ]


def _elsewhere_in_the_repository(work: Path, outside: Path) -> tuple[str, list[str]]:
    (work / "data" / "other").mkdir(parents=True)
    (work / "data" / "other" / "x.csv").write_bytes((outside / "x.csv").read_bytes())
    return "data/other/x.csv", [
        "ingest.source: data/other/x.csv is not under data/source/, the folder the ingest stage "
        "depends on in dvc.yaml, so DVC would not see it change: copy it there (cp "
        "data/other/x.csv data/source/) and set ingest.source: data/source/x.csv"
    ]


def _symlinked_source_dir(work: Path, outside: Path) -> tuple[str, list[str]]:
    (work / "data").mkdir()
    (work / "data" / "source").symlink_to(outside, target_is_directory=True)
    return "data/source/x.csv", [
        f"paths.source_dir: data/source is really {outside} (data/source is a symlink to "
        f"{outside}), outside the repository {work}",
        f"ingest.source: data/source/x.csv is really {outside / 'x.csv'} (data/source is a "
        f"symlink to {outside}), outside data/source/ in the repository, so DVC would not see it "
        "change: put the file itself there, not a symlink",
    ]


def _symlinked_source_file(work: Path, outside: Path) -> tuple[str, list[str]]:
    (work / "data" / "source").mkdir(parents=True)
    (work / "data" / "source" / "x.csv").symlink_to(outside / "x.csv")
    return "data/source/x.csv", [
        f"ingest.source: data/source/x.csv is really {outside / 'x.csv'} (data/source/x.csv is "
        f"a symlink to {outside / 'x.csv'}), outside data/source/ in the repository"
    ]


@pytest.mark.parametrize(
    "case",
    [
        _absolute,
        _parent,
        _elsewhere_in_the_repository,
        _symlinked_source_dir,
        _symlinked_source_file,
    ],
)
def test_a_source_dvc_does_not_track_is_refused_and_nothing_is_written(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: object
) -> None:
    params = params_in(workdir)
    outside = tmp_path / "outside"
    outside.mkdir()
    write_table(outside / "x.csv", ingest.generate(params.ingest.generator, params.task))
    source, messages = case(workdir, outside)  # type: ignore[operator]
    set_param(workdir / "params.yaml", "source", source)
    before = tree(tmp_path)  # the work copy and everything beside it
    for argv in (["ingest"], ["config-check"]):  # CI's config-check reports it before dvc repro
        err = refused(argv, capsys)
        for message in messages:
            assert message in err, argv
    assert tree(tmp_path) == before
    assert not (workdir / params.paths.raw).exists()


def test_url_source_without_a_pin_is_refused(
    workdir: Path, http_dir: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, root = http_dir
    params = params_in(workdir)
    serve(root, "applications.csv", ingest.generate(params.ingest.generator, params.task))
    set_param(workdir / "params.yaml", "source", f"{url}/applications.csv")
    before = tree(workdir)
    for argv in (["ingest"], ["config-check"]):
        assert (
            f"ingest.source_sha256: a URL source ({url}/applications.csv) must be pinned by the "
            "sha256 of its bytes, or a changed download would give other data while dvc status "
            f"says up to date: set it to the output of `curl -sL {url}/applications.csv | "
            "sha256sum`"
        ) in refused(argv, capsys)
    assert tree(workdir) == before


def test_url_source_whose_bytes_changed_since_pinned_is_refused_naming_both_digests(
    workdir: Path, http_dir: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: the file behind the URL changes after the pipeline ran on it."""
    url, root = http_dir
    params = params_in(workdir)
    generator = params.ingest.generator
    pinned = serve(root, "applications.csv", ingest.generate(generator, params.task))
    set_param(workdir / "params.yaml", "source", f"{url}/applications.csv")
    set_param(workdir / "params.yaml", "source_sha256", pinned)
    assert main(["ingest"]) == 0
    changed = ingest.generate(dataclasses.replace(generator, seed=8), params.task)
    now = serve(root, "applications.csv", changed)
    before = tree(workdir)
    err = refused(["ingest"], capsys)
    assert (
        f"ingest.source: {url}/applications.csv: its bytes have sha256 {now}, but "
        f"ingest.source_sha256 pins {pinned}: the file changed since it was pinned; check the "
        f"new data, then set ingest.source_sha256: {now}"
    ) in err
    assert tree(workdir) == before  # the raw data of the pinned bytes is left as it was


@pytest.mark.parametrize("command", [*STAGES, "config-check"])
def test_a_data_folder_symlinked_out_of_the_repository_is_refused_and_not_written_through(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workdir / "data").symlink_to(elsewhere, target_is_directory=True)
    before = tree(tmp_path)
    err = refused([command], capsys)
    assert (
        f"paths.raw: data/raw/dataset.parquet is really {elsewhere}/raw/dataset.parquet (data "
        f"is a symlink to {elsewhere}), outside the repository {workdir}: stages read and write "
        "only inside it; replace the symlink by a real folder or file"
    ) in err
    assert "paths.train: data/processed/train.parquet is really" in err  # every path listed
    assert list(elsewhere.iterdir()) == []
    assert tree(tmp_path) == before


def test_an_extra_batch_symlinked_out_of_data_extra_is_refused(
    workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = params_in(workdir)
    outside = tmp_path / "outside.parquet"
    write_table(outside, ingest.generate(params.ingest.generator, params.task).head(50))
    (workdir / params.paths.extra).mkdir(parents=True)
    (workdir / params.paths.extra / "b.parquet").symlink_to(outside)
    before = tree(tmp_path)
    assert (
        f"data/extra/b.parquet: is really {outside}, outside data/extra/, so DVC would not see "
        "it change: put the file itself there, not a symlink"
    ) in refused(["ingest"], capsys)
    assert tree(tmp_path) == before


def test_coerce_types_leaves_unparseable_dates_for_validate() -> None:
    frame = pd.DataFrame({"applied_at": ["2025-01-01", "not a date"], "zip": [1234, None]})
    out = ingest.coerce_types(frame, {"applied_at": "datetime", "zip": "category"})
    assert out["applied_at"].tolist() == ["2025-01-01", "not a date"]
    assert out["zip"].iloc[0] == "1234.0"  # text, not a number
    assert out["zip"].isna().iloc[1]
    assert frame["zip"].dtype == np.float64  # input not mutated


# --------------------------------------------------------------------------- generate CLI


def test_generate_cli_is_deterministic_and_writes_by_suffix(workdir: Path) -> None:
    for name in ("a.parquet", "b.parquet", "c.csv"):
        assert main(["generate", "--output", name, "--rows", "1500", "--seed", "3"]) == 0
    assert (workdir / "a.parquet").read_bytes() == (workdir / "b.parquet").read_bytes()
    from_csv = pd.read_csv(workdir / "c.csv")
    assert len(from_csv) == 1500
    assert from_csv["application_id"].iloc[0] == "S3-00000001"


def test_generate_cli_drift_flags(workdir: Path) -> None:
    args = ["generate", "--rows", "20000", "--seed", "5"]
    assert main([*args, "--output", "base.parquet"]) == 0
    assert (
        main(
            [
                *args,
                "--output",
                "drifted.parquet",
                "--covariate-shift",
                "age=1",
                "--covariate-shift",
                "debt_ratio=0.5",
                "--category-shift",
                "region:central=2",
                "--prior-shift",
                "0.5",
                "--start",
                "2026-03-01",
                "--no-label",
            ]
        )
        == 0
    )
    base = pd.read_parquet(workdir / "base.parquet")
    drifted = pd.read_parquet(workdir / "drifted.parquet")
    assert TASK.target in base.columns
    assert TASK.target not in drifted.columns
    assert (drifted["age"].mean() - base["age"].mean()) / base["age"].std() == pytest.approx(
        1.0, abs=0.1
    )
    assert drifted["debt_ratio"].mean() > base["debt_ratio"].mean()
    assert (drifted["region"] == "central").mean() > 0.6
    assert drifted["applied_at"].min() >= pd.Timestamp("2026-03-01")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--covariate-shift", "age"], "--covariate-shift age: expected COLUMN=SD"),
        (["--covariate-shift", "age=lots"], "--covariate-shift age=lots: 'lots' is not a number"),
        (["--covariate-shift", "salary=1"], "covariate_shift.salary: not a numeric column"),
        (["--category-shift", "region=2"], "expected COLUMN:CATEGORY=WEIGHT"),
        (["--category-shift", "region:mars=2"], "category_shift.region.mars: unknown category"),
        (["--category-shift", "region:north=-1"], "weight must be a finite number >= 0"),
        (["--concept-drift", "1.5"], "concept_drift: must be between 0 and 1"),
        (["--prior-shift", "nan"], "prior_shift: must be a finite number"),
        (["--prior-shift", "high"], "invalid float value: 'high'"),
        (["--start", "2025-13-40"], "--start 2025-13-40: expected an ISO date"),
        (["--rows", "0"], "rows: must be at least 1"),
    ],
)
def test_generate_cli_bad_flags_exit_2_and_write_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["generate", "--output", "out.parquet", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "out.parquet").exists()


def test_generate_cli_lists_every_bad_flag(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["generate", "--output", "o.csv", "--concept-drift", "2", "--start", "x", "--rows", "0"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "concept_drift" in err
    assert "--start x" in err
    assert "rows: must be at least 1" in err


def test_generate_cli_unsupported_suffix(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--output", "out.json", "--rows", "10"]) == 2
    assert "unsupported table format '.json'" in capsys.readouterr().err
    assert not (workdir / "out.json").exists()


def test_generate_through_the_real_entry_point(workdir: Path) -> None:
    proc = run(
        ["python", "-m", "pipeline", "generate", "--output", "b.csv", "--rows", "50"],
        workdir,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 0
    assert len(pd.read_csv(workdir / "b.csv")) == 50


def test_override_keeps_params_values_not_overridden() -> None:
    generator: Generator = ingest.override(BASE, covariate_shift=["age=1"], prior_shift=0.3)
    assert generator.rows == BASE.rows
    assert generator.seed == BASE.seed
    assert dict(generator.drift.covariate_shift) == {"age": 1.0}
    assert generator.drift.prior_shift == 0.3
    assert generator.drift.concept_drift == BASE.drift.concept_drift
    with pytest.raises(UsageError):
        ingest.override(BASE, seed=-1)


def test_input_error_is_a_usage_error() -> None:
    # the CLI maps both to exit 2; ingest relies on that for bad sources
    assert issubclass(InputError, UsageError)


def test_bad_drift_in_params_exits_2_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_param(workdir / "params.yaml", "covariate_shift", "{salary: 1.0}")
    assert main(["ingest"]) == 2
    assert "ingest.generator.drift.covariate_shift.salary: not a numeric column" in (
        capsys.readouterr().err
    )
    assert not (workdir / "data").exists()
