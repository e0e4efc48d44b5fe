"""pipeline/predict.py: `score` (pure) and the `predict` command on CSV/Parquet inputs."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import shutil
import sys
import threading
from io import StringIO
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from pipeline import io
from pipeline.cli import main
from pipeline.config import Params, load_params
from pipeline.errors import InputError
from pipeline.ingest import generate
from pipeline.model_io import load_model, save_model
from pipeline.predict import score, unseen_categories
from pipeline.train import build_model, fit
from tests.conftest import DEMO_ROOT, run, set_param

ROWS = 600


def configured(params: Params, model: str, task_type: str, **kwargs: Any) -> Params:
    train = dataclasses.replace(params.train, model=model, kwargs=MappingProxyType(kwargs))
    task = dataclasses.replace(params.task, type=task_type)
    return dataclasses.replace(params, train=train, task=task)


def sample(params: Params, rows: int = ROWS, seed: int | None = None) -> pd.DataFrame:
    generator = dataclasses.replace(
        params.ingest.generator,
        rows=rows,
        seed=params.ingest.generator.seed if seed is None else seed,
    )
    return generate(generator, params.task)


def trained(params: Params) -> Any:
    frame = sample(params)
    return fit(
        build_model(params.features, params.train, params.task), frame, params.features, params.task
    )


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(DEMO_ROOT / "params.yaml")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """params.yaml + policies/ of the demo and a trained model; tests copy it to modify it."""
    ws = tmp_path_factory.mktemp("predict") / "ws"
    ws.mkdir()
    shutil.copy(DEMO_ROOT / "params.yaml", ws / "params.yaml")
    shutil.copytree(DEMO_ROOT / "policies", ws / "policies")
    set_param(ws / "params.yaml", "max_iter", "20")  # train.kwargs: keep the fixture fast
    p = load_params(ws / "params.yaml")
    save_model(trained(p), ws / p.paths.model)
    rows = sample(p, rows=200, seed=99).drop(columns=[p.task.target])  # unseen rows, no label
    io.write_table(ws / "rows.parquet", rows)
    io.write_table(ws / "rows.csv", rows)
    return ws


@pytest.fixture
def ws(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    monkeypatch.chdir(copy)
    return copy


# --------------------------------------------------------------------------- score


def test_score_binary_columns_follow_classes(params: Params) -> None:
    p = configured(params, "logistic_regression", "binary", max_iter=1000)
    model = trained(p)
    frame = sample(p, rows=50, seed=3)
    frame.index = pd.RangeIndex(100, 150)
    scored = score(model, frame, p.task)
    assert list(scored.columns) == ["prediction", "proba_0", "proba_1"]
    assert list(scored.index) == list(frame.index)
    np.testing.assert_array_equal(scored["prediction"], model.predict(frame))
    np.testing.assert_array_equal(scored[["proba_0", "proba_1"]], model.predict_proba(frame))


def test_score_multiclass_has_one_probability_per_class(params: Params) -> None:
    p = configured(params, "random_forest", "multiclass", n_estimators=5)
    model = trained(p)
    scored = score(model, sample(p, rows=40, seed=3), p.task)
    assert list(scored.columns) == ["prediction", *(f"proba_{c}" for c in model.classes_)]
    np.testing.assert_allclose(scored.filter(like="proba_").sum(axis=1), 1.0)
    assert set(scored["prediction"]) <= set(model.classes_)


def test_score_regression_has_only_predictions(params: Params) -> None:
    p = configured(params, "ridge", "regression", alpha=1.0)
    model = trained(p)
    scored = score(model, sample(p, rows=40, seed=3), p.task)
    assert list(scored.columns) == ["prediction"]
    assert scored["prediction"].dtype == np.float64


def test_score_ignores_extra_columns_and_does_not_mutate(params: Params) -> None:
    p = configured(params, "ridge", "regression", alpha=1.0)
    model = trained(p)
    frame = sample(p, rows=30, seed=3)
    before = frame.copy()
    shuffled = frame[list(reversed(frame.columns))].assign(note="extra")
    pd.testing.assert_frame_equal(score(model, shuffled, p.task), score(model, frame, p.task))
    pd.testing.assert_frame_equal(frame, before)


def test_score_names_missing_columns(params: Params) -> None:
    p = configured(params, "ridge", "regression", alpha=1.0)
    model = trained(p)
    with pytest.raises(InputError, match="income, region"):
        score(model, sample(p, rows=10).drop(columns=["income", "region"]), p.task)


def test_unseen_categories_are_named_per_column(params: Params) -> None:
    p = configured(params, "ridge", "regression", alpha=1.0)
    model = trained(p)
    frame = sample(p, rows=10, seed=3)
    assert unseen_categories(model, frame) == []
    frame.loc[frame.index[:2], "region"] = "mars"
    frame.loc[frame.index[2], "employment"] = None  # nulls are the contract's business
    assert unseen_categories(model, frame) == [
        "region: 2 values of categories unseen in training ('mars')"
    ]


# --------------------------------------------------------------------------- the command


def predict(*args: str) -> int:
    return main(["--params", "params.yaml", "predict", *args])


def expected(ws: Path, rows: str) -> pd.DataFrame:
    p = load_params(ws / "params.yaml")
    return score(load_model(ws / p.paths.model), io.read_table(ws / rows), p.task)


def test_predict_parquet_to_parquet_subprocess(ws: Path) -> None:
    run([sys.executable, "-m", "pipeline", "predict", "--input", "rows.parquet",
         "--output", "out/pred.parquet"], ws)  # fmt: skip
    got = pd.read_parquet(ws / "out" / "pred.parquet")
    pd.testing.assert_frame_equal(got, expected(ws, "rows.parquet"), check_exact=True)


def test_predict_csv_equals_parquet(ws: Path) -> None:
    assert predict("--input", "rows.csv", "--output", "pred.csv") == 0
    assert predict("--input", "rows.parquet", "--output", "pred.parquet") == 0
    from_csv = pd.read_csv(ws / "pred.csv")
    from_parquet = pd.read_parquet(ws / "pred.parquet")
    assert len(from_csv) == 200
    # CSV carries no types: its datetime column is parsed back by the contract's dtype.
    pd.testing.assert_frame_equal(from_csv, from_parquet, check_exact=True)


def test_predict_accepts_rows_with_the_label(ws: Path, params: Params) -> None:
    rows = sample(params, rows=50, seed=5)
    io.write_table(ws / "labelled.parquet", rows)
    assert predict("--input", "labelled.parquet", "--output", "p.parquet") == 0
    assert len(pd.read_parquet(ws / "p.parquet")) == 50


def test_predict_with_explicit_model(ws: Path) -> None:
    Path("models/model.skops").rename("other.skops")
    assert predict("--input", "rows.csv", "--output", "p.csv", "--model", "other.skops") == 0
    assert (ws / "p.csv").is_file()


def broken(ws: Path, change: str) -> str:
    rows = pd.read_csv(ws / "rows.csv")
    if change == "missing column":
        rows = rows.drop(columns=["income"])
    elif change == "unseen category":
        rows.loc[3, "home_ownership"] = "castle"
    elif change == "wrong dtype":
        rows["age"] = rows["age"].astype(str)
        rows.loc[0, "age"] = "forty"
    elif change == "infinite value":
        rows.loc[1, "loan_amount"] = np.inf
    elif change == "extra column":
        rows["favourite_colour"] = "blue"
    rows.to_csv(ws / "bad.csv", index=False)
    return "bad.csv"


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ("missing column", "income"),
        ("unseen category", "home_ownership"),
        ("wrong dtype", "age"),
        ("infinite value", "loan_amount"),
        ("extra column", "favourite_colour"),
    ],
)
def test_bad_input_fails_naming_the_column_and_writes_nothing(
    ws: Path, capsys: pytest.CaptureFixture[str], change: str, column: str
) -> None:
    code = predict("--input", broken(ws, change), "--output", "pred.csv")
    err = capsys.readouterr().err
    assert code == 1
    assert "data contract failed" in err
    assert f"  - {column}:" in err
    assert not (ws / "pred.csv").exists()


def test_unseen_category_is_refused_even_without_an_allowed_list(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contract = ws / "policies" / "contract.yaml"
    text = contract.read_text()
    contract.write_text(text.replace("    allowed: [rent, own, mortgage]", "    # (no list)"))
    code = predict("--input", broken(ws, "unseen category"), "--output", "pred.csv")
    err = capsys.readouterr().err
    assert code == 1
    assert "home_ownership: 1 values of categories unseen in training ('castle')" in err
    assert not (ws / "pred.csv").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "file is empty"), ("age,income\n", "no rows to score")],
)
def test_empty_input_is_an_input_error(
    ws: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (ws / "empty.csv").write_text(content)
    assert predict("--input", "empty.csv", "--output", "pred.csv") == 2
    assert message in capsys.readouterr().err
    assert not (ws / "pred.csv").exists()


def test_unsupported_output_format(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert predict("--input", "rows.csv", "--output", "pred.xlsx") == 2
    assert "pred.xlsx: expected a .csv or .parquet" in capsys.readouterr().err
    assert not (ws / "pred.xlsx").exists()


def test_untrusted_model_is_refused(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ws / "evil.skops").write_bytes(sio.dumps({"payload": eval}))
    code = predict("--input", "rows.csv", "--output", "pred.csv", "--model", "evil.skops")
    assert code == 2
    assert "builtins.eval" in capsys.readouterr().err
    assert not (ws / "pred.csv").exists()


def test_missing_model(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = predict("--input", "rows.csv", "--output", "pred.csv", "--model", "nope.skops")
    assert code == 2
    assert "nope.skops: model file not found" in capsys.readouterr().err
    assert not (ws / "pred.csv").exists()


def test_predict_reads_an_http_url(ws: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(ws))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/rows.csv"
        with contextlib.redirect_stderr(log := StringIO()):  # the server logs each request
            assert predict("--input", url, "--output", "pred.parquet") == 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert "GET /rows.csv" in log.getvalue()
    got = pd.read_parquet(ws / "pred.parquet")
    pd.testing.assert_frame_equal(got, expected(ws, "rows.parquet"), check_exact=True)


def test_score_refuses_a_model_of_another_task(params: Params) -> None:
    regression = configured(params, "ridge", "regression", alpha=1.0)
    classification = configured(params, "random_forest", "binary", n_estimators=3)
    frame = sample(regression, rows=10)
    with pytest.raises(InputError, match=r"the model is a regressor but task\.type is 'binary'"):
        score(trained(regression), frame, classification.task)
    with pytest.raises(InputError, match=r"a classifier but task\.type is 'regression'"):
        score(trained(classification), frame, regression.task)
